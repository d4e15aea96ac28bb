//! NiftyNet 0.6's configuration keys, each translated to niftyhost's keys or refused by
//! name with the reason: the table [`NIFTYNET_KEYS`] (one row per section and key of
//! NiftyNet's config specification, `niftynet/utilities/user_parameters_*.py`) and
//! [`translate`], which turns the entries of a NiftyNet INI file into niftyhost's table
//! and an account of every key ([`Explained`], printed by `niftyhost config --explain`).
//!
//! A key of niftyhost's own (`[NETWORK] foreground_oversample`, say) is taken as it is.
//! A key in no table is unknown, with the nearest NiftyNet or niftyhost key of its section
//! as "did you mean"; a NiftyNet key in another section than NiftyNet reads it from is
//! refused (NiftyNet 0.6 ignores it there). Empty values (`csv_file =`) keep the default;
//! so does an absent or empty `model_dir` (niftyhost's `runs/model`, where NiftyNet used
//! `<config folder>/model`), and NiftyNet's output paths relative to the model folder
//! (`save_seg_dir`, `save_csv_dir`, `dataset_split_file`) are joined to the file's
//! `model_dir`. Keys the file does not give keep niftyhost's defaults, not NiftyNet's.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Value;

use super::keys::{INPUT_KEYS, KEYS};

/// The sections NiftyNet names; any other section is an input section.
pub const FIXED_SECTIONS: &[&str] = &["system", "network", "training", "inference", "evaluation", "segmentation"];

/// Sections of NiftyNet's other applications, refused whole.
const OTHER_APPLICATIONS: &[(&str, &str)] = &[
    ("regression", "regression"),
    ("gan", "generative adversarial network"),
    ("autoencoder", "autoencoder"),
    ("classification", "classification"),
    ("registration", "label-driven registration"),
];

/// Whether `section` configures another NiftyNet application than segmentation (a file
/// with one is refused as such, before its other keys).
pub fn is_other_application(section: &str) -> bool {
    OTHER_APPLICATIONS.iter().any(|(s, _)| s.eq_ignore_ascii_case(section))
}

/// One key as written in a NiftyNet INI file.
#[derive(Debug, Clone, PartialEq)]
pub struct IniEntry {
    /// 1-based line number.
    pub line: usize,
    /// The section as written (`T1`, `NETWORK`).
    pub section: String,
    /// The key, lowercased.
    pub key: String,
    /// The value as written (empty for a bare key).
    pub raw: String,
}

impl IniEntry {
    /// The section lowercased.
    fn place(&self) -> String {
        self.section.to_ascii_lowercase()
    }
}

/// What a NiftyNet key becomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// These niftyhost keys take these values.
    Set {
        /// `(dotted key, value)`.
        keys: Vec<(String, Value)>,
    },
    /// Accepted with nothing to set.
    Kept {
        /// Why that changes nothing.
        why: String,
    },
    /// A NiftyNet setting niftyhost does not have.
    Refused {
        /// Why.
        reason: String,
    },
    /// A value the key does not take (in NiftyNet or in niftyhost's check).
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// Not a key of this section.
    Unknown {
        /// The nearest key of the section.
        nearest: Option<String>,
    },
}

impl Outcome {
    fn set(keys: Vec<(&str, Value)>) -> Outcome {
        Outcome::Set { keys: keys.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
    }

    fn kept(why: impl Into<String>) -> Outcome {
        Outcome::Kept { why: why.into() }
    }

    fn refused(reason: impl Into<String>) -> Outcome {
        Outcome::Refused { reason: reason.into() }
    }

    fn invalid(message: impl Into<String>) -> Outcome {
        Outcome::Invalid { message: message.into() }
    }

    /// Whether the key stops the configuration from loading.
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Refused { .. } | Outcome::Invalid { .. } | Outcome::Unknown { .. })
    }
}

/// One key of the file and what it became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explained {
    /// 1-based line number.
    pub line: usize,
    /// The section as written.
    pub section: String,
    /// The key.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What it became.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How it was read, where that is not the obvious way (a key read from another section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>4}  [{}] {} = {}  ", self.line, self.section, self.key, self.value)?;
        match &self.outcome {
            Outcome::Set { keys } => {
                let keys: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                write!(f, "-> {}", keys.join(", "))
            }
            Outcome::Kept { why } => write!(f, "-> kept, nothing to set: {why}"),
            Outcome::Refused { reason } => write!(f, "-> refused: {reason}"),
            Outcome::Invalid { message } => write!(f, "-> invalid: {message}"),
            Outcome::Unknown { nearest } => {
                write!(f, "-> unknown key of [{}]", self.section)?;
                nearest.iter().try_for_each(|n| write!(f, "; did you mean `{n}`?"))
            }
        }?;
        self.note.iter().try_for_each(|n| write!(f, " ({n})"))
    }
}

/// What the translation of a key does with it.
#[derive(Clone, Copy)]
pub enum Rule {
    /// The niftyhost key of the same meaning (for input sections, the key inside
    /// `input.<name>`); the value is read as that key's type and checked as it is.
    Same(&'static str),
    /// Translated by a conversion; the text says into what.
    Convert(&'static str, fn(&Context, &str) -> Outcome),
    /// Accepted only with these values (compared case-insensitively, numbers as numbers),
    /// which change nothing in niftyhost; the text says why.
    Only(&'static [&'static str], &'static str),
    /// Refused; the text says why.
    Refuse(&'static str),
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Rule {
    /// The rule in words (the table's documentation).
    pub fn describe(&self) -> String {
        match self {
            Rule::Same(key) => format!("-> {key}"),
            Rule::Convert(what, _) => format!("-> {what}"),
            Rule::Only(values, why) => format!("only {}: {why}", values.join(" / ")),
            Rule::Refuse(why) => format!("refused: {why}"),
        }
    }
}

/// One key of NiftyNet's configuration specification.
#[derive(Debug, Clone, Copy)]
pub struct NiftyNetKey {
    /// Its section, lowercased; `input` for the input sections.
    pub section: &'static str,
    /// The key.
    pub key: &'static str,
    /// What niftyhost makes of it.
    pub rule: Rule,
}

const fn key(section: &'static str, key: &'static str, rule: Rule) -> NiftyNetKey {
    NiftyNetKey { section, key, rule }
}

use Rule::{Convert, Only, Refuse, Same};

const NO_DROPOUT: &str = "no niftyhost network has dropout";

/// Every key of NiftyNet 0.6's segmentation configuration, by section.
pub const NIFTYNET_KEYS: &[NiftyNetKey] = &[
    // [SYSTEM]
    key("system", "cuda_devices", Convert("system.devices = the first num_gpus of these GPUs", cuda_devices)),
    key("system", "num_threads", Same("system.loader_threads")),
    key("system", "num_gpus", Convert("system.num_gpus (or, with cuda_devices, how many of them)", num_gpus)),
    key("system", "model_dir", Same("system.model_dir")),
    key("system", "dataset_split_file", Convert("system.dataset_split_file (relative: in model_dir)", split_file)),
    key(
        "system",
        "event_handler",
        Convert("kept when it lists NiftyNet's default handlers, which niftyhost's engine has built in", event_handler),
    ),
    key("system", "iteration_generator", Only(&["iteration_generator"], "niftyhost's training loop is built in")),
    // [NETWORK]
    key(
        "network",
        "name",
        Convert("network.name (NiftyNet's names and module paths mapped; nonewnet: dynunet with its topology)", network_name),
    ),
    key("network", "activation_function", Convert("network.params.activation", activation)),
    key(
        "network",
        "batch_size",
        Convert("network.batch_size and inference.batch_size (NiftyNet's grid sampler batches by it too)", batch_size),
    ),
    key(
        "network",
        "smaller_final_batch_mode",
        Only(&["pad", "dynamic"], "niftyhost runs a smaller last inference batch as it is"),
    ),
    key("network", "decay", Same("training.weight_decay")),
    key("network", "reg_type", Convert("training.weight_decay_norm (L2 -> l2, L1 -> l1)", reg_type)),
    key("network", "volume_padding_size", Same("network.volume_padding_size")),
    key("network", "volume_padding_mode", Same("network.volume_padding_mode")),
    key("network", "volume_padding_to_size", Only(&["0"], "padding to a fixed size is not in niftyhost")),
    key("network", "window_sampling", Same("network.window_sampling")),
    key(
        "network",
        "force_output_identity_resizing",
        Only(&["false"], "outputs are always put back on the input image's grid"),
    ),
    key("network", "queue_length", Convert("training.queue_length = ceil(windows / batch_size) batches", queue_length)),
    key("network", "multimod_foreground_type", Convert("network.multimod_foreground_type", multimod)),
    key("network", "histogram_ref_file", Same("network.histogram_ref_file")),
    key("network", "norm_type", Same("network.norm_type")),
    key("network", "cutoff", Same("network.cutoff")),
    key("network", "foreground_type", Convert("network.foreground_type (otsu_plus -> otsu, ...)", foreground_type)),
    key("network", "normalisation", Same("network.normalisation")),
    key("network", "rgb_normalisation", Only(&["false"], "niftyhost reads NIfTI volumes, not RGB images")),
    key("network", "whitening", Same("network.whitening")),
    key("network", "normalise_foreground_only", Same("network.normalise_foreground_only")),
    key(
        "network",
        "weight_initializer",
        Only(&["he_normal"], "niftyhost's network plugins initialise their own weights"),
    ),
    key("network", "bias_initializer", Only(&["zeros"], "niftyhost's network plugins initialise their own biases")),
    key(
        "network",
        "weight_initializer_args",
        Only(&["{}"], "niftyhost's network plugins initialise their own weights"),
    ),
    key("network", "bias_initializer_args", Only(&["{}"], "niftyhost's network plugins initialise their own biases")),
    key("network", "keep_prob", Only(&["1"], NO_DROPOUT)),
    // [TRAINING]
    key("training", "optimiser", Convert("training.optimiser (gradientdescent -> sgd)", optimiser)),
    key("training", "sample_per_volume", Same("training.sample_per_volume")),
    key("training", "rotation_angle", Same("training.rotation_angle")),
    key("training", "rotation_angle_x", Same("training.rotation_angle_x")),
    key("training", "rotation_angle_y", Same("training.rotation_angle_y")),
    key("training", "rotation_angle_z", Same("training.rotation_angle_z")),
    key("training", "scaling_percentage", Same("training.scaling_percentage")),
    key("training", "isotropic_scaling", Same("training.isotropic_scaling")),
    key(
        "training",
        "antialiasing",
        Only(
            &["false"],
            "niftyhost's scaling augmentation does not smooth before shrinking (NiftyNet's default, true, is refused)",
        ),
    ),
    key("training", "bias_field_range", Same("training.bias_field_range")),
    key("training", "bf_order", Same("training.bf_order")),
    key("training", "random_flipping_axes", Same("training.random_flipping_axes")),
    key("training", "do_elastic_deformation", Same("training.do_elastic_deformation")),
    key("training", "num_ctrl_points", Same("training.num_ctrl_points")),
    key("training", "deformation_sigma", Same("training.deformation_sigma")),
    key("training", "proportion_to_deform", Same("training.proportion_to_deform")),
    key("training", "lr", Same("training.lr")),
    key("training", "loss_type", Convert("training.loss (NiftyNet's loss names mapped)", loss_type)),
    key("training", "starting_iter", Same("training.starting_iter")),
    key("training", "save_every_n", Convert("training.save_every_n (0: only the final checkpoint)", save_every_n)),
    key("training", "tensorboard_every_n", Same("training.tensorboard_every_n")),
    key("training", "max_iter", Same("training.max_iter")),
    key("training", "max_checkpoints", Same("training.max_checkpoints")),
    key(
        "training",
        "validation_every_n",
        Convert("training.validation_every_n (negative: 0, never)", validation_every_n),
    ),
    key("training", "validation_max_iter", Same("training.validation_max_iter")),
    key("training", "exclude_fraction_for_validation", Same("training.exclude_fraction_for_validation")),
    key("training", "exclude_fraction_for_inference", Same("training.exclude_fraction_for_inference")),
    key("training", "vars_to_restore", Same("training.vars_to_restore")),
    key("training", "vars_to_freeze", Same("training.vars_to_freeze")),
    key("training", "patience", Same("training.patience")),
    key("training", "early_stopping_mode", Same("training.early_stopping_mode")),
    // [INFERENCE]
    key(
        "inference",
        "spatial_window_size",
        Convert("inference.spatial_window_size (2-D sizes get k = 1; 0 = the image's full length)", inference_window),
    ),
    key("inference", "inference_iter", Same("inference.inference_iter")),
    key(
        "inference",
        "dataset_to_infer",
        Only(&["", "inference"], "niftyhost segments the split file's INFER subjects (or --image files)"),
    ),
    key("inference", "save_seg_dir", Convert("inference.output_dir (relative: in model_dir)", save_seg_dir)),
    key("inference", "output_postfix", Same("inference.output_postfix")),
    key("inference", "output_interp_order", Same("inference.output_interp_order")),
    key(
        "inference",
        "border",
        Convert("inference.border (clamped to (window - 1) / 2 on an axis the inference window cannot crop by it)", border),
    ),
    key("inference", "fill_constant", Only(&["0"], "voxels no window covers are background (0)")),
    // [EVALUATION]
    key(
        "evaluation",
        "evaluations",
        Convert("checked: every metric named is a column of the metrics CSV", evaluations),
    ),
    key(
        "evaluation",
        "save_csv_dir",
        Convert("evaluation.output_csv = <dir>/metrics.csv (relative: in model_dir)", save_csv_dir),
    ),
    // [SEGMENTATION]
    key("segmentation", "image", Convert("segmentation.image (section names lowercased)", section_names)),
    key("segmentation", "label", Convert("segmentation.label (lowercased)", section_names)),
    key(
        "segmentation",
        "weight",
        Convert("segmentation.weight (lowercased; kept in an evaluation file that does not define it)", weight),
    ),
    key("segmentation", "sampler", Convert("segmentation.sampler (lowercased)", section_names)),
    key(
        "segmentation",
        "inferred",
        Convert("evaluation.seg_section (lowercased): paired with the label section by subject id", inferred),
    ),
    key("segmentation", "num_classes", Same("segmentation.num_classes")),
    key("segmentation", "output_prob", Same("inference.output_prob")),
    key("segmentation", "label_normalisation", Same("segmentation.label_normalisation")),
    key(
        "segmentation",
        "softmax",
        Only(&["true"], "niftyhost's losses take the network's logits and apply the softmax"),
    ),
    key("segmentation", "min_sampling_ratio", Convert("kept: only NiftyNet's selective sampler read it", selective)),
    key("segmentation", "compulsory_labels", Convert("kept: only NiftyNet's selective sampler read it", selective)),
    key("segmentation", "rand_samples", Convert("kept: only NiftyNet's selective sampler read it", selective)),
    key("segmentation", "min_numb_labels", Convert("kept: only NiftyNet's selective sampler read it", selective)),
    key("segmentation", "proba_connect", Convert("kept: only NiftyNet's selective sampler read it", selective)),
    key("segmentation", "evaluation_units", Same("evaluation.evaluation_units")),
    key("segmentation", "do_mixup", Only(&["false"], "mixup augmentation is not in niftyhost")),
    key("segmentation", "mixup_alpha", Convert("kept: read only with do_mixup, which is refused", mixup)),
    key("segmentation", "mix_match", Convert("kept: read only with do_mixup, which is refused", mixup)),
    // Input sections.
    key("input", "csv_file", Same("csv_file")),
    key(
        "input",
        "csv_data_file",
        Only(&[""], "per-subject CSV data (classification labels, patch coordinates) is not in niftyhost"),
    ),
    key("input", "to_ohe", Only(&["false"], "read only with csv_data_file")),
    key("input", "path_to_search", Same("path_to_search")),
    key("input", "filename_contains", Same("filename_contains")),
    key("input", "filename_not_contains", Same("filename_not_contains")),
    key("input", "filename_removefromid", Convert("filename_removefromid (a plain substring)", remove_from_id)),
    key("input", "interp_order", Convert("interp_order (0 nearest, 1 linear, 3 cubic B-spline)", interp_order)),
    key(
        "input",
        "loader",
        Only(
            &["", "none", "nibabel", "simpleitk"],
            "niftyhost reads NIfTI files itself (other loaders read other formats)",
        ),
    ),
    key("input", "pixdim", Same("pixdim")),
    // Not in NiftyNet 0.6's specification: default_eval_config.ini's `[settings]` section.
    key(
        "input",
        "application_type",
        Refuse(
            "the format of NiftyNet's early stand-alone evaluation (run_evaluation.py, removed in September 2017 \
             before NiftyNet 0.2; NiftyNet 0.6 cannot read it either): evaluate with `niftyhost evaluation` \
             (evaluation.seg_dir, evaluation.ref_dir)",
        ),
    ),
    key("input", "axcodes", Convert("axcodes ((A, R, S) -> \"ARS\")", axcodes)),
    key(
        "input",
        "spatial_window_size",
        Convert(
            "images: network.spatial_window_size; a smaller label window: network.label_size; a label window with no image window: network.spatial_window_size",
            input_window,
        ),
    ),
];

/// What a conversion sees: the whole file and the section of the key; a conversion may
/// leave a note on how it read the value (shown by `--explain`).
pub struct Context<'a> {
    entries: &'a [IniEntry],
    section: String,
    note: std::cell::RefCell<Option<String>>,
}

impl Context<'_> {
    /// The raw value of `[section] key` (sections compared lowercased), unquoted.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|e| e.place() == section && e.key == key).map(|e| unquote(&e.raw))
    }

    /// A non-empty value of `[section] key`.
    fn given(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key).filter(|v| !v.is_empty())
    }

    /// The model folder: `[SYSTEM] model_dir`, else niftyhost's default.
    fn model_dir(&self) -> PathBuf {
        let default = || default_of("system.model_dir").and_then(|v| v.as_str().map(PathBuf::from)).unwrap_or_default();
        self.given("system", "model_dir").map_or_else(default, PathBuf::from)
    }

    /// A path relative to the model folder (NiftyNet's rule for its output paths).
    fn in_model_dir(&self, raw: &str) -> Value {
        let path = Path::new(raw);
        let path = if path.is_absolute() { path.to_owned() } else { self.model_dir().join(path) };
        Value::String(path.display().to_string())
    }

    /// The segmentation role of the current (input) section.
    fn role(&self) -> Option<&'static str> {
        ["image", "label", "weight", "sampler", "inferred"].into_iter().find(|role| {
            let names = self.get("segmentation", role).map(items).unwrap_or_default();
            names.iter().any(|n| n.eq_ignore_ascii_case(&self.section))
        })
    }

    /// The window of the first image section, if it gives one.
    fn image_window(&self) -> Option<Vec<i64>> {
        self.first_window("image")
    }

    /// The window of the first section of `[SEGMENTATION] role`, if it gives one.
    fn first_window(&self, role: &str) -> Option<Vec<i64>> {
        let section = self.get("segmentation", role).map(items)?.into_iter().next()?.to_ascii_lowercase();
        self.given(&section, "spatial_window_size").and_then(|w| window(w).ok())
    }

    /// The label window and the image window, when the file gives both.
    fn label_and_image_windows(&self) -> Option<(Vec<i64>, Vec<i64>)> {
        Some((self.first_window("label")?, self.image_window()?))
    }
}

/// The value without surrounding quotes and blanks.
fn unquote(raw: &str) -> &str {
    let t = raw.trim();
    for q in ['"', '\''] {
        if let Some(inner) = t.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner.trim();
        }
    }
    t
}

/// The items of a NiftyNet list: `(a, b)`, `[a, b]`, `a, b` or `a`.
fn items(raw: &str) -> Vec<String> {
    let t = unquote(raw);
    let t = t.strip_prefix(['(', '[']).unwrap_or(t);
    let t = t.strip_suffix([')', ']']).unwrap_or(t);
    t.split(',').map(|s| unquote(s).to_owned()).filter(|s| !s.is_empty()).collect()
}

/// NiftyNet's window sizes (`spatial_atleast3d`): 1 to 3 positive integers, padded with 1s.
fn window(raw: &str) -> Result<Vec<i64>, String> {
    let sizes: Result<Vec<i64>, _> = items(raw).iter().map(|s| s.parse::<i64>()).collect();
    match sizes {
        Ok(mut s) if (1..=3).contains(&s.len()) && s.iter().all(|v| *v > 0) => {
            s.resize(3, 1);
            Ok(s)
        }
        _ => Err(format!("must be one to three positive sizes such as (64, 64, 64), got `{raw}`")),
    }
}

/// An inference window: as [`window`], but NiftyNet's 0 (or negative) size is the image's
/// full length along that axis (`image_window.py`), niftyhost's 0.
fn full_extent_window(raw: &str) -> Result<Vec<i64>, String> {
    let sizes: Result<Vec<i64>, _> = items(raw).iter().map(|s| s.parse::<i64>()).collect();
    match sizes {
        Ok(mut s) if (1..=3).contains(&s.len()) => {
            s.iter_mut().for_each(|v| *v = (*v).max(0));
            s.resize(3, 1);
            Ok(s)
        }
        _ => {
            Err(format!("must be one to three sizes such as (64, 64, 64), 0 for the image's full length, got `{raw}`"))
        }
    }
}

fn ints(values: &[i64]) -> Value {
    Value::Array(values.iter().map(|v| Value::Integer(*v)).collect())
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// The niftyhost default of a dotted key (`input.*.x` looks up `x` in [`INPUT_KEYS`]).
fn default_of(key: &str) -> Option<Value> {
    let literal = match key.strip_prefix("input.") {
        Some(rest) => INPUT_KEYS.iter().find(|s| rest.rsplit('.').next() == Some(s.key))?.default,
        None => KEYS.iter().find(|s| s.key == key)?.default,
    };
    toml::from_str::<toml::Table>(&format!("v = {literal}")).ok()?.remove("v")
}

/// A raw INI value read as `key`'s type (a list for a list key, a string for a string
/// key); one number for a key of three sizes is repeated (`volume_padding_size = 21`).
pub(super) fn typed(key: &str, raw: &str) -> Value {
    let default = default_of(key);
    if is_string_list(key, default.as_ref()) {
        // Names keep their text: `filename_contains = 003` is the string "003".
        return Value::Array(items(raw).into_iter().map(Value::String).collect());
    }
    let value = convert(raw, default.as_ref());
    match (&default, &value) {
        (Some(Value::Array(d)), Value::Array(v)) if d.len() == 3 && v.len() == 1 && d.iter().all(Value::is_integer) => {
            Value::Array(vec![v[0].clone(), v[0].clone(), v[0].clone()])
        }
        _ => value,
    }
}

/// List keys of text whose default is empty (so its type does not say so).
const STRING_LISTS: &[&str] = &["filename_contains", "filename_not_contains", "inference.checkpoints"];

/// Whether `key` takes a list of strings (its default is one, or it is in [`STRING_LISTS`]).
fn is_string_list(key: &str, default: Option<&Value>) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    STRING_LISTS.iter().any(|k| *k == key || *k == last)
        || matches!(default, Some(Value::Array(d)) if d.first().is_some_and(Value::is_str))
}

/// Converts one untyped INI value, guided by the type of the key's default.
fn convert(raw: &str, default: Option<&Value>) -> Value {
    let scalar = |s: &str| -> Value {
        let s = unquote(s);
        if let Ok(i) = s.parse::<i64>() {
            Value::Integer(i)
        } else if let Ok(f) = s.parse::<f64>() {
            Value::Float(f)
        } else if s.eq_ignore_ascii_case("true") {
            Value::Boolean(true)
        } else if s.eq_ignore_ascii_case("false") {
            Value::Boolean(false)
        } else {
            Value::String(s.to_owned())
        }
    };
    let wants_list = matches!(default, Some(Value::Array(_)));
    let looks_like_list = raw.trim().starts_with(['(', '[']) || raw.contains(',');
    let value = if wants_list || looks_like_list {
        Value::Array(items(raw).iter().map(|s| scalar(s)).collect())
    } else {
        scalar(raw)
    };
    // A string key keeps its text (a folder named `1`, a list of folders).
    match (default, &value) {
        (Some(Value::String(_)), Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)) => {
            Value::String(unquote(raw).to_owned())
        }
        _ => value,
    }
}

// The conversions.

fn cuda_devices(ctx: &Context, raw: &str) -> Outcome {
    let ids: Result<Vec<u32>, _> = items(raw).iter().map(|s| s.parse::<u32>()).collect();
    let Ok(ids) = ids else {
        return Outcome::invalid(format!("must be GPU numbers such as 0,1,2, got `{raw}`"));
    };
    if ids.is_empty() {
        return Outcome::kept("empty: the GPUs follow num_gpus");
    }
    let wanted = ctx.given("system", "num_gpus").map_or(Ok(1), str::parse::<usize>);
    let Ok(wanted) = wanted else {
        return Outcome::invalid("num_gpus must be a count for cuda_devices to choose from");
    };
    if wanted > ids.len() {
        return Outcome::invalid(format!("lists {} GPUs but num_gpus is {wanted}", ids.len()));
    }
    let devices: Vec<Value> = if wanted == 0 {
        vec![text("cpu")]
    } else {
        ids[..wanted].iter().map(|i| Value::String(format!("cuda:{i}"))).collect()
    };
    Outcome::set(vec![("system.devices", Value::Array(devices)), ("system.cpu_fallback", Value::Boolean(true))])
}

fn num_gpus(ctx: &Context, raw: &str) -> Outcome {
    if ctx.given("system", "cuda_devices").is_some_and(|v| !items(v).is_empty()) {
        return Outcome::kept("with cuda_devices, it says how many of them system.devices takes");
    }
    // NiftyNet runs on the CPU when the GPUs it asks for are not there.
    Outcome::set(vec![
        ("system.num_gpus", typed("system.num_gpus", raw)),
        ("system.cpu_fallback", Value::Boolean(true)),
    ])
}

fn split_file(ctx: &Context, raw: &str) -> Outcome {
    Outcome::set(vec![("system.dataset_split_file", ctx.in_model_dir(unquote(raw)))])
}

/// NiftyNet's default event handlers.
const DEFAULT_HANDLERS: &[&str] = &[
    "model_saver",
    "model_restorer",
    "sampler_threading",
    "apply_gradients",
    "output_interpreter",
    "console_logger",
    "tensorboard_logger",
    "performance_logger",
];

fn event_handler(_: &Context, raw: &str) -> Outcome {
    let given = items(raw);
    let defaults_only = given.iter().all(|h| DEFAULT_HANDLERS.contains(&h.as_str()));
    let all = DEFAULT_HANDLERS.iter().filter(|d| **d != "performance_logger").all(|d| given.iter().any(|h| h == d));
    match (defaults_only, all) {
        (true, true) => Outcome::kept("NiftyNet's default handlers: niftyhost's engine saves, restores, samples in threads, applies gradients and logs (console, TensorBoard) itself"),
        (true, false) => Outcome::refused("niftyhost's engine cannot leave out built-in handlers (saving, restoring, sampler threads, gradients, output, logging)"),
        (false, _) => Outcome::refused("custom event handlers are Python classes: niftyhost has no such hook"),
    }
}

/// NiftyNet network names niftyhost has under another name, or refuses.
const NETWORK_NAMES: &[(&str, Result<&str, &str>)] = &[
    ("unet", Ok("unet3d")),
    ("dense_vnet", Ok("densevnet")),
    ("unet_2d", Ok("unet2d")),
    ("highres3dnet_small", Ok("highres3dnet:small")),
    ("highres3dnet_large", Ok("highres3dnet:large")),
    ("holistic_scalenet", Err("HolisticNet (ScaleNet with a holistic loss head) is not ported")),
    ("holisticnet", Err("HolisticNet (holistic_net.py, multi-scale side outputs) is not ported")),
    ("nonewnet", Ok("dynunet")),
    ("simple_gan", Err("a GAN network: niftyhost segments only")),
    ("simulator_gan", Err("a GAN network: niftyhost segments only")),
    ("vae", Err("an autoencoder network: niftyhost segments only")),
    ("autoencoder_basic", Err("an autoencoder network: niftyhost segments only")),
    ("vae_basic", Err("an autoencoder network: niftyhost segments only")),
    ("resnet", Err("a classification network: niftyhost segments only")),
    ("se_resnet", Err("a classification network: niftyhost segments only")),
    ("interventional_dense_net", Err("a registration network: niftyhost segments only")),
    ("interventional_affine_net", Err("a registration network: niftyhost segments only")),
    ("interventional_hybrid_net", Err("a registration network: niftyhost segments only")),
];

/// The NiftyNet network names niftyhost trains (listed when a network is refused).
pub const PORTED_NETWORKS: &[&str] = &[
    "toynet",
    "highres3dnet",
    "highres3dnet_small",
    "highres3dnet_large",
    "deepmedic",
    "scalenet",
    "vnet",
    "dense_vnet",
    "unet",
    "unet_2d",
    "nonewnet",
];

/// The niftyhost network a NiftyNet `name` means, with the variant of HighRes3DNet.
fn mapped_network(raw: &str) -> Result<(String, Option<&'static str>), &'static str> {
    let raw = unquote(raw);
    // A module path: `niftynet.network.toynet.ToyNet` is `toynet`.
    let name = match raw.strip_prefix("niftynet.network.") {
        Some(rest) => rest.split('.').next().unwrap_or(rest),
        None => raw,
    }
    .to_ascii_lowercase();
    match NETWORK_NAMES.iter().find(|(n, _)| *n == name) {
        Some((_, Ok(to))) => Ok(match to.split_once(':') {
            Some((net, "small")) => (net.to_owned(), Some("small")),
            Some((net, _)) => (net.to_owned(), Some("large")),
            None => ((*to).to_owned(), None),
        }),
        Some((_, Err(why))) => Err(why),
        None => Ok((name, None)),
    }
}

/// NiftyNet's no-new-Net on `dynunet`: five levels of two 3³ conv-instance norm-leaky
/// ReLU blocks, 30 to 480 feature maps, halved four times (so windows divisible by 16).
/// It differs in that dynunet downsamples by strided convolutions (no-new-Net: max
/// pooling), upsamples by transposed convolutions (no-new-Net: linear resizing) and keeps
/// each level's width in the decoder (no-new-Net halves it before upsampling).
fn no_new_net() -> Vec<(&'static str, Value)> {
    let lists = |l: &[[i64; 3]]| Value::Array(l.iter().map(|v| ints(v)).collect());
    vec![
        ("network.name", text("dynunet")),
        ("network.params.kernel_sizes", lists(&[[3, 3, 3]; 5])),
        ("network.params.strides", lists(&[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]])),
        ("network.params.base_channels", Value::Integer(30)),
        ("network.params.max_channels", Value::Integer(480)),
        ("network.params.block", text("plain")),
        ("network.params.norm", text("instance")),
    ]
}

fn network_name(ctx: &Context, raw: &str) -> Outcome {
    if unquote(raw).eq_ignore_ascii_case("nonewnet") || unquote(raw).starts_with("niftynet.network.no_new_net") {
        *ctx.note.borrow_mut() = Some(
            "no-new-Net's topology on dynunet; it differs in downsampling (strided convolutions, not max pooling), \
             upsampling (transposed convolutions, not linear resizing) and decoder widths (not halved before upsampling)"
                .to_owned(),
        );
        return Outcome::set(no_new_net());
    }
    match mapped_network(raw) {
        Ok((name, None)) => network_as_niftynet_runs_it(ctx, name),
        Ok((name, Some(variant))) => {
            Outcome::set(vec![("network.name", Value::String(name)), ("network.params.variant", text(variant))])
        }
        Err(why) => {
            Outcome::refused(format!("{why}; the NiftyNet networks niftyhost has: {}", PORTED_NETWORKS.join(", ")))
        }
    }
}

/// niftyhost networks whose NiftyNet originals (DeepMedic, UNet2D) have valid convolutions
/// only, and that zero-pad their input unless `network.params.pad_input` is false.
const VALID_NETWORKS: &[&str] = &["deepmedic", "unet2d"];

/// The key that runs NiftyNet's network `name` (NiftyNet's name or niftyhost's) as
/// NiftyNet does with these windows, if one is needed: a network of [`VALID_NETWORKS`]
/// with a label window smaller than the image window (as NiftyNet's files and command
/// line give them, deepmedic_config.ini's 9³ of 57³) is unpadded
/// (`network.params.pad_input = false`), so that it computes only the label window as
/// NiftyNet does (a padded DeepMedic would compute a 57³ output and keep its centre);
/// otherwise it stays padded, so that the output keeps the window. Shared by the INI
/// translation and the NiftyNet command line (`--net_name --label_size --image_size`).
pub fn unpadded_key(name: &str, label: &[i64], image: &[i64]) -> Option<(&'static str, Value)> {
    let valid = mapped_network(name).is_ok_and(|(n, _)| VALID_NETWORKS.contains(&n.as_str()));
    let smaller = label.len() == 3 && image.len() == 3 && label != image && (0..3).all(|a| label[a] <= image[a]);
    (valid && smaller).then_some(("network.params.pad_input", Value::Boolean(false)))
}

/// `network.name`, unpadded as [`unpadded_key`] says for the file's windows.
fn network_as_niftynet_runs_it(ctx: &Context, name: String) -> Outcome {
    let unpadded = ctx.label_and_image_windows().and_then(|(label, image)| {
        let key = unpadded_key(&name, &label, &image)?;
        *ctx.note.borrow_mut() = Some(format!(
            "valid convolutions as in NiftyNet: the label window {label:?} is smaller than the image window {image:?}: \
             unpadded, the network computes the label window only"
        ));
        Some(key)
    });
    Outcome::set([("network.name", Value::String(name))].into_iter().chain(unpadded).collect())
}

/// NiftyNet activation names and niftyhost's (`None`: no niftyhost block has it).
const ACTIVATIONS: &[(&str, Option<&str>)] = &[
    ("relu", Some("relu")),
    ("prelu", Some("prelu")),
    ("elu", Some("elu")),
    ("selu", Some("selu")),
    ("leakyrelu", Some("leaky_relu")),
    ("relu6", Some("relu6")),
    ("softplus", Some("softplus")),
    ("softsign", Some("softsign")),
    ("sigmoid", Some("sigmoid")),
    ("tanh", Some("tanh")),
    ("dropout", None),
];

fn activation(_: &Context, raw: &str) -> Outcome {
    let name = unquote(raw).to_ascii_lowercase();
    match ACTIVATIONS.iter().find(|(n, _)| *n == name) {
        Some((_, Some(to))) => Outcome::set(vec![("network.params.activation", text(to))]),
        Some((_, None)) => Outcome::refused(format!("no niftyhost network block has the `{name}` activation")),
        None => {
            let names: Vec<&str> = ACTIVATIONS.iter().map(|(n, _)| *n).collect();
            Outcome::invalid(format!("must be one of {}, got `{name}`", names.join(", ")))
        }
    }
}

fn reg_type(_: &Context, raw: &str) -> Outcome {
    Outcome::set(vec![("training.weight_decay_norm", Value::String(unquote(raw).to_ascii_lowercase()))])
}

fn batch_size(_: &Context, raw: &str) -> Outcome {
    match unquote(raw).parse::<u64>() {
        Ok(b) if b > 0 => {
            let b = Value::Integer(b as i64);
            Outcome::set(vec![("network.batch_size", b.clone()), ("inference.batch_size", b)])
        }
        _ => Outcome::invalid(format!("must be a positive number of windows, got `{raw}`")),
    }
}

fn queue_length(ctx: &Context, raw: &str) -> Outcome {
    let Ok(windows) = unquote(raw).parse::<u64>() else {
        return Outcome::invalid(format!("must be a number of windows, got `{raw}`"));
    };
    let batch = ctx.given("network", "batch_size").and_then(|b| b.parse::<u64>().ok()).filter(|b| *b > 0).unwrap_or(2);
    let batches = windows.div_ceil(batch).max(1);
    Outcome::set(vec![("training.queue_length", Value::Integer(batches as i64))])
}

fn multimod(_: &Context, raw: &str) -> Outcome {
    let v = unquote(raw).to_ascii_lowercase();
    // The documentation's `all` is the code's `multi`.
    let v = if v == "all" { "multi".to_owned() } else { v };
    Outcome::set(vec![("network.multimod_foreground_type", Value::String(v))])
}

/// NiftyNet foreground types and niftyhost's, with the threshold NiftyNet compares with.
const FOREGROUND_TYPES: &[(&str, &str, Option<f64>)] = &[
    ("otsu_plus", "otsu", None),
    ("otsu_minus", "otsu_minus", None),
    ("threshold_plus", "threshold", Some(0.0)),
    ("thresh_plus", "threshold", Some(0.0)),
    ("threshold_minus", "threshold_minus", Some(0.0)),
    ("thresh_minus", "threshold_minus", Some(0.0)),
    ("mean_plus", "mean", None),
];

fn foreground_type(_: &Context, raw: &str) -> Outcome {
    let v = unquote(raw).to_ascii_lowercase();
    match FOREGROUND_TYPES.iter().find(|(n, _, _)| *n == v) {
        Some((_, to, None)) => Outcome::set(vec![("network.foreground_type", text(to))]),
        Some((_, to, Some(t))) => Outcome::set(vec![
            ("network.foreground_type", text(to)),
            ("network.foreground_threshold", Value::Float(*t)),
        ]),
        // niftyhost's own names.
        None => Outcome::set(vec![("network.foreground_type", Value::String(v))]),
    }
}

fn optimiser(_: &Context, raw: &str) -> Outcome {
    let v = unquote(raw).to_ascii_lowercase();
    let to = if v == "gradientdescent" { "sgd".to_owned() } else { v };
    Outcome::set(vec![("training.optimiser", Value::String(to))])
}

/// NiftyNet's loss names: niftyhost's loss, or why it is refused.
pub const LOSS_NAMES: &[(&str, Result<&str, &str>)] = &[
    ("dice", Ok("dice_squared")),
    ("dice_dense", Ok("dice_squared")),
    ("dice_ns", Ok("dice")),
    ("dice_dense_ns", Ok("dice")),
    ("gdsc", Ok("generalised_dice")),
    ("diceplusxent", Ok("dice_ce")),
    ("crossentropy", Ok("cross_entropy")),
    ("crossentropy_dense", Ok("cross_entropy")),
    ("tversky", Ok("tversky")),
    ("sensspec", Ok("sensitivity_specificity")),
    ("wgdl", Ok("generalised_wasserstein_dice")),
    ("volenforcement", Err("the volume-enforcement loss is not in niftyhost's loss plugins")),
    ("l1loss", Err("a regression loss: niftyhost segments only")),
    ("l2loss", Err("a regression loss: niftyhost segments only")),
    ("rmse", Err("a regression loss: niftyhost segments only")),
    ("mae", Err("a regression loss: niftyhost segments only")),
    ("huber", Err("a regression loss: niftyhost segments only")),
    ("variationallowerbound", Err("an autoencoder loss: niftyhost segments only")),
];

fn loss_type(_: &Context, raw: &str) -> Outcome {
    let v = unquote(raw);
    match LOSS_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(v)) {
        Some((_, Ok(to))) => Outcome::set(vec![("training.loss", text(to))]),
        Some((_, Err(why))) => Outcome::refused(*why),
        // niftyhost's own loss names (checked against the plugins when training starts).
        None => Outcome::set(vec![("training.loss", text(v))]),
    }
}

fn save_every_n(_: &Context, raw: &str) -> Outcome {
    match unquote(raw).parse::<i64>() {
        // NiftyNet: 0 turns the schedule off, the final model is still saved.
        Ok(0) => Outcome::set(vec![("training.save_every_n", Value::Integer(i64::MAX))]),
        _ => Outcome::set(vec![("training.save_every_n", typed("training.save_every_n", raw))]),
    }
}

fn validation_every_n(_: &Context, raw: &str) -> Outcome {
    match unquote(raw).parse::<i64>() {
        Ok(n) if n < 0 => Outcome::set(vec![("training.validation_every_n", Value::Integer(0))]),
        _ => Outcome::set(vec![("training.validation_every_n", typed("training.validation_every_n", raw))]),
    }
}

fn inference_window(_: &Context, raw: &str) -> Outcome {
    match full_extent_window(raw) {
        Ok(w) => Outcome::set(vec![("inference.spatial_window_size", ints(&w))]),
        Err(e) => Outcome::invalid(e),
    }
}

/// NiftyNet's `border`, clamped where the inference window is too small to drop it from
/// both sides (highres3dnet_config.ini: `border = (5, 5, 5)` with a window `(0, 0, 3)`).
fn border(ctx: &Context, raw: &str) -> Outcome {
    let Value::Array(sizes) = typed("inference.border", raw) else {
        return own(typed("inference.border", raw));
    };
    let window = ctx.given("inference", "spatial_window_size").and_then(|w| full_extent_window(w).ok());
    let mut clamped = Vec::new();
    let sizes: Vec<Value> = sizes
        .into_iter()
        .enumerate()
        .map(|(a, b)| match (b.as_integer(), window.as_ref().map(|w| w[a.min(2)])) {
            (Some(b), Some(w)) if w > 0 && 2 * b >= w => {
                clamped.push(format!("axis {a}: {b} -> {} (window {w})", (w - 1) / 2));
                Value::Integer((w - 1) / 2)
            }
            _ => b,
        })
        .collect();
    if !clamped.is_empty() {
        *ctx.note.borrow_mut() = Some(format!(
            "clamped, a window cannot lose 2·border voxels: {} (NiftyNet's aggregator cannot crop these either)",
            clamped.join(", ")
        ));
    }
    Outcome::set(vec![("inference.border", Value::Array(sizes))])
}

fn save_seg_dir(ctx: &Context, raw: &str) -> Outcome {
    Outcome::set(vec![("inference.output_dir", ctx.in_model_dir(unquote(raw)))])
}

fn save_csv_dir(ctx: &Context, raw: &str) -> Outcome {
    let Value::String(dir) = ctx.in_model_dir(unquote(raw)) else { unreachable!("in_model_dir gives a string") };
    Outcome::set(vec![(
        "evaluation.output_csv",
        Value::String(Path::new(&dir).join("metrics.csv").display().to_string()),
    )])
}

/// NiftyNet's segmentation metrics: niftyhost's metrics CSV column, or why it is refused.
pub const METRIC_NAMES: &[(&str, Result<&str, &str>)] = &[
    ("dice", Ok("dice")),
    ("jaccard", Ok("jaccard")),
    ("n_pos_ref", Ok("ref_voxels")),
    ("n_neg_ref", Ok("ref_neg_voxels")),
    ("n_pos_seg", Ok("seg_voxels")),
    ("n_neg_seg", Ok("seg_neg_voxels")),
    ("tp", Ok("tp")),
    ("fp", Ok("fp")),
    ("fn", Ok("fn")),
    ("tn", Ok("tn")),
    ("n_intersection", Ok("tp")),
    ("sensitivity", Ok("sensitivity")),
    ("specificity", Ok("specificity")),
    ("accuracy", Ok("accuracy")),
    ("false_positive_rate", Ok("false_positive_rate")),
    ("positive_predictive_values", Ok("ppv")),
    ("negative_predictive_values", Ok("npv")),
    ("informedness", Ok("informedness")),
    ("markedness", Ok("markedness")),
    ("vol_diff", Ok("relative_volume_difference")),
    ("average_distance", Ok("assd_mm")),
    ("hausdorff_distance", Ok("hausdorff_mm")),
    ("hausdorff95_distance", Ok("hausdorff95_mm")),
    ("n_union", Err("not a column: it is tp + fp + fn")),
    ("com_ref", Err("centres of mass are not computed by niftyhost's evaluation")),
    ("com_seg", Err("centres of mass are not computed by niftyhost's evaluation")),
    ("com_dist", Err("centres of mass are not computed by niftyhost's evaluation")),
    ("mse", Err("a regression metric: niftyhost evaluates segmentations")),
    ("rmse", Err("a regression metric: niftyhost evaluates segmentations")),
    ("mae", Err("a regression metric: niftyhost evaluates segmentations")),
    ("r2", Err("a regression metric: niftyhost evaluates segmentations")),
    ("classification_accuracy", Err("a classification metric: niftyhost evaluates segmentations")),
    ("roc_auc", Err("a classification metric: niftyhost evaluates segmentations")),
    ("roc", Err("a classification metric: niftyhost evaluates segmentations")),
];

fn evaluations(_: &Context, raw: &str) -> Outcome {
    let mut columns = Vec::new();
    for name in items(raw) {
        let lower = name.to_ascii_lowercase();
        match METRIC_NAMES.iter().find(|(n, _)| *n == lower) {
            Some((_, Ok(column))) => columns.push(format!("{name} -> {column}")),
            Some((_, Err(why))) => return Outcome::refused(format!("metric `{name}`: {why}")),
            None => {
                let nearest = crate::nearest::nearest(&lower, METRIC_NAMES.iter().map(|(n, _)| *n))
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Outcome::invalid(format!("unknown metric `{name}`{nearest}"));
            }
        }
    }
    Outcome::kept(format!("niftyhost writes every metric; these are the columns {}", columns.join(", ")))
}

fn section_names(_: &Context, raw: &str) -> Outcome {
    own(Value::String(unquote(raw).to_ascii_lowercase()))
}

/// NiftyNet's evaluation reads only the label and `inferred` sections: in an evaluation
/// file, a `weight` naming a section the file does not define is read by nothing (NiftyNet's
/// own default_multimodal_segmentation_eval.ini has `weight = T1` and no `[T1]`).
fn weight(ctx: &Context, raw: &str) -> Outcome {
    let name = unquote(raw);
    let defined = ctx.entries.iter().any(|e| e.section.eq_ignore_ascii_case(name));
    if !defined && ctx.given("segmentation", "inferred").is_some() {
        return Outcome::kept(format!(
            "names input section [{name}], which this evaluation file does not define: NiftyNet's evaluation reads \
             only the label and inferred sections (its training would stop at the missing section)"
        ));
    }
    section_names(ctx, raw)
}

/// NiftyNet's `inferred`: the one input section of segmentations to evaluate.
fn inferred(_: &Context, raw: &str) -> Outcome {
    match items(raw).as_slice() {
        [name] => Outcome::set(vec![("evaluation.seg_section", Value::String(name.to_ascii_lowercase()))]),
        names => Outcome::invalid(format!("must name one input section of segmentations, got {names:?}")),
    }
}

/// The key's own niftyhost key (`[SEGMENTATION] image` is `segmentation.image`, an input
/// key `input.<section>.<key>`) takes `value`.
fn own(value: Value) -> Outcome {
    Outcome::Set { keys: vec![(String::new(), value)] }
}

fn selective(ctx: &Context, _: &str) -> Outcome {
    let sampling = ctx.get("network", "window_sampling").unwrap_or("uniform");
    Outcome::kept(format!(
        "only NiftyNet's selective sampler read it, and NiftyNet 0.6 has none (window_sampling here: {sampling})"
    ))
}

fn mixup(ctx: &Context, _: &str) -> Outcome {
    match ctx.get("segmentation", "do_mixup") {
        Some(v) if v.eq_ignore_ascii_case("true") => Outcome::refused("read only with do_mixup, which is refused"),
        _ => Outcome::kept("read only with do_mixup = true"),
    }
}

fn remove_from_id(_: &Context, raw: &str) -> Outcome {
    let v = unquote(raw);
    if v.contains(['^', '$', '*', '+', '?', '[', ']', '(', ')', '{', '}', '|', '\\']) {
        return Outcome::refused(format!(
            "NiftyNet reads `{v}` as a regular expression; niftyhost removes a plain substring from subject ids"
        ));
    }
    own(text(v))
}

fn interp_order(_: &Context, raw: &str) -> Outcome {
    match unquote(raw).parse::<i64>() {
        Ok(order @ (0 | 1 | 3)) => own(Value::Integer(order)),
        Ok(2) => Outcome::refused("quadratic spline resampling is not in niftyhost (0, 1 or 3)"),
        _ => Outcome::invalid(format!("must be 0 (nearest), 1 (linear) or 3 (cubic), got `{raw}`")),
    }
}

fn axcodes(_: &Context, raw: &str) -> Outcome {
    own(Value::String(raw.chars().filter(char::is_ascii_alphabetic).collect()))
}

fn input_window(ctx: &Context, raw: &str) -> Outcome {
    let w = match window(raw) {
        Ok(w) => w,
        Err(e) => return Outcome::invalid(e),
    };
    let image = ctx.image_window();
    match ctx.role() {
        Some("inferred") => Outcome::kept("the segmentations to evaluate are scored whole, not by windows"),
        Some("image") => match image {
            Some(first) if first != w => Outcome::invalid(format!(
                "image sections must share one window: the first image section has {first:?}, this one {w:?}"
            )),
            _ => Outcome::set(vec![("network.spatial_window_size", ints(&w))]),
        },
        Some(role) => match image {
            Some(img) if img == w => Outcome::kept(format!("the {role} window is the image window")),
            Some(img) if role == "label" && (0..3).all(|a| w[a] <= img[a]) => {
                if KEYS.iter().any(|k| k.key == "network.label_size") {
                    Outcome::set(vec![("network.label_size", ints(&w))])
                } else {
                    Outcome::refused(format!(
                        "a label window {w:?} smaller than the image window {img:?} needs network.label_size, which this build does not have"
                    ))
                }
            }
            Some(img) => Outcome::invalid(format!(
                "the {role} window {w:?} must be the image window {img:?}{}",
                if role == "label" { " or fit inside it" } else { "" }
            )),
            // NiftyNet sizes each input's window by its own section; with no image window
            // (an evaluation file), the label's is the window.
            None if role == "label" => Outcome::set(vec![("network.spatial_window_size", ints(&w))]),
            None => Outcome::invalid(format!(
                "a {role} window needs a spatial_window_size in the first [SEGMENTATION] image section"
            )),
        },
        None => Outcome::kept("this section is not used by [SEGMENTATION]"),
    }
}

/// Keys NiftyNet's own example files write in another section than its specification
/// (`[SYSTEM] queue_length` in default_segmentation.ini): `(found in, key, read as in)`.
const READ_ELSEWHERE: &[(&str, &str, &str)] = &[("system", "queue_length", "network")];

/// The section whose row translates `[place] key`, with a note when it is another one.
fn home_section<'a>(place: &'a str, key: &str) -> (&'a str, Option<String>) {
    match READ_ELSEWHERE.iter().find(|(from, k, _)| *from == place && *k == key) {
        Some((_, _, home)) => (
            home,
            Some(format!(
                "read as [{}] {key}: NiftyNet's example files put it under [{}]",
                home.to_ascii_uppercase(),
                place.to_ascii_uppercase()
            )),
        ),
        None => (place, None),
    }
}

/// The row of `[section] key` (`section` lowercased, `input` for input sections).
pub fn rule_of(section: &str, key: &str) -> Option<&'static NiftyNetKey> {
    NIFTYNET_KEYS.iter().find(|k| k.section == section && k.key == key)
}

/// Whether a value is among `values` (case-insensitive; numbers as numbers; `{}` and
/// empty the same).
fn one_of(raw: &str, values: &[&str]) -> bool {
    let v = unquote(raw);
    values.iter().any(|want| {
        want.eq_ignore_ascii_case(v)
            || matches!((want.parse::<f64>(), v.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
            || (*want == "{}" && v.is_empty())
    })
}

/// What `[entry.section] entry.key` becomes, before niftyhost checks the values.
fn outcome_of(ctx: &Context, entry: &IniEntry) -> Outcome {
    let place = entry.place();
    if let Some((_, app)) = OTHER_APPLICATIONS.iter().find(|(s, _)| *s == place) {
        return Outcome::refused(format!(
            "[{}] configures NiftyNet's {app} application: niftyhost segments only",
            entry.section
        ));
    }
    let fixed = FIXED_SECTIONS.contains(&place.as_str());
    let table_section = if fixed { home_section(&place, &entry.key).0 } else { "input" };
    let own_key = |k: &str| if fixed { format!("{place}.{k}") } else { format!("input.{place}.{k}") };
    let raw = entry.raw.as_str();
    let row = rule_of(table_section, &entry.key);
    let empty = unquote(raw).is_empty() || unquote(raw) == "()";
    let rule = match row {
        Some(row) => row.rule,
        None => {
            let niftyhost = if fixed {
                KEYS.iter().any(|k| k.key == own_key(&entry.key))
            } else {
                INPUT_KEYS.iter().any(|k| k.key == entry.key)
            };
            if niftyhost {
                Same("")
            } else if let Some(home) = NIFTYNET_KEYS.iter().find(|k| k.key == entry.key) {
                return Outcome::refused(format!(
                    "a [{}] key: NiftyNet 0.6 reads it only there (and ignores it here); move it",
                    if home.section == "input" {
                        "input section".to_owned()
                    } else {
                        home.section.to_ascii_uppercase()
                    }
                ));
            } else {
                let mut names: Vec<&str> =
                    NIFTYNET_KEYS.iter().filter(|k| k.section == table_section).map(|k| k.key).collect();
                let prefix = format!("{place}.");
                if fixed {
                    names.extend(KEYS.iter().filter_map(|k| k.key.strip_prefix(&prefix)));
                } else {
                    names.extend(INPUT_KEYS.iter().map(|k| k.key));
                }
                let nearest = crate::nearest::nearest(&entry.key, names).map(str::to_owned);
                return Outcome::Unknown { nearest };
            }
        }
    };
    match rule {
        Refuse(why) => Outcome::refused(why),
        _ if empty => Outcome::kept("empty: the default stays"),
        Only(values, why) if one_of(raw, values) => Outcome::kept(why),
        Only(values, why) => Outcome::refused(format!(
            "{why}; niftyhost takes only {}",
            values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" or ")
        )),
        Same(to) => {
            let to =
                if to.contains('.') { to.to_owned() } else { own_key(if to.is_empty() { &entry.key } else { to }) };
            let value = typed(&to, raw);
            Outcome::Set { keys: vec![(to, value)] }
        }
        Convert(_, convert) => match convert(ctx, raw) {
            Outcome::Set { mut keys } => {
                for (k, v) in keys.iter_mut().filter(|(k, _)| k.is_empty()) {
                    *k = own_key(&entry.key);
                    // Text read as the key's own type (one section name for a list key).
                    if let Value::String(text) = v {
                        *v = typed(k, text);
                    }
                }
                Outcome::Set { keys }
            }
            other => other,
        },
    }
}

/// Translates every entry of a NiftyNet INI file, and checks each niftyhost value with
/// `check` (`Err` = what is wrong with it).
pub fn translate(entries: &[IniEntry], check: impl Fn(&str, &Value) -> Result<(), String>) -> Vec<Explained> {
    entries
        .iter()
        .map(|entry| {
            let ctx = Context { entries, section: entry.place(), note: Default::default() };
            let mut outcome = outcome_of(&ctx, entry);
            let note = home_section(&entry.place(), &entry.key).1.or(ctx.note.take());
            if let Outcome::Set { keys } = &outcome {
                if let Some(message) = keys.iter().find_map(|(k, v)| check(k, v).err()) {
                    outcome = Outcome::invalid(message);
                }
            }
            Explained {
                line: entry.line,
                section: entry.section.clone(),
                key: entry.key.clone(),
                value: entry.raw.trim().to_owned(),
                outcome,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
