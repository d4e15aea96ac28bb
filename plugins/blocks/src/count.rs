//! Parameter counts, to compare a network with its reference definition.

use tch::nn::VarStore;

/// Trainable scalars of every kind (kernels, biases, normalisation, PReLU slopes).
pub fn trainable(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Scalars of convolution kernels only (tensors of rank ≥ 3), excluding biases,
/// normalisation and PReLU parameters: the count NiftyNet's papers quote for networks
/// whose convolutions have no bias.
pub fn kernel_weights(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().filter(|t| t.dim() >= 3).map(|t| t.numel() as i64).sum()
}

/// Scalars of convolution kernels and their biases (variables named `…conv….bias` or
/// any rank-1 `bias` whose sibling `weight` is a kernel), excluding normalisation and
/// PReLU parameters.
pub fn kernels_and_biases(vs: &VarStore) -> i64 {
    let vars = vs.variables();
    let kernel_bias: i64 = vars
        .iter()
        .filter_map(|(name, t)| {
            let prefix = name.strip_suffix(".bias")?;
            let weight = vars.get(&format!("{prefix}.weight"))?;
            (weight.dim() >= 3 && t.requires_grad()).then(|| t.numel() as i64)
        })
        .sum();
    kernel_weights(vs) + kernel_bias
}
