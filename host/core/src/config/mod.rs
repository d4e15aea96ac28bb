//! Configuration: typed settings, the table of every key with its default and doc, and
//! the layering defaults ← file (`-c`, TOML or NiftyNet INI) ← `NIFTYHOST_*` environment
//! ← command line, validated layer by layer so an error names the key and its origin.

pub mod augmentation;
mod choices;
mod error;
mod ini;
mod keys;
mod layers;
pub mod niftynet;
mod settings;

pub use choices::{
    Blending, Distributed, EarlyStoppingMode, ForegroundType, InferencePrecision, LrSchedule, MixedPrecision,
    MultimodForeground, NormType, OptimiserRule, OutputKind, OutputType, PaddingMode, ProbabilityDtype, Shard,
    WeightDecayNorm, WindowSampling,
};
pub use error::ConfigError;
pub use keys::{KeySpec, INPUT_KEYS, KEYS};
pub use layers::{explain_ini, load, parse_set, Overrides};
pub use settings::{
    AugmentationEntry, Evaluation, Inconsistency, Inference, InputSection, Network, Segmentation, Settings, System,
    Training,
};
