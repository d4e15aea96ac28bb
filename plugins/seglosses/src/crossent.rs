//! Voxel-wise losses: softmax cross-entropy and focal loss (Lin et al. 2017).
//!
//! Both are means over voxels; with a weight map `w` the mean is `Σ_i w_i ℓ_i / Σ_i w_i`
//! (0 when every weight is 0), so all-ones weights give the plain mean and a zero weight
//! removes a voxel.

use niftyhost_plugin_api::sdk::LossFn;
use niftyhost_plugin_api::PluginError;
use tch::Tensor;

use crate::common::Inputs;

/// `log p_{i, y_i}` as `[N, 1, spatial...]`.
fn log_p_true(x: &Inputs) -> Tensor {
    x.logits.log_softmax(1, x.kind).gather(1, &x.labels, false)
}

/// `−log p_{i, y_i}`, weighted mean over voxels.
pub(crate) fn cross_entropy(logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
    let x = Inputs::new(logits, labels, weight)?;
    Ok(x.voxel_mean(&-log_p_true(&x)))
}

pub(crate) struct CrossEntropy;
impl LossFn for CrossEntropy {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        cross_entropy(logits, labels, weight)
    }
}

/// Focal loss `−α_{y_i} (1 − p_{i,y_i})^γ log p_{i,y_i}`, weighted mean over voxels.
/// `alpha` empty means `α = 1` for every class; otherwise it holds one factor per class.
/// With `γ = 0` and no `alpha` it is exactly `cross_entropy`.
pub(crate) struct Focal {
    pub gamma: f64,
    pub alpha: Vec<f64>,
}

impl LossFn for Focal {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let x = Inputs::new(logits, labels, weight)?;
        let logp = log_p_true(&x);
        let ce = -&logp;
        let focused = if self.gamma != 0.0 {
            ce * (1.0f64 - logp.exp()).clamp_min(0.0).pow_tensor_scalar(self.gamma)
        } else {
            ce
        };
        if self.alpha.is_empty() {
            return Ok(x.voxel_mean(&focused));
        }
        if self.alpha.len() as i64 != x.classes {
            return Err(PluginError::new(format!(
                "focal: `alpha` has {} entries but the logits {:?} have {} classes",
                self.alpha.len(),
                logits.size(),
                x.classes
            )));
        }
        let alpha = Tensor::from_slice(&self.alpha).to_kind(x.kind).to_device(x.logits.device());
        let per_voxel = focused * alpha.index_select(0, &x.labels.flatten(0, -1)).view_as(&x.labels);
        Ok(x.voxel_mean(&per_voxel))
    }
}
