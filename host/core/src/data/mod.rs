//! Data without tensors: subjects from the config's input sections and their split, the
//! channels their images give the network, volumes prepared and cached for sampling, and
//! the grid of inference windows. The engine's `niftyhost::data` adds augmentation,
//! training windows and loader threads.

pub mod cache;
pub mod channels;
pub mod csv;
pub mod dataset;
pub mod grid;
pub mod labels;
pub mod phases;
pub mod prepare;
pub mod split;
pub mod window;

pub use channels::ChannelLayout;
pub use dataset::{
    check_subjects, find_subjects, load_subject, DataError, Label, LoadOptions, Needs, Subject, SubjectVolumes,
};
pub use labels::{ClassIndex, LabelVolume};
pub use split::{Phase, Split, SplitSpec};
