//! Shared input checks and the soft counts every loss is built from.

use niftyhost_plugin_api::PluginError;
use tch::{Kind, Tensor};

/// Checked loss inputs in the computation precision.
///
/// Precision: `f64` logits are computed in `f64`, anything else in `f32`.
pub(crate) struct Inputs {
    /// Logits `[N, K, spatial...]` in the computation kind (still on the autograd graph).
    pub logits: Tensor,
    /// Labels `[N, 1, spatial...]` as int64, each in `0..K`.
    pub labels: Tensor,
    /// One-hot labels `[N, K, spatial...]` in the computation kind.
    pub onehot: Tensor,
    /// Voxel weights `[N, 1, spatial...]` in the computation kind, if given.
    pub weight: Option<Tensor>,
    /// The computation kind (`Float` or `Double`).
    pub kind: Kind,
    /// K, the number of classes.
    pub classes: i64,
}

fn err(msg: String) -> PluginError {
    PluginError::new(msg)
}

impl Inputs {
    /// Checks shapes (labels and weights `[N, 1, spatial...]` matching logits
    /// `[N, K, spatial...]`), that labels are integers in `0..K` and that weights are
    /// finite and non-negative. Every error names the shapes or values at fault.
    pub fn new(logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Inputs, PluginError> {
        let (ls, ys) = (logits.size(), labels.size());
        if ls.len() < 3 {
            return Err(err(format!("loss: logits must be [N, K, spatial...], got {ls:?} (labels {ys:?})")));
        }
        let matches = |s: &[i64]| s.len() == ls.len() && s[0] == ls[0] && s[1] == 1 && s[2..] == ls[2..];
        if !matches(&ys) {
            return Err(err(format!(
                "loss: labels must be [N, 1, spatial...] matching logits [N, K, spatial...]; logits {ls:?}, labels {ys:?}"
            )));
        }
        let kind = if logits.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let classes = ls[1];
        if classes < 1 {
            return Err(err(format!("loss: logits {ls:?} have no classes")));
        }
        let y = labels.detach();
        if y.numel() > 0 {
            let yd = y.to_kind(Kind::Double);
            let (lo, hi) = (f64::try_from(yd.min()).unwrap_or(f64::NAN), f64::try_from(yd.max()).unwrap_or(f64::NAN));
            let fractional = f64::try_from((&yd - yd.round()).abs().max()).unwrap_or(f64::NAN);
            if !(lo >= 0.0 && hi < classes as f64 && fractional == 0.0) {
                return Err(err(format!(
                    "loss: labels must be integers in 0..{classes} (logits {ls:?}); got values in [{lo}, {hi}]{}",
                    if fractional > 0.0 { " with fractional values" } else { "" }
                )));
            }
        }
        let labels = y.to_kind(Kind::Int64);
        let n = ls.len() as i64;
        let mut perm = vec![0, n - 1];
        perm.extend(1..n - 1);
        let onehot = labels.squeeze_dim(1).one_hot(classes).permute(&perm).to_kind(kind);
        let weight = match weight {
            None => None,
            Some(w) => {
                let ws = w.size();
                if !matches(&ws) {
                    return Err(err(format!(
                        "loss: weights must be [N, 1, spatial...] matching logits [N, K, spatial...]; logits {ls:?}, weights {ws:?}"
                    )));
                }
                let w = w.detach().to_kind(kind);
                if w.numel() > 0 {
                    let lo = f64::try_from(w.min().to_kind(Kind::Double)).unwrap_or(f64::NAN);
                    let hi = f64::try_from(w.max().to_kind(Kind::Double)).unwrap_or(f64::NAN);
                    if !(lo >= 0.0 && hi.is_finite()) {
                        return Err(err(format!(
                            "loss: weights must be finite and non-negative, got values in [{lo}, {hi}]"
                        )));
                    }
                }
                Some(w.to_device(logits.device()))
            }
        };
        let onehot = onehot.to_device(logits.device());
        let labels = labels.to_device(logits.device());
        Ok(Inputs { logits: logits.to_kind(kind), labels, onehot, weight, kind, classes })
    }

    /// Softmax probabilities `[N, K, spatial...]`.
    pub fn probs(&self) -> Tensor {
        self.logits.softmax(1, self.kind)
    }

    /// The dimensions summed for per-class counts: the batch and every spatial axis.
    fn class_dims(&self) -> Vec<i64> {
        std::iter::once(0).chain(2..self.logits.dim() as i64).collect()
    }

    /// Per-class weighted sum `Σ_i w_i t_ci` over batch and voxels: `[K]`.
    /// `t` is `[N, K, spatial...]`; without weights `w_i = 1`.
    pub fn class_sum(&self, t: &Tensor) -> Tensor {
        let dims = self.class_dims();
        match &self.weight {
            Some(w) => (t * w).sum_dim_intlist(dims.as_slice(), false, self.kind),
            None => t.sum_dim_intlist(dims.as_slice(), false, self.kind),
        }
    }

    /// Weighted total `Σ_i w_i t_i` of a voxel map `[N, 1, spatial...]`: a scalar.
    pub fn voxel_sum(&self, t: &Tensor) -> Tensor {
        match &self.weight {
            Some(w) => (t * w).sum(self.kind),
            None => t.sum(self.kind),
        }
    }

    /// Weighted mean `Σ_i w_i t_i / Σ_i w_i` of a voxel map `[N, 1, spatial...]`; the
    /// plain mean without weights; 0 when every weight is 0.
    pub fn voxel_mean(&self, t: &Tensor) -> Tensor {
        match &self.weight {
            Some(w) => (t * w).sum(self.kind) / w.sum(self.kind).clamp_min(1e-12),
            None => t.mean(self.kind),
        }
    }
}
