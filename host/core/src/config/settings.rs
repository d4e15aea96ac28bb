//! The typed, merged configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::choices::{
    axcodes_text, shard_text, Blending, Distributed, EarlyStoppingMode, ForegroundType, InferencePrecision, LrSchedule,
    MixedPrecision, MultimodForeground, NormType, OptimiserRule, OutputKind, OutputType, PaddingMode, ProbabilityDtype,
    Shard, WeightDecayNorm, WindowSampling,
};
use crate::preprocess::AxCodes;

/// `[system]`: where and how to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub seed: u64,
    pub devices: Vec<String>,
    pub num_gpus: usize,
    pub cpu_fallback: bool,
    pub model_dir: PathBuf,
    pub loader_threads: usize,
    pub torch_threads: usize,
    pub dataset_split_file: PathBuf,
    pub cache_mb: u64,
    pub distributed: Distributed,
    pub comm_timeout_s: f64,
    pub bucket_mb: f64,
}

/// `[input.<name>]`: where the files of one modality (or of the labels) are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSection {
    pub path_to_search: String,
    pub filename_contains: Vec<String>,
    pub filename_not_contains: Vec<String>,
    pub filename_removefromid: String,
    pub csv_file: String,
    pub pixdim: Vec<f64>,
    #[serde(with = "axcodes_text")]
    pub axcodes: Option<AxCodes>,
    #[serde(default = "interp_order_default")]
    pub interp_order: i64,
    pub inference_path_to_search: String,
    pub modality: String,
    pub intensity_clip: Vec<f64>,
    pub intensity_zscore: Vec<f64>,
}

fn interp_order_default() -> i64 {
    -1
}

impl Default for InputSection {
    fn default() -> Self {
        InputSection {
            path_to_search: String::new(),
            filename_contains: Vec::new(),
            filename_not_contains: Vec::new(),
            filename_removefromid: String::new(),
            csv_file: String::new(),
            pixdim: Vec::new(),
            axcodes: None,
            interp_order: interp_order_default(),
            inference_path_to_search: String::new(),
            modality: String::new(),
            intensity_clip: Vec::new(),
            intensity_zscore: Vec::new(),
        }
    }
}

/// `[segmentation]`: which inputs are images and labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segmentation {
    pub image: Vec<String>,
    pub label: String,
    pub num_classes: usize,
    pub label_normalisation: bool,
    pub sampler: String,
    pub weight: String,
}

/// `[network]`: the network component and its windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub batch_size: usize,
    pub spatial_window_size: Vec<usize>,
    pub label_size: Vec<usize>,
    pub whitening: bool,
    pub normalise_foreground_only: bool,
    pub foreground_type: ForegroundType,
    pub foreground_threshold: f64,
    #[serde(default)]
    pub multimod_foreground_type: MultimodForeground,
    pub normalisation: bool,
    pub histogram_ref_file: PathBuf,
    pub norm_type: NormType,
    pub cutoff: Vec<f64>,
    pub volume_padding_size: Vec<usize>,
    pub volume_padding_mode: PaddingMode,
    pub window_sampling: WindowSampling,
    pub foreground_oversample: f64,
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub loss: String,
    pub optimiser: OptimiserRule,
    pub lr: f64,
    pub momentum: f64,
    pub lr_schedule: LrSchedule,
    pub lr_step_size: u64,
    pub lr_gamma: f64,
    pub lr_power: f64,
    pub warmup_iters: u64,
    pub clip_grad_norm: f64,
    pub weight_decay: f64,
    #[serde(default)]
    pub weight_decay_norm: WeightDecayNorm,
    pub max_iter: u64,
    pub starting_iter: i64,
    pub restore_from: PathBuf,
    pub vars_to_restore: String,
    pub vars_to_freeze: String,
    pub save_every_n: u64,
    pub max_checkpoints: usize,
    pub queue_length: usize,
    pub sample_per_volume: u64,
    pub exclude_fraction_for_validation: f64,
    pub exclude_fraction_for_inference: f64,
    pub k_folds: usize,
    pub fold: usize,
    pub log_every_n: u64,
    pub mixed_precision: MixedPrecision,
    pub tensorboard_every_n: u64,
    pub validation_every_n: u64,
    pub validation_max_iter: u64,
    pub patience: usize,
    pub early_stopping_mode: EarlyStoppingMode,
    #[serde(default)]
    pub loss_params: Map<String, Value>,
    pub augmentation: Vec<AugmentationEntry>,
    pub augmentation_margin: f64,
    pub random_flipping_axes: Vec<i64>,
    pub rotation_angle: Vec<f64>,
    pub rotation_angle_x: Vec<f64>,
    pub rotation_angle_y: Vec<f64>,
    pub rotation_angle_z: Vec<f64>,
    pub scaling_percentage: Vec<f64>,
    pub isotropic_scaling: bool,
    pub do_elastic_deformation: bool,
    pub num_ctrl_points: i64,
    pub deformation_sigma: f64,
    pub proportion_to_deform: f64,
    pub bias_field_range: Vec<f64>,
    pub bf_order: i64,
}

/// One `[[training.augmentation]]` entry: a component applied to a window with a
/// probability, with its parameters (checked by the plugin against its schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentationEntry {
    /// The component's name.
    pub name: String,
    /// Chance that it is applied to a window.
    #[serde(default = "always")]
    pub probability: f64,
    /// Its parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
}

fn always() -> f64 {
    1.0
}

/// `[inference]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inference {
    pub inference_iter: i64,
    pub spatial_window_size: Vec<usize>,
    pub overlap: f64,
    pub border: Vec<usize>,
    pub batch_size: usize,
    pub output_dir: PathBuf,
    pub output_postfix: String,
    pub blending: Blending,
    pub tta_mirror_axes: Vec<usize>,
    pub checkpoints: Vec<PathBuf>,
    pub output_type: OutputType,
    pub output_prob: bool,
    pub output_interp_order: u8,
    pub probability_dtype: ProbabilityDtype,
    pub remove_small_components: Vec<u8>,
    pub min_component_mm3: f64,
    pub keep_largest_component: Vec<u8>,
    pub fill_holes: Vec<u8>,
    pub connectivity: u32,
    #[serde(with = "shard_text")]
    pub shard: Option<Shard>,
    pub precision: InferencePrecision,
    pub channels_last: bool,
    pub workers: usize,
    pub crop_to_foreground: bool,
    pub foreground_margin: usize,
}

impl Inference {
    /// The output `output_type`, `output_prob` and `probability_dtype` describe.
    ///
    /// # Errors
    /// `output_prob = true` with `output_type = "logits"`.
    pub fn output_kind(&self) -> Result<OutputKind, String> {
        OutputKind::new(self.output_type, self.output_prob, self.probability_dtype)
    }
}

/// `[evaluation]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub seg_dir: PathBuf,
    pub ref_dir: PathBuf,
    pub seg_section: String,
    pub labels: Vec<u32>,
    pub output_csv: PathBuf,
    pub evaluation_units: Vec<String>,
    pub include_background: bool,
    pub surface_tolerance_mm: f64,
    pub connectivity: u32,
    pub component_min_overlap: f64,
}

/// The whole configuration after layering.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub system: System,
    #[serde(default)]
    pub input: BTreeMap<String, InputSection>,
    pub segmentation: Segmentation,
    pub network: Network,
    pub training: Training,
    pub inference: Inference,
    pub evaluation: Evaluation,
}

/// A rule the merged configuration breaks: what is wrong, and the keys it is about (so
/// the loader can name where they were set).
#[derive(Debug, Clone, PartialEq)]
pub struct Inconsistency {
    /// The dotted keys involved.
    pub keys: Vec<String>,
    /// What is wrong, naming the keys.
    pub message: String,
}

/// `Err` of an [`Inconsistency`] about `keys`.
pub(super) fn inconsistent<T>(keys: &[&str], message: impl Into<String>) -> Result<T, Inconsistency> {
    Err(Inconsistency { keys: keys.iter().map(|k| (*k).to_owned()).collect(), message: message.into() })
}

/// Three positive sizes `(i, j, k)`.
fn window(w: &[usize]) -> Option<[usize; 3]> {
    match w {
        [i, j, k] if *i > 0 && *j > 0 && *k > 0 => Some([*i, *j, *k]),
        _ => None,
    }
}

impl Settings {
    /// Checks the rules that single values cannot: consistency between keys, and the
    /// ranges of numbers (names and the forms of shards and axis codes were checked
    /// when the values were parsed).
    ///
    /// # Errors
    /// The first inconsistency, naming the keys.
    pub fn validate(&self) -> Result<(), Inconsistency> {
        for (key, w) in [
            ("network.spatial_window_size", &self.network.spatial_window_size),
            ("inference.spatial_window_size", &self.inference.spatial_window_size),
        ] {
            if key.starts_with("inference") {
                // Empty: the training window; a 0 takes the volume's full extent.
                if !w.is_empty() && w.len() != 3 {
                    return inconsistent(
                        &[key],
                        format!("`{key}` must be three sizes (i, j, k), 0 for a volume's full extent, got {w:?}"),
                    );
                }
            } else if window(w).is_none() {
                return inconsistent(&[key], format!("`{key}` must be three positive sizes (i, j, k), got {w:?}"));
            }
        }
        self.validate_label_size()?;
        if self.segmentation.num_classes < 2 {
            return inconsistent(
                &["segmentation.num_classes"],
                format!("`segmentation.num_classes` must be at least 2, got {}", self.segmentation.num_classes),
            );
        }
        if self.segmentation.num_classes > crate::data::labels::MAX_CLASSES {
            return inconsistent(
                &["segmentation.num_classes"],
                format!(
                    "`segmentation.num_classes` must be at most {} (16-bit labels), got {}",
                    crate::data::labels::MAX_CLASSES,
                    self.segmentation.num_classes
                ),
            );
        }
        if self.system.devices.is_empty() {
            return inconsistent(&["system.devices"], "`system.devices` lists no device");
        }
        let gpus = self.system.num_gpus;
        if gpus > 0 && self.system.devices != ["cpu"] && self.system.devices != self.device_names() {
            return inconsistent(
                &["system.num_gpus", "system.devices"],
                format!(
                    "`system.num_gpus` = {gpus} and `system.devices` = {:?} disagree: set one of them",
                    self.system.devices
                ),
            );
        }
        for (key, v) in
            [("system.comm_timeout_s", self.system.comm_timeout_s), ("system.bucket_mb", self.system.bucket_mb)]
        {
            if !(v > 0.0 && v.is_finite()) {
                return inconsistent(&[key], format!("`{key}` must be a positive number, got {v}"));
            }
        }
        for (key, v) in
            [("network.batch_size", self.network.batch_size), ("inference.batch_size", self.inference.batch_size)]
        {
            if v == 0 {
                return inconsistent(&[key], format!("`{key}` must be positive"));
            }
        }
        self.validate_inference()?;
        if self.training.save_every_n == 0 {
            return inconsistent(&["training.save_every_n"], "`training.save_every_n` must be positive");
        }
        // Evaluating two folders needs no dataset; an evaluation config needs only its
        // label and segmentation sections.
        if self.evaluation.ref_dir.as_os_str().is_empty() && !self.evaluation_only() {
            self.validate_inputs()?;
        }
        self.validate_seg_section()?;
        self.validate_training()?;
        self.validate_network()
    }

    /// `network.label_size`: empty, or three positive sizes inside the training window
    /// leaving a whole number of voxels on each side.
    fn validate_label_size(&self) -> Result<(), Inconsistency> {
        let (label, image) = (&self.network.label_size, self.train_window());
        if label.is_empty() {
            return Ok(());
        }
        let keys = ["network.label_size", "network.spatial_window_size"];
        let Some(label) = window(label) else {
            return inconsistent(
                &keys[..1],
                format!("`network.label_size` must be three positive sizes (i, j, k) or [], got {label:?}"),
            );
        };
        if let Some(a) = (0..3).find(|&a| label[a] > image[a] || (image[a] - label[a]) % 2 != 0) {
            return inconsistent(
                &keys,
                format!(
                    "`network.label_size` {label:?} must fit `network.spatial_window_size` {image:?} with the same margin on both sides: \
                     the border (window - label) / 2 on axis {} is {}, not a whole number of voxels",
                    ["i", "j", "k"][a],
                    (image[a] as f64 - label[a] as f64) / 2.0
                ),
            );
        }
        Ok(())
    }

    /// The `[inference]` keys.
    fn validate_inference(&self) -> Result<(), Inconsistency> {
        let inf = &self.inference;
        let window = self.inference_window();
        let b = &inf.border;
        let border = self.inference_border();
        // A full-extent axis (0) is sized to keep the whole volume inside its border.
        if b.len() != 3 || (0..3).any(|a| window[a] > 0 && 2 * border[a] >= window[a]) {
            return inconsistent(
                &[
                    "inference.border",
                    "inference.spatial_window_size",
                    "network.spatial_window_size",
                    "network.label_size",
                ],
                format!(
                    "`inference.border` must be three sizes (i, j, k) with 2·border smaller than the window {window:?}, \
                     got {b:?} (the border kept is at least the label window's, (network.spatial_window_size - network.label_size) / 2: {border:?})"
                ),
            );
        }
        if !(0.0..1.0).contains(&inf.overlap) {
            return inconsistent(
                &["inference.overlap"],
                format!("`inference.overlap` must be in [0, 1), got {}", inf.overlap),
            );
        }
        let axes = &inf.tta_mirror_axes;
        if axes.iter().enumerate().any(|(n, a)| *a > 2 || axes[..n].contains(a)) {
            return inconsistent(
                &["inference.tta_mirror_axes"],
                format!("`inference.tta_mirror_axes` must be distinct values in 0..=2 (i, j, k), got {axes:?}"),
            );
        }
        let output = self.inference.output_kind();
        let output = output.or_else(|m| inconsistent(&["inference.output_prob", "inference.output_type"], m))?;
        if inf.output_interp_order > 1 {
            return inconsistent(
                &["inference.output_interp_order"],
                format!(
                    "`inference.output_interp_order` must be 0 (nearest) or 1 (linear), got {}",
                    inf.output_interp_order
                ),
            );
        }
        if ![6, 18, 26].contains(&inf.connectivity) {
            return inconsistent(
                &["inference.connectivity"],
                format!("`inference.connectivity` must be 6, 18 or 26, got {}", inf.connectivity),
            );
        }
        if !(inf.min_component_mm3 >= 0.0 && inf.min_component_mm3.is_finite()) {
            return inconsistent(
                &["inference.min_component_mm3"],
                format!("`inference.min_component_mm3` must be >= 0, got {}", inf.min_component_mm3),
            );
        }
        let postprocessing = [
            ("inference.keep_largest_component", &inf.keep_largest_component),
            ("inference.remove_small_components", &inf.remove_small_components),
            ("inference.fill_holes", &inf.fill_holes),
        ];
        if let Some((key, _)) = postprocessing.iter().find(|(_, labels)| !labels.is_empty()) {
            if output != OutputKind::Labels {
                return inconsistent(
                    &[key, "inference.output_type", "inference.output_prob"],
                    "postprocessing (keep_largest_component, remove_small_components, fill_holes) needs `inference.output_type = \"labels\"`",
                );
            }
        }
        Ok(())
    }

    /// The `[training]` keys.
    fn validate_training(&self) -> Result<(), Inconsistency> {
        let t = &self.training;
        for (key, f) in [
            ("training.exclude_fraction_for_validation", t.exclude_fraction_for_validation),
            ("training.exclude_fraction_for_inference", t.exclude_fraction_for_inference),
        ] {
            if !(0.0..1.0).contains(&f) {
                return inconsistent(&[key], format!("`{key}` must be in [0, 1), got {f}"));
            }
        }
        if t.exclude_fraction_for_validation + t.exclude_fraction_for_inference >= 1.0 {
            return inconsistent(
                &["training.exclude_fraction_for_validation", "training.exclude_fraction_for_inference"],
                "the exclude fractions for validation and inference leave no TRAIN subject",
            );
        }
        if t.k_folds == 1 || (t.fold > 0 && t.fold >= t.k_folds) {
            return inconsistent(
                &["training.fold", "training.k_folds"],
                format!(
                    "`training.fold` must be in 0..k_folds with k_folds >= 2, got fold {} of {}",
                    t.fold, t.k_folds
                ),
            );
        }
        if t.sample_per_volume == 0 {
            return inconsistent(&["training.sample_per_volume"], "`training.sample_per_volume` must be positive");
        }
        for (key, pattern) in
            [("training.vars_to_restore", &t.vars_to_restore), ("training.vars_to_freeze", &t.vars_to_freeze)]
        {
            if let Err(e) = regex::Regex::new(pattern) {
                return inconsistent(&[key], format!("`{key}` is not a regular expression: {e}"));
            }
        }
        if !t.restore_from.as_os_str().is_empty() && t.starting_iter != 0 {
            return inconsistent(
                &["training.restore_from", "training.starting_iter"],
                "`training.restore_from` starts a new run: it needs `training.starting_iter = 0`",
            );
        }
        if t.weight_decay_norm == WeightDecayNorm::L1 && t.optimiser == OptimiserRule::AdamW {
            return inconsistent(
                &["training.weight_decay_norm", "training.optimiser"],
                "`training.weight_decay_norm = \"l1\"` adds to the gradient, which `training.optimiser = \"adamw\"` decouples: use adam, or l2",
            );
        }
        super::augmentation::validate(t)
    }

    /// The `[network]` keys.
    fn validate_network(&self) -> Result<(), Inconsistency> {
        let n = &self.network;
        if n.window_sampling == WindowSampling::Weighted && !self.input.contains_key(&self.segmentation.sampler) {
            return inconsistent(
                &["network.window_sampling", "segmentation.sampler"],
                format!(
                    "`network.window_sampling = \"weighted\"` needs `segmentation.sampler` to name an input section of weight maps, got \"{}\"",
                    self.segmentation.sampler
                ),
            );
        }
        if !(0.0..=1.0).contains(&n.foreground_oversample) {
            return inconsistent(
                &["network.foreground_oversample"],
                format!("`network.foreground_oversample` must be in [0, 1], got {}", n.foreground_oversample),
            );
        }
        self.validate_loss_weight()?;
        if !matches!(n.cutoff.as_slice(), [lo, hi] if 0.0 <= *lo && lo < hi && *hi <= 1.0) {
            return inconsistent(
                &["network.cutoff"],
                format!("`network.cutoff` must be two fractions lo < hi in [0, 1], got {:?}", n.cutoff),
            );
        }
        if n.volume_padding_size.len() != 3 || n.volume_padding_size.iter().any(|&p| p > 4096) {
            return inconsistent(
                &["network.volume_padding_size"],
                format!(
                    "`network.volume_padding_size` must be three sizes (i, j, k) up to 4096, got {:?}",
                    n.volume_padding_size
                ),
            );
        }
        Ok(())
    }

    /// `segmentation.weight`: empty, or an input section; not with augmentation, whose
    /// components transform images and labels only (a weight map would not follow them).
    fn validate_loss_weight(&self) -> Result<(), Inconsistency> {
        let weight = &self.segmentation.weight;
        if weight.is_empty() {
            return Ok(());
        }
        if !self.input.contains_key(weight) {
            let have: Vec<&String> = self.input.keys().collect();
            return inconsistent(
                &["segmentation.weight"],
                format!(
                    "`segmentation.weight` names input section `{weight}` (the loss's weight maps), but the config defines only {have:?}"
                ),
            );
        }
        if !super::augmentation::chain(&self.training).is_empty() {
            return inconsistent(
                &["segmentation.weight", "training.augmentation"],
                "`segmentation.weight` cannot be used with training augmentation (`training.augmentation` or NiftyNet's augmentation keys): augmentation components transform images and labels only, so a weight map would no longer match its window",
            );
        }
        Ok(())
    }

    /// `evaluation.seg_section`: empty, or a defined input section that is neither an image
    /// section nor the label section, with a defined label section to be scored against;
    /// not with `evaluation.ref_dir` or `evaluation.seg_dir`, the folders it replaces.
    fn validate_seg_section(&self) -> Result<(), Inconsistency> {
        let (e, key) = (&self.evaluation, "evaluation.seg_section");
        let seg = &e.seg_section;
        if seg.is_empty() {
            return Ok(());
        }
        for (other, given) in [("evaluation.ref_dir", &e.ref_dir), ("evaluation.seg_dir", &e.seg_dir)]
            .map(|(k, d)| (k, !d.as_os_str().is_empty()))
        {
            if given {
                return inconsistent(
                    &[key, other],
                    format!("`{key}` and `{other}` both say where the segmentations to evaluate are: set one of them"),
                );
            }
        }
        if let Some(message) = self.undefined_section(key, seg) {
            return inconsistent(&[key], message);
        }
        if self.segmentation.image.contains(seg) {
            return inconsistent(
                &[key, "segmentation.image"],
                format!("`{key}` names `{seg}`, an image section of `segmentation.image`: the segmentations to evaluate are an input section of their own"),
            );
        }
        let label = &self.segmentation.label;
        if label.is_empty() || label == seg {
            return inconsistent(
                &[key, "segmentation.label"],
                format!("`{key}` = \"{seg}\" is scored against the label section, but `segmentation.label` is \"{label}\": name the section of the reference labels"),
            );
        }
        match self.undefined_section("segmentation.label", label) {
            Some(message) => inconsistent(&["segmentation.label"], message),
            None => Ok(()),
        }
    }

    /// Why input section `name`, which `key` names, cannot be used: the config does not
    /// define it (with the nearest section it defines as "did you mean"); `None` if it does.
    pub fn undefined_section(&self, key: &str, name: &str) -> Option<String> {
        if self.input.contains_key(name) {
            return None;
        }
        let have: Vec<&str> = self.input.keys().map(String::as_str).collect();
        let hint = crate::nearest::nearest(name, have.iter().copied())
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        Some(format!("`{key}` names input section `{name}`, but the config defines only {have:?}{hint}"))
    }

    /// Whether this is an evaluation config: `evaluation.seg_section` is set and none of
    /// `segmentation.image`'s sections is defined (NiftyNet's evaluation files have only
    /// their label and segmentation sections). It runs `niftyhost evaluation` only.
    pub fn evaluation_only(&self) -> bool {
        !self.evaluation.seg_section.is_empty() && !self.segmentation.image.iter().any(|n| self.input.contains_key(n))
    }

    /// Checks that `job` has the image sections it reads.
    ///
    /// # Errors
    /// An evaluation config ([`Self::evaluation_only`]).
    pub fn require_images(&self, job: &str) -> Result<(), super::ConfigError> {
        if !self.evaluation_only() {
            return Ok(());
        }
        Err(super::ConfigError::Invalid(format!(
            "{job} reads the image sections of `segmentation.image` {:?}, which this config does not define: \
             it is an evaluation config (`evaluation.seg_section` = \"{}\"), run by `niftyhost evaluation`",
            self.segmentation.image, self.evaluation.seg_section
        )))
    }

    /// The input sections `[segmentation]` names: defined, on one grid.
    fn validate_inputs(&self) -> Result<(), Inconsistency> {
        // An empty label section: images only (inference of new images).
        let label = Some(&self.segmentation.label).filter(|l| !l.is_empty());
        let used: Vec<&String> = self.segmentation.image.iter().chain(label).collect();
        for name in &used {
            if !self.input.contains_key(*name) {
                let have: Vec<&String> = self.input.keys().collect();
                return inconsistent(
                    &["segmentation.image", "segmentation.label"],
                    format!("`segmentation` names input section `{name}`, but the config defines only {have:?}"),
                );
            }
        }
        for (key, differs) in [
            ("pixdim", used.windows(2).any(|w| self.input[w[0]].pixdim != self.input[w[1]].pixdim)),
            ("axcodes", used.windows(2).any(|w| self.input[w[0]].axcodes != self.input[w[1]].axcodes)),
        ] {
            if differs {
                let keys: Vec<String> = used.iter().map(|name| format!("input.{name}.{key}")).collect();
                return Err(Inconsistency {
                    keys,
                    message: format!(
                        "input sections {used:?} must agree on `{key}` (images and labels share one grid)"
                    ),
                });
            }
        }
        self.validate_interp_orders(&used)?;
        for name in &self.segmentation.image {
            self.validate_intensity(name)?;
        }
        let Some(name) = self.segmentation.image.first() else {
            return inconsistent(&["segmentation.image"], "`segmentation.image` lists no input section");
        };
        let pixdim = &self.input[name].pixdim;
        if !pixdim.is_empty() && (pixdim.len() != 3 || pixdim.iter().any(|p| *p <= 0.0)) {
            return inconsistent(
                &[&format!("input.{name}.pixdim")],
                format!("`pixdim` must be three positive voxel sizes in mm, got {pixdim:?}"),
            );
        }
        Ok(())
    }

    /// `input.<name>.interp_order`: 0, 1 or 3 (or -1) for images, the same for every image
    /// section (they are resampled as one stack); -1 or 0 for the label section.
    fn validate_interp_orders(&self, used: &[&String]) -> Result<(), Inconsistency> {
        for name in used {
            let order = self.input[*name].interp_order;
            let is_label = **name == self.segmentation.label;
            let allowed: &[i64] = if is_label { &[-1, 0] } else { &[-1, 0, 1, 3] };
            if !allowed.contains(&order) {
                let what = if is_label {
                    "-1 or 0 (labels are resampled by nearest neighbour)"
                } else {
                    "0 (nearest), 1 (linear), 3 (cubic B-spline) or -1 (linear)"
                };
                return inconsistent(
                    &[&format!("input.{name}.interp_order")],
                    format!("`input.{name}.interp_order` must be {what}, got {order}"),
                );
            }
        }
        let images = &self.segmentation.image;
        // -1 is linear, as 1 is.
        let order = |n: &String| self.input.get(n).map_or(1, |s| if s.interp_order == -1 { 1 } else { s.interp_order });
        if images.windows(2).any(|w| order(&w[0]) != order(&w[1])) {
            let keys: Vec<String> = images.iter().map(|n| format!("input.{n}.interp_order")).collect();
            return Err(Inconsistency {
                keys,
                message: format!(
                    "image sections {images:?} must agree on `interp_order` (they are resampled as one stack)"
                ),
            });
        }
        Ok(())
    }

    /// An image section's fixed intensity keys: `intensity_clip` two finite values
    /// lo < hi, `intensity_zscore` a finite mean and a positive finite std.
    fn validate_intensity(&self, name: &str) -> Result<(), Inconsistency> {
        let section = &self.input[name];
        let clip = &section.intensity_clip;
        if !clip.is_empty() && !matches!(clip.as_slice(), [lo, hi] if lo.is_finite() && hi.is_finite() && lo < hi) {
            let key = format!("input.{name}.intensity_clip");
            return inconsistent(&[&key], format!("`{key}` must be [lo, hi] with lo < hi, got {clip:?}"));
        }
        let z = &section.intensity_zscore;
        if !z.is_empty() && !matches!(z.as_slice(), [m, s] if m.is_finite() && s.is_finite() && *s > 0.0) {
            let key = format!("input.{name}.intensity_zscore");
            return inconsistent(&[&key], format!("`{key}` must be [mean, std] with std > 0, got {z:?}"));
        }
        Ok(())
    }

    /// How image sections are resampled: `interp_order` of the first image section.
    pub fn image_interp(&self) -> crate::preprocess::Interp {
        use crate::preprocess::Interp;
        let order = self.segmentation.image.first().and_then(|n| self.input.get(n)).map_or(-1, |s| s.interp_order);
        match order {
            0 => Interp::Nearest,
            3 => Interp::Cubic,
            _ => Interp::Linear,
        }
    }

    /// The training window `(i, j, k)`.
    pub fn train_window(&self) -> [usize; 3] {
        window(&self.network.spatial_window_size).unwrap_or([32, 32, 32])
    }

    /// The label window `(i, j, k)`: `network.label_size`, else the training window.
    pub fn label_window(&self) -> [usize; 3] {
        window(&self.network.label_size).unwrap_or_else(|| self.train_window())
    }

    /// Voxels between each side of the training window and its centre label window,
    /// `(window - label) / 2` per axis (checked to be whole when the configuration loaded).
    pub fn label_border(&self) -> [usize; 3] {
        let (image, label) = (self.train_window(), self.label_window());
        std::array::from_fn(|a| image[a].saturating_sub(label[a]) / 2)
    }

    /// Voxels dropped from each side of every inference output window: per axis the
    /// larger of `inference.border` and [`Settings::label_border`] (the network was
    /// trained on the label window only, so nothing outside it is written).
    pub fn inference_border(&self) -> [usize; 3] {
        let (b, label) = (&self.inference.border, self.label_border());
        std::array::from_fn(|a| b.get(a).copied().unwrap_or(0).max(label[a]))
    }

    /// The inference window `(i, j, k)`: its own, else the training window. A 0 stands
    /// for each volume's full extent along that axis (NiftyNet's rule), resolved per
    /// subject by [`crate::engine::inference::Tiling::for_volume`].
    pub fn inference_window(&self) -> [usize; 3] {
        match self.inference.spatial_window_size[..] {
            [i, j, k] => [i, j, k],
            _ => self.train_window(),
        }
    }

    /// What a full-extent inference axis is rounded up to a multiple of: the largest
    /// power of two dividing the training window along that axis, so a network that
    /// downsamples (and so needs divisible sizes) gets the divisibility it trained with.
    pub fn full_extent_multiple(&self) -> [usize; 3] {
        self.train_window().map(|w| 1 << w.trailing_zeros())
    }

    /// The folder of fold `k`'s run: `<model_dir>/fold_<k>`.
    pub fn fold_dir(&self, k: usize) -> PathBuf {
        self.system.model_dir.join(format!("fold_{k}"))
    }

    /// The folder of this run's own files (checkpoints, logs, its lock, default inference
    /// and evaluation outputs): `<model_dir>/fold_<training.fold>` in k-fold
    /// cross-validation (`training.k_folds` >= 2), else `<model_dir>`. The split file and
    /// the learned preprocessing stay in `<model_dir>`, shared by every fold.
    pub fn run_dir(&self) -> PathBuf {
        if self.training.k_folds > 1 {
            self.fold_dir(self.training.fold)
        } else {
            self.system.model_dir.clone()
        }
    }

    /// The checkpoint folder of the run.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.run_dir().join("checkpoints")
    }

    /// The split file: its own key, else `<model_dir>/dataset_split.csv`.
    pub fn split_file(&self) -> PathBuf {
        if self.system.dataset_split_file.as_os_str().is_empty() {
            self.system.model_dir.join("dataset_split.csv")
        } else {
            self.system.dataset_split_file.clone()
        }
    }

    /// The devices to run on: `cuda:0..n-1` when `system.num_gpus` = n > 0, else
    /// `system.devices`.
    pub fn device_names(&self) -> Vec<String> {
        match self.system.num_gpus {
            0 => self.system.devices.clone(),
            n => (0..n).map(|i| format!("cuda:{i}")).collect(),
        }
    }

    /// The histogram landmarks file.
    pub fn histogram_file(&self) -> PathBuf {
        if self.network.histogram_ref_file.as_os_str().is_empty() {
            self.system.model_dir.join("histogram.json")
        } else {
            self.network.histogram_ref_file.clone()
        }
    }

    /// The label map file (label normalisation).
    pub fn label_map_file(&self) -> PathBuf {
        self.system.model_dir.join("label_map.json")
    }

    /// Where segmentations are written: `inference.output_dir`, else
    /// `<run_dir>/inference`.
    pub fn inference_dir(&self) -> PathBuf {
        if self.inference.output_dir.as_os_str().is_empty() {
            self.run_dir().join("inference")
        } else {
            self.inference.output_dir.clone()
        }
    }

    /// The metrics CSV: `evaluation.output_csv`, else `<run_dir>/evaluation/metrics.csv`.
    pub fn evaluation_csv(&self) -> PathBuf {
        if self.evaluation.output_csv.as_os_str().is_empty() {
            self.run_dir().join("evaluation").join("metrics.csv")
        } else {
            self.evaluation.output_csv.clone()
        }
    }
}
