//! [`HostModule`]: what the host offers to plugins.

use abi_stable::std_types::RStr;
use abi_stable::StableAbi;

/// Severity of a log record sent by a plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Fine-grained detail.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd but survivable.
    Warn,
    /// Something failed.
    Error,
}

/// Services of the host, handed to a plugin at initialisation and to each factory.
///
/// A plugin never installs a tracing subscriber of its own (a cdylib has its own copy of
/// tracing's globals): it logs through [`HostModule::log`], which the host re-emits as a
/// `tracing` event in its current span.
///
/// Fields are appended after the last one with a minor version bump: a plugin reading a
/// field that its (older) host does not provide gets `None`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostModule_Ref)))]
#[sabi(missing_field(option))]
pub struct HostModule {
    /// Since 1.0: emits a log record: level, target (the plugin's name) and message.
    #[sabi(last_prefix_field)]
    pub log: extern "C" fn(LogLevel, RStr<'_>, RStr<'_>),
}
