//! Nyúl histogram standardisation (Nyúl & Udupa 1999; Nyúl, Udupa & Zhang 2000):
//! learn intensity landmarks on training volumes, map each volume's landmarks onto them.
//!
//! # Method
//! For a list of percentiles `p₁ < p₂ < … < p_L` (the first and last are the low and
//! high cutoffs, e.g. 0.01 and 0.99, the others deciles or quartiles), each training
//! volume's channel gives landmark intensities `x₁ ≤ … ≤ x_L` (percentiles of its
//! foreground voxels). Its `[x₁, x_L]` is mapped linearly onto the standard scale
//! `[s₁, s₂]`, and the mapped landmarks are averaged over the training volumes: the
//! standard landmarks `y₁ = s₁ < y₂ ≤ … < y_L = s₂`. A volume is standardised by the
//! piecewise-linear map that sends its own landmarks `xₖ` to `yₖ`, continued beyond `x₁`
//! and `x_L` with the slopes of the first and last segments.
//!
//! Percentiles use linear interpolation between order statistics at rank `p·(n − 1)`
//! (numpy's default). Computing them copies the channel's foreground values once.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::normalise::{rule_threshold, MaskRule};
use super::saved::SavedModel;
use super::PreprocessError;

/// The `format` field of a saved model.
pub const HISTOGRAM_FORMAT: &str = "niftyhost-histogram-standardisation";
/// The version of the saved model format this build writes and reads.
pub const HISTOGRAM_VERSION: u32 = 1;

const WHAT: &str = "histogram standardisation model";

/// What to learn: the percentiles, the standard scale and the foreground mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramConfig {
    /// Strictly increasing fractions in `[0, 1]`; the first and last are the cutoffs.
    pub percentiles: Vec<f64>,
    /// The standard scale `[s₁, s₂]` the cutoffs are mapped to.
    pub scale: [f64; 2],
    /// Which voxels' intensities define the landmarks (per channel).
    pub mask: MaskRule,
}

impl HistogramConfig {
    /// Cutoffs plus the deciles 0.1..0.9 that lie strictly between them (NiftyNet's
    /// `percentile` landmarks).
    pub fn deciles(cutoff: [f64; 2], scale: [f64; 2], mask: MaskRule) -> Self {
        Self::with_inner(cutoff, &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], scale, mask)
    }

    /// Cutoffs plus the quartiles 0.25, 0.5, 0.75 that lie strictly between them.
    pub fn quartiles(cutoff: [f64; 2], scale: [f64; 2], mask: MaskRule) -> Self {
        Self::with_inner(cutoff, &[0.25, 0.5, 0.75], scale, mask)
    }

    fn with_inner(cutoff: [f64; 2], inner: &[f64], scale: [f64; 2], mask: MaskRule) -> Self {
        let mut percentiles = vec![cutoff[0]];
        percentiles.extend(inner.iter().copied().filter(|&p| p > cutoff[0] && p < cutoff[1]));
        percentiles.push(cutoff[1]);
        Self { percentiles, scale, mask }
    }

    /// Checks the percentiles (at least two, strictly increasing, in `[0, 1]`) and the
    /// scale (finite, `s₁ < s₂`).
    ///
    /// # Errors
    /// [`PreprocessError::InvalidPercentiles`], [`PreprocessError::InvalidScale`].
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let p = &self.percentiles;
        let ok = p.len() >= 2 && p.iter().all(|v| (0.0..=1.0).contains(v)) && p.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(PreprocessError::InvalidPercentiles { percentiles: p.clone() });
        }
        let [s1, s2] = self.scale;
        if !(s1.is_finite() && s2.is_finite() && s1 < s2) {
            return Err(PreprocessError::InvalidScale { scale: self.scale });
        }
        Ok(())
    }
}

impl Default for HistogramConfig {
    /// Cutoffs 0.01 and 0.99, deciles, standard scale `[0, 100]`, all voxels.
    fn default() -> Self {
        Self::deciles([0.01, 0.99], [0.0, 100.0], MaskRule::All)
    }
}

/// The foreground values of a channel under `mask`, falling back to all finite values
/// when the mask selects none (as whitening does).
fn foreground_values(channel: &[f32], mask: MaskRule) -> Result<Vec<f32>, PreprocessError> {
    if channel.is_empty() {
        return Err(PreprocessError::EmptyVolume { channels: 1, dims: [0, 1, 1] });
    }
    let threshold = rule_threshold(channel, mask)?;
    let mut values: Vec<f32> = channel.iter().copied().filter(|&v| threshold.keeps(v)).collect();
    if values.is_empty() {
        values = channel.iter().copied().filter(|v| v.is_finite()).collect();
    }
    Ok(values)
}

/// The landmark intensities of one channel: its foreground percentiles.
///
/// # Shapes
/// `channel`: the voxels of one channel; returns one value per percentile.
///
/// # Errors
/// [`PreprocessError::InvalidPercentiles`] for percentiles not strictly increasing in
/// `[0, 1]`; [`PreprocessError::NoVoxels`] when the channel has no finite voxel;
/// [`PreprocessError::EmptyVolume`] for an empty channel.
pub fn image_landmarks(channel: &[f32], percentiles: &[f64], mask: MaskRule) -> Result<Vec<f64>, PreprocessError> {
    let ok = !percentiles.is_empty()
        && percentiles.iter().all(|v| (0.0..=1.0).contains(v))
        && percentiles.windows(2).all(|w| w[0] < w[1]);
    if !ok {
        return Err(PreprocessError::InvalidPercentiles { percentiles: percentiles.to_vec() });
    }
    let mut values = foreground_values(channel, mask)?;
    if values.is_empty() {
        return Err(PreprocessError::NoVoxels { channel: 0, mask: mask.to_string(), what: "landmarks" });
    }
    let last = values.len() - 1;
    let positions: Vec<(usize, usize, f64)> = percentiles
        .iter()
        .map(|&p| {
            let pos = p * last as f64;
            let lo = (pos.floor() as usize).min(last);
            (lo, (lo + 1).min(last), pos - lo as f64)
        })
        .collect();
    // Select the needed order statistics in increasing rank, each in the part of the
    // buffer that the previous selection left above it.
    let mut ranks: Vec<usize> = positions.iter().flat_map(|&(lo, hi, _)| [lo, hi]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut start = 0;
    for &r in &ranks {
        values[start..].select_nth_unstable_by(r - start, f32::total_cmp);
        start = r + 1;
    }
    Ok(positions
        .iter()
        .map(|&(lo, hi, w)| {
            let (a, b) = (f64::from(values[lo]), f64::from(values[hi]));
            if w == 0.0 {
                a
            } else {
                a + (b - a) * w
            }
        })
        .collect())
}

/// Accumulates training volumes one at a time (so only one is in memory), then
/// [`HistogramTrainer::finish`]es into a [`HistogramModel`].
#[derive(Debug, Clone)]
pub struct HistogramTrainer {
    config: HistogramConfig,
    channels: Option<usize>,
    sums: Vec<Vec<f64>>,
    volumes: usize,
}

impl HistogramTrainer {
    /// A trainer for `config`.
    ///
    /// # Errors
    /// As [`HistogramConfig::validate`].
    pub fn new(config: HistogramConfig) -> Result<Self, PreprocessError> {
        config.validate()?;
        Ok(Self { config, channels: None, sums: Vec::new(), volumes: 0 })
    }

    /// Adds one training volume (all its channels).
    ///
    /// # Shapes
    /// `data`: `channels` channels one after another; every volume must have the same
    /// channel count.
    ///
    /// # Errors
    /// [`PreprocessError::ChannelMismatch`] for another channel count than the first
    /// volume's; [`PreprocessError::EmptyVolume`] / [`PreprocessError::InvalidParameter`]
    /// for a buffer that does not split into `channels`; [`PreprocessError::NoVoxels`]
    /// for a channel with no finite voxel; [`PreprocessError::InvalidModel`] for a
    /// channel whose low and high cutoff intensities are equal (nothing to map). On
    /// error the trainer is unchanged.
    pub fn add(&mut self, data: &[f32], channels: usize) -> Result<(), PreprocessError> {
        if data.is_empty() || data.len().checked_rem(channels) != Some(0) {
            return Err(PreprocessError::InvalidParameter {
                what: "training volume",
                expected: "a non-empty buffer divisible into the channel count",
                got: format!("{} values for {channels} channel(s)", data.len()),
            });
        }
        if let Some(expected) = self.channels {
            if expected != channels {
                return Err(PreprocessError::ChannelMismatch {
                    what: "histogram training volume",
                    expected,
                    got: channels,
                });
            }
        }
        let [s1, s2] = self.config.scale;
        let n = data.len() / channels;
        let mut mapped = Vec::with_capacity(channels);
        for (c, channel) in data.chunks(n).enumerate() {
            let x = image_landmarks(channel, &self.config.percentiles, self.config.mask).map_err(|e| match e {
                PreprocessError::NoVoxels { mask, what, .. } => PreprocessError::NoVoxels { channel: c, mask, what },
                other => other,
            })?;
            let (lo, hi) = (x[0], x[x.len() - 1]);
            if hi <= lo {
                return Err(PreprocessError::InvalidModel {
                    what: "histogram training volume",
                    reason: format!(
                        "channel {c} of training volume {} has equal cutoff intensities ({lo}); expected a non-constant foreground",
                        self.volumes
                    ),
                });
            }
            mapped.push(x.iter().map(|v| s1 + (v - lo) / (hi - lo) * (s2 - s1)).collect::<Vec<f64>>());
        }
        if self.channels.is_none() {
            self.channels = Some(channels);
            self.sums = vec![vec![0.0; self.config.percentiles.len()]; channels];
        }
        for (sum, m) in self.sums.iter_mut().zip(mapped) {
            sum.iter_mut().zip(m).for_each(|(s, v)| *s += v);
        }
        self.volumes += 1;
        Ok(())
    }

    /// The learned model: the mean mapped landmarks per channel (the ends are exactly
    /// `s₁` and `s₂`), every number rounded to 15 significant digits so that the JSON
    /// file reads back bit-exactly.
    ///
    /// # Errors
    /// [`PreprocessError::NoTrainingData`] when no volume was added.
    pub fn finish(self) -> Result<HistogramModel, PreprocessError> {
        if self.volumes == 0 {
            return Err(PreprocessError::NoTrainingData { what: "histogram landmarks" });
        }
        let n = self.volumes as f64;
        let [s1, s2] = self.config.scale;
        let landmarks = self
            .sums
            .into_iter()
            .map(|sum| {
                let mut y: Vec<f64> = sum.into_iter().map(|s| short(s / n)).collect();
                let last = y.len() - 1;
                (y[0], y[last]) = (short(s1), short(s2));
                y
            })
            .collect();
        Ok(HistogramModel {
            format: HISTOGRAM_FORMAT.to_string(),
            version: HISTOGRAM_VERSION,
            percentiles: self.config.percentiles.into_iter().map(short).collect(),
            scale: self.config.scale.map(short),
            mask: self.config.mask,
            landmarks,
            training_volumes: self.volumes,
        })
    }
}

/// `v` rounded to 15 significant digits. The workspace's `serde_json` (built without its
/// `float_roundtrip` feature) reads numbers of up to 15 significant digits exactly, but
/// may be off by an ulp for the 17 digits a full `f64` can need; rounding the stored
/// numbers (a relative change below 10⁻¹⁵) makes saving and loading a model exact, so
/// training and inference standardise with identical numbers.
fn short(v: f64) -> f64 {
    format!("{v:.14e}").parse().unwrap_or(v)
}

/// A learned standardisation: for each channel, the standard landmarks of the
/// percentiles. Saved as JSON, e.g.
///
/// ```json
/// {"format": "niftyhost-histogram-standardisation", "version": 1,
///  "percentiles": [0.01, 0.25, 0.5, 0.75, 0.99], "scale": [0.0, 100.0], "mask": "otsu",
///  "landmarks": [[0.0, 21.3, 40.2, 61.8, 100.0]], "training_volumes": 12}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramModel {
    /// Always [`HISTOGRAM_FORMAT`].
    pub format: String,
    /// The format version, [`HISTOGRAM_VERSION`].
    pub version: u32,
    /// The percentiles the landmarks belong to (first and last: the cutoffs).
    pub percentiles: Vec<f64>,
    /// The standard scale `[s₁, s₂]`.
    pub scale: [f64; 2],
    /// The foreground mask rule used for training, and used again when applying.
    pub mask: MaskRule,
    /// Per channel, one standard landmark per percentile, nondecreasing.
    pub landmarks: Vec<Vec<f64>>,
    /// How many training volumes were averaged.
    pub training_volumes: usize,
}

impl HistogramModel {
    /// Learns a model from training volumes `(data, channels)`; see [`HistogramTrainer`]
    /// to add them one at a time.
    ///
    /// # Errors
    /// As [`HistogramTrainer::add`] and [`HistogramTrainer::finish`].
    pub fn learn<'a>(
        config: HistogramConfig,
        volumes: impl IntoIterator<Item = (&'a [f32], usize)>,
    ) -> Result<Self, PreprocessError> {
        let mut trainer = HistogramTrainer::new(config)?;
        for (data, channels) in volumes {
            trainer.add(data, channels)?;
        }
        trainer.finish()
    }

    /// The number of channels the model was trained on.
    pub fn channels(&self) -> usize {
        self.landmarks.len()
    }

    /// Checks the format, version and internal consistency (as after loading).
    ///
    /// # Errors
    /// [`PreprocessError::UnsupportedFormat`], [`PreprocessError::InvalidModel`], and as
    /// [`HistogramConfig::validate`].
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.format != HISTOGRAM_FORMAT || self.version != HISTOGRAM_VERSION {
            return Err(PreprocessError::UnsupportedFormat {
                what: WHAT,
                expected_format: HISTOGRAM_FORMAT,
                expected_version: HISTOGRAM_VERSION,
                got: format!("format {:?} version {}", self.format, self.version),
            });
        }
        HistogramConfig { percentiles: self.percentiles.clone(), scale: self.scale, mask: self.mask }.validate()?;
        if self.landmarks.is_empty() {
            return Err(PreprocessError::InvalidModel {
                what: WHAT,
                reason: "expected landmarks for at least one channel, got none".into(),
            });
        }
        for (c, y) in self.landmarks.iter().enumerate() {
            let ok = y.len() == self.percentiles.len()
                && y.iter().all(|v| v.is_finite())
                && y.windows(2).all(|w| w[0] <= w[1]);
            if !ok {
                return Err(PreprocessError::InvalidModel {
                    what: WHAT,
                    reason: format!(
                        "channel {c}: expected {} finite nondecreasing landmarks, got {y:?}",
                        self.percentiles.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Standardises every channel in place: the piecewise-linear map from the channel's
    /// own landmarks (percentiles of its foreground under the model's mask) to the
    /// standard landmarks, applied to all its voxels, extended linearly beyond the ends.
    /// The map is nondecreasing. Where several landmarks of the volume coincide the map
    /// jumps there (a value equal to them takes the lowest of their standard landmarks);
    /// a channel whose landmarks all coincide maps every voxel at or below them to `s₁`
    /// and above them to `s₂`. Non-finite voxels stay non-finite.
    ///
    /// # Shapes
    /// `data`: `channels` channels one after another.
    ///
    /// # Errors
    /// [`PreprocessError::ChannelMismatch`] for another channel count than trained;
    /// [`PreprocessError::NoVoxels`] for a channel with no finite voxel; as
    /// [`HistogramModel::validate`]. Channels before a failing one are already mapped.
    pub fn apply(&self, data: &mut [f32], channels: usize) -> Result<(), PreprocessError> {
        self.validate()?;
        if channels != self.channels() {
            return Err(PreprocessError::ChannelMismatch { what: WHAT, expected: self.channels(), got: channels });
        }
        if data.is_empty() || data.len().checked_rem(channels) != Some(0) {
            return Err(PreprocessError::InvalidParameter {
                what: "volume buffer",
                expected: "a non-empty buffer divisible into the channel count",
                got: format!("{} values for {channels} channel(s)", data.len()),
            });
        }
        let n = data.len() / channels;
        for (c, channel) in data.chunks_mut(n).enumerate() {
            let x = image_landmarks(channel, &self.percentiles, self.mask).map_err(|e| match e {
                PreprocessError::NoVoxels { mask, what, .. } => PreprocessError::NoVoxels { channel: c, mask, what },
                other => other,
            })?;
            let map = PiecewiseLinear::new(x, self.landmarks[c].clone());
            channel.par_chunks_mut(1 << 16).for_each(|chunk| {
                for v in chunk {
                    if v.is_finite() {
                        *v = map.eval(f64::from(*v)) as f32;
                    }
                }
            });
        }
        Ok(())
    }
}

impl SavedModel for HistogramModel {
    const WHAT: &'static str = WHAT;
    const FORMAT: &'static str = HISTOGRAM_FORMAT;
    const VERSION: u32 = HISTOGRAM_VERSION;

    fn validate(&self) -> Result<(), PreprocessError> {
        HistogramModel::validate(self)
    }
}

/// A nondecreasing piecewise-linear map through `(xₖ, yₖ)`, continued linearly beyond
/// the ends with the slope of the first (last) segment of positive width (0 if none).
struct PiecewiseLinear {
    x: Vec<f64>,
    y: Vec<f64>,
    slope_low: f64,
    slope_high: f64,
}

impl PiecewiseLinear {
    fn new(x: Vec<f64>, y: Vec<f64>) -> Self {
        let slope = |k: usize| (y[k + 1] - y[k]) / (x[k + 1] - x[k]);
        let segments = 0..x.len().saturating_sub(1);
        let slope_low = segments.clone().find(|&k| x[k + 1] > x[k]).map_or(0.0, slope);
        let slope_high = segments.rev().find(|&k| x[k + 1] > x[k]).map_or(0.0, slope);
        Self { x, y, slope_low, slope_high }
    }

    fn eval(&self, v: f64) -> f64 {
        let (x, y) = (&self.x, &self.y);
        let last = x.len() - 1;
        if v <= x[0] {
            return y[0] + (v - x[0]) * self.slope_low;
        }
        if v > x[last] {
            return y[last] + (v - x[last]) * self.slope_high;
        }
        // x[k-1] < v <= x[k], so the segment has positive width.
        let k = x.partition_point(|&xi| xi < v);
        y[k - 1] + (v - x[k - 1]) * (y[k] - y[k - 1]) / (x[k] - x[k - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skewed intensity distribution of `n` voxels scaled by `a` and shifted by `b`.
    fn volume(n: usize, a: f32, b: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919) % n) as f32).map(|v| a * (v / n as f32).powf(1.7) * 100.0 + b).collect()
    }

    #[test]
    fn preprocess_histogram_maps_training_landmarks_to_standard() {
        // 1001 voxels: every percentile p·1000 falls on an order statistic.
        let train = volume(1001, 2.0, 30.0);
        let config = HistogramConfig::default();
        let model = HistogramModel::learn(config.clone(), [(&train[..], 1)]).unwrap();
        assert_eq!(model.landmarks[0][0], 0.0);
        assert_eq!(*model.landmarks[0].last().unwrap(), 100.0);
        let mut out = train.clone();
        model.apply(&mut out, 1).unwrap();
        let x = image_landmarks(&out, &config.percentiles, MaskRule::All).unwrap();
        for (got, want) in x.iter().zip(&model.landmarks[0]) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
        // Another volume of the same shape but other scale lands on the same landmarks.
        let mut other = volume(1001, 0.5, -7.0);
        model.apply(&mut other, 1).unwrap();
        let x = image_landmarks(&other, &config.percentiles, MaskRule::All).unwrap();
        for (got, want) in x.iter().zip(&model.landmarks[0]) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn preprocess_histogram_two_volumes_average_and_two_channels() {
        let a = volume(501, 1.0, 0.0);
        let mut b = volume(501, 3.0, 5.0);
        b.iter_mut().for_each(|v| *v = v.sqrt() * 10.0);
        let two: Vec<f32> = a.iter().chain(&b).copied().collect();
        let config = HistogramConfig::quartiles([0.02, 0.98], [-1.0, 1.0], MaskRule::Threshold(0.5));
        let model = HistogramModel::learn(config.clone(), [(&two[..], 2), (&two[..], 2)]).unwrap();
        assert_eq!(model.channels(), 2);
        assert_eq!(model.percentiles, vec![0.02, 0.25, 0.5, 0.75, 0.98]);
        assert_eq!(model.training_volumes, 2);
        // Mean of two identical volumes is that volume's mapped landmarks.
        let x = image_landmarks(&b, &config.percentiles, config.mask).unwrap();
        for (k, y) in model.landmarks[1].iter().enumerate() {
            let want = -1.0 + (x[k] - x[0]) / (x[4] - x[0]) * 2.0;
            assert!((y - want).abs() < 1e-12);
        }
        let mut trainer = HistogramTrainer::new(config).unwrap();
        trainer.add(&two, 2).unwrap();
        let err = trainer.add(&a, 1).unwrap_err();
        assert!(matches!(err, PreprocessError::ChannelMismatch { expected: 2, got: 1, .. }), "{err}");
        let err = trainer.add(&[1.0; 20], 2).unwrap_err();
        assert!(err.to_string().contains("equal cutoff"), "{err}");
        assert_eq!(trainer.finish().unwrap().training_volumes, 1);
    }

    #[test]
    fn preprocess_histogram_mapping_is_monotone_and_extrapolates() {
        let train = volume(1001, 1.0, 0.0);
        let model = HistogramModel::learn(HistogramConfig::default(), [(&train[..], 1)]).unwrap();
        let mut test: Vec<f32> = volume(2000, 4.0, 10.0);
        test.extend([-1000.0, 5000.0, 10.0, 10.0]);
        let mut sorted = test.clone();
        sorted.sort_by(f32::total_cmp);
        let mut mapped = sorted.clone();
        model.apply(&mut mapped, 1).unwrap();
        assert!(mapped.windows(2).all(|w| w[0] <= w[1]), "not monotone");
        assert!(mapped[0] < 0.0 && mapped[mapped.len() - 1] > 100.0, "ends {} {}", mapped[0], mapped[mapped.len() - 1]);
        // Piecewise map with coinciding landmarks stays monotone.
        let map = PiecewiseLinear::new(vec![0.0, 1.0, 1.0, 1.0, 3.0], vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        let ys: Vec<f64> = (-10..40).map(|i| map.eval(f64::from(i) * 0.1)).collect();
        assert!(ys.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(map.eval(1.0), 10.0);
        assert_eq!(map.eval(-1.0), -10.0);
        assert_eq!(map.eval(5.0), 50.0);
        let flat = PiecewiseLinear::new(vec![2.0; 3], vec![0.0, 5.0, 10.0]);
        assert_eq!((flat.eval(1.0), flat.eval(2.0), flat.eval(3.0)), (0.0, 0.0, 10.0));
    }

    #[test]
    fn preprocess_histogram_json_round_trip() {
        let train = volume(300, 1.0, 0.0);
        let model = HistogramModel::learn(
            HistogramConfig::deciles([0.05, 0.95], [1.0, 4095.0], MaskRule::Otsu),
            [(&train[..], 1)],
        )
        .unwrap();
        let json = model.to_json().unwrap();
        assert!(
            json.contains("\"version\": 1") && json.contains(HISTOGRAM_FORMAT) && json.contains("\"otsu\""),
            "{json}"
        );
        assert_eq!(HistogramModel::from_json(&json).unwrap(), model);
        let path = std::env::temp_dir().join(format!("niftyhost-preprocess-hist-{}.json", std::process::id()));
        model.save(&path).unwrap();
        let loaded = HistogramModel::load(&path).unwrap();
        assert_eq!(loaded, model);
        assert_eq!(loaded.to_json().unwrap(), json);
        std::fs::remove_file(&path).unwrap();

        let newer = json.replace("\"version\": 1", "\"version\": 2");
        let err = HistogramModel::from_json(&newer).unwrap_err();
        assert!(
            matches!(err, PreprocessError::UnsupportedFormat { .. }) && err.to_string().contains("version 2"),
            "{err}"
        );
        let broken = json.replace("\"landmarks\": [", "\"landmarks\": [[1.0],");
        assert!(matches!(HistogramModel::from_json(&broken), Err(PreprocessError::InvalidModel { .. })));
        assert!(matches!(HistogramModel::load("/nonexistent/model.json"), Err(PreprocessError::Io { .. })));
        let mut two = vec![0.0f32; 600];
        assert!(matches!(model.apply(&mut two, 2), Err(PreprocessError::ChannelMismatch { .. })));
    }

    #[test]
    fn preprocess_histogram_stored_numbers_read_back_exactly() {
        let mut v = 1.234_567_890_123_456_7e-3;
        for _ in 0..400 {
            let x = short(v);
            assert!((x - v).abs() <= 1e-14 * v.abs());
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{v} → {x} → {back}");
            v = -v * 1.071_773_462_536_293;
        }
    }

    #[test]
    fn preprocess_histogram_config_validation() {
        let bad = HistogramConfig { percentiles: vec![0.5, 0.2], scale: [0.0, 1.0], mask: MaskRule::All };
        assert!(matches!(HistogramTrainer::new(bad), Err(PreprocessError::InvalidPercentiles { .. })));
        let bad = HistogramConfig { scale: [1.0, 1.0], ..HistogramConfig::default() };
        assert!(matches!(HistogramTrainer::new(bad), Err(PreprocessError::InvalidScale { .. })));
        assert!(matches!(
            HistogramTrainer::new(HistogramConfig::default()).unwrap().finish(),
            Err(PreprocessError::NoTrainingData { .. })
        ));
        assert_eq!(HistogramConfig::default().percentiles.len(), 11);
    }
}

/// NiftyNet's text format of `histogram_ref_file` (`histogram_standardisation.py`): one
/// line per modality, its name and then its standard landmarks separated by blanks, e.g.
/// `T1 0.0 8.1 15.3 ... 100.0`. It holds no percentiles, scale or mask: those come from
/// the configuration ([`HistogramConfig`]).
impl HistogramModel {
    /// The model in NiftyNet's text format, channel `c` named `names[c]`.
    ///
    /// # Panics
    /// Fewer names than channels.
    pub fn to_niftynet_text(&self, names: &[String]) -> String {
        let line = |(name, y): (&String, &Vec<f64>)| {
            let values: Vec<String> = y.iter().map(|v| short(*v).to_string()).collect();
            format!("{name} {}\n", values.join(" "))
        };
        names[..self.channels()].iter().zip(&self.landmarks).map(line).collect()
    }

    /// Reads NiftyNet's text format: the landmarks of each of `names` (compared without
    /// case; lines of other names, such as NiftyNet's label mappings, are skipped), with
    /// the percentiles, scale and mask of `config`.
    ///
    /// # Errors
    /// [`PreprocessError::InvalidModel`] for a name with no line, a value that is not a
    /// number, or landmarks that do not fit `config` (as [`HistogramModel::validate`]).
    pub fn from_niftynet_text(text: &str, names: &[String], config: HistogramConfig) -> Result<Self, PreprocessError> {
        let invalid = |reason: String| PreprocessError::InvalidModel { what: WHAT, reason };
        let landmarks = names
            .iter()
            .map(|name| {
                let line = text.lines().map(str::split_whitespace).find_map(|mut words| {
                    words.next().filter(|w| w.eq_ignore_ascii_case(name)).map(|_| words.collect::<Vec<_>>())
                });
                let words = line.ok_or_else(|| invalid(format!("no line for modality `{name}`")))?;
                words
                    .iter()
                    .map(|w| w.parse::<f64>().map_err(|_| invalid(format!("modality `{name}`: `{w}` is not a number"))))
                    .collect::<Result<Vec<f64>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let model = HistogramModel {
            format: HISTOGRAM_FORMAT.to_owned(),
            version: HISTOGRAM_VERSION,
            percentiles: config.percentiles,
            scale: config.scale,
            mask: config.mask,
            landmarks,
            training_volumes: 0,
        };
        model.validate()?;
        Ok(model)
    }
}

#[cfg(test)]
mod niftynet_text_tests {
    use super::*;

    #[test]
    fn niftynet_text_round_trip_and_errors() {
        let config = HistogramConfig::quartiles([0.01, 0.99], [0.0, 100.0], MaskRule::All);
        let n = config.percentiles.len();
        let landmarks: Vec<Vec<f64>> = vec![(0..n).map(|i| i as f64 * 25.0).collect(), vec![1.5; n]];
        let model = HistogramModel {
            format: HISTOGRAM_FORMAT.to_owned(),
            version: HISTOGRAM_VERSION,
            percentiles: config.percentiles.clone(),
            scale: config.scale,
            mask: config.mask,
            landmarks: landmarks.clone(),
            training_volumes: 0,
        };
        let names = vec!["T1".to_owned(), "flair".to_owned()];
        let text = model.to_niftynet_text(&names);
        assert!(text.starts_with("T1 0 25 50"), "{text}");
        // NiftyNet's own lines: other names (label mappings) are skipped, case is ignored.
        let file = format!("label_from 0 1 2\n{}", text.replace("flair", "FLAIR"));
        let back = HistogramModel::from_niftynet_text(&file, &names, config.clone()).unwrap();
        assert_eq!(back, model);
        let missing = HistogramModel::from_niftynet_text("T1 1 2", &names, config.clone()).unwrap_err();
        assert!(missing.to_string().contains("modality `T1`") || missing.to_string().contains("flair"), "{missing}");
        let bad = HistogramModel::from_niftynet_text(&text.replace("25", "x"), &names, config).unwrap_err();
        assert!(bad.to_string().contains("`x` is not a number"), "{bad}");
    }
}
