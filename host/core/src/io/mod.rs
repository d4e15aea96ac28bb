//! Reading and writing images.

pub mod digest;
pub mod file_kind;
pub mod info;
pub mod nifti;

pub use self::nifti::{read_volume, write_labels, IoError, NiftiHeader, Volume};
