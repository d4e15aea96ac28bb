//! Evaluation: segmentations against reference labels, per subject and label, as CSV.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::EngineError;
use crate::config::Settings;
use crate::data::phases::held_out_subjects;
use crate::io::read_volume;
use crate::metrics::confusion;

/// One row of the metrics CSV.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// Subject id.
    pub subject: String,
    /// Label value.
    pub label: u32,
    /// Dice (NaN when the label is absent from both).
    pub dice: f64,
    /// Jaccard.
    pub jaccard: f64,
    /// True positives (voxels).
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    /// True negatives.
    pub tn: u64,
    /// Reference voxels of the label.
    pub ref_voxels: u64,
    /// Segmentation voxels of the label.
    pub seg_voxels: u64,
}

/// What an evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Every row.
    pub rows: Vec<MetricRow>,
    /// Mean Dice per label over subjects.
    pub mean_dice: Vec<(u32, f64)>,
    /// The CSV written.
    pub csv: PathBuf,
}

/// Evaluates `<seg_dir>/<id><postfix>.nii.gz` against each subject's label.
///
/// # Errors
/// A missing segmentation (named), unreadable files, or mismatched shapes.
pub fn evaluate(settings: &Settings, base_dir: &Path) -> Result<EvaluationReport, EngineError> {
    let seg_dir = if settings.evaluation.seg_dir.as_os_str().is_empty() {
        settings.inference_dir()
    } else {
        settings.evaluation.seg_dir.clone()
    };
    let subjects = held_out_subjects(settings, base_dir, true)?;
    let classes = settings.segmentation.num_classes as u32;
    let mut rows = Vec::new();
    for s in &subjects {
        let seg_path = seg_dir.join(format!("{}{}.nii.gz", s.id, settings.inference.output_postfix));
        if !seg_path.is_file() {
            return Err(EngineError::Other(format!(
                "no segmentation for subject `{}`: expected {} (run `niftyhost inference` first)",
                s.id,
                seg_path.display()
            )));
        }
        let seg = read_volume(&seg_path)?;
        let reference = read_volume(s.label.as_ref().expect("subjects found with labels"))?;
        if seg.dims != reference.dims {
            return Err(EngineError::Other(format!(
                "{} is {:?} but reference {} is {:?}",
                seg_path.display(),
                seg.dims,
                reference.path.display(),
                reference.dims
            )));
        }
        for m in confusion(&seg.data, &reference.data, classes) {
            rows.push(MetricRow {
                subject: s.id.clone(),
                label: m.label,
                dice: m.dice(),
                jaccard: m.jaccard(),
                tp: m.tp,
                fp: m.fp,
                fn_: m.fn_,
                tn: m.tn,
                ref_voxels: m.reference_voxels(),
                seg_voxels: m.segmentation_voxels(),
            });
        }
    }
    let mean_dice: Vec<(u32, f64)> = (0..classes)
        .map(|l| {
            let d: Vec<f64> = rows.iter().filter(|r| r.label == l && r.dice.is_finite()).map(|r| r.dice).collect();
            (l, if d.is_empty() { f64::NAN } else { d.iter().sum::<f64>() / d.len() as f64 })
        })
        .collect();
    let csv = settings.evaluation_csv();
    write_csv(&csv, &rows)?;
    Ok(EvaluationReport { rows, mean_dice, csv })
}

fn write_csv(path: &Path, rows: &[MetricRow]) -> Result<(), EngineError> {
    let mut text = String::from("subject,label,dice,jaccard,tp,fp,fn,tn,ref_voxels,seg_voxels\n");
    for r in rows {
        let _ = writeln!(
            text,
            "{},{},{:.6},{:.6},{},{},{},{},{},{}",
            r.subject, r.label, r.dice, r.jaccard, r.tp, r.fp, r.fn_, r.tn, r.ref_voxels, r.seg_voxels
        );
    }
    let fail = |e: std::io::Error| EngineError::Other(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}
