//! NIfTI-1 volumes through the `nifti` crate: read as float32 in NIfTI memory order,
//! write segmentations with the geometry (sform, qform, pixdim) of a reference header.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ndarray::{Array3, ShapeBuilder};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};

/// An image that cannot be read or written; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct IoError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, with what was expected.
    pub message: String,
}

fn io_error(path: &Path, message: impl Into<String>) -> IoError {
    IoError { path: path.to_owned(), message: message.into() }
}

/// A volume in memory.
///
/// `data` holds `channels` volumes one after another, each in NIfTI memory order (index
/// `i` fastest): as a C-order array it is `[C, k, j, i]`, i.e. `[C, D, H, W]`.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Voxel values after scl_slope / scl_inter.
    pub data: Vec<f32>,
    /// Spatial size `(i, j, k)`.
    pub dims: [usize; 3],
    /// Values per voxel (the 4th dimension, 1 for a 3D image).
    pub channels: usize,
    /// The header read, kept to write outputs in the same geometry.
    pub header: NiftiHeader,
    /// The file.
    pub path: PathBuf,
}

impl Volume {
    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Reads a `.nii`, `.nii.gz` or `.hdr`/`.img` volume (3D, or 4D as channels).
///
/// # Errors
/// Unreadable or malformed files, more than 4 dimensions, or zero-sized dimensions, each
/// naming the file. A panic inside the decoder is caught and reported the same way.
pub fn read_volume(path: &Path) -> Result<Volume, IoError> {
    if !path.is_file() {
        return Err(io_error(path, "no such file"));
    }
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Volume, IoError> {
        let obj = ReaderOptions::new().read_file(path).map_err(|e| io_error(path, e.to_string()))?;
        let header = obj.header().clone();
        let rank = header.dim[0] as usize;
        let squeezable_5d = rank == 5 && header.dim[5] == 1;
        if !((1..=4).contains(&rank) || squeezable_5d) {
            return Err(io_error(path, format!("expected a 3D or 4D image, header says {rank} dimensions")));
        }
        let size = |d: usize| if d <= rank { header.dim[d] as usize } else { 1 };
        let dims = [size(1), size(2), size(3)];
        let channels = size(4);
        if dims.contains(&0) || channels == 0 {
            return Err(io_error(
                path,
                format!("dimensions must be positive, header says {:?}", &header.dim[1..=rank]),
            ));
        }
        let array = obj.into_volume().into_ndarray::<f32>().map_err(|e| io_error(path, e.to_string()))?;
        // Logical order of the reversed axes is NIfTI memory order (i fastest).
        let data: Vec<f32> = array.reversed_axes().iter().copied().collect();
        if data.len() != dims.iter().product::<usize>() * channels {
            return Err(io_error(
                path,
                format!("expected {} voxels, decoded {}", dims.iter().product::<usize>() * channels, data.len()),
            ));
        }
        Ok(Volume { data, dims, channels, header, path: path.to_owned() })
    }));
    result.unwrap_or_else(|_| Err(io_error(path, "the NIfTI decoder failed on this file (malformed header or data)")))
}

/// Writes a label volume (`(i, j, k)`, `i` fastest) with the geometry of `reference`,
/// as uint8; `.nii.gz` paths are compressed.
///
/// # Errors
/// A size mismatch or a write failure, naming the file.
pub fn write_labels(path: &Path, reference: &NiftiHeader, dims: [usize; 3], labels: &[u8]) -> Result<(), IoError> {
    let array = Array3::from_shape_vec((dims[0], dims[1], dims[2]).f(), labels.to_vec())
        .map_err(|e| io_error(path, format!("labels do not fill {dims:?}: {e}")))?;
    let mut header = reference.clone();
    header.cal_min = 0.0;
    header.cal_max = 0.0;
    header.descrip = b"niftyhost segmentation".to_vec();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(path, e.to_string()))?;
    }
    WriterOptions::new(path).reference_header(&header).write_nifti(&array).map_err(|e| io_error(path, e.to_string()))
}
