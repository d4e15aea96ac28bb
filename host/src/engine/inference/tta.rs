//! Test-time augmentation by mirroring, and ensembling: a [`Predictor`] runs every model
//! on every mirrored copy of a batch and averages the outputs (mirrored back).

use tch::{Kind, Tensor};

use super::super::{EngineError, Model};
use super::compute::{Compute, InferencePrecision};

/// The mirrorings of test-time augmentation: every subset of `axes` (`0 = i`, `1 = j`,
/// `2 = k`), the identity first, as tensor dimensions of `[N, C, D, H, W]`.
///
/// # Errors
/// An axis above 2 or given twice.
pub fn mirrorings(axes: &[usize]) -> Result<Vec<Vec<i64>>, String> {
    let mut seen = [false; 3];
    for &a in axes {
        if a > 2 || seen[a] {
            return Err(format!("mirror axes must be distinct values in 0..=2 (i, j, k), got {axes:?}"));
        }
        seen[a] = true;
    }
    let mut out = Vec::with_capacity(1 << axes.len());
    for mask in 0u32..(1 << axes.len()) {
        // Axis i is tensor dimension 4 (W), j is 3 (H), k is 2 (D).
        out.push(axes.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, &a)| 4 - a as i64).collect());
    }
    Ok(out)
}

/// Several models and mirrorings whose outputs are averaged.
pub struct Predictor {
    /// The ensemble (one model per checkpoint or bundle).
    pub models: Vec<Model>,
    /// Tensor dimensions to flip, one entry per pass (see [`mirrorings`]).
    pub mirrorings: Vec<Vec<i64>>,
    /// Average logits instead of softmax probabilities.
    pub logits: bool,
    /// Precision and layout of the forward passes (the models must have been prepared
    /// with it: [`Predictor::new`] does).
    pub compute: Compute,
    /// Replicas of this predictor (their own copies of the models) that run batches at
    /// the same time as it, each on its own thread: see [`Predictor::with_workers`].
    pub helpers: Vec<Predictor>,
    /// libtorch intra-op threads of each worker when there are helpers.
    pub worker_threads: usize,
    /// With [`InferencePrecision::Auto`], float32 copies of every model's parameters and
    /// buffers until a first batch has run in bf16.
    fp32_copies: Option<Vec<Vec<Tensor>>>,
}

impl Predictor {
    /// A predictor whose models are converted to `compute`'s precision and layout.
    pub fn new(mut models: Vec<Model>, mirrorings: Vec<Vec<i64>>, logits: bool, compute: Compute) -> Predictor {
        let fp32_copies = (compute.precision == InferencePrecision::Auto)
            .then(|| models.iter().map(|m| m.state().map(|(_, t)| t.detach().copy()).collect()).collect());
        for m in &mut models {
            compute.prepare_model(m);
        }
        Predictor { models, mirrorings, logits, compute, helpers: Vec::new(), worker_threads: 0, fp32_copies }
    }

    /// Gives the models their float32 values back and runs in float32 from now on.
    fn fall_back_to_fp32(&mut self) {
        let Some(copies) = self.fp32_copies.take() else { return };
        for (model, copies) in self.models.iter_mut().zip(copies) {
            for ((_, t), copy) in model.params.iter_mut().chain(model.buffers.iter_mut()).zip(copies) {
                tch::no_grad(|| t.set_data(&copy));
            }
        }
        self.compute.precision = InferencePrecision::Fp32;
        for m in &mut self.models {
            self.compute.prepare_model(m);
        }
    }

    /// This predictor and `replicas` (each one set of models like this one's, converted
    /// here) run window batches concurrently, each on its own thread with `threads`
    /// libtorch threads. On a CPU, single-threaded replicas use the cores better than
    /// one predictor whose convolutions split each layer across threads.
    pub fn with_workers(mut self, replicas: Vec<Vec<Model>>, threads: usize) -> Predictor {
        self.helpers = replicas
            .into_iter()
            .map(|models| Predictor::new(models, self.mirrorings.clone(), self.logits, self.compute))
            .collect();
        self.worker_threads = threads;
        self
    }

    /// Number of forward passes per batch.
    pub fn passes(&self) -> usize {
        self.models.len() * self.mirrorings.len().max(1)
    }

    /// The averaged output of a batch, on the CPU as float32.
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, K, D, H, W]`
    ///
    /// # Errors
    /// A plugin failure, or models that disagree on the output shape.
    pub fn predict(&mut self, input: &Tensor) -> Result<Tensor, EngineError> {
        match self.predict_once(input) {
            Err(EngineError::Plugin { error, .. }) if self.fp32_copies.is_some() => {
                let name = self.models.first().map(|m| m.name.clone()).unwrap_or_default();
                tracing::warn!(
                    network = %name,
                    // libtorch's message up to its C++ backtrace.
                    error = %error.message.as_str().split(['\n']).next().unwrap_or_default().split("\\n").next().unwrap_or_default(),
                    "the network does not run in bf16 here: float32 instead (`inference.precision = \"fp32\"` says so up front)"
                );
                self.fall_back_to_fp32();
                self.predict_once(input)
            }
            Ok(out) => {
                self.fp32_copies = None;
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    fn predict_once(&mut self, input: &Tensor) -> Result<Tensor, EngineError> {
        let identity = [Vec::new()];
        let mirrorings: &[Vec<i64>] = if self.mirrorings.is_empty() { &identity } else { &self.mirrorings };
        let input = self.compute.prepare_input(input);
        let mut sum: Option<Tensor> = None;
        for model in &mut self.models {
            for dims in mirrorings {
                let x = if dims.is_empty() { input.shallow_clone() } else { input.flip(dims.as_slice()) };
                let y = tch::no_grad(|| model.forward(&x, false)).map_err(|error| EngineError::Plugin {
                    context: match self.compute.precision {
                        InferencePrecision::Bf16 | InferencePrecision::Auto => format!(
                            "network `{}` forward in bf16 (`inference.precision = \"fp32\"` runs it in float32)",
                            model.name
                        ),
                        InferencePrecision::Fp32 => format!("network `{}` forward", model.name),
                    },
                    error,
                })?;
                // Back to the default layout while the maps are still narrow (bf16), so
                // that the float32 result needs no copy of its own.
                let y = y.contiguous();
                let y = if self.logits { y.to_kind(Kind::Float) } else { y.softmax(1, Kind::Float) };
                let y = if dims.is_empty() { y } else { y.flip(dims.as_slice()) };
                sum = Some(match sum {
                    None => y,
                    Some(s) if s.size() == y.size() => s + y,
                    Some(s) => {
                        return Err(EngineError::Other(format!(
                            "network `{}` returned {:?} where the ensemble's first model returned {:?}",
                            model.name,
                            y.size(),
                            s.size()
                        )))
                    }
                });
            }
        }
        let sum = sum.ok_or_else(|| EngineError::Other("no model to predict with".into()))?;
        let mean = if self.passes() == 1 { sum } else { sum / (self.passes() as f64) };
        Ok(mean.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrorings_are_every_subset_with_identity_first() {
        assert_eq!(mirrorings(&[]).unwrap(), vec![Vec::<i64>::new()]);
        assert_eq!(mirrorings(&[0, 2]).unwrap(), vec![vec![], vec![4], vec![2], vec![4, 2]]);
        assert!(mirrorings(&[3]).is_err());
        assert!(mirrorings(&[1, 1]).is_err());
    }
}
