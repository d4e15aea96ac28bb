//! Data: subjects from the config's input sections, volumes prepared for sampling,
//! training windows, loader threads, and the grid of inference windows.

pub mod dataset;
pub mod grid;
pub mod loader;
pub mod sampler;
pub mod window;

pub use dataset::{find_subjects, load_subject, load_subjects, DataError, Subject, SubjectVolumes};
pub use loader::Loader;
pub use sampler::{Batch, WindowSampler};
