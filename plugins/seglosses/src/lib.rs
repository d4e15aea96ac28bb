//! `seglosses`: segmentation losses. Every loss takes logits `[N, K, D, H, W]` (any number
//! of spatial axes; softmax over K inside the loss), integer labels `[N, 1, D, H, W]` in
//! `0..K` and optional voxel weights `[N, 1, D, H, W]` (finite, ≥ 0), and returns a scalar.
//! `f64` logits are computed in `f64`, others in `f32`. Mismatched shapes, labels outside
//! `0..K` and negative weights are errors naming the shapes or values.
//!
//! Weights enter every loss once per voxel term: voxel-wise losses (`cross_entropy`,
//! `focal`) take the weighted mean `Σ w ℓ / Σ w`; overlap losses multiply each voxel's
//! term inside the soft counts (`Σ w p g`, `Σ w p`, `Σ w g`, …). All-ones weights are
//! the same as none, and a zero weight removes the voxel.
//!
//! - `cross_entropy`: voxel-wise softmax cross-entropy.
//! - `focal`: `−α_y (1 − p_y)^γ log p_y` (Lin et al. 2017).
//! - `dice`: `1 − mean_c (2Σpg + s) / (Σp + Σg + s)` (Milletari et al. 2016, plain
//!   denominators); `dice_squared`: denominators `Σp² + Σg²`.
//! - `dice_ce`: `dice_weight · dice + ce_weight · cross_entropy`.
//! - `generalised_dice`: Sudre et al. 2017, class weights `1/G_c²`; an absent class takes
//!   the largest present-class weight (see [`dice::GeneralisedDice`]).
//! - `tversky`: Salehi et al. 2017, `α` on false positives, `β` on false negatives.
//! - `generalised_wasserstein_dice`: Fidon et al. 2017 with a class distance matrix,
//!   background class 0 (see [`wasserstein`] for what the default matrix reduces to).
//! - `sensitivity_specificity`: Brosch et al. 2015, `r` on sensitivity.
//!
//! Overlap sums run over the batch and all voxels together (one count per class per
//! batch), and class means include the background class.

pub mod common;
pub mod crossent;
pub mod dice;
pub mod sensspec;
pub mod wasserstein;

use niftyhost_plugin_api::sdk::{LossDef, LossFn, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;

const SMOOTH: Param =
    Param { name: "smooth", ty: ParamType::Float, default: "1e-5", doc: "added to numerator and denominator" };

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "seglosses",
    version: env!("CARGO_PKG_VERSION"),
    description: "segmentation losses: cross-entropy, focal, Dice variants, generalised Dice, Tversky, \
                  generalised Wasserstein Dice, sensitivity-specificity",
    networks: &[],
    losses: &[
        LossDef { name: "cross_entropy", description: "softmax cross-entropy", params: &[], build: build_ce },
        LossDef {
            name: "dice",
            description: "soft Dice averaged over classes, denominators Σp + Σg",
            params: &[SMOOTH],
            build: build_dice,
        },
        LossDef {
            name: "dice_squared",
            description: "soft Dice averaged over classes, denominators Σp² + Σg²",
            params: &[SMOOTH],
            build: build_dice_squared,
        },
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
        LossDef {
            name: "generalised_dice",
            description: "generalised Dice (Sudre 2017), class weights 1/(Σg)², absent classes get the largest weight",
            params: &[SMOOTH],
            build: build_generalised_dice,
        },
        LossDef {
            name: "tversky",
            description: "Tversky loss (Salehi 2017) averaged over classes",
            params: &[
                Param { name: "alpha", ty: ParamType::Float, default: "0.3", doc: "weight of false positives" },
                Param { name: "beta", ty: ParamType::Float, default: "0.7", doc: "weight of false negatives" },
                SMOOTH,
            ],
            build: build_tversky,
        },
        LossDef {
            name: "generalised_wasserstein_dice",
            description: "generalised Wasserstein Dice (Fidon 2017), background class 0",
            params: &[
                Param {
                    name: "distance_matrix",
                    ty: ParamType::FloatList,
                    default: "[]",
                    doc:
                        "K×K class distances, row-major, symmetric, zero diagonal; [] = 0 on the diagonal, 1 elsewhere",
                },
                SMOOTH,
            ],
            build: build_gwd,
        },
        LossDef {
            name: "sensitivity_specificity",
            description: "sensitivity-specificity loss (Brosch 2015) averaged over classes",
            params: &[
                Param {
                    name: "r",
                    ty: ParamType::Float,
                    default: "0.05",
                    doc: "weight of the sensitivity term (1 − r on specificity), in [0, 1]",
                },
                Param { name: "smooth", ty: ParamType::Float, default: "1e-5", doc: "added to the denominators" },
            ],
            build: build_sensitivity_specificity,
        },
        LossDef {
            name: "focal",
            description: "focal loss (Lin 2017), weighted mean over voxels",
            params: &[
                Param { name: "gamma", ty: ParamType::Float, default: "2.0", doc: "focusing exponent γ ≥ 0" },
                Param {
                    name: "alpha",
                    ty: ParamType::FloatList,
                    default: "[]",
                    doc: "one factor per class multiplying its voxels' terms; [] = none",
                },
            ],
            build: build_focal,
        },
    ],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// A number parameter that must satisfy `ok`, described by `what`.
fn checked(p: &Params, component: &str, key: &str, what: &str, ok: impl Fn(f64) -> bool) -> Result<f64, PluginError> {
    let v = p.float(key)?;
    if ok(v) {
        Ok(v)
    } else {
        Err(PluginError::new(format!("{component}: parameter `{key}` must be {what}, got {v}")))
    }
}

fn smooth(p: &Params, component: &str) -> Result<f64, PluginError> {
    checked(p, component, "smooth", "finite and ≥ 0", |v| v.is_finite() && v >= 0.0)
}

fn non_negative(p: &Params, component: &str, key: &str) -> Result<f64, PluginError> {
    checked(p, component, key, "finite and ≥ 0", |v| v.is_finite() && v >= 0.0)
}

fn build_ce(_: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(crossent::CrossEntropy))
}

fn build_dice(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(dice::Dice { smooth: smooth(p, "dice")?, squared: false }))
}

fn build_dice_squared(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(dice::Dice { smooth: smooth(p, "dice_squared")?, squared: true }))
}

fn build_dice_ce(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(dice::DiceCe {
        smooth: smooth(p, "dice_ce")?,
        dice_weight: p.float("dice_weight")?,
        ce_weight: p.float("ce_weight")?,
    }))
}

fn build_generalised_dice(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(dice::GeneralisedDice { smooth: smooth(p, "generalised_dice")? }))
}

fn build_tversky(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(dice::Tversky {
        alpha: non_negative(p, "tversky", "alpha")?,
        beta: non_negative(p, "tversky", "beta")?,
        smooth: smooth(p, "tversky")?,
    }))
}

fn build_gwd(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    let matrix = p.floats("distance_matrix")?;
    wasserstein::check_matrix(&matrix)?;
    Ok(Box::new(wasserstein::GeneralisedWassersteinDice { matrix, smooth: smooth(p, "generalised_wasserstein_dice")? }))
}

fn build_sensitivity_specificity(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    Ok(Box::new(sensspec::SensitivitySpecificity {
        r: checked(p, "sensitivity_specificity", "r", "in [0, 1]", |v| (0.0..=1.0).contains(&v))?,
        smooth: smooth(p, "sensitivity_specificity")?,
    }))
}

fn build_focal(p: &Params) -> Result<Box<dyn LossFn>, PluginError> {
    let alpha = p.floats("alpha")?;
    if let Some(a) = alpha.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
        return Err(PluginError::new(format!("focal: parameter `alpha` entries must be finite and ≥ 0, got {a}")));
    }
    Ok(Box::new(crossent::Focal { gamma: non_negative(p, "focal", "gamma")?, alpha }))
}
