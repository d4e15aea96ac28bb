//! Data: subjects from the config's input sections and their split, the channels their
//! images give the network, volumes prepared and cached for sampling, training windows,
//! loader threads, and the grid of inference windows.

pub mod augment;
pub mod cache;
pub mod channels;
pub mod csv;
pub mod dataset;
pub mod grid;
pub mod loader;
pub mod phases;
pub mod prepare;
pub mod sampler;
pub mod split;
pub mod window;

pub use augment::AugmentationChain;
pub use channels::ChannelLayout;
pub use dataset::{
    check_subjects, find_subjects, load_subject, DataError, Label, LoadOptions, Needs, Subject, SubjectVolumes,
};
pub use loader::Loader;
pub use sampler::{foreground_windows, training_sampler, Batch, Prepared, WindowPlan, WindowSampler};
pub use split::{Phase, Split, SplitSpec};
