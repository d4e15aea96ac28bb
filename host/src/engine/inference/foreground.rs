//! The part of a volume worth running windows over: the bounding box of the voxels that
//! differ from the background (the value of the first voxel, channel by channel), widened
//! by a margin. Outside it every input voxel is background and is given class 0, as
//! nnU-Net does outside its crop to the non-zero region: a skull-stripped brain fills a
//! fifth of the MNI152 box, and the windows run over it fall from 80 to 36.
//!
//! The network's own output for a window of background is no stand-in: instance or group
//! norm turn a constant input into zeros, and what the layers after them make of zeros
//! is arbitrary (the example's U-Net calls it grey matter).

/// A box of voxels: `start` and `size` along `(i, j, k)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First voxel `(i, j, k)`.
    pub start: [usize; 3],
    /// Voxels along each axis.
    pub size: [usize; 3],
}

impl Region {
    /// The whole volume of `dims`.
    pub fn whole(dims: [usize; 3]) -> Region {
        Region { start: [0; 3], size: dims }
    }

    /// Whether the region is the whole volume of `dims`.
    pub fn is_whole(&self, dims: [usize; 3]) -> bool {
        *self == Region::whole(dims)
    }
}

/// The bounding box of the voxels where some channel differs (bit for bit) from its
/// first voxel, or `None` when the whole volume is background.
///
/// # Shapes
/// `image`: `[C, k, j, i]`, `dims` `(i, j, k)`
pub fn bounding_box(image: &[f32], channels: usize, dims: [usize; 3]) -> Option<Region> {
    let [di, dj, dk] = dims;
    let voxels = di * dj * dk;
    if voxels == 0 || channels == 0 {
        return None;
    }
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for channel in image.chunks_exact(voxels).take(channels) {
        let bg = channel[0].to_bits();
        for (r, row) in channel.chunks_exact(di).enumerate() {
            let Some(first) = row.iter().position(|v| v.to_bits() != bg) else { continue };
            let last = row.iter().rposition(|v| v.to_bits() != bg).unwrap_or(first);
            let (j, k) = (r % dj, r / dj);
            for (a, (l, h)) in [(first, last), (j, j), (k, k)].into_iter().enumerate() {
                lo[a] = lo[a].min(l);
                hi[a] = hi[a].max(h);
            }
        }
    }
    (lo[0] != usize::MAX).then(|| Region { start: lo, size: std::array::from_fn(|a| hi[a] + 1 - lo[a]) })
}

/// `region` widened by `margin` voxels on each side and then, centred, to at least
/// `least` along each axis, all within a volume of `dims`.
pub fn widen(region: Region, margin: usize, least: [usize; 3], dims: [usize; 3]) -> Region {
    let mut out = region;
    for a in 0..3 {
        let mut start = region.start[a].saturating_sub(margin);
        let mut end = (region.start[a] + region.size[a] + margin).min(dims[a]);
        let want = least[a].min(dims[a]);
        if end - start < want {
            let missing = want - (end - start);
            start = start.saturating_sub(missing / 2 + missing % 2);
            end = (start + want).min(dims[a]);
            start = end - want;
        }
        out.start[a] = start;
        out.size[a] = end - start;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_holds_every_voxel_of_any_channel_that_differs_from_the_first() {
        // 6 × 5 × 4, two channels: channel 0 differs at (1, 2, 3), channel 1 at (4, 0, 1).
        let dims = [6, 5, 4];
        let voxels = 120;
        let mut image = vec![0.0f32; 2 * voxels];
        image[voxels..].iter_mut().for_each(|v| *v = -1.0);
        image[(3 * 5 + 2) * 6 + 1] = 7.0;
        image[voxels + 5 * 6 + 4] = 2.0;
        assert_eq!(bounding_box(&image, 2, dims), Some(Region { start: [1, 0, 1], size: [4, 3, 3] }));
        assert_eq!(bounding_box(&vec![3.0; voxels], 1, dims), None, "all background");
    }

    #[test]
    fn widening_adds_the_margin_then_reaches_the_least_size_inside_the_volume() {
        let dims = [20, 20, 20];
        let r = Region { start: [1, 10, 18], size: [2, 4, 2] };
        let w = widen(r, 1, [8, 4, 8], dims);
        // i: 0..4 by the margin, then 8 wide from 0; j: 9..15; k: 17..20, then 8 ending at 20.
        assert_eq!(w, Region { start: [0, 9, 12], size: [8, 6, 8] });
        assert_eq!(widen(r, 0, [32, 1, 1], dims).size[0], 20, "never beyond the volume");
        assert!(widen(Region::whole(dims), 4, [8; 3], dims).is_whole(dims));
    }
}
