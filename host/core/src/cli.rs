//! The command line's arguments: `niftyhost train | inference | export | evaluation |
//! check | bench | list-plugins | config | info`. What each command does is in
//! [`crate::commands`].

pub mod niftynet;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigError, Overrides};
use crate::folds::FoldSelection;
use crate::plugins::SearchPath;

/// Deep learning on 3D medical images, with networks and losses as plugins.
#[derive(Debug, Parser)]
#[command(
    name = "niftyhost",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 success; 2 a usage or configuration error (a bad flag or key, an unknown \
                  component, a parameter a plugin refuses, a device that is not one or cannot be had, a \
                  --plugin file that does not exist); 1 anything else (bad data, a failed job)."
)]
pub struct Cli {
    /// The job to run.
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Warnings and errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The jobs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a network on the configured data (with `training.k_folds`: one fold, or
    /// `--all-folds`).
    Train(TrainArgs),
    /// Segment images window by window: the config's INFER subjects with its checkpoints,
    /// or `--image` files with a config or `--model` bundles.
    Inference(InferenceArgs),
    /// Pack a trained model (network plugin, weights, config, learned preprocessing) into
    /// one bundle file that `inference --model` runs anywhere.
    Export(ExportArgs),
    /// Compare segmentations with reference labels and write a metrics CSV: the config's
    /// held-out subjects, or two folders (`--seg-dir S --ref-dir R`, no config needed).
    Evaluation(EvaluationArgs),
    /// Check that every subject's files are readable and agree, listing every problem.
    /// Like training, it writes the split file (`system.dataset_split_file`, default
    /// `<model_dir>/dataset_split.csv`) when it is missing.
    Check(JobArgs),
    /// Measure the data pipeline (NIfTI decoding, sampler throughput and the data-wait
    /// share of a training loop) on the 1 mm MNI152 task, or with `--inference`
    /// whole-volume inference of its T1.
    Bench(BenchArgs),
    /// List every plugin component found, with its file, sha256 and status.
    ListPlugins(PluginArgs),
    /// Print the merged configuration and every parameter with its default; with
    /// `--explain`, what each key of a NiftyNet .ini file became.
    Config(ConfigArgs),
    /// Show what NIfTI files hold: shape, data type, scaling, voxel size, orientation,
    /// affine and value statistics.
    Info(InfoArgs),
    /// Read every labelled subject once, write its fingerprint and a complete, commented
    /// training config derived from it by nnU-Net's rules (`-c` input sections, or
    /// `--dataset DIR` in the Decathlon layout).
    Plan(PlanArgs),
}

/// Arguments of `niftyhost plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Config (its input sections and segmentation; other keys such as devices kept),
    /// overrides and plugins.
    #[command(flatten)]
    pub job: JobArgs,
    /// A dataset folder in the Medical Segmentation Decathlon layout (dataset.json,
    /// imagesTr/, labelsTr/, imagesTs/) instead of the config's input sections.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// The planned config to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Where the fingerprint goes (default: fingerprint.json beside --out).
    #[arg(long, value_name = "FILE")]
    pub fingerprint: Option<PathBuf>,
    /// Memory budget of a training step in GiB (default: the GPU's memory when the first
    /// device is one, else 4).
    #[arg(long, value_name = "GB")]
    pub memory_gb: Option<f64>,
    /// Training iterations instead of the rule's.
    #[arg(long, value_name = "N", conflicts_with = "minutes")]
    pub iterations: Option<u64>,
    /// Training time budget in minutes: the iterations that fit, from the step time the
    /// check measures on the first device (instead of the rule's iterations).
    #[arg(long, value_name = "M", conflicts_with = "no_check")]
    pub minutes: Option<f64>,
    /// Do not check the batch by a forward/backward pass.
    #[arg(long)]
    pub no_check: bool,
}

/// Arguments of `niftyhost inference`.
#[derive(Debug, Clone, Args)]
pub struct InferenceArgs {
    /// Config, overrides and plugins (with `--model`, `--set` changes the bundled config).
    #[command(flatten)]
    pub job: JobArgs,
    /// A model bundle (.nhb) to segment with instead of a config; repeat to ensemble
    /// bundles that share their input spec and preprocessing.
    #[arg(long = "model", value_name = "FILE")]
    pub models: Vec<PathBuf>,
    /// An image to segment, one per image section in the model's order (a 4D file gives its
    /// channels; repeatable); needs `--out`.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// The output file for `--image` (.nii or .nii.gz).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Ensembles of folds.
    #[command(flatten)]
    pub folds: FoldsArgs,
    /// Shortcut for `inference.shard`: segment only shard I of N of the config's subjects
    /// (sorted by id, every N-th from position I), e.g. one task of a job array. Without it,
    /// a Slurm job array's SLURM_ARRAY_TASK_ID gives the shard.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

impl InferenceArgs {
    /// The job's overrides with `--shard` before `--set`, so `--set` wins; `--batch-size`
    /// sets the inference batch, `inference.batch_size`.
    ///
    /// # Errors
    /// As [`JobArgs::overrides`].
    pub fn overrides(&self) -> Result<Overrides, ConfigError> {
        let mut overrides = self.job.overrides()?;
        for (flag, key, _) in &mut overrides.cli {
            if flag == "--batch-size" {
                "inference.batch_size".clone_into(key);
            }
        }
        if let Some(shard) = &self.shard {
            let value = toml::Value::String(shard.clone()).to_string();
            overrides.cli.insert(0, ("--shard".to_owned(), "inference.shard".to_owned(), value));
        }
        Ok(overrides)
    }
}

/// Arguments of `niftyhost config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Config, overrides and plugins.
    #[command(flatten)]
    pub job: JobArgs,
    /// Print, key by key, what each key of the NiftyNet .ini file given with `-c` became
    /// in niftyhost (or why it was refused); exits 2 if any key is refused, unknown or
    /// invalid.
    #[arg(long)]
    pub explain: bool,
}

/// Arguments of `niftyhost export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Config, overrides and plugins of the trained model.
    #[command(flatten)]
    pub job: JobArgs,
    /// The bundle to write (.nhb).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Ensembles of folds.
    #[command(flatten)]
    pub folds: FoldsArgs,
}

/// Arguments of `niftyhost train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Config, overrides and plugins.
    #[command(flatten)]
    pub job: JobArgs,
    /// Train every fold of `training.k_folds` in turn, each into `<model_dir>/fold_<k>/`:
    /// a fold with checkpoints resumes, a complete one (checkpoint at `max_iter`) is skipped.
    #[arg(long, conflicts_with = "fold")]
    pub all_folds: bool,
}

/// The `--folds` flag of the jobs that use trained folds.
#[derive(Debug, Clone, Args, Default)]
pub struct FoldsArgs {
    /// The ensemble of these folds of `training.k_folds` (`all`, or `0,2,4`): their final
    /// checkpoints averaged; outputs in `<model_dir>/folds_<i>_<j>…/`.
    #[arg(long, value_name = "all|I,J,..", value_parser = FoldSelection::parse, conflicts_with = "fold")]
    pub folds: Option<FoldSelection>,
}

/// Arguments of `niftyhost bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Folder with t1_1mm.nii.gz and tissue_1mm.nii.gz.
    #[arg(long, default_value = "data/mni152_1mm")]
    pub data_dir: PathBuf,
    /// Window edge in voxels.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Loader threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Batches timed per sampler.
    #[arg(long, default_value_t = 200)]
    pub batches: u64,
    /// Iterations of the unet3d training loop timed (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub train_iterations: u64,
    /// Also time each augmentation component and the default chain per window, and the
    /// training loop with that chain on (needs the `augment` plugin).
    #[arg(long)]
    pub augment: bool,
    /// Instead, time whole-volume inference of t1_1mm.nii.gz with unet3d (seeded random
    /// weights; window `--window`, overlap 0.25, batch 2), with and without
    /// `inference.crop_to_foreground`, and report the peak memory.
    #[arg(long)]
    pub inference: bool,
    /// Timed runs of each inference (the best counts).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Plugins.
    #[command(flatten)]
    pub plugins: PluginArgs,
}

/// Arguments of `niftyhost info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// NIfTI-1/NIfTI-2/Analyze images (`.nii`, `.nii.gz`, `.hdr`/`.img`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print a JSON array (one object per file) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `niftyhost evaluation`.
#[derive(Debug, Clone, Args)]
pub struct EvaluationArgs {
    /// Config, overrides and plugins.
    #[command(flatten)]
    pub job: JobArgs,
    /// Shortcut for `evaluation.seg_dir`: the segmentations.
    #[arg(long, value_name = "DIR")]
    pub seg_dir: Option<PathBuf>,
    /// Shortcut for `evaluation.ref_dir`: reference labels `<id>.nii[.gz]`, each paired with
    /// `<seg-dir>/<id><inference.output_postfix>.nii[.gz]` (else `<seg-dir>/<id>.nii[.gz]`).
    #[arg(long, value_name = "DIR")]
    pub ref_dir: Option<PathBuf>,
    /// Shortcut for `evaluation.output_csv`.
    #[arg(long, value_name = "CSV")]
    pub out: Option<PathBuf>,
    /// Ensembles of folds.
    #[command(flatten)]
    pub folds: FoldsArgs,
}

impl EvaluationArgs {
    /// The job's overrides with these flags before `--set`, so `--set` wins.
    ///
    /// # Errors
    /// As [`JobArgs::overrides`].
    pub fn overrides(&self) -> Result<Overrides, ConfigError> {
        let mut overrides = self.job.overrides()?;
        let path = |p: &PathBuf| toml::Value::String(p.display().to_string()).to_string();
        let flags = [
            ("--seg-dir", "evaluation.seg_dir", &self.seg_dir),
            ("--ref-dir", "evaluation.ref_dir", &self.ref_dir),
            ("--out", "evaluation.output_csv", &self.out),
        ];
        let entries =
            flags.into_iter().filter_map(|(flag, key, v)| Some((flag.to_owned(), key.to_owned(), path(v.as_ref()?))));
        overrides.cli.splice(0..0, entries);
        Ok(overrides)
    }
}

/// Where plugins are looked for.
#[derive(Debug, Clone, Args, Default)]
pub struct PluginArgs {
    /// A plugin library to load (repeatable); a missing one is an error.
    #[arg(long = "plugin", value_name = "FILE")]
    pub plugins: Vec<PathBuf>,
    /// A folder of plugin libraries (repeatable), searched before NIFTYHOST_PLUGIN_PATH,
    /// ./plugins and the plugins/ folder beside the executable.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PluginArgs {
    /// The search path these arguments define.
    pub fn search_path(&self) -> SearchPath {
        SearchPath::standard(&self.plugins, &self.plugin_dirs)
    }
}

/// Arguments shared by the jobs.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Config file: TOML, or a NiftyNet-style .ini.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any key: `--set training.lr=0.01` (repeatable; values are TOML literals).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Shortcut for `network.batch_size`; for `inference`, `inference.batch_size` (as
    /// NiftyNet's `--batch_size`, which is accepted too).
    #[arg(long, alias = "batch_size")]
    pub batch_size: Option<usize>,
    /// Shortcut for `training.lr`.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Shortcut for `training.max_iter` (NiftyNet's `--max_iter` too).
    #[arg(long, alias = "max_iter")]
    pub max_iter: Option<u64>,
    /// Shortcut for `training.starting_iter` (-1 resumes from the latest checkpoint).
    #[arg(long, allow_negative_numbers = true)]
    pub starting_iter: Option<i64>,
    /// Shortcut for `system.model_dir`.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Shortcut for `system.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortcut for `training.fold` (needs `training.k_folds` >= 2): the fold to train,
    /// check, segment with, export or evaluate, in `<model_dir>/fold_<k>/`.
    #[arg(long, value_name = "K")]
    pub fold: Option<usize>,
    /// Shortcut for `system.devices`, comma-separated (`cpu`, `cuda:0,cuda:1`).
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Plugins.
    #[command(flatten)]
    pub plugins: PluginArgs,
    /// NiftyNet 0.1's flags.
    #[command(flatten)]
    pub niftynet: niftynet::NiftyNetArgs,
}

impl JobArgs {
    /// Flags and `--set` as config overrides, flags first so `--set` wins.
    ///
    /// # Errors
    /// A `--set` without `=`, or NiftyNet flags that cannot be honoured.
    pub fn overrides(&self) -> Result<Overrides, ConfigError> {
        let mut cli: Vec<(String, String, String)> = self.niftynet.overrides()?;
        let mut flag = |name: &str, key: &str, value: String| cli.push((format!("--{name}"), key.to_owned(), value));
        if let Some(v) = self.batch_size {
            flag("batch-size", "network.batch_size", v.to_string());
        }
        if let Some(v) = self.lr {
            flag("lr", "training.lr", format!("{v:?}"));
        }
        if let Some(v) = self.max_iter {
            flag("max-iter", "training.max_iter", v.to_string());
        }
        if let Some(v) = self.starting_iter {
            flag("starting-iter", "training.starting_iter", v.to_string());
        }
        if let Some(v) = &self.model_dir {
            flag("model-dir", "system.model_dir", toml::Value::String(v.display().to_string()).to_string());
        }
        if let Some(v) = self.seed {
            flag("seed", "system.seed", v.to_string());
        }
        if let Some(v) = self.fold {
            flag("fold", "training.fold", v.to_string());
        }
        if let Some(v) = &self.devices {
            flag(
                "devices",
                "system.devices",
                toml::Value::Array(v.iter().map(|d| toml::Value::String(d.clone())).collect()).to_string(),
            );
        }
        for s in &self.set {
            let (k, v) = crate::config::parse_set(s)?;
            cli.push((format!("--set {s}"), k, v));
        }
        Ok(Overrides { cli, ..Overrides::default() }.with_env(std::env::vars()))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// The keys `args` (after `niftyhost`) set, in order, with their values.
    fn keys(args: &[&str]) -> Vec<(String, String)> {
        let cli = Cli::try_parse_from(std::iter::once("niftyhost").chain(args.iter().copied())).unwrap();
        let overrides = match &cli.command {
            Command::Train(t) => t.job.overrides(),
            Command::Inference(i) => i.overrides(),
            other => panic!("not a job of this test: {other:?}"),
        };
        overrides.unwrap().cli.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    #[test]
    fn batch_size_is_the_training_batch_for_train_and_the_inference_batch_for_inference() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(keys(&["train", "--batch-size", "3"]), vec![pair("network.batch_size", "3")]);
        assert_eq!(keys(&["inference", "--batch_size", "5"]), vec![pair("inference.batch_size", "5")]);
        // `--set` still comes last and wins.
        assert_eq!(
            keys(&["inference", "--batch-size", "5", "--set", "inference.batch_size=2"]),
            vec![pair("inference.batch_size", "5"), pair("inference.batch_size", "2")]
        );
    }
}
