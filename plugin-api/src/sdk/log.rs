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
    pub(crate) fn install(module: HostModule_Ref, plugin: &'static str) {
        let _ = HOST.set(Host { module, plugin });
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
