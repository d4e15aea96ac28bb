//! The dataset fingerprint `niftyhost plan` derives its rules from: every labelled
//! subject read once (in parallel), measured in its stored geometry (shape, voxel size,
//! axis codes, intensities inside the labelled foreground, class voxel counts), and the
//! aggregates over the cohort. Written as `fingerprint.json`; the same data gives the
//! same bytes whatever the thread count.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::data::Subject;
use crate::io::{read_volume, Volume};
use crate::preprocess::{axcodes, AxCodes, Grid};
use crate::telemetry::Progress;

/// Foreground values kept per subject and channel for the cohort's intensity statistics:
/// evenly spaced ranks of the sorted values, so that every subject weighs the same (as
/// nnU-Net samples 10 000 foreground voxels per case).
pub const SAMPLES_PER_SUBJECT: usize = 10_000;

/// Intensity statistics of one channel inside the labelled foreground (label > 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntensityStats {
    /// Foreground voxels counted (finite values only).
    pub voxels: usize,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// 0.5th percentile (linear interpolation between ranks, as numpy).
    pub percentile_00_5: f64,
    /// 99.5th percentile.
    pub percentile_99_5: f64,
}

/// What one subject measures, in its stored geometry.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectFingerprint {
    /// The subject id.
    pub id: String,
    /// Voxels along `(i, j, k)` as stored.
    pub shape: [usize; 3],
    /// Voxel size along `(i, j, k)` in mm (the affine's column norms).
    pub spacing: [f64; 3],
    /// Axis codes of the affine, e.g. `"RAS"`.
    pub axcodes: String,
    /// One entry per image channel, in `segmentation.image` order.
    pub intensity: Vec<IntensityStats>,
    /// Voxels of each label value `0..num_classes`.
    pub class_voxels: Vec<u64>,
    /// Each channel's foreground sample (see [`SAMPLES_PER_SUBJECT`]).
    #[serde(skip)]
    pub samples: Vec<Vec<f32>>,
}

impl SubjectFingerprint {
    /// Shape and spacing permuted into the axis order of `target` (the axes the subject
    /// has after reorientation to `target`).
    ///
    /// # Errors
    /// Axis codes that cannot be parsed.
    pub fn in_axes(&self, target: AxCodes) -> Result<([usize; 3], [f64; 3]), String> {
        let own = AxCodes::parse(&self.axcodes).map_err(|e| format!("subject `{}`: {e}", self.id))?;
        let stored = |world: usize| (0..3).find(|&b| own.world_axis(b) == world).unwrap_or(world);
        let axis: [usize; 3] = std::array::from_fn(|a| stored(target.world_axis(a)));
        Ok((axis.map(|b| self.shape[b]), axis.map(|b| self.spacing[b])))
    }
}

/// Why a subject cannot be planned with: every problem, each naming its files.
pub type Problems = Vec<String>;

/// Reads one subject's images and label and measures them; every disagreement between
/// its files (shape, voxel size) and every label outside `0..num_classes` is a problem.
///
/// # Errors
/// The subject's problems, each naming the file(s).
pub fn measure(subject: &Subject, num_classes: usize) -> Result<SubjectFingerprint, Problems> {
    let Some(label_path) = &subject.label else {
        return Err(vec![format!("subject `{}` has no label file: planning needs labels", subject.id)]);
    };
    let mut problems = Vec::new();
    let mut read = |p: &Path| read_volume(p).map_err(|e| problems.push(e.to_string())).ok();
    let images: Vec<Option<Volume>> = subject.images.iter().map(|p| read(p)).collect();
    let label = read(label_path);
    let (Some(label), Some(images)) = (label, images.into_iter().collect::<Option<Vec<Volume>>>()) else {
        return Err(problems);
    };
    let spacing = |v: &Volume| Grid::new(v.dims, v.affine).map(|g| g.pixdim()).unwrap_or(v.pixdim);
    let label_spacing = spacing(&label);
    for image in &images {
        if image.dims != label.dims {
            problems.push(format!(
                "image {} is {:?} voxels but its label {} is {:?}",
                image.path.display(),
                image.dims,
                label.path.display(),
                label.dims
            ));
        }
        let s = spacing(image);
        if (0..3).any(|a| (s[a] - label_spacing[a]).abs() > 1e-3 * s[a].abs().max(label_spacing[a].abs())) {
            problems.push(format!(
                "image {} has voxels of {s:?} mm but its label {} has {label_spacing:?} mm",
                image.path.display(),
                label.path.display()
            ));
        }
    }
    let class_voxels = count_classes(&label, num_classes, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let foreground: Vec<bool> = label.data.iter().map(|&v| v > 0.0).collect();
    let mut intensity = Vec::new();
    let mut samples = Vec::new();
    for image in &images {
        for channel in image.data.chunks(image.voxels().max(1)) {
            let mut values: Vec<f32> =
                channel.iter().zip(&foreground).filter(|(v, f)| **f && v.is_finite()).map(|(v, _)| *v).collect();
            values.sort_unstable_by(f32::total_cmp);
            intensity.push(stats_of_sorted(&values));
            samples.push(spread_sample(&values, SAMPLES_PER_SUBJECT));
        }
    }
    let codes = axcodes(&label.affine).map(|c| c.letters().iter().collect()).unwrap_or_else(|_| label.axcodes());
    Ok(SubjectFingerprint {
        id: subject.id.clone(),
        shape: label.dims,
        spacing: label_spacing,
        axcodes: codes,
        intensity,
        class_voxels,
        samples,
    })
}

/// Voxels per label value `0..num_classes`; values outside (or not integers) are a
/// problem naming the file and the values.
fn count_classes(label: &Volume, num_classes: usize, problems: &mut Problems) -> Vec<u64> {
    let mut counts = vec![0u64; num_classes];
    let mut outside = std::collections::BTreeSet::new();
    for &v in &label.data {
        match (v >= 0.0 && v.fract() == 0.0).then_some(v as usize) {
            Some(c) if c < num_classes => counts[c] += 1,
            _ => {
                outside.insert(v.to_string());
            }
        }
    }
    if !outside.is_empty() {
        let shown: Vec<String> = outside.into_iter().take(8).collect();
        problems.push(format!(
            "label {} holds values {} outside the declared classes 0..{} ({num_classes} classes)",
            label.path.display(),
            shown.join(", "),
            num_classes.saturating_sub(1)
        ));
    }
    counts
}

/// The `q`-th percentile (0..=100) of sorted values, interpolating linearly between
/// ranks (numpy's default); 0 for no value.
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let rank = q / 100.0 * (n - 1) as f64;
            let (lo, frac) = (rank.floor() as usize, rank - rank.floor());
            let hi = (lo + 1).min(n - 1);
            let (a, b): (f64, f64) = (sorted[lo].into(), sorted[hi].into());
            a + frac * (b - a)
        }
    }
}

/// Count, mean, population std and the 0.5 / 99.5 percentiles of sorted values.
pub fn stats_of_sorted(sorted: &[f32]) -> IntensityStats {
    let n = sorted.len();
    let mean = if n == 0 { 0.0 } else { sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 };
    let var = if n == 0 { 0.0 } else { sorted.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n as f64 };
    IntensityStats {
        voxels: n,
        mean,
        std: var.sqrt(),
        percentile_00_5: percentile(sorted, 0.5),
        percentile_99_5: percentile(sorted, 99.5),
    }
}

/// At most `m` values of sorted `values` at evenly spaced ranks (all of them when there
/// are no more than `m`).
fn spread_sample(sorted: &[f32], m: usize) -> Vec<f32> {
    let n = sorted.len();
    if n <= m || m < 2 {
        return sorted.to_vec();
    }
    (0..m).map(|k| sorted[(k as f64 * (n - 1) as f64 / (m - 1) as f64).round() as usize]).collect()
}

/// The median of values (the mean of the two middle ones for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The cohort's aggregates, in the axes of the planned axis codes.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregates {
    /// The axis codes shapes and spacings are given in (the planned `axcodes`).
    pub axcodes: String,
    /// Median shape per axis, voxels.
    pub median_shape: [f64; 3],
    /// Median voxel size per axis, mm.
    pub median_spacing: [f64; 3],
    /// 10th percentile of the voxel sizes per axis, mm.
    pub spacing_percentile_10: [f64; 3],
    /// Largest median voxel size over the smallest.
    pub anisotropy: f64,
    /// Each channel's foreground statistics over every subject (each subject's sample
    /// weighing the same).
    pub intensity: Vec<IntensityStats>,
    /// Voxels of each class over every subject.
    pub class_voxels: Vec<u64>,
}

/// `fingerprint.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Fingerprint {
    /// The image channels, in order (section names, or section names with `[c]` for the
    /// channels of a 4D section).
    pub channels: Vec<String>,
    /// Classes counted (`0..num_classes`).
    pub num_classes: usize,
    /// Every labelled subject, by id.
    pub subjects: Vec<SubjectFingerprint>,
    /// Over the cohort.
    pub aggregates: Aggregates,
}

/// Measures every subject in parallel with a progress bar, and lists every problem of
/// every subject at once.
///
/// # Errors
/// Every problem found, each naming its subject and file(s).
pub fn measure_all(subjects: &[Subject], num_classes: usize) -> Result<Vec<SubjectFingerprint>, Problems> {
    let progress = Progress::new(0, subjects.len() as u64, "plan");
    let done = AtomicU64::new(0);
    let measured: Vec<Result<SubjectFingerprint, Problems>> = subjects
        .par_iter()
        .map(|s| {
            let m = measure(s, num_classes);
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress.update(n, format!("subjects read ({})", s.id));
            m
        })
        .collect();
    drop(progress);
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for (s, m) in subjects.iter().zip(measured) {
        match m {
            Ok(f) => ok.push(f),
            Err(p) => problems.extend(p.into_iter().map(|p| format!("subject `{}`: {p}", s.id))),
        }
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        Err(problems)
    }
}

/// The aggregates of measured subjects in the axes of `target`.
///
/// # Errors
/// A subject whose axis codes cannot be read.
pub fn aggregate(subjects: &[SubjectFingerprint], target: AxCodes, num_classes: usize) -> Result<Aggregates, String> {
    let in_axes: Vec<([usize; 3], [f64; 3])> = subjects.iter().map(|s| s.in_axes(target)).collect::<Result<_, _>>()?;
    let axis = |f: &dyn Fn(&([usize; 3], [f64; 3])) -> f64| in_axes.iter().map(f).collect::<Vec<f64>>();
    let median_shape = std::array::from_fn(|a| median(&axis(&|s| s.0[a] as f64)));
    let median_spacing: [f64; 3] = std::array::from_fn(|a| median(&axis(&|s| s.1[a])));
    let spacing_percentile_10 = std::array::from_fn(|a| {
        let mut v = axis(&|s| s.1[a]);
        v.sort_unstable_by(f64::total_cmp);
        percentile(&v, 10.0)
    });
    let finest = median_spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let coarsest = median_spacing.iter().copied().fold(0.0, f64::max);
    let channels = subjects.first().map_or(0, |s| s.samples.len());
    let intensity = (0..channels)
        .map(|c| {
            let mut pooled: Vec<f32> = subjects.iter().flat_map(|s| s.samples[c].iter().copied()).collect();
            pooled.sort_unstable_by(f32::total_cmp);
            stats_of_sorted(&pooled)
        })
        .collect();
    let class_voxels =
        (0..num_classes).map(|k| subjects.iter().map(|s| s.class_voxels.get(k).copied().unwrap_or(0)).sum()).collect();
    Ok(Aggregates {
        axcodes: target.letters().iter().collect(),
        median_shape,
        median_spacing,
        spacing_percentile_10,
        anisotropy: if finest > 0.0 { coarsest / finest } else { 1.0 },
        intensity,
        class_voxels,
    })
}

/// A length in mm rounded to 1e-4 mm (voxel sizes are stored as f32: this removes their
/// float noise from the plan).
pub fn round_mm(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f32> = (0..=100).map(|x| x as f32).collect();
        assert_eq!(percentile(&v, 0.5), 0.5);
        assert_eq!(percentile(&v, 99.5), 99.5);
        assert!((percentile(&[1.0f32, 2.0], 50.0) - 1.5).abs() < 1e-12);
        assert_eq!(percentile::<f64>(&[], 50.0), 0.0);
        let s = stats_of_sorted(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.mean, s.voxels), (2.5, 4));
        assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn medians_and_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let sorted: Vec<f32> = (0..1001).map(|x| x as f32).collect();
        let s = spread_sample(&sorted, 11);
        assert_eq!(s, (0..11).map(|k| (k * 100) as f32).collect::<Vec<_>>());
    }

    #[test]
    fn shapes_and_spacings_follow_the_target_axes() {
        let f = SubjectFingerprint {
            id: "a".into(),
            shape: [10, 20, 30],
            spacing: [1.0, 2.0, 3.0],
            axcodes: "ASR".into(),
            intensity: Vec::new(),
            class_voxels: Vec::new(),
            samples: Vec::new(),
        };
        // Stored axis 0 is A(P) (world y), 1 is S(I) (world z), 2 is R(L) (world x).
        assert_eq!(f.in_axes(AxCodes::RAS).unwrap(), ([30, 10, 20], [3.0, 1.0, 2.0]));
    }
}
