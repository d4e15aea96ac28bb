//! Every metric of one binary mask pair: confusion counts, overlap and rate metrics,
//! volumes and surface distances.
//!
//! # Definitions and empty cases
//! With `TP, FP, FN, TN` voxel counts (segmentation `S`, reference `R`):
//!
//! | metric | definition | undefined (NaN) when |
//! |---|---|---|
//! | dice | `2TP / (2TP + FP + FN)` | both masks empty |
//! | jaccard | `TP / (TP + FP + FN)` | both masks empty |
//! | sensitivity (recall, TPR) | `TP / (TP + FN)` | reference empty |
//! | specificity (TNR) | `TN / (TN + FP)` | reference covers the volume |
//! | accuracy | `(TP + TN) / N` | empty volume |
//! | false positive rate | `FP / (FP + TN)` | reference covers the volume |
//! | PPV (precision) | `TP / (TP + FP)` | segmentation empty |
//! | NPV | `TN / (TN + FN)` | segmentation covers the volume |
//! | informedness | `sensitivity + specificity − 1` | either is NaN |
//! | markedness | `PPV + NPV − 1` | either is NaN |
//! | volume difference | `V(S) − V(R)` in mm³ | never |
//! | relative volume difference | `(V(S) − V(R)) / V(R)` | both empty (`+∞` when only `R` is) |
//!
//! So one empty mask gives Dice 0 and both empty give NaN, not 1: an absent structure
//! correctly left out is not evidence of a good segmentation, and averaging over
//! subjects skips it. The surface metrics (Hausdorff, HD95, ASSD, normalised surface
//! Dice) follow [`super::surface`]: NaN for two empty masks, `+∞` distances (surface Dice
//! 0) for one.

use serde::Serialize;

use super::surface::SurfaceDistances;

/// Every metric of one binary segmentation against its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinaryMetrics {
    /// Voxels in both.
    pub tp: u64,
    /// Voxels in the segmentation only.
    pub fp: u64,
    /// Voxels in the reference only.
    pub fn_: u64,
    /// Voxels in neither.
    pub tn: u64,
    /// Reference positives `TP + FN`.
    pub ref_pos: u64,
    /// Reference negatives `FP + TN`.
    pub ref_neg: u64,
    /// Segmentation positives `TP + FP`.
    pub seg_pos: u64,
    /// Segmentation negatives `FN + TN`.
    pub seg_neg: u64,
    /// Dice.
    pub dice: f64,
    /// Jaccard (IoU).
    pub jaccard: f64,
    /// Sensitivity (recall, true positive rate).
    pub sensitivity: f64,
    /// Specificity (true negative rate).
    pub specificity: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// False positive rate (fall-out).
    pub false_positive_rate: f64,
    /// Positive predictive value (precision).
    pub ppv: f64,
    /// Negative predictive value.
    pub npv: f64,
    /// Informedness (Youden's J).
    pub informedness: f64,
    /// Markedness.
    pub markedness: f64,
    /// Reference volume, mm³.
    pub ref_volume_mm3: f64,
    /// Segmentation volume, mm³.
    pub seg_volume_mm3: f64,
    /// Segmentation minus reference volume, mm³.
    pub volume_difference_mm3: f64,
    /// Volume difference over the reference volume.
    pub relative_volume_difference: f64,
    /// Hausdorff distance, mm.
    pub hausdorff_mm: f64,
    /// 95th-percentile Hausdorff distance, mm.
    pub hausdorff95_mm: f64,
    /// Average symmetric surface distance, mm.
    pub assd_mm: f64,
    /// Mean distance from the segmentation surface to the reference surface, mm.
    pub mean_seg_to_ref_mm: f64,
    /// Mean distance from the reference surface to the segmentation surface, mm.
    pub mean_ref_to_seg_mm: f64,
    /// Normalised surface Dice at `surface_tolerance_mm`.
    pub surface_dice: f64,
    /// The surface Dice tolerance τ, mm.
    pub surface_tolerance_mm: f64,
    /// Surface voxels of the reference.
    pub ref_surface_voxels: u64,
    /// Surface voxels of the segmentation.
    pub seg_surface_voxels: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Confusion counts `(TP, FP, FN, TN)` of two masks.
///
/// # Panics
/// When the masks differ in length.
pub fn counts(seg: &[bool], reference: &[bool]) -> (u64, u64, u64, u64) {
    assert_eq!(seg.len(), reference.len(), "masks differ in length");
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&s, &r) in seg.iter().zip(reference) {
        tp += u64::from(s & r);
        fp += u64::from(s & !r);
        fn_ += u64::from(!s & r);
    }
    (tp, fp, fn_, seg.len() as u64 - tp - fp - fn_)
}

impl BinaryMetrics {
    /// The metrics from confusion counts, the volume of a voxel in mm³ and the surface
    /// distances with the surface-Dice tolerance in mm.
    pub fn new(
        (tp, fp, fn_, tn): (u64, u64, u64, u64),
        voxel_mm3: f64,
        distances: &SurfaceDistances,
        tolerance_mm: f64,
    ) -> Self {
        let sensitivity = ratio(tp, tp + fn_);
        let specificity = ratio(tn, tn + fp);
        let ppv = ratio(tp, tp + fp);
        let npv = ratio(tn, tn + fn_);
        let ref_volume_mm3 = (tp + fn_) as f64 * voxel_mm3;
        let seg_volume_mm3 = (tp + fp) as f64 * voxel_mm3;
        let volume_difference_mm3 = seg_volume_mm3 - ref_volume_mm3;
        Self {
            tp,
            fp,
            fn_,
            tn,
            ref_pos: tp + fn_,
            ref_neg: fp + tn,
            seg_pos: tp + fp,
            seg_neg: fn_ + tn,
            dice: ratio(2 * tp, 2 * tp + fp + fn_),
            jaccard: ratio(tp, tp + fp + fn_),
            sensitivity,
            specificity,
            accuracy: ratio(tp + tn, tp + fp + fn_ + tn),
            false_positive_rate: ratio(fp, fp + tn),
            ppv,
            npv,
            informedness: sensitivity + specificity - 1.0,
            markedness: ppv + npv - 1.0,
            ref_volume_mm3,
            seg_volume_mm3,
            volume_difference_mm3,
            // IEEE division: 0/0 = NaN (both empty), x/0 = ±∞.
            relative_volume_difference: volume_difference_mm3 / ref_volume_mm3,
            hausdorff_mm: distances.hausdorff(),
            hausdorff95_mm: distances.percentile_hausdorff(95.0),
            assd_mm: distances.average_symmetric(),
            mean_seg_to_ref_mm: distances.mean_seg_to_ref(),
            mean_ref_to_seg_mm: distances.mean_ref_to_seg(),
            surface_dice: distances.surface_dice(tolerance_mm),
            surface_tolerance_mm: tolerance_mm,
            ref_surface_voxels: distances.ref_surface_voxels() as u64,
            seg_surface_voxels: distances.seg_surface_voxels() as u64,
        }
    }
}

/// Every metric of `seg` against `reference` (masks in NIfTI order with `dims`), with
/// voxel `spacing` in mm and the surface-Dice tolerance `tolerance_mm`.
///
/// # Panics
/// When a mask's length is not `dims[0] * dims[1] * dims[2]`.
pub fn binary_metrics(
    seg: &[bool],
    reference: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    tolerance_mm: f64,
) -> BinaryMetrics {
    let (c, d) = rayon::join(|| counts(seg, reference), || SurfaceDistances::compute(seg, reference, dims, spacing));
    BinaryMetrics::new(c, spacing.iter().product::<f64>().abs(), &d, tolerance_mm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_counts_rates_and_volumes() {
        // 1D volume of 10 voxels, 2 mm × 1 × 1.5: S = {2..5}, R = {3..7}.
        let s: Vec<bool> = (0..10).map(|i| (2..=5).contains(&i)).collect();
        let r: Vec<bool> = (0..10).map(|i| (3..=7).contains(&i)).collect();
        let m = binary_metrics(&s, &r, [10, 1, 1], [2.0, 1.0, 1.5], 2.5);
        assert_eq!((m.tp, m.fp, m.fn_, m.tn), (3, 1, 2, 4));
        assert!((m.dice - 6.0 / 9.0).abs() < 1e-12);
        assert!((m.jaccard - 0.5).abs() < 1e-12);
        assert!((m.sensitivity - 0.6).abs() < 1e-12);
        assert!((m.specificity - 0.8).abs() < 1e-12);
        assert!((m.ppv - 0.75).abs() < 1e-12);
        assert!((m.npv - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.informedness - 0.4).abs() < 1e-12);
        assert!((m.volume_difference_mm3 - (-3.0)).abs() < 1e-12);
        assert!((m.relative_volume_difference - (-0.2)).abs() < 1e-12);
        // Surfaces are the end voxels: S {2, 5}, R {3, 7}; d(S→R) = {2, 4} mm,
        // d(R→S) = {2, 4} mm.
        assert_eq!((m.seg_surface_voxels, m.ref_surface_voxels), (2, 2));
        assert!((m.hausdorff_mm - 4.0).abs() < 1e-12);
        assert!((m.assd_mm - 3.0).abs() < 1e-12);
        assert!((m.surface_dice - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_cases_are_documented_values_not_crashes() {
        let none = vec![false; 27];
        let mut one = none.clone();
        one[13] = true;
        let both = binary_metrics(&none, &none, [3, 3, 3], [1.0; 3], 1.0);
        assert!(both.dice.is_nan() && both.jaccard.is_nan() && both.hausdorff_mm.is_nan());
        assert!(both.sensitivity.is_nan() && both.ppv.is_nan() && both.relative_volume_difference.is_nan());
        assert_eq!((both.specificity, both.accuracy), (1.0, 1.0));
        let missed = binary_metrics(&none, &one, [3, 3, 3], [1.0; 3], 1.0);
        assert_eq!((missed.dice, missed.sensitivity, missed.surface_dice), (0.0, 0.0, 0.0));
        assert_eq!(
            (missed.hausdorff_mm, missed.hausdorff95_mm, missed.assd_mm),
            (f64::INFINITY, f64::INFINITY, f64::INFINITY)
        );
        assert_eq!(missed.relative_volume_difference, -1.0);
        let spurious = binary_metrics(&one, &none, [3, 3, 3], [1.0; 3], 1.0);
        assert_eq!(spurious.relative_volume_difference, f64::INFINITY);
        assert!(spurious.sensitivity.is_nan());
        let same = binary_metrics(&one, &one, [3, 3, 3], [0.5, 1.0, 2.0], 0.0);
        assert_eq!((same.dice, same.hausdorff_mm, same.assd_mm, same.surface_dice), (1.0, 0.0, 0.0, 1.0));
    }
}
