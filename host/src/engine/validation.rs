//! Validation during training: fixed windows of the VALID subjects, scored with the
//! network in evaluation mode (loss and per-class Dice, from the same metric code as
//! `niftyhost evaluation`), and the early-stopping rules applied to the losses.

use tch::Kind;

use super::replicas::Replicas;
use super::tensors::torch_error;
use super::EngineError;
use crate::config::EarlyStoppingMode;
use crate::data::{Loader, WindowSampler};
use crate::metrics::confusion;
use crate::runlog::records::Validation;

/// When to stop training early, from the validation losses so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// Never.
    Off,
    /// Stop when the newest loss is above the mean of the `patience` before it.
    Mean {
        /// Losses compared against.
        patience: usize,
    },
    /// Stop when the loss went up at each of the last `patience` validations.
    ValidationUp {
        /// Consecutive increases that stop training.
        patience: usize,
    },
}

impl EarlyStopping {
    /// The rule `training.early_stopping_mode` and `training.patience` describe
    /// (`patience = 0`: off).
    pub fn new(mode: EarlyStoppingMode, patience: usize) -> EarlyStopping {
        match (mode, patience) {
            (_, 0) => EarlyStopping::Off,
            (EarlyStoppingMode::Mean, p) => EarlyStopping::Mean { patience: p },
            (EarlyStoppingMode::ValidationUp, p) => EarlyStopping::ValidationUp { patience: p },
        }
    }

    /// Whether to stop given the validation losses so far, oldest first.
    pub fn should_stop(&self, losses: &[f64]) -> bool {
        match *self {
            EarlyStopping::Off => false,
            EarlyStopping::Mean { patience } => match losses.split_last() {
                Some((last, before)) if before.len() >= patience => {
                    let window = &before[before.len() - patience..];
                    *last > window.iter().sum::<f64>() / patience as f64
                }
                _ => false,
            },
            EarlyStopping::ValidationUp { patience } => {
                losses.len() > patience && losses[losses.len() - patience - 1..].windows(2).all(|w| w[1] > w[0])
            }
        }
    }
}

/// Scores `batches` fixed batches of `sampler` (batch `t` is always the same windows).
///
/// # Errors
/// Data that cannot be loaded, or a plugin failure.
pub fn validate(
    replicas: &mut Replicas,
    sampler: std::sync::Arc<WindowSampler>,
    batches: u64,
    classes: usize,
    iteration: u64,
    loss_name: &str,
) -> Result<Validation, EngineError> {
    let mut loader = Loader::spawn(sampler, 0, batches, 1, 2);
    let mut total = 0.0;
    let mut counts = vec![crate::metrics::LabelOverlap { label: 0, tp: 0, fp: 0, fn_: 0, tn: 0 }; classes];
    for _ in 0..batches {
        let batch =
            loader.next_batch().ok_or_else(|| EngineError::Other("validation loader stopped early".into()))??;
        let (images, labels) = batch.to_tensors();
        let (loss, logits, labels) =
            replicas.evaluate(&images, &labels, batch.loss_weight_tensor().as_ref(), loss_name)?;
        total += loss;
        let predicted = logits
            .f_argmax(1, false)
            .and_then(|p| p.f_to_kind(Kind::Float))
            .and_then(|p| p.f_view([-1]))
            .and_then(|p| Vec::<f32>::try_from(p))
            .map_err(torch_error("the validation prediction (the arg-max of the network's output)"))?;
        // The labels of the label window the loss saw (`network.label_size`).
        let reference = labels
            .f_to_kind(Kind::Float)
            .and_then(|l| l.f_view([-1]))
            .and_then(|l| Vec::<f32>::try_from(l))
            .map_err(torch_error("the validation labels"))?;
        for (sum, c) in counts.iter_mut().zip(confusion(&predicted, &reference, classes as u32)) {
            *sum = crate::metrics::LabelOverlap {
                label: c.label,
                tp: sum.tp + c.tp,
                fp: sum.fp + c.fp,
                fn_: sum.fn_ + c.fn_,
                tn: sum.tn + c.tn,
            };
        }
        loader.recycle(batch);
    }
    Ok(Validation { iteration, loss: total / batches.max(1) as f64, dice: counts.iter().map(|c| c.dice()).collect() })
}

#[cfg(test)]
mod tests {
    use super::{EarlyStopping, EarlyStoppingMode};

    #[test]
    fn mean_rule_stops_when_the_newest_loss_is_above_the_recent_mean() {
        let rule = EarlyStopping::new(EarlyStoppingMode::Mean, 3);
        assert!(!rule.should_stop(&[1.0, 0.9, 0.8]), "too few losses");
        assert!(!rule.should_stop(&[1.0, 0.9, 0.8, 0.7]));
        assert!(rule.should_stop(&[1.0, 0.5, 0.4, 0.8]), "0.8 > mean(1.0, 0.5, 0.4)");
    }

    #[test]
    fn validation_up_stops_after_patience_increases_in_a_row() {
        let rule = EarlyStopping::new(EarlyStoppingMode::ValidationUp, 2);
        assert!(!rule.should_stop(&[0.5, 0.6]));
        assert!(!rule.should_stop(&[0.5, 0.6, 0.55]));
        assert!(rule.should_stop(&[0.5, 0.4, 0.6, 0.7]));
        assert_eq!(EarlyStopping::new(EarlyStoppingMode::Mean, 0), EarlyStopping::Off);
        assert!("median".parse::<EarlyStoppingMode>().is_err());
    }
}
