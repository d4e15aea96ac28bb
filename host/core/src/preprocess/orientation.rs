//! Orientation: the axis codes of an affine and exact reorientation (axis permutations and
//! flips, no interpolation) to other codes.
//!
//! Axis codes name, for each voxel axis `i, j, k` in order, the world (RAS+) direction in
//! which the index grows: `R`/`L` for world x, `A`/`P` for world y, `S`/`I` for world z.
//! "RAS" is the identity direction, "LPS" the DICOM/ITK convention, "LIA" a common
//! FreeSurfer one.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::grid::{copied, invert_affine, zeroed};
use super::{Grid, PreprocessError};

/// The letters of the positive and negative direction of each world axis.
const LETTERS: [(char, char); 3] = [('R', 'L'), ('A', 'P'), ('S', 'I')];

/// The orientation of a voxel grid: for each voxel axis, the world axis it mostly points
/// along and whether it points towards the positive (R, A, S) end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AxCodes {
    world_axis: [usize; 3],
    positive: [bool; 3],
}

impl AxCodes {
    /// "RAS": voxel axes along world x, y, z, all increasing.
    pub const RAS: Self = Self { world_axis: [0, 1, 2], positive: [true, true, true] };
    /// "LPS": the DICOM/ITK convention.
    pub const LPS: Self = Self { world_axis: [0, 1, 2], positive: [false, false, true] };

    /// Parses three letters such as `"RAS"`, `"lps"` or `"LIA"` (case-insensitive).
    ///
    /// # Errors
    /// [`PreprocessError::InvalidAxcodes`] unless the string is three letters among
    /// R/L/A/P/S/I naming each world axis exactly once.
    pub fn parse(codes: &str) -> Result<Self, PreprocessError> {
        let invalid = |reason| PreprocessError::InvalidAxcodes { codes: codes.to_string(), reason };
        let letters: Vec<char> = codes.chars().map(|c| c.to_ascii_uppercase()).collect();
        if letters.len() != 3 {
            return Err(invalid("not three letters"));
        }
        let mut world_axis = [0; 3];
        let mut positive = [true; 3];
        let mut seen = [false; 3];
        for (v, &ch) in letters.iter().enumerate() {
            let (w, pos) = LETTERS
                .iter()
                .enumerate()
                .find_map(|(w, &(p, n))| (ch == p || ch == n).then_some((w, ch == p)))
                .ok_or_else(|| invalid("a letter is not one of R, L, A, P, S, I"))?;
            if seen[w] {
                return Err(invalid("a world axis is named twice"));
            }
            seen[w] = true;
            world_axis[v] = w;
            positive[v] = pos;
        }
        Ok(Self { world_axis, positive })
    }

    /// The world axis (0 = x R/L, 1 = y A/P, 2 = z S/I) that voxel axis `axis` follows.
    ///
    /// # Panics
    /// Never for `axis < 3`; an `axis ≥ 3` is a programming error and panics on indexing.
    pub fn world_axis(&self, axis: usize) -> usize {
        self.world_axis[axis]
    }

    /// Whether voxel axis `axis` points towards R, A or S (rather than L, P or I).
    pub fn is_positive(&self, axis: usize) -> bool {
        self.positive[axis]
    }

    /// The three letters, e.g. `['L', 'P', 'S']`.
    pub fn letters(&self) -> [char; 3] {
        std::array::from_fn(|v| {
            let (p, n) = LETTERS[self.world_axis[v]];
            if self.positive[v] {
                p
            } else {
                n
            }
        })
    }
}

impl fmt::Display for AxCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.letters().iter().try_for_each(|c| write!(f, "{c}"))
    }
}

impl FromStr for AxCodes {
    type Err = PreprocessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The axis codes of an affine, as nibabel's `aff2axcodes`.
///
/// The columns of the 3×3 part are normalised to unit length and replaced by the nearest
/// orthogonal matrix (the orthogonal factor of the polar decomposition, as nibabel's
/// `io_orientation` does through an SVD). Then, repeatedly, the entry with the largest
/// magnitude among the voxel axes and world axes not yet assigned decides one voxel
/// axis: its world axis, and its sign the direction. For any affine whose columns each
/// have one clearly dominant world component this equals nibabel; for extremely oblique
/// affines (45° ties) nibabel's column-by-column choice can differ. This global choice
/// does not depend on the order of the voxel axes, so [`reorient`] to some codes always
/// yields an affine with exactly those codes.
///
/// # Errors
/// [`PreprocessError::InvalidAffine`] or [`PreprocessError::SingularAffine`].
pub fn axcodes(affine: &[[f64; 4]; 4]) -> Result<AxCodes, PreprocessError> {
    invert_affine(affine)?;
    let mut m = [[0.0f64; 3]; 3];
    for c in 0..3 {
        let norm = (0..3).map(|r| affine[r][c] * affine[r][c]).sum::<f64>().sqrt();
        for r in 0..3 {
            m[r][c] = affine[r][c] / norm;
        }
    }
    let q = polar_orthogonal(m);
    let mut world_axis = [0; 3];
    let mut positive = [true; 3];
    let (mut row_free, mut col_free) = ([true; 3], [true; 3]);
    for _ in 0..3 {
        let mut best: Option<(usize, usize)> = None;
        for c in (0..3).filter(|&c| col_free[c]) {
            for r in (0..3).filter(|&r| row_free[r]) {
                if best.is_none_or(|(br, bc)| q[r][c].abs() > q[br][bc].abs()) {
                    best = Some((r, c));
                }
            }
        }
        let (r, c) = best.expect("three free rows and columns remain at each step");
        world_axis[c] = r;
        positive[c] = q[r][c] >= 0.0;
        row_free[r] = false;
        col_free[c] = false;
    }
    Ok(AxCodes { world_axis, positive })
}

/// The orthogonal factor `Q` of the polar decomposition `M = Q·P` of a nonsingular 3×3
/// matrix, by Newton's iteration `X ← (X + X⁻ᵀ)/2` (quadratic convergence).
fn polar_orthogonal(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut x = m;
    for _ in 0..100 {
        let det = x[0][0] * (x[1][1] * x[2][2] - x[1][2] * x[2][1]) - x[0][1] * (x[1][0] * x[2][2] - x[1][2] * x[2][0])
            + x[0][2] * (x[1][0] * x[2][1] - x[1][1] * x[2][0]);
        if det == 0.0 || !det.is_finite() {
            return x;
        }
        // (X⁻¹)ᵀ[r][c] = cofactor(r, c) / det.
        let mut next = [[0.0; 3]; 3];
        let mut change: f64 = 0.0;
        for r in 0..3 {
            for c in 0..3 {
                let (r1, r2, c1, c2) = ((r + 1) % 3, (r + 2) % 3, (c + 1) % 3, (c + 2) % 3);
                let inv_t = (x[r1][c1] * x[r2][c2] - x[r1][c2] * x[r2][c1]) / det;
                next[r][c] = 0.5 * (x[r][c] + inv_t);
                change = change.max((next[r][c] - x[r][c]).abs());
            }
        }
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    x
}

/// For each output voxel axis `t`: the input axis it reads and whether it runs backwards.
fn plan(from: AxCodes, to: AxCodes) -> [(usize, bool); 3] {
    std::array::from_fn(|t| {
        let s = (0..3).find(|&s| from.world_axis[s] == to.world_axis[t]).expect("both codes name each world axis once");
        (s, from.positive[s] != to.positive[t])
    })
}

/// The grid that [`reorient`] produces, without touching any data.
///
/// # Errors
/// As [`axcodes`] for the grid's affine; [`PreprocessError::EmptyVolume`] for a zero dim.
pub fn reoriented_grid(grid: &Grid, target: AxCodes) -> Result<Grid, PreprocessError> {
    grid.validate()?;
    let source = axcodes(&grid.affine)?;
    Ok(apply_plan_to_grid(grid, &plan(source, target)))
}

fn apply_plan_to_grid(grid: &Grid, plan: &[(usize, bool); 3]) -> Grid {
    let a = &grid.affine;
    let mut affine = grid.affine;
    let mut dims = grid.dims;
    for (t, &(s, flip)) in plan.iter().enumerate() {
        dims[t] = grid.dims[s];
        for r in 0..3 {
            affine[r][t] = if flip { -a[r][s] } else { a[r][s] };
        }
    }
    // Output index x along a flipped axis is input index n-1-x: the origin moves to the
    // world position of the input's last voxel along that axis.
    for r in 0..3 {
        affine[r][3] = a[r][3];
        for &(s, flip) in plan {
            if flip {
                affine[r][3] += a[r][s] * (grid.dims[s] - 1) as f64;
            }
        }
    }
    Grid { dims, affine }
}

/// Permutes and flips the voxel axes of a volume so that its affine has the `target` axis
/// codes, exactly (values are moved, never interpolated).
///
/// The returned grid's affine maps every voxel to the same world position as before (up
/// to rounding of the origin), so `reorient` back to the original codes restores the
/// original array bit for bit (and the original affine up to that rounding; keep the
/// original [`Grid`] to write outputs in the input's geometry).
///
/// # Shapes
/// `data`: `channels × i × j × k` on `grid`; returns the same number of values, on the
/// returned grid whose dims are the input dims permuted.
///
/// # Errors
/// [`PreprocessError::DataLength`] / [`PreprocessError::EmptyVolume`] for a buffer that
/// does not fit `grid`; as [`axcodes`] for the grid's affine.
pub fn reorient(
    data: &[f32],
    channels: usize,
    grid: &Grid,
    target: AxCodes,
) -> Result<(Vec<f32>, Grid), PreprocessError> {
    grid.check_data(data.len(), channels)?;
    grid.validate()?;
    let source = axcodes(&grid.affine)?;
    let plan = plan(source, target);
    let out_grid = apply_plan_to_grid(grid, &plan);
    if plan == [(0, false), (1, false), (2, false)] {
        return Ok((copied(data)?, out_grid));
    }
    let [n0, n1, n2] = grid.dims;
    let in_stride = [1isize, n0 as isize, (n0 * n1) as isize];
    let mut base = 0isize;
    let mut step = [0isize; 3];
    for (t, &(s, flip)) in plan.iter().enumerate() {
        if flip {
            base += (grid.dims[s] as isize - 1) * in_stride[s];
            step[t] = -in_stride[s];
        } else {
            step[t] = in_stride[s];
        }
    }
    let [m0, m1, _] = out_grid.dims;
    let voxels = n0 * n1 * n2;
    let slice = m0 * m1;
    let mut out = zeroed(data.len())?;
    out.par_chunks_mut(slice).enumerate().for_each(|(chunk, dst)| {
        let (c, k) = (chunk / out_grid.dims[2], chunk % out_grid.dims[2]);
        let src = &data[c * voxels..(c + 1) * voxels];
        for j in 0..m1 {
            // Offsets stay inside 0..voxels by construction of base and step.
            let start = base + k as isize * step[2] + j as isize * step[1];
            let row = &mut dst[j * m0..(j + 1) * m0];
            if step[0] == 1 {
                let s = start as usize;
                row.copy_from_slice(&src[s..s + m0]);
            } else {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = src[(start + i as isize * step[0]) as usize];
                }
            }
        }
    });
    Ok((out, out_grid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::grid::IDENTITY;

    fn diag(d: [f64; 3], origin: [f64; 3]) -> [[f64; 4]; 4] {
        let mut a = IDENTITY;
        for r in 0..3 {
            a[r][r] = d[r];
            a[r][3] = origin[r];
        }
        a
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|v| v as f32 * 0.5 - 3.0).collect()
    }

    #[test]
    fn preprocess_axcodes_of_common_affines() {
        assert_eq!(axcodes(&diag([1.0, 1.0, 1.0], [0.0; 3])).unwrap().to_string(), "RAS");
        assert_eq!(axcodes(&diag([-1.0, -2.0, 3.0], [0.0; 3])).unwrap().to_string(), "LPS");
        // FreeSurfer conformed space: i → L, j → I, k → A.
        let lia = [[-1.0, 0.0, 0.0, 128.0], [0.0, 0.0, 1.0, -128.0], [0.0, -1.0, 0.0, 128.0], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(axcodes(&lia).unwrap().to_string(), "LIA");
        // A slightly oblique, sheared affine still reads as its dominant directions.
        let oblique = [[0.1, 0.05, -0.9, 0.0], [0.95, 0.1, 0.0, 0.0], [0.0, 1.2, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(axcodes(&oblique).unwrap().to_string(), "ASL");
        assert_eq!(AxCodes::parse("lia").unwrap().to_string(), "LIA");
        assert_eq!("RAS".parse::<AxCodes>().unwrap(), AxCodes::RAS);
        for bad in ["RA", "RAR", "RLS", "XYZ", "RASS"] {
            let err = AxCodes::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn preprocess_reorient_round_trip_is_bit_exact() {
        let grid = Grid::new([3, 4, 5], diag([2.0, -1.5, 1.0], [5.0, 7.0, -9.0])).unwrap();
        let data = ramp(2 * 60);
        let original = axcodes(&grid.affine).unwrap();
        for target in ["RAS", "LPS", "LIA", "SPL", "IRA", "ASR"] {
            let target = AxCodes::parse(target).unwrap();
            let (out, g) = reorient(&data, 2, &grid, target).unwrap();
            assert_eq!(axcodes(&g.affine).unwrap(), target);
            assert_eq!(g, reoriented_grid(&grid, target).unwrap());
            let (back, g2) = reorient(&out, 2, &g, original).unwrap();
            assert_eq!(back, data, "round trip through {target}");
            assert_eq!(g2.dims, grid.dims);
            for r in 0..4 {
                for c in 0..4 {
                    assert!((g2.affine[r][c] - grid.affine[r][c]).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn preprocess_reorient_flipped_affine_moves_the_right_voxels() {
        // i points left: reorienting to RAS reverses i only.
        let grid = Grid::new([3, 2, 2], diag([-1.0, 1.0, 1.0], [10.0, 0.0, 0.0])).unwrap();
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (out, g) = reorient(&data, 1, &grid, AxCodes::RAS).unwrap();
        assert_eq!(out, vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0, 8.0, 7.0, 6.0, 11.0, 10.0, 9.0]);
        assert_eq!(g.dims, [3, 2, 2]);
        assert_eq!(g.affine[0], [1.0, 0.0, 0.0, 8.0]);
        // The voxel with value 0 sat at world x = 10 and still does.
        assert_eq!(g.voxel_to_world([2.0, 0.0, 0.0]), [10.0, 0.0, 0.0]);
    }

    #[test]
    fn preprocess_reorient_preserves_world_positions_of_corners() {
        let a = [[0.0, 0.0, -2.0, 30.0], [1.5, 0.0, 0.0, -12.0], [0.0, -1.0, 0.0, 4.0], [0.0, 0.0, 0.0, 1.0]];
        let grid = Grid::new([4, 3, 5], a).unwrap();
        let data = ramp(60);
        let (out, g) = reorient(&data, 1, &grid, AxCodes::RAS).unwrap();
        assert_eq!(g.dims, [5, 4, 3]);
        // Every voxel value sits at the same world point, corners included.
        let world_of = |grid: &Grid, vals: &[f32]| {
            let mut pts = Vec::new();
            for k in 0..grid.dims[2] {
                for j in 0..grid.dims[1] {
                    for i in 0..grid.dims[0] {
                        let w = grid.voxel_to_world([i as f64, j as f64, k as f64]);
                        pts.push((w.map(|x| (x * 1e6).round() as i64), vals[grid.index(i, j, k)].to_bits()));
                    }
                }
            }
            pts.sort();
            pts
        };
        assert_eq!(world_of(&grid, &data), world_of(&g, &out));
        let corner = grid.voxel_to_world([3.0, 2.0, 4.0]);
        let v = data[grid.index(3, 2, 4)];
        let pos = out.iter().position(|&x| x == v).unwrap();
        let (i, j, k) = (pos % 5, (pos / 5) % 4, pos / 20);
        assert_eq!(g.voxel_to_world([i as f64, j as f64, k as f64]), corner);
    }

    #[test]
    fn preprocess_reorient_rejects_wrong_length() {
        let grid = Grid::from_dims([2, 2, 2]);
        let err = reorient(&[0.0; 7], 1, &grid, AxCodes::LPS).unwrap_err();
        assert!(matches!(err, PreprocessError::DataLength { expected: 8, got: 7, .. }));
    }
}
