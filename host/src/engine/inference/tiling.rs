//! How a volume is covered with windows: window size, NiftyNet's `border` crop, overlap
//! and windows per forward pass.

use crate::data::grid::corners;

/// How the volume is tiled with windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tiling {
    /// Window fed to the network `(i, j, k)`.
    pub window: [usize; 3],
    /// Voxels dropped from each side of every output window (NiftyNet's `border`): only
    /// the central `window - 2·border` of each output is kept.
    pub border: [usize; 3],
    /// Fraction of a kept region shared with its neighbour, in `[0, 1)`.
    pub overlap: f64,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// A 0 in `window` takes the volume's full extent (plus both borders), rounded up
    /// to a multiple of this per axis ([`Tiling::for_volume`]).
    pub full_extent_multiple: [usize; 3],
}

impl Tiling {
    /// The tiling of a volume of `dims`: each 0 axis of the window becomes
    /// `dims + 2·border` rounded up to a multiple of `full_extent_multiple`, so one window
    /// keeps the whole axis (NiftyNet's 0 = "the full length of the image"); the part
    /// past the volume is padding.
    pub fn for_volume(&self, dims: [usize; 3]) -> Tiling {
        let window = std::array::from_fn(|a| match self.window[a] {
            0 => (dims[a] + 2 * self.border[a]).next_multiple_of(self.full_extent_multiple[a].max(1)),
            w => w,
        });
        Tiling { window, ..*self }
    }

    /// The central region kept from every output window `(i, j, k)`.
    pub fn kept(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.window[a].saturating_sub(2 * self.border[a]).max(1))
    }

    /// Corners `(i, j, k)` of the kept regions that cover a volume of `dims`, with `k`
    /// slowest: a window never touches a slice below the corner of a later window, which
    /// lets the aggregator finish slices as it goes. The network's window starts
    /// `border` voxels before its corner.
    pub fn corners(&self, dims: [usize; 3]) -> Vec<[usize; 3]> {
        corners(dims, self.kept(), self.overlap)
    }

    /// Where the window of kept region `corner` starts (may be negative: padding).
    pub fn window_start(&self, corner: [usize; 3]) -> [isize; 3] {
        std::array::from_fn(|a| corner[a] as isize - self.border[a] as isize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_are_k_major_and_windows_start_border_earlier() {
        let t =
            Tiling { window: [8, 8, 8], border: [2, 2, 2], overlap: 0.0, batch_size: 1, full_extent_multiple: [1; 3] };
        assert_eq!(t.kept(), [4, 4, 4]);
        let c = t.corners([8, 8, 8]);
        assert_eq!(c.len(), 8);
        assert!(c.windows(2).all(|w| w[0][2] <= w[1][2]));
        assert_eq!(t.window_start([0, 4, 0]), [-2, 2, -2]);
    }

    #[test]
    fn zero_axes_take_the_full_extent_inside_the_border_rounded_up() {
        let t = Tiling {
            window: [0, 0, 3],
            border: [0, 2, 1],
            overlap: 0.0,
            batch_size: 1,
            full_extent_multiple: [4, 8, 8],
        };
        let v = t.for_volume([21, 30, 10]);
        // i: 21 -> 24; j: 30 + 4 = 34 -> 40; k stays.
        assert_eq!(v.window, [24, 40, 3]);
        assert!(v.kept()[0] >= 21 && v.kept()[1] >= 30);
        assert_eq!(v.corners([21, 30, 10]).len(), 10, "one window per k slice");
        assert_eq!(t.for_volume([8, 8, 8]).window, [8, 16, 3]);
    }
}
