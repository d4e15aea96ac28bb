//! Connected components of a mask, and the matching of reference components with
//! segmentation components (detection counts and per-component Dice).
//!
//! # Definitions
//! - **Components** are 6-, 18- or 26-connected (face; face or edge; face, edge or corner
//!   neighbours). They are numbered `1..=n` in the order of their first voxel in memory
//!   order (`i` fastest, then `j`, then `k`): the order `scipy.ndimage.label` gives on the
//!   array indexed `[k, j, i]`, and ITK's `ConnectedComponentImageFilter` on the image.
//! - A **reference component `R` is detected** when the segmentation mask covers more
//!   than `min_overlap` of its voxels: `|R ∩ S| > min_overlap · |R|` (with the default
//!   `min_overlap = 0`: any overlap). Otherwise it is **missed** (a false negative).
//! - A **segmentation component `C` is spurious** (a false positive) when `|C ∩ R| ≤
//!   min_overlap · |C|`, `R` the whole reference mask; otherwise it is **matched**.
//! - **Per-component Dice** of a reference component `R`: Dice between `R` and the union
//!   `U` of the segmentation components that overlap it, `2|R ∩ U| / (|R| + |U|)` (0 for a
//!   component nothing overlaps). A segmentation blob spanning two reference components
//!   counts wholly in both Dice values.
//! - **Detection** precision `= matched / segmentation components`, recall `= detected /
//!   reference components`, F1 their harmonic mean; a ratio with a zero denominator is
//!   NaN, and so is F1 then (0 when precision and recall are both 0).

use std::collections::HashMap;

use serde::Serialize;

use super::bbox::{bounding_box, crop};

/// Which neighbours connect voxels into one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Connectivity {
    /// Face neighbours.
    Six,
    /// Face and edge neighbours.
    Eighteen,
    /// Face, edge and corner neighbours.
    TwentySix,
}

impl Connectivity {
    /// From the number of neighbours: 6, 18 or 26.
    pub fn from_neighbours(n: u32) -> Option<Self> {
        match n {
            6 => Some(Self::Six),
            18 => Some(Self::Eighteen),
            26 => Some(Self::TwentySix),
            _ => None,
        }
    }

    /// The number of neighbours.
    pub fn neighbours(self) -> u32 {
        match self {
            Self::Six => 6,
            Self::Eighteen => 18,
            Self::TwentySix => 26,
        }
    }

    /// The neighbour offsets that come earlier in memory order (half of them).
    fn backward_offsets(self) -> Vec<[isize; 3]> {
        let max_l1 = match self {
            Self::Six => 1,
            Self::Eighteen => 2,
            Self::TwentySix => 3,
        };
        let mut out = Vec::new();
        for dk in -1isize..=1 {
            for dj in -1isize..=1 {
                for di in -1isize..=1 {
                    let l1 = di.abs() + dj.abs() + dk.abs();
                    let earlier = dk < 0 || (dk == 0 && (dj < 0 || (dj == 0 && di < 0)));
                    if earlier && l1 <= max_l1 {
                        out.push([di, dj, dk]);
                    }
                }
            }
        }
        out
    }
}

/// Labels the connected components of `mask`: `0` for background, `1..=n` for the
/// components in order of their first voxel. Returns the labels and `n`.
///
/// # Panics
/// When `mask.len()` is not `dims[0] * dims[1] * dims[2]`, or the mask has more than
/// `u32::MAX - 1` provisional components.
pub fn label_components(mask: &[bool], dims: [usize; 3], connectivity: Connectivity) -> (Vec<u32>, usize) {
    let [nx, ny, nz] = dims;
    assert_eq!(mask.len(), nx * ny * nz, "mask and dims disagree");
    let offsets = connectivity.backward_offsets();
    // When the left neighbour is foreground, the neighbours it shares with this voxel
    // are already merged with it: only the others need a look.
    let after_left: Vec<[isize; 3]> =
        offsets.iter().copied().filter(|o| *o == [-1, 0, 0] || !offsets.contains(&[o[0] + 1, o[1], o[2]])).collect();
    let strides = [1isize, nx as isize, (nx * ny) as isize];
    let linear = |o: &[isize; 3]| o[0] * strides[0] + o[1] * strides[1] + o[2] * strides[2];
    let all: Vec<([isize; 3], isize)> = offsets.iter().map(|o| (*o, linear(o))).collect();
    let reduced: Vec<([isize; 3], isize)> = after_left.iter().map(|o| (*o, linear(o))).collect();
    let mut labels = vec![0u32; mask.len()];
    // parent[l] for provisional labels (index 0 unused).
    let mut parent: Vec<u32> = vec![0];
    let mut neighbours = Vec::with_capacity(13);
    for k in 0..nz {
        for j in 0..ny {
            let row = nx * (j + ny * k);
            if !mask[row..row + nx].contains(&true) {
                continue;
            }
            for i in 0..nx {
                let n = row + i;
                if !mask[n] {
                    continue;
                }
                neighbours.clear();
                let interior = i > 0 && i + 1 < nx && j > 0 && j + 1 < ny && k > 0;
                let look = if i > 0 && mask[n - 1] { &reduced } else { &all };
                for &(o, d) in look {
                    let inside = interior || {
                        let c = [i as isize + o[0], j as isize + o[1], k as isize + o[2]];
                        c[0] >= 0 && (c[0] as usize) < nx && c[1] >= 0 && (c[1] as usize) < ny && c[2] >= 0
                    };
                    if inside {
                        let l = labels[(n as isize + d) as usize];
                        if l != 0 && neighbours.last() != Some(&l) {
                            neighbours.push(l);
                        }
                    }
                }
                labels[n] = match neighbours.first() {
                    None => {
                        let l = u32::try_from(parent.len()).expect("fewer than 2³² components");
                        parent.push(l);
                        l
                    }
                    Some(&first) => {
                        let mut root = find(&mut parent, first);
                        for &l in &neighbours[1..] {
                            let r = find(&mut parent, l);
                            if r != root {
                                // Keep the smaller (earlier) root.
                                let (lo, hi) = if r < root { (r, root) } else { (root, r) };
                                parent[hi as usize] = lo;
                                root = lo;
                            }
                        }
                        root
                    }
                };
            }
        }
    }
    // Final labels: roots numbered in increasing order. A component's first voxel has no
    // earlier neighbour in it, so it creates a provisional label, smaller than any other
    // of that component; merges keep the smaller root, so the root is that label and
    // increasing roots are in the order of first voxels.
    let mut final_of = vec![0u32; parent.len()];
    let mut count = 0u32;
    for l in 1..parent.len() {
        // The root is at most l: numbered already when smaller.
        let r = find(&mut parent, l as u32) as usize;
        final_of[l] = if r == l {
            count += 1;
            count
        } else {
            final_of[r]
        };
    }
    for v in &mut labels {
        *v = final_of[*v as usize];
    }
    (labels, count as usize)
}

fn find(parent: &mut [u32], mut l: u32) -> u32 {
    let mut root = l;
    while parent[root as usize] != root {
        root = parent[root as usize];
    }
    while parent[l as usize] != root {
        let next = parent[l as usize];
        parent[l as usize] = root;
        l = next;
    }
    root
}

/// One reference or segmentation component and how it matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// Its number, `1..=n` in order of first voxel.
    pub id: usize,
    /// Its voxels.
    pub voxels: u64,
    /// The mean voxel index `(i, j, k)`.
    pub centroid: [f64; 3],
    /// Voxels also in the other mask.
    pub overlap_voxels: u64,
    /// Components of the other side that it overlaps.
    pub overlapping: Vec<usize>,
    /// Detected (reference) or matched (segmentation).
    pub hit: bool,
    /// Per-component Dice (reference components only; NaN for segmentation ones).
    pub dice: f64,
}

/// Components of both masks and the detection counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentSummary {
    /// The connectivity used.
    pub connectivity: Connectivity,
    /// The overlap fraction a component must exceed to count as found.
    pub min_overlap: f64,
    /// Reference components.
    pub reference: Vec<Component>,
    /// Segmentation components.
    pub segmentation: Vec<Component>,
}

impl ComponentSummary {
    /// Reference components.
    pub fn ref_components(&self) -> usize {
        self.reference.len()
    }

    /// Segmentation components.
    pub fn seg_components(&self) -> usize {
        self.segmentation.len()
    }

    /// Detected reference components (true positives).
    pub fn detected(&self) -> usize {
        self.reference.iter().filter(|c| c.hit).count()
    }

    /// Missed reference components (false negatives).
    pub fn missed(&self) -> usize {
        self.ref_components() - self.detected()
    }

    /// Segmentation components that overlap a reference component.
    pub fn matched(&self) -> usize {
        self.segmentation.iter().filter(|c| c.hit).count()
    }

    /// Spurious segmentation components (false positives).
    pub fn spurious(&self) -> usize {
        self.seg_components() - self.matched()
    }

    /// `matched / segmentation components` (NaN without segmentation components).
    pub fn precision(&self) -> f64 {
        ratio(self.matched(), self.seg_components())
    }

    /// `detected / reference components` (NaN without reference components).
    pub fn recall(&self) -> f64 {
        ratio(self.detected(), self.ref_components())
    }

    /// Harmonic mean of precision and recall: NaN when either is NaN (no components on
    /// one side), 0 when both are 0.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// Mean per-component Dice over reference components (missed ones count 0; NaN
    /// without reference components).
    pub fn mean_dice(&self) -> f64 {
        if self.reference.is_empty() {
            f64::NAN
        } else {
            self.reference.iter().map(|c| c.dice).sum::<f64>() / self.reference.len() as f64
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Per-component tallies of one mask's components (index 0 unused: background).
struct Side {
    size: Vec<u64>,
    /// Sum of voxel indices, for the centroid.
    sum: Vec<[f64; 3]>,
    /// Voxels inside the other mask.
    inside_other: Vec<u64>,
    /// Components of the other mask that it overlaps, ascending.
    partners: Vec<Vec<usize>>,
}

impl Side {
    fn new(components: usize) -> Self {
        Side {
            size: vec![0; components + 1],
            sum: vec![[0.0; 3]; components + 1],
            inside_other: vec![0; components + 1],
            partners: vec![Vec::new(); components + 1],
        }
    }

    /// Counts voxel `c` for component `label` (nothing for background, 0).
    fn add(&mut self, label: u32, c: [f64; 3], in_other: bool) {
        if label == 0 {
            return;
        }
        let l = label as usize;
        self.size[l] += 1;
        for a in 0..3 {
            self.sum[l][a] += c[a];
        }
        if in_other {
            self.inside_other[l] += 1;
        }
    }

    /// The components `1..=n`, with `dice(partners, voxels, overlap_voxels)`.
    fn components(&mut self, min_overlap: f64, dice: impl Fn(&[usize], u64, u64) -> f64) -> Vec<Component> {
        (1..self.size.len())
            .map(|id| {
                let (size, overlap) = (self.size[id], self.inside_other[id]);
                let overlapping = std::mem::take(&mut self.partners[id]);
                Component {
                    id,
                    voxels: size,
                    centroid: self.sum[id].map(|v| v / size as f64),
                    overlap_voxels: overlap,
                    dice: dice(&overlapping, size, overlap),
                    overlapping,
                    hit: overlap as f64 > min_overlap * size as f64,
                }
            })
            .collect()
    }
}

/// Components of `seg` and `reference` and how they match (see the module docs).
///
/// # Panics
/// When a mask's length is not `dims[0] * dims[1] * dims[2]`.
pub fn match_components(
    seg: &[bool],
    reference: &[bool],
    dims: [usize; 3],
    connectivity: Connectivity,
    min_overlap: f64,
) -> ComponentSummary {
    assert_eq!(seg.len(), dims.iter().product::<usize>(), "segmentation mask and dims disagree");
    assert_eq!(reference.len(), seg.len(), "reference mask and dims disagree");
    // Labelled on the bounding box of both masks only: the components, their order of
    // first voxels and their overlaps are those of the whole volume.
    let (lo, hi) = bounding_box(&[seg, reference], dims).unwrap_or(([0; 3], [0; 3]));
    let box_dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let ((seg_labels, n_seg), (ref_labels, n_ref)) = rayon::join(
        || label_components(&crop(seg, dims, lo, hi), box_dims, connectivity),
        || label_components(&crop(reference, dims, lo, hi), box_dims, connectivity),
    );
    let mut seg_side = Side::new(n_seg);
    let mut ref_side = Side::new(n_ref);
    let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
    // Overlapping voxels come in runs of one pair: count runs before hashing.
    let mut run: ((u32, u32), u64) = ((0, 0), 0);
    let [nx, ny, nz] = box_dims;
    for k in 0..nz {
        for j in 0..ny {
            let row = nx * (j + ny * k);
            let (srow, rrow) = (&seg_labels[row..row + nx], &ref_labels[row..row + nx]);
            for (i, (&s, &r)) in srow.iter().zip(rrow).enumerate() {
                if s == 0 && r == 0 {
                    continue;
                }
                // Voxel indices in the volume.
                let c = [(lo[0] + i) as f64, (lo[1] + j) as f64, (lo[2] + k) as f64];
                seg_side.add(s, c, r != 0);
                ref_side.add(r, c, s != 0);
                if s != 0 && r != 0 {
                    if run.0 != (r, s) {
                        if run.1 > 0 {
                            *pairs.entry(run.0).or_insert(0) += run.1;
                        }
                        run = ((r, s), 0);
                    }
                    run.1 += 1;
                }
            }
        }
    }
    if run.1 > 0 {
        *pairs.entry(run.0).or_insert(0) += run.1;
    }
    let mut sorted: Vec<(u32, u32)> = pairs.keys().copied().collect();
    sorted.sort_unstable();
    for (r, s) in sorted {
        ref_side.partners[r as usize].push(s as usize);
        seg_side.partners[s as usize].push(r as usize);
    }
    // A reference component's Dice counts every segmentation component it touches.
    let reference = ref_side.components(min_overlap, |partners, size, overlap| {
        let union: u64 = partners.iter().map(|&s| seg_side.size[s]).sum();
        2.0 * overlap as f64 / (size + union) as f64
    });
    let segmentation = seg_side.components(min_overlap, |_, _, _| f64::NAN);
    ComponentSummary { connectivity, min_overlap, reference, segmentation }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(dims: [usize; 3], voxels: &[[usize; 3]]) -> Vec<bool> {
        let mut m = vec![false; dims.iter().product()];
        for v in voxels {
            m[v[0] + dims[0] * (v[1] + dims[1] * v[2])] = true;
        }
        m
    }

    #[test]
    fn connectivity_decides_what_touches() {
        let dims = [4, 4, 4];
        // Two voxels touching by a corner, two by an edge.
        let corner = mask(dims, &[[0, 0, 0], [1, 1, 1]]);
        let edge = mask(dims, &[[0, 0, 0], [1, 1, 0]]);
        for (m, want6, want18, want26) in [(&corner, 2, 2, 1), (&edge, 2, 1, 1)] {
            assert_eq!(label_components(m, dims, Connectivity::Six).1, want6);
            assert_eq!(label_components(m, dims, Connectivity::Eighteen).1, want18);
            assert_eq!(label_components(m, dims, Connectivity::TwentySix).1, want26);
        }
    }

    #[test]
    fn labels_follow_first_voxel_order_across_merges() {
        // A U whose arms (i = 0 and i = 2) meet only in the last row, and a voxel at
        // i = 4 first seen before the arms meet: the U is 1, the voxel 2.
        let dims = [5, 3, 1];
        let m = mask(dims, &[[0, 0, 0], [2, 0, 0], [4, 0, 0], [0, 1, 0], [2, 1, 0], [0, 2, 0], [1, 2, 0], [2, 2, 0]]);
        let (labels, n) = label_components(&m, dims, Connectivity::Six);
        assert_eq!(n, 2);
        assert_eq!((labels[0], labels[2], labels[4], labels[11]), (1, 1, 2, 1));
        // With 26-connectivity a diagonal voxel joins; the numbering stays dense.
        let m = mask(dims, &[[4, 0, 0], [3, 1, 0], [0, 2, 0]]);
        let (labels, n) = label_components(&m, dims, Connectivity::TwentySix);
        assert_eq!(n, 2);
        assert_eq!((labels[4], labels[8], labels[10]), (1, 1, 2));
    }

    #[test]
    fn matching_counts_detections_misses_and_spurious_blobs() {
        let dims = [10, 3, 1];
        // Reference: blobs at i = 0..2, 4..5, 8. Segmentation: i = 1..4 (touches the
        // first two reference blobs), 6 (spurious).
        let r = mask(dims, &[[0, 0, 0], [1, 0, 0], [4, 0, 0], [5, 0, 0], [8, 0, 0]]);
        let s = mask(dims, &[[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [6, 0, 0]]);
        let m = match_components(&s, &r, dims, Connectivity::Six, 0.0);
        assert_eq!((m.ref_components(), m.seg_components()), (3, 2));
        assert_eq!((m.detected(), m.missed(), m.spurious()), (2, 1, 1));
        // Reference blob 1 = {0, 1} against segmentation blob {1..4}: 2·1 / (2 + 4).
        assert!((m.reference[0].dice - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.reference[2].dice, 0.0);
        assert!((m.precision() - 0.5).abs() < 1e-12 && (m.recall() - 2.0 / 3.0).abs() < 1e-12);
        // Requiring more than half of each component overlapped.
        let m = match_components(&s, &r, dims, Connectivity::Six, 0.5);
        assert_eq!((m.detected(), m.spurious()), (0, 2));
        let empty = vec![false; 30];
        let m = match_components(&empty, &empty, dims, Connectivity::TwentySix, 0.0);
        assert!(m.precision().is_nan() && m.recall().is_nan() && m.f1().is_nan() && m.mean_dice().is_nan());
    }
}
