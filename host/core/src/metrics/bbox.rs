//! Bounding boxes of masks and crops of masks to a box: the metrics work on the part of
//! a volume that holds the masks.

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
