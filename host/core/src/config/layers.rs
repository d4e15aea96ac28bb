//! Layering: defaults ← config file ← `NIFTYHOST_*` environment ← command line. Each
//! layer is a TOML table validated on its own (so errors name their origin): known keys,
//! TOML types, then each value parsed into its typed setting (choices, shards, axis
//! codes). The `config` crate merges the layers and deserialises [`Settings`], whose
//! cross-key rules are checked last, naming where the keys involved were set.

use std::path::Path;
use std::sync::OnceLock;

use config::{Config, File, FileFormat};
use serde::Deserialize;
use toml::{Table, Value};

use super::keys::{KeySpec, INPUT_KEYS, KEYS, PLUGIN_TABLES, SHORTCUTS};
use super::{ini, ConfigError, Inconsistency, Settings};

/// Overrides from the environment and the command line, in precedence order.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `(origin, dotted key, TOML literal or bare string)` from the environment.
    pub env: Vec<(String, String, String)>,
    /// `(origin, dotted key, TOML literal or bare string)` from flags and `--set`.
    pub cli: Vec<(String, String, String)>,
}

impl Overrides {
    /// Collects `NIFTYHOST_<SECTION>__<KEY>` variables (`__` separates levels);
    /// `NIFTYHOST_` variables without `__` (e.g. `NIFTYHOST_PLUGIN_PATH`) are not keys.
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (name, value) in vars {
            if let Some(rest) = name.strip_prefix("NIFTYHOST_").filter(|r| r.contains("__")) {
                let key = rest.to_ascii_lowercase().replace("__", ".");
                self.env.push((format!("environment variable {name}"), key, value));
            }
        }
        self.env.sort();
        self
    }
}

/// Splits `key=value` as given to `--set`.
///
/// # Errors
/// A missing `=`.
pub fn parse_set(arg: &str) -> Result<(String, String), ConfigError> {
    arg.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| ConfigError::Parse { origin: format!("--set {arg}"), message: "expected key=value".into() })
}

/// A value as typed by a user: a TOML literal (`0.01`, `[32, 32, 32]`, `true`,
/// `"x"`), else the bare text as a string.
fn literal(text: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

pub(super) fn insert(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_owned()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.to_owned(), value);
}

/// The built-in defaults of [`KEYS`] as one table, parsed once.
fn defaults() -> &'static Table {
    static DEFAULTS: OnceLock<Table> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let mut t = Table::new();
        for spec in KEYS {
            insert(&mut t, spec.key, literal(spec.default));
        }
        t
    })
}

/// Parses one value into its typed setting: [`Settings`] is deserialised from the
/// defaults with `value` at `key`, so every key is checked by its own type.
///
/// # Errors
/// [`ConfigError::BadValue`] naming the key (and its flag), what it takes, and `origin`.
fn check_value(key: &str, value: &Value, origin: &str) -> Result<(), ConfigError> {
    let mut probe = defaults().clone();
    insert(&mut probe, key, value.clone());
    let Err(e) = Settings::deserialize(Value::Table(probe)) else { return Ok(()) };
    let message = e.message();
    // The settings' own types say "must be …"; serde's built-in ones (a negative count,
    // say) describe the value.
    let message = if message.starts_with("must ") { message.to_owned() } else { format!("is invalid: {message}") };
    let shortcut = SHORTCUTS.iter().find(|(k, _)| *k == key).map(|(_, flag)| format!(" (`{flag}`)"));
    Err(ConfigError::BadValue {
        key: key.to_owned(),
        shortcut: shortcut.unwrap_or_default(),
        message,
        origin: origin.to_owned(),
    })
}

/// The spec of a dotted key: `Ok(Some)` for a known key, `Ok(None)` for a key inside a
/// plugin's table (checked by the plugin), `Err` for an unknown key.
fn spec_of(key: &str) -> Result<Option<&'static KeySpec>, ()> {
    if let Some(spec) = KEYS.iter().find(|s| s.key == key) {
        return Ok(Some(spec));
    }
    if PLUGIN_TABLES.iter().any(|t| key.strip_prefix(t).is_some_and(|r| r.starts_with('.'))) {
        return Ok(None);
    }
    let parts: Vec<&str> = key.split('.').collect();
    if let ["input", _, field] = parts.as_slice() {
        if let Some(spec) = INPUT_KEYS.iter().find(|s| s.key == *field) {
            return Ok(Some(spec));
        }
    }
    Err(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
        Value::Datetime(_) => "a date",
    }
}

fn same_type(expected: &Value, got: &Value) -> bool {
    matches!((expected, got), (Value::Float(_), Value::Integer(_)))
        || std::mem::discriminant(expected) == std::mem::discriminant(got)
}

/// Checks every leaf key of one layer, naming the layer in errors.
fn validate(table: &Table, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let is_section = value.is_table() && spec_of(&key).is_err();
        if is_section {
            validate(value.as_table().expect("checked"), &key, origin)?;
            continue;
        }
        match spec_of(&key) {
            Ok(Some(spec)) => {
                let expected = literal(spec.default);
                if !same_type(&expected, value) {
                    return Err(ConfigError::WrongType {
                        key,
                        origin: origin.to_owned(),
                        expected: type_name(&expected),
                        got: value.to_string(),
                    });
                }
                check_value(&key, value, origin)?;
            }
            Ok(None) => {}
            Err(()) => {
                let known = KEYS.iter().map(|s| s.key);
                let hint =
                    crate::nearest::nearest(&key, known).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
                return Err(ConfigError::UnknownKey { key, origin: origin.to_owned(), hint });
            }
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let origin = path.display().to_string();
    let is_ini = matches!(path.extension().and_then(|e| e.to_str()), Some("ini" | "cfg"));
    if is_ini {
        ini::parse(&text, path, |key, value| validate_key(key, value, &origin))
    } else {
        toml::from_str(&text).map_err(|e| ConfigError::Parse { origin, message: e.message().to_owned() })
    }
}

/// Checks one dotted key's value as a layer of its own would be.
fn validate_key(key: &str, value: &Value, origin: &str) -> Result<(), ConfigError> {
    let mut one = Table::new();
    insert(&mut one, key, value.clone());
    validate(&one, "", origin)
}

/// What each key of the NiftyNet INI file at `path` became in niftyhost, or why it was
/// refused: `niftyhost config -c file.ini --explain`.
///
/// # Errors
/// An unreadable file, or a key before any section.
pub fn explain_ini(path: &Path) -> Result<Vec<super::niftynet::Explained>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    ini::explain(&text, path, |key, value| {
        validate_key(key, value, "this file").map_err(|e| e.to_string().replace(" in this file", ""))
    })
}

fn layer(entries: &[(String, String, String)]) -> Result<Table, ConfigError> {
    let mut table = Table::new();
    for (origin, key, text) in entries {
        let mut one = Table::new();
        insert(&mut one, key, literal(text));
        validate(&one, "", origin)?;
        insert(&mut table, key, literal(text));
    }
    Ok(table)
}

/// Loads and validates the configuration.
///
/// # Errors
/// An unreadable file, an unknown key, a wrongly typed value or a value its key does not
/// take (naming key and origin), or an inconsistent merged configuration (naming the
/// keys and where they were set).
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(&toml_text(defaults())?, FileFormat::Toml));
    let mut file_layer = None;
    if let Some(path) = file {
        let table = read_file(path)?;
        let origin = path.display().to_string();
        validate(&table, "", &origin)?;
        builder = builder.add_source(File::from_str(&toml_text(&table)?, FileFormat::Toml));
        file_layer = Some((origin, table));
    }
    for entries in [&overrides.env, &overrides.cli] {
        let table = layer(entries)?;
        builder = builder.add_source(File::from_str(&toml_text(&table)?, FileFormat::Toml));
    }
    let merged = builder.build().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let settings: Settings = merged.try_deserialize().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    settings.validate().map_err(|e| inconsistent(e, file_layer.as_ref(), overrides))?;
    Ok(settings)
}

/// Where `key` got its value: the last layer that sets it (or a table above it).
fn origin_of<'a>(key: &str, file: Option<&'a (String, Table)>, overrides: &'a Overrides) -> &'a str {
    let covers = |set: &str| set == key || key.starts_with(&format!("{set}.")) || set.starts_with(&format!("{key}."));
    let flag = overrides.env.iter().chain(&overrides.cli).rev().find(|(_, set, _)| covers(set));
    if let Some((origin, _, _)) = flag {
        return origin;
    }
    let in_file = file.filter(|(_, table)| {
        let mut value = None;
        let mut level = Some(table);
        for part in key.split('.') {
            value = level.and_then(|t| t.get(part));
            level = value.and_then(Value::as_table);
        }
        value.is_some()
    });
    in_file.map_or("the defaults", |(origin, _)| origin.as_str())
}

/// An [`Inconsistency`] as [`ConfigError::Invalid`], naming the layers its keys came
/// from: "(in c.toml)", "(in c.toml and --set training.fold=3)", "(in the defaults)".
fn inconsistent(e: Inconsistency, file: Option<&(String, Table)>, overrides: &Overrides) -> ConfigError {
    let mut origins: Vec<&str> = Vec::new();
    for key in &e.keys {
        let origin = origin_of(key, file, overrides);
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let origins = match origins.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, init)) => format!("{} and {last}", init.join(", ")),
        None => "the defaults".to_owned(),
    };
    ConfigError::Invalid(format!("{} (in {origins})", e.message))
}

fn toml_text(table: &Table) -> Result<String, ConfigError> {
    toml::to_string(table).map_err(|e| ConfigError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, ext: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("c.{ext}"));
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const BASE: &str = "[input.image]\npath_to_search = \"d\"\n[input.label]\npath_to_search = \"d\"\n[training]\nlr = 0.5\nmax_iter = 7\n";

    fn cli(key: &str, v: &str) -> (String, String, String) {
        (format!("--set {key}={v}"), key.to_owned(), v.to_owned())
    }

    #[test]
    fn later_layers_win_in_order_defaults_file_env_cli() {
        let (_d, path) = write(BASE, "toml");
        let only_file = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(only_file.training.lr, 0.5);
        assert_eq!(only_file.training.max_iter, 7);
        assert_eq!(only_file.network.batch_size, 2, "default kept");

        let env = Overrides::default().with_env([
            ("NIFTYHOST_TRAINING__LR".to_owned(), "0.25".to_owned()),
            ("NIFTYHOST_TRAINING__MAX_ITER".to_owned(), "9".to_owned()),
            ("NIFTYHOST_PLUGIN_PATH".to_owned(), "/x".to_owned()),
        ]);
        let s = load(Some(&path), &env).unwrap();
        assert_eq!((s.training.lr, s.training.max_iter), (0.25, 9));

        let both = Overrides { cli: vec![cli("training.lr", "0.125")], ..env };
        let s = load(Some(&path), &both).unwrap();
        assert_eq!((s.training.lr, s.training.max_iter), (0.125, 9), "cli beats env, env beats file");
    }

    #[test]
    fn unknown_key_names_key_origin_and_nearest() {
        let (_d, path) = write(&format!("{BASE}lrr = 1.0\n"), "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert_eq!(err, format!("unknown key `training.lrr` in {}; did you mean `training.lr`?", path.display()));

        let (_d, path) = write(BASE, "toml");

        let o = Overrides { cli: vec![cli("network.batch_sise", "4")], ..Default::default() };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown key `network.batch_sise` in --set network.batch_sise=4; did you mean `network.batch_size`?"
        );

        let o = Overrides::default().with_env([("NIFTYHOST_SYSTEM__SEDE".to_owned(), "3".to_owned())]);
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unknown key `system.sede` in environment variable NIFTYHOST_SYSTEM__SEDE; did you mean `system.seed`?"
            ),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let (_d, path) = write(BASE, "toml");
        let o = Overrides { cli: vec![cli("training.max_iter", "lots")], ..Default::default() };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert_eq!(err, "key `training.max_iter` in --set training.max_iter=lots must be an integer, got \"lots\"");
    }

    #[test]
    fn plugin_tables_are_free_form_and_unknown_input_keys_are_not() {
        let (_d, path) = write(&format!("{BASE}[network.params]\nbase_channels = 4\n"), "toml");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(s.network.params["base_channels"], 4);
        let (_d, path) = write(&format!("{BASE}[input.t1]\nfilename_contain = [\"a\"]\n"), "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("unknown key `input.t1.filename_contain`"), "{err}");
    }

    #[test]
    fn niftynet_ini_with_its_section_names_is_accepted() {
        let ini = "[T1]\npath_to_search = ./data\nfilename_contains = T1\naxcodes = (L, P, S)\npixdim = (2.0, 2.0, 2.0)\n\n[parcellation]\npath_to_search = ./data\nfilename_contains = (seg, v2)\naxcodes = L,P,S\npixdim = 2, 2, 2\n\n[SYSTEM]\nmodel_dir = ./m\n\n[NETWORK]\nname = unet3d\nbatch_size = 3\nspatial_window_size = (16, 24, 32)\nwhitening = True\n\n[TRAINING]\nlr = 0.01\n\n[SEGMENTATION]\nimage = T1\nlabel = parcellation\nnum_classes = 4\n";
        let (_d, path) = write(ini, "ini");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(s.segmentation.image, vec!["t1".to_owned()]);
        assert_eq!(s.segmentation.label, "parcellation");
        assert_eq!(s.network.spatial_window_size, vec![16, 24, 32]);
        assert_eq!(s.network.batch_size, 3);
        assert_eq!(s.input["parcellation"].filename_contains, vec!["seg".to_owned(), "v2".to_owned()]);
        assert_eq!(s.input["t1"].filename_contains, vec!["T1".to_owned()]);
        assert_eq!(
            (s.input["t1"].axcodes.map(|c| c.to_string()).as_deref(), s.input["t1"].pixdim.as_slice()),
            (Some("LPS"), [2.0, 2.0, 2.0].as_slice())
        );
        assert!(s.network.whitening);
    }

    #[test]
    fn a_bad_value_of_each_typed_key_names_key_file_and_choices() {
        let cases = [
            ("system", "distributed", "\"gloo\"", "one of auto, in-process, mpi, nccl"),
            ("network", "foreground_type", "\"otsu2\"", "one of otsu, mean, threshold, otsu_minus, threshold_minus"),
            ("network", "norm_type", "\"decile\"", "percentile or quartile"),
            ("network", "volume_padding_mode", "\"wrap\"", "one of minimum, constant, edge, symmetric, reflect"),
            ("network", "window_sampling", "\"random\"", "one of uniform, weighted, balanced, resize, foreground"),
            ("training", "optimiser", "\"adamm\"", "one of sgd, momentum, nesterov, adam, adamw, adagrad, rmsprop"),
            ("training", "lr_schedule", "\"linear\"", "one of constant, step, poly, cosine"),
            ("training", "mixed_precision", "\"fp8\"", "none, fp16 or bf16"),
            ("training", "early_stopping_mode", "\"median\"", "mean or validation_up"),
            ("inference", "blending", "\"cosine\"", "constant or gaussian"),
            ("inference", "output_type", "\"masks\"", "labels, probabilities or logits"),
            ("inference", "probability_dtype", "\"float16\"", "float32 or uint8"),
            ("inference", "precision", "\"fp16\"", "fp32, bf16 or auto"),
            ("inference", "shard", "\"2/2\"", "\"i/n\" with 0 <= i < n (e.g. \"0/4\")"),
            ("input.image", "axcodes", "\"RAX\"", "three letters from L/R, A/P, S/I, one per axis (e.g. \"RAS\")"),
        ];
        for (section, key, bad, allowed) in cases {
            let (_d, path) = write(&format!("[{section}]\n{key} = {bad}\n"), "toml");
            let err = load(Some(&path), &Overrides::default()).unwrap_err();
            assert!(matches!(err, ConfigError::BadValue { .. }), "{err:?}");
            let shortcut = if key == "shard" { " (`--shard`)" } else { "" };
            assert_eq!(
                err.to_string(),
                format!("`{section}.{key}`{shortcut} must be {allowed}, got {bad} in {}", path.display())
            );
        }
    }

    #[test]
    fn bad_values_from_flags_and_the_environment_name_them() {
        let (_d, path) = write(BASE, "toml");
        let o = Overrides { cli: vec![cli("training.optimiser", "adamm")], ..Default::default() };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert!(err.starts_with("`training.optimiser` must be one of sgd,"), "{err}");
        assert!(err.ends_with("got \"adamm\" in --set training.optimiser=adamm"), "{err}");
        let o = Overrides::default().with_env([("NIFTYHOST_INFERENCE__BLENDING".to_owned(), "flat".to_owned())]);
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert_eq!(
            err,
            "`inference.blending` must be constant or gaussian, got \"flat\" in environment variable NIFTYHOST_INFERENCE__BLENDING"
        );
        let o = Overrides { cli: vec![cli("system.seed", "-1")], ..Default::default() };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert!(
            err.starts_with("`system.seed` (`--seed`) is invalid: ") && err.ends_with("in --set system.seed=-1"),
            "{err}"
        );
    }

    #[test]
    fn niftynet_06_keys_load_translated_and_refused_keys_name_key_and_reason() {
        let ini = "[T1]\npath_to_search = ./d\nspatial_window_size = (16, 16, 16)\ninterp_order = 3\naxcodes=(A, R, S)\n\
                   [Label]\npath_to_search = ./d\nspatial_window_size = (16, 16, 16)\ninterp_order = 0\naxcodes = A, R, S\n\
                   [SYSTEM]\ncuda_devices = \"\"\nnum_threads = 3\nnum_gpus = 0\nmodel_dir = ./m\n\
                   [NETWORK]\nname = toynet\nactivation_function = relu\ndecay = 0.01\nreg_type = L1\nqueue_length = 8\n\
                   foreground_type = otsu_minus\nmultimod_foreground_type = and\nnormalise_foreground_only = True\n\
                   [TRAINING]\nloss_type = Dice_NS\noptimiser = adam\n\
                   [INFERENCE]\nsave_seg_dir = seg\noutput_interp_order = 0\nborder = 2\n\
                   [SEGMENTATION]\nimage = T1\nlabel = Label\noutput_prob = True\nnum_classes = 3\n";
        let (_d, path) = write(ini, "ini");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!((s.system.loader_threads, s.system.num_gpus), (3, 0));
        assert_eq!(s.network.spatial_window_size, vec![16, 16, 16]);
        assert_eq!(s.image_interp(), crate::preprocess::Interp::Cubic);
        assert_eq!(s.training.weight_decay, 0.01);
        assert_eq!(s.training.weight_decay_norm, super::super::WeightDecayNorm::L1);
        assert_eq!(s.training.queue_length, 4);
        assert_eq!(s.network.foreground_type, super::super::ForegroundType::OtsuMinus);
        assert_eq!(s.network.multimod_foreground_type, super::super::MultimodForeground::And);
        assert_eq!(s.training.loss, "dice");
        assert_eq!(s.inference.output_dir, std::path::PathBuf::from("./m/seg"));
        assert_eq!(s.inference.border, vec![2, 2, 2]);
        assert!(s.inference.output_prob);
        assert_eq!(s.input["t1"].axcodes.map(|c| c.to_string()).as_deref(), Some("ARS"));

        let (_d, path) = write(&ini.replace("[TRAINING]\n", "[TRAINING]\nantialiasing = True\n"), "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::NiftyNet { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.starts_with("NiftyNet key `[TRAINING] antialiasing` in "), "{err}");
        assert!(err.contains("refused: niftyhost's scaling augmentation does not smooth"), "{err}");

        let (_d, path) = write(&ini.replace("num_threads", "num_thread"), "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("unknown key `[SYSTEM] num_thread` in "), "{err}");
        assert!(err.ends_with("; did you mean `num_threads`?"), "{err}");

        let (_d, path) = write(&ini.replace("otsu_minus", "otsu_minu"), "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("`network.foreground_type` must be one of otsu, mean, threshold"), "{err}");

        let (_d, path) = write(&ini.replace("interp_order = 0\naxcodes", "interp_order = 3\naxcodes"), "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("`input.label.interp_order` must be -1 or 0"), "{err}");

        // A file of another application (default_monomodal_regression.ini's RMSE loss on line
        // 17, its [REGRESSION] section further down) is refused as that application.
        let regression = ini.replace("Dice_NS", "RMSE") + "[REGRESSION]\noutput = Label\n";
        let (_d, path) = write(&regression, "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("NiftyNet key `[REGRESSION] output` in "), "{err}");
        assert!(
            err.ends_with(
                "refused: [REGRESSION] configures NiftyNet's regression application: niftyhost segments only"
            ),
            "{err}"
        );
    }

    #[test]
    fn typed_values_load_from_toml_and_niftynet_ini() {
        let (_d, path) = write(
            &format!("{BASE}optimiser = \"adamw\"\nmixed_precision = \"bf16\"\n[inference]\nshard = \"1/3\"\n"),
            "toml",
        );
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(s.training.optimiser, super::super::OptimiserRule::AdamW);
        assert_eq!(s.training.mixed_precision, super::super::MixedPrecision::Bf16);
        assert_eq!(s.inference.shard, super::super::Shard::new(1, 3));
        assert_eq!(s.inference.precision, super::super::InferencePrecision::Auto, "default");
        let ini = "[image]\npath_to_search = d\n[label]\npath_to_search = d\n[TRAINING]\noptimiser = rmsprop\nlr_schedule = poly\n[NETWORK]\nvolume_padding_mode = edge\n";
        let (_d, path) = write(ini, "ini");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(s.training.optimiser, super::super::OptimiserRule::RmsProp);
        assert_eq!(s.training.lr_schedule, super::super::LrSchedule::Poly);
        assert_eq!(s.network.volume_padding_mode, super::super::PaddingMode::Edge);
        let (_d, path) = write(&ini.replace("= poly", "= exponential"), "ini");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "`training.lr_schedule` must be one of constant, step, poly, cosine, got \"exponential\" in {}",
                path.display()
            )
        );
    }

    #[test]
    fn the_merged_configuration_serialises_to_the_defaults_it_was_built_from() {
        // `niftyhost config` prints this: typed values must print as their defaults do.
        let (_d, path) =
            write("[input.image]\npath_to_search = \"d\"\n[input.label]\npath_to_search = \"d\"\n", "toml");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        let printed = Value::try_from(&s).unwrap();
        for spec in KEYS {
            let mut value = Some(&printed);
            for part in spec.key.split('.') {
                value = value.and_then(|v| v.get(part));
            }
            assert_eq!(value, Some(&literal(spec.default)), "{}", spec.key);
        }
        assert_eq!(s.inference.shard, None);
    }

    #[test]
    fn an_inconsistency_names_where_its_keys_were_set() {
        let (_d, path) = write(&BASE.replace("[training]", "[segmentation]\nnum_classes = 1\n[training]"), "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid configuration: `segmentation.num_classes` must be at least 2, got 1 (in {})",
                path.display()
            )
        );

        // Class indices are held as 16-bit labels.
        let (_d, path) = write(&BASE.replace("[training]", "[segmentation]\nnum_classes = 32769\n[training]"), "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("`segmentation.num_classes` must be at most 32768 (16-bit labels), got 32769"), "{err}");

        let (_d, path) = write(BASE, "toml");
        let o = Overrides { cli: vec![cli("training.fold", "3"), cli("training.k_folds", "2")], ..Default::default() };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert!(err.ends_with("got fold 3 of 2 (in --set training.fold=3 and --set training.k_folds=2)"), "{err}");

        // A key of the file against one left at its default.
        let (_d, path) = write(&format!("{BASE}[network]\nwindow_sampling = \"weighted\"\n"), "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration: `network.window_sampling = \"weighted\"` needs"), "{err}");
        assert!(err.ends_with(&format!("(in {} and the defaults)", path.display())), "{err}");

        // Without a file, from the defaults alone or a flag that overrides the environment.
        let err = load(None, &Overrides::default()).unwrap_err().to_string();
        assert!(err.ends_with("(in the defaults)"), "{err}");
        let env = Overrides::default().with_env([("NIFTYHOST_INFERENCE__OVERLAP".to_owned(), "0.5".to_owned())]);
        let o = Overrides { cli: vec![cli("inference.overlap", "1.5")], ..env };
        let err = load(Some(&path), &o).unwrap_err().to_string();
        assert!(
            err.contains("`inference.overlap` must be in [0, 1), got 1.5 (in --set inference.overlap=1.5)"),
            "{err}"
        );
    }

    #[test]
    fn foreground_oversample_and_the_loss_weight_section_are_checked() {
        let (_d, path) = write(BASE, "toml");
        for (set, expected) in [
            (cli("network.foreground_oversample", "1.5"), "`network.foreground_oversample` must be in [0, 1], got 1.5"),
            (
                cli("network.foreground_oversample", "-0.1"),
                "`network.foreground_oversample` must be in [0, 1], got -0.1",
            ),
            (cli("segmentation.weight", "\"w\""), "`segmentation.weight` names input section `w`"),
        ] {
            let o = Overrides { cli: vec![set], ..Default::default() };
            let err = load(Some(&path), &o).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        for (key, v) in [("network.foreground_oversample", "0.0"), ("network.foreground_oversample", "1.0")] {
            load(Some(&path), &Overrides { cli: vec![cli(key, v)], ..Default::default() }).unwrap();
        }
        let o = Overrides { cli: vec![cli("segmentation.weight", "\"label\"")], ..Default::default() };
        assert_eq!(load(Some(&path), &o).unwrap().segmentation.weight, "label");
    }

    #[test]
    fn a_label_window_gives_the_border_and_needs_whole_margins() {
        let (_d, path) = write(BASE, "toml");
        let set = |pairs: &[(&str, &str)]| Overrides {
            cli: pairs.iter().map(|(k, v)| cli(k, v)).collect(),
            ..Default::default()
        };
        let whole = load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!((whole.label_window(), whole.label_border()), ([32, 32, 32], [0, 0, 0]));
        let s = load(Some(&path), &set(&[("network.label_size", "[26, 32, 20]")])).unwrap();
        assert_eq!((s.label_window(), s.label_border()), ([26, 32, 20], [3, 0, 6]));
        assert_eq!(s.inference_border(), [3, 0, 6], "inference keeps the label window");
        let wider = set(&[("network.label_size", "[26, 32, 20]"), ("inference.border", "[5, 1, 0]")]);
        assert_eq!(load(Some(&path), &wider).unwrap().inference_border(), [5, 1, 6]);
        for bad in ["[27, 32, 32]", "[34, 32, 32]", "[26, 26]", "[0, 26, 26]"] {
            let err = load(Some(&path), &set(&[("network.label_size", bad)])).unwrap_err().to_string();
            assert!(err.contains("`network.label_size`"), "{bad}: {err}");
        }
        let odd = load(Some(&path), &set(&[("network.label_size", "[27, 32, 32]")])).unwrap_err().to_string();
        assert!(odd.contains("`network.spatial_window_size`") && odd.contains("2.5"), "{odd}");
    }

    #[test]
    fn a_segmentation_section_must_be_an_input_section_of_its_own() {
        let (_d, path) = write(&format!("{BASE}[input.segs]\npath_to_search = \"s\"\n"), "toml");
        let with = |pairs: &[(&str, &str)]| {
            let o = Overrides { cli: pairs.iter().map(|(k, v)| cli(k, v)).collect(), ..Default::default() };
            load(Some(&path), &o)
        };
        let s = with(&[("evaluation.seg_section", "\"segs\"")]).unwrap();
        assert_eq!(s.evaluation.seg_section, "segs");
        assert!(!s.evaluation_only() && s.require_images("training").is_ok(), "the config has its image section");
        let misspelt = with(&[("evaluation.seg_section", "\"seg\"")]).unwrap_err().to_string();
        assert!(
            misspelt.contains("`evaluation.seg_section` names input section `seg`")
                && misspelt.contains("did you mean `segs`?")
                && misspelt.contains("--set evaluation.seg_section"),
            "{misspelt}"
        );
        for (pairs, wanted) in [
            (&[("evaluation.seg_section", "\"image\"")][..], "an image section"),
            (&[("evaluation.seg_section", "\"label\"")][..], "name the section of the reference labels"),
            (&[("evaluation.seg_section", "\"segs\""), ("segmentation.label", "\"\"")][..], "the label section"),
            (&[("evaluation.seg_section", "\"segs\""), ("evaluation.ref_dir", "\"r\"")][..], "set one of them"),
            (&[("evaluation.seg_section", "\"segs\""), ("evaluation.seg_dir", "\"r\"")][..], "set one of them"),
        ] {
            let err = with(pairs).unwrap_err().to_string();
            assert!(err.contains(wanted), "{pairs:?}: {err}");
        }
        // Without the image section, the config only evaluates (as NiftyNet's evaluation files).
        let (_e, path) = write("[input.label]\npath_to_search = \"d\"\n[input.segs]\npath_to_search = \"s\"\n[evaluation]\nseg_section = \"segs\"\n", "toml");
        let s = load(Some(&path), &Overrides::default()).unwrap();
        assert!(s.evaluation_only());
        let err = s.require_images("training").unwrap_err().to_string();
        assert!(err.contains("training reads the image sections") && err.contains("niftyhost evaluation"), "{err}");
        let (_f, path) = write("[input.label]\npath_to_search = \"d\"\n", "toml");
        let err = load(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(
            err.contains("`segmentation` names input section `image`"),
            "no seg_section: the images are needed: {err}"
        );
    }
}
