//! Sensitivity-specificity loss (Brosch et al. 2015), per class and averaged over classes.
//!
//! For class `c` with probabilities `p`, one-hot truth `g` and voxel weights `w`:
//! `r · Σ w (g − p)² g / (Σ w g + s) + (1 − r) · Σ w (g − p)² (1 − g) / (Σ w (1 − g) + s)`,
//! the first term a (squared-error) sensitivity penalty, the second a specificity one.
//! Sums run over the batch and every voxel; the loss is the mean over classes.

use niftyhost_plugin_api::sdk::LossFn;
use niftyhost_plugin_api::PluginError;
use tch::Tensor;

use crate::common::Inputs;

pub(crate) struct SensitivitySpecificity {
    pub r: f64,
    pub smooth: f64,
}

impl LossFn for SensitivitySpecificity {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let x = Inputs::new(logits, labels, weight)?;
        let p = x.probs();
        let g = &x.onehot;
        let sq = (g - &p).square();
        let background = 1.0 - g;
        let sensitivity = x.class_sum(&(&sq * g)) / (x.class_sum(g) + self.smooth);
        let specificity = x.class_sum(&(&sq * &background)) / (x.class_sum(&background) + self.smooth);
        Ok((sensitivity * self.r + specificity * (1.0 - self.r)).mean(x.kind))
    }
}
