//! Data: subjects from the config's input sections and their split, the channels their
//! images give the network, volumes prepared and cached for sampling, training windows,
//! loader threads, and the grid of inference windows.
//!
//! The parts without tensors are `niftyhost_core::data`, re-exported here under the same
//! paths; augmentation, the window sampler and the loader are the engine's.

pub mod augment;
pub mod loader;
pub mod sampler;

pub use augment::AugmentationChain;
pub use loader::Loader;
pub use niftyhost_core::data::*;
pub use sampler::{foreground_windows, training_sampler, Batch, Prepared, WindowPlan, WindowSampler};
