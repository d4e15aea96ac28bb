//! Synchronous data parallelism: one network replica per device, each step splitting
//! the batch across replicas, running forward and backward on all of them at once (a
//! thread per replica), averaging the gradients into the first replica, where the one
//! optimiser step happens, and copying the result back to every replica.
//!
//! Batch rule: the batch is cut into contiguous chunks whose sizes differ by at most one,
//! the first replicas taking the larger ones; replicas left without a window sit the step
//! out. Each replica's loss is weighted by its share of the batch, so for losses that are
//! means over windows the averaged gradient is the full batch's gradient. Losses that mix
//! windows (e.g. Dice summed over the batch) are computed per replica, as NiftyNet's
//! towers do. Loss weight maps (`segmentation.weight`) are split like the labels, and
//! each replica's loss is given its chunk: a weighted mean `Σ w ℓ / Σ w` is then one per
//! replica, combined by window share like the Dice losses. A network with auxiliary outputs
//! (deep supervision) is trained on all of them ([`super::deep_supervision`]).

use std::time::Instant;

use abi_stable::std_types::ROption;
use niftyhost_plugin_api::{LossBox, RTensor};
use tch::{Device, Tensor};

use super::deep_supervision::{refuse_label_border, supervised_loss};
use super::label_window::LabelWindow;
use super::precision::{Autocasting, MixedPrecision};
use super::tensors::{backward, loss_value, to_device, torch_error};
use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::ChannelLayout;
use crate::plugins::Registry;
use crate::runlog::records::ReplicaStep;

/// The replicas of a network, one per device.
pub struct Replicas {
    models: Vec<Model>,
    losses: Vec<LossBox>,
    devices: Vec<Device>,
    precision: MixedPrecision,
    label_window: LabelWindow,
}

/// What a training step's forward and backward passes report.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The batch loss: the replicas' losses weighted by their share of the batch.
    pub loss: f64,
    /// Each replica that took part, in device order.
    pub replicas: Vec<ReplicaStep>,
}

/// The chunks `(start, length)` of a batch of `n` windows over `replicas` replicas.
pub fn split(n: usize, replicas: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (n / replicas, n % replicas);
    let mut start = 0;
    (0..replicas)
        .map(|r| {
            let len = base + usize::from(r < extra);
            let chunk = (start, len);
            start += len;
            chunk
        })
        .collect()
}

impl Replicas {
    /// Builds one network (for images with `channels`) and one loss per device through
    /// the plugins, all replicas starting from the first one's weights.
    ///
    /// # Errors
    /// A missing component or a plugin refusing its parameters or device; the weights
    /// cannot be copied to a device.
    pub fn build(
        registry: &Registry,
        settings: &Settings,
        channels: ChannelLayout,
        devices: &[Device],
    ) -> Result<Replicas, EngineError> {
        let loss_config = serde_json::Value::Object(settings.training.loss_params.clone());
        let mut models = Vec::with_capacity(devices.len());
        let mut losses = Vec::with_capacity(devices.len());
        for &device in devices {
            models.push(Model::build(registry, settings, channels.clone(), device)?);
            losses.push(registry.new_loss(&settings.training.loss, &loss_config)?);
        }
        let precision = settings.training.mixed_precision.on(devices);
        let label_window = LabelWindow::from_settings(settings);
        let mut replicas = Replicas { models, losses, devices: devices.to_vec(), precision, label_window };
        replicas.broadcast()?;
        Ok(replicas)
    }

    /// The replica the optimiser updates and checkpoints are taken from.
    pub fn primary(&mut self) -> &mut Model {
        &mut self.models[0]
    }

    /// The arithmetic the replicas' forward passes run in.
    pub fn precision(&self) -> MixedPrecision {
        self.precision
    }

    /// The centre of each window the loss is computed on (`network.label_size`).
    pub fn label_window(&self) -> LabelWindow {
        self.label_window
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether there is no replica (never, once built).
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Forward and backward of one batch on every replica in parallel; leaves the
    /// averaged gradient in the primary replica, multiplied by `loss_scale` (1 unless
    /// fp16 loss scaling is on). Returns the batch loss (the replicas' losses weighted by
    /// their share of the batch, unscaled) and each replica's part. The loss sees the
    /// label window only ([`LabelWindow::apply`]).
    ///
    /// # Shapes
    /// images `[N, C, D, H, W]`, labels and loss weights `[N, 1, D, H, W]` (on the CPU)
    ///
    /// # Errors
    /// A plugin failure in any replica, naming the component; an output of neither the
    /// window's nor the label window's size; a loss that is not a scalar or carries no
    /// gradient; a batch or gradient that cannot be moved to its device.
    pub fn forward_backward(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        loss_weights: Option<&Tensor>,
        loss_name: &str,
        loss_scale: f64,
    ) -> Result<StepOutcome, EngineError> {
        let (precision, label_window) = (self.precision, self.label_window);
        let n = images.size()[0] as usize;
        let chunks = split(n, self.models.len());
        let jobs: Vec<_> = self
            .models
            .iter_mut()
            .zip(self.losses.iter_mut())
            .zip(&self.devices)
            .zip(&chunks)
            .filter(|(_, &(_, len))| len > 0)
            .map(|(((model, loss_fn), &device), &(start, len))| {
                let chunk = |t: &Tensor, what: &str| to_device(&t.narrow(0, start as i64, len as i64), device, what);
                let x = chunk(images, "the batch's images")?;
                let y = chunk(labels, "the batch's labels")?;
                let w = loss_weights.map(|w| chunk(w, "the batch's loss weights")).transpose()?;
                Ok((model, loss_fn, device, (x, y, w), len))
            })
            .collect::<Result<_, EngineError>>()?;
        type Job<'a> = (&'a mut Model, &'a mut LossBox, Device, (Tensor, Tensor, Option<Tensor>), usize);
        let run = |(model, loss_fn, device, (x, y, w), len): Job| {
            let started = Instant::now();
            let share = len as f64 / n as f64;
            let autocast = precision.autocast(device);
            let outputs = model.forward_outputs(&x, true).map_err(|error| EngineError::Plugin {
                context: format!("network `{}` forward on {device:?}", model.name),
                error,
            })?;
            refuse_label_border(outputs.len(), label_window.border, &model.name)?;
            let loss = supervised_loss(outputs, y, w, |logits, y, w| {
                let on = label_window.apply(logits, y, w, &model.name)?;
                call_loss(loss_fn, on.logits, on.labels, on.weights)
                    .map_err(|error| EngineError::Plugin { context: format!("loss `{loss_name}`"), error })
            })?;
            drop(autocast);
            let value = loss_value(&loss, loss_name, true)?;
            if value.is_finite() {
                backward(&loss, share * loss_scale, loss_name)?;
            }
            let seconds = started.elapsed().as_secs_f64();
            Ok(ReplicaStep { device: format!("{device:?}"), windows: len, loss: value, seconds })
        };
        // One replica runs on the calling thread: a fresh thread per step would also
        // start a fresh intra-op thread pool in libtorch every step.
        let results: Vec<Result<ReplicaStep, EngineError>> = if jobs.len() == 1 {
            jobs.into_iter().map(run).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = jobs.into_iter().map(|job| scope.spawn(move || run(job))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(EngineError::Other("a replica thread panicked".into()))))
                    .collect()
            })
        };
        let replicas = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let loss = replicas.iter().map(|r| r.loss * r.windows as f64 / n as f64).sum();
        self.gather_gradients()?;
        Ok(StepOutcome { loss, replicas })
    }

    /// Sums every replica's gradients into the primary's (each is already weighted).
    ///
    /// # Errors
    /// A gradient that cannot be moved to the primary's device or added there.
    fn gather_gradients(&mut self) -> Result<(), EngineError> {
        let (primary, others) = self.models.split_first_mut().expect("at least one replica");
        let device = self.devices[0];
        tch::no_grad(|| {
            for other in others.iter_mut() {
                for ((_, p), (_, q)) in primary.params.iter_mut().zip(&mut other.params) {
                    let g = q.grad();
                    if !g.defined() {
                        continue;
                    }
                    // The primary always has a share of the batch, so its graph reaches every
                    // parameter another replica's does.
                    let mut pg = p.grad();
                    if pg.defined() {
                        let g = to_device(&g, device, "a replica's gradients")?;
                        let _ = pg.f_add_(&g).map_err(torch_error("adding a replica's gradients"))?;
                    }
                    q.zero_grad();
                }
            }
            Ok(())
        })
    }

    /// Loss, logits and labels of the primary replica in evaluation mode, without
    /// gradients; logits and labels on the label window ([`LabelWindow::apply`]), on the
    /// CPU.
    ///
    /// # Shapes
    /// images `[N, C, D, H, W]`, labels and loss weights `[N, 1, D, H, W]` → logits
    /// `[N, K, ld, lh, lw]` and labels `[N, 1, ld, lh, lw]`
    ///
    /// # Errors
    /// A plugin failure, an output of neither the window's nor the label window's size,
    /// a loss that is not a scalar, or data that cannot be moved between devices.
    pub fn evaluate(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        loss_weights: Option<&Tensor>,
        loss_name: &str,
    ) -> Result<(f64, Tensor, Tensor), EngineError> {
        let device = self.devices[0];
        let model = &mut self.models[0];
        tch::no_grad(|| {
            let images = to_device(images, device, "the batch's images")?;
            let outputs = model.forward_outputs(&images, false).map_err(|error| EngineError::Plugin {
                context: format!("network `{}` forward (validation)", model.name),
                error,
            })?;
            let logits = outputs[0].shallow_clone();
            let weights = loss_weights.map(|w| to_device(w, device, "the batch's loss weights")).transpose()?;
            let labels = to_device(labels, device, "the batch's labels")?;
            refuse_label_border(outputs.len(), self.label_window.border, &model.name)?;
            let on = self.label_window.apply(logits, labels.shallow_clone(), None, &model.name)?;
            let loss = supervised_loss(outputs, labels, weights, |logits, y, w| {
                let on = self.label_window.apply(logits, y, w, &model.name)?;
                call_loss(&self.losses[0], on.logits, on.labels, on.weights)
                    .map_err(|error| EngineError::Plugin { context: format!("loss `{loss_name}` (validation)"), error })
            })?;
            let value = loss_value(&loss, loss_name, false)?;
            let logits = to_device(&on.logits, Device::Cpu, &format!("network `{}`'s output", model.name))?;
            Ok((value, logits, to_device(&on.labels, Device::Cpu, "the batch's labels")?))
        })
    }

    /// Stops training the parameters whose names match `names` in every replica; returns
    /// how many parameters (per replica) it froze.
    pub fn freeze(&mut self, names: &regex::Regex) -> usize {
        let mut frozen = 0;
        for model in &mut self.models {
            frozen = 0;
            for (_, p) in model.params.iter_mut().filter(|(n, _)| names.is_match(n)) {
                let _ = p.set_requires_grad(false);
                frozen += 1;
            }
        }
        frozen
    }

    /// Copies the primary's parameters and buffers to every other replica.
    ///
    /// # Errors
    /// A tensor that cannot be copied (another shape, or a device out of memory), named.
    pub fn broadcast(&mut self) -> Result<(), EngineError> {
        let (primary, others) = self.models.split_first_mut().expect("at least one replica");
        tch::no_grad(|| {
            for other in others.iter_mut() {
                for ((name, src), (_, dst)) in
                    primary.state().zip(other.params.iter_mut().chain(other.buffers.iter_mut()))
                {
                    dst.f_copy_(src).map_err(torch_error(format_args!(
                        "copying `{name}` of network `{}` to a replica",
                        other.name
                    )))?;
                }
            }
            Ok(())
        })
    }
}

/// `loss_fn` on `logits`, `labels` and, when given, the voxel weights.
///
/// # Errors
/// The plugin's error.
fn call_loss(
    loss_fn: &LossBox,
    logits: Tensor,
    labels: Tensor,
    weights: Option<Tensor>,
) -> Result<Tensor, niftyhost_plugin_api::PluginError> {
    let weights = weights.map(RTensor::from_tch);
    let weights = match &weights {
        Some(w) => ROption::RSome(w),
        None => ROption::RNone,
    };
    loss_fn.loss(&RTensor::from_tch(logits), &RTensor::from_tch(labels), weights).into_result().map(RTensor::into_tch)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn chunks_cover_the_batch_and_differ_by_at_most_one() {
        assert_eq!(split(4, 2), vec![(0, 2), (2, 2)]);
        assert_eq!(split(5, 2), vec![(0, 3), (3, 2)]);
        assert_eq!(split(2, 3), vec![(0, 1), (1, 1), (2, 0)]);
        for n in 0..20 {
            for r in 1..5 {
                let c = split(n, r);
                assert_eq!(c.iter().map(|x| x.1).sum::<usize>(), n);
                let (lo, hi) = (c.iter().map(|x| x.1).min().unwrap(), c.iter().map(|x| x.1).max().unwrap());
                assert!(hi - lo <= 1);
            }
        }
    }
}
