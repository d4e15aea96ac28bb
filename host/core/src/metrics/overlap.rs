//! Overlap metrics of one label: confusion counts, Dice and Jaccard.

use serde::Serialize;

/// Confusion counts of one label between a segmentation and a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LabelOverlap {
    /// The label value.
    pub label: u32,
    /// Voxels labelled in both.
    pub tp: u64,
    /// Labelled in the segmentation only.
    pub fp: u64,
    /// Labelled in the reference only.
    pub fn_: u64,
    /// Labelled in neither.
    pub tn: u64,
}

impl LabelOverlap {
    /// Dice = 2TP / (2TP + FP + FN); NaN when both are empty (undefined).
    pub fn dice(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            f64::NAN
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }

    /// Jaccard = TP / (TP + FP + FN); NaN when both are empty.
    pub fn jaccard(&self) -> f64 {
        let d = self.tp + self.fp + self.fn_;
        if d == 0 {
            f64::NAN
        } else {
            self.tp as f64 / d as f64
        }
    }

    /// Voxels of the label in the reference.
    pub fn reference_voxels(&self) -> u64 {
        self.tp + self.fn_
    }

    /// Voxels of the label in the segmentation.
    pub fn segmentation_voxels(&self) -> u64 {
        self.tp + self.fp
    }
}

/// Confusion counts for labels `0..num_labels` (values are rounded to integers; values
/// outside the range count for no label).
pub fn confusion(segmentation: &[f32], reference: &[f32], num_labels: u32) -> Vec<LabelOverlap> {
    let n = num_labels as usize;
    // joint[s * n + r]: voxels with segmentation s and reference r.
    let mut joint = vec![0u64; n * n];
    let mut outside_seg = vec![0u64; n];
    let mut outside_ref = vec![0u64; n];
    let total = segmentation.len() as u64;
    for (&s, &r) in segmentation.iter().zip(reference) {
        let (s, r) = (s.round(), r.round());
        let si = (s >= 0.0 && (s as usize) < n).then_some(s as usize);
        let ri = (r >= 0.0 && (r as usize) < n).then_some(r as usize);
        match (si, ri) {
            (Some(s), Some(r)) => joint[s * n + r] += 1,
            (Some(s), None) => outside_ref[s] += 1,
            (None, Some(r)) => outside_seg[r] += 1,
            (None, None) => {}
        }
    }
    (0..n)
        .map(|l| {
            let tp = joint[l * n + l];
            let seg_total: u64 = (0..n).map(|r| joint[l * n + r]).sum::<u64>() + outside_ref[l];
            let ref_total: u64 = (0..n).map(|s| joint[s * n + l]).sum::<u64>() + outside_seg[l];
            let (fp, fn_) = (seg_total - tp, ref_total - tp);
            LabelOverlap { label: l as u32, tp, fp, fn_, tn: total - tp - fp - fn_ }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_counts_and_scores() {
        let seg = [0.0, 1.0, 1.0, 2.0, 2.0, 0.0];
        let refr = [0.0, 1.0, 2.0, 2.0, 0.0, 0.0];
        let m = confusion(&seg, &refr, 3);
        assert_eq!(m[1], LabelOverlap { label: 1, tp: 1, fp: 1, fn_: 0, tn: 4 });
        assert_eq!(m[2], LabelOverlap { label: 2, tp: 1, fp: 1, fn_: 1, tn: 3 });
        assert!((m[1].dice() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[2].dice() - 0.5).abs() < 1e-12);
        assert!((m[2].jaccard() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_label_in_both_is_undefined_not_perfect() {
        let m = confusion(&[0.0, 0.0], &[0.0, 0.0], 2);
        assert!(m[1].dice().is_nan());
        assert_eq!(m[0].dice(), 1.0);
    }
}
