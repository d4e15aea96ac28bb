//! Errors of the engine's jobs.

use niftyhost_plugin_api::PluginError;

use super::checkpoint::CheckpointError;
use super::folder_lock::FolderLockError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::io::IoError;
use crate::plugins::RegistryError;
use crate::torch::DeviceError;

/// Why a training, inference or evaluation job stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A component is missing or refused its parameters.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The model folder is another process's, or cannot be locked.
    #[error(transparent)]
    FolderLock(#[from] FolderLockError),
    /// An evaluation failed.
    #[error(transparent)]
    Evaluation(#[from] niftyhost_core::evaluation::EvaluationError),
    /// A device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A model bundle cannot be opened or used.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// A collective across the job's processes failed or timed out.
    #[error(transparent)]
    Comm(#[from] crate::distributed::CommError),
    /// Problems found before any data was read, each on its own line.
    #[error("{} problem(s) found before reading any data:\n  {}", .0.len(), .0.join("\n  "))]
    Preflight(Vec<String>),
    /// A plugin failed while running.
    #[error("{context}: {error}")]
    Plugin {
        /// What the host was doing.
        context: String,
        /// What the plugin said.
        error: PluginError,
    },
    /// The loss became NaN or infinite.
    #[error(
        "loss is {loss} at iteration {iteration}: training stopped; the last good checkpoint is {last_checkpoint}"
    )]
    NonFinite {
        /// The iteration.
        iteration: u64,
        /// The value.
        loss: f64,
        /// The newest complete checkpoint (or "none").
        last_checkpoint: String,
    },
    /// Anything else, with what was expected.
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// Whether the job was asked for something it cannot do as asked (a bad configuration,
    /// an unknown component or a parameter its plugin refuses, a device that is not one or
    /// cannot be had, a model folder in use by another run): exit code 2, like a usage
    /// error.
    pub fn is_usage(&self) -> bool {
        match self {
            EngineError::Config(_)
            | EngineError::Preflight(_)
            | EngineError::Device(_)
            | EngineError::FolderLock(FolderLockError::Busy { .. }) => true,
            EngineError::Registry(e) => e.is_usage(),
            EngineError::Evaluation(e) => e.is_usage(),
            _ => false,
        }
    }
}
