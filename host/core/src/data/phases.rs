//! Which subjects each job uses: training checks every subject, then trains on TRAIN
//! (VALID is kept for validation); inference and evaluation use the INFER subjects of
//! an existing split file, or every subject when there is none.

use std::path::Path;

use super::split::{Phase, Split, SplitSpec};
use super::{check_subjects, find_subjects, ChannelLayout, DataError, LoadOptions, Needs, Subject};
use crate::config::Settings;

/// The split parameters of `settings`.
pub fn split_spec(settings: &Settings) -> SplitSpec {
    let t = &settings.training;
    SplitSpec {
        seed: settings.system.seed,
        valid_fraction: t.exclude_fraction_for_validation,
        infer_fraction: t.exclude_fraction_for_inference,
        k_folds: t.k_folds,
        fold: t.fold,
    }
}

/// What `niftyhost check` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Subjects checked.
    pub subjects: usize,
    /// TRAIN subjects.
    pub train: usize,
    /// VALID subjects.
    pub valid: usize,
    /// The split file used (made if it was missing).
    pub split: std::path::PathBuf,
    /// The channels of each image section, as training builds the network with.
    pub channels: ChannelLayout,
}

impl std::fmt::Display for CheckReport {
    /// The subjects checked and the split file, as `niftyhost check` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} subjects: every file readable, images and labels agree (split: {})",
            self.subjects,
            self.split.display()
        )?;
        writeln!(f, "image channels: {}", self.channels)
    }
}

/// The check a training run starts with, on its own: every subject's files, then the
/// split.
///
/// # Errors
/// Every problem found (see [`training_subjects`]).
pub fn check(settings: &Settings, base_dir: &Path) -> Result<CheckReport, DataError> {
    let subjects = training_subjects(settings, base_dir)?;
    Ok(CheckReport {
        subjects: subjects.checked,
        train: subjects.train.len(),
        valid: subjects.valid.len(),
        split: settings.split_file(),
        channels: subjects.channels,
    })
}

/// The subjects of a training run.
#[derive(Debug, Clone)]
pub struct TrainingSubjects {
    /// Trained on.
    pub train: Vec<Subject>,
    /// Validated on.
    pub valid: Vec<Subject>,
    /// Subjects checked (all phases).
    pub checked: usize,
    /// The channels of each image section, the same for every subject.
    pub channels: ChannelLayout,
}

/// Subjects of a training run, after checking every subject's files (all problems are
/// reported at once, before any training).
///
/// # Errors
/// Problems in the data, a malformed split file, or no TRAIN subject.
pub fn training_subjects(settings: &Settings, base_dir: &Path) -> Result<TrainingSubjects, DataError> {
    let subjects = find_subjects(settings, base_dir, Needs::training(settings))?;
    let channels = check_subjects(&subjects, &LoadOptions::for_checking(settings))?;
    let ids: Vec<String> = subjects.iter().map(|s| s.id.clone()).collect();
    let path = settings.split_file();
    let split = Split::load_or_make(&path, &ids, &split_spec(settings))?;
    let of = |phase: Phase| -> Vec<Subject> {
        subjects.iter().filter(|s| split.phase(&s.id) == Some(phase)).cloned().collect()
    };
    let (train, valid) = (of(Phase::Train), of(Phase::Valid));
    if train.is_empty() {
        return Err(DataError::Split { path, message: "marks no subject TRAIN".into() });
    }
    Ok(TrainingSubjects { train, valid, checked: subjects.len(), channels })
}

/// A subject that inference segments or evaluation scores, with its phase in the split
/// file (`None`: there is no split file, or the subject is not in it).
#[derive(Debug, Clone)]
pub struct HeldOutSubject {
    /// The subject.
    pub subject: Subject,
    /// Its phase in the split.
    pub phase: Option<Phase>,
}

/// The subjects to segment (images only) or evaluate (with labels): the INFER subjects
/// of the split file, and the subjects it does not hold (new data). When the split file
/// is missing, or every subject is TRAIN or VALID, every subject, with a warning that
/// names the phases fallen back to: figures measured on them are not held-out figures.
///
/// # Errors
/// Missing files, or a malformed split file.
pub fn held_out_subjects(
    settings: &Settings,
    base_dir: &Path,
    with_labels: bool,
) -> Result<Vec<HeldOutSubject>, DataError> {
    let job = if with_labels { "evaluation" } else { "inference" };
    // Inference also segments the unlabelled subjects of `inference_path_to_search`.
    let needs = Needs { labels: with_labels, inference_folders: !with_labels, ..Needs::default() };
    let subjects = find_subjects(settings, base_dir, needs)?;
    let path = settings.split_file();
    let Some(split) = existing_split(settings)? else {
        tracing::warn!(
            "{job}: no split file {}: using all {} subjects, none known to be held out (train first, or write the split file)",
            path.display(),
            subjects.len()
        );
        return Ok(subjects.into_iter().map(|subject| HeldOutSubject { subject, phase: None }).collect());
    };
    let phased: Vec<HeldOutSubject> =
        subjects.into_iter().map(|subject| HeldOutSubject { phase: split.phase(&subject.id), subject }).collect();
    // Subjects the split does not hold were never trained or validated on: new data,
    // held out as the INFER ones are.
    let held_out = |s: &HeldOutSubject| matches!(s.phase, Some(Phase::Infer) | None);
    if phased.iter().any(held_out) {
        return Ok(phased.into_iter().filter(held_out).collect());
    }
    tracing::warn!(
        "{job}: split file {} marks no subject INFER: falling back to {}; these subjects are not held out",
        path.display(),
        phase_counts(phased.iter().map(|s| s.phase))
    );
    Ok(phased)
}

/// The split file of `settings`, if there is one (it is never made here).
///
/// # Errors
/// A malformed split file.
pub fn existing_split(settings: &Settings) -> Result<Option<Split>, DataError> {
    let path = settings.split_file();
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Split::read(&path, &split_spec(settings))?))
}

/// How many subjects each phase has, as `2 TRAIN, 1 VALID, 1 not in the split`.
pub fn phase_counts(phases: impl Iterator<Item = Option<Phase>>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for p in phases {
        *counts.entry(p).or_insert(0usize) += 1;
    }
    let name = |p: &Option<Phase>| p.map_or("not in the split", Phase::as_str);
    counts.iter().map(|(p, n)| format!("{n} {}", name(p))).collect::<Vec<_>>().join(", ")
}
