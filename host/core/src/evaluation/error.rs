//! Why an evaluation stopped: its own error type, so that evaluation needs nothing of the
//! engine's; the engine's `EngineError` takes it whole (`From`).

use crate::config::ConfigError;
use crate::data::DataError;
use crate::io::IoError;

/// Why an evaluation stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad data: a split or dataset that cannot be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Anything else, with what was expected.
    #[error("{0}")]
    Other(String),
}

impl EvaluationError {
    /// Whether the evaluation was asked for something it cannot do as asked (a bad
    /// configuration): exit code 2, like a usage error.
    pub fn is_usage(&self) -> bool {
        matches!(self, EvaluationError::Config(_))
    }
}
