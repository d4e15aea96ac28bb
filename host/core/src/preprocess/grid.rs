//! The geometry of a volume in memory: its voxel dims and its voxel-to-world affine.

use serde::{Deserialize, Serialize};

use super::PreprocessError;

/// The geometry of a volume: dims `(i, j, k)` in NIfTI memory order (`i` fastest) and the
/// affine that maps a voxel `(i, j, k, 1)` to world millimetres (RAS+, as nibabel's
/// `img.affine`: the sform, or the qform where there is no sform).
///
/// A volume with `channels` channels is a `&[f32]` of `channels × i × j × k` values: the
/// channels one after another, each in NIfTI order, so voxel `(i, j, k)` of channel `c`
/// is at `c·(i·j·k) + i + dims[0]·(j + dims[1]·k)` ([`Grid::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Voxel counts along `i`, `j`, `k`.
    pub dims: [usize; 3],
    /// Row-major 4×4 voxel-to-world matrix; the bottom row is `0 0 0 1`.
    pub affine: [[f64; 4]; 4],
}

/// The 4×4 identity.
pub const IDENTITY: [[f64; 4]; 4] =
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

impl Grid {
    /// A grid with the given dims and affine, checked with [`Grid::validate`].
    ///
    /// # Errors
    /// [`PreprocessError::EmptyVolume`] for a zero dim, [`PreprocessError::InvalidAffine`]
    /// or [`PreprocessError::SingularAffine`] for an unusable affine.
    pub fn new(dims: [usize; 3], affine: [[f64; 4]; 4]) -> Result<Self, PreprocessError> {
        let grid = Self { dims, affine };
        grid.validate()?;
        Ok(grid)
    }

    /// A grid of 1 mm voxels with the identity affine (voxel index = world mm), for
    /// arrays that carry no geometry (windows, tests).
    pub fn from_dims(dims: [usize; 3]) -> Self {
        Self { dims, affine: IDENTITY }
    }

    /// Voxel size along each voxel axis: the Euclidean norms of the affine's first
    /// three columns (what nibabel's `header.get_zooms()` gives for a consistent header).
    pub fn pixdim(&self) -> [f64; 3] {
        std::array::from_fn(|c| (0..3).map(|r| self.affine[r][c] * self.affine[r][c]).sum::<f64>().sqrt())
    }

    /// The number of voxels of one channel, `i · j · k` (saturating; [`Grid::check_data`]
    /// reports an overflow as an error).
    pub fn voxels(&self) -> usize {
        self.dims.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// The offset of voxel `(i, j, k)` inside one channel.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// World coordinates (mm) of a (possibly fractional) voxel position.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        std::array::from_fn(|r| a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3])
    }

    /// Fractional voxel position of a world point (mm).
    ///
    /// # Errors
    /// [`PreprocessError::SingularAffine`] when the affine cannot be inverted.
    pub fn world_to_voxel(&self, xyz: [f64; 3]) -> Result<[f64; 3], PreprocessError> {
        let inv = invert_affine(&self.affine)?;
        let m = &inv;
        Ok(std::array::from_fn(|r| m[r][0] * xyz[0] + m[r][1] * xyz[1] + m[r][2] * xyz[2] + m[r][3]))
    }

    /// Checks that every dim is positive and the affine is finite, has bottom row
    /// `0 0 0 1` and an invertible 3×3 part.
    ///
    /// # Errors
    /// [`PreprocessError::EmptyVolume`], [`PreprocessError::InvalidAffine`],
    /// [`PreprocessError::SingularAffine`].
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.dims.contains(&0) {
            return Err(PreprocessError::EmptyVolume { channels: 1, dims: self.dims });
        }
        invert_affine(&self.affine).map(|_| ())
    }

    /// Checks a volume buffer against this grid and returns the voxel count of one channel.
    ///
    /// # Shapes
    /// `data_len` must be `channels × i × j × k`.
    ///
    /// # Errors
    /// [`PreprocessError::EmptyVolume`] for no channel or a zero dim,
    /// [`PreprocessError::SizeOverflow`], [`PreprocessError::DataLength`].
    pub fn check_data(&self, data_len: usize, channels: usize) -> Result<usize, PreprocessError> {
        let dims = self.dims;
        if channels == 0 || dims.contains(&0) {
            return Err(PreprocessError::EmptyVolume { channels, dims });
        }
        let overflow = PreprocessError::SizeOverflow { channels, dims };
        let voxels = dims[0].checked_mul(dims[1]).and_then(|v| v.checked_mul(dims[2])).ok_or(overflow)?;
        let expected = voxels.checked_mul(channels).ok_or(PreprocessError::SizeOverflow { channels, dims })?;
        if data_len != expected {
            return Err(PreprocessError::DataLength { expected, got: data_len, channels, dims });
        }
        Ok(voxels)
    }
}

/// A zero-filled buffer of `len` values, within the memory budget (see
/// [`crate::budget`]), reporting a failed allocation as an error instead of aborting.
pub(crate) fn zeroed(len: usize) -> Result<Vec<f32>, PreprocessError> {
    Ok(crate::budget::try_zeroed(len, &|| format!("a preprocessed volume of {len} float32 values"))?)
}

/// A copy of `data`, within the memory budget (see [`crate::budget`]).
pub(crate) fn copied(data: &[f32]) -> Result<Vec<f32>, PreprocessError> {
    let what = || format!("a copy of a volume of {} float32 values", data.len());
    let mut v = crate::budget::try_with_capacity(data.len(), &what)?;
    v.extend_from_slice(data);
    Ok(v)
}

/// The determinant of the affine's 3×3 part.
pub(crate) fn det3(a: &[[f64; 4]; 4]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// The inverse of an affine `[R t; 0 1]`: `[R⁻¹  −R⁻¹t; 0 1]`.
///
/// # Errors
/// [`PreprocessError::InvalidAffine`] for a non-finite entry or a bottom row other than
/// `0 0 0 1`; [`PreprocessError::SingularAffine`] when `R` is (numerically) singular,
/// judged relative to the column norms so that tiny voxels are not mistaken for singular.
pub(crate) fn invert_affine(a: &[[f64; 4]; 4]) -> Result<[[f64; 4]; 4], PreprocessError> {
    if a.iter().flatten().any(|v| !v.is_finite()) || a[3] != [0.0, 0.0, 0.0, 1.0] {
        return Err(PreprocessError::InvalidAffine { affine: Box::new(*a) });
    }
    let det = det3(a);
    let norms: [f64; 3] = std::array::from_fn(|c| (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt());
    let scale = norms[0] * norms[1] * norms[2];
    if scale == 0.0 || !det.is_finite() || det.abs() <= 1e-12 * scale {
        return Err(PreprocessError::SingularAffine { affine: Box::new(*a), determinant: det });
    }
    // Cofactors of the 3x3 part, transposed, over the determinant.
    let r3: [[f64; 3]; 3] = std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let (r1, r2, c1, c2) = ((c + 1) % 3, (c + 2) % 3, (r + 1) % 3, (r + 2) % 3);
            (a[r1][c1] * a[r2][c2] - a[r1][c2] * a[r2][c1]) / det
        })
    });
    let mut inv = IDENTITY;
    for (row, m) in inv.iter_mut().zip(&r3) {
        row[..3].copy_from_slice(m);
        row[3] = -(m[0] * a[0][3] + m[1] * a[1][3] + m[2] * a[2][3]);
    }
    Ok(inv)
}

/// The product of two affines, `a · b`.
pub(crate) fn matmul(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|k| a[r][k] * b[k][c]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_grid_inverse_and_pixdim() {
        let a = [[0.0, -2.0, 0.0, 10.0], [0.0, 0.0, 3.0, -4.0], [1.5, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]];
        let g = Grid::new([4, 5, 6], a).unwrap();
        assert_eq!(g.pixdim(), [1.5, 2.0, 3.0]);
        let p = [1.25, -3.0, 2.5];
        let back = g.world_to_voxel(g.voxel_to_world(p)).unwrap();
        for c in 0..3 {
            assert!((back[c] - p[c]).abs() < 1e-12);
        }
        let id = matmul(&a, &invert_affine(&a).unwrap());
        for r in 0..4 {
            for c in 0..4 {
                assert!((id[r][c] - IDENTITY[r][c]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn preprocess_grid_rejects_bad_input() {
        let mut a = IDENTITY;
        a[2][2] = 0.0;
        assert!(matches!(Grid::new([2, 2, 2], a), Err(PreprocessError::SingularAffine { .. })));
        a = IDENTITY;
        a[0][3] = f64::NAN;
        assert!(matches!(Grid::new([2, 2, 2], a), Err(PreprocessError::InvalidAffine { .. })));
        assert!(matches!(Grid::new([2, 0, 2], IDENTITY), Err(PreprocessError::EmptyVolume { .. })));
        let g = Grid::from_dims([2, 3, 4]);
        assert_eq!(g.check_data(48, 2).unwrap(), 24);
        let err = g.check_data(47, 2).unwrap_err();
        assert!(err.to_string().contains("expected 48"), "{err}");
        assert!(matches!(g.check_data(0, 0), Err(PreprocessError::EmptyVolume { .. })));
        let huge = Grid::from_dims([usize::MAX, 2, 1]);
        assert!(matches!(huge.check_data(0, 1), Err(PreprocessError::SizeOverflow { .. })));
    }
}
