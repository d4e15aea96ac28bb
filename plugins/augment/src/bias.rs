//! Random bias field (NiftyNet's `bias_field_range`, `bf_order`): the image is multiplied
//! by `exp(Σ c_abc · x^a y^b z^c)` over `a + b + c <= order`, coordinates in `[-1, 1]`
//! along each axis, coefficients uniform in the range.

use niftyhost_plugin_api::sdk::{AugmentFn, Augmented, Param, ParamType, Params};
use niftyhost_plugin_api::PluginError;
use tch::{Device, Kind, Tensor};

use crate::common::{check_inputs, range};
use crate::rng::Rng;

/// The `bias_field` component.
#[derive(Debug, Clone)]
pub struct BiasField {
    /// Coefficient range.
    pub range: (f64, f64),
    /// Polynomial order.
    pub order: usize,
}

/// Coordinates in `[-1, 1]` along one axis of `n` voxels, viewed along tensor dim `dim`
/// of a `[D, H, W]` volume.
fn axis(n: i64, dim: usize) -> Tensor {
    let t = if n > 1 {
        Tensor::linspace(-1.0, 1.0, n, (Kind::Float, Device::Cpu))
    } else {
        Tensor::zeros([1], (Kind::Float, Device::Cpu))
    };
    let mut shape = [1i64, 1, 1];
    shape[dim] = n;
    t.view(shape)
}

impl AugmentFn for BiasField {
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, _spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs("bias_field", image, label)?;
        let s = image.size();
        let (z, y, x) = (axis(s[1], 0), axis(s[2], 1), axis(s[3], 2));
        let mut rng = Rng::new(seed);
        // log field = Σ_a x^a · (Σ_b y^b · (Σ_c c_abc z^c)): few full-size operations.
        let mut log_field = Tensor::zeros([s[1], s[2], s[3]], (Kind::Float, Device::Cpu));
        for a in 0..=self.order {
            let mut in_a = Tensor::zeros([s[1], s[2], 1], (Kind::Float, Device::Cpu));
            for b in 0..=self.order - a {
                let mut poly_z = Tensor::zeros([s[1], 1, 1], (Kind::Float, Device::Cpu));
                for c in 0..=self.order - a - b {
                    poly_z += z.pow_tensor_scalar(c as f64) * rng.uniform(self.range.0, self.range.1);
                }
                in_a += poly_z * y.pow_tensor_scalar(b as f64);
            }
            log_field += in_a * x.pow_tensor_scalar(a as f64);
        }
        let field = log_field.exp().unsqueeze(0).to_kind(image.kind());
        Ok((image * field, label.map(Tensor::shallow_clone)))
    }
}

/// Parameters of `bias_field`.
pub const BIAS_PARAMS: &[Param] = &[
    Param {
        name: "bias_field_range",
        ty: ParamType::FloatList,
        default: "[-0.5, 0.5]",
        doc: "[lo, hi] of the polynomial coefficients of the log field",
    },
    Param { name: "bf_order", ty: ParamType::Int, default: "3", doc: "polynomial order (0..=6)" },
];

/// The `bias_field` component.
///
/// # Errors
/// A malformed range or an order outside `0..=6`.
pub fn build_bias(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let r = range(p, "bias_field", "bias_field_range", "within ±5", |v| v.is_finite() && v.abs() <= 5.0)?;
    let r = r.ok_or_else(|| PluginError::new("bias_field: parameter `bias_field_range` must be [lo, hi], got []"))?;
    let order = p.int("bf_order")?;
    if !(0..=6).contains(&order) {
        return Err(PluginError::new(format!("bias_field: parameter `bf_order` must be in 0..=6, got {order}")));
    }
    Ok(Box::new(BiasField { range: r, order: order as usize }))
}
