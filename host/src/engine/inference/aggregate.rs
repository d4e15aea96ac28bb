//! Blending window outputs into a whole volume with bounded memory.
//!
//! Windows arrive with their `k` corner non-decreasing ([`super::Tiling::corners`]).
//! The aggregator keeps weighted sums only for the slab of `k` slices that a window can
//! still reach: `(K + 1)` floats per voxel of a slab as deep as one kept region. When a
//! window starts at slice `k0`, every slice below `k0` is complete: it is normalised and
//! moved to the compact [`Store`] (one byte per voxel for labels, one byte per class and
//! voxel for quantised probabilities), and its buffer is reused. Voxels no window reached
//! take the aggregator's fill, when it has one ([`Aggregator::with_fill`]).

use std::collections::VecDeque;

use super::super::EngineError;

/// What is kept of each finished slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The class of highest blended value (one byte per voxel; at most 256 classes).
    Labels,
    /// Blended values as float32 (`4·K` bytes per voxel).
    Float,
    /// Blended probabilities in `[0, 1]` quantised to `round(255·p)` (`K` bytes per voxel).
    Quantised,
}

/// A finished volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregated {
    /// Class indices.
    ///
    /// # Shapes
    /// `[k, j, i]`
    Labels(Vec<u8>),
    /// Blended values.
    ///
    /// # Shapes
    /// `[K, k, j, i]`
    Float(Vec<f32>),
    /// Quantised probabilities (`p ≈ q / 255`).
    ///
    /// # Shapes
    /// `[K, k, j, i]`
    Quantised(Vec<u8>),
}

/// Weighted sums of window outputs over a slab of slices.
#[derive(Debug)]
pub struct Aggregator {
    dims: [usize; 3],
    classes: usize,
    kept: [usize; 3],
    weights: Vec<f32>,
    /// Slices `base..base + planes.len()`: `K` class sums then the weight sum.
    planes: VecDeque<Vec<f32>>,
    spare: Vec<Vec<f32>>,
    base: usize,
    out: Aggregated,
    /// Class values of the voxels no window reached.
    fill: Option<Vec<f32>>,
}

/// `n` zeros within the memory budget ([`crate::budget::try_zeroed`]), the error naming
/// `what`, its size and the budget.
fn zeroed<T: crate::budget::Zeroed>(n: usize, what: &str) -> Result<Vec<T>, EngineError> {
    crate::budget::try_zeroed(n, &|| what.to_owned()).map_err(|e| EngineError::Other(e.to_string()))
}

impl Aggregator {
    /// An aggregator for a volume of `dims` `(i, j, k)` and `classes` outputs per voxel;
    /// `weights` is the blend map of a kept region of size `kept` (`[k, j, i]`).
    ///
    /// # Errors
    /// More than 256 classes for [`Store::Labels`], weights that do not fit `kept`, or
    /// an output that cannot be allocated.
    pub fn new(
        dims: [usize; 3],
        classes: usize,
        kept: [usize; 3],
        weights: Vec<f32>,
        store: Store,
    ) -> Result<Aggregator, EngineError> {
        if weights.len() != kept.iter().product::<usize>() {
            return Err(EngineError::Other(format!(
                "blend weights hold {} values for a kept region of {kept:?}",
                weights.len()
            )));
        }
        let voxels = dims.iter().product::<usize>();
        let out = match store {
            Store::Labels if classes > 256 => {
                return Err(EngineError::Other(format!("{classes} classes do not fit a uint8 label volume")))
            }
            Store::Labels => Aggregated::Labels(zeroed(voxels, "the label volume")?),
            Store::Float => Aggregated::Float(zeroed(voxels * classes, "the output volume")?),
            Store::Quantised => Aggregated::Quantised(zeroed(voxels * classes, "the quantised output volume")?),
        };
        Ok(Aggregator {
            dims,
            classes,
            kept,
            weights,
            planes: VecDeque::new(),
            spare: Vec::new(),
            base: 0,
            out,
            fill: None,
        })
    }

    /// Gives the voxels no window reaches the class values `fill` (the background class
    /// around the foreground's windows, say) instead of an error.
    ///
    /// # Errors
    /// `fill` does not hold one value per class.
    pub fn with_fill(mut self, fill: Vec<f32>) -> Result<Aggregator, EngineError> {
        if fill.len() != self.classes {
            return Err(EngineError::Other(format!("a fill of {} values for {} classes", fill.len(), self.classes)));
        }
        self.fill = Some(fill);
        Ok(self)
    }

    fn plane_len(&self) -> usize {
        (self.classes + 1) * self.dims[0] * self.dims[1]
    }

    /// Adds one window output. `corner` is where its kept region starts in the volume,
    /// `offset` where the kept region starts inside the window (the border).
    ///
    /// # Shapes
    /// `window`: `[K, wk, wj, wi]` with `window_dims = (wi, wj, wk)`
    ///
    /// # Errors
    /// A corner below a slice already finished, or a window of the wrong size.
    pub fn add(
        &mut self,
        corner: [usize; 3],
        window: &[f32],
        window_dims: [usize; 3],
        offset: [usize; 3],
    ) -> Result<(), EngineError> {
        let [wi, wj, wk] = window_dims;
        let [di, dj, _] = self.dims;
        if window.len() != self.classes * wi * wj * wk || (0..3).any(|a| offset[a] + self.kept[a] > window_dims[a]) {
            return Err(EngineError::Other(format!(
                "window output of {} values does not hold {} classes of {window_dims:?} with a kept region of {:?} at {offset:?}",
                window.len(),
                self.classes,
                self.kept
            )));
        }
        if corner[2] < self.base {
            return Err(EngineError::Other(format!(
                "window at slice {} arrived after slice {} was finished",
                corner[2], self.base
            )));
        }
        self.finish_below(corner[2])?;
        let len = (0..3).map(|a| self.kept[a].min(self.dims[a].saturating_sub(corner[a]))).collect::<Vec<_>>();
        let (ni, nj, nk) = (len[0], len[1], len[2]);
        while self.base + self.planes.len() < corner[2] + nk {
            let plane = match self.spare.pop() {
                Some(p) => p,
                None => zeroed(self.plane_len(), "a slab slice")?,
            };
            self.planes.push_back(plane);
        }
        let plane_voxels = di * dj;
        let [ki, kj, _] = self.kept;
        for z in 0..nk {
            let plane = &mut self.planes[corner[2] + z - self.base];
            for y in 0..nj {
                let row = (corner[1] + y) * di + corner[0];
                let w = &self.weights[(z * kj + y) * ki..][..ni];
                for c in 0..self.classes {
                    let src = &window[((c * wk + offset[2] + z) * wj + offset[1] + y) * wi + offset[0]..][..ni];
                    let dst = &mut plane[c * plane_voxels + row..][..ni];
                    for ((d, s), w) in dst.iter_mut().zip(src).zip(w) {
                        *d += s * w;
                    }
                }
                let dst = &mut plane[self.classes * plane_voxels + row..][..ni];
                dst.iter_mut().zip(w).for_each(|(d, w)| *d += w);
            }
        }
        Ok(())
    }

    /// Finishes every slice below `k`.
    fn finish_below(&mut self, k: usize) -> Result<(), EngineError> {
        let plane_voxels = self.dims[0] * self.dims[1];
        let voxels = plane_voxels * self.dims[2];
        let classes = self.classes;
        while self.base < k {
            let mut plane = match (self.planes.pop_front(), &self.fill) {
                (Some(plane), _) => plane,
                // A slice no window reached: all fill.
                (None, Some(_)) => match self.spare.pop() {
                    Some(p) => p,
                    None => zeroed(self.plane_len(), "a slab slice")?,
                },
                // Cannot happen with covering corners.
                (None, None) => return Err(EngineError::Other(format!("slice {} is covered by no window", self.base))),
            };
            let (sums, weight) = plane.split_at(classes * plane_voxels);
            let at = self.base * plane_voxels;
            // Without a fill, an unreached voxel has class 0 and values 0.
            let fill = |c: usize| self.fill.as_ref().map_or(0.0, |f| f[c]);
            match &mut self.out {
                Aggregated::Labels(out) => {
                    let fill_label = (1..classes).fold(0, |best, c| if fill(c) > fill(best) { c } else { best });
                    for (v, o) in out[at..at + plane_voxels].iter_mut().enumerate() {
                        if weight[v] <= 0.0 {
                            *o = fill_label as u8;
                            continue;
                        }
                        let mut best = 0;
                        for c in 1..classes {
                            if sums[c * plane_voxels + v] > sums[best * plane_voxels + v] {
                                best = c;
                            }
                        }
                        *o = best as u8;
                    }
                }
                Aggregated::Float(out) => {
                    for c in 0..classes {
                        let dst = &mut out[c * voxels + at..][..plane_voxels];
                        let src = &sums[c * plane_voxels..][..plane_voxels];
                        for ((d, s), w) in dst.iter_mut().zip(src).zip(weight) {
                            *d = if *w > 0.0 { s / w } else { fill(c) };
                        }
                    }
                }
                Aggregated::Quantised(out) => {
                    for c in 0..classes {
                        let dst = &mut out[c * voxels + at..][..plane_voxels];
                        let src = &sums[c * plane_voxels..][..plane_voxels];
                        for ((d, s), w) in dst.iter_mut().zip(src).zip(weight) {
                            let p = if *w > 0.0 { s / w } else { fill(c) };
                            *d = (p.clamp(0.0, 1.0) * 255.0).round() as u8;
                        }
                    }
                }
            }
            plane.iter_mut().for_each(|v| *v = 0.0);
            self.spare.push(plane);
            self.base += 1;
        }
        Ok(())
    }

    /// Finishes the remaining slices and returns the volume.
    ///
    /// # Errors
    /// A slice no window reached.
    pub fn finish(mut self) -> Result<Aggregated, EngineError> {
        self.finish_below(self.dims[2])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_windows_average_and_slices_finish_in_order() {
        // A 4×1×3 volume, 2 classes, kept regions of 2×1×2 at k = 0 and 1 (overlap on k = 1).
        let mut agg = Aggregator::new([4, 1, 3], 2, [4, 1, 2], vec![1.0; 8], Store::Float).unwrap();
        let ones: Vec<f32> = [vec![1.0; 8], vec![0.0; 8]].concat();
        let zeros: Vec<f32> = [vec![0.0; 8], vec![1.0; 8]].concat();
        agg.add([0, 0, 0], &ones, [4, 1, 2], [0, 0, 0]).unwrap();
        agg.add([0, 0, 1], &zeros, [4, 1, 2], [0, 0, 0]).unwrap();
        assert!(agg.add([0, 0, 0], &ones, [4, 1, 2], [0, 0, 0]).is_err(), "slice 0 is finished");
        let Aggregated::Float(out) = agg.finish().unwrap() else { panic!("float store") };
        // Class 0: slice 0 = 1, slice 1 = 0.5, slice 2 = 0.
        assert_eq!(&out[..12], &[1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn voxels_no_window_reaches_take_the_fill() {
        // A 4×1×4 volume, 2 classes, one window of 2×1×2 at (1, 0, 1).
        let window: Vec<f32> = [vec![0.6; 4], vec![0.4; 4]].concat();
        let run = |store| {
            let agg = Aggregator::new([4, 1, 4], 2, [2, 1, 2], vec![1.0; 4], store).unwrap();
            let mut agg = agg.with_fill(vec![0.2, 0.8]).unwrap();
            assert!(agg.add([1, 0, 1], &window, [2, 1, 2], [0, 0, 0]).is_ok());
            agg.finish().unwrap()
        };
        let Aggregated::Labels(labels) = run(Store::Labels) else { panic!("label store") };
        let inside = |v: usize| (1..3).contains(&(v % 4)) && (1..3).contains(&(v / 4));
        for (v, l) in labels.iter().enumerate() {
            assert_eq!(*l, if inside(v) { 0 } else { 1 }, "voxel {v}");
        }
        let Aggregated::Quantised(q) = run(Store::Quantised) else { panic!("quantised store") };
        assert_eq!((q[0], q[5], q[16], q[21]), (51, 153, 204, 102));
        let agg = Aggregator::new([4, 1, 4], 2, [2, 1, 2], vec![1.0; 4], Store::Float).unwrap();
        assert!(agg.with_fill(vec![0.5]).is_err(), "one value per class");
        let mut unfilled = Aggregator::new([4, 1, 4], 2, [2, 1, 2], vec![1.0; 4], Store::Float).unwrap();
        assert!(unfilled.add([1, 0, 1], &window, [2, 1, 2], [0, 0, 0]).is_err(), "slice 0 unreached, no fill");
    }
}
