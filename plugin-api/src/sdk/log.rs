//! Logging through the host.

use std::sync::OnceLock;

use abi_stable::std_types::RStr;

use crate::{HostModule_Ref, LogLevel};

static HOST: OnceLock<Host> = OnceLock::new();

/// The host's services as a plugin sees them.
#[derive(Clone, Copy)]
pub struct Host {
    module: HostModule_Ref,
    plugin: &'static str,
}

impl Host {
    /// Remembers the host, and sends this library's panic reports to the host's log at
    /// debug level instead of stderr: every entry point catches its panics and returns
    /// them as errors, which the host reports once. The hook belongs to this library's
    /// own copy of std, so the host's and other plugins' panics are not affected.
    pub(crate) fn install(module: HostModule_Ref, plugin: &'static str) {
        if HOST.set(Host { module, plugin }).is_ok() {
            std::panic::set_hook(Box::new(|info| {
                let location = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                host_log(LogLevel::Debug, &format!("panic{location}: {}", super::guard::first_line(&message)));
            }));
        }
    }

    /// Sends one record to the host's log.
    pub fn log(&self, level: LogLevel, message: &str) {
        (self.module.log())(level, RStr::from(self.plugin), RStr::from(message));
    }
}

/// Logs through the host that initialised this plugin; a no-op before initialisation.
pub fn host_log(level: LogLevel, message: &str) {
    if let Some(host) = HOST.get() {
        host.log(level, message)
    }
}
