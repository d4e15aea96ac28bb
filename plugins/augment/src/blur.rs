//! Gaussian blur of the image with a standard deviation drawn in mm, so anisotropic voxels
//! are blurred by the same physical amount along every axis (separable, edges replicated).

use niftyhost_plugin_api::sdk::{AugmentFn, Augmented, Param, ParamType, Params};
use niftyhost_plugin_api::PluginError;
use tch::{Kind, Tensor};

use crate::common::{check_inputs, range};
use crate::rng::Rng;

/// The `gaussian_blur` component.
#[derive(Debug, Clone)]
pub struct GaussianBlur {
    /// Range of the standard deviation, mm.
    pub sigma_mm: (f64, f64),
}

/// A normalised 1-D Gaussian of `sigma` voxels over `±⌈3σ⌉`.
fn kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i64;
    let w: Vec<f64> = (-r..=r).map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|v| (v / total) as f32).collect()
}

impl AugmentFn for GaussianBlur {
    /// # Shapes
    /// image `[C, D, H, W]` → `[C, D, H, W]`; the label passes through.
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs("gaussian_blur", image, label)?;
        let sigma = Rng::new(seed).uniform(self.sigma_mm.0, self.sigma_mm.1);
        let s = image.size();
        let mut x = image.to_kind(Kind::Float).view([s[0], 1, s[1], s[2], s[3]]);
        for axis in 0..3 {
            let sv = sigma / spacing[axis];
            // Below 0.1 voxel the kernel is a delta: skip the axis.
            if !(sv.is_finite() && sv >= 0.1) {
                continue;
            }
            let k = kernel(sv);
            let r = (k.len() / 2) as i64;
            let mut shape = [1i64, 1, 1, 1, 1];
            shape[2 + axis] = k.len() as i64;
            let weight = Tensor::from_slice(&k).view(shape);
            // pad takes (W, W, H, H, D, D) pairs, last dim first.
            let mut pad = [0i64; 6];
            pad[2 * (2 - axis)] = r;
            pad[2 * (2 - axis) + 1] = r;
            x = x.pad(pad, "replicate", None).conv3d(&weight, None::<Tensor>, [1, 1, 1], [0, 0, 0], [1, 1, 1], 1);
        }
        Ok((x.view(s.as_slice()).to_kind(image.kind()), label.map(Tensor::shallow_clone)))
    }
}

/// Parameters of `gaussian_blur`.
pub const BLUR_PARAMS: &[Param] = &[Param {
    name: "sigma_range",
    ty: ParamType::FloatList,
    default: "[0.0, 1.0]",
    doc: "[lo, hi] of the Gaussian's standard deviation, mm (>= 0)",
}];

/// The `gaussian_blur` component.
///
/// # Errors
/// A range that is not `[lo, hi]` with `0 <= lo <= hi <= 20`.
pub fn build_blur(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let r = range(p, "gaussian_blur", "sigma_range", "in [0, 20] mm", |v| (0.0..=20.0).contains(&v))?;
    let sigma_mm =
        r.ok_or_else(|| PluginError::new("gaussian_blur: parameter `sigma_range` must be [lo, hi], got []"))?;
    Ok(Box::new(GaussianBlur { sigma_mm }))
}
