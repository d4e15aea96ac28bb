//! The records a training run logs: one per iteration ([`StepRecord`], with each
//! device's part, [`ReplicaStep`]) and one per validation ([`Validation`]).
//!
//! They live here, beside the logs that write them, so that the dependency points one
//! way: the engine produces these records and imports `runlog`; `runlog` imports nothing
//! from the engine.

use serde::Serialize;

/// What one training iteration logs.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Iterations done.
    pub iteration: u64,
    /// Batch loss.
    pub loss: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Global gradient norm before clipping (NaN for a step skipped by loss scaling).
    pub grad_norm: f64,
    /// Windows per second since the run started.
    pub patches_per_s: f64,
    /// Seconds waiting for the batch.
    pub data_wait_s: f64,
    /// Waiting share of the step, percent.
    pub data_wait_pct: f64,
    /// Seconds of the whole step.
    pub step_s: f64,
    /// fp16 loss scale, when loss scaling is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Each device's part.
    pub devices: Vec<ReplicaStep>,
}

/// One replica's part of a training step.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStep {
    /// The device, e.g. "Cpu" or "Cuda(0)".
    pub device: String,
    /// Windows of the batch it took.
    pub windows: usize,
    /// Its loss over those windows.
    pub loss: f64,
    /// Seconds of its forward, loss and backward.
    pub seconds: f64,
}

/// One validation's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Validation {
    /// Iteration after which it ran.
    pub iteration: u64,
    /// Mean loss over the validation batches.
    pub loss: f64,
    /// Dice per class over all validation windows (NaN for a class absent from both).
    pub dice: Vec<f64>,
}
