//! Preprocessing: pure functions on volumes in memory, to run between reading a NIfTI
//! file and sampling windows (and, inverted, between inference and writing outputs).
//!
//! # Data layout
//! A volume is a `&[f32]` holding `channels` volumes one after another, each in NIfTI
//! memory order (`i` fastest, then `j`, then `k`), with its geometry in a [`Grid`]:
//! dims `(i, j, k)` and the voxel-to-world affine (RAS+ millimetres, as nibabel). Voxel
//! sizes are the affine's column norms ([`Grid::pixdim`]). Labels use the same layout with
//! one channel of integral values. Nothing here depends on the NIfTI reader.
//!
//! # Steps and how each is undone on outputs
//! | step | module | changes geometry | changes values | undo on network outputs |
//! |---|---|---|---|---|
//! | reorientation | [`orientation`] | dims permuted, affine columns permuted/negated | no (values moved exactly) | [`reorient`] back to the input's [`axcodes`] (bit-exact) |
//! | resampling | [`resample`](mod@resample) | dims and affine (new voxel size, same field-of-view centre) | interpolated (linear), or copied (nearest) | [`resample_to_grid`] onto the input's grid, nearest for labels, linear for probabilities |
//! | whitening | [`normalise`] | no | images only, per channel | nothing: outputs are labels/probabilities |
//! | histogram standardisation | [`histogram`] | no | images only, per channel | nothing |
//! | label normalisation | [`labels`] | no | labels: values → `0..K-1` | [`LabelMap::invert`] (class index → original value) |
//! | padding | [`pad`](mod@pad) | dims grow, affine origin moves | border voxels added | [`crop`] with the [`PadRecord`] (exact) |
//!
//! A pipeline that reorients, resamples and pads its input undoes them on the output in
//! reverse order: crop, resample to the reoriented grid, reorient to the original codes.
//! Keeping each intermediate [`Grid`] is enough to do so.
//!
//! # Errors
//! Every function checks its buffers against its grid and returns a
//! [`PreprocessError`] for bad input; nothing panics on user data.

mod bspline;
mod error;
mod grid;
pub mod histogram;
pub mod labels;
pub mod normalise;
pub mod orientation;
pub mod pad;
pub mod resample;
mod saved;

pub use error::PreprocessError;
pub use grid::{Grid, IDENTITY};
pub use histogram::{image_landmarks, HistogramConfig, HistogramModel, HistogramTrainer};
pub use labels::{LabelMap, LabelMapLearner};
pub use normalise::{
    foreground_mask, otsu_threshold, whiten, whiten_with_mask, ChannelStats, FixedIntensity, MaskRule,
};
pub use orientation::{axcodes, reorient, reoriented_grid, AxCodes};
pub use pad::{crop, pad, pad_record, pad_to, PadMode, PadRecord};
pub use resample::{resample, resample_to_grid, resampled_grid, Interp};
pub use saved::SavedModel;
