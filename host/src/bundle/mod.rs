//! Model bundles (`.nhb`): everything `niftyhost inference` needs to segment an image,
//! in one file, so that nothing else (config, plugins folder, model folder) is needed.
//!
//! # Format (version 1)
//! A gzip-compressed POSIX tar of regular files (see [`archive`]):
//! ```text
//! manifest.json                  what follows, with the sha256 of every other file
//! config.toml                    the job's whole configuration (as `niftyhost config` prints it)
//! plugins/lib<name>.so           the network plugin library
//! weights/model_<n>.safetensors  parameters and buffers by name (one file per ensemble member)
//! histogram.json                 histogram landmarks (when network.normalisation is on)
//! label_map.json                 the label map (when segmentation.label_normalisation is on)
//! ```
//! The manifest ([`Manifest`]) names the format and version, the network and its
//! plugin library (name, version, file), the host's libtorch ABI tag and plugin-api
//! version, the input spec (modalities and the channels of each, voxel size, axis codes,
//! window, classes) and `files`: path → sha256 of every file but itself.
//!
//! # Opening
//! [`open`] unpacks into a fresh folder, refusing links, absolute paths and `..`
//! ([`archive::unpack`]), a truncated or corrupted stream, a manifest of another
//! format, a libtorch ABI tag or plugin-api version this host cannot load, a file whose
//! sha256 differs from the manifest, and a file the manifest does not list. The sha256
//! sums detect damage, not forgery: whoever can edit a bundle can edit its manifest;
//! check the bundle's own sha256 (printed by `export`) to trust its origin.

pub mod archive;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use abi_stable::library::RootModule;
use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;
use niftyhost_plugin_api::{ComponentKind, PluginModule_Ref};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Overrides, Settings};
use crate::data::ChannelLayout;
use crate::engine::inference::checkpoints_for_inference;
use crate::engine::{checkpoint, Model};
use crate::plugins::{Registry, SearchPath};

/// The manifest's `format`.
pub const FORMAT: &str = "niftyhost-bundle";
/// The manifest's `version` this host writes and reads.
pub const VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The configuration's file name.
pub const CONFIG: &str = "config.toml";

/// Why a bundle cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Not a complete `.tar.gz`.
    #[error("bundle {bundle} is truncated or corrupted: {message}")]
    Corrupt {
        /// The bundle.
        bundle: PathBuf,
        /// What the reader found.
        message: String,
    },
    /// An entry that would write outside the unpacking folder, or is not a plain file.
    #[error("bundle {bundle} refused: entry `{entry}`: {why}")]
    UnsafeEntry {
        /// The bundle.
        bundle: PathBuf,
        /// The entry's name.
        entry: String,
        /// Why.
        why: String,
    },
    /// Contents that do not match the manifest.
    #[error("bundle {bundle} refused: {message}")]
    Tampered {
        /// The bundle.
        bundle: PathBuf,
        /// Which file and how.
        message: String,
    },
    /// Built by a host this one cannot run.
    #[error("bundle {bundle} is incompatible with this niftyhost: {message}")]
    Incompatible {
        /// The bundle.
        bundle: PathBuf,
        /// What differs, expected vs found.
        message: String,
    },
    /// What export needs is missing.
    #[error("cannot export: {0}")]
    Export(String),
    /// The bundled configuration does not load.
    #[error("bundle {bundle}: {source}")]
    Config {
        /// The bundle.
        bundle: PathBuf,
        /// The config error.
        #[source]
        source: ConfigError,
    },
}

/// A plugin library in the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledPlugin {
    /// Path in the bundle.
    pub file: String,
    /// The library's declared name.
    pub library: String,
    /// The library's version.
    pub version: String,
    /// The components used from it (`network:unet3d`).
    pub components: Vec<String>,
}

/// What the model expects as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The image modalities (config sections), in channel order: one `--image` each.
    pub modalities: Vec<String>,
    /// The channels of each modality (a 4D image gives several; `in_channels` is their
    /// total). Empty in bundles written before it was recorded: one each.
    #[serde(default)]
    pub channels: Vec<usize>,
    /// Voxel size images are resampled to, mm (empty: kept).
    pub pixdim: Vec<f64>,
    /// Axis codes images are reoriented to (empty: kept).
    pub axcodes: String,
    /// Inference window `(i, j, k)`.
    pub window: [usize; 3],
    /// Output classes.
    pub num_classes: usize,
}

/// The bundle's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The network component.
    pub network: String,
    /// The niftyhost that wrote it.
    pub created_by: String,
    /// libtorch ABI tag of the host and plugins.
    pub torch_abi_tag: String,
    /// plugin-api version of the host.
    pub plugin_api: String,
    /// Plugin libraries.
    pub plugins: Vec<BundledPlugin>,
    /// Weights files, one per ensemble member.
    pub weights: Vec<String>,
    /// Learned preprocessing files (histogram landmarks, label map).
    pub preprocessing: Vec<String>,
    /// Input spec.
    pub input: InputSpec,
    /// Path → sha256 (hex) of every file but the manifest.
    pub files: BTreeMap<String, String>,
}

/// The plugin-api version this host was built with.
pub fn host_plugin_api() -> String {
    PluginModule_Ref::VERSION_STRINGS.version.to_string()
}

/// sha256 of a file, hex.
///
/// # Errors
/// [`BundleError::Io`].
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    crate::io::digest::sha256_file(path).map_err(|e| BundleError::Io { path: path.to_owned(), message: e.to_string() })
}

/// The input spec of a configuration whose network takes images with `channels`.
pub fn input_spec(settings: &Settings, channels: &ChannelLayout) -> InputSpec {
    let first = &settings.input[&settings.segmentation.image[0]];
    InputSpec {
        modalities: settings.segmentation.image.clone(),
        channels: channels.counts().to_vec(),
        pixdim: first.pixdim.clone(),
        axcodes: first.axcodes.map(|codes| codes.to_string()).unwrap_or_default(),
        window: settings.inference_window(),
        num_classes: settings.segmentation.num_classes,
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The bundle.
    pub bundle: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The manifest.
    pub manifest: Manifest,
}

impl std::fmt::Display for Exported {
    /// The bundle, its weights files, size and sha256, as `niftyhost export` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "exported {} ({} weights file(s), {:.1} MB)",
            self.bundle.display(),
            self.manifest.weights.len(),
            self.bytes as f64 / 1e6
        )?;
        writeln!(f, "sha256 {}", self.sha256)
    }
}

/// Packs a trained model into a bundle at `out`: the network plugin, the checkpoints
/// chosen by `inference.checkpoints` / `inference.inference_iter` (each checked against
/// the network), the configuration and the learned preprocessing.
///
/// # Errors
/// No checkpoint, a network that cannot be built or loaded with the weights, missing
/// preprocessing files, an unwritable output.
pub fn export(settings: &Settings, registry: &Registry, out: &Path) -> Result<Exported, BundleError> {
    let fail = |m: String| BundleError::Export(m);
    let checkpoints = checkpoints_for_inference(settings).map_err(|e| fail(e.to_string()))?;
    let (lib, _) = registry.find(ComponentKind::Network, &settings.network.name).map_err(|e| fail(e.to_string()))?;
    let channels =
        checkpoint::recorded_channels(&checkpoints, &settings.segmentation.image).map_err(|e| fail(e.to_string()))?;
    // Every checkpoint must load into the network, as inference will do.
    let mut model =
        Model::build(registry, settings, channels.clone(), tch::Device::Cpu).map_err(|e| fail(e.to_string()))?;
    for c in &checkpoints {
        checkpoint::load_weights(c, &mut model).map_err(|e| fail(e.to_string()))?;
    }
    let lib_name = lib.path.file_name().and_then(|n| n.to_str()).unwrap_or("libnetwork.so").to_owned();
    let mut files: Vec<(String, PathBuf)> = vec![(format!("plugins/{lib_name}"), lib.path.clone())];
    let mut weights = Vec::new();
    for (n, c) in checkpoints.iter().enumerate() {
        let name = format!("weights/model_{n}.safetensors");
        files.push((name.clone(), c.clone()));
        weights.push(name);
    }
    let mut preprocessing = Vec::new();
    if settings.network.normalisation {
        let p = settings.histogram_file();
        if !p.is_file() {
            return Err(fail(format!("network.normalisation is on but {} is missing: train first", p.display())));
        }
        files.push(("histogram.json".into(), p));
        preprocessing.push("histogram.json".to_owned());
    }
    if settings.segmentation.label_normalisation {
        let p = settings.label_map_file();
        if !p.is_file() {
            return Err(fail(format!(
                "segmentation.label_normalisation is on but {} is missing: train first",
                p.display()
            )));
        }
        files.push(("label_map.json".into(), p));
        preprocessing.push("label_map.json".to_owned());
    }
    // The configuration, made self-contained: checkpoints come from the bundle.
    let mut bundled = settings.clone();
    bundled.inference.checkpoints.clear();
    bundled.inference.inference_iter = -1;
    // A shard belongs to one run over a cohort, not to the model.
    bundled.inference.shard = None;
    bundled.network.histogram_ref_file = PathBuf::new();
    let config_text = toml::to_string_pretty(&bundled).map_err(|e| fail(format!("configuration: {e}")))?;
    let staging = tempdir("export")?;
    let config_path = staging.path.join(CONFIG);
    std::fs::write(&config_path, config_text)
        .map_err(|e| BundleError::Io { path: config_path.clone(), message: e.to_string() })?;
    files.push((CONFIG.into(), config_path));
    let mut sums = BTreeMap::new();
    for (name, path) in &files {
        sums.insert(name.clone(), sha256_file(path)?);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        network: settings.network.name.clone(),
        created_by: format!("niftyhost {}", env!("CARGO_PKG_VERSION")),
        torch_abi_tag: TORCH_ABI_TAG.into(),
        plugin_api: host_plugin_api(),
        plugins: vec![BundledPlugin {
            file: format!("plugins/{lib_name}"),
            library: lib.info.name.to_string(),
            version: lib.info.version.to_string(),
            components: vec![format!("network:{}", settings.network.name)],
        }],
        weights,
        preprocessing,
        input: input_spec(settings, &channels),
        files: sums,
    };
    let manifest_path = staging.path.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| fail(format!("manifest: {e}")))?;
    std::fs::write(&manifest_path, text)
        .map_err(|e| BundleError::Io { path: manifest_path.clone(), message: e.to_string() })?;
    files.insert(0, (MANIFEST.into(), manifest_path));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| BundleError::Io { path: parent.to_owned(), message: e.to_string() })?;
    }
    archive::pack(out, &files)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Exported { bundle: out.to_owned(), sha256: sha256_file(out)?, bytes, manifest })
}

/// A folder removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    /// The folder.
    pub path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh, empty folder under the system's temporary folder.
///
/// # Errors
/// [`BundleError::Io`].
pub fn tempdir(what: &str) -> Result<TempDir, BundleError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let path = base.join(format!("niftyhost-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(TempDir { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BundleError::Io { path, message: e.to_string() }),
        }
    }
}

/// An unpacked, verified bundle.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle file.
    pub source: PathBuf,
    /// Where it is unpacked (removed on drop).
    pub dir: TempDir,
    /// Its manifest.
    pub manifest: Manifest,
}

fn compatible_api(bundle: &str, host: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(bundle), parse(host)) {
        // abi_stable: same major (same minor for 0.x), and the host at least as new.
        (Some((bm, bn)), Some((hm, hn))) => bm == hm && (bm != 0 || bn == hn) && bn <= hn,
        _ => false,
    }
}

/// Unpacks and verifies a bundle (see the module documentation for what is refused).
///
/// # Errors
/// [`BundleError`] naming the bundle and the reason.
pub fn open(path: &Path) -> Result<Bundle, BundleError> {
    let dir = tempdir("model")?;
    let written = archive::unpack(path, &dir.path)?;
    let tampered = |message: String| BundleError::Tampered { bundle: path.to_owned(), message };
    let manifest_path = dir.path.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|_| tampered(format!("it has no {MANIFEST} (is it a niftyhost bundle?)")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| tampered(format!("{MANIFEST} is not JSON: {e}")))?;
    let incompatible = |message: String| BundleError::Incompatible { bundle: path.to_owned(), message };
    let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if format != FORMAT || version != u64::from(VERSION) {
        return Err(incompatible(format!(
            "format `{format}` version {version}, this host reads `{FORMAT}` version {VERSION}"
        )));
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| tampered(format!("{MANIFEST} is malformed: {e}")))?;
    if manifest.torch_abi_tag != TORCH_ABI_TAG {
        return Err(incompatible(format!(
            "built for libtorch ABI `{}`, this host uses `{TORCH_ABI_TAG}`",
            manifest.torch_abi_tag
        )));
    }
    let host_api = host_plugin_api();
    if !compatible_api(&manifest.plugin_api, &host_api) {
        return Err(incompatible(format!(
            "its plugins use plugin-api {}, this host has plugin-api {host_api}",
            manifest.plugin_api
        )));
    }
    for rel in &written {
        let name = rel.to_string_lossy();
        if name != MANIFEST && !manifest.files.contains_key(name.as_ref()) {
            return Err(tampered(format!("file `{name}` is not listed in the manifest")));
        }
    }
    for (name, expected) in &manifest.files {
        let rel = archive::safe_relative(Path::new(name), path)?;
        let file = dir.path.join(rel);
        if !file.is_file() {
            return Err(tampered(format!("`{name}` is listed in the manifest but missing (truncated bundle?)")));
        }
        let got = sha256_file(&file)?;
        if &got != expected {
            return Err(tampered(format!("`{name}` has sha256 {got}, the manifest says {expected}")));
        }
    }
    for needed in manifest.plugins.iter().map(|p| &p.file).chain(&manifest.weights).chain([&CONFIG.to_owned()]) {
        if !manifest.files.contains_key(needed) {
            return Err(tampered(format!("`{needed}` is needed but not listed in the manifest")));
        }
    }
    Ok(Bundle { source: path.to_owned(), dir, manifest })
}

impl Bundle {
    /// The bundled configuration with `overrides` (`--set`) applied, pointed at the
    /// unpacked files (model folder, preprocessing, checkpoints).
    ///
    /// # Errors
    /// [`BundleError::Config`].
    pub fn settings(&self, overrides: &Overrides) -> Result<Settings, BundleError> {
        let config = |source| BundleError::Config { bundle: self.source.clone(), source };
        let mut s = crate::config::load(Some(&self.dir.path.join(CONFIG)), overrides).map_err(config)?;
        s.system.model_dir = self.dir.path.clone();
        s.network.histogram_ref_file = PathBuf::new();
        s.inference.checkpoints = self.manifest.weights.iter().map(|w| self.dir.path.join(w)).collect();
        Ok(s)
    }

    /// Loads the bundled plugin libraries, and nothing else.
    ///
    /// # Errors
    /// A library that does not load, with its reason.
    pub fn registry(&self) -> Result<Registry, BundleError> {
        let files: Vec<PathBuf> = self.manifest.plugins.iter().map(|p| self.dir.path.join(&p.file)).collect();
        let search = SearchPath { files, dirs: Vec::new() };
        let registry = Registry::load(&search);
        if let Some(f) = registry.failures.first() {
            return Err(BundleError::Incompatible { bundle: self.source.clone(), message: f.to_string() });
        }
        Ok(registry)
    }

    /// The channels of each modality the bundled network takes.
    ///
    /// # Errors
    /// [`BundleError::Tampered`]: a manifest whose channel counts do not fit its
    /// modalities.
    pub fn channels(&self) -> Result<ChannelLayout, BundleError> {
        let input = &self.manifest.input;
        ChannelLayout::recorded(&input.modalities, &input.channels).map_err(|m| BundleError::Tampered {
            bundle: self.source.clone(),
            message: format!("{MANIFEST}'s input {m}"),
        })
    }

    /// What must agree for bundles to be ensembled: input spec and learned preprocessing.
    pub fn preprocessing_key(&self) -> (InputSpec, Vec<Option<String>>) {
        let sums = ["histogram.json", "label_map.json"].iter().map(|f| self.manifest.files.get(*f).cloned()).collect();
        (self.manifest.input.clone(), sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_api_compatibility_follows_abi_stable() {
        assert!(compatible_api("1.0.0", "1.2.0"));
        assert!(!compatible_api("1.3.0", "1.2.0"), "a newer plugin needs a newer host");
        assert!(!compatible_api("2.0.0", "1.2.0"));
        assert!(!compatible_api("0.1.0", "0.2.0"));
        assert!(!compatible_api("one", "1.0.0"));
    }

    #[test]
    fn entry_paths_stay_inside() {
        let b = Path::new("b.nhb");
        assert!(archive::safe_relative(Path::new("weights/model_0.safetensors"), b).is_ok());
        for bad in ["../evil", "/etc/passwd", "a/../../evil", "./x", ""] {
            assert!(archive::safe_relative(Path::new(bad), b).is_err(), "{bad}");
        }
    }
}
