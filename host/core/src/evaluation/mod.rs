//! Evaluation: segmentations against reference labels, per subject, label and unit, as
//! CSV, with a summary over subjects.
//!
//! Outputs (beside `evaluation.output_csv`, default `<model_dir>/evaluation/metrics.csv`):
//! - `metrics.csv`: one row per subject × label × unit with every metric as a column
//!   (see [`column_names`]); the first ten columns are the historical
//!   `subject,label,dice,jaccard,tp,fp,fn,tn,ref_voxels,seg_voxels`, then `unit`. A
//!   label/foreground row leaves the component columns empty; a `cc` row leaves the voxel
//!   overlap and distance columns empty. Undefined values are `NaN`, infinite distances
//!   `inf` (see [`crate::metrics`] for the definitions and the empty cases). The last
//!   column, `phase`, is the subject's phase in the split (`INFER`, or `TRAIN` / `VALID`
//!   when the split has no INFER subject and evaluation fell back to them; any phase for
//!   `evaluation.seg_section`, which scores every subject it pairs; empty for folders and
//!   without a split file).
//! - `metrics_summary.csv`: per unit, label and metric over subjects: the number of
//!   finite values, their mean, population standard deviation, median, min and max, and
//!   how many values were NaN or infinite (those are left out of the statistics). Also
//!   printed on stderr.
//! - `metrics_components.csv` (with the `cc` unit only): every reference and segmentation
//!   component: size, centroid, overlap, whether it was detected (reference) or matched
//!   (segmentation), its Dice (reference) and the components it overlaps.
//!
//! Configuration (`[evaluation]`): `evaluation_units` (`label`, `foreground`, `cc`),
//! `include_background` (label 0 in the label unit), `surface_tolerance_mm` (τ of the
//! normalised surface Dice), `connectivity` (6, 18 or 26) and `component_min_overlap`.
//! Labels are `0..segmentation.num_classes` (0 only with `include_background`), or, with
//! `segmentation.label_normalisation`, the label values of the saved label map (the
//! values segmentations are written with); the voxel size is the reference's `pixdim`.

mod error;
pub mod pairs;
mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{ConfigError, Settings};
use crate::data::split::Phase;
use crate::io::{read_volume, Volume};
use crate::metrics::{evaluate_labels, BinaryMetrics, ComponentSummary, Connectivity, EvalOptions, Unit, UnitResult};
use crate::preprocess::{LabelMap, SavedModel};
pub use error::EvaluationError;
use pairs::Pair;
pub use report::{column_names, SummaryRow};
use report::{components_csv_text, metrics_csv, summarise, summary_csv_text, summary_table, write_file};

/// One row of the metrics CSV: one subject, label (or `foreground`) and unit.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// Subject id.
    pub subject: String,
    /// Label value, or `foreground`.
    pub label: String,
    /// `label`, `foreground` or `cc`.
    pub unit: Unit,
    /// Reference voxels of the label.
    pub ref_voxels: u64,
    /// Segmentation voxels of the label.
    pub seg_voxels: u64,
    /// Every voxel and surface metric (label and foreground units).
    pub metrics: Option<BinaryMetrics>,
    /// Components and their matching (cc unit).
    pub components: Option<ComponentSummary>,
    /// The subject's phase in the split (`None` for folders, or without a split).
    pub phase: Option<Phase>,
}

impl MetricRow {
    /// The row of one subject's unit result.
    pub(crate) fn from_unit(subject: String, phase: Option<Phase>, u: UnitResult) -> MetricRow {
        MetricRow {
            subject,
            phase,
            label: u.target.to_string(),
            unit: u.unit,
            ref_voxels: u.ref_voxels,
            seg_voxels: u.seg_voxels,
            metrics: u.metrics,
            components: u.components,
        }
    }
}

/// What an evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Every row.
    pub rows: Vec<MetricRow>,
    /// Mean Dice per label (label unit) over subjects where it is defined.
    pub mean_dice: Vec<(u32, f64)>,
    /// Statistics over subjects per unit, label and metric.
    pub summary: Vec<SummaryRow>,
    /// The metrics CSV written.
    pub csv: PathBuf,
    /// The summary CSV written.
    pub summary_csv: PathBuf,
    /// The per-component CSV written (cc unit).
    pub components_csv: Option<PathBuf>,
    /// The subjects scored per phase of the split, as `2 INFER` (`1 not in the split`
    /// for subjects without a phase).
    pub phases: String,
}

impl std::fmt::Display for EvaluationReport {
    /// Each label's mean Dice and the metrics CSV, as `niftyhost evaluation` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (label, dice) in &self.mean_dice {
            writeln!(f, "label {label}: mean Dice {dice:.4}")?;
        }
        writeln!(f, "subjects: {}", self.phases)?;
        writeln!(f, "metrics: {}", self.csv.display())
    }
}

/// The metric options of `[evaluation]`.
///
/// # Errors
/// An unknown unit, a connectivity other than 6, 18 or 26, a negative or non-finite
/// tolerance, an overlap fraction outside `[0, 1)`.
pub fn options(settings: &Settings) -> Result<EvalOptions, ConfigError> {
    let e = &settings.evaluation;
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let mut units = Vec::new();
    for name in &e.evaluation_units {
        match Unit::parse(name) {
            Some(u) if !units.contains(&u) => units.push(u),
            Some(_) => {}
            None => {
                return invalid(format!(
                    "`evaluation.evaluation_units` must list label, foreground or cc, got \"{name}\""
                ))
            }
        }
    }
    if units.is_empty() {
        return invalid("`evaluation.evaluation_units` lists no unit (label, foreground, cc)".into());
    }
    let Some(connectivity) = Connectivity::from_neighbours(e.connectivity) else {
        return invalid(format!("`evaluation.connectivity` must be 6, 18 or 26, got {}", e.connectivity));
    };
    if !(e.surface_tolerance_mm.is_finite() && e.surface_tolerance_mm >= 0.0) {
        return invalid(format!("`evaluation.surface_tolerance_mm` must be >= 0, got {}", e.surface_tolerance_mm));
    }
    if !(0.0..1.0).contains(&e.component_min_overlap) {
        return invalid(format!(
            "`evaluation.component_min_overlap` must be in [0, 1), got {}",
            e.component_min_overlap
        ));
    }
    Ok(EvalOptions {
        labels: Vec::new(),
        units,
        tolerance_mm: e.surface_tolerance_mm,
        connectivity,
        min_overlap: e.component_min_overlap,
    })
}

/// The voxel size to measure with: `pixdim` as stored, a zero, negative or non-finite
/// size counting as 1 mm (as the affine fall-back does) and a negative one by magnitude.
fn spacing_of(pixdim: [f64; 3]) -> [f64; 3] {
    pixdim.map(|p| if p.is_finite() && p != 0.0 { p.abs() } else { 1.0 })
}

/// A label volume read for scoring, checked to hold one value per voxel.
fn read_labels(path: &Path) -> Result<Volume, EvaluationError> {
    let v = read_volume(path)?;
    if v.channels != 1 {
        return Err(EvaluationError::Other(format!(
            "{}: a label volume has one value per voxel, this one has {} (4D)",
            path.display(),
            v.channels
        )));
    }
    Ok(v)
}

/// The non-negative integer values of `data` (background included).
fn values_of(data: &[f32], into: &mut BTreeSet<u32>) {
    let mut last = f32::NAN;
    for &v in data {
        // Label maps come in runs of one value: skip the repeats cheaply.
        if v != last {
            last = v;
            if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f32 {
                into.insert(v as u32);
            }
        }
    }
}

/// The segmentation and the reference of a pair, read side by side.
///
/// # Errors
/// As [`read_labels`]; the segmentation's error first when both fail.
fn read_pair(pair: &Pair) -> Result<(Volume, Volume), EvaluationError> {
    let (seg, reference) = rayon::join(|| read_labels(&pair.segmentation), || read_labels(&pair.reference));
    Ok((seg?, reference?))
}

/// Scores one pair, given as its `(segmentation, reference)` volumes, with `options`.
fn score(
    pair: &Pair,
    (seg, reference): (Volume, Volume),
    options: &EvalOptions,
) -> Result<Vec<MetricRow>, EvaluationError> {
    if seg.dims != reference.dims {
        return Err(EvaluationError::Other(format!(
            "{} is {:?} but reference {} is {:?}",
            pair.segmentation.display(),
            seg.dims,
            pair.reference.display(),
            reference.dims
        )));
    }
    let spacing = spacing_of(reference.pixdim);
    let seg_spacing = spacing_of(seg.pixdim);
    if (0..3).any(|a| (seg_spacing[a] - spacing[a]).abs() > 1e-4 * spacing[a]) {
        tracing::warn!(
            "{}: voxel size {:?} differs from the reference's {:?}; measuring with the reference's",
            pair.segmentation.display(),
            seg_spacing,
            spacing
        );
    }
    Ok(evaluate_labels(&seg.data, &reference.data, seg.dims, spacing, options)
        .into_iter()
        .map(|u| MetricRow::from_unit(pair.id.clone(), pair.phase, u))
        .collect())
}

/// The labels to score: `evaluation.labels` when given; else the saved label map's
/// values with label normalisation; else, for folders, every value found in the
/// references and segmentations; else `0..segmentation.num_classes`. Label 0 only with
/// `evaluation.include_background`. Reading the folders' volumes, it keeps the first
/// pair's in `first_pair` for scoring (it is scored first, so no volume is held longer).
fn labels(
    settings: &Settings,
    pairs: &[Pair],
    from_folders: bool,
    first_pair: &mut Option<(Volume, Volume)>,
) -> Result<Vec<u32>, EvaluationError> {
    let e = &settings.evaluation;
    let keep = |v: &u32| *v != 0 || e.include_background;
    if !e.labels.is_empty() {
        return Ok(e.labels.iter().copied().filter(keep).collect());
    }
    if settings.segmentation.label_normalisation {
        // Segmentations carry the original label values again: score those.
        let path = settings.label_map_file();
        let map = LabelMap::load(&path).map_err(|e| {
            EvaluationError::Other(format!("label normalisation is on but its map {} is unusable: {e}", path.display()))
        })?;
        let (labels, negative): (Vec<i64>, Vec<i64>) = map.values.iter().partition(|&&v| v >= 0);
        if !negative.is_empty() {
            tracing::warn!("label values {negative:?} are negative: the label unit leaves them out");
        }
        return Ok(labels.into_iter().filter_map(|v| u32::try_from(v).ok()).filter(keep).collect());
    }
    if from_folders {
        let mut found = BTreeSet::new();
        // Last to first: the volumes kept at the end are the first pair's.
        for p in pairs.iter().rev() {
            let volumes = read_pair(p)?;
            values_of(&volumes.0.data, &mut found);
            values_of(&volumes.1.data, &mut found);
            *first_pair = Some(volumes);
        }
        tracing::info!(labels = ?found, "labels found in the references and segmentations");
        return Ok(found.into_iter().filter(keep).collect());
    }
    Ok((0..settings.segmentation.num_classes as u32).filter(keep).collect())
}

/// Evaluates segmentations against references and writes the three CSVs; prints the
/// summary on stderr. With `evaluation.ref_dir` set, every reference file there is
/// paired by name with `<seg_dir>/<id><postfix>.nii[.gz]` (see [`pairs::from_folders`]);
/// with `evaluation.seg_section` set, every subject with a file in that input section and
/// in the label section (see [`pairs::from_section`]); otherwise each held-out subject of
/// the dataset with `<seg_dir>/<id><postfix>.nii.gz`.
///
/// # Errors
/// Invalid `[evaluation]` options, a missing segmentation (named), unreadable files,
/// mismatched shapes, a 4D segmentation or reference.
pub fn evaluate(settings: &Settings, base_dir: &Path) -> Result<EvaluationReport, EvaluationError> {
    let mut options = options(settings)?;
    let e = &settings.evaluation;
    let seg_dir = if e.seg_dir.as_os_str().is_empty() { settings.inference_dir() } else { e.seg_dir.clone() };
    let from_folders = !e.ref_dir.as_os_str().is_empty();
    let pairs = if from_folders {
        pairs::from_folders(&seg_dir, &e.ref_dir, &settings.inference.output_postfix)?
    } else if !e.seg_section.is_empty() {
        pairs::from_section(settings, base_dir)?
    } else {
        pairs::from_dataset(settings, base_dir, &seg_dir)?
    };
    let mut first_pair = None;
    options.labels = labels(settings, &pairs, from_folders, &mut first_pair)?;
    let mut rows = Vec::new();
    for pair in &pairs {
        let volumes = match first_pair.take() {
            Some(volumes) => volumes,
            None => read_pair(pair)?,
        };
        rows.extend(score(pair, volumes, &options)?);
    }
    let summary = summarise(&rows);
    // The summary's mean is over the subjects where Dice is defined.
    let mean_dice: Vec<(u32, f64)> = options
        .labels
        .iter()
        .filter(|_| options.units.contains(&Unit::Label))
        .map(|&l| {
            let name = l.to_string();
            let found = summary.iter().find(|s| s.unit == Unit::Label && s.label == name && s.metric == "dice");
            (l, found.map_or(f64::NAN, |s| s.mean))
        })
        .collect();
    let phases = crate::data::phases::phase_counts(pairs.iter().map(|p| p.phase));
    eprint!("{}", summary_table(&summary));
    eprintln!("subjects scored: {phases}");

    let csv = settings.evaluation_csv();
    let beside = |suffix: &str| {
        let stem = csv.file_stem().map_or_else(|| "metrics".into(), |s| s.to_string_lossy().into_owned());
        csv.with_file_name(format!("{stem}_{suffix}.csv"))
    };
    let summary_csv = beside("summary");
    write_file(&csv, &metrics_csv(&rows))?;
    write_file(&summary_csv, &summary_csv_text(&summary))?;
    let components_path = beside("components");
    let components_csv = if options.units.contains(&Unit::Cc) {
        write_file(&components_path, &components_csv_text(&rows))?;
        Some(components_path)
    } else {
        // Not left over from an earlier run with the cc unit, as if it were this one's.
        let _ = std::fs::remove_file(&components_path);
        None
    };
    Ok(EvaluationReport { rows, mean_dice, summary, csv, summary_csv, components_csv, phases })
}
