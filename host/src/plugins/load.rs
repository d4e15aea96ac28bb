//! Loading one plugin library and checking it: abi_stable header, plugin-api version and
//! layout ([`super::layout`]), libtorch ABI tag, and the plugin's own initialisation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::RStr;
use niftyhost_plugin_api::sdk::{first_line, TORCH_ABI_TAG};
use niftyhost_plugin_api::{HostModule, HostModule_Ref, LogLevel, PluginModule_Ref};

use super::info::LibraryInfo;
use super::layout::check_root_module;

/// A library that loaded and initialised.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The file it came from.
    pub path: PathBuf,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// The plugin-api version it was built against.
    pub plugin_api: String,
    /// What it declared.
    pub info: LibraryInfo,
    /// Its root module.
    pub module: PluginModule_Ref,
}

impl fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("plugin_api", &self.plugin_api)
            .field("info", &self.info)
            .finish()
    }
}

/// Why a library cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadErrorKind {
    /// The file does not exist.
    NotFound {
        /// Folders searched for plugins.
        searched: Vec<PathBuf>,
        /// A similarly named library that does exist.
        suggestion: Option<PathBuf>,
    },
    /// The file is not a niftyhost plugin (not a library, or no plugin root module).
    NotAPlugin(String),
    /// The library could not be opened (e.g. a missing dependency).
    Open(String),
    /// Built against an incompatible plugin-api version.
    ApiVersion {
        /// The host's plugin-api version.
        host: String,
        /// The plugin's.
        plugin: String,
    },
    /// Compatible versions, incompatible type layouts: where and what, in one line.
    Layout(String),
    /// A root-module function this host needs is missing (the plugin is older than it).
    Missing {
        /// The root-module field.
        function: &'static str,
        /// The plugin-api version the plugin was built against.
        plugin_api: String,
    },
    /// Built against another libtorch.
    Torch {
        /// The host's tag.
        host: String,
        /// The plugin's.
        plugin: String,
    },
    /// The plugin's own initialisation failed or panicked.
    Init(String),
}

/// A library that cannot be used, with its file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub kind: LoadErrorKind,
}

impl fmt::Display for LoadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadErrorKind::NotFound { searched, suggestion } => {
                let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
                write!(f, "not found (plugin folders searched: {})", dirs.join(", "))?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean {}?", s.display())?;
                }
                Ok(())
            }
            LoadErrorKind::NotAPlugin(why) => write!(f, "not a niftyhost plugin: {why}"),
            LoadErrorKind::Open(why) => write!(f, "cannot be opened: {why}"),
            LoadErrorKind::ApiVersion { host, plugin } => write!(
                f,
                "built against plugin-api {plugin}, incompatible with this host's plugin-api {host}: rebuild the plugin"
            ),
            LoadErrorKind::Layout(cause) => write!(f, "plugin-api layout mismatch: {cause}"),
            LoadErrorKind::Missing { function, plugin_api } => {
                write!(f, "lacks `{function}` (built against plugin-api {plugin_api}): rebuild the plugin")
            }
            LoadErrorKind::Torch { host, plugin } => {
                write!(f, "built against {plugin}, but this host uses {host}: rebuild the plugin")
            }
            LoadErrorKind::Init(why) => write!(f, "initialisation failed: {why}"),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for LoadError {}

extern "C" fn host_log(level: LogLevel, plugin: RStr<'_>, message: RStr<'_>) {
    let (plugin, message) = (plugin.as_str(), message.as_str());
    match level {
        LogLevel::Trace => tracing::trace!(plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(plugin, "{message}"),
        LogLevel::Info => tracing::info!(plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(plugin, "{message}"),
        LogLevel::Error => tracing::error!(plugin, "{message}"),
    }
}

/// The host services handed to every plugin.
pub fn host_module() -> HostModule_Ref {
    static HOST: OnceLock<HostModule_Ref> = OnceLock::new();
    *HOST.get_or_init(|| HostModule { log: host_log }.leak_into_prefix())
}

fn classify(err: LibraryError) -> LoadErrorKind {
    match err {
        LibraryError::OpenError { err, .. } => {
            let msg = first_line(&err.to_string());
            if msg.contains("invalid ELF header") || msg.contains("file too short") || msg.contains("not an ELF") {
                LoadErrorKind::NotAPlugin(msg)
            } else {
                LoadErrorKind::Open(msg)
            }
        }
        LibraryError::GetSymbolError { .. } => LoadErrorKind::NotAPlugin(
            "it exports no abi_stable root module (is it built with niftyhost_plugin_api::export_plugin!?)".into(),
        ),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            LoadErrorKind::ApiVersion { host: expected_version.to_string(), plugin: actual_version.to_string() }
        }
        LibraryError::InvalidCAbi { expected, found } => {
            LoadErrorKind::Layout(format!("C ABI of the root module differs: expected {expected}, found {found}"))
        }
        LibraryError::RootModule { err: RootModuleError::Unwound, .. } => {
            LoadErrorKind::Init("the root module panicked".into())
        }
        LibraryError::RootModule { err, .. } => LoadErrorKind::Init(first_line(&err.to_string())),
        other => LoadErrorKind::NotAPlugin(first_line(&other.to_string())),
    }
}

/// Loads, checks and initialises one library.
///
/// Every library is opened on its own (`lib_header_from_path`), not through abi_stable's
/// per-type cache, so several plugins load side by side. Libraries are never unloaded.
/// The libtorch ABI tag of the root module is compared before any function of the plugin
/// runs; a plugin built against plugin-api 1.0 has none there, and its tag is compared as
/// soon as its `init` returns it, before any other call.
///
/// # Errors
/// The file and the one-line reason it cannot be used.
pub fn load_library(path: &Path) -> Result<LoadedLibrary, LoadError> {
    let fail = |kind| LoadError { path: path.to_owned(), kind };
    if !path.is_file() {
        return Err(fail(LoadErrorKind::NotFound { searched: Vec::new(), suggestion: None }));
    }
    let sha256 = crate::io::digest::sha256_file(path).map_err(|e| fail(LoadErrorKind::Open(e.to_string())))?;
    let header = lib_header_from_path(path).map_err(|e| fail(classify(e)))?;
    let plugin_api = check_root_module(header).map_err(fail)?;
    // SAFETY: `check_root_module` checked the library's root-module layout against
    // `PluginModule_Ref`'s, in the direction that its plugin-api version calls for.
    let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModule_Ref>() }
        .map_err(|e| fail(classify(e)))?;
    let check_tag = |plugin: &str| {
        if plugin == TORCH_ABI_TAG {
            Ok(())
        } else {
            Err(fail(LoadErrorKind::Torch { host: TORCH_ABI_TAG.to_owned(), plugin: plugin.to_owned() }))
        }
    };
    let init_failed = |e: niftyhost_plugin_api::PluginError| fail(LoadErrorKind::Init(e.to_string()));
    let info = match module.torch_abi_tag() {
        Some(tag) => {
            check_tag(tag.as_str())?;
            let describe = module.describe().ok_or_else(|| {
                fail(LoadErrorKind::Missing { function: "describe", plugin_api: plugin_api.to_string() })
            })?;
            LibraryInfo::from(describe(host_module()).into_result().map_err(init_failed)?)
        }
        None => {
            let info = (module.init())(host_module()).into_result().map_err(init_failed)?;
            check_tag(info.torch_abi_tag.as_str())?;
            LibraryInfo::from(&info)
        }
    };
    tracing::debug!(plugin = %info.name, version = %info.version, plugin_api = %plugin_api, file = %path.display(), "plugin loaded");
    Ok(LoadedLibrary { path: path.to_owned(), sha256, plugin_api: plugin_api.to_string(), info, module })
}
