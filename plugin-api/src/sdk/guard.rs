//! Catching panics and libtorch errors at the boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::RResult;

use crate::PluginError;

/// Runs a plugin entry point's body: a panic becomes `PluginError { panicked: true }`
/// and never unwinds into the host (which would abort the process).
pub fn guard<T>(body: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result.into(),
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "a panic with a non-string payload".to_owned()
            };
            RResult::RErr(PluginError::panicked(first_line(&message)))
        }
    }
}

/// The first non-empty line of a message: libtorch errors embed a C++ backtrace.
pub fn first_line(message: &str) -> String {
    message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned()
}

impl From<tch::TchError> for PluginError {
    fn from(err: tch::TchError) -> Self {
        PluginError::new(first_line(&err.to_string()))
    }
}
