//! Segmentation metrics: overlap, rates, volumes, surface distances and connected
//! components, exact and in linear time.
//!
//! - [`overlap`]: confusion counts of every label of a label volume at once, Dice and
//!   Jaccard.
//! - [`binary`]: every metric of one binary mask pair ([`binary_metrics`]), with the
//!   definitions and the empty-mask conventions.
//! - [`surface`]: surface voxels, Hausdorff, HD95, ASSD and normalised surface Dice.
//! - [`edt`]: the exact, separable, anisotropic Euclidean distance transform under them
//!   (after a search of a small ball around each surface voxel, which settles the near ones).
//! - [`components`]: connected components and detection matching.
//! - [`units`]: label, foreground and connected-component units of a label volume pair
//!   ([`evaluate_labels`]).
//!
//! Volumes are in NIfTI memory order (`i` fastest) with `dims` `(i, j, k)` and voxel
//! spacing in mm along the same axes; distances are in mm and volumes in mm³.

mod bbox;
pub mod binary;
pub mod components;
pub mod edt;
mod nearby;
pub mod overlap;
pub mod surface;
pub mod units;

pub use binary::{binary_metrics, BinaryMetrics};
pub use components::{label_components, match_components, Component, ComponentSummary, Connectivity};
pub use overlap::{confusion, LabelOverlap};
pub use surface::{percentile, surface_voxels, SurfaceDistances};
pub use units::{evaluate_labels, EvalOptions, Target, Unit, UnitResult};
