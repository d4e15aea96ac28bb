//! Intensity normalisation: foreground masks (threshold, Otsu, mean) and whitening
//! (z-scores per channel, with statistics taken inside the mask).
//!
//! Non-finite voxels (NaN, ±∞) never belong to a mask and never enter a statistic; they
//! pass through whitening as non-finite values.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::PreprocessError;

/// Voxels per parallel work item; fixed so that sums do not depend on the thread count.
const CHUNK: usize = 1 << 16;

/// Which voxels of a channel are foreground (always only finite voxels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskRule {
    /// Every finite voxel.
    All,
    /// Voxels strictly above the given value.
    Threshold(f32),
    /// Voxels strictly above the channel's Otsu threshold ([`otsu_threshold`] with
    /// [`OTSU_BINS`] bins).
    Otsu,
    /// Voxels strictly above the mean of all the channel's finite voxels (NiftyNet's
    /// `mean_plus` mask, without its hole filling or morphology).
    Mean,
    /// Voxels strictly below the given value (NiftyNet's `threshold_minus`).
    ThresholdBelow(f32),
    /// Voxels strictly below the channel's Otsu threshold (NiftyNet's `otsu_minus`).
    OtsuBelow,
}

impl std::fmt::Display for MaskRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => write!(f, "all voxels"),
            Self::Threshold(t) => write!(f, "voxels > {t}"),
            Self::Otsu => write!(f, "voxels > Otsu threshold"),
            Self::Mean => write!(f, "voxels > channel mean"),
            Self::ThresholdBelow(t) => write!(f, "voxels < {t}"),
            Self::OtsuBelow => write!(f, "voxels < Otsu threshold"),
        }
    }
}

/// Histogram bins used by [`MaskRule::Otsu`].
pub const OTSU_BINS: usize = 256;

/// The statistics a channel was whitened with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Mean of the masked voxels.
    pub mean: f64,
    /// Population standard deviation of the masked voxels (0 for a constant channel).
    pub std: f64,
    /// How many voxels the statistics were computed on.
    pub voxels: usize,
    /// True when the mask selected no voxel and the statistics were taken over all
    /// finite voxels of the channel instead.
    pub whole_channel: bool,
}

/// The voxel count of one channel of a buffer of `len` values.
fn channel_len(len: usize, channels: usize) -> Result<usize, PreprocessError> {
    if channels == 0 || len == 0 {
        return Err(PreprocessError::EmptyVolume { channels, dims: [len, 1, 1] });
    }
    if len.checked_rem(channels) != Some(0) {
        return Err(PreprocessError::InvalidParameter {
            what: "volume buffer",
            expected: "a length divisible by the channel count",
            got: format!("{len} values for {channels} channel(s)"),
        });
    }
    Ok(len / channels)
}

/// Finite minimum and maximum, or `None` when no value is finite.
fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    values
        .par_chunks(CHUNK)
        .map(|c| {
            c.iter().filter(|v| v.is_finite()).fold(None, |acc: Option<(f32, f32)>, &v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// Otsu's threshold (Otsu 1979) of the finite values: the histogram of `bins` equal bins
/// between the minimum and the maximum is split where the between-class variance
/// `ω₀·ω₁·(μ₀ − μ₁)²` is largest; when several adjacent splits tie (empty bins between
/// two modes) the middle one is taken. The threshold returned is the upper edge of the
/// last background bin: foreground is `value > threshold`.
///
/// A constant input returns its value (so nothing is above it).
///
/// # Errors
/// [`PreprocessError::InvalidParameter`] for `bins < 2`; [`PreprocessError::NoVoxels`]
/// when no value is finite.
pub fn otsu_threshold(values: &[f32], bins: usize) -> Result<f32, PreprocessError> {
    if bins < 2 {
        return Err(PreprocessError::InvalidParameter {
            what: "Otsu histogram bins",
            expected: "at least 2",
            got: bins.to_string(),
        });
    }
    let (lo, hi) = finite_range(values).ok_or(PreprocessError::NoVoxels {
        channel: 0,
        mask: MaskRule::Otsu.to_string(),
        what: "an Otsu threshold",
    })?;
    if lo == hi {
        return Ok(lo);
    }
    let (lo64, width) = (f64::from(lo), (f64::from(hi) - f64::from(lo)) / bins as f64);
    let bin_of = |v: f32| (((f64::from(v) - lo64) / width) as usize).min(bins - 1);
    let hist = values
        .par_chunks(CHUNK)
        .map(|c| {
            let mut h = vec![0u64; bins];
            for &v in c.iter().filter(|v| v.is_finite()) {
                h[bin_of(v)] += 1;
            }
            h
        })
        .reduce(
            || vec![0u64; bins],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let total: f64 = hist.iter().map(|&c| c as f64).sum();
    let centre = |b: usize| lo64 + (b as f64 + 0.5) * width;
    let sum_all: f64 = hist.iter().enumerate().map(|(b, &c)| c as f64 * centre(b)).sum();
    let (mut w0, mut sum0) = (0.0f64, 0.0f64);
    let mut best = (f64::NEG_INFINITY, 0usize, 0usize);
    for (t, &count) in hist.iter().enumerate().take(bins - 1) {
        w0 += count as f64;
        sum0 += count as f64 * centre(t);
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let diff = sum0 / w0 - (sum_all - sum0) / w1;
        let between = w0 * w1 * diff * diff;
        if between > best.0 {
            best = (between, t, t);
        } else if between == best.0 && best.2 + 1 == t {
            best.2 = t;
        }
    }
    let t = (best.1 + best.2) / 2;
    Ok((lo64 + (t + 1) as f64 * width) as f32)
}

/// The comparison a rule selects foreground voxels by: finite, and strictly above (or,
/// for the `…Below` rules, below) a threshold; every finite voxel for [`MaskRule::All`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    at: Option<f32>,
    below: bool,
}

impl Cut {
    /// Whether `v` is foreground.
    #[inline]
    pub(crate) fn keeps(self, v: f32) -> bool {
        v.is_finite() && self.at.is_none_or(|t| if self.below { v < t } else { v > t })
    }
}

/// The [`Cut`] of `rule` on `channel` (Otsu's or the mean's threshold computed here).
pub(crate) fn rule_threshold(channel: &[f32], rule: MaskRule) -> Result<Cut, PreprocessError> {
    let otsu = || -> Result<f32, PreprocessError> {
        Ok(match finite_range(channel) {
            None => f32::INFINITY,
            Some(_) => otsu_threshold(channel, OTSU_BINS)?,
        })
    };
    let (at, below) = match rule {
        MaskRule::All => (None, false),
        MaskRule::Threshold(t) => (Some(t), false),
        MaskRule::ThresholdBelow(t) => (Some(t), true),
        MaskRule::Otsu => (Some(otsu()?), false),
        MaskRule::OtsuBelow => (Some(otsu()?), true),
        MaskRule::Mean => (
            Some(match moments(channel, |_| true) {
                (0, _, _) => f32::INFINITY,
                (_, mean, _) => mean as f32,
            }),
            false,
        ),
    };
    Ok(Cut { at, below })
}

/// Count, mean and population variance of the finite values selected by `keep`
/// (two passes, in f64, deterministic).
fn moments(values: &[f32], keep: impl Fn(f32) -> bool + Sync) -> (usize, f64, f64) {
    let sel = |v: f32| v.is_finite() && keep(v);
    let partial: Vec<(usize, f64)> = values
        .par_chunks(CHUNK)
        .map(|c| c.iter().filter(|&&v| sel(v)).fold((0, 0.0), |(n, s), &v| (n + 1, s + f64::from(v))))
        .collect();
    let (n, sum) = partial.iter().fold((0, 0.0), |(n, s), &(m, t)| (n + m, s + t));
    if n == 0 {
        return (0, 0.0, 0.0);
    }
    let mean = sum / n as f64;
    let squares: Vec<f64> = values
        .par_chunks(CHUNK)
        .map(|c| c.iter().filter(|&&v| sel(v)).map(|&v| (f64::from(v) - mean).powi(2)).sum())
        .collect();
    (n, mean, squares.iter().sum::<f64>() / n as f64)
}

/// The foreground mask of one channel under `rule`.
///
/// # Shapes
/// `channel`: the voxels of one channel; returns one `bool` per voxel.
///
/// # Errors
/// [`PreprocessError::EmptyVolume`] for an empty channel; [`PreprocessError::Allocation`].
pub fn foreground_mask(channel: &[f32], rule: MaskRule) -> Result<Vec<bool>, PreprocessError> {
    channel_len(channel.len(), 1)?;
    let threshold = rule_threshold(channel, rule)?;
    let mut mask =
        crate::budget::try_with_capacity(channel.len(), &|| format!("a foreground mask of {} voxels", channel.len()))?;
    mask.extend(channel.iter().map(|&v| threshold.keeps(v)));
    Ok(mask)
}

/// Subtracts `mean` and divides by `std` (by 1 when `std` is 0 or not finite), in place.
fn apply(channel: &mut [f32], mean: f64, std: f64) {
    let scale = if std > 0.0 && std.is_finite() { 1.0 / std } else { 1.0 };
    channel.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            *v = ((f64::from(*v) - mean) * scale) as f32;
        }
    });
}

/// Fixed intensity normalisation of one image section (nnU-Net's CT scheme): clip to a
/// range, then z-score with statistics learned once for the whole dataset, so that an
/// intensity means the same in every image (Hounsfield units do).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FixedIntensity {
    /// `[lo, hi]` every finite voxel is clipped to.
    pub clip: Option<[f64; 2]>,
    /// `[mean, std]` of the z-score; `None` leaves the clipped values to whitening.
    pub zscore: Option<[f64; 2]>,
}

impl FixedIntensity {
    /// Applies the clip, then the z-score, to one channel in place; non-finite voxels
    /// stay as they are.
    pub fn apply(&self, channel: &mut [f32]) {
        if let Some([lo, hi]) = self.clip {
            channel.par_chunks_mut(CHUNK).for_each(|c| {
                for v in c.iter_mut().filter(|v| v.is_finite()) {
                    *v = f64::from(*v).clamp(lo, hi) as f32;
                }
            });
        }
        if let Some([mean, std]) = self.zscore {
            apply(channel, mean, std);
        }
    }
}

/// Whitens each channel in place: `x ← (x − mean) / std` over every voxel, with the mean
/// and (population) standard deviation of the voxels selected by `rule` in that channel
/// (NiftyNet's `whitening` with a foreground mask).
///
/// * A mask that selects no voxel falls back to all finite voxels of the channel
///   (reported as [`ChannelStats::whole_channel`]).
/// * A constant channel (std 0) is only centred: every finite voxel becomes 0, never NaN
///   or ∞.
/// * A channel with no finite voxel is left unchanged (stats: 0 voxels, mean 0, std 0).
///
/// # Shapes
/// `data`: `channels` channels one after another (any spatial layout); returns one
/// [`ChannelStats`] per channel.
///
/// # Errors
/// [`PreprocessError::EmptyVolume`] / [`PreprocessError::InvalidParameter`] when `data`
/// is empty or not divisible into `channels` channels.
pub fn whiten(data: &mut [f32], channels: usize, rule: MaskRule) -> Result<Vec<ChannelStats>, PreprocessError> {
    let n = channel_len(data.len(), channels)?;
    data.chunks_mut(n)
        .map(|channel| {
            let threshold = rule_threshold(channel, rule)?;
            let (count, mean, var) = moments(channel, |v| threshold.keeps(v));
            Ok(finish(channel, count, mean, var))
        })
        .collect()
}

/// As [`whiten`], with one given mask (e.g. a brain mask read from a file) shared by all
/// channels: `true` marks a foreground voxel.
///
/// # Shapes
/// `mask`: one entry per voxel of one channel (`data.len() / channels`).
///
/// # Errors
/// As [`whiten`]; [`PreprocessError::MaskLength`] for a mask of another length.
pub fn whiten_with_mask(
    data: &mut [f32],
    channels: usize,
    mask: &[bool],
) -> Result<Vec<ChannelStats>, PreprocessError> {
    let n = channel_len(data.len(), channels)?;
    if mask.len() != n {
        return Err(PreprocessError::MaskLength { expected: n, got: mask.len() });
    }
    Ok(data
        .chunks_mut(n)
        .map(|channel| {
            let (count, sum) = masked_sum(channel, mask, |v| v);
            let mean = if count > 0 { sum / count as f64 } else { 0.0 };
            let (_, squares) = masked_sum(channel, mask, |v| (v - mean).powi(2));
            let var = if count > 0 { squares / count as f64 } else { 0.0 };
            finish(channel, count, mean, var)
        })
        .collect())
}

/// The count of finite voxels inside `mask`, and the sum of `f` over their values, in
/// parallel chunks added in order (the same result with any number of threads).
fn masked_sum(channel: &[f32], mask: &[bool], f: impl Fn(f64) -> f64 + Sync) -> (usize, f64) {
    let partial: Vec<(usize, f64)> = channel
        .par_chunks(CHUNK)
        .zip(mask.par_chunks(CHUNK))
        .map(|(c, m)| {
            c.iter()
                .zip(m)
                .filter(|(v, &m)| m && v.is_finite())
                .fold((0, 0.0), |(n, s), (&v, _)| (n + 1, s + f(f64::from(v))))
        })
        .collect();
    partial.iter().fold((0, 0.0), |(n, s), &(m, t)| (n + m, s + t))
}

/// Applies the statistics (or the whole-channel fallback) and reports them.
fn finish(channel: &mut [f32], count: usize, mean: f64, var: f64) -> ChannelStats {
    let (count, mean, var, whole_channel) = if count > 0 {
        (count, mean, var, false)
    } else {
        let (n, m, v) = moments(channel, |_| true);
        (n, m, v, true)
    };
    let std = var.sqrt();
    if count > 0 {
        apply(channel, mean, std);
    }
    ChannelStats { mean, std, voxels: count, whole_channel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bimodal() -> Vec<f32> {
        // 600 voxels around 10 and 400 around 100, with a little spread.
        (0..1000).map(|i| if i % 5 < 3 { 10.0 + (i % 7) as f32 } else { 100.0 + (i % 11) as f32 }).collect()
    }

    fn mean_std(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let m = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (m, (values.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n).sqrt())
    }

    #[test]
    fn fixed_intensity_clips_then_zscores() {
        let mut c = vec![-1000.0, 0.0, 50.0, 3000.0, f32::NAN];
        FixedIntensity { clip: Some([-100.0, 200.0]), zscore: Some([50.0, 25.0]) }.apply(&mut c);
        assert_eq!(&c[..4], &[-6.0, -2.0, 0.0, 6.0]);
        assert!(c[4].is_nan());
        let mut only_clip = vec![-5.0, 5.0];
        FixedIntensity { clip: Some([0.0, 1.0]), zscore: None }.apply(&mut only_clip);
        assert_eq!(only_clip, [0.0, 1.0]);
    }

    #[test]
    fn preprocess_otsu_splits_bimodal_modes() {
        let data = bimodal();
        let t = otsu_threshold(&data, 256).unwrap();
        assert!(t > 16.0 && t < 100.0, "threshold {t}");
        // The middle of the empty gap between the modes.
        assert!((t - 58.0).abs() < 5.0, "threshold {t}");
        let mask = foreground_mask(&data, MaskRule::Otsu).unwrap();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 400);
        assert!(data.iter().zip(&mask).all(|(&v, &m)| m == (v >= 100.0)));
        assert_eq!(otsu_threshold(&[3.0; 10], 256).unwrap(), 3.0);
        assert!(matches!(otsu_threshold(&[f32::NAN; 3], 256), Err(PreprocessError::NoVoxels { .. })));
        assert!(matches!(otsu_threshold(&data, 1), Err(PreprocessError::InvalidParameter { .. })));
    }

    #[test]
    fn preprocess_mask_rules() {
        let data = [0.0, 1.0, 2.0, 3.0, f32::NAN, 10.0];
        assert_eq!(foreground_mask(&data, MaskRule::All).unwrap(), [true, true, true, true, false, true]);
        assert_eq!(foreground_mask(&data, MaskRule::Threshold(2.0)).unwrap(), [false, false, false, true, false, true]);
        // Mean of the finite voxels is 3.2.
        assert_eq!(foreground_mask(&data, MaskRule::Mean).unwrap(), [false, false, false, false, false, true]);
        assert!(matches!(foreground_mask(&[], MaskRule::All), Err(PreprocessError::EmptyVolume { .. })));
    }

    #[test]
    fn preprocess_whitening_gives_zero_mean_unit_std_inside_mask() {
        let mut data = bimodal();
        let mut second: Vec<f32> = (0..1000).map(|i| (i as f32).sin() * 3.0 + 7.0).collect();
        data.append(&mut second);
        let original = data.clone();
        let stats = whiten(&mut data, 2, MaskRule::Otsu).unwrap();
        assert_eq!(stats.len(), 2);
        assert!(!stats[0].whole_channel);
        let fg: Vec<f32> =
            data[..1000].iter().zip(&original[..1000]).filter(|(_, &o)| o >= 100.0).map(|(&v, _)| v).collect();
        let (m, s) = mean_std(&fg);
        assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "mean {m} std {s}");
        // Background voxels use the same transform.
        assert!((f64::from(data[0]) - (10.0 - stats[0].mean) / stats[0].std).abs() < 1e-5);

        let mut all = original.clone();
        whiten(&mut all, 2, MaskRule::All).unwrap();
        for c in all.chunks(1000) {
            let (m, s) = mean_std(c);
            assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "mean {m} std {s}");
        }

        let mut masked = original.clone();
        let mask: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        whiten_with_mask(&mut masked, 2, &mask).unwrap();
        for c in masked.chunks(1000) {
            let inside: Vec<f32> = c.iter().zip(&mask).filter(|(_, &m)| m).map(|(&v, _)| v).collect();
            let (m, s) = mean_std(&inside);
            assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "mean {m} std {s}");
        }
        assert!(matches!(whiten_with_mask(&mut masked, 2, &mask[..10]), Err(PreprocessError::MaskLength { .. })));
        assert!(matches!(whiten(&mut masked, 3, MaskRule::All), Err(PreprocessError::InvalidParameter { .. })));
    }

    #[test]
    fn preprocess_whitening_constant_channel_is_finite() {
        for rule in [MaskRule::All, MaskRule::Otsu, MaskRule::Mean, MaskRule::Threshold(0.0)] {
            let mut data = vec![5.0f32; 64];
            let stats = whiten(&mut data, 1, rule).unwrap();
            assert!(data.iter().all(|&v| v == 0.0), "{rule}: {data:?}");
            assert_eq!(stats[0].std, 0.0);
            assert_eq!(stats[0].voxels, 64);
        }
        // Threshold above every voxel: falls back to the whole channel.
        let mut data: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let stats = whiten(&mut data, 1, MaskRule::Threshold(100.0)).unwrap();
        assert!(stats[0].whole_channel);
        assert!(data.iter().all(|v| v.is_finite()));
        // No finite voxel at all: unchanged.
        let mut nan = vec![f32::NAN; 4];
        let stats = whiten(&mut nan, 1, MaskRule::All).unwrap();
        assert_eq!(stats[0].voxels, 0);
        assert!(nan.iter().all(|v| v.is_nan()));
    }
}
