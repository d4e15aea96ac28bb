//! Evaluation units of a label volume pair: each label, the foreground (every label > 0
//! as one mask), and connected components.
//!
//! Values are rounded to the nearest integer first (as in [`super::confusion`]). A label
//! unit's mask is the voxels equal to that label; the foreground mask is every voxel
//! whose rounded value is above 0 (labels beyond the configured number of classes
//! included). The components unit matches the components of each non-zero label of the
//! label set and, when the foreground unit is selected, of the foreground
//! ([`super::components`]).

use std::fmt;

use serde::Serialize;

use super::binary::{binary_metrics, BinaryMetrics};
use super::components::{match_components, ComponentSummary, Connectivity};

/// How a segmentation is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// One label value at a time.
    Label,
    /// All labels > 0 as one mask.
    Foreground,
    /// Connected components of each label (and of the foreground).
    Cc,
}

impl Unit {
    /// The name in configs and CSVs: `label`, `foreground`, `cc`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Label => "label",
            Self::Foreground => "foreground",
            Self::Cc => "cc",
        }
    }

    /// From a config name: `label`/`labels`, `foreground`, `cc`/`components`
    /// (NiftyNet's `evaluation_units` values, plus plurals).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "label" | "labels" => Some(Self::Label),
            "foreground" | "fg" => Some(Self::Foreground),
            "cc" | "component" | "components" => Some(Self::Cc),
            _ => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a unit scores: one label or the foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// One label value.
    Label(u32),
    /// Every label > 0.
    Foreground,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Label(l) => write!(f, "{l}"),
            Self::Foreground => f.write_str("foreground"),
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Labels of the label unit (and, except 0, of the components unit).
    pub labels: Vec<u32>,
    /// Units to compute.
    pub units: Vec<Unit>,
    /// Surface Dice tolerance τ, mm.
    pub tolerance_mm: f64,
    /// Connectivity of components.
    pub connectivity: Connectivity,
    /// Overlap fraction a component must exceed to count as detected/matched.
    pub min_overlap: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            labels: vec![1],
            units: vec![Unit::Label, Unit::Foreground, Unit::Cc],
            tolerance_mm: 2.0,
            connectivity: Connectivity::TwentySix,
            min_overlap: 0.0,
        }
    }
}

/// The result of one unit for one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitResult {
    /// The unit.
    pub unit: Unit,
    /// The label or the foreground.
    pub target: Target,
    /// Voxels of the target in the reference.
    pub ref_voxels: u64,
    /// Voxels of the target in the segmentation.
    pub seg_voxels: u64,
    /// Voxel metrics (label and foreground units).
    pub metrics: Option<BinaryMetrics>,
    /// Components (cc unit).
    pub components: Option<ComponentSummary>,
}

/// Segmentation and reference masks of a target with what was computed for them.
type Computed = (Vec<bool>, Vec<bool>, Option<BinaryMetrics>, Option<ComponentSummary>);

/// Evaluates a label volume `seg` against `reference` (NIfTI order, `dims`, voxel
/// `spacing` in mm): label units first (in the order of `options.labels`), then the
/// foreground, then components (labels, then foreground).
///
/// # Panics
/// When a volume's length is not `dims[0] * dims[1] * dims[2]`.
pub fn evaluate_labels(
    seg: &[f32],
    reference: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
    options: &EvalOptions,
) -> Vec<UnitResult> {
    let n: usize = dims.iter().product();
    assert_eq!(seg.len(), n, "segmentation and dims disagree");
    assert_eq!(reference.len(), n, "reference and dims disagree");
    let has = |u: Unit| options.units.contains(&u);
    let mut targets: Vec<Target> = Vec::new();
    if has(Unit::Label) || has(Unit::Cc) {
        targets.extend(options.labels.iter().map(|&l| Target::Label(l)));
    }
    if has(Unit::Foreground) {
        targets.push(Target::Foreground);
    }
    // Rounded to the nearest integer, halves away from zero (`f32::round`) without
    // calling it: label l > 0 is [l − ½, l + ½), label 0 is (−½, ½), the foreground
    // ≥ ½; NaN is nothing.
    let mask = |values: &[f32], t: Target| -> Vec<bool> {
        match t {
            Target::Label(0) => values.iter().map(|&v| v > -0.5 && v < 0.5).collect(),
            Target::Label(l) => {
                let (lo, hi) = (l as f32 - 0.5, l as f32 + 0.5);
                values.iter().map(|&v| v >= lo && v < hi).collect()
            }
            Target::Foreground => values.iter().map(|&v| v >= 0.5).collect(),
        }
    };
    let mut voxel_rows = Vec::new();
    let mut cc_rows = Vec::new();
    // Masks and results of the last non-empty label, reused when the foreground equals it.
    let mut previous: Vec<Computed> = Vec::new();
    for t in targets {
        let (s, r) = rayon::join(|| mask(seg, t), || mask(reference, t));
        let seg_voxels = s.iter().filter(|&&v| v).count() as u64;
        let ref_voxels = r.iter().filter(|&&v| v).count() as u64;
        let voxel_unit = match t {
            Target::Label(_) => has(Unit::Label),
            Target::Foreground => true,
        };
        let cc_unit = has(Unit::Cc) && t != Target::Label(0);
        let same = previous.iter().find(|p| p.0 == s && p.1 == r);
        // Independent: run side by side on rayon's threads.
        let (metrics, components) = rayon::join(
            || {
                voxel_unit.then(|| {
                    same.and_then(|p| p.2.clone())
                        .unwrap_or_else(|| binary_metrics(&s, &r, dims, spacing, options.tolerance_mm))
                })
            },
            || {
                cc_unit.then(|| {
                    same.and_then(|p| p.3.clone())
                        .unwrap_or_else(|| match_components(&s, &r, dims, options.connectivity, options.min_overlap))
                })
            },
        );
        if let Some(m) = &metrics {
            voxel_rows.push(UnitResult {
                unit: if t == Target::Foreground { Unit::Foreground } else { Unit::Label },
                target: t,
                ref_voxels,
                seg_voxels,
                metrics: Some(m.clone()),
                components: None,
            });
        }
        if let Some(c) = &components {
            cc_rows.push(UnitResult {
                unit: Unit::Cc,
                target: t,
                ref_voxels,
                seg_voxels,
                metrics: None,
                components: Some(c.clone()),
            });
        }
        if t != Target::Foreground && ref_voxels + seg_voxels > 0 {
            previous.clear();
            previous.push((s, r, metrics, components));
        }
    }
    voxel_rows.extend(cc_rows);
    voxel_rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_targets_in_order_with_foreground_reuse() {
        let dims = [6, 1, 1];
        let seg = [0.0, 1.0, 1.0, 0.0, 2.0, 0.0];
        let reference = [0.0, 1.0, 0.0, 0.0, 2.0, 2.0];
        let options = EvalOptions { labels: vec![0, 1, 2], ..EvalOptions::default() };
        let rows = evaluate_labels(&seg, &reference, dims, [1.0; 3], &options);
        let got: Vec<(Unit, Target)> = rows.iter().map(|r| (r.unit, r.target)).collect();
        let (l, fg) = (Target::Label, Target::Foreground);
        assert_eq!(
            got,
            [
                (Unit::Label, l(0)),
                (Unit::Label, l(1)),
                (Unit::Label, l(2)),
                (Unit::Foreground, fg),
                (Unit::Cc, l(1)),
                (Unit::Cc, l(2)),
                (Unit::Cc, fg),
            ]
        );
        let fg = rows[3].metrics.as_ref().unwrap();
        assert_eq!((fg.tp, fg.fp, fg.fn_, fg.tn), (2, 1, 1, 2));
        // Only label 1 present in both: the foreground equals it, and is reused.
        let single = evaluate_labels(&[0.0, 1.0, 1.0], &[1.0, 1.0, 0.0], [3, 1, 1], [1.0; 3], &EvalOptions::default());
        assert_eq!(single.len(), 4);
        assert_eq!(single[0].metrics, single[1].metrics);
        // (Debug forms: segmentation components carry a NaN Dice.)
        assert_eq!(format!("{:?}", single[2].components), format!("{:?}", single[3].components));
    }
}
