//! Padding a volume to at least a given size (e.g. the network window), recording the
//! padding so that outputs can be cropped back to the input's voxels exactly.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grid::zeroed;
use super::{Grid, PreprocessError};

/// How padded voxels are filled. For an axis of `n` voxels and a padded voxel at input
/// index `x` (negative before the volume, `≥ n` after it):
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// This value (numpy `constant`).
    Constant(f32),
    /// The nearest edge voxel, `clamp(x, 0, n − 1)` (numpy `edge`, replicate).
    Edge,
    /// Mirror with the edge voxel repeated, `… b a | a b c d | d c …` (numpy
    /// `symmetric`), continued periodically (period `2n`) for pads wider than `n`.
    Symmetric,
    /// Mirror about the edge voxel, `… c b | a b c d | c b …` (numpy `reflect`),
    /// continued periodically (period `2n − 2`); the edge voxel itself when `n = 1`.
    Reflect,
}

/// The voxels added before and after the volume along `i, j, k`, to undo with [`crop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PadRecord {
    /// Voxels added before index 0.
    pub before: [usize; 3],
    /// Voxels added after the last index.
    pub after: [usize; 3],
}

impl PadRecord {
    /// True when nothing is padded (then [`pad`] and [`crop`] only copy).
    pub fn is_empty(&self) -> bool {
        self.before == [0; 3] && self.after == [0; 3]
    }

    /// The dims of a volume of `dims` after padding (`None` on overflow).
    pub fn padded_dims(&self, dims: [usize; 3]) -> Option<[usize; 3]> {
        let mut out = [0; 3];
        for a in 0..3 {
            out[a] = dims[a].checked_add(self.before[a])?.checked_add(self.after[a])?;
        }
        Some(out)
    }

    /// The grid of the padded volume: dims grown, origin moved back by `before` voxels so
    /// that every input voxel keeps its world position.
    pub fn padded_grid(&self, grid: &Grid) -> Option<Grid> {
        Some(Grid {
            dims: self.padded_dims(grid.dims)?,
            affine: shift_origin(&grid.affine, self.before.map(|b| -(b as f64))),
        })
    }
}

/// The affine of the same world grid indexed from voxel `offset` of the old one.
fn shift_origin(a: &[[f64; 4]; 4], offset: [f64; 3]) -> [[f64; 4]; 4] {
    let mut out = *a;
    for r in 0..3 {
        out[r][3] = a[r][3] + a[r][0] * offset[0] + a[r][1] * offset[1] + a[r][2] * offset[2];
    }
    out
}

/// The padding that brings `dims` to at least `min_size` on each axis: the missing
/// voxels are split with `⌊missing/2⌋` before and the rest after (nothing where the
/// volume is already large enough).
pub fn pad_record(dims: [usize; 3], min_size: [usize; 3]) -> PadRecord {
    let mut record = PadRecord::default();
    for a in 0..3 {
        let missing = min_size[a].saturating_sub(dims[a]);
        record.before[a] = missing / 2;
        record.after[a] = missing - missing / 2;
    }
    record
}

/// For each padded index along one axis, the input index it copies (`None`: constant).
fn axis_sources(n: usize, before: usize, out: usize, mode: PadMode) -> Vec<Option<usize>> {
    (0..out)
        .map(|x| {
            let s = x as i64 - before as i64;
            let n = n as i64;
            if (0..n).contains(&s) {
                return Some(s as usize);
            }
            let m = match mode {
                PadMode::Constant(_) => return None,
                PadMode::Edge => s.clamp(0, n - 1),
                PadMode::Symmetric => {
                    let m = s.rem_euclid(2 * n);
                    if m >= n {
                        2 * n - 1 - m
                    } else {
                        m
                    }
                }
                PadMode::Reflect if n == 1 => 0,
                PadMode::Reflect => {
                    let m = s.rem_euclid(2 * n - 2);
                    if m >= n {
                        2 * n - 2 - m
                    } else {
                        m
                    }
                }
            };
            Some(m as usize)
        })
        .collect()
}

/// Pads a volume by `record` with `mode`.
///
/// # Shapes
/// `data`: `channels × i × j × k` on `grid`; returns `channels ×` the padded dims, on
/// [`PadRecord::padded_grid`].
///
/// # Errors
/// [`PreprocessError::DataLength`] / [`PreprocessError::EmptyVolume`] for a buffer that
/// does not fit `grid`; [`PreprocessError::SizeOverflow`]; [`PreprocessError::Allocation`].
pub fn pad(
    data: &[f32],
    channels: usize,
    grid: &Grid,
    record: &PadRecord,
    mode: PadMode,
) -> Result<(Vec<f32>, Grid), PreprocessError> {
    let in_voxels = grid.check_data(data.len(), channels)?;
    let overflow = PreprocessError::SizeOverflow { channels, dims: grid.dims };
    let out_grid = record.padded_grid(grid).ok_or(overflow)?;
    let [m0, m1, m2] = out_grid.dims;
    let slice = m0.checked_mul(m1).ok_or(PreprocessError::SizeOverflow { channels, dims: out_grid.dims })?;
    let total = slice
        .checked_mul(m2)
        .and_then(|v| v.checked_mul(channels))
        .ok_or(PreprocessError::SizeOverflow { channels, dims: out_grid.dims })?;
    let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
    let mut out = zeroed(total)?;
    let [n0, n1, _] = grid.dims;
    let src_i = axis_sources(n0, record.before[0], m0, mode);
    let src_j = axis_sources(n1, record.before[1], m1, mode);
    let src_k = axis_sources(grid.dims[2], record.before[2], m2, mode);
    let (b0, a0) = (record.before[0], record.after[0]);
    out.par_chunks_mut(slice).enumerate().for_each(|(chunk, dst)| {
        let (c, k) = (chunk / m2, chunk % m2);
        let src = &data[c * in_voxels..(c + 1) * in_voxels];
        for (j, row) in dst.chunks_mut(m0).enumerate() {
            let (Some(sk), Some(sj)) = (src_k[k], src_j[j]) else {
                row.fill(fill);
                continue;
            };
            let line = &src[(sj + n1 * sk) * n0..(sj + n1 * sk + 1) * n0];
            row[b0..b0 + n0].copy_from_slice(line);
            for i in (0..b0).chain(m0 - a0..m0) {
                row[i] = src_i[i].map_or(fill, |s| line[s]);
            }
        }
    });
    Ok((out, out_grid))
}

/// Pads a volume to at least `min_size` voxels along each axis ([`pad_record`]), and
/// returns the record to [`crop`] outputs with.
///
/// # Shapes
/// As [`pad`].
///
/// # Errors
/// As [`pad`].
pub fn pad_to(
    data: &[f32],
    channels: usize,
    grid: &Grid,
    min_size: [usize; 3],
    mode: PadMode,
) -> Result<(Vec<f32>, Grid, PadRecord), PreprocessError> {
    let record = pad_record(grid.dims, min_size);
    let (out, out_grid) = pad(data, channels, grid, &record, mode)?;
    Ok((out, out_grid, record))
}

/// Removes the padding recorded in `record` from a padded volume (any channel count,
/// e.g. `K` probability maps), giving back the unpadded voxels and grid.
///
/// # Shapes
/// `data`: `channels ×` `padded.dims`; returns `channels ×` (`padded.dims − before −
/// after`).
///
/// # Errors
/// [`PreprocessError::DataLength`] / [`PreprocessError::EmptyVolume`] for a buffer that
/// does not fit `padded`; [`PreprocessError::CropMismatch`] when the record removes the
/// whole volume along an axis; [`PreprocessError::Allocation`].
pub fn crop(
    data: &[f32],
    channels: usize,
    padded: &Grid,
    record: &PadRecord,
) -> Result<(Vec<f32>, Grid), PreprocessError> {
    let in_voxels = padded.check_data(data.len(), channels)?;
    let inner =
        |a: usize| padded.dims[a].checked_sub(record.before[a])?.checked_sub(record.after[a]).filter(|&v| v > 0);
    let mismatch = || PreprocessError::CropMismatch { before: record.before, after: record.after, dims: padded.dims };
    let dims = [inner(0).ok_or_else(mismatch)?, inner(1).ok_or_else(mismatch)?, inner(2).ok_or_else(mismatch)?];
    let out_grid = Grid { dims, affine: shift_origin(&padded.affine, record.before.map(|b| b as f64)) };
    let [m0, m1, m2] = dims;
    let [n0, n1, _] = padded.dims;
    let mut out = zeroed(m0 * m1 * m2 * channels)?;
    out.par_chunks_mut(m0 * m1).enumerate().for_each(|(chunk, dst)| {
        let (c, k) = (chunk / m2, chunk % m2);
        let src = &data[c * in_voxels..(c + 1) * in_voxels];
        let sk = k + record.before[2];
        for (j, row) in dst.chunks_mut(m0).enumerate() {
            let start = record.before[0] + n0 * (j + record.before[1] + n1 * sk);
            row.copy_from_slice(&src[start..start + m0]);
        }
    });
    Ok((out, out_grid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dims: [usize; 3]) -> Grid {
        let mut g = Grid::from_dims(dims);
        g.affine[0][0] = 2.0;
        g.affine[1][3] = 5.0;
        g
    }

    #[test]
    fn preprocess_pad_then_crop_is_identity() {
        let g = grid([3, 2, 4]);
        let data: Vec<f32> = (0..48).map(|v| v as f32 * 1.5).collect();
        for mode in [PadMode::Constant(-1.0), PadMode::Edge, PadMode::Symmetric, PadMode::Reflect] {
            let (padded, pg, record) = pad_to(&data, 2, &g, [8, 5, 4], mode).unwrap();
            assert_eq!(record, PadRecord { before: [2, 1, 0], after: [3, 2, 0] });
            assert_eq!(pg.dims, [8, 5, 4]);
            assert_eq!(padded.len(), 2 * 160);
            // Input voxels keep their world positions.
            assert_eq!(pg.voxel_to_world([2.0, 1.0, 0.0]), g.voxel_to_world([0.0; 3]));
            assert_eq!(padded[pg.index(2, 1, 0)], data[0]);
            let (back, bg) = crop(&padded, 2, &pg, &record).unwrap();
            assert_eq!(back, data);
            assert_eq!(bg, g);
        }
        // Already large enough: nothing padded.
        let (same, sg, record) = pad_to(&data, 2, &g, [2, 2, 2], PadMode::Edge).unwrap();
        assert!(record.is_empty());
        assert_eq!((same, sg), (data, g));
    }

    #[test]
    fn preprocess_pad_modes_fill_as_documented() {
        let g = Grid::from_dims([4, 1, 1]);
        let data = [1.0, 2.0, 3.0, 4.0];
        let record = PadRecord { before: [3, 0, 0], after: [5, 0, 0] };
        let row = |mode| pad(&data, 1, &g, &record, mode).unwrap().0;
        assert_eq!(row(PadMode::Edge), [1., 1., 1., 1., 2., 3., 4., 4., 4., 4., 4., 4.]);
        assert_eq!(row(PadMode::Constant(9.0)), [9., 9., 9., 1., 2., 3., 4., 9., 9., 9., 9., 9.]);
        assert_eq!(row(PadMode::Symmetric), [3., 2., 1., 1., 2., 3., 4., 4., 3., 2., 1., 1.]);
        assert_eq!(row(PadMode::Reflect), [4., 3., 2., 1., 2., 3., 4., 3., 2., 1., 2., 3.]);
        // Edge mode on j and k replicates whole rows and slices.
        let g = Grid::from_dims([2, 2, 1]);
        let (out, pg) =
            pad(&[1.0, 2.0, 3.0, 4.0], 1, &g, &PadRecord { before: [0, 1, 1], after: [0, 0, 0] }, PadMode::Edge)
                .unwrap();
        assert_eq!(pg.dims, [2, 3, 2]);
        assert_eq!(out, [1., 2., 1., 2., 3., 4., 1., 2., 1., 2., 3., 4.]);
        let one = pad(
            &[7.0],
            1,
            &Grid::from_dims([1, 1, 1]),
            &PadRecord { before: [2, 0, 0], after: [1, 0, 0] },
            PadMode::Reflect,
        );
        assert_eq!(one.unwrap().0, [7.0; 4]);
    }

    #[test]
    fn preprocess_pad_and_crop_reject_bad_input() {
        let g = Grid::from_dims([2, 2, 2]);
        assert!(matches!(
            pad(&[0.0; 7], 1, &g, &PadRecord::default(), PadMode::Edge),
            Err(PreprocessError::DataLength { .. })
        ));
        let err = crop(&[0.0; 8], 1, &g, &PadRecord { before: [1, 0, 0], after: [1, 0, 0] }).unwrap_err();
        assert!(matches!(err, PreprocessError::CropMismatch { .. }), "{err}");
        let huge = PadRecord { before: [usize::MAX, 0, 0], after: [0; 3] };
        assert!(matches!(pad(&[0.0; 8], 1, &g, &huge, PadMode::Edge), Err(PreprocessError::SizeOverflow { .. })));
    }
}
