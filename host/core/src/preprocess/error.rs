//! The one error type of the preprocessing layer.

use std::path::PathBuf;

/// Everything that can go wrong in [`crate::preprocess`]: every message names what was
/// expected and what was found, so a caller can show it to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// A volume's buffer does not hold `channels × i × j × k` values.
    #[error("volume buffer holds {got} values, expected {expected} ({channels} channel(s) of {dims:?} voxels)")]
    DataLength { expected: usize, got: usize, channels: usize, dims: [usize; 3] },

    /// A volume with no channel, or a grid with a zero-sized axis.
    #[error("empty volume: expected at least one channel and dims > 0, got {channels} channel(s) of {dims:?}")]
    EmptyVolume { channels: usize, dims: [usize; 3] },

    /// `i × j × k × channels` does not fit in `usize`.
    #[error("volume size overflows: {channels} channel(s) of {dims:?} voxels")]
    SizeOverflow { channels: usize, dims: [usize; 3] },

    /// An affine with a NaN or an infinity, or a bottom row other than `0 0 0 1`.
    #[error("invalid affine: expected finite values with bottom row [0, 0, 0, 1], got {affine:?}")]
    InvalidAffine { affine: Box<[[f64; 4]; 4]> },

    /// An affine whose 3×3 part cannot be inverted (a zero or colinear column).
    #[error("singular affine: expected an invertible 3x3 part, got {affine:?} (determinant {determinant})")]
    SingularAffine { affine: Box<[[f64; 4]; 4]>, determinant: f64 },

    /// Axis codes that are not one of R/L, A/P, S/I each exactly once.
    #[error(
        "invalid axis codes {codes:?}: expected three letters with one of R/L, one of A/P and one of S/I ({reason})"
    )]
    InvalidAxcodes { codes: String, reason: &'static str },

    /// A voxel size that is not a positive finite number.
    #[error("invalid voxel size on axis {axis}: expected a positive finite spacing in mm, got {value}")]
    InvalidSpacing { axis: usize, value: f64 },

    /// A target size, bin count or similar parameter out of its range.
    #[error("invalid {what}: expected {expected}, got {got}")]
    InvalidParameter { what: &'static str, expected: &'static str, got: String },

    /// A mask that does not have one entry per voxel.
    #[error("mask holds {got} values, expected {expected} (one per voxel)")]
    MaskLength { expected: usize, got: usize },

    /// A volume whose channel count differs from what a learned model was trained on.
    #[error("{what}: expected {expected} channel(s), got {got}")]
    ChannelMismatch { what: &'static str, expected: usize, got: usize },

    /// A list of percentiles that is not strictly increasing inside (0, 1).
    #[error("invalid percentiles {percentiles:?}: expected at least two strictly increasing values in [0, 1]")]
    InvalidPercentiles { percentiles: Vec<f64> },

    /// A standard scale that is not two finite values with `s1 < s2`.
    #[error("invalid standard scale {scale:?}: expected two finite values [s1, s2] with s1 < s2")]
    InvalidScale { scale: [f64; 2] },

    /// A channel with no finite voxel selected by its mask, where one is needed.
    #[error("channel {channel} has no finite voxel inside its mask ({mask}): cannot compute {what}")]
    NoVoxels { channel: usize, mask: String, what: &'static str },

    /// Learning a model from no training volume.
    #[error("no training volume was given: expected at least one to learn {what}")]
    NoTrainingData { what: &'static str },

    /// A label value with a fractional part (or NaN/infinite).
    #[error("label value {value} is not an integer: expected integral label values")]
    NonIntegralLabel { value: f32 },

    /// A label value that the learned label map has not seen in training.
    #[error("label value {value} was not seen in training: expected one of {known:?}")]
    UnknownLabel { value: f32, known: Vec<i64> },

    /// A class index outside `0..K` when mapping network outputs back to label values.
    #[error("class index {value} is out of range: expected an integer in 0..{classes}")]
    ClassOutOfRange { value: f32, classes: usize },

    /// A saved model of another kind or of a format version this build cannot read.
    #[error("unsupported {what} file: expected format {expected_format:?} version {expected_version}, got {got}")]
    UnsupportedFormat { what: &'static str, expected_format: &'static str, expected_version: u32, got: String },

    /// A saved model whose content is inconsistent (e.g. landmark count ≠ percentile count).
    #[error("invalid {what}: {reason}")]
    InvalidModel { what: &'static str, reason: String },

    /// JSON (de)serialisation failed.
    #[error("{what} JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// Reading or writing a model file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The output buffer is over the memory budget, or could not be allocated.
    #[error(transparent)]
    Allocation(#[from] crate::budget::AllocError),

    /// A padded volume whose size does not match the padding record used to crop it.
    #[error("cannot crop: padding record {before:?} + {after:?} does not fit volume dims {dims:?}")]
    CropMismatch { before: [usize; 3], after: [usize; 3], dims: [usize; 3] },
}
