//! The typed values of the configuration's enum-like keys: each key's choices as an
//! enum that (de)serialises as its lowercase name, plus the shard (`"i/n"`) and axis
//! codes, which deserialise only when well formed. Values are parsed once, when the
//! configuration loads; an unknown name is rejected there with the names allowed (the
//! loader adds the key and where it was set). The engine adds behaviour to these types
//! where it uses them.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::preprocess::AxCodes;

/// "a or b", "a, b or c", and for longer lists "one of a, b, c, d".
fn listing(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] if names.len() <= 3 => format!("{} or {last}", init.join(", ")),
        _ => format!("one of {}", names.join(", ")),
    }
}

/// The message of a name that is not among `names`.
fn not_a_choice(names: &[&str], got: &str) -> String {
    format!("must be {}, got \"{got}\"", listing(names))
}

/// Defines a key's choices: the enum, its names (`NAMES`, in the order errors list them),
/// `Display` / `FromStr` / serde as those names.
macro_rules! choices {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The names the key accepts, in order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The value's name in the configuration.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    other => Err(not_a_choice(Self::NAMES, other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?.parse().map_err(D::Error::custom)
            }
        }
    };
}

choices! {
    /// `system.distributed`: how gradients are averaged across processes.
    pub enum Distributed {
        /// One process: in-process; GPU replicas: NCCL; else MPI.
        Auto = "auto",
        /// Replicas of one process only.
        InProcess = "in-process",
        /// MPI.
        Mpi = "mpi",
        /// NCCL.
        Nccl = "nccl",
    }
}

choices! {
    /// `network.foreground_type`: which voxels are foreground.
    pub enum ForegroundType {
        /// Above Otsu's threshold.
        Otsu = "otsu",
        /// Above the mean.
        Mean = "mean",
        /// Above `network.foreground_threshold`.
        Threshold = "threshold",
        /// Below Otsu's threshold (NiftyNet's `otsu_minus`).
        OtsuMinus = "otsu_minus",
        /// Below `network.foreground_threshold` (NiftyNet's `threshold_minus`).
        ThresholdMinus = "threshold_minus",
    }
}

choices! {
    /// `network.multimod_foreground_type`: how the foreground masks of several image
    /// channels combine (NiftyNet's `multimod_foreground_type`).
    pub enum MultimodForeground {
        /// Each channel its own mask.
        Multi = "multi",
        /// One mask: foreground in every channel.
        And = "and",
        /// One mask: foreground in any channel.
        Or = "or",
    }
}

choices! {
    /// `training.weight_decay_norm`: the penalty `training.weight_decay` weighs.
    pub enum WeightDecayNorm {
        /// `decay · Σw²/2`: the gradient gains `decay · w`.
        L2 = "l2",
        /// `decay · Σ|w|`: the gradient gains `decay · sign(w)`.
        L1 = "l1",
    }
}

choices! {
    /// `network.norm_type`: the landmarks of histogram standardisation.
    pub enum NormType {
        /// Deciles.
        Percentile = "percentile",
        /// Quartiles.
        Quartile = "quartile",
    }
}

choices! {
    /// `network.volume_padding_mode`: what padding adds around images.
    pub enum PaddingMode {
        /// The image's minimum.
        Minimum = "minimum",
        /// Zero.
        Constant = "constant",
        /// The nearest edge voxel.
        Edge = "edge",
        /// The mirror image, edge voxel repeated.
        Symmetric = "symmetric",
        /// The mirror image about the edge voxel.
        Reflect = "reflect",
    }
}

choices! {
    /// `network.window_sampling`: how training windows are placed.
    pub enum WindowSampling {
        /// Uniformly inside the volume.
        Uniform = "uniform",
        /// Centres weighted by a map (`segmentation.sampler`).
        Weighted = "weighted",
        /// Centres balanced over label classes.
        Balanced = "balanced",
        /// The whole volume, resized.
        Resize = "resize",
        /// A share of each batch centred on labelled voxels, the rest uniform
        /// (`network.foreground_oversample`).
        Foreground = "foreground",
    }
}

choices! {
    /// `training.optimiser`: the update rule.
    pub enum OptimiserRule {
        /// Plain gradient descent.
        Sgd = "sgd",
        /// Heavy-ball momentum: `v ← μv + g`, `p ← p − lr·v`.
        Momentum = "momentum",
        /// Nesterov momentum: `v ← μv + g`, `p ← p − lr·(g + μv)`.
        Nesterov = "nesterov",
        /// Adam (Kingma & Ba 2015), bias-corrected, L2 weight decay added to the gradient.
        Adam = "adam",
        /// AdamW (Loshchilov & Hutter 2019): weight decay decoupled from the gradient.
        AdamW = "adamw",
        /// Adagrad: `s ← s + g²`, `p ← p − lr·g/(√s + ε)`.
        Adagrad = "adagrad",
        /// RMSprop: `s ← ρs + (1−ρ)g²`, `p ← p − lr·g/(√s + ε)`, ρ = 0.99.
        RmsProp = "rmsprop",
    }
}

choices! {
    /// `training.lr_schedule`: the decay of the learning rate after warm-up.
    pub enum LrSchedule {
        /// The base rate throughout.
        Constant = "constant",
        /// Times `training.lr_gamma` every `training.lr_step_size` iterations.
        Step = "step",
        /// `(1 − t/max_iter)^training.lr_power`.
        Poly = "poly",
        /// Half a cosine down to 0 at `training.max_iter`.
        Cosine = "cosine",
    }
}

choices! {
    /// `training.mixed_precision`: the arithmetic of a training replica's forward pass.
    pub enum MixedPrecision {
        /// fp32 everywhere.
        Full = "none",
        /// fp16 autocast, with dynamic loss scaling.
        Fp16 = "fp16",
        /// bf16 autocast.
        Bf16 = "bf16",
    }
}

choices! {
    /// `training.early_stopping_mode`: the rule that stops training early (with
    /// `training.patience` > 0).
    pub enum EarlyStoppingMode {
        /// The newest validation loss is above the mean of the `patience` before it.
        Mean = "mean",
        /// The loss went up at each of the last `patience` validations.
        ValidationUp = "validation_up",
    }
}

choices! {
    /// `inference.blending`: the weights of overlapping windows.
    pub enum Blending {
        /// A plain mean (NiftyNet).
        Constant = "constant",
        /// Gaussian weights: window centres weigh most.
        Gaussian = "gaussian",
    }
}

choices! {
    /// `inference.output_type`: what inference writes.
    pub enum OutputType {
        /// One label per voxel.
        Labels = "labels",
        /// Class probabilities, one volume per class.
        Probabilities = "probabilities",
        /// Network outputs before the softmax.
        Logits = "logits",
    }
}

choices! {
    /// `inference.probability_dtype`: how probabilities are stored.
    pub enum ProbabilityDtype {
        /// float32.
        Float32 = "float32",
        /// uint8, value/255 (`scl_slope` 1/255).
        Uint8 = "uint8",
    }
}

choices! {
    /// `inference.precision`: the arithmetic of inference's forward passes.
    pub enum InferencePrecision {
        /// float32.
        Fp32 = "fp32",
        /// bfloat16 parameters and activations (float32's range, 8 bits of mantissa).
        Bf16 = "bf16",
        /// bf16 on a CPU with bf16 dot products, where the network runs in it (else
        /// float32, from its first batch on); float32 on other devices.
        Auto = "auto",
    }
}

impl Default for MultimodForeground {
    /// Each channel its own mask (niftyhost's behaviour before the key existed).
    fn default() -> Self {
        MultimodForeground::Multi
    }
}

impl Default for WeightDecayNorm {
    fn default() -> Self {
        WeightDecayNorm::L2
    }
}

/// The kind of output volume, from `inference.output_type`, NiftyNet's
/// `inference.output_prob` and `inference.probability_dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One label value per voxel (uint8).
    Labels,
    /// Class probabilities as a 4D image of `K` volumes: float32, or uint8 with
    /// `scl_slope = 1/255` when `quantised`.
    Probabilities {
        /// uint8 storage.
        quantised: bool,
    },
    /// Network outputs before the softmax, float32, 4D.
    Logits,
}

impl OutputKind {
    /// The output `output_type`, `output_prob` (true = probabilities) and `dtype` describe.
    ///
    /// # Errors
    /// `output_prob = true` with `output_type = "logits"`, naming both keys.
    pub fn new(output_type: OutputType, output_prob: bool, dtype: ProbabilityDtype) -> Result<OutputKind, String> {
        let quantised = dtype == ProbabilityDtype::Uint8;
        match (output_type, output_prob) {
            (OutputType::Labels, false) => Ok(OutputKind::Labels),
            (OutputType::Labels | OutputType::Probabilities, _) => Ok(OutputKind::Probabilities { quantised }),
            (OutputType::Logits, false) => Ok(OutputKind::Logits),
            (OutputType::Logits, true) => {
                Err("`inference.output_prob = true` contradicts `inference.output_type = \"logits\"`".into())
            }
        }
    }
}

/// Shard `index` of `count` (`0 <= index < count`) of a cohort: `inference.shard = "i/n"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl Shard {
    /// Every subject: shard 0 of 1.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `"i/n"`; the empty string is [`Shard::ALL`].
    ///
    /// # Errors
    /// Text that is not `i/n` with `0 <= i < n`, as a message naming what was expected.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Shard::ALL);
        }
        let expected = || format!("must be \"i/n\" with 0 <= i < n (e.g. \"0/4\"), got \"{text}\"");
        let (i, n) = text.split_once('/').ok_or_else(expected)?;
        let (Ok(index), Ok(count)) = (i.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
            return Err(expected());
        };
        Shard::new(index, count).ok_or_else(expected)
    }

    /// Shard `index` of `count`, if `index < count`.
    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// An optional value written as its text, `""` when absent (TOML has no null).
fn optional_text<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some).map_err(D::Error::custom)
    }
}

fn serialize_optional<S: Serializer, T: fmt::Display>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.collect_str(v),
        None => serializer.serialize_str(""),
    }
}

/// serde of `inference.shard`: `""` (no shard given) or `"i/n"`.
pub(super) mod shard_text {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Shard>, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_optional(value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Shard>, D::Error> {
        optional_text(deserializer, Shard::parse)
    }
}

/// serde of `input.<name>.axcodes`: `""` (orientation kept) or three letters such as `"RAS"`.
pub(super) mod axcodes_text {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<AxCodes>, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_optional(value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<AxCodes>, D::Error> {
        optional_text(deserializer, |text| {
            AxCodes::parse(text).map_err(|_| {
                format!("must be three letters from L/R, A/P, S/I, one per axis (e.g. \"RAS\"), got \"{text}\"")
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_choices() {
        for &name in OptimiserRule::NAMES {
            assert_eq!(name.parse::<OptimiserRule>().unwrap().to_string(), name);
        }
        assert_eq!(MixedPrecision::Full.name(), "none");
        assert_eq!(Distributed::InProcess.name(), "in-process");
        assert_eq!("fp8".parse::<MixedPrecision>().unwrap_err(), "must be none, fp16 or bf16, got \"fp8\"");
        assert_eq!("gauss".parse::<Blending>().unwrap_err(), "must be constant or gaussian, got \"gauss\"");
        assert_eq!(
            "gloo".parse::<Distributed>().unwrap_err(),
            "must be one of auto, in-process, mpi, nccl, got \"gloo\""
        );
        assert!("Adam".parse::<OptimiserRule>().is_err(), "names are exact");
    }

    #[test]
    fn output_kinds_follow_niftynets_output_prob() {
        use OutputType::*;
        use ProbabilityDtype::*;
        assert_eq!(OutputKind::new(Labels, false, Float32), Ok(OutputKind::Labels));
        assert_eq!(OutputKind::new(Labels, true, Uint8), Ok(OutputKind::Probabilities { quantised: true }));
        assert_eq!(OutputKind::new(Probabilities, false, Float32), Ok(OutputKind::Probabilities { quantised: false }));
        assert_eq!(OutputKind::new(Logits, false, Uint8), Ok(OutputKind::Logits));
        assert!(OutputKind::new(Logits, true, Float32).unwrap_err().contains("contradicts"));
    }

    #[test]
    fn parses_i_of_n_and_rejects_the_rest() {
        assert_eq!(Shard::parse(""), Ok(Shard::ALL));
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard::ALL));
        for bad in ["2/2", "x", "1", "0/0", "-1/2", "1/2/3", "a/b"] {
            let err = Shard::parse(bad).unwrap_err();
            assert!(err.contains("0 <= i < n") && err.contains(bad), "{bad}: {err}");
        }
    }
}
