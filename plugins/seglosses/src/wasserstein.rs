//! Generalised Wasserstein Dice loss (Fidon et al. 2017).
//!
//! With a class distance matrix `M` (K×K, zero diagonal, symmetric, non-negative) and
//! class 0 as the background `b`, per voxel `i` with true class `y_i`:
//!
//! - `W_i = Σ_l p_il M[l, y_i]`, the Wasserstein distance between the prediction and the
//!   one-hot label;
//! - `α_l = M[l, b]`, the distance of class `l` to the background (`α_b = 0`);
//! - `TP = Σ_i w_i α_{y_i} (α_{y_i} − W_i)`, `E = Σ_i w_i W_i`;
//! - loss `= 1 − (2 TP + s) / (2 TP + E + s)`.
//!
//! With the default matrix (0 on the diagonal, 1 elsewhere) `W_i = 1 − p_{i,y_i}`, `TP` is
//! the soft true-positive mass of all foreground classes pooled, `Σ_{y_i ≠ 0} w_i p_{i,y_i}`,
//! and `E = Σ_i w_i (1 − p_{i,y_i})` the total misplaced mass. For K = 2 this is exactly
//! the soft Dice loss of the foreground class alone with plain denominators,
//! `1 − (2 Σ w p₁ g₁ + s) / (Σ w p₁ + Σ w g₁ + s)`; for K > 2 it is a pooled
//! foreground-vs-background Dice in which confusions between foreground classes also count
//! as errors.

use niftyhost_plugin_api::sdk::LossFn;
use niftyhost_plugin_api::PluginError;
use tch::Tensor;

use crate::common::Inputs;

/// Checks a row-major K×K distance matrix (empty: the default); returns K (0 for default).
pub(crate) fn check_matrix(m: &[f64]) -> Result<usize, PluginError> {
    if m.is_empty() {
        return Ok(0);
    }
    let k = (m.len() as f64).sqrt().round() as usize;
    let fail = |why: String| Err(PluginError::new(format!("generalised_wasserstein_dice: `distance_matrix` {why}")));
    if k * k != m.len() || k < 2 {
        return fail(format!("must hold K×K entries (row-major) with K ≥ 2, got {} entries", m.len()));
    }
    for r in 0..k {
        for c in 0..k {
            let v = m[r * k + c];
            if !(v.is_finite() && v >= 0.0) {
                return fail(format!("entries must be finite and ≥ 0, got {v} at ({r}, {c})"));
            }
            if r == c && v != 0.0 {
                return fail(format!("must have a zero diagonal, got {v} at ({r}, {r})"));
            }
            if v != m[c * k + r] {
                return fail(format!("must be symmetric, got {v} at ({r}, {c}) and {} at ({c}, {r})", m[c * k + r]));
            }
        }
    }
    Ok(k)
}

pub(crate) struct GeneralisedWassersteinDice {
    /// Row-major K×K, or empty for 0 on the diagonal and 1 elsewhere.
    pub matrix: Vec<f64>,
    pub smooth: f64,
}

impl LossFn for GeneralisedWassersteinDice {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let x = Inputs::new(logits, labels, weight)?;
        let k = x.classes;
        let device = x.logits.device();
        let m = if self.matrix.is_empty() {
            1.0 - Tensor::eye(k, (x.kind, device))
        } else {
            if self.matrix.len() as i64 != k * k {
                return Err(PluginError::new(format!(
                    "generalised_wasserstein_dice: `distance_matrix` has {} entries but the logits {:?} have {k} classes (need {})",
                    self.matrix.len(),
                    logits.size(),
                    k * k
                )));
            }
            Tensor::from_slice(&self.matrix).to_kind(x.kind).to_device(device).view([k, k])
        };
        // Rows of M picked by the true class: [N, 1, spatial..., K] → column y_i of M.
        let flat = x.labels.flatten(0, -1);
        let rows = m.index_select(0, &flat); // [V, K]: M[y_i, l] = M[l, y_i]
        let p = x.probs();
        let n = p.dim() as i64;
        let mut perm = vec![0];
        perm.extend(2..n);
        perm.push(1);
        let p_last = p.permute(&perm).reshape([-1, k]); // [V, K]
        let distance = (p_last * &rows).sum_dim_intlist([1].as_slice(), false, x.kind).view_as(&x.labels);
        let alpha = m.select(1, 0).index_select(0, &flat).view_as(&x.labels);
        let true_pos = x.voxel_sum(&(&alpha * (&alpha - &distance)));
        let errors = x.voxel_sum(&distance);
        let tp2 = true_pos * 2.0;
        Ok(1.0 - (&tp2 + self.smooth) / (tp2 + errors + self.smooth))
    }
}

#[cfg(test)]
mod tests {
    use super::check_matrix;

    #[test]
    fn distance_matrices_are_checked() {
        assert_eq!(check_matrix(&[]).unwrap(), 0);
        assert_eq!(check_matrix(&[0.0, 1.0, 1.0, 0.0]).unwrap(), 2);
        assert_eq!(check_matrix(&[0.0, 1.0, 2.0, 1.0, 0.0, 0.5, 2.0, 0.5, 0.0]).unwrap(), 3);
        for (bad, why) in [
            (vec![0.0, 1.0, 1.0], "K×K"),
            (vec![0.0], "K ≥ 2"),
            (vec![0.5, 1.0, 1.0, 0.0], "zero diagonal"),
            (vec![0.0, 1.0, 2.0, 0.0], "symmetric"),
            (vec![0.0, -1.0, -1.0, 0.0], "≥ 0"),
            (vec![0.0, f64::NAN, f64::NAN, 0.0], "finite"),
        ] {
            let err = check_matrix(&bad).unwrap_err();
            assert!(err.message.contains(why), "{bad:?}: {}", err.message);
        }
    }
}
