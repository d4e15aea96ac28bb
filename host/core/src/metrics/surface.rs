//! Surface voxels and surface distances: Hausdorff, percentile Hausdorff, average
//! symmetric surface distance and normalised surface Dice.
//!
//! # Definitions
//! - **Surface voxel**: a foreground voxel with at least one of its 6 face neighbours in
//!   the background. Neighbours outside the volume count as background (a mask touching
//!   the border has a surface there, as with `scipy.ndimage.binary_erosion`'s default
//!   `border_value=0`), except along an axis where the *volume* is one voxel thick: such
//!   an axis has no neighbours, so a 2D image (`dims[2] = 1`) has 2D (4-connected)
//!   surfaces instead of being all surface.
//! - **Surface distance** of a voxel of one surface: the Euclidean distance in mm,
//!   honouring the voxel spacing, from its centre to the centre of the nearest voxel of
//!   the other surface. The directed sets `d(S→R)` (one value per surface voxel of the
//!   segmentation) and `d(R→S)` come from an exact distance transform ([`super::edt`]).
//! - **Hausdorff distance** `HD = max(max d(S→R), max d(R→S))`.
//! - **HD95** `= max(P95(d(S→R)), P95(d(R→S)))`: the larger of the two directed 95th
//!   percentiles (MONAI's `compute_hausdorff_distance(percentile=95)` and DeepMind's
//!   `compute_robust_hausdorff` do the same), where `P_q` interpolates linearly between
//!   order statistics: with the `n` values sorted, `P_q = x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] −
//!   x[⌊h⌋])`, `h = (n − 1) q / 100` (numpy's default `linear` method).
//! - **ASSD** `= (Σ d(S→R) + Σ d(R→S)) / (|∂S| + |∂R|)`: the mean over both directed
//!   sets together (MONAI's `symmetric=True` average surface distance).
//! - **Normalised surface Dice** at tolerance `τ` mm (Nikolov et al. 2021, counting
//!   surface voxels instead of surfel areas): `(|{d(S→R) ≤ τ}| + |{d(R→S) ≤ τ}|) /
//!   (|∂S| + |∂R|)`.
//!
//! # Empty masks
//! Both empty: every distance and the surface Dice are NaN (undefined). One empty: the
//! distances are `+∞` and the surface Dice is 0.

use serde::Serialize;

use super::edt::query_distances;

/// Surface voxels of `mask` (see the module docs for the definition).
///
/// # Panics
/// When `mask.len()` is not `dims[0] * dims[1] * dims[2]`.
pub fn surface_voxels(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    surface_in_crop(mask, dims, dims)
}

/// Surface of a mask given on a crop of a volume of `volume_dims` (outside the crop is
/// background; an axis of the volume one voxel thick has no neighbours).
pub(crate) fn surface_in_crop(mask: &[bool], dims: [usize; 3], volume_dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    assert_eq!(mask.len(), nx * ny * nz, "mask and dims disagree");
    let flat = volume_dims.map(|d| d <= 1);
    let (sy, sz) = (nx, nx * ny);
    let mut out = vec![false; mask.len()];
    for k in 0..nz {
        for j in 0..ny {
            let row = k * sz + j * sy;
            for i in 0..nx {
                let n = row + i;
                if !mask[n] {
                    continue;
                }
                let background = |along: usize, low: bool| -> bool {
                    if flat[along] {
                        return false;
                    }
                    let (c, len, stride) = match along {
                        0 => (i, nx, 1),
                        1 => (j, ny, sy),
                        _ => (k, nz, sz),
                    };
                    if low {
                        c == 0 || !mask[n - stride]
                    } else {
                        c + 1 == len || !mask[n + stride]
                    }
                };
                out[n] = (0..3).any(|a| background(a, true) || background(a, false));
            }
        }
    }
    out
}

/// The smallest box `[lo, hi)` holding every `true` voxel of the masks; `None` when all
/// are empty.
pub(crate) fn bounding_box(masks: &[&[bool]], dims: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = dims;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for mask in masks {
        for k in 0..nz {
            for j in 0..ny {
                let row = &mask[nx * (j + ny * k)..nx * (j + ny * k + 1)];
                let (Some(first), Some(last)) = (row.iter().position(|&m| m), row.iter().rposition(|&m| m)) else {
                    continue;
                };
                lo = [lo[0].min(first), lo[1].min(j), lo[2].min(k)];
                hi = [hi[0].max(last + 1), hi[1].max(j + 1), hi[2].max(k + 1)];
            }
        }
    }
    (lo[0] != usize::MAX).then_some((lo, hi))
}

/// The part of `mask` inside `[lo, hi)`, in the same memory order.
pub(crate) fn crop(mask: &[bool], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
    let [nx, ny, _] = dims;
    let mut out = Vec::with_capacity((0..3).map(|a| hi[a] - lo[a]).product());
    for k in lo[2]..hi[2] {
        for j in lo[1]..hi[1] {
            let at = k * nx * ny + j * nx;
            out.extend_from_slice(&mask[at + lo[0]..at + hi[0]]);
        }
    }
    out
}

/// The two directed sets of surface distances between a segmentation and a reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SurfaceDistances {
    /// From each surface voxel of the segmentation to the reference surface, mm.
    pub seg_to_ref: Vec<f64>,
    /// From each surface voxel of the reference to the segmentation surface, mm.
    pub ref_to_seg: Vec<f64>,
}

impl SurfaceDistances {
    /// Computes both directed sets. Only the bounding box of the two masks is
    /// transformed: every surface voxel lies in it, so the distances are exact.
    ///
    /// # Panics
    /// When a mask's length is not `dims[0] * dims[1] * dims[2]`.
    pub fn compute(seg: &[bool], reference: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let n: usize = dims.iter().product();
        assert_eq!(seg.len(), n, "segmentation mask and dims disagree");
        assert_eq!(reference.len(), n, "reference mask and dims disagree");
        let Some((lo, hi)) = bounding_box(&[seg, reference], dims) else {
            return Self::default();
        };
        let box_dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let (s, r) = (crop(seg, dims, lo, hi), crop(reference, dims, lo, hi));
        let (ss, rs) = rayon::join(|| surface_in_crop(&s, box_dims, dims), || surface_in_crop(&r, box_dims, dims));
        drop((s, r));
        let (seg_to_ref, ref_to_seg) = rayon::join(
            || query_distances(&rs, &ss, box_dims, spacing),
            || query_distances(&ss, &rs, box_dims, spacing),
        );
        Self { seg_to_ref, ref_to_seg }
    }

    /// Surface voxels of the segmentation.
    pub fn seg_surface_voxels(&self) -> usize {
        self.seg_to_ref.len()
    }

    /// Surface voxels of the reference.
    pub fn ref_surface_voxels(&self) -> usize {
        self.ref_to_seg.len()
    }

    fn both_empty(&self) -> bool {
        self.seg_to_ref.is_empty() && self.ref_to_seg.is_empty()
    }

    fn one_empty(&self) -> bool {
        self.seg_to_ref.is_empty() != self.ref_to_seg.is_empty()
    }

    /// Hausdorff distance, mm (NaN when both are empty, `+∞` when one is).
    pub fn hausdorff(&self) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        self.seg_to_ref.iter().chain(&self.ref_to_seg).copied().fold(0.0, f64::max)
    }

    /// `max(P_q(d(S→R)), P_q(d(R→S)))`, mm, `q` in percent (see the module docs).
    pub fn percentile_hausdorff(&self, q: f64) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        percentile(&self.seg_to_ref, q).max(percentile(&self.ref_to_seg, q))
    }

    /// Average symmetric surface distance, mm.
    pub fn average_symmetric(&self) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        let n = self.seg_to_ref.len() + self.ref_to_seg.len();
        self.seg_to_ref.iter().chain(&self.ref_to_seg).sum::<f64>() / n as f64
    }

    /// Mean of `d(S→R)` (NaN when the segmentation is empty, `+∞` when only the
    /// reference is).
    pub fn mean_seg_to_ref(&self) -> f64 {
        mean(&self.seg_to_ref)
    }

    /// Mean of `d(R→S)`.
    pub fn mean_ref_to_seg(&self) -> f64 {
        mean(&self.ref_to_seg)
    }

    /// Normalised surface Dice at tolerance `tau` mm.
    pub fn surface_dice(&self, tau: f64) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        let n = self.seg_to_ref.len() + self.ref_to_seg.len();
        let within = self.seg_to_ref.iter().chain(&self.ref_to_seg).filter(|&&d| d <= tau).count();
        within as f64 / n as f64
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `q`-th percentile (0..=100) with linear interpolation between order statistics
/// (numpy's default); NaN for no values. Runs in linear time (selection, no sort).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let h = (values.len() - 1) as f64 * (q / 100.0).clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let mut v = values.to_vec();
    let (_, &mut x_lo, upper) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let frac = h - lo as f64;
    if frac == 0.0 || upper.is_empty() {
        return x_lo;
    }
    let x_hi = upper.iter().copied().fold(f64::INFINITY, f64::min);
    if x_hi == x_lo {
        x_lo
    } else {
        x_lo + frac * (x_hi - x_lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0, 10.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&v, 50.0), 3.0);
        // numpy.percentile([1,2,3,4,10], 95) = 4 + 0.8 * 6
        assert!((percentile(&v, 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert!(percentile(&[], 95.0).is_nan());
        assert_eq!(percentile(&[1.0, f64::INFINITY], 50.0), f64::INFINITY);
    }

    #[test]
    fn surface_of_a_cube_is_its_shell_and_border_counts_as_background() {
        let dims = [5, 5, 5];
        let mask: Vec<bool> = (0..125)
            .map(|n| n % 5 >= 1 && n % 5 <= 3 && (n / 5) % 5 >= 1 && (n / 5) % 5 <= 3 && n / 25 >= 1 && n / 25 <= 3)
            .collect();
        let s = surface_voxels(&mask, dims);
        assert_eq!(s.iter().filter(|&&x| x).count(), 26, "3×3×3 cube: all but the centre");
        let full = surface_voxels(&[true; 27], [3, 3, 3]);
        assert_eq!(full.iter().filter(|&&x| x).count(), 26, "the volume border is background");
        // A 2D image: the flat axis has no neighbours.
        let flat = surface_voxels(&[true; 9], [3, 3, 1]);
        assert_eq!(flat.iter().filter(|&&x| x).count(), 8);
    }

    #[test]
    fn single_voxels_and_empty_masks() {
        let dims = [4, 4, 4];
        let mut a = vec![false; 64];
        let mut b = vec![false; 64];
        a[0] = true;
        b[63] = true;
        let d = SurfaceDistances::compute(&a, &b, dims, [1.0, 2.0, 3.0]);
        let want = (9.0f64 + 36.0 + 81.0).sqrt();
        assert!((d.hausdorff() - want).abs() < 1e-12);
        assert!((d.percentile_hausdorff(95.0) - want).abs() < 1e-12);
        assert!((d.average_symmetric() - want).abs() < 1e-12);
        assert_eq!(d.surface_dice(1.0), 0.0);
        let same = SurfaceDistances::compute(&a, &a, dims, [1.0; 3]);
        assert_eq!((same.hausdorff(), same.surface_dice(0.0)), (0.0, 1.0));
        let none = vec![false; 64];
        let one = SurfaceDistances::compute(&a, &none, dims, [1.0; 3]);
        assert_eq!(one.hausdorff(), f64::INFINITY);
        assert_eq!(one.percentile_hausdorff(95.0), f64::INFINITY);
        assert_eq!(one.average_symmetric(), f64::INFINITY);
        assert_eq!(one.surface_dice(5.0), 0.0);
        let neither = SurfaceDistances::compute(&none, &none, dims, [1.0; 3]);
        assert!(neither.hausdorff().is_nan() && neither.average_symmetric().is_nan());
        assert!(neither.surface_dice(1.0).is_nan() && neither.percentile_hausdorff(95.0).is_nan());
    }
}
