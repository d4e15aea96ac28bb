//! NIfTI-1, NIfTI-2 and Analyze 7.5 images, read and written by our own code.
//!
//! - [`header`]: the header layouts, decoded from either byte order; sizes, data type
//!   and scaling checked.
//! - [`affine`]: the voxel-to-world affine nibabel would use (sform, qform, or the
//!   pixdim fall-back), quaternions both ways, axis codes.
//! - [`source`]: plain and gzip byte sources (all members, CRC checked), bounded reads.
//! - [`read`]: which files hold what, reading with every size checked before
//!   allocating, conversion to `f32`/`f64`.
//! - [`write`](mod@write): `.nii`/`.nii.gz` output in a reference's geometry.
//!
//! Conventions: values keep NIfTI memory order (first index fastest); scaling follows
//! nibabel (`scl_slope` 0, NaN or infinite means no scaling); NaNs are kept. Every
//! failure is an [`IoError`] naming the file and saying what was expected and what was
//! found; no input makes the reader panic.

pub mod affine;
pub mod header;
pub mod read;
pub mod source;
pub mod write;

use std::path::{Path, PathBuf};

pub use self::affine::{axcodes, axcodes_string, best_affine, Affine, AffineSource};
pub use self::header::{DataType, Endian, Format, NiftiHeader};
pub use self::read::{read_header, read_image, Image};
pub use self::write::{output_header, reference_for_affine, write_image, write_labels, Voxel, WriteOptions};

/// An image that cannot be read or written; names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}", path = path.display())]
pub struct IoError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, with what was expected and what was found.
    pub message: String,
}

pub(crate) fn io_error(path: &Path, message: impl Into<String>) -> IoError {
    IoError { path: path.to_owned(), message: message.into() }
}

/// A 3D or 4D volume in memory, as `f32`.
///
/// `data` holds `channels` volumes one after another, each in NIfTI memory order (index
/// `i` fastest): as a C-order array it is `[C, k, j, i]`, i.e. `[C, D, H, W]`.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Voxel values after scl_slope / scl_inter (NaNs kept).
    pub data: Vec<f32>,
    /// Spatial size `(i, j, k)` (1 for missing dimensions of a 1D or 2D image).
    pub dims: [usize; 3],
    /// Values per voxel (the 4th dimension, 1 for a 3D image).
    pub channels: usize,
    /// The header read, kept to write outputs in the same geometry.
    pub header: NiftiHeader,
    /// The voxel-to-world affine nibabel would use (see [`best_affine`]).
    pub affine: Affine,
    /// The voxel size, `pixdim[1..=3]` as stored.
    pub pixdim: [f64; 3],
    /// The file named (the `.hdr` or `.img` given, for a pair).
    pub path: PathBuf,
}

impl Volume {
    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// Axis codes of the affine (`"RAS"`, `"LPS"`, …; see [`axcodes`]).
    pub fn axcodes(&self) -> String {
        axcodes_string(&self.affine)
    }
}

/// Splits a shape into `(i, j, k)` and channels: the channels are the 4th dimension, or
/// the 5th in NIfTI's vector layout `X×Y×Z×1×C`; any further dimensions must be 1.
fn volume_shape(shape: &[usize]) -> Result<([usize; 3], usize), String> {
    let at = |i: usize| shape.get(i).copied().unwrap_or(1);
    let channels = match (at(3), at(4)) {
        (c, 1) | (1, c) => Some(c),
        _ => None,
    };
    match channels {
        Some(c) if shape.iter().skip(5).all(|&d| d == 1) => Ok(([at(0), at(1), at(2)], c)),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            Err(format!(
                "expected a 3D or 4D image (4th dimension = channels, or NIfTI's vector layout X×Y×Z×1×C; \
                 further dimensions of size 1), header says {}",
                dims.join("x")
            ))
        }
    }
}

/// Reads a `.nii`, `.nii.gz`, `.hdr`/`.img` (each optionally `.gz`) NIfTI-1, NIfTI-2 or
/// Analyze 7.5 volume as `f32` (3D, or 4D as channels, or NIfTI's vector layout
/// `X×Y×Z×1×C` as C channels).
///
/// # Errors
/// A missing or unreadable file; a header that is not NIfTI/Analyze or states sizes,
/// types, offsets or scaling it cannot hold; a shape that is not a volume (see above); data
/// shorter than stated; a corrupt or truncated gzip stream. Each names the file.
pub fn read_volume(path: &Path) -> Result<Volume, IoError> {
    let d = read::read_decoded::<f32>(path, &|layout| volume_shape(&layout.shape).map(|_| ()))?;
    let (dims, channels) = volume_shape(&d.layout.shape).map_err(|m| io_error(path, m))?;
    let (affine, _) = best_affine(&d.header);
    Ok(Volume {
        data: d.values,
        dims,
        channels,
        pixdim: d.header.voxel_size(),
        affine,
        header: d.header,
        path: path.to_owned(),
    })
}

/// The channels of an image (its 4th dimension, as [`read_volume`] counts them) from its
/// header alone, without reading a voxel.
///
/// # Errors
/// As [`read_header`], or a shape [`read_volume`] refuses; each names the file.
pub fn read_channels(path: &Path) -> Result<usize, IoError> {
    let header = read_header(path)?;
    let layout = header.layout().map_err(|m| io_error(path, m))?;
    let (_, channels) = volume_shape(&layout.shape).map_err(|m| io_error(path, m))?;
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_split_into_dims_and_channels() {
        assert_eq!(volume_shape(&[4, 5]), Ok(([4, 5, 1], 1)));
        assert_eq!(volume_shape(&[4, 5, 6, 2]), Ok(([4, 5, 6], 2)));
        assert_eq!(volume_shape(&[4, 5, 6, 2, 1, 1]), Ok(([4, 5, 6], 2)));
        // NIfTI's vector layout: the 5th dimension holds the channels.
        assert_eq!(volume_shape(&[4, 5, 6, 1, 3]), Ok(([4, 5, 6], 3)));
        assert_eq!(volume_shape(&[4, 5, 6, 1, 3, 1]), Ok(([4, 5, 6], 3)));
        assert!(volume_shape(&[4, 5, 6, 2, 3]).unwrap_err().contains("4x5x6x2x3"));
        assert!(volume_shape(&[4, 5, 6, 1, 3, 2]).unwrap_err().contains("4x5x6x1x3x2"));
    }

    #[test]
    fn written_volumes_read_back_with_values_and_affine() {
        let dir = std::env::temp_dir().join(format!("niftyhost-nifti-{}", std::process::id()));
        let reference = NiftiHeader {
            dim: [3, 3, 4, 5, 1, 1, 1, 1],
            pixdim: [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            qform_code: 1,
            quatern_c: 1.0,
            qoffset_x: 10.0,
            ..NiftiHeader::default()
        };
        let values: Vec<f32> = (0..120).map(|v| v as f32 * 0.25 - 3.0).collect();
        for name in ["p.nii", "p.nii.gz"] {
            let path = dir.join(name);
            write_image(&path, &reference, [3, 4, 5], 2, &values, &WriteOptions::default()).unwrap();
            let v = read_volume(&path).unwrap();
            assert_eq!((v.dims, v.channels), ([3, 4, 5], 2));
            assert_eq!(read_channels(&path).unwrap(), 2);
            assert_eq!(v.data, values);
            assert_eq!(v.affine, best_affine(&reference).0);
            assert_eq!(v.axcodes(), "LAS");
        }
        let labels: Vec<i16> = (0..60).map(|v| v - 30).collect();
        let path = dir.join("l.nii.gz");
        let scaled = WriteOptions { scl_slope: 2.0, scl_inter: 1.0, ..WriteOptions::default() };
        write_image(&path, &reference, [3, 4, 5], 1, &labels, &scaled).unwrap();
        let image = read_image(&path).unwrap();
        assert_eq!(image.datatype, DataType::I16);
        assert_eq!(image.data, labels.iter().map(|&v| f64::from(v) * 2.0 + 1.0).collect::<Vec<_>>());
        assert!(write_image(&dir.join("x.img"), &reference, [3, 4, 5], 1, &labels, &scaled).is_err());
        assert!(write_image(&path, &reference, [3, 4, 6], 1, &labels, &scaled).unwrap_err().message.contains("got 60"));
        // Past NIfTI-1's int16 sizes the writer switches to NIfTI-2, which reads back.
        let long: Vec<u8> = (0..40000u32).map(|v| (v % 7) as u8).collect();
        let path = dir.join("long.nii.gz");
        write_image(&path, &reference, [40000, 1, 1], 1, &long, &WriteOptions::default()).unwrap();
        let v = read_volume(&path).unwrap();
        assert_eq!((v.header.format, v.dims), (Format::Nifti2, [40000, 1, 1]));
        assert!(v.data.iter().zip(&long).all(|(&a, &b)| a == f32::from(b)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
