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
}

impl Tiling {
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
        let t = Tiling { window: [8, 8, 8], border: [2, 2, 2], overlap: 0.0, batch_size: 1 };
        assert_eq!(t.kept(), [4, 4, 4]);
        let c = t.corners([8, 8, 8]);
        assert_eq!(c.len(), 8);
        assert!(c.windows(2).all(|w| w[0][2] <= w[1][2]));
        assert_eq!(t.window_start([0, 4, 0]), [-2, 2, -2]);
    }
}
