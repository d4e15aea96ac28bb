//! Overlap losses: soft Dice (Milletari et al. 2016), its squared-denominator form,
//! generalised Dice (Sudre et al. 2017), Tversky (Salehi et al. 2017) and Dice +
//! cross-entropy.
//!
//! Soft counts are per class `c`, summed over the batch and every voxel `i`, with the
//! voxel weight `w_i` (1 without a weight map) multiplying each voxel's term once:
//! `I_c = Σ w p g`, `P_c = Σ w p`, `G_c = Σ w g`. All-ones weights therefore equal no
//! weights and a zero weight removes a voxel from every count.

use niftyhost_plugin_api::sdk::LossFn;
use niftyhost_plugin_api::PluginError;
use tch::Tensor;

use crate::common::Inputs;
use crate::crossent::cross_entropy;

/// `1 − mean_c (2 I_c + s) / (P_c + G_c + s)`; with `squared` the denominator is
/// `Σ w p² + Σ w g² + s` (`g² = g`).
pub(crate) fn dice(
    logits: &Tensor,
    labels: &Tensor,
    weight: Option<&Tensor>,
    smooth: f64,
    squared: bool,
) -> Result<Tensor, PluginError> {
    let x = Inputs::new(logits, labels, weight)?;
    let p = x.probs();
    let intersection = x.class_sum(&(&p * &x.onehot));
    let predicted = if squared { x.class_sum(&(&p * &p)) } else { x.class_sum(&p) };
    let truth = x.class_sum(&x.onehot);
    let per_class = (intersection * 2.0 + smooth) / (predicted + truth + smooth);
    Ok(1.0 - per_class.mean(x.kind))
}

pub(crate) struct Dice {
    pub smooth: f64,
    pub squared: bool,
}
impl LossFn for Dice {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        dice(logits, labels, weight, self.smooth, self.squared)
    }
}

pub(crate) struct DiceCe {
    pub smooth: f64,
    pub dice_weight: f64,
    pub ce_weight: f64,
}
impl LossFn for DiceCe {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let d = dice(logits, labels, weight, self.smooth, false)?;
        let ce = cross_entropy(logits, labels, weight)?;
        Ok(d * self.dice_weight + ce * self.ce_weight)
    }
}

/// Generalised Dice: `1 − (2 Σ_c ω_c I_c + s) / (Σ_c ω_c (P_c + G_c) + s)` with
/// `ω_c ∝ 1 / G_c²`.
///
/// Absent classes (`G_c = 0`, including classes whose voxels all have weight 0) get the
/// largest weight among present classes, so predicting them is penalised like a false
/// positive in the rarest present class; if no class is present every `ω_c` is equal.
/// The weights are then normalised to sum to 1, which leaves the ratio unchanged but keeps
/// `smooth` on the scale of the counts. The weights are constants (no gradient).
pub(crate) struct GeneralisedDice {
    pub smooth: f64,
}
impl LossFn for GeneralisedDice {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let x = Inputs::new(logits, labels, weight)?;
        let p = x.probs();
        let truth = x.class_sum(&x.onehot);
        let present = truth.gt(0.0);
        let inverse = truth.square().reciprocal();
        let finite = inverse.where_self(&present, &inverse.zeros_like());
        let largest = finite.max();
        let class_weight = if f64::try_from(&largest).unwrap_or(0.0) > 0.0 {
            finite.where_self(&present, &largest.expand_as(&finite))
        } else {
            truth.ones_like()
        };
        let class_weight = (&class_weight / class_weight.sum(x.kind)).detach();
        let intersection = x.class_sum(&(&p * &x.onehot));
        let numerator = (class_weight.shallow_clone() * intersection).sum(x.kind) * 2.0 + self.smooth;
        let denominator = (class_weight * (x.class_sum(&p) + truth)).sum(x.kind) + self.smooth;
        Ok(1.0 - numerator / denominator)
    }
}

/// Tversky: `1 − mean_c (I_c + s) / (I_c + α FP_c + β FN_c + s)` with
/// `FP_c = Σ w p (1 − g)` and `FN_c = Σ w (1 − p) g`. `α = β = 0.5` with smooth `s/2` is
/// `dice` with smooth `s`.
pub(crate) struct Tversky {
    pub alpha: f64,
    pub beta: f64,
    pub smooth: f64,
}
impl LossFn for Tversky {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let x = Inputs::new(logits, labels, weight)?;
        let p = x.probs();
        let intersection = x.class_sum(&(&p * &x.onehot));
        let false_pos = x.class_sum(&(&p * (1.0 - &x.onehot)));
        let false_neg = x.class_sum(&((1.0 - &p) * &x.onehot));
        let per_class = (&intersection + self.smooth)
            / (&intersection + false_pos * self.alpha + false_neg * self.beta + self.smooth);
        Ok(1.0 - per_class.mean(x.kind))
    }
}
