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
    /// A value of the right type that the key does not take (an unknown name, a
    /// malformed shard, a negative count).
    #[error("`{key}`{shortcut} {message} in {origin}")]
    BadValue {
        /// The dotted key.
        key: String,
        /// " (`--flag`)" for a key with a command-line shortcut, else empty.
        shortcut: String,
        /// What is wrong: "must be …, got …".
        message: String,
        /// File, environment variable or flag.
        origin: String,
    },
    /// A key of a NiftyNet INI file that niftyhost refuses, or whose value NiftyNet's
    /// specification does not allow.
    #[error("NiftyNet key `{key}` in {origin}: {message}")]
    NiftyNet {
        /// `[SECTION] key`.
        key: String,
        /// File and line.
        origin: String,
        /// "refused: why", or what is wrong with the value.
        message: String,
    },
    /// The merged configuration is inconsistent (the message names the keys and where
    /// they were set), or a value that only the job can check is wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}
