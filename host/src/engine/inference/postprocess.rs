//! Postprocessing of label volumes, per label: remove connected components below a
//! volume, keep the largest component, fill holes. Applied in that order, on the output
//! in the input's geometry (label values as written).

use crate::metrics::components::{label_components, Connectivity};

/// The postprocessing of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Postprocess {
    /// Labels whose components smaller than `min_volume_mm3` become background (0).
    pub remove_small: Vec<u8>,
    /// The smallest component volume kept, mm³.
    pub min_volume_mm3: f64,
    /// Labels of which only the largest component is kept (the rest becomes 0).
    pub keep_largest: Vec<u8>,
    /// Labels whose holes are filled: background voxels (0) in a region of other labels
    /// that does not reach the volume's edge and is enclosed by the label.
    pub fill_holes: Vec<u8>,
    /// Connectivity of a label's components (holes use the complementary one: 6 for 18
    /// or 26, 26 for 6).
    pub connectivity: Connectivity,
}

impl Postprocess {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self.keep_largest.is_empty() && self.fill_holes.is_empty() && self.remove_small.is_empty()
    }

    /// Applies every step to `labels` of `dims` `(i, j, k)` whose voxels measure
    /// `voxel_mm3`.
    ///
    /// # Shapes
    /// `labels`: `[k, j, i]`
    pub fn apply(&self, labels: &mut [u8], dims: [usize; 3], voxel_mm3: f64) {
        if self.min_volume_mm3 > 0.0 {
            let min_voxels = (self.min_volume_mm3 / voxel_mm3.max(f64::MIN_POSITIVE)).ceil() as usize;
            for &l in &self.remove_small {
                remove_small_components(labels, dims, l, min_voxels, self.connectivity);
            }
        }
        for &l in &self.keep_largest {
            keep_largest_component(labels, dims, l, self.connectivity);
        }
        for &l in &self.fill_holes {
            fill_holes(labels, dims, l, self.connectivity);
        }
    }
}

/// Sizes of components `1..=n` (index 0 unused).
fn sizes(components: &[u32], n: usize) -> Vec<usize> {
    let mut s = vec![0usize; n + 1];
    for &c in components {
        s[c as usize] += 1;
    }
    s
}

/// Sets to 0 the voxels of `label` outside its largest component (the first in memory
/// order on ties).
///
/// # Shapes
/// `labels`: `[k, j, i]` with `dims = (i, j, k)`
pub fn keep_largest_component(labels: &mut [u8], dims: [usize; 3], label: u8, connectivity: Connectivity) {
    let mask: Vec<bool> = labels.iter().map(|&v| v == label).collect();
    let (components, n) = label_components(&mask, dims, connectivity);
    if n < 2 {
        return;
    }
    let s = sizes(&components, n);
    let largest = (1..=n).fold(1, |best, c| if s[c] > s[best] { c } else { best }) as u32;
    for (v, &c) in labels.iter_mut().zip(&components) {
        if c != 0 && c != largest {
            *v = 0;
        }
    }
}

/// Sets to 0 the components of `label` with fewer than `min_voxels` voxels.
///
/// # Shapes
/// `labels`: `[k, j, i]` with `dims = (i, j, k)`
pub fn remove_small_components(
    labels: &mut [u8],
    dims: [usize; 3],
    label: u8,
    min_voxels: usize,
    connectivity: Connectivity,
) {
    let mask: Vec<bool> = labels.iter().map(|&v| v == label).collect();
    let (components, n) = label_components(&mask, dims, connectivity);
    let s = sizes(&components, n);
    for (v, &c) in labels.iter_mut().zip(&components) {
        if c != 0 && s[c as usize] < min_voxels {
            *v = 0;
        }
    }
}

/// Fills the holes of `label`: the regions of other values that `label` encloses (they
/// do not reach the volume's edge) have their background voxels (0) set to `label`;
/// other labels inside are kept. An axis of size 1 has no edge (a single slice has 2D
/// holes).
///
/// # Shapes
/// `labels`: `[k, j, i]` with `dims = (i, j, k)`
pub fn fill_holes(labels: &mut [u8], dims: [usize; 3], label: u8, connectivity: Connectivity) {
    let outside: Vec<bool> = labels.iter().map(|&v| v != label).collect();
    let dual = if connectivity == Connectivity::Six { Connectivity::TwentySix } else { Connectivity::Six };
    let (components, n) = label_components(&outside, dims, dual);
    if n == 0 {
        return;
    }
    let [di, dj, dk] = dims;
    let mut reaches_edge = vec![false; n + 1];
    for k in 0..dk {
        for j in 0..dj {
            for i in 0..di {
                let at = |x: usize, d: usize| d > 1 && (x == 0 || x + 1 == d);
                let edge = at(i, di) || at(j, dj) || at(k, dk);
                if edge {
                    reaches_edge[components[(k * dj + j) * di + i] as usize] = true;
                }
            }
        }
    }
    for (v, &c) in labels.iter_mut().zip(&components) {
        if c != 0 && !reaches_edge[c as usize] && *v == 0 {
            *v = label;
        }
    }
}
