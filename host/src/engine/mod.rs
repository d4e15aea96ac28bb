//! The engine: a network instance on the host side, optimisers, checkpoints, the trainer,
//! sliding-window inference and evaluation (`niftyhost_core::evaluation`, re-exported).

pub mod checkpoint;
pub mod deep_supervision;
mod error;
pub mod folder_lock;
pub mod folds;
pub mod inference;
pub mod label_window;
pub mod model;
pub mod optim;
pub mod precision;
pub mod preflight;
pub mod replicas;
pub mod tensors;
pub mod trainer;
pub mod validation;

pub use error::EngineError;
pub use model::Model;
pub use niftyhost_core::evaluation;
