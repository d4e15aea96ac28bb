//! The typed, merged configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ConfigError;

/// `[system]`: where and how to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub seed: u64,
    pub devices: Vec<String>,
    pub num_gpus: usize,
    pub model_dir: PathBuf,
    pub loader_threads: usize,
    pub torch_threads: usize,
    pub dataset_split_file: PathBuf,
    pub cache_mb: u64,
    pub distributed: String,
    pub comm_timeout_s: f64,
    pub bucket_mb: f64,
}

/// `[input.<name>]`: where the files of one modality (or of the labels) are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSection {
    pub path_to_search: String,
    pub filename_contains: Vec<String>,
    pub filename_not_contains: Vec<String>,
    pub filename_removefromid: String,
    pub csv_file: String,
    pub pixdim: Vec<f64>,
    pub axcodes: String,
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
}

/// `[network]`: the network component and its windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub batch_size: usize,
    pub spatial_window_size: Vec<usize>,
    pub whitening: bool,
    pub normalise_foreground_only: bool,
    pub foreground_type: String,
    pub foreground_threshold: f64,
    pub normalisation: bool,
    pub histogram_ref_file: PathBuf,
    pub norm_type: String,
    pub cutoff: Vec<f64>,
    pub volume_padding_size: Vec<usize>,
    pub volume_padding_mode: String,
    pub window_sampling: String,
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub loss: String,
    pub optimiser: String,
    pub lr: f64,
    pub momentum: f64,
    pub lr_schedule: String,
    pub lr_step_size: u64,
    pub lr_gamma: f64,
    pub lr_power: f64,
    pub warmup_iters: u64,
    pub clip_grad_norm: f64,
    pub weight_decay: f64,
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
    pub mixed_precision: String,
    pub tensorboard_every_n: u64,
    pub validation_every_n: u64,
    pub validation_max_iter: u64,
    pub patience: usize,
    pub early_stopping_mode: String,
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
    pub blending: String,
    pub tta_mirror_axes: Vec<usize>,
    pub checkpoints: Vec<PathBuf>,
    pub output_type: String,
    pub output_prob: bool,
    pub probability_dtype: String,
    pub remove_small_components: Vec<u8>,
    pub min_component_mm3: f64,
    pub keep_largest_component: Vec<u8>,
    pub fill_holes: Vec<u8>,
    pub connectivity: u32,
    pub shard: String,
    pub precision: String,
    pub channels_last: bool,
    pub workers: usize,
    pub crop_to_foreground: bool,
    pub foreground_margin: usize,
}

/// `[evaluation]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub seg_dir: PathBuf,
    pub ref_dir: PathBuf,
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

fn window(key: &str, w: &[usize]) -> Result<[usize; 3], ConfigError> {
    match w {
        [i, j, k] if *i > 0 && *j > 0 && *k > 0 => Ok([*i, *j, *k]),
        _ => Err(ConfigError::Invalid(format!("`{key}` must be three positive sizes (i, j, k), got {w:?}"))),
    }
}

impl Settings {
    /// Checks what single keys cannot: consistency between keys.
    ///
    /// # Errors
    /// The first inconsistency, naming the keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        window("network.spatial_window_size", &self.network.spatial_window_size)?;
        if !self.inference.spatial_window_size.is_empty() {
            window("inference.spatial_window_size", &self.inference.spatial_window_size)?;
        }
        if self.segmentation.num_classes < 2 {
            return invalid(format!(
                "`segmentation.num_classes` must be at least 2, got {}",
                self.segmentation.num_classes
            ));
        }
        if self.system.devices.is_empty() {
            return invalid("`system.devices` lists no device".into());
        }
        let gpus = self.system.num_gpus;
        if gpus > 0 && self.system.devices != ["cpu"] && self.system.devices != self.device_names() {
            return invalid(format!(
                "`system.num_gpus` = {gpus} and `system.devices` = {:?} disagree: set one of them",
                self.system.devices
            ));
        }
        if !crate::distributed::BACKENDS.contains(&self.system.distributed.as_str()) {
            return invalid(format!(
                "`system.distributed` must be one of {}, got \"{}\"",
                crate::distributed::BACKENDS.join(", "),
                self.system.distributed
            ));
        }
        for (key, v) in
            [("system.comm_timeout_s", self.system.comm_timeout_s), ("system.bucket_mb", self.system.bucket_mb)]
        {
            if !(v > 0.0 && v.is_finite()) {
                return invalid(format!("`{key}` must be a positive number, got {v}"));
            }
        }
        if !["none", "fp16", "bf16"].contains(&self.training.mixed_precision.as_str()) {
            return invalid(format!(
                "`training.mixed_precision` must be none, fp16 or bf16, got \"{}\"",
                self.training.mixed_precision
            ));
        }
        for (key, v) in
            [("network.batch_size", self.network.batch_size), ("inference.batch_size", self.inference.batch_size)]
        {
            if v == 0 {
                return invalid(format!("`{key}` must be positive"));
            }
        }
        let window = self.inference_window();
        let b = &self.inference.border;
        if b.len() != 3 || (0..3).any(|a| 2 * b[a] >= window[a]) {
            return invalid(format!(
                "`inference.border` must be three sizes (i, j, k) with 2·border smaller than the window {window:?}, got {b:?}"
            ));
        }
        if !(0.0..1.0).contains(&self.inference.overlap) {
            return invalid(format!("`inference.overlap` must be in [0, 1), got {}", self.inference.overlap));
        }
        crate::engine::inference::InferenceOptions::from_settings(self)?;
        if let Err(e) = crate::engine::inference::Shard::parse(&self.inference.shard) {
            return invalid(format!("`inference.shard` (`--shard`): {e}"));
        }
        if self.training.save_every_n == 0 {
            return invalid("`training.save_every_n` must be positive".into());
        }
        // Evaluating two folders needs no dataset.
        if self.evaluation.ref_dir.as_os_str().is_empty() {
            self.validate_inputs()?;
        }
        let t = &self.training;
        for (key, f) in [
            ("training.exclude_fraction_for_validation", t.exclude_fraction_for_validation),
            ("training.exclude_fraction_for_inference", t.exclude_fraction_for_inference),
        ] {
            if !(0.0..1.0).contains(&f) {
                return invalid(format!("`{key}` must be in [0, 1), got {f}"));
            }
        }
        if t.exclude_fraction_for_validation + t.exclude_fraction_for_inference >= 1.0 {
            return invalid("the exclude fractions for validation and inference leave no TRAIN subject".into());
        }
        if t.k_folds == 1 || (t.k_folds > 1 && t.fold >= t.k_folds) {
            return invalid(format!(
                "`training.fold` must be in 0..k_folds with k_folds >= 2, got fold {} of {}",
                t.fold, t.k_folds
            ));
        }
        if t.sample_per_volume == 0 {
            return invalid("`training.sample_per_volume` must be positive".into());
        }
        let sampling = self.network.window_sampling.as_str();
        if !["uniform", "weighted", "balanced", "resize"].contains(&sampling) {
            return invalid(format!(
                "`network.window_sampling` must be uniform, weighted, balanced or resize, got \"{sampling}\""
            ));
        }
        if sampling == "weighted" && !self.input.contains_key(&self.segmentation.sampler) {
            return invalid(format!(
                "`network.window_sampling = \"weighted\"` needs `segmentation.sampler` to name an input section of weight maps, got \"{}\"",
                self.segmentation.sampler
            ));
        }
        let n = &self.network;
        if !["otsu", "mean", "threshold"].contains(&n.foreground_type.as_str()) {
            return invalid(format!(
                "`network.foreground_type` must be otsu, mean or threshold, got \"{}\"",
                n.foreground_type
            ));
        }
        if !["percentile", "quartile"].contains(&n.norm_type.as_str()) {
            return invalid(format!("`network.norm_type` must be percentile or quartile, got \"{}\"", n.norm_type));
        }
        if !matches!(n.cutoff.as_slice(), [lo, hi] if 0.0 <= *lo && lo < hi && *hi <= 1.0) {
            return invalid(format!("`network.cutoff` must be two fractions lo < hi in [0, 1], got {:?}", n.cutoff));
        }
        if n.volume_padding_size.len() != 3 || n.volume_padding_size.iter().any(|&p| p > 4096) {
            return invalid(format!(
                "`network.volume_padding_size` must be three sizes (i, j, k) up to 4096, got {:?}",
                n.volume_padding_size
            ));
        }
        if !["minimum", "constant", "edge", "symmetric", "reflect"].contains(&n.volume_padding_mode.as_str()) {
            return invalid(format!(
                "`network.volume_padding_mode` must be minimum, constant, edge, symmetric or reflect, got \"{}\"",
                n.volume_padding_mode
            ));
        }
        if let Err(e) = crate::engine::optim::Rule::parse(&self.training.optimiser) {
            return invalid(format!("`training.optimiser`: {e}"));
        }
        for (key, pattern) in
            [("training.vars_to_restore", &t.vars_to_restore), ("training.vars_to_freeze", &t.vars_to_freeze)]
        {
            if let Err(e) = regex::Regex::new(pattern) {
                return invalid(format!("`{key}` is not a regular expression: {e}"));
            }
        }
        if !t.restore_from.as_os_str().is_empty() && t.starting_iter != 0 {
            return invalid("`training.restore_from` starts a new run: it needs `training.starting_iter = 0`".into());
        }
        if let Err(e) = crate::engine::validation::EarlyStopping::parse(&self.training.early_stopping_mode, 1) {
            return invalid(format!("`training.early_stopping_mode`: {e}"));
        }
        super::augmentation::validate(t)?;
        if !["constant", "step", "poly", "cosine"].contains(&self.training.lr_schedule.as_str()) {
            return invalid(format!(
                "`training.lr_schedule` must be constant, step, poly or cosine, got \"{}\"",
                self.training.lr_schedule
            ));
        }
        Ok(())
    }

    /// The input sections `[segmentation]` names: defined, on one grid.
    fn validate_inputs(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for name in self.segmentation.image.iter().chain([&self.segmentation.label]) {
            if !self.input.contains_key(name) {
                let have: Vec<&String> = self.input.keys().collect();
                return invalid(format!(
                    "`segmentation` names input section `{name}`, but the config defines only {have:?}"
                ));
            }
        }
        let used: Vec<&String> = self.segmentation.image.iter().chain([&self.segmentation.label]).collect();
        for (key, differs) in [
            ("pixdim", used.windows(2).any(|w| self.input[w[0]].pixdim != self.input[w[1]].pixdim)),
            ("axcodes", used.windows(2).any(|w| self.input[w[0]].axcodes != self.input[w[1]].axcodes)),
        ] {
            if differs {
                return invalid(format!(
                    "input sections {used:?} must agree on `{key}` (images and labels share one grid)"
                ));
            }
        }
        let first = &self.input[&self.segmentation.image[0]];
        if !first.pixdim.is_empty() && (first.pixdim.len() != 3 || first.pixdim.iter().any(|p| *p <= 0.0)) {
            return invalid(format!("`pixdim` must be three positive voxel sizes in mm, got {:?}", first.pixdim));
        }
        if !first.axcodes.is_empty() && crate::preprocess::AxCodes::parse(&first.axcodes).is_err() {
            return invalid(format!(
                "`axcodes` must be three letters from L/R, A/P, S/I, one per axis, got \"{}\"",
                first.axcodes
            ));
        }
        Ok(())
    }

    /// The training window `(i, j, k)`.
    pub fn train_window(&self) -> [usize; 3] {
        window("", &self.network.spatial_window_size).unwrap_or([32, 32, 32])
    }

    /// The inference window `(i, j, k)`: its own, else the training window.
    pub fn inference_window(&self) -> [usize; 3] {
        window("", &self.inference.spatial_window_size).unwrap_or_else(|_| self.train_window())
    }

    /// The checkpoint folder of the run.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.system.model_dir.join("checkpoints")
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

    /// The optimiser the config describes.
    pub fn optimiser(&self) -> crate::engine::optim::OptimiserConfig {
        let t = &self.training;
        crate::engine::optim::OptimiserConfig {
            rule: crate::engine::optim::Rule::parse(&t.optimiser).unwrap_or(crate::engine::optim::Rule::Adam),
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            clip_grad_norm: t.clip_grad_norm,
        }
    }

    /// The learning-rate schedule the config describes.
    pub fn schedule(&self) -> crate::engine::optim::Schedule {
        use crate::engine::optim::Decay;
        let t = &self.training;
        let decay = match t.lr_schedule.as_str() {
            "step" => Decay::Step { size: t.lr_step_size, gamma: t.lr_gamma },
            "poly" => Decay::Poly { power: t.lr_power },
            "cosine" => Decay::Cosine,
            _ => Decay::Constant,
        };
        crate::engine::optim::Schedule { base: t.lr, warmup: t.warmup_iters, max_iter: t.max_iter, decay }
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

    /// Where segmentations are written.
    pub fn inference_dir(&self) -> PathBuf {
        if self.inference.output_dir.as_os_str().is_empty() {
            self.system.model_dir.join("inference")
        } else {
            self.inference.output_dir.clone()
        }
    }

    /// The metrics CSV.
    pub fn evaluation_csv(&self) -> PathBuf {
        if self.evaluation.output_csv.as_os_str().is_empty() {
            self.system.model_dir.join("evaluation").join("metrics.csv")
        } else {
            self.evaluation.output_csv.clone()
        }
    }
}
