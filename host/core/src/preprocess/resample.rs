//! Resampling to a new voxel size, and back onto any other grid.
//!
//! # Grid convention
//! [`resample`] keeps the world position of the field-of-view centre and the directions
//! of the voxel axes. Along each voxel axis with `n` voxels of size `s` and a target size
//! `s'`:
//!
//! * the new voxel count is `n' = max(1, round(n · s / s'))`, rounding halves away from
//!   zero (`f64::round`), so the new extent `n'·s'` is within `s'/2` of the old `n·s`;
//! * the new voxel centres, in old voxel coordinates, are `x₀ + m·r` for `m = 0..n'` with
//!   `r = s'/s` and `x₀ = (n − 1)/2 − (n' − 1)·r/2`: the centre of the old voxel
//!   centres, `(n − 1)/2`, is also the centre of the new ones;
//! * the new affine is the old one with column `a` scaled by `r` and its origin moved to
//!   the world position of `x₀` (`A' = A · [diag(r) x₀; 0 1]`).
//!
//! `x₀ = 0` exactly when `(n − 1) = (n' − 1)·r`, i.e. when the first and last old voxel
//! centres are both new centres: then every new centre at an integer `m·r` is an old one.
//! Halving an odd `n` is such a case: 197 voxels at 1 mm → 99 at 2 mm keeps the first
//! voxel centre, and the new voxels are every second old one (the bundled 2 mm MNI152 grid
//! is exactly that subsampling of the 1 mm grid, origin included). Halving an even `n`
//! puts the new centres half-way between old ones (`x₀ = 0.5`), as the centred field of
//! view requires. nibabel's `resample_to_output` instead always keeps the first voxel
//! centre (and lets the field of view grow at the far end); the two agree whenever
//! `x₀ = 0`.
//!
//! # Sampling
//! Each output voxel centre is mapped to a fractional input position `p` (positions within
//! `10⁻⁶` voxel of an integer are snapped to it, so grid-aligned samples copy values
//! bit-exactly). [`Interp::Linear`] is trilinear interpolation between the 8 surrounding
//! voxels; [`Interp::Cubic`] the cubic B-spline through the voxel values; [`Interp::Nearest`] takes the voxel at `floor(p + 0.5)` (halves round up), so it
//! only ever copies input values (use it for labels). Positions outside the input's voxel
//! centres are clamped to the nearest edge voxel (edge replication), also far outside the
//! field of view: resampling never invents a background value.

use rayon::prelude::*;

use super::grid::{copied, invert_affine, matmul, zeroed};
use super::{Grid, PreprocessError};

/// How values between voxel centres are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interp {
    /// Trilinear interpolation: for images and probabilities.
    Linear,
    /// The nearest voxel's value: for labels (never produces a value not in the input).
    Nearest,
    /// Cubic B-spline interpolation through the voxel values (NiftyNet's `interp_order = 3`;
    /// see [`super::bspline`]): for images.
    Cubic,
}

/// Positions this close to an integer are taken as that integer.
const SNAP: f64 = 1e-6;

/// The grid that [`resample`] produces for `grid` at voxel size `target_pixdim` (see the
/// module documentation for the convention), without touching any data.
///
/// # Errors
/// [`PreprocessError::InvalidSpacing`] for a target size that is not positive and finite;
/// [`PreprocessError::InvalidParameter`] when the new grid would have more than `2⁴⁰`
/// voxels; as [`Grid::validate`].
pub fn resampled_grid(grid: &Grid, target_pixdim: [f64; 3]) -> Result<Grid, PreprocessError> {
    Ok(plan(grid, target_pixdim)?.0)
}

/// The target grid and the output-voxel → input-voxel map of [`resample`].
fn plan(grid: &Grid, target_pixdim: [f64; 3]) -> Result<(Grid, [[f64; 4]; 4]), PreprocessError> {
    grid.validate()?;
    for (axis, &value) in target_pixdim.iter().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(PreprocessError::InvalidSpacing { axis, value });
        }
    }
    let pixdim = grid.pixdim();
    let mut map = super::IDENTITY;
    let mut dims = [0usize; 3];
    for a in 0..3 {
        let n = grid.dims[a] as f64;
        let ratio = target_pixdim[a] / pixdim[a];
        let new_n = (n / ratio).round().max(1.0);
        if !new_n.is_finite() || new_n > (1u64 << 40) as f64 {
            return Err(PreprocessError::InvalidParameter {
                what: "target voxel size",
                expected: "a size giving at most 2^40 voxels per axis",
                got: format!("{target_pixdim:?} for voxel size {pixdim:?} and dims {:?}", grid.dims),
            });
        }
        dims[a] = new_n as usize;
        map[a][a] = ratio;
        map[a][3] = (n - 1.0) / 2.0 - (new_n - 1.0) * ratio / 2.0;
    }
    if dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).is_none_or(|v| v > 1 << 40) {
        return Err(PreprocessError::InvalidParameter {
            what: "target voxel size",
            expected: "a size giving at most 2^40 voxels in all",
            got: format!("{target_pixdim:?} giving dims {dims:?}"),
        });
    }
    let affine = matmul(&grid.affine, &map);
    Ok((Grid { dims, affine }, map))
}

/// Resamples a volume to voxel size `target_pixdim` (mm along `i, j, k`), keeping its
/// field-of-view centre and axis directions (see the module documentation for the exact
/// grid). Runs in parallel over output `k` slices.
///
/// With `target_pixdim` equal to the grid's voxel size the result is the input, bit for
/// bit, on the same grid.
///
/// # Shapes
/// `data`: `channels × i × j × k` on `grid`; returns `channels × i' × j' × k'` on the
/// returned grid.
///
/// # Errors
/// As [`resampled_grid`]; [`PreprocessError::DataLength`] / [`PreprocessError::EmptyVolume`]
/// for a buffer that does not fit `grid`; [`PreprocessError::Allocation`].
pub fn resample(
    data: &[f32],
    channels: usize,
    grid: &Grid,
    target_pixdim: [f64; 3],
    interp: Interp,
) -> Result<(Vec<f32>, Grid), PreprocessError> {
    grid.check_data(data.len(), channels)?;
    let (to, map) = plan(grid, target_pixdim)?;
    let out = sample(data, channels, grid, &to, &map, interp)?;
    Ok((out, to))
}

/// Resamples a volume from grid `from` onto grid `to` (any dims, voxel sizes, directions):
/// each output voxel takes the value at its world position in the input. This is how
/// network outputs on a resampled (or reoriented) grid are put back into the input's
/// geometry: `resample_to_grid(output, k, &resampled, &original, Interp::Nearest)` for
/// labels, `Interp::Linear` for probabilities. Runs in parallel over output `k` slices.
///
/// # Shapes
/// `data`: `channels × i × j × k` on `from`; returns `channels ×` `to.dims` on `to`.
///
/// # Errors
/// [`PreprocessError::DataLength`] / [`PreprocessError::EmptyVolume`] for a buffer that
/// does not fit `from`; an invalid `from` or `to` ([`Grid::validate`]);
/// [`PreprocessError::Allocation`].
pub fn resample_to_grid(
    data: &[f32],
    channels: usize,
    from: &Grid,
    to: &Grid,
    interp: Interp,
) -> Result<Vec<f32>, PreprocessError> {
    from.check_data(data.len(), channels)?;
    to.validate()?;
    let map = matmul(&invert_affine(&from.affine)?, &to.affine);
    sample(data, channels, from, to, &map, interp)
}

/// One axis of an axis-aligned map: for each output index, the two input indices and
/// the weight of the second (0 for nearest or an exact hit).
struct AxisTable {
    lo: Vec<usize>,
    hi: Vec<usize>,
    w: Vec<f64>,
}

fn axis_table(n_in: usize, n_out: usize, scale: f64, offset: f64, interp: Interp) -> AxisTable {
    let mut t =
        AxisTable { lo: Vec::with_capacity(n_out), hi: Vec::with_capacity(n_out), w: Vec::with_capacity(n_out) };
    for x in 0..n_out {
        let (lo, hi, w) = weights(scale * x as f64 + offset, n_in, interp);
        t.lo.push(lo);
        t.hi.push(hi);
        t.w.push(w);
    }
    t
}

/// The two neighbours and the weight of the upper one at position `p` along an axis of
/// `n` voxels, after snapping and edge clamping.
#[inline]
fn weights(p: f64, n: usize, interp: Interp) -> (usize, usize, f64) {
    let last = (n - 1) as f64;
    let p = if (p - p.round()).abs() < SNAP { p.round() } else { p };
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, last) };
    match interp {
        Interp::Nearest => {
            let i = (p + 0.5).floor().min(last) as usize;
            (i, i, 0.0)
        }
        // Cubic sampling goes through `bspline::sample` (see `sample`), never here.
        Interp::Linear | Interp::Cubic => {
            let lo = p.floor();
            let w = p - lo;
            let lo = lo as usize;
            if w == 0.0 {
                (lo, lo, 0.0)
            } else {
                (lo, (lo + 1).min(n - 1), w)
            }
        }
    }
}

#[inline]
fn lerp(a: f64, b: f64, w: f64) -> f64 {
    if w == 0.0 {
        a
    } else {
        a * (1.0 - w) + b * w
    }
}

/// A zeroed buffer of `channels` volumes of `dims`.
///
/// # Errors
/// [`PreprocessError::SizeOverflow`] / [`PreprocessError::Allocation`].
pub(super) fn output_buffer(channels: usize, dims: [usize; 3]) -> Result<Vec<f32>, PreprocessError> {
    let len = dims
        .iter()
        .try_fold(channels, |acc, &d| acc.checked_mul(d))
        .ok_or(PreprocessError::SizeOverflow { channels, dims })?;
    zeroed(len)
}

/// Samples every output voxel of `to` at input position `map · (i, j, k, 1)`.
fn sample(
    data: &[f32],
    channels: usize,
    from: &Grid,
    to: &Grid,
    map: &[[f64; 4]; 4],
    interp: Interp,
) -> Result<Vec<f32>, PreprocessError> {
    if from.dims == to.dims && *map == super::IDENTITY {
        return copied(data);
    }
    if interp == Interp::Cubic {
        return super::bspline::sample(data, channels, from, to, map);
    }
    let [n0, n1, n2] = from.dims;
    let in_voxels = n0 * n1 * n2;
    let [m0, m1, m2] = to.dims;
    let slice = m0 * m1;
    let mut out = output_buffer(channels, to.dims)?;
    let axis_aligned = (0..3).all(|r| (0..3).all(|c| r == c || map[r][c].abs() < 1e-12));
    if axis_aligned {
        let tables: [AxisTable; 3] =
            std::array::from_fn(|a| axis_table(from.dims[a], to.dims[a], map[a][a], map[a][3], interp));
        out.par_chunks_mut(slice).enumerate().for_each(|(chunk, dst)| {
            let (c, k) = (chunk / m2, chunk % m2);
            let src = &data[c * in_voxels..(c + 1) * in_voxels];
            let (t0, t1, t2) = (&tables[0], &tables[1], &tables[2]);
            let (k0, k1, wk) = (t2.lo[k] * n0 * n1, t2.hi[k] * n0 * n1, t2.w[k]);
            for j in 0..m1 {
                let (j0, j1, wj) = (t1.lo[j] * n0, t1.hi[j] * n0, t1.w[j]);
                let row = &mut dst[j * m0..(j + 1) * m0];
                for (i, v) in row.iter_mut().enumerate() {
                    let (i0, i1, wi) = (t0.lo[i], t0.hi[i], t0.w[i]);
                    let at = |o: usize| f64::from(src[o]);
                    let c0 = lerp(
                        lerp(at(i0 + j0 + k0), at(i1 + j0 + k0), wi),
                        lerp(at(i0 + j1 + k0), at(i1 + j1 + k0), wi),
                        wj,
                    );
                    let value = if wk == 0.0 {
                        c0
                    } else {
                        let c1 = lerp(
                            lerp(at(i0 + j0 + k1), at(i1 + j0 + k1), wi),
                            lerp(at(i0 + j1 + k1), at(i1 + j1 + k1), wi),
                            wj,
                        );
                        lerp(c0, c1, wk)
                    };
                    *v = value as f32;
                }
            }
        });
    } else {
        out.par_chunks_mut(slice).enumerate().for_each(|(chunk, dst)| {
            let (c, k) = (chunk / m2, chunk % m2);
            let src = &data[c * in_voxels..(c + 1) * in_voxels];
            for j in 0..m1 {
                for i in 0..m0 {
                    let (x, y, z) = (i as f64, j as f64, k as f64);
                    let p: [f64; 3] =
                        std::array::from_fn(|r| map[r][0] * x + map[r][1] * y + map[r][2] * z + map[r][3]);
                    let (i0, i1, wi) = weights(p[0], n0, interp);
                    let (j0, j1, wj) = weights(p[1], n1, interp);
                    let (k0, k1, wk) = weights(p[2], n2, interp);
                    let (j0, j1, k0, k1) = (j0 * n0, j1 * n0, k0 * n0 * n1, k1 * n0 * n1);
                    let at = |o: usize| f64::from(src[o]);
                    let c0 = lerp(
                        lerp(at(i0 + j0 + k0), at(i1 + j0 + k0), wi),
                        lerp(at(i0 + j1 + k0), at(i1 + j1 + k0), wi),
                        wj,
                    );
                    let c1 = lerp(
                        lerp(at(i0 + j0 + k1), at(i1 + j0 + k1), wi),
                        lerp(at(i0 + j1 + k1), at(i1 + j1 + k1), wi),
                        wj,
                    );
                    dst[j * m0 + i] = lerp(c0, c1, wk) as f32;
                }
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::IDENTITY;

    fn affine(spacing: [f64; 3], origin: [f64; 3]) -> [[f64; 4]; 4] {
        let mut a = IDENTITY;
        for r in 0..3 {
            a[r][r] = spacing[r];
            a[r][3] = origin[r];
        }
        a
    }

    /// A deterministic pseudo-random volume (no two voxels alike).
    fn noise(n: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect()
    }

    #[test]
    fn preprocess_resample_identity_is_bit_exact() {
        let grid = Grid::new([5, 4, 3], affine([1.2, 0.8, 2.5], [-3.0, 4.0, 9.0])).unwrap();
        let data = noise(2 * 60);
        for interp in [Interp::Linear, Interp::Nearest] {
            let (out, g) = resample(&data, 2, &grid, grid.pixdim(), interp).unwrap();
            assert_eq!(g, grid);
            assert_eq!(out, data);
            assert_eq!(resample_to_grid(&data, 2, &grid, &grid, interp).unwrap(), data);
        }
    }

    #[test]
    fn preprocess_resample_half_resolution_is_every_second_voxel() {
        // Odd dims, as the MNI152 1 mm grid (197 × 233 × 189): 2 mm centres are every
        // second 1 mm centre, starting at the first.
        let grid = Grid::new([9, 7, 5], affine([1.0; 3], [-98.0, -134.0, -72.0])).unwrap();
        let data = noise(2 * 9 * 7 * 5);
        for interp in [Interp::Linear, Interp::Nearest] {
            let (out, g) = resample(&data, 2, &grid, [2.0; 3], interp).unwrap();
            assert_eq!(g.dims, [5, 4, 3]);
            assert_eq!(g.affine, affine([2.0; 3], [-98.0, -134.0, -72.0]));
            let mut expected = Vec::new();
            for c in 0..2 {
                for k in (0..5).step_by(2) {
                    for j in (0..7).step_by(2) {
                        for i in (0..9).step_by(2) {
                            expected.push(data[c * 315 + grid.index(i, j, k)]);
                        }
                    }
                }
            }
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn preprocess_resample_mni_1mm_grid_gives_the_bundled_2mm_grid() {
        // MNI152 2009a at 1 mm: 197 × 233 × 189, origin (−98, −134, −72); the bundled
        // data/mni152 files at 2 mm: 99 × 117 × 95 with the same origin.
        let one = Grid::new([197, 233, 189], affine([1.0; 3], [-98.0, -134.0, -72.0])).unwrap();
        let two = resampled_grid(&one, [2.0; 3]).unwrap();
        assert_eq!(two.dims, [99, 117, 95]);
        assert_eq!(two.affine, affine([2.0; 3], [-98.0, -134.0, -72.0]));
    }

    #[test]
    fn preprocess_resample_grid_keeps_field_of_view_centre() {
        let a = [[0.0, 0.0, -1.5, 20.0], [1.0, 0.0, 0.0, -7.0], [0.0, -2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]];
        let grid = Grid::new([10, 7, 12], a).unwrap();
        let g = resampled_grid(&grid, [2.0, 0.7, 1.0]).unwrap();
        // round(10·1/2) = 5, round(7·2/0.7) = 20, round(12·1.5/1) = 18.
        assert_eq!(g.dims, [5, 20, 18]);
        let pd = g.pixdim();
        for (got, want) in pd.iter().zip([2.0, 0.7, 1.0]) {
            assert!((got - want).abs() < 1e-12);
        }
        let centre = |g: &Grid| g.voxel_to_world(g.dims.map(|d| (d as f64 - 1.0) / 2.0));
        for (x, y) in centre(&grid).iter().zip(centre(&g)) {
            assert!((x - y).abs() < 1e-9);
        }
        assert!(matches!(resampled_grid(&grid, [1.0, 0.0, 1.0]), Err(PreprocessError::InvalidSpacing { axis: 1, .. })));
        assert!(matches!(resampled_grid(&grid, [1.0, 1.0, f64::NAN]), Err(PreprocessError::InvalidSpacing { .. })));
        assert!(matches!(resampled_grid(&grid, [1e-9; 3]), Err(PreprocessError::InvalidParameter { .. })));
    }

    #[test]
    fn preprocess_resample_nearest_never_invents_labels() {
        let grid = Grid::new([6, 5, 4], affine([1.0, 1.3, 0.9], [0.0; 3])).unwrap();
        let labels: Vec<f32> = noise(120).iter().map(|v| [0.0, 4.0, 10.0, 255.0][(v * 4.0) as usize % 4]).collect();
        for target in [[0.7, 0.6, 2.1], [3.0, 3.0, 3.0], [0.33, 1.0, 1.0]] {
            let (out, g) = resample(&labels, 1, &grid, target, Interp::Nearest).unwrap();
            assert!(out.iter().all(|v| [0.0, 4.0, 10.0, 255.0].contains(v)));
            // A rotated, shifted target grid as well.
            let rot = Grid::new(
                g.dims,
                [[0.0, -0.8, 0.0, 5.0], [0.6, 0.0, 0.0, -1.0], [0.0, 0.0, 1.1, 0.5], [0.0, 0.0, 0.0, 1.0]],
            )
            .unwrap();
            let out = resample_to_grid(&labels, 1, &grid, &rot, Interp::Nearest).unwrap();
            assert!(out.iter().all(|v| [0.0, 4.0, 10.0, 255.0].contains(v)));
        }
    }

    #[test]
    fn preprocess_resample_linear_ramp_is_exact() {
        let grid = Grid::new([8, 6, 5], affine([1.0, 2.0, 1.5], [1.0, 2.0, 3.0])).unwrap();
        let ramp_at = |p: [f64; 3]| 3.0 * p[0] - 2.0 * p[1] + 0.5 * p[2] + 1.0;
        let mut data = Vec::new();
        for k in 0..5 {
            for j in 0..6 {
                for i in 0..8 {
                    data.push(ramp_at([i as f64, j as f64, k as f64]) as f32);
                }
            }
        }
        let check = |out: &[f32], to: &Grid| {
            let inv = invert_affine(&grid.affine).unwrap();
            let map = matmul(&inv, &to.affine);
            for k in 0..to.dims[2] {
                for j in 0..to.dims[1] {
                    for i in 0..to.dims[0] {
                        let (x, y, z) = (i as f64, j as f64, k as f64);
                        // The input position, clamped to the input's voxel centres.
                        let p: [f64; 3] = std::array::from_fn(|r| {
                            (map[r][0] * x + map[r][1] * y + map[r][2] * z + map[r][3])
                                .clamp(0.0, (grid.dims[r] - 1) as f64)
                        });
                        let got = out[to.index(i, j, k)];
                        assert!((f64::from(got) - ramp_at(p)).abs() < 1e-4, "{got} vs {} at {p:?}", ramp_at(p));
                    }
                }
            }
        };
        let (out, to) = resample(&data, 1, &grid, [0.7, 1.3, 0.4], Interp::Linear).unwrap();
        check(&out, &to);
        let oblique = Grid::new(
            [7, 7, 7],
            [[0.8, -0.6, 0.0, 2.0], [0.6, 0.8, 0.0, 4.0], [0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.0, 1.0]],
        )
        .unwrap();
        let out = resample_to_grid(&data, 1, &grid, &oblique, Interp::Linear).unwrap();
        check(&out, &oblique);
    }

    #[test]
    fn preprocess_resample_to_grid_inverts_downsampling_where_aligned() {
        // Labels down-sampled by 2 on an odd grid and put back: every second voxel (the
        // ones that survived) gets its own label back.
        let grid = Grid::new([9, 9, 9], affine([1.0; 3], [0.0; 3])).unwrap();
        let labels: Vec<f32> = noise(729).iter().map(|v| (v * 3.0).floor()).collect();
        let (small, g) = resample(&labels, 1, &grid, [2.0; 3], Interp::Nearest).unwrap();
        let back = resample_to_grid(&small, 1, &g, &grid, Interp::Nearest).unwrap();
        assert_eq!(back.len(), 729);
        for k in (0..9).step_by(2) {
            for j in (0..9).step_by(2) {
                for i in (0..9).step_by(2) {
                    assert_eq!(back[grid.index(i, j, k)], labels[grid.index(i, j, k)]);
                }
            }
        }
        let err = resample_to_grid(&small, 2, &g, &grid, Interp::Nearest).unwrap_err();
        assert!(matches!(err, PreprocessError::DataLength { .. }));
    }
}
