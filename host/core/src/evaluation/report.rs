//! The evaluation's outputs: the metrics CSV (one row per subject × label × unit),
//! the summary over subjects (CSV and a table for the terminal) and the per-component CSV.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::EvaluationError;
use super::MetricRow;
use crate::metrics::{BinaryMetrics, ComponentSummary, Unit};

/// A CSV cell.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Count(u64),
    Real(f64),
    Empty,
}

impl Cell {
    fn value(self) -> Option<f64> {
        match self {
            Cell::Count(c) => Some(c as f64),
            Cell::Real(v) => Some(v),
            Cell::Empty => None,
        }
    }
}

type Column = (&'static str, fn(&MetricRow) -> Cell);

fn m(r: &MetricRow, f: impl Fn(&BinaryMetrics) -> Cell) -> Cell {
    r.metrics.as_ref().map_or(Cell::Empty, f)
}

fn c(r: &MetricRow, f: impl Fn(&ComponentSummary) -> Cell) -> Cell {
    r.components.as_ref().map_or(Cell::Empty, f)
}

/// Every numeric column of the metrics CSV after `subject,label` with how to read it
/// from a row, in order (`unit` comes after `seg_voxels`).
const COLUMNS: &[Column] = &[
    ("dice", |r| m(r, |b| Cell::Real(b.dice))),
    ("jaccard", |r| m(r, |b| Cell::Real(b.jaccard))),
    ("tp", |r| m(r, |b| Cell::Count(b.tp))),
    ("fp", |r| m(r, |b| Cell::Count(b.fp))),
    ("fn", |r| m(r, |b| Cell::Count(b.fn_))),
    ("tn", |r| m(r, |b| Cell::Count(b.tn))),
    ("ref_voxels", |r| Cell::Count(r.ref_voxels)),
    ("seg_voxels", |r| Cell::Count(r.seg_voxels)),
    ("ref_neg_voxels", |r| m(r, |b| Cell::Count(b.ref_neg))),
    ("seg_neg_voxels", |r| m(r, |b| Cell::Count(b.seg_neg))),
    ("sensitivity", |r| m(r, |b| Cell::Real(b.sensitivity))),
    ("specificity", |r| m(r, |b| Cell::Real(b.specificity))),
    ("accuracy", |r| m(r, |b| Cell::Real(b.accuracy))),
    ("false_positive_rate", |r| m(r, |b| Cell::Real(b.false_positive_rate))),
    ("ppv", |r| m(r, |b| Cell::Real(b.ppv))),
    ("npv", |r| m(r, |b| Cell::Real(b.npv))),
    ("informedness", |r| m(r, |b| Cell::Real(b.informedness))),
    ("markedness", |r| m(r, |b| Cell::Real(b.markedness))),
    ("ref_volume_mm3", |r| m(r, |b| Cell::Real(b.ref_volume_mm3))),
    ("seg_volume_mm3", |r| m(r, |b| Cell::Real(b.seg_volume_mm3))),
    ("volume_difference_mm3", |r| m(r, |b| Cell::Real(b.volume_difference_mm3))),
    ("relative_volume_difference", |r| m(r, |b| Cell::Real(b.relative_volume_difference))),
    ("hausdorff_mm", |r| m(r, |b| Cell::Real(b.hausdorff_mm))),
    ("hausdorff95_mm", |r| m(r, |b| Cell::Real(b.hausdorff95_mm))),
    ("assd_mm", |r| m(r, |b| Cell::Real(b.assd_mm))),
    ("mean_seg_to_ref_mm", |r| m(r, |b| Cell::Real(b.mean_seg_to_ref_mm))),
    ("mean_ref_to_seg_mm", |r| m(r, |b| Cell::Real(b.mean_ref_to_seg_mm))),
    ("surface_dice", |r| m(r, |b| Cell::Real(b.surface_dice))),
    ("surface_tolerance_mm", |r| m(r, |b| Cell::Real(b.surface_tolerance_mm))),
    ("ref_surface_voxels", |r| m(r, |b| Cell::Count(b.ref_surface_voxels))),
    ("seg_surface_voxels", |r| m(r, |b| Cell::Count(b.seg_surface_voxels))),
    ("ref_components", |r| c(r, |s| Cell::Count(s.ref_components() as u64))),
    ("seg_components", |r| c(r, |s| Cell::Count(s.seg_components() as u64))),
    ("detected_components", |r| c(r, |s| Cell::Count(s.detected() as u64))),
    ("missed_components", |r| c(r, |s| Cell::Count(s.missed() as u64))),
    ("spurious_components", |r| c(r, |s| Cell::Count(s.spurious() as u64))),
    ("detection_precision", |r| c(r, |s| Cell::Real(s.precision()))),
    ("detection_recall", |r| c(r, |s| Cell::Real(s.recall()))),
    ("detection_f1", |r| c(r, |s| Cell::Real(s.f1()))),
    ("component_dice_mean", |r| c(r, |s| Cell::Real(s.mean_dice()))),
];

/// The header of the metrics CSV.
pub fn column_names() -> Vec<&'static str> {
    let mut names = vec!["subject", "label"];
    for (n, (name, _)) in COLUMNS.iter().enumerate() {
        names.push(name);
        if n == 7 {
            names.push("unit");
        }
    }
    names.push("phase");
    names
}

/// Statistics of one metric of one unit and label over subjects.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    /// The unit.
    pub unit: Unit,
    /// Label value, or `foreground`.
    pub label: String,
    /// The metric (a column of the metrics CSV).
    pub metric: &'static str,
    /// Finite values (the statistics are over these).
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Subjects where the metric is undefined (NaN).
    pub nan: usize,
    /// Subjects where it is infinite.
    pub inf: usize,
}

fn format_real(v: f64) -> String {
    format!("{v:.6}")
}

fn format_cell(c: Cell) -> String {
    match c {
        Cell::Count(n) => n.to_string(),
        Cell::Real(v) => format_real(v),
        Cell::Empty => String::new(),
    }
}

/// The metrics CSV: `subject,label,dice,…,seg_voxels,unit,…,phase`.
pub(super) fn metrics_csv(rows: &[MetricRow]) -> String {
    let mut text = column_names().join(",");
    text.push('\n');
    for r in rows {
        let _ = write!(text, "{},{}", r.subject, r.label);
        for (n, (_, read)) in COLUMNS.iter().enumerate() {
            text.push(',');
            text.push_str(&format_cell(read(r)));
            if n == 7 {
                text.push(',');
                text.push_str(r.unit.name());
            }
        }
        text.push(',');
        text.push_str(r.phase.map_or("", |p| p.as_str()));
        text.push('\n');
    }
    text
}

/// Statistics per unit, label and metric, in the order the rows first name them; metrics
/// a unit leaves empty are left out.
pub(super) fn summarise(rows: &[MetricRow]) -> Vec<SummaryRow> {
    let mut groups: Vec<(Unit, &str)> = Vec::new();
    for r in rows {
        if !groups.contains(&(r.unit, r.label.as_str())) {
            groups.push((r.unit, r.label.as_str()));
        }
    }
    let mut out = Vec::new();
    for (unit, label) in groups {
        let members: Vec<&MetricRow> = rows.iter().filter(|r| r.unit == unit && r.label == label).collect();
        for (name, read) in COLUMNS {
            let values: Vec<f64> = members.iter().filter_map(|r| read(r).value()).collect();
            if values.is_empty() {
                continue;
            }
            let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            finite.sort_by(f64::total_cmp);
            let n = finite.len();
            let mean = finite.iter().sum::<f64>() / n as f64;
            let std = (finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt();
            let median = match n {
                0 => f64::NAN,
                _ if n % 2 == 1 => finite[n / 2],
                _ => (finite[n / 2 - 1] + finite[n / 2]) / 2.0,
            };
            out.push(SummaryRow {
                unit,
                label: label.to_owned(),
                metric: name,
                n,
                mean,
                std,
                median,
                min: finite.first().copied().unwrap_or(f64::NAN),
                max: finite.last().copied().unwrap_or(f64::NAN),
                nan: values.iter().filter(|v| v.is_nan()).count(),
                inf: values.iter().filter(|v| v.is_infinite()).count(),
            });
        }
    }
    out
}

pub(super) fn summary_csv_text(summary: &[SummaryRow]) -> String {
    let mut text = String::from("unit,label,metric,n,mean,std,median,min,max,nan,inf\n");
    for s in summary {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{},{},{},{},{}",
            s.unit,
            s.label,
            s.metric,
            s.n,
            format_real(s.mean),
            format_real(s.std),
            format_real(s.median),
            format_real(s.min),
            format_real(s.max),
            s.nan,
            s.inf
        );
    }
    text
}

/// The summary for a terminal: one block per unit, one line per metric, one column per
/// label with `mean ± std (median)` over subjects, and `[k NaN, m inf]` when some values
/// were left out.
pub(super) fn summary_table(summary: &[SummaryRow]) -> String {
    let mut text = String::new();
    let mut units: Vec<Unit> = summary.iter().map(|s| s.unit).collect();
    units.dedup();
    for unit in units {
        let rows: Vec<&SummaryRow> = summary.iter().filter(|s| s.unit == unit).collect();
        let mut labels: Vec<&str> = Vec::new();
        let mut metrics: Vec<&str> = Vec::new();
        for r in &rows {
            if !labels.contains(&r.label.as_str()) {
                labels.push(&r.label);
            }
            if !metrics.contains(&r.metric) {
                metrics.push(r.metric);
            }
        }
        let cell = |label: &str, metric: &str| -> String {
            let Some(r) = rows.iter().find(|r| r.label == label && r.metric == metric) else {
                return String::new();
            };
            let mut s = format!("{} ± {} ({})", short(r.mean), short(r.std), short(r.median));
            if r.nan + r.inf > 0 {
                let _ = write!(s, " [{} NaN, {} inf]", r.nan, r.inf);
            }
            s
        };
        let mut table: Vec<Vec<String>> = vec![std::iter::once(format!("{unit} unit: mean ± std (median)"))
            .chain(labels.iter().map(|l| if unit == Unit::Label { format!("label {l}") } else { (*l).to_owned() }))
            .collect()];
        for metric in &metrics {
            table.push(std::iter::once((*metric).to_owned()).chain(labels.iter().map(|l| cell(l, metric))).collect());
        }
        let widths: Vec<usize> =
            (0..table[0].len()).map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
        for row in table {
            let line: Vec<String> = row.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
            let _ = writeln!(text, "{}", line.join("  ").trim_end());
        }
        text.push('\n');
    }
    text
}

/// A number in at most about 6 significant digits.
fn short(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The per-component CSV of the cc unit.
pub(super) fn components_csv_text(rows: &[MetricRow]) -> String {
    let mut text = String::from(
        "subject,label,side,component,voxels,centroid_i,centroid_j,centroid_k,overlap_voxels,status,dice,overlapping\n",
    );
    for r in rows {
        let Some(summary) = &r.components else { continue };
        for (side, comps, hit, miss) in [
            ("reference", &summary.reference, "detected", "missed"),
            ("segmentation", &summary.segmentation, "matched", "spurious"),
        ] {
            for comp in comps {
                let overlapping: Vec<String> = comp.overlapping.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    text,
                    "{},{},{side},{},{},{:.3},{:.3},{:.3},{},{},{},{}",
                    r.subject,
                    r.label,
                    comp.id,
                    comp.voxels,
                    comp.centroid[0],
                    comp.centroid[1],
                    comp.centroid[2],
                    comp.overlap_voxels,
                    if comp.hit { hit } else { miss },
                    if side == "reference" { format_real(comp.dice) } else { String::new() },
                    overlapping.join(" ")
                );
            }
        }
    }
    text
}

pub(super) fn write_file(path: &Path, text: &str) -> Result<(), EvaluationError> {
    let fail = |e: std::io::Error| EvaluationError::Other(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::Phase;
    use crate::metrics::{evaluate_labels, EvalOptions};

    #[test]
    fn the_historical_columns_come_first_then_unit() {
        assert_eq!(column_names().len(), COLUMNS.len() + 4);
        assert_eq!(column_names().last(), Some(&"phase"));
        let csv = metrics_csv(&[]);
        assert!(csv.starts_with("subject,label,dice,jaccard,tp,fp,fn,tn,ref_voxels,seg_voxels,unit,"), "{csv}");
    }

    #[test]
    fn summary_skips_non_finite_values_and_counts_them() {
        let options = EvalOptions { labels: vec![1], ..EvalOptions::default() };
        let pairs: [(&[f32], &[f32]); 3] = [
            (&[1.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0]),
            (&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0]),
            (&[0.0; 4], &[1.0, 0.0, 0.0, 0.0]),
        ];
        let mut rows = Vec::new();
        for (n, (s, r)) in pairs.iter().enumerate() {
            for u in evaluate_labels(s, r, [4, 1, 1], [1.0; 3], &options) {
                rows.push(MetricRow::from_unit(format!("s{n}"), (n == 0).then_some(Phase::Infer), u));
            }
        }
        let summary = summarise(&rows);
        let get = |unit: Unit, label: &str, metric: &str| {
            summary.iter().find(|s| s.unit == unit && s.label == label && s.metric == metric).unwrap().clone()
        };
        let dice = get(Unit::Label, "1", "dice");
        // Dice 2/3, 1, 0.
        assert_eq!((dice.n, dice.nan, dice.inf), (3, 0, 0));
        assert!((dice.mean - 5.0 / 9.0).abs() < 1e-12 && (dice.median - 2.0 / 3.0).abs() < 1e-12);
        let hd = get(Unit::Foreground, "foreground", "hausdorff_mm");
        assert_eq!((hd.n, hd.inf, hd.median), (2, 1, 0.5));
        let det = get(Unit::Cc, "1", "detected_components");
        assert_eq!((det.n, det.mean), (3, 2.0 / 3.0));
        assert!(summary.iter().all(|s| !(s.unit == Unit::Cc && s.metric == "dice")), "cc rows leave dice empty");
        let table = summary_table(&summary);
        assert!(table.contains("label unit") && table.contains("[0 NaN, 1 inf]"), "{table}");
        let csv = metrics_csv(&rows);
        assert_eq!(csv.lines().count(), 1 + 3 * 4);
        assert!(csv.lines().nth(3).unwrap().starts_with("s0,1,,,,,,,1,2,cc,"), "{csv}");
        assert!(csv.lines().nth(3).unwrap().ends_with(",INFER") && csv.lines().nth(5).unwrap().ends_with(','), "{csv}");
        assert!(components_csv_text(&rows).contains("s2,1,reference,1,1,0.000,0.000,0.000,0,missed,0.000000,"));
    }
}
