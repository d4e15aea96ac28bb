//! Intensity augmentations of the image alone (the label passes through unchanged):
//! gamma, Gaussian noise, contrast and brightness. Each draws its values from the seed.

use niftyhost_plugin_api::sdk::{AugmentFn, Augmented, Param, ParamType, Params};
use niftyhost_plugin_api::PluginError;
use tch::Tensor;

use crate::common::{check_inputs, range};
use crate::rng::Rng;

/// Per channel: rescale to `[0, 1]` with the channel's min and max, raise to `γ`, scale
/// back (a constant channel is left as it is).
#[derive(Debug, Clone)]
pub struct Gamma {
    /// `γ` is drawn uniformly in this range.
    pub range: (f64, f64),
}

/// Adds zero-mean Gaussian noise of a standard deviation drawn from a range.
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    /// Standard deviation range, intensity units.
    pub std: (f64, f64),
}

/// Per channel: `(x − mean) · c + mean + b`.
#[derive(Debug, Clone)]
pub struct ContrastBrightness {
    /// Range of the contrast factor `c`.
    pub contrast: (f64, f64),
    /// Range of the brightness offset `b`, intensity units.
    pub brightness: (f64, f64),
}

/// `[C, 1, 1, 1]` views of a per-channel reduction.
fn per_channel(image: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let c = image.size()[0];
    f(&image.view([c, -1])).view([c, 1, 1, 1])
}

impl AugmentFn for Gamma {
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, _spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs("gamma", image, label)?;
        let gamma = Rng::new(seed).uniform(self.range.0, self.range.1);
        let lo = per_channel(image, |x| x.amin([1], false));
        let hi = per_channel(image, |x| x.amax([1], false));
        let span = (&hi - &lo).clamp_min(1e-12);
        let unit = ((image - &lo) / &span).clamp(0.0, 1.0);
        let out = unit.pow_tensor_scalar(gamma) * &span + &lo;
        // A constant channel (span 0) stays as it was.
        let constant = (&hi - &lo).le(0.0);
        Ok((out.where_self(&constant.logical_not(), image), label.map(Tensor::shallow_clone)))
    }
}

impl AugmentFn for GaussianNoise {
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, _spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs("gaussian_noise", image, label)?;
        let mut rng = Rng::new(seed);
        let std = rng.uniform(self.std.0, self.std.1);
        if std == 0.0 {
            return Ok((image.shallow_clone(), label.map(Tensor::shallow_clone)));
        }
        let noise = Tensor::from_slice(&rng.normals_f32(image.numel())).view(image.size().as_slice());
        Ok((image + noise.to_kind(image.kind()) * std, label.map(Tensor::shallow_clone)))
    }
}

impl AugmentFn for ContrastBrightness {
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, _spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs("contrast_brightness", image, label)?;
        let mut rng = Rng::new(seed);
        let c = rng.uniform(self.contrast.0, self.contrast.1);
        let b = rng.uniform(self.brightness.0, self.brightness.1);
        let mean = per_channel(image, |x| x.mean_dim(1, false, None));
        Ok(((image - &mean) * c + mean + b, label.map(Tensor::shallow_clone)))
    }
}

/// Parameters of `gamma`.
pub const GAMMA_PARAMS: &[Param] = &[Param {
    name: "gamma_range",
    ty: ParamType::FloatList,
    default: "[0.7, 1.5]",
    doc: "[lo, hi] of the exponent γ (> 0)",
}];

/// Parameters of `gaussian_noise`.
pub const NOISE_PARAMS: &[Param] = &[Param {
    name: "std_range",
    ty: ParamType::FloatList,
    default: "[0.0, 0.1]",
    doc: "[lo, hi] of the noise standard deviation, intensity units (>= 0)",
}];

/// Parameters of `contrast_brightness`.
pub const CONTRAST_PARAMS: &[Param] = &[
    Param {
        name: "contrast_range",
        ty: ParamType::FloatList,
        default: "[0.75, 1.25]",
        doc: "[lo, hi] of the contrast factor about each channel's mean (>= 0)",
    },
    Param {
        name: "brightness_range",
        ty: ParamType::FloatList,
        default: "[-0.1, 0.1]",
        doc: "[lo, hi] of the offset added, intensity units",
    },
];

fn required(r: Option<(f64, f64)>, component: &str, key: &str) -> Result<(f64, f64), PluginError> {
    r.ok_or_else(|| PluginError::new(format!("{component}: parameter `{key}` must be [lo, hi], got []")))
}

/// The `gamma` component.
///
/// # Errors
/// A range that is not `[lo, hi]` with `0 < lo <= hi`.
pub fn build_gamma(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let r = range(p, "gamma", "gamma_range", "positive and finite", |v| v.is_finite() && v > 0.0)?;
    Ok(Box::new(Gamma { range: required(r, "gamma", "gamma_range")? }))
}

/// The `gaussian_noise` component.
///
/// # Errors
/// A range that is not `[lo, hi]` with `0 <= lo <= hi`.
pub fn build_noise(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let r = range(p, "gaussian_noise", "std_range", "finite and >= 0", |v| v.is_finite() && v >= 0.0)?;
    Ok(Box::new(GaussianNoise { std: required(r, "gaussian_noise", "std_range")? }))
}

/// The `contrast_brightness` component.
///
/// # Errors
/// Malformed ranges or a negative contrast.
pub fn build_contrast(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let name = "contrast_brightness";
    let c = range(p, name, "contrast_range", "finite and >= 0", |v| v.is_finite() && v >= 0.0)?;
    let b = range(p, name, "brightness_range", "finite", f64::is_finite)?;
    Ok(Box::new(ContrastBrightness {
        contrast: required(c, name, "contrast_range")?,
        brightness: required(b, name, "brightness_range")?,
    }))
}
