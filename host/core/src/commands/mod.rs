//! The commands that need no network as library calls: `evaluation`, `check` and `info`,
//! and the configuration of a job's arguments that every command loads. Each takes its
//! parsed arguments ([`crate::cli`]) and returns the job's report; [`crate::front`]
//! prints it. The engine's `niftyhost::commands` re-exports these beside its own.
//!
//! Relative paths of a configuration are read from the current directory, as the binary
//! is run.

pub mod info;

use std::path::Path;

use anyhow::{Context, Result};

pub use self::info::{info, InfoReport};
use crate::cli::{EvaluationArgs, FoldsArgs, JobArgs};
use crate::config::{self, ConfigError, Overrides, Settings};
use crate::data::phases::{self, CheckReport};
use crate::evaluation::{self, EvaluationReport};
use crate::folds;

/// The folder a configuration's relative paths are read from.
pub fn here() -> &'static Path {
    Path::new(".")
}

/// The configuration of a job's arguments: file, environment and flags.
///
/// # Errors
/// A bad `--set`, or a configuration that does not load.
pub fn settings(args: &JobArgs) -> Result<Settings, ConfigError> {
    load(args, &args.overrides()?)
}

/// The configuration of a job's config file under `overrides`.
///
/// # Errors
/// A configuration that does not load, or `--fold` without k-fold cross-validation.
pub fn load(args: &JobArgs, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let s = config::load(args.config.as_deref(), overrides)?;
    if args.fold.is_some() {
        folds::require_folds(&s, "--fold")?;
    }
    Ok(s)
}

/// The folds `--folds` names in `s`, if it is given.
///
/// # Errors
/// As [`folds::FoldSelection::resolve`].
pub fn chosen_folds(s: &Settings, args: &FoldsArgs) -> Result<Option<Vec<usize>>, ConfigError> {
    args.folds.as_ref().map(|f| f.resolve(s)).transpose()
}

/// `niftyhost evaluation`.
///
/// # Errors
/// A bad configuration, a failing evaluation.
pub fn evaluation(args: &EvaluationArgs) -> Result<EvaluationReport> {
    let mut s = load(&args.job, &args.overrides()?)?;
    if let Some(chosen) = chosen_folds(&s, &args.folds)? {
        s = folds::with_ensemble_outputs(s, &chosen);
    }
    evaluation::evaluate(&s, here()).context("evaluation failed")
}

/// `niftyhost check`.
///
/// # Errors
/// A bad configuration, or every problem with the data found.
pub fn check(args: &JobArgs) -> Result<CheckReport> {
    let s = settings(args)?;
    s.require_images("check")?;
    Ok(phases::check(&s, here())?)
}
