//! k-fold cross-validation as the jobs see it: which folds a `--folds` argument names,
//! training every fold of `training.k_folds` in turn (each into its own
//! `<model_dir>/fold_<k>`, resuming a fold that has checkpoints and skipping a complete
//! one), and an ensemble of folds: each fold's checkpoint averaged as
//! `inference.checkpoints` are, its outputs under `<model_dir>/folds_<i>_<j>…`.
//!
//! The split file and the learned preprocessing stay in `<model_dir>`, shared by every
//! fold (see [`Settings::run_dir`]), so the folds' models take the same inputs.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use niftyhost_core::folds::{ensemble_dir, for_fold, require_folds, with_ensemble_outputs, FoldSelection};

use super::checkpoint;
use super::inference::checkpoints_for_inference;
use super::trainer::{self, TrainReport};
use super::EngineError;
use crate::config::{ConfigError, Settings};
use crate::plugins::Registry;

/// `settings` whose `inference.checkpoints` are one checkpoint per fold of `folds`: the
/// one `inference.inference_iter` picks in the fold's folder (`-1`, the default: its
/// latest), so that inference and export ensemble them.
///
/// # Errors
/// `inference.checkpoints` already set, a fold with no checkpoint (naming its folder), or
/// a fold without the checkpoint of `inference.inference_iter`.
pub fn with_fold_checkpoints(mut settings: Settings, folds: &[usize]) -> Result<Settings, EngineError> {
    if !settings.inference.checkpoints.is_empty() {
        return Err(ConfigError::Invalid(
            "`--folds` takes each fold's checkpoint: leave `inference.checkpoints` empty".into(),
        )
        .into());
    }
    let mut chosen = Vec::with_capacity(folds.len());
    for &k in folds {
        let fold = for_fold(&settings, k);
        let found = checkpoint::list(&fold.checkpoint_dir());
        let Some(&(latest, _)) = found.last() else {
            return Err(EngineError::Other(format!(
                "fold {k} is not trained: {} holds no checkpoint (`niftyhost train --fold {k}` or `--all-folds` trains it)",
                fold.run_dir().display()
            )));
        };
        if latest < fold.training.max_iter {
            tracing::warn!(
                fold = k,
                latest,
                max_iter = fold.training.max_iter,
                "the fold's latest checkpoint is before `training.max_iter`: still training, interrupted or stopped early?"
            );
        }
        chosen.extend(checkpoints_for_inference(&fold)?);
    }
    settings.inference.checkpoints = chosen;
    Ok(settings)
}

/// What became of a fold in [`train_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoldStatus {
    /// Trained (from scratch, or resumed from its latest checkpoint).
    Trained,
    /// Skipped: its checkpoint at `training.max_iter` was there.
    Complete,
}

/// One fold of [`train_all`].
#[derive(Debug, Clone, Serialize)]
pub struct FoldRecord {
    /// The fold.
    pub fold: usize,
    /// Its folder, `<model_dir>/fold_<k>`.
    pub dir: PathBuf,
    /// Trained now, or complete already.
    pub status: FoldStatus,
    /// Its final checkpoint.
    pub checkpoint: PathBuf,
    /// The training's report (none for a fold that was complete).
    pub training: Option<TrainReport>,
}

/// What `niftyhost train --all-folds` did: one record per fold, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct FoldsReport {
    /// The folds.
    pub folds: Vec<FoldRecord>,
}

impl fmt::Display for FoldsReport {
    /// A line per fold, then the training report of each fold trained now.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.folds {
            match (&r.status, &r.training) {
                (FoldStatus::Trained, Some(t)) => write!(f, "fold {}: {t}", r.fold)?,
                _ => writeln!(f, "fold {}: complete already, skipped ({})", r.fold, r.checkpoint.display())?,
            }
        }
        Ok(())
    }
}

/// Trains every fold `0..training.k_folds` in turn, each into `<model_dir>/fold_<k>`
/// with its own lock and logs: a fold whose checkpoint at `training.max_iter` exists is
/// skipped, one with checkpoints resumes from its latest, the others start afresh (or
/// from `training.restore_from`). One process only: a job of several processes trains
/// one fold per job (`--fold k`).
///
/// # Errors
/// `training.k_folds` below 2, several processes, or the first fold whose training fails
/// (the folds before it are kept).
pub fn train_all(
    settings: &Settings,
    registry: &Registry,
    base_dir: &std::path::Path,
) -> Result<FoldsReport, EngineError> {
    require_folds(settings, "--all-folds")?;
    let world = crate::distributed::launch::from_env().map_err(crate::distributed::CommError::from)?;
    if world.size > 1 {
        return Err(ConfigError::Invalid(format!(
            "`--all-folds` trains the folds one after another in one process, but {} started {} processes: run one `train --fold k` job per fold",
            world.launcher, world.size
        ))
        .into());
    }
    let k = settings.training.k_folds;
    let mut folds = Vec::with_capacity(k);
    for fold in 0..k {
        let mut s = for_fold(settings, fold);
        let _span = tracing::info_span!("fold", fold).entered();
        let dir = s.run_dir();
        let found = checkpoint::list(&s.checkpoint_dir());
        if let Some((_, last)) = found.iter().find(|(i, _)| *i == s.training.max_iter) {
            tracing::info!(dir = %dir.display(), "fold {fold} of {k} is complete (checkpoint at max_iter {}): skipped", s.training.max_iter);
            folds.push(FoldRecord {
                fold,
                dir,
                status: FoldStatus::Complete,
                checkpoint: last.clone(),
                training: None,
            });
            continue;
        }
        s.training.starting_iter = if found.is_empty() { 0 } else { -1 };
        tracing::info!(dir = %dir.display(), resume = !found.is_empty(), "fold {fold} of {k}: training");
        let report = trainer::train(&s, registry, base_dir).inspect_err(|e| {
            tracing::error!("fold {fold} of {k} failed: {e}");
        })?;
        folds.push(FoldRecord {
            fold,
            dir,
            status: FoldStatus::Trained,
            checkpoint: report.checkpoint.clone(),
            training: Some(report),
        });
    }
    Ok(FoldsReport { folds })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Default settings with `k_folds` folds in the temporary `model_dir`.
    fn settings(k_folds: usize, model_dir: &std::path::Path) -> Settings {
        let set = |key: &str| (format!("--set {key}"), key.to_owned(), "\"d\"".to_owned());
        let sections = vec![set("input.image.path_to_search"), set("input.label.path_to_search")];
        let mut s = crate::config::load(None, &crate::config::Overrides { cli: sections, env: Vec::new() }).unwrap();
        s.training.k_folds = k_folds;
        s.system.model_dir = model_dir.to_owned();
        s
    }

    #[test]
    fn an_ensemble_of_folds_names_the_folder_of_a_fold_not_trained() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(2, dir.path());
        let err = with_fold_checkpoints(s, &[0, 1]).unwrap_err().to_string();
        assert!(err.contains("fold 0 is not trained") && err.contains("fold_0"), "{err}");
    }
}
