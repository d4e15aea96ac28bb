//! Segmentation metrics.

pub mod overlap;

pub use overlap::{confusion, LabelOverlap};
