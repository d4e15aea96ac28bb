//! The rules that turn a fingerprint into a training configuration, after nnU-Net
//! (Isensee et al., Nature Methods 2021, and its documentation), each a small function
//! that returns its value with the sentence the planned config writes beside it.

use super::fingerprint::{percentile, IntensityStats};

/// A planned value and the rule that produced it (written as the value's comment).
#[derive(Debug, Clone, PartialEq)]
pub struct Ruled<T> {
    /// The value.
    pub value: T,
    /// `rule: …`, naming the rule and the numbers it used.
    pub rule: String,
}

fn ruled<T>(value: T, rule: impl Into<String>) -> Ruled<T> {
    Ruled { value, rule: format!("rule: {}", rule.into()) }
}

/// A voxel size of several axes as `[2.0, 1.0, 1.0]`, each rounded to 1e-4 mm.
pub fn mm(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{:?}", (x * 1e4).round() / 1e4)).collect();
    format!("[{}]", parts.join(", "))
}

/// Spacing ratio above which an axis counts as anisotropic for the target spacing
/// (nnU-Net's `anisotropy_threshold`).
pub const ANISOTROPY_THRESHOLD: f64 = 3.0;

/// Axis codes: the ones most subjects are stored in, so most volumes are not permuted
/// (ties: RAS, the world's axes).
pub fn target_axcodes(codes: &[String]) -> Ruled<String> {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for c in codes {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    let tied: Vec<&str> = counts.iter().filter(|(_, n)| **n == most).map(|(c, _)| *c).collect();
    let best = if tied.len() == 1 { tied[0] } else { "RAS" };
    let why = if tied.len() > 1 { ", a tie: RAS, the world's axes (ours)" } else { "" };
    ruled(best.to_owned(), format!("axis codes most subjects are stored in ({most} of {}{why})", codes.len()))
}

/// Target voxel size: the median voxel size per axis; when one axis is strongly
/// anisotropic (its median spacing more than 3× the finest other one, and its median
/// extent in voxels less than a third of the others'), that axis takes the 10th
/// percentile of its voxel sizes instead, but no finer than the coarsest other axis
/// (nnU-Net's rule).
///
/// `spacings` and `shapes` are per subject, in the target axes.
pub fn target_spacing(spacings: &[[f64; 3]], shapes: &[[usize; 3]]) -> Ruled<[f64; 3]> {
    let median = |a: usize| super::fingerprint::median(&spacings.iter().map(|s| s[a]).collect::<Vec<_>>());
    let median_spacing: [f64; 3] = std::array::from_fn(median);
    let extent = |a: usize| {
        super::fingerprint::median(&shapes.iter().map(|s| s[a] as f64).collect::<Vec<_>>()) * median_spacing[a]
    };
    let coarse = (0..3).fold(0, |b, a| if median_spacing[a] > median_spacing[b] { a } else { b });
    let others: Vec<usize> = (0..3).filter(|&a| a != coarse).collect();
    let finest_other = others.iter().map(|&a| median_spacing[a]).fold(f64::INFINITY, f64::min);
    let coarsest_other = others.iter().map(|&a| median_spacing[a]).fold(0.0, f64::max);
    let ratio = median_spacing[coarse] / finest_other;
    // Extents in voxels at the median spacing.
    let voxels = |a: usize| extent(a) / median_spacing[a];
    let few_voxels = others.iter().all(|&a| voxels(coarse) * ANISOTROPY_THRESHOLD < voxels(a));
    if ratio > ANISOTROPY_THRESHOLD && few_voxels {
        let mut along: Vec<f64> = spacings.iter().map(|s| s[coarse]).collect();
        along.sort_unstable_by(f64::total_cmp);
        let p10 = percentile(&along, 10.0).max(coarsest_other);
        let mut value = median_spacing;
        value[coarse] = p10;
        return ruled(
            value,
            format!(
                "target spacing = median spacing {}; axis {coarse} anisotropic ({ratio:.1}× the finest, fewer than a third of the others' voxels) → its 10th percentile {} mm (nnU-Net)",
                mm(&median_spacing),
                mm(&[p10])
            ),
        );
    }
    ruled(
        median_spacing,
        format!(
            "target spacing = median spacing per axis (largest/smallest {ratio:.2}, not above {ANISOTROPY_THRESHOLD}× with few voxels: no anisotropy rule) (nnU-Net)"
        ),
    )
}

/// How a channel's intensities are normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalisation {
    /// Clip to `[lo, hi]`, then z-score with the cohort's foreground mean and std.
    Ct {
        /// `[lo, hi]`: the foreground's 0.5 and 99.5 percentiles over all subjects.
        clip: [f64; 2],
        /// `[mean, std]` of the foreground over all subjects.
        zscore: [f64; 2],
    },
    /// Each image z-scored with its own mean and std.
    PerImage,
}

/// Normalisation of a channel by modality: CT (case-insensitive) clips to the
/// foreground's 0.5–99.5 percentiles and z-scores with the foreground's global mean and
/// std; anything else is z-scored per image (nnU-Net).
pub fn normalisation(modality: &str, foreground: &IntensityStats) -> Ruled<Normalisation> {
    if modality.eq_ignore_ascii_case("ct") {
        let clip = [foreground.percentile_00_5, foreground.percentile_99_5];
        let zscore = [foreground.mean, foreground.std.max(1e-8)];
        return ruled(
            Normalisation::Ct { clip, zscore },
            "CT: clip to the foreground's 0.5-99.5 percentiles over all subjects, z-score with its global mean and std (nnU-Net)",
        );
    }
    let what = if modality.is_empty() { "no modality given" } else { modality };
    ruled(Normalisation::PerImage, format!("{what}: not CT → z-score each image on its own (nnU-Net)"))
}

/// The network's levels: strides (`[1, 1, 1]` first) and kernel sizes, per level, and
/// the patch made divisible by its total stride.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// The patch `(i, j, k)`, divisible by the product of the strides along each axis.
    pub patch: [usize; 3],
    /// Per level, the stride reaching it (the first `[1, 1, 1]`), `(i, j, k)`.
    pub strides: Vec<[usize; 3]>,
    /// Per level, the convolution kernel `(i, j, k)`.
    pub kernels: Vec<[usize; 3]>,
}

impl Topology {
    /// Poolings along each axis.
    pub fn poolings(&self) -> [u32; 3] {
        std::array::from_fn(|a| self.strides.iter().filter(|s| s[a] == 2).count() as u32)
    }
}

/// Smallest edge of the lowest-resolution feature map, voxels (nnU-Net's 4).
pub const MIN_FEATURE_EDGE: usize = 4;
/// Levels at most (bottleneck included).
pub const MAX_LEVELS: usize = 7;

/// Patch size and topology: pool (stride 2) along every axis while its feature map stays
/// at least [`MIN_FEATURE_EDGE`] voxels and its spacing is less than twice the finest
/// current spacing (a coarse axis waits until the others catch up); a kernel is 1 along an
/// axis until its spacing comes within twice the finest, then 3 on that level and every
/// level below (so 1×3×3 on anisotropic levels, and an axis that stops pooling because its
/// map is small keeps its 3); the patch is then rounded up to a multiple of each axis's
/// total stride (nnU-Net).
pub fn topology(spacing: [f64; 3], patch: [usize; 3]) -> Topology {
    let kernel = |s: &[f64; 3], previous: [usize; 3]| {
        let finest = s.iter().copied().fold(f64::INFINITY, f64::min);
        std::array::from_fn(|a| if s[a] / finest < 2.0 { 3 } else { previous[a] })
    };
    let (mut s, mut size) = (spacing, patch.map(|p| p as f64));
    let mut strides = vec![[1, 1, 1]];
    let mut kernels = vec![kernel(&s, [1, 1, 1])];
    while strides.len() < MAX_LEVELS {
        let finest = s.iter().copied().fold(f64::INFINITY, f64::min);
        let pool: [bool; 3] = std::array::from_fn(|a| s[a] / finest < 2.0 && size[a] / 2.0 >= MIN_FEATURE_EDGE as f64);
        if !pool.contains(&true) {
            break;
        }
        for a in (0..3).filter(|&a| pool[a]) {
            s[a] *= 2.0;
            size[a] /= 2.0;
        }
        strides.push(pool.map(|p| if p { 2 } else { 1 }));
        let previous = kernels[kernels.len() - 1];
        kernels.push(kernel(&s, previous));
    }
    let total: [usize; 3] = std::array::from_fn(|a| strides.iter().map(|st| st[a]).product());
    let patch = std::array::from_fn(|a| patch[a].div_ceil(total[a]) * total[a]);
    Topology { patch, strides, kernels }
}

/// The patch to start from: a cube of 256³ voxels' volume shaped by the spacing (the same
/// extent in mm along each axis), clipped to the median shape (nnU-Net v2).
pub fn initial_patch(spacing: [f64; 3], median_shape: [f64; 3]) -> [usize; 3] {
    let inverse = spacing.map(|s| 1.0 / s);
    let scale = (256f64.powi(3) / inverse.iter().product::<f64>()).cbrt();
    std::array::from_fn(|a| ((inverse[a] * scale).round() as usize).min(median_shape[a].round() as usize).max(1))
}

/// Feature maps at the first level: 32 on a GPU, 16 on a CPU (ours: a CPU trains a
/// quarter of the activations' work per step).
pub fn base_width(gpu: bool) -> Ruled<usize> {
    if gpu {
        ruled(32, "32 base feature maps on a GPU (nnU-Net)")
    } else {
        ruled(16, "16 base feature maps on a CPU device (issue 17: half nnU-Net's 32)")
    }
}

/// Largest number of feature maps of a level (nnU-Net's cap).
pub const MAX_WIDTH: usize = 320;

/// Feature maps per level: the base width doubling with each level, capped at
/// [`MAX_WIDTH`].
pub fn widths(base: usize, levels: usize) -> Vec<usize> {
    (0..levels).map(|l| (base << l.min(16)).min(MAX_WIDTH)).collect()
}

/// Estimated training memory of one batch, bytes: the activations a plain dynamic U-Net
/// keeps for its backward pass (per level: 2 encoder convolutions with norm and
/// activation, 3 tensors each; per decoder level the up-sampled maps, the concatenation
/// and 2 more convolutions: 15 maps of the level's width in all, 6 at the bottleneck),
/// plus the input and the logits, doubled for the gradients in flight and libtorch's
/// workspaces, in fp32; plus weights, gradients and momentum (16 bytes per parameter).
pub fn memory_estimate(topology: &Topology, widths: &[usize], in_channels: usize, classes: usize, batch: usize) -> u64 {
    let mut voxels: [f64; 3] = topology.patch.map(|p| p as f64);
    let levels = topology.strides.len();
    let mut activations = 0.0;
    let mut params = 0.0;
    let mut c_prev = in_channels as f64;
    for (l, stride) in topology.strides.iter().enumerate() {
        for a in 0..3 {
            voxels[a] /= stride[a] as f64;
        }
        let v: f64 = voxels.iter().product();
        let c = widths[l] as f64;
        let maps = if l + 1 == levels { 6.0 } else { 15.0 };
        activations += maps * c * v;
        let k: f64 = topology.kernels[l].iter().map(|&x| x as f64).product();
        // Encoder convolutions, and the decoder's (twice the input maps) and transposed one.
        params += k * c * (c_prev + c) + if l + 1 == levels { 0.0 } else { k * c * 3.0 * c + 8.0 * c * c };
        c_prev = c;
    }
    let v0: f64 = topology.patch.iter().map(|&p| p as f64).product();
    activations += (in_channels + 2 * classes) as f64 * v0;
    (4.0 * 2.0 * activations * batch as f64 + 16.0 * params) as u64
}

/// A smaller patch: the axis whose patch is largest relative to the median shape loses
/// its total stride (nnU-Net), and the topology is planned again; `None` when no axis can
/// shrink.
pub fn shrink(topo: &Topology, spacing: [f64; 3], median_shape: [f64; 3]) -> Option<Topology> {
    let total: [usize; 3] = std::array::from_fn(|a| topo.strides.iter().map(|s| s[a]).product());
    let ratio = |a: usize| topo.patch[a] as f64 / median_shape[a].max(1.0);
    let shrinkable = (0..3).filter(|&a| topo.patch[a] > total[a].max(MIN_FEATURE_EDGE));
    let axis = shrinkable.max_by(|&a, &b| ratio(a).total_cmp(&ratio(b)).then(b.cmp(&a)))?;
    let mut patch = topo.patch;
    patch[axis] -= total[axis];
    Some(topology(spacing, patch))
}

/// The patch and batch that fit `budget` bytes: start from [`initial_patch`], shrink the
/// axis whose patch is largest relative to the median shape by its total stride while a
/// batch of 2 does not fit; then the batch is as many windows as fit, at least 2, and at
/// most 5 % of the cohort's voxels per step (nnU-Net).
pub fn fit(
    spacing: [f64; 3],
    median_shape: [f64; 3],
    widths_of: &dyn Fn(usize) -> Vec<usize>,
    in_channels: usize,
    classes: usize,
    budget: u64,
    cohort_voxels: f64,
) -> (Topology, Ruled<usize>) {
    let mut topo = topology(spacing, initial_patch(spacing, median_shape));
    while memory_estimate(&topo, &widths_of(topo.strides.len()), in_channels, classes, 2) > budget {
        let Some(smaller) = shrink(&topo, spacing, median_shape) else { break };
        topo = smaller;
    }
    let w = widths_of(topo.strides.len());
    let per_window = memory_estimate(&topo, &w, in_channels, classes, 1).max(1);
    let fits = (budget / per_window) as usize;
    let patch_voxels: f64 = topo.patch.iter().map(|&p| p as f64).product();
    let share_cap = ((0.05 * cohort_voxels / patch_voxels).floor() as usize).max(2);
    let batch = fits.min(share_cap).max(2);
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let rule = format!(
        "batch = windows whose estimated memory ({:.2} GiB each) fits the {:.1} GiB budget ({fits}), at least 2, at most 5 % of the cohort's voxels per step ({share_cap}) (nnU-Net)",
        gib(per_window),
        gib(budget)
    );
    (topo, ruled(batch, rule))
}

/// Training iterations: 250 per epoch as nnU-Net, 1000 epochs on a GPU (nnU-Net's
/// 250 000); on a CPU 4 epochs (1000 iterations, the scale a few-core machine trains in
/// well under an hour with the CPU widths).
pub fn iterations(gpu: bool) -> Ruled<u64> {
    if gpu {
        ruled(250_000, "1000 epochs × 250 iterations on a GPU (nnU-Net)")
    } else {
        ruled(1000, "4 epochs × 250 iterations on a CPU device (ours: nnU-Net's 1000 epochs would take weeks on a CPU)")
    }
}

/// Training iterations from a wall-clock budget: the iterations of the warm step time
/// measured by the check that fit in `minutes` (at least 1).
pub fn iterations_in_budget(minutes: f64, step_seconds: f64, device: &str) -> Ruled<u64> {
    let n = ((minutes * 60.0) / step_seconds.max(1e-6)).floor().max(1.0) as u64;
    ruled(
        n,
        format!(
            "the training budget (--minutes {minutes}) over one step's measured time ({step_seconds:.2} s: median of 3 forward/backward passes of the planned batch on {device} after a warm-up; the loss, optimiser and data loading come on top) (ours)"
        ),
    )
}

/// Subjects held out (INFER) for evaluation: 20 % of the labelled subjects when there are
/// at least 5, else none (every subject is needed to train).
pub fn held_out_fraction(subjects: usize) -> Ruled<f64> {
    if subjects >= 5 {
        ruled(0.2, format!("20 % of the {subjects} labelled subjects held out for evaluation (ours)"))
    } else {
        ruled(0.0, format!("only {subjects} labelled subjects: none held out (ours: at least 5 needed)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: f64, std: f64, lo: f64, hi: f64) -> IntensityStats {
        IntensityStats { voxels: 100, mean, std, percentile_00_5: lo, percentile_99_5: hi }
    }

    #[test]
    fn budget_iterations_are_the_steps_that_fit() {
        // 9 minutes of 2.2 s steps: 245.45... steps, floored.
        let r = iterations_in_budget(9.0, 2.2, "Cpu");
        assert_eq!(r.value, 245);
        assert!(r.rule.contains("--minutes 9") && r.rule.contains("2.20 s"), "{}", r.rule);
        // A step longer than the budget still trains once.
        assert_eq!(iterations_in_budget(0.01, 5.0, "Cpu").value, 1);
    }

    #[test]
    fn isotropic_spacing_is_the_median() {
        let s = [[1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [0.8, 0.9, 1.1]];
        let r = target_spacing(&s, &[[100, 100, 100]; 3]);
        assert_eq!(r.value, [1.0, 1.0, 1.1]);
        assert!(r.rule.starts_with("rule: target spacing = median"), "{}", r.rule);
    }

    #[test]
    fn anisotropic_axis_takes_its_tenth_percentile() {
        // Axis 2 is 4-6 mm against 1 mm, with 30 slices against 200 voxels.
        let s = [[1.0, 1.0, 5.0], [1.0, 1.0, 6.0], [1.0, 1.0, 4.0], [1.0, 1.0, 5.0], [1.0, 1.0, 3.5]];
        let r = target_spacing(&s, &[[200, 200, 30]; 5]);
        // 10th percentile of [3.5, 4, 5, 5, 6]: 3.5 + 0.4 * 0.5 = 3.7.
        assert!((r.value[2] - 3.7).abs() < 1e-9, "{:?}", r.value);
        assert_eq!(&r.value[..2], &[1.0, 1.0]);
        assert!(r.rule.contains("axis 2 anisotropic"), "{}", r.rule);
        // Coarse but with as many voxels as the others: the median stays.
        let r = target_spacing(&s, &[[40, 40, 40]; 5]);
        assert_eq!(r.value, [1.0, 1.0, 5.0]);
    }

    #[test]
    fn ct_clips_and_zscores_with_the_cohort_foreground() {
        let f = stats(40.0, 20.0, -50.0, 200.0);
        let r = normalisation("CT", &f);
        assert_eq!(r.value, Normalisation::Ct { clip: [-50.0, 200.0], zscore: [40.0, 20.0] });
        assert_eq!(normalisation("T2", &f).value, Normalisation::PerImage);
        assert_eq!(normalisation("", &f).value, Normalisation::PerImage);
    }

    #[test]
    fn isotropic_topology_pools_every_axis_to_four_voxels() {
        let t = topology([1.0; 3], [128, 128, 128]);
        // 128 → 64 → 32 → 16 → 8 → 4: 5 poolings, 6 levels.
        assert_eq!(t.strides.len(), 6);
        assert_eq!(t.strides[0], [1, 1, 1]);
        assert!(t.strides[1..].iter().all(|s| *s == [2, 2, 2]));
        assert!(t.kernels.iter().all(|k| *k == [3, 3, 3]));
        assert_eq!(t.patch, [128, 128, 128]);
        // A patch that does not divide is rounded up.
        let t = topology([1.0; 3], [100, 100, 100]);
        assert_eq!(t.poolings(), [4, 4, 4]);
        assert_eq!(t.patch, [112, 112, 112]);
    }

    #[test]
    fn an_axis_that_stops_pooling_for_size_keeps_its_3_kernels() {
        // i and k reach 4 voxels after 3 poolings (32 → 4), j pools once more (64 → 4):
        // the last level pools j alone, which makes j's spacing twice the others', yet no
        // axis becomes flat (a 1 appears only along an axis that has never been fine).
        let t = topology([1.0; 3], [32, 64, 32]);
        assert_eq!(t.strides.last(), Some(&[1, 2, 1]));
        assert!(t.kernels.iter().all(|k| *k == [3, 3, 3]), "{:?}", t.kernels);
    }

    #[test]
    fn anisotropic_topology_waits_for_the_coarse_axis() {
        // k is 4× coarser: no pooling and 1×3×3 kernels along it until i, j catch up.
        let t = topology([1.0, 1.0, 4.0], [160, 160, 40]);
        assert_eq!(t.kernels[0], [3, 3, 1]);
        assert_eq!(t.strides[1], [2, 2, 1]);
        assert_eq!(t.kernels[1], [3, 3, 1]);
        assert_eq!(t.strides[2], [2, 2, 1]);
        // Now 4 mm everywhere: 3×3×3 and pooling of all axes.
        assert_eq!(t.kernels[2], [3, 3, 3]);
        assert_eq!(t.strides[3], [2, 2, 2]);
        let [pi, pj, pk] = t.poolings();
        assert_eq!(pi, pj);
        assert_eq!(pk + 2, pi);
        // The bottleneck is at least 4 voxels along every axis.
        assert!(t.patch[2] >> pk >= 4 && t.patch[0] >> pi >= 4);
    }

    #[test]
    fn widths_double_up_to_320() {
        assert_eq!(widths(32, 6), [32, 64, 128, 256, 320, 320]);
        assert_eq!(widths(16, 3), [16, 32, 64]);
        assert_eq!(base_width(true).value, 32);
        assert_eq!(base_width(false).value, 16);
    }

    #[test]
    fn the_patch_shrinks_to_the_budget_and_the_batch_fills_it() {
        let widths = |l| widths(32, l);
        let big = 1u64 << 40;
        let (t, b) = fit([1.0; 3], [300.0, 300.0, 300.0], &widths, 1, 2, big, 1e12);
        assert_eq!(t.patch, [256, 256, 256]);
        assert!(b.value > 2);
        let small = 2u64 << 30;
        let (t2, b2) = fit([1.0; 3], [300.0, 300.0, 300.0], &widths, 1, 2, small, 1e12);
        assert!(t2.patch.iter().product::<usize>() < t.patch.iter().product::<usize>());
        assert!(memory_estimate(&t2, &widths(t2.strides.len()), 1, 2, 2) <= small);
        assert_eq!(b2.value, (small / memory_estimate(&t2, &widths(t2.strides.len()), 1, 2, 1)).max(2) as usize);
        // The batch covers at most 5 % of a small cohort's voxels (but is at least 2).
        let (_, b3) = fit([1.0; 3], [64.0, 64.0, 64.0], &widths, 1, 2, big, 64.0f64.powi(3) * 3.0);
        assert_eq!(b3.value, 2);
    }

    #[test]
    fn axis_codes_follow_the_majority() {
        let codes: Vec<String> = ["LPS", "RAS", "LPS"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(target_axcodes(&codes).value, "LPS");
        let tie: Vec<String> = ["RAS", "LPS"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(target_axcodes(&tie).value, "RAS");
        let tie: Vec<String> = ["RPI", "LPS"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(target_axcodes(&tie).value, "RAS");
    }
}
