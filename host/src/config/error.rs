//! Configuration errors: each names the key and where it came from.

use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A source is not valid TOML / INI.
    #[error("{origin}: {message}")]
    Parse {
        /// File, environment variable or flag.
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// A key that no setting has.
    #[error("unknown key `{key}` in {origin}{hint}")]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// File, environment variable or flag.
        origin: String,
        /// "; did you mean `…`?" or empty.
        hint: String,
    },
    /// A value of the wrong type.
    #[error("key `{key}` in {origin} must be {expected}, got {got}")]
    WrongType {
        /// The dotted key.
        key: String,
        /// File, environment variable or flag.
        origin: String,
        /// The expected type.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// The merged configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}
