//! `seglosses`: segmentation losses. Every loss takes logits `[N, K, D, H, W]`, integer
//! labels `[N, 1, D, H, W]` and optional voxel weights `[N, 1, D, H, W]`.
//!
//! - `cross_entropy`: voxel-wise softmax cross-entropy (weighted mean).
//! - `dice`: 1 − mean over classes of the soft Dice 2Σpg / (Σp + Σg), sums over the
//!   batch and all voxels (Milletari et al. 2016, with plain denominators).
//! - `dice_ce`: `dice_weight · dice + ce_weight · cross_entropy`.

use niftyhost_plugin_api::sdk::{LossDef, LossFn, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::{Kind, Tensor};

const SMOOTH: Param =
    Param { name: "smooth", ty: ParamType::Float, default: "1e-5", doc: "added to Dice numerator and denominator" };

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "seglosses",
    version: env!("CARGO_PKG_VERSION"),
    description: "segmentation losses: cross-entropy, Dice, Dice + cross-entropy",
    networks: &[],
    losses: &[
        LossDef { name: "cross_entropy", description: "softmax cross-entropy", params: &[], build: build_ce },
        LossDef { name: "dice", description: "soft Dice over all classes", params: &[SMOOTH], build: build_dice },
        LossDef {
            name: "dice_ce",
            description: "weighted sum of soft Dice and cross-entropy",
            params: &[
                SMOOTH,
                Param { name: "dice_weight", ty: ParamType::Float, default: "1.0", doc: "weight of the Dice term" },
                Param {
                    name: "ce_weight",
                    ty: ParamType::Float,
                    default: "1.0",
                    doc: "weight of the cross-entropy term",
                },
            ],
            build: build_dice_ce,
        },
    ],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// Checks shapes and returns labels as `[N, D, H, W]` int64.
fn checked_labels(logits: &Tensor, labels: &Tensor) -> Result<Tensor, PluginError> {
    let (ls, ys) = (logits.size(), labels.size());
    if ls.len() < 3 || ys.len() != ls.len() || ys[0] != ls[0] || ys[1] != 1 || ys[2..] != ls[2..] {
        return Err(PluginError::new(format!(
            "loss: labels must be [N, 1, spatial...] matching logits [N, K, spatial...]; logits {ls:?}, labels {ys:?}"
        )));
    }
    Ok(labels.squeeze_dim(1).to_kind(Kind::Int64))
}

fn cross_entropy(logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
    let y = checked_labels(logits, labels)?;
    let per_voxel = logits.log_softmax(1, Kind::Float).nll_loss_nd::<Tensor>(&y, None, tch::Reduction::None, -100);
    Ok(match weight {
        Some(w) => {
            let w = w.squeeze_dim(1);
            (per_voxel * &w).sum(Kind::Float) / w.sum(Kind::Float).clamp_min(1e-12)
        }
        None => per_voxel.mean(Kind::Float),
    })
}

fn dice(logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>, smooth: f64) -> Result<Tensor, PluginError> {
    let y = checked_labels(logits, labels)?;
    let classes = logits.size()[1];
    let probs = logits.softmax(1, Kind::Float);
    let n = logits.dim() as i64;
    let mut perm = vec![0, n - 1];
    perm.extend(1..n - 1);
    let onehot = y.one_hot(classes).permute(&perm).to_kind(Kind::Float);
    let (probs, onehot) = match weight {
        Some(w) => (probs * w, onehot * w),
        None => (probs, onehot),
    };
    let dims: Vec<i64> = std::iter::once(0).chain(2..n).collect();
    let intersection = (&probs * &onehot).sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let denominator = probs.sum_dim_intlist(dims.as_slice(), false, Kind::Float)
        + onehot.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let per_class = (intersection * 2.0 + smooth) / (denominator + smooth);
    Ok(1.0 - per_class.mean(Kind::Float))
}

struct CrossEntropy;
impl LossFn for CrossEntropy {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        cross_entropy(logits, labels, weight)
    }
}

struct Dice {
    smooth: f64,
}
impl LossFn for Dice {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        dice(logits, labels, weight, self.smooth)
    }
}

struct DiceCe {
    smooth: f64,
    dice_weight: f64,
    ce_weight: f64,
}
impl LossFn for DiceCe {
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError> {
        let d = dice(logits, labels, weight, self.smooth)?;
        let ce = cross_entropy(logits, labels, weight)?;
        Ok(d * self.dice_weight + ce * self.ce_weight)
    }
}

fn build_ce(_: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(CrossEntropy))
}

fn build_dice(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(Dice { smooth: p.float("smooth")? }))
}

fn build_dice_ce(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(DiceCe {
        smooth: p.float("smooth")?,
        dice_weight: p.float("dice_weight")?,
        ce_weight: p.float("ce_weight")?,
    }))
}
