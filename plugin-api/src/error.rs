//! [`PluginError`]: what every plugin entry point returns instead of panicking.

use abi_stable::std_types::RString;
use abi_stable::StableAbi;

/// An error raised inside a plugin.
///
/// `message` is one line for users (lowercase, names what was expected and what was
/// got); `panicked` says whether it came from a caught panic rather than a checked error.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginError {
    /// What went wrong.
    pub message: RString,
    /// True when the error is a panic caught at the boundary.
    pub panicked: bool,
}

impl PluginError {
    /// A checked error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: RString::from(message.into()), panicked: false }
    }

    /// An error standing for a panic caught at the boundary.
    pub fn panicked(message: impl Into<String>) -> Self {
        Self { message: RString::from(message.into()), panicked: true }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.panicked {
            write!(f, "plugin panicked: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for PluginError {}
