//! The commands of `niftyhost` as library calls: each takes its parsed arguments
//! ([`crate::cli`]), loads the configuration and plugins it needs, runs its job and
//! returns the job's report. The binary prints the report (its `Display`, whole lines
//! each ending in a newline, or JSON with `--json`) and maps errors to exit codes.
//!
//! Relative paths of a configuration are read from the current directory, as the binary
//! is run. A library user sets the process's allocator as the binary does with
//! [`crate::memory`].

mod explain;

use anyhow::{Context, Result};

pub use self::explain::{explain, ExplainFailure, ExplainReport};
use niftyhost_core::commands::chosen_folds;
pub use niftyhost_core::commands::{check, evaluation, here, info, InfoReport};

use crate::bench::{self, BenchOptions, BenchReport};
use crate::bundle::{self, Exported};
use crate::cli::{BenchArgs, ExportArgs, InferenceArgs, JobArgs, PluginArgs, TrainArgs};
use crate::config::{ConfigError, Settings};
use crate::engine::folds::{self, FoldsReport};
use crate::engine::inference::job::{ImageFiles, InferenceJob, InferenceReport};
use crate::engine::trainer::{self, TrainReport};
use crate::help;
use crate::plugins::Registry;

/// The configuration of a job's arguments, as core's
/// [`niftyhost_core::commands::settings`] loads it, on the CPU when it asks for CUDA
/// devices that are not there and allows the fallback ([`crate::torch::fall_back_to_cpu`]).
///
/// # Errors
/// As core's.
pub fn settings(args: &JobArgs) -> Result<Settings, ConfigError> {
    load(args, &args.overrides()?)
}

/// [`settings`] under `overrides`.
fn load(args: &JobArgs, overrides: &crate::config::Overrides) -> Result<Settings, ConfigError> {
    let mut s = niftyhost_core::commands::load(args, overrides)?;
    crate::torch::fall_back_to_cpu(&mut s);
    Ok(s)
}

/// Loads plugins; a library named with `--plugin` that fails ends the run.
///
/// # Errors
/// Every `--plugin` library that could not be loaded, one per line.
pub fn registry(args: &PluginArgs) -> Result<Registry> {
    let search = args.search_path();
    let registry = Registry::load(&search);
    registry.check_explicit(&search)?;
    Ok(registry)
}

/// `niftyhost train` (of one fold with `--fold`). Every process of a multi-process job
/// returns its report; rank 0's is the one to print.
///
/// # Errors
/// A bad configuration, plugins that cannot be loaded, a failing training.
pub fn train(args: &TrainArgs) -> Result<TrainReport> {
    let s = settings(&args.job)?;
    s.require_images("training")?;
    let reg = registry(&args.job.plugins)?;
    trainer::train(&s, &reg, here()).context("training failed")
}

/// `niftyhost train --all-folds`: every fold in turn.
///
/// # Errors
/// A bad configuration (`training.k_folds` below 2), plugins that cannot be loaded, the
/// first failing fold.
pub fn train_all_folds(args: &TrainArgs) -> Result<FoldsReport> {
    let s = settings(&args.job)?;
    s.require_images("training")?;
    let reg = registry(&args.job.plugins)?;
    folds::train_all(&s, &reg, here()).context("training the folds failed")
}

/// `niftyhost inference`: with a config (its INFER subjects, or `--image`), or with
/// bundles (`--model`, with `--image`). Call [`crate::memory::one_malloc_arena`] first
/// to run with the binary's memory behaviour.
///
/// # Errors
/// Arguments that do not go together, a bad configuration or bundle, plugins that cannot
/// be loaded, a failing inference.
pub fn inference(args: &InferenceArgs) -> Result<InferenceReport> {
    if args.images.is_empty() != args.out.is_none() {
        return Err(ConfigError::Invalid("`--image` and `--out` go together".into()).into());
    }
    let files = args.out.clone().map(|out| ImageFiles { images: args.images.clone(), out });
    let overrides = args.overrides()?;
    let job = if args.models.is_empty() {
        let mut s = load(&args.job, &overrides)?;
        s.require_images("inference")?;
        if let Some(chosen) = chosen_folds(&s, &args.folds)? {
            s = folds::with_fold_checkpoints(folds::with_ensemble_outputs(s, &chosen), &chosen)?;
        }
        let reg = registry(&args.job.plugins)?;
        InferenceJob::from_config(s, reg, here(), files)?
    } else {
        if args.folds.folds.is_some() {
            return Err(ConfigError::Invalid("`--folds` ensembles a config's folds: export them with `export --folds` and give the bundle to `--model`".into()).into());
        }
        if args.job.config.is_some() {
            return Err(ConfigError::Invalid(
                "`--model` carries its own config: change it with `--set`, not `-c`".into(),
            )
            .into());
        }
        let Some(files) = files else {
            return Err(ConfigError::Invalid("`--model` segments `--image` files into `--out`".into()).into());
        };
        let bundles = args.models.iter().map(|m| bundle::open(m)).collect::<Result<Vec<_>, _>>()?;
        InferenceJob::from_bundles(bundles, &overrides, files)?
    };
    job.run().context("inference failed")
}

/// `niftyhost export`.
///
/// # Errors
/// A bad configuration, plugins that cannot be loaded, a failing export.
pub fn export(args: &ExportArgs) -> Result<Exported> {
    let mut s = settings(&args.job)?;
    s.require_images("export")?;
    if let Some(chosen) = chosen_folds(&s, &args.folds)? {
        s = folds::with_fold_checkpoints(s, &chosen)?;
    }
    let reg = registry(&args.job.plugins)?;
    bundle::export(&s, &reg, &args.out).context("export failed")
}

/// The benchmark options of `bench`'s arguments, with a scratch folder of this process
/// in the temporary folder.
fn bench_options(args: &BenchArgs) -> BenchOptions {
    BenchOptions {
        data_dir: args.data_dir.clone(),
        window: args.window,
        batch_size: args.batch_size,
        threads: args.threads,
        batches: args.batches,
        train_iterations: args.train_iterations,
        scratch: std::env::temp_dir().join(format!("niftyhost-bench-{}", std::process::id())),
        augment: args.augment,
        runs: args.runs,
    }
}

/// `niftyhost bench` without `--inference`: the data pipeline. The scratch folder is
/// removed afterwards.
///
/// # Errors
/// Missing data or plugins, or a failing measurement.
pub fn bench(args: &BenchArgs) -> Result<BenchReport> {
    let opts = bench_options(args);
    let reg = registry(&args.plugins)?;
    let report = bench::run(&opts, &reg);
    let _ = std::fs::remove_dir_all(&opts.scratch);
    report.context("benchmark failed")
}

/// `niftyhost bench --inference`: whole-volume inference, as `niftyhost inference` runs
/// it (call [`crate::memory::one_malloc_arena`] first). The scratch folder is removed
/// afterwards.
///
/// # Errors
/// Missing data or plugins, or a failing inference.
pub fn bench_inference(args: &BenchArgs) -> Result<bench::InferenceReport> {
    let opts = bench_options(args);
    let reg = registry(&args.plugins)?;
    let report = bench::run_inference(&opts, &reg);
    let _ = std::fs::remove_dir_all(&opts.scratch);
    report.context("inference benchmark failed")
}

/// What `niftyhost config` shows.
#[derive(Debug)]
pub struct ConfigReport {
    /// The merged configuration.
    pub settings: Settings,
    /// Every host key with its default, and the parameters of every plugin found.
    pub parameters: String,
}

/// `niftyhost config`. Plugins that cannot be loaded are listed, not an error.
///
/// # Errors
/// A bad configuration.
pub fn config(args: &JobArgs) -> Result<ConfigReport> {
    let settings = settings(args)?;
    let reg = Registry::load(&args.plugins.search_path());
    Ok(ConfigReport { settings, parameters: help::parameters(&reg, help::terminal_width()) })
}
