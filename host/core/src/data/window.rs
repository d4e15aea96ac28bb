//! Copying windows out of volumes and back into them.

/// Appends to `out` the window of every channel starting at voxel `corner` `(i, j, k)`,
/// each value converted to the output's type (`T::from`, exact). The window may start
/// before or end past the volume: voxels outside are `fill`.
///
/// # Shapes
/// - `src`: `[channels, k, j, i]` in memory, with `dims = (i, j, k)`
/// - appended: `[channels, wk, wj, wi]` with `window = (wi, wj, wk)`
pub fn extract<S: Copy, T: Copy + From<S>>(
    src: &[S],
    dims: [usize; 3],
    channels: usize,
    corner: [isize; 3],
    window: [usize; 3],
    fill: T,
    out: &mut Vec<T>,
) {
    let [di, dj, dk] = dims;
    let [wi, wj, wk] = window;
    let voxels = di * dj * dk;
    // The run of i inside the volume, in window coordinates.
    let i_lo = (-corner[0]).clamp(0, wi as isize) as usize;
    let i_hi = ((di as isize - corner[0]).clamp(0, wi as isize) as usize).max(i_lo);
    for c in 0..channels {
        let channel = &src[c * voxels..(c + 1) * voxels];
        for z in 0..wk {
            let k = corner[2] + z as isize;
            for y in 0..wj {
                let j = corner[1] + y as isize;
                if k < 0 || k >= dk as isize || j < 0 || j >= dj as isize || i_lo == i_hi {
                    out.extend(std::iter::repeat_n(fill, wi));
                    continue;
                }
                let row = (k as usize * dj + j as usize) * di;
                let start = (corner[0] + i_lo as isize) as usize;
                out.extend(std::iter::repeat_n(fill, i_lo));
                out.extend(channel[row + start..row + start + (i_hi - i_lo)].iter().map(|&v| T::from(v)));
                out.extend(std::iter::repeat_n(fill, wi - i_hi));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×3×2 volume whose value is its flat index.
    fn ramp() -> Vec<f32> {
        (0..24).map(|v| v as f32).collect()
    }

    #[test]
    fn inside_window_copies_the_right_voxels() {
        let mut out = Vec::new();
        extract(&ramp(), [4, 3, 2], 1, [1, 1, 1], [2, 2, 1], -1.0, &mut out);
        // k=1, j=1..3, i=1..3 → indices 12+4+1, 12+4+2, 12+8+1, 12+8+2
        assert_eq!(out, vec![17.0, 18.0, 21.0, 22.0]);
    }

    #[test]
    fn voxels_outside_are_filled() {
        let mut out = Vec::new();
        extract(&ramp(), [4, 3, 2], 1, [-1, 2, 1], [3, 2, 1], -1.0, &mut out);
        // j=2 is inside (row k=1,j=2 → 20..24), j=3 is outside.
        assert_eq!(out, vec![-1.0, 20.0, 21.0, -1.0, -1.0, -1.0]);
    }
}
