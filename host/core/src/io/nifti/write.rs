//! Writing `.nii` / `.nii.gz` in the geometry of a reference header.
//!
//! The output affine is the one nibabel reads from the reference ([`best_affine`]).
//! It is stored twice, consistently: as the sform, and as the nearest quaternion form
//! (`quatern_*`, `qoffset_*`, `pixdim[0..=3]`; exact unless the affine has shear).
//! Codes: `sform_code` is the reference's when set, else its `qform_code`, else 2
//! (aligned); `qform_code` is the reference's (0 stays 0 — "unknown", as nibabel
//! writes an sform-only image — so readers that prefer the qform are not misled).
//! `scl_slope` 1 and `scl_inter` 0 unless [`WriteOptions`] says otherwise, `vox_offset`
//! 352 and magic `n+1` (NIfTI-2, offset 544, only when a size exceeds NIfTI-1's 32767).
//! Files are written to a temporary name in the same folder and renamed when complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::affine::{best_affine, column_norms, quaternion_of, Affine};
use super::header::{DataType, Endian, Format, NiftiHeader};
use super::{io_error, IoError};

/// What to store besides voxels and geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOptions {
    /// `scl_slope` (1: values are stored as they are).
    pub scl_slope: f64,
    /// `scl_inter`.
    pub scl_inter: f64,
    /// `descrip` (up to 80 bytes kept).
    pub description: String,
    /// `intent_code` (0 none; [`super::header::INTENT_LABEL`] for label maps).
    pub intent_code: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { scl_slope: 1.0, scl_inter: 0.0, description: "niftyhost".to_owned(), intent_code: 0 }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A voxel type that can be written: `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`,
/// `i64`, `f32`, `f64`.
pub trait Voxel: Copy + sealed::Sealed {
    /// The NIfTI data type written.
    const DATATYPE: DataType;
    /// Appends the values, little-endian.
    fn extend_le(values: &[Self], out: &mut Vec<u8>);
}

macro_rules! voxel {
    ($($t:ty => $dt:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Voxel for $t {
            const DATATYPE: DataType = DataType::$dt;
            fn extend_le(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * std::mem::size_of::<$t>());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    )*};
}
voxel!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64, f32 => F32, f64 => F64);

/// A minimal reference header for an affine: sform (code 2, aligned) and qform
/// (code 0) from `affine`, voxel size from its column norms. For outputs whose geometry
/// is computed rather than read.
pub fn reference_for_affine(affine: &Affine) -> NiftiHeader {
    let norms = column_norms(affine);
    let mut h = NiftiHeader {
        dim: [3, 1, 1, 1, 1, 1, 1, 1],
        sform_code: 2,
        srow_x: affine[0],
        srow_y: affine[1],
        srow_z: affine[2],
        xyzt_units: 2,
        ..NiftiHeader::default()
    };
    h.pixdim[1..4].copy_from_slice(&norms);
    h
}

/// The header of an output with `shape` (`[i, j, k]` or `[i, j, k, c]`) and `datatype`,
/// in the geometry of `reference` (see the module documentation for the rules).
///
/// # Errors
/// An empty shape or a size of 0, or more than 7 dimensions.
pub fn output_header(
    reference: &NiftiHeader,
    shape: &[usize],
    datatype: DataType,
    options: &WriteOptions,
) -> Result<NiftiHeader, String> {
    if shape.is_empty() || shape.len() > 7 || shape.contains(&0) {
        return Err(format!("expected 1 to 7 sizes of at least 1, got shape {shape:?}"));
    }
    let (affine, _) = best_affine(reference);
    let q = quaternion_of(&affine);
    let norms = column_norms(&affine);
    let mut pixdim = [1.0; 8];
    pixdim[0] = q.qfac;
    for i in 0..3 {
        // Keep the reference's voxel size when it agrees with the affine (so it comes
        // back bit for bit); else the affine's.
        let r = reference.pixdim[i + 1];
        pixdim[i + 1] = if (r - norms[i]).abs() <= 1e-5 * norms[i].max(1.0) && r > 0.0 { r } else { q.pixdim[i] };
    }
    let mut dim = [1i64; 8];
    dim[0] = shape.len() as i64;
    for (d, &s) in dim[1..].iter_mut().zip(shape) {
        *d = i64::try_from(s).map_err(|_| format!("size {s} does not fit a NIfTI header"))?;
    }
    let nifti2 = dim.iter().any(|&d| d > i64::from(i16::MAX));
    let sform_code = if reference.format == Format::Analyze75 {
        2
    } else if reference.sform_code > 0 {
        reference.sform_code
    } else if reference.qform_code > 0 {
        reference.qform_code
    } else {
        2
    };
    let qform_code =
        if reference.format != Format::Analyze75 && reference.qform_code > 0 { reference.qform_code } else { 0 };
    Ok(NiftiHeader {
        format: if nifti2 { Format::Nifti2 } else { Format::Nifti1 },
        endian: Endian::Little,
        magic: if nifti2 { "n+2" } else { "n+1" }.to_owned(),
        dim,
        datatype: datatype.code(),
        bitpix: 8 * datatype.size() as i32,
        pixdim,
        vox_offset: if nifti2 { 544.0 } else { 352.0 },
        scl_slope: options.scl_slope,
        scl_inter: options.scl_inter,
        xyzt_units: reference.xyzt_units & 0x07,
        intent_code: options.intent_code,
        descrip: options.description.as_bytes().iter().copied().take(79).collect(),
        qform_code,
        sform_code,
        quatern_b: q.bcd[0],
        quatern_c: q.bcd[1],
        quatern_d: q.bcd[2],
        qoffset_x: q.offset[0],
        qoffset_y: q.offset[1],
        qoffset_z: q.offset[2],
        srow_x: affine[0],
        srow_y: affine[1],
        srow_z: affine[2],
        ..NiftiHeader::default()
    })
}

/// Whether a path names a gzip output (`.nii.gz`) or a plain one (`.nii`).
fn compressed(path: &Path) -> Result<bool, IoError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    if name.ends_with(".nii.gz") {
        Ok(true)
    } else if name.ends_with(".nii") {
        Ok(false)
    } else {
        Err(io_error(path, "expected a file name ending in .nii or .nii.gz"))
    }
}

/// Writes an image of `channels` volumes of `dims` (`(i, j, k)`, `i` fastest, channel
/// slowest) as `T`'s data type, in the geometry of `reference`; `.nii.gz` names are
/// compressed. A 4th dimension is written only when `channels > 1`.
///
/// # Errors
/// A name not ending in `.nii`/`.nii.gz`, `data` not filling dims × channels, or a
/// write failure, naming the file.
pub fn write_image<T: Voxel>(
    path: &Path,
    reference: &NiftiHeader,
    dims: [usize; 3],
    channels: usize,
    data: &[T],
    options: &WriteOptions,
) -> Result<(), IoError> {
    let gzip = compressed(path)?;
    let expected = dims.iter().chain([&channels]).try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(io_error(
            path,
            format!(
                "expected {}x{}x{}x{channels} = {} values to write, got {}",
                dims[0],
                dims[1],
                dims[2],
                expected.map_or("too many".to_owned(), |n| n.to_string()),
                data.len()
            ),
        ));
    }
    let mut shape = dims.to_vec();
    if channels != 1 {
        shape.push(channels);
    }
    let header = output_header(reference, &shape, T::DATATYPE, options).map_err(|m| io_error(path, m))?;
    let mut bytes = if header.format == Format::Nifti2 {
        header.encode_nifti2(&header.magic)
    } else {
        header.encode_nifti1(&header.magic).map_err(|m| io_error(path, m))?
    };
    T::extend_le(data, &mut bytes);
    write_atomically(path, &bytes, gzip)
}

/// Writes a label volume (`(i, j, k)`, `i` fastest) as uint8 with the geometry of
/// `reference`; `.nii.gz` paths are compressed.
///
/// # Errors
/// As [`write_image`].
pub fn write_labels(path: &Path, reference: &NiftiHeader, dims: [usize; 3], labels: &[u8]) -> Result<(), IoError> {
    let options = WriteOptions { description: "niftyhost segmentation".to_owned(), ..WriteOptions::default() };
    write_image(path, reference, dims, 1, labels, &options)
}

fn write_atomically(path: &Path, bytes: &[u8], gzip: bool) -> Result<(), IoError> {
    let fail = |e: std::io::Error| io_error(path, format!("cannot write: {e}"));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("image");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        if gzip {
            // Level 1, as nibabel: most of the size gain for a fraction of the time.
            let mut gz = GzEncoder::new(&mut out, Compression::new(1));
            gz.write_all(bytes)?;
            gz.finish()?;
        } else {
            out.write_all(bytes)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::super::affine::{qform, sform};
    use super::*;

    fn close(a: &Affine, b: &Affine, tol: f64) -> bool {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn sform_only_references_get_a_consistent_qform_and_keep_their_codes() {
        let reference = NiftiHeader {
            dim: [3, 99, 117, 95, 1, 1, 1, 1],
            pixdim: [1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0],
            sform_code: 2,
            srow_x: [2.0, 0.0, 0.0, -98.0],
            srow_y: [0.0, 2.0, 0.0, -134.0],
            srow_z: [0.0, 0.0, 2.0, -72.0],
            ..NiftiHeader::default()
        };
        let h = output_header(&reference, &[99, 117, 95], DataType::U8, &WriteOptions::default()).unwrap();
        assert_eq!((h.sform_code, h.qform_code), (2, 0));
        assert!(close(&qform(&h), &sform(&reference), 1e-12));
        assert_eq!(h.pixdim[..4], [1.0, 2.0, 2.0, 2.0]);
        assert_eq!(h.vox_offset, 352.0);
        assert_eq!((h.scl_slope, h.scl_inter), (1.0, 0.0));
    }

    #[test]
    fn qform_only_and_analyze_references_get_an_sform() {
        let qonly = NiftiHeader {
            dim: [3, 4, 4, 4, 1, 1, 1, 1],
            pixdim: [-1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0],
            qform_code: 1,
            quatern_c: 1.0,
            qoffset_x: 32.0,
            ..NiftiHeader::default()
        };
        let h = output_header(&qonly, &[4, 4, 4], DataType::I16, &WriteOptions::default()).unwrap();
        assert_eq!((h.sform_code, h.qform_code), (1, 1));
        assert!(close(&sform(&h), &qform(&qonly), 1e-12) && close(&qform(&h), &qform(&qonly), 1e-12));
        let analyze = NiftiHeader { format: Format::Analyze75, magic: String::new(), ..qonly.clone() };
        let h = output_header(&analyze, &[4, 4, 4], DataType::F32, &WriteOptions::default()).unwrap();
        assert_eq!((h.sform_code, h.qform_code), (2, 0));
        assert_eq!(h.srow_x, [-2.0, 0.0, 0.0, 3.0]);
    }

    #[test]
    fn huge_sizes_switch_to_nifti2() {
        let h = output_header(&NiftiHeader::default(), &[40000, 1, 1], DataType::U8, &WriteOptions::default()).unwrap();
        assert_eq!((h.format, h.magic.as_str(), h.vox_offset), (Format::Nifti2, "n+2", 544.0));
        assert!(output_header(&NiftiHeader::default(), &[4, 0, 1], DataType::U8, &WriteOptions::default()).is_err());
    }
}
