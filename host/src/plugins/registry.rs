//! The registry: every library found on the search path, loaded or with its load error,
//! and the lookup from (kind, component name) to the library that provides it. A component
//! of a kind this host does not know (from a newer plugin-api) is never found.

use std::path::PathBuf;

use abi_stable::std_types::RStr;
use niftyhost_plugin_api::sdk::nearest;
use niftyhost_plugin_api::{AugmentationBox, ComponentKind, LossBox, NetworkBox, PluginError};

use super::discover::SearchPath;
use super::info::Component;
use super::load::{host_module, load_library, LoadError, LoadErrorKind, LoadedLibrary};

/// A component that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No loaded library provides it.
    #[error("no {kind} named `{name}` in the loaded plugins{hint} (available: {available}){failures}")]
    NotFound {
        /// network / loss / augmentation.
        kind: &'static str,
        /// The requested name.
        name: String,
        /// "; did you mean …" or empty.
        hint: String,
        /// The names of that kind that are available.
        available: String,
        /// Libraries that failed to load, one per line, or empty.
        failures: String,
    },
    /// The plugin refused to build the component.
    #[error("{kind} `{name}` from {file}: {error}")]
    Plugin {
        /// network / loss / augmentation.
        kind: &'static str,
        /// The component.
        name: String,
        /// The library file.
        file: PathBuf,
        /// What the plugin said.
        error: PluginError,
    },
}

impl RegistryError {
    /// Whether the configuration asked for something no plugin gives as asked: an unknown
    /// component, or parameters the plugin refused (not a panic while building it). Exit
    /// code 2, like a usage error.
    pub fn is_usage(&self) -> bool {
        match self {
            RegistryError::NotFound { .. } => true,
            RegistryError::Plugin { error, .. } => !error.panicked,
        }
    }
}

/// Libraries named with `--plugin` that could not be loaded, one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitFailures(pub Vec<LoadError>);

impl std::fmt::Display for ExplicitFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ExplicitFailures {}

impl ExplicitFailures {
    /// Whether every failure is a `--plugin` path that does not exist (a usage error, exit
    /// code 2); a library that exists but cannot be used is not.
    pub fn is_usage(&self) -> bool {
        self.0.iter().all(|f| matches!(f.kind, LoadErrorKind::NotFound { .. }))
    }
}

/// Every library found, loaded or failed.
#[derive(Debug, Default)]
pub struct Registry {
    /// Libraries that loaded, in search order.
    pub libraries: Vec<LoadedLibrary>,
    /// Libraries that did not, in search order.
    pub failures: Vec<LoadError>,
}

impl Registry {
    /// Loads every candidate of the search path. Failures are recorded, not fatal: good
    /// plugins stay usable.
    pub fn load(search: &SearchPath) -> Registry {
        let mut reg = Registry::default();
        for cand in search.candidates() {
            match load_library(&cand.path) {
                Ok(lib) => reg.libraries.push(lib),
                Err(LoadError { path, kind: LoadErrorKind::NotFound { .. } }) => {
                    let known = search.known_files();
                    let wanted = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                    let names = known.iter().filter_map(|p| p.file_name().and_then(|n| n.to_str()));
                    let suggestion = nearest(&wanted, names).and_then(|n| {
                        known.iter().find(|p| p.file_name().and_then(|f| f.to_str()) == Some(n)).cloned()
                    });
                    let searched = search.dirs.clone();
                    reg.failures.push(LoadError { path, kind: LoadErrorKind::NotFound { searched, suggestion } });
                }
                Err(e) => reg.failures.push(e),
            }
        }
        for f in &reg.failures {
            tracing::warn!("{f}");
        }
        reg
    }

    /// Failures of explicitly requested (`--plugin`) libraries: these end a run.
    pub fn explicit_failures<'a>(&'a self, search: &'a SearchPath) -> impl Iterator<Item = &'a LoadError> + 'a {
        self.failures.iter().filter(move |f| search.files.contains(&f.path))
    }

    /// Whether every explicitly requested (`--plugin`) library loaded.
    ///
    /// # Errors
    /// [`ExplicitFailures`] listing those that did not.
    pub fn check_explicit(&self, search: &SearchPath) -> Result<(), ExplicitFailures> {
        let failed: Vec<LoadError> = self.explicit_failures(search).cloned().collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ExplicitFailures(failed))
        }
    }

    /// All components of a kind, with their library (the first library wins a name).
    pub fn components(&self, kind: ComponentKind) -> Vec<(&LoadedLibrary, &Component)> {
        let mut out: Vec<(&LoadedLibrary, &Component)> = Vec::new();
        for lib in &self.libraries {
            for c in lib.info.components.iter().filter(|c| c.kind == kind) {
                if !out.iter().any(|(_, o)| o.name == c.name) {
                    out.push((lib, c));
                }
            }
        }
        out
    }

    /// The library providing a component.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] with the available names, a "did you mean" and every
    /// library that failed to load.
    pub fn find(&self, kind: ComponentKind, name: &str) -> Result<(&LoadedLibrary, &Component), RegistryError> {
        let all = self.components(kind);
        if let Some(found) = all.iter().find(|(_, c)| c.name.as_str() == name) {
            return Ok(*found);
        }
        let names: Vec<&str> = all.iter().map(|(_, c)| c.name.as_str()).collect();
        let hint = nearest(name, names.iter().copied()).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
        let failures: String = self.failures.iter().map(|f| format!("\n  {f}")).collect();
        Err(RegistryError::NotFound {
            kind: kind.as_str(),
            name: name.to_owned(),
            hint,
            available: if names.is_empty() { "none".into() } else { names.join(", ") },
            failures: if failures.is_empty() {
                failures
            } else {
                format!("\nlibraries that failed to load:{failures}")
            },
        })
    }

    /// Builds a network component.
    ///
    /// # Errors
    /// Not found, or the plugin's own error (e.g. a bad parameter).
    pub fn new_network(&self, name: &str, config: &serde_json::Value) -> Result<NetworkBox, RegistryError> {
        let (lib, _) = self.find(ComponentKind::Network, name)?;
        let json = config.to_string();
        (lib.module.new_network())(RStr::from(name), RStr::from(json.as_str()), host_module()).into_result().map_err(
            |error| RegistryError::Plugin { kind: "network", name: name.to_owned(), file: lib.path.clone(), error },
        )
    }

    /// Builds a loss component.
    ///
    /// # Errors
    /// Not found, or the plugin's own error.
    pub fn new_loss(&self, name: &str, config: &serde_json::Value) -> Result<LossBox, RegistryError> {
        let (lib, _) = self.find(ComponentKind::Loss, name)?;
        let json = config.to_string();
        (lib.module.new_loss())(RStr::from(name), RStr::from(json.as_str()), host_module()).into_result().map_err(
            |error| RegistryError::Plugin { kind: "loss", name: name.to_owned(), file: lib.path.clone(), error },
        )
    }

    /// Builds an augmentation component.
    ///
    /// # Errors
    /// Not found, or the plugin's own error (e.g. an unknown parameter, with the nearest).
    pub fn new_augmentation(&self, name: &str, config: &serde_json::Value) -> Result<AugmentationBox, RegistryError> {
        let (lib, _) = self.find(ComponentKind::Augmentation, name)?;
        let json = config.to_string();
        (lib.module.new_augmentation())(RStr::from(name), RStr::from(json.as_str()), host_module())
            .into_result()
            .map_err(|error| RegistryError::Plugin {
                kind: "augmentation",
                name: name.to_owned(),
                file: lib.path.clone(),
                error,
            })
    }
}
