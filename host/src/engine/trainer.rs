//! The trainer: batches from the loader threads, forward and backward through the plugin
//! network and loss, an optimiser step, progress, logs and checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tch::Tensor;

use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;
use niftyhost_plugin_api::ComponentKind;
use serde::Serialize;

use super::checkpoint::{self, CheckpointMeta, PluginRef};
use super::folder_lock::FolderLock;
use super::optim::{Optimiser, OptimiserConfig, Schedule};
use super::precision::{LossScaler, MixedPrecision};
use super::replicas::{Replicas, StepOutcome};
use super::validation::{validate, EarlyStopping};
use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::phases::training_subjects;
use crate::data::prepare::Preparation;
use crate::data::{training_sampler, AugmentationChain, ChannelLayout, Loader, WindowSampler};
use crate::distributed::buckets::{self, Buckets};
use crate::distributed::overlap::Overlap;
use crate::distributed::{self, Communicator};
use crate::plugins::Registry;
use crate::runlog::records::{ReplicaStep, StepRecord, Validation};
use crate::runlog::RunLog;
use crate::telemetry::Progress;

/// What a finished training run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The network trained.
    pub network: String,
    /// Iteration reached.
    pub iterations: u64,
    /// Iteration it started from.
    pub started_at: u64,
    /// Loss of the last iteration.
    pub final_loss: f64,
    /// Wall time of the loop.
    pub seconds: f64,
    /// Mean seconds per iteration.
    pub seconds_per_iteration: f64,
    /// Windows per second.
    pub patches_per_second: f64,
    /// Share of loop time spent waiting for batches.
    pub data_wait_share: f64,
    /// Share of loop time spent averaging gradients and losses across processes.
    pub communication_share: f64,
    /// This process's rank in the job (0 writes checkpoints and logs).
    pub rank: usize,
    /// Processes in the job.
    pub processes: usize,
    /// The communicator's backend: "in-process", "mpi" or "nccl".
    pub backend: String,
    /// Mean seconds per step of each part of it.
    pub step_parts: StepParts,
    /// Trainable scalars of the network.
    pub parameters: i64,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// The per-iteration log.
    pub log: PathBuf,
    /// The TensorBoard event file, if written.
    pub tensorboard: Option<PathBuf>,
    /// The loss curve drawn at the end.
    pub loss_curve: Option<PathBuf>,
    /// Validations run.
    pub validations: Vec<Validation>,
    /// Iteration early stopping ended the run at, if it did.
    pub stopped_early: Option<u64>,
    /// The subjects trained on (ids, sorted).
    pub train_subjects: Vec<String>,
    /// The subjects validated on (ids, sorted).
    pub valid_subjects: Vec<String>,
}

impl std::fmt::Display for TrainReport {
    /// The iteration reached, the speed, the checkpoint and the log, as `niftyhost train`
    /// prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "trained {} to iteration {} (loss {:.4}, {:.3} s/iteration, {:.1} patches/s, data wait {:.1}%)",
            self.network,
            self.iterations,
            self.final_loss,
            self.seconds_per_iteration,
            self.patches_per_second,
            100.0 * self.data_wait_share
        )?;
        writeln!(f, "checkpoint: {}\nlog: {}", self.checkpoint.display(), self.log.display())
    }
}

/// Where a training step's time goes, as mean seconds per step. The host's overhead is
/// everything but `data_wait` and `plugin`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepParts {
    /// Waiting for the loader threads' batch (queue pop included).
    pub data_wait: f64,
    /// Batch buffers to tensors, and the buffers back to the loaders.
    pub batch_to_tensors: f64,
    /// Network forward, loss and backward in the plugins (the slowest replica).
    pub plugin: f64,
    /// Splitting the batch, moving it to the devices, replica threads, and gradient
    /// averaging: the replicas' call minus `plugin`.
    pub dispatch_and_averaging: f64,
    /// Averaging the gradients and the loss across processes (0 for one process).
    pub communication: f64,
    /// Loss unscaling, clipping and the optimiser update.
    pub optimiser: f64,
    /// Copying the updated parameters to the other replicas.
    pub broadcast: f64,
    /// The JSONL and TensorBoard records and the progress bar.
    pub logs: f64,
    /// What happens every n steps (averaged over all steps): validation, TensorBoard
    /// images (a forward pass) and checkpoints.
    pub periodic: f64,
    /// The whole step.
    pub step: f64,
    /// The host's own share of a step: batch to tensors, dispatch and averaging,
    /// optimiser, broadcast and logs over the whole step (communication across
    /// processes is counted apart).
    pub host_overhead_share: f64,
}

impl StepParts {
    /// The timed parts, in declaration order (`host_overhead_share` is derived).
    fn parts(&self) -> [f64; 10] {
        [
            self.data_wait,
            self.batch_to_tensors,
            self.plugin,
            self.dispatch_and_averaging,
            self.communication,
            self.optimiser,
            self.broadcast,
            self.logs,
            self.periodic,
            self.step,
        ]
    }

    fn from_parts(p: [f64; 10]) -> StepParts {
        let [data_wait, batch_to_tensors, plugin, dispatch_and_averaging, communication, optimiser, broadcast, logs, periodic, step] =
            p;
        let host = batch_to_tensors + dispatch_and_averaging + optimiser + broadcast + logs;
        StepParts {
            data_wait,
            batch_to_tensors,
            plugin,
            dispatch_and_averaging,
            communication,
            optimiser,
            broadcast,
            logs,
            periodic,
            step,
            host_overhead_share: host / step.max(1e-12),
        }
    }

    fn add(&mut self, other: &StepParts) {
        let (a, b) = (self.parts(), other.parts());
        *self = StepParts::from_parts(std::array::from_fn(|i| a[i] + b[i]));
    }

    fn mean(self, steps: f64) -> StepParts {
        StepParts::from_parts(self.parts().map(|v| v / steps.max(1.0)))
    }
}

fn plugin_refs(registry: &Registry, settings: &Settings) -> Vec<PluginRef> {
    let augmentations = crate::config::augmentation::chain(&settings.training);
    [(ComponentKind::Network, &settings.network.name), (ComponentKind::Loss, &settings.training.loss)]
        .into_iter()
        .chain(augmentations.iter().map(|e| (ComponentKind::Augmentation, &e.name)))
        .filter_map(|(kind, name)| {
            let (lib, _) = registry.find(kind, name).ok()?;
            Some(PluginRef {
                component: name.clone(),
                kind: kind.as_str().to_owned(),
                library: lib.info.name.to_string(),
                version: lib.info.version.to_string(),
                file: lib.path.clone(),
                sha256: lib.sha256.clone(),
            })
        })
        .collect()
}

/// The iteration to start from, restoring weights and optimiser state when resuming, and
/// the checkpoint's fp16 loss scaler if it saved one.
fn restore(
    settings: &Settings,
    model: &mut Model,
    optimiser: &mut Optimiser,
) -> Result<(u64, Option<LossScaler>), EngineError> {
    let dir = settings.checkpoint_dir();
    let wanted = settings.training.starting_iter;
    let found = checkpoint::list(&dir);
    let chosen = match wanted {
        0 => return Ok((0, None)),
        -1 => match found.last() {
            Some(c) => c.clone(),
            None => {
                tracing::info!(dir = %dir.display(), "no complete checkpoint to resume from: starting at iteration 0");
                return Ok((0, None));
            }
        },
        n if n > 0 => found.iter().find(|(i, _)| *i == n as u64).cloned().ok_or_else(|| {
            let have: Vec<u64> = found.iter().map(|(i, _)| *i).collect();
            EngineError::Other(format!(
                "`training.starting_iter` = {n}, but {} holds checkpoints {have:?}",
                dir.display()
            ))
        })?,
        n => {
            return Err(EngineError::Other(format!(
                "`training.starting_iter` must be -1, 0 or a checkpoint iteration, got {n}"
            )))
        }
    };
    let saved = checkpoint::recorded_channels(std::slice::from_ref(&chosen.1), &settings.segmentation.image)?;
    if saved != model.channels {
        return Err(EngineError::Other(format!(
            "checkpoint {} was trained on image channels {saved}, the data has {}: resume with the same inputs, or start afresh (`training.starting_iter = 0` in another `system.model_dir`)",
            chosen.1.display(),
            model.channels
        )));
    }
    checkpoint::load_weights(&chosen.1, model)?;
    match checkpoint::read_optimiser(&chosen.1)? {
        Some(state) => optimiser.load_state(state, &model.params).map_err(|e| {
            EngineError::Other(format!("optimiser state {}: {e}", checkpoint::optimiser_path(&chosen.1).display()))
        })?,
        None => {
            tracing::warn!(file = %chosen.1.display(), "the checkpoint has no optimiser state: the optimiser starts afresh")
        }
    }
    let loss_scaler = checkpoint::read_meta(&chosen.1).ok().and_then(|meta| meta.loss_scaler);
    tracing::info!(iteration = chosen.0, file = %chosen.1.display(), "resumed from checkpoint");
    Ok((chosen.0, loss_scaler))
}

/// Trains the configured network; relative data paths are taken from `base_dir`.
///
/// Started by `mpirun`, `srun` or `torchrun`, this process is one rank of a job: it
/// draws its own share of every batch, averages gradients with the other ranks through
/// the communicator `system.distributed` names, and only rank 0 writes checkpoints and
/// logs. An error on one rank ends the whole job.
///
/// # Errors
/// Bad data or configuration, a missing plugin, a plugin failure, a checkpoint that
/// cannot be written, a NaN/infinite loss (the last good checkpoint is kept), or a peer
/// process that died or hung.
pub fn train(settings: &Settings, registry: &Registry, base_dir: &Path) -> Result<TrainReport, EngineError> {
    let world = distributed::launch::from_env().map_err(distributed::CommError::from)?;
    let devices =
        super::preflight::check(settings, registry, base_dir, &distributed::local_device_names(settings, &world))?;
    let mut comm = distributed::connect(settings, world, &devices)?;
    let result = train_with(settings, registry, base_dir, &devices, comm.as_mut());
    if let Err(e) = &result {
        if comm.world().size > 1 {
            // Printed here: aborting ends this process before the caller could.
            tracing::error!(rank = comm.world().rank, "training failed: {e}");
            comm.abort(1);
        }
    }
    result
}

/// Sets up the run, then one step and its periodic handlers per iteration until
/// `training.max_iter` or early stopping.
fn train_with(
    settings: &Settings,
    registry: &Registry,
    base_dir: &Path,
    devices: &[tch::Device],
    comm: &mut dyn Communicator,
) -> Result<TrainReport, EngineError> {
    let mut run = TrainingRun::set_up(settings, registry, base_dir, devices, comm)?;
    for iteration in run.start..settings.training.max_iter {
        let mut timer = StepTimer::start();
        let step = run.step(iteration, &mut timer)?;
        run.log_step(&step, &mut timer);
        run.log_slices_if_due(&step)?;
        let stop = run.validate_if_due(step.done)?;
        run.checkpoint_if_due(step.done, stop)?;
        run.parts.add(&timer.finish());
        if stop {
            break;
        }
    }
    Ok(run.finish())
}

/// A training run once set up: the replicas and their optimiser, gradient averaging
/// across processes, the data, the logs and checkpoints, and what the run has gathered
/// so far.
struct TrainingRun<'a> {
    settings: &'a Settings,
    comm: &'a mut dyn Communicator,
    /// Rank 0's lock on the run's folder, held until the run ends (other ranks: none).
    _model_folder: Option<FolderLock>,
    /// Whether this process writes the logs and checkpoints (rank 0).
    primary: bool,
    /// The network's name, for the loss curve's title.
    name: String,
    /// Trainable scalars of the network.
    parameters: i64,
    /// Windows per step over all processes.
    patches: f64,
    replicas: Replicas,
    optimiser: Optimiser,
    schedule: Schedule,
    /// fp16 dynamic loss scaling, when on.
    scaler: Option<LossScaler>,
    /// Gradient averaging after backward (several replicas, or no overlap).
    gradient_buckets: Buckets,
    /// Gradient averaging during backward (one replica in a job of several processes).
    overlap: Option<Overlap>,
    loader: Loader,
    /// Fixed windows of the VALID subjects, when validation is on.
    validation_sampler: Option<Arc<WindowSampler>>,
    early: EarlyStopping,
    /// Rank 0's logs.
    log: Option<RunLog>,
    checkpoints: Checkpoints,
    progress: Progress,
    /// The iteration the run starts from (0, or the one it resumes from).
    start: u64,
    /// When the loop started.
    started: Instant,
    /// The last step's loss (NaN before the first).
    loss: f64,
    /// The steps' timings summed.
    parts: StepParts,
    validations: Vec<Validation>,
    /// The iteration early stopping ended the run at.
    stopped_early: Option<u64>,
    /// The ids of the TRAIN and VALID subjects.
    subjects: SubjectIds,
}

/// The ids of a run's TRAIN and VALID subjects, sorted.
#[derive(Debug, Clone, Default)]
struct SubjectIds {
    train: Vec<String>,
    valid: Vec<String>,
}

/// What one training step leaves for its logs and the periodic handlers.
struct TrainedStep {
    /// Iterations done, this one included.
    done: u64,
    /// The batch, for the TensorBoard images.
    images: Tensor,
    labels: Tensor,
    /// The batch loss, averaged over the processes.
    loss: f64,
    /// The learning rate of the step.
    lr: f64,
    /// The gradient norm before clipping (NaN for a step skipped by loss scaling).
    grad_norm: f64,
    /// Each local replica's part.
    replicas: Vec<ReplicaStep>,
}

impl<'a> TrainingRun<'a> {
    /// Seeds libtorch, checks the data, builds the replicas and the optimiser (resuming
    /// from a checkpoint when asked), hooks up gradient averaging, starts the loader
    /// threads and opens the logs.
    ///
    /// # Errors
    /// Bad data or configuration, a missing plugin, an unreadable checkpoint, a log that
    /// cannot be written, or a peer process that died or hung.
    fn set_up(
        settings: &'a Settings,
        registry: &Registry,
        base_dir: &Path,
        devices: &[tch::Device],
        comm: &'a mut dyn Communicator,
    ) -> Result<TrainingRun<'a>, EngineError> {
        let primary = comm.world().is_primary();
        let model_folder = if primary { Some(hold_model_folder(settings)?) } else { None };
        crate::torch::set_intra_op_threads(settings.system.torch_threads);
        tch::manual_seed(settings.system.seed as i64);
        let (sampler, validation_sampler, subjects, channels) = samplers(settings, registry, base_dir, comm)?;
        let t = &settings.training;
        let early = EarlyStopping::new(t.early_stopping_mode, t.patience);
        let (mut replicas, optimiser, start, saved_scaler) =
            ready_replicas(settings, registry, devices, channels, comm)?;
        let schedule = Schedule::from_training(t);
        let (name, parameters) = (replicas.primary().name.clone(), replicas.primary().parameter_count());
        let (rank, processes) = (comm.world().rank, comm.world().size);
        let in_channels = replicas.primary().channels.to_string();
        tracing::info!(network = %name, parameters, image_channels = %in_channels, devices = ?devices, rank, processes, backend = comm.backend(), "model ready");
        let (gradient_buckets, overlap) = gradient_averaging(settings, &mut replicas, comm)?;
        let scaler = (replicas.precision() == MixedPrecision::Fp16).then(|| saved_scaler.unwrap_or_default());
        let loader = Loader::spawn(sampler, start, t.max_iter, settings.system.loader_threads, t.queue_length);
        let log = open_log(settings, start, primary)?;
        let checkpoints = Checkpoints::new(settings, registry, start, scaler)?;
        Ok(TrainingRun {
            settings,
            comm,
            _model_folder: model_folder,
            primary,
            name,
            parameters,
            patches: (settings.network.batch_size * processes) as f64,
            replicas,
            optimiser,
            schedule,
            scaler,
            gradient_buckets,
            overlap,
            loader,
            validation_sampler,
            early,
            log,
            checkpoints,
            progress: Progress::new(start, t.max_iter, "train"),
            start,
            started: Instant::now(),
            loss: f64::NAN,
            parts: StepParts::default(),
            validations: Vec::new(),
            stopped_early: None,
            subjects,
        })
    }

    /// One training step at (0-based) `iteration`: the next batch, forward and backward
    /// on the replicas, gradients and loss averaged across processes, the loss checked,
    /// the optimiser step, and the new weights copied to every replica. `timer` takes the
    /// time of each part.
    ///
    /// # Errors
    /// The loader's or a plugin's failure, a collective that failed, or a NaN/infinite
    /// loss (naming the last good checkpoint).
    fn step(&mut self, iteration: u64, timer: &mut StepTimer) -> Result<TrainedStep, EngineError> {
        let batch =
            self.loader.next_batch().ok_or_else(|| EngineError::Other("the loader threads stopped early".into()))??;
        timer.parts.data_wait = timer.lap();
        let (images, labels) = batch.to_tensors();
        let loss_weights = batch.loss_weight_tensor();
        self.loader.recycle(batch);
        timer.parts.batch_to_tensors = timer.lap();
        let outcome = self.forward_backward(&images, &labels, loss_weights.as_ref())?;
        timer.parts.plugin = outcome.replicas.iter().map(|r| r.seconds).fold(0.0, f64::max);
        timer.parts.dispatch_and_averaging = (timer.lap() - timer.parts.plugin).max(0.0);
        self.loss = self.average_across_processes(outcome.loss)?;
        timer.parts.communication = timer.lap();
        if !self.loss.is_finite() {
            let last_checkpoint = self.checkpoints.last_or_none();
            return Err(EngineError::NonFinite { iteration: iteration + 1, loss: self.loss, last_checkpoint });
        }
        let lr = self.schedule.lr(iteration);
        let grad_norm = self.optimiser_step(lr);
        timer.parts.optimiser = timer.lap();
        self.replicas.broadcast()?;
        timer.parts.broadcast = timer.lap();
        let (done, loss, replicas) = (iteration + 1, self.loss, outcome.replicas);
        Ok(TrainedStep { done, images, labels, loss, lr, grad_norm, replicas })
    }

    /// Forward and backward of the batch on every replica, the loss scaled for fp16;
    /// with hooks in place, each gradient bucket's sum across processes starts during
    /// backward.
    fn forward_backward(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        weights: Option<&Tensor>,
    ) -> Result<StepOutcome, EngineError> {
        let loss = &self.settings.training.loss;
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        match &self.overlap {
            Some(o) => o.backward(self.comm, || self.replicas.forward_backward(images, labels, weights, loss, scale)),
            None => self.replicas.forward_backward(images, labels, weights, loss, scale),
        }
    }

    /// Replaces the primary replica's gradients by their mean across processes and
    /// returns the mean of `loss`. Every rank takes part, even with a non-finite loss,
    /// so that all stop together.
    fn average_across_processes(&mut self, loss: f64) -> Result<f64, EngineError> {
        let params = &self.replicas.primary().params;
        match &self.overlap {
            Some(o) => o.all_reduce_mean(params, self.comm)?,
            None => self.gradient_buckets.all_reduce_mean(params, self.comm)?,
        }
        Ok(self.comm.mean(loss)?)
    }

    /// Unscales the fp16 gradients and updates the primary replica at learning rate
    /// `lr`; returns the gradient norm, NaN for a step the loss scaler skipped.
    fn optimiser_step(&mut self, lr: f64) -> f64 {
        let params = &mut self.replicas.primary().params;
        match self.scaler.as_mut().map(|s| s.unscale(params)) {
            Some(false) => f64::NAN,
            _ => self.optimiser.step(params, lr),
        }
    }

    /// Rank 0's JSONL and TensorBoard record of the step, the progress bar, and a log
    /// line every `training.log_every_n` steps (when no bar is drawn) and at the end.
    fn log_step(&mut self, step: &TrainedStep, timer: &mut StepTimer) {
        let t = &self.settings.training;
        let done = step.done;
        let rate = self.progress.rate(done);
        let so_far = timer.elapsed();
        if let Some(log) = self.log.as_mut() {
            log.step(&StepRecord {
                iteration: done,
                loss: step.loss,
                lr: step.lr,
                grad_norm: step.grad_norm,
                patches_per_s: rate * self.patches,
                data_wait_s: timer.parts.data_wait,
                data_wait_pct: 100.0 * timer.parts.data_wait / so_far.max(1e-12),
                step_s: so_far,
                loss_scale: self.scaler.map(|s| s.scale),
                devices: step.replicas.clone(),
            });
        }
        let loss_value = step.loss;
        self.progress.update(done, format!("loss {loss_value:.4} | {:.1} patches/s", rate * self.patches));
        if self.primary && ((done % t.log_every_n.max(1) == 0 && !self.progress.is_visible()) || done == t.max_iter) {
            tracing::info!(
                "iteration {done}/{} loss {loss_value:.4} {:.1} patches/s ETA {:.0}s",
                t.max_iter,
                rate * self.patches,
                self.progress.eta_secs(done)
            );
        }
        timer.parts.logs = timer.lap();
    }

    /// Rank 0's TensorBoard images of the middle slices of the batch's first window with
    /// the network's prediction, every `training.tensorboard_every_n` steps and after the
    /// first.
    ///
    /// # Errors
    /// A plugin failure in the forward pass.
    fn log_slices_if_due(&mut self, step: &TrainedStep) -> Result<(), EngineError> {
        let t = &self.settings.training;
        let done = step.done;
        let Some(log) = self
            .log
            .as_mut()
            .filter(|_| t.tensorboard_every_n > 0 && (done % t.tensorboard_every_n == 0 || done == self.start + 1))
        else {
            return Ok(());
        };
        let (image, label) = (step.images.narrow(0, 0, 1), step.labels.narrow(0, 0, 1));
        // Only the prediction is shown: the loss (and so its weights) does not matter here.
        let (_, logits, label) = self.replicas.evaluate(&image, &label, None, &t.loss)?;
        // The input shown is the label window the prediction and label cover.
        let image = self.replicas.label_window().crop(&image, "the logged window")?;
        let prediction =
            logits.f_argmax(1, false).and_then(|p| p.f_get(0)).map_err(crate::engine::tensors::torch_error(
                format_args!("the prediction of network `{}`", self.settings.network.name),
            ))?;
        log.slices(
            done,
            &image.get(0).get(0),
            &label.get(0).get(0),
            &prediction,
            self.settings.segmentation.num_classes,
        );
        Ok(())
    }

    /// Validation every `training.validation_every_n` steps, logged by rank 0; returns
    /// whether early stopping ends the run here.
    ///
    /// # Errors
    /// Validation data that cannot be loaded, or a plugin failure.
    fn validate_if_due(&mut self, done: u64) -> Result<bool, EngineError> {
        let t = &self.settings.training;
        let Some(vs) = self.validation_sampler.as_ref().filter(|_| done % t.validation_every_n == 0) else {
            return Ok(false);
        };
        let classes = self.settings.segmentation.num_classes;
        // Every rank validates the same windows with the same weights, so all reach the
        // same early-stopping decision without a message.
        let v = validate(&mut self.replicas, Arc::clone(vs), t.validation_max_iter, classes, done, &t.loss)?;
        if let Some(log) = self.log.as_mut() {
            log.validation(&v);
            tracing::info!(iteration = done, loss = v.loss, dice = ?v.dice, "validation");
        }
        self.validations.push(v);
        let losses: Vec<f64> = self.validations.iter().map(|v| v.loss).collect();
        if !self.early.should_stop(&losses) {
            return Ok(false);
        }
        tracing::info!(iteration = done, rule = ?self.early, "early stopping");
        self.stopped_early = Some(done);
        Ok(true)
    }

    /// Rank 0's checkpoint every `training.save_every_n` steps, at the end, and when the
    /// run `stop`s early; the log reaches the disk first.
    ///
    /// # Errors
    /// A checkpoint that cannot be written.
    fn checkpoint_if_due(&mut self, done: u64, stop: bool) -> Result<(), EngineError> {
        let t = &self.settings.training;
        // Only rank 0 writes checkpoints.
        if !(self.primary && (done % t.save_every_n == 0 || done == t.max_iter || stop)) {
            return Ok(());
        }
        // The log reaches the disk before the checkpoint that a resume starts from.
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
        let model = self.replicas.primary();
        let optimiser_state = self.optimiser.state(&model.params);
        self.checkpoints.save(model, &optimiser_state, done, self.loss, self.scaler, t.max_checkpoints)
    }

    /// Ends the run: the progress bar cleared, the loss curve drawn, and the report.
    fn finish(mut self) -> TrainReport {
        let t = &self.settings.training;
        drop(self.progress);
        let seconds = self.started.elapsed().as_secs_f64();
        let end = self.stopped_early.unwrap_or(t.max_iter).max(self.start);
        let steps = (end - self.start).max(1) as f64;
        let parts = self.parts.mean(steps);
        let title = format!("{}: loss", self.name);
        let loss_curve = match self.log.as_mut().map(|log| log.finish(&title)) {
            Some(Ok(path)) => Some(path),
            Some(Err(e)) => {
                tracing::warn!("loss curve not drawn: {e}");
                None
            }
            None => None,
        };
        TrainReport {
            network: self.name.clone(),
            iterations: end,
            validations: self.validations,
            stopped_early: self.stopped_early,
            started_at: self.start,
            final_loss: self.loss,
            seconds,
            seconds_per_iteration: seconds / steps,
            patches_per_second: steps * self.patches / seconds.max(1e-9),
            data_wait_share: parts.data_wait / parts.step.max(1e-12),
            communication_share: parts.communication / parts.step.max(1e-12),
            rank: self.comm.world().rank,
            processes: self.comm.world().size,
            backend: self.comm.backend().to_owned(),
            step_parts: parts,
            parameters: self.parameters,
            checkpoint: self.checkpoints.last.unwrap_or_default(),
            log: self.settings.run_dir().join(crate::runlog::JSONL_FILE),
            tensorboard: self.log.as_ref().and_then(|l| l.event_file().map(Path::to_owned)),
            loss_curve,
            train_subjects: self.subjects.train,
            valid_subjects: self.subjects.valid,
        }
    }
}

/// The training windows (this rank's shard, augmented), when validation is on the
/// validation windows, the subjects' ids and the channels of their image sections. Rank 0
/// writes the split file and learns the preprocessing (in k-fold cross-validation from
/// every TRAIN and VALID subject, so that every fold shares it and folds can be
/// ensembled); the others wait for it, then read them.
///
/// # Errors
/// Bad data or configuration, or a peer process that died or hung.
fn samplers(
    settings: &Settings,
    registry: &Registry,
    base_dir: &Path,
    comm: &mut dyn Communicator,
) -> Result<(Arc<WindowSampler>, Option<Arc<WindowSampler>>, SubjectIds, ChannelLayout), EngineError> {
    let (rank, processes) = (comm.world().rank, comm.world().size);
    let primary = comm.world().is_primary();
    if !primary {
        comm.barrier()?;
    }
    let subjects = training_subjects(settings, base_dir)?;
    let channels = subjects.channels.clone();
    tracing::info!(train = subjects.train.len(), valid = subjects.valid.len(), image_channels = %channels, "training data checked");
    if settings.training.k_folds > 1 {
        let all = [subjects.train.as_slice(), subjects.valid.as_slice()].concat();
        Preparation::learn_or_load(settings, &all)?;
    }
    let ids = |list: &[crate::data::Subject]| list.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let ids = SubjectIds { train: ids(&subjects.train), valid: ids(&subjects.valid) };
    // Only the training windows are augmented: validation draws from its own sampler.
    let mut sampler = training_sampler(settings, subjects.train)?.with_shard(rank, processes);
    if let Some(chain) = AugmentationChain::from_settings(settings, registry)? {
        sampler = sampler.with_augmentation(Arc::new(chain), settings.training.augmentation_margin);
    }
    let sampler = Arc::new(sampler);
    let t = &settings.training;
    let validation_sampler = match (t.validation_every_n, subjects.valid.is_empty()) {
        (0, _) => None,
        (_, true) => {
            tracing::warn!("training.validation_every_n is set but the split has no VALID subject: no validation");
            None
        }
        (_, false) => Some(Arc::new(training_sampler(settings, subjects.valid)?)),
    };
    if primary {
        comm.barrier()?;
    }
    Ok((sampler, validation_sampler, ids, channels))
}

/// Takes the lock on the run's folder (`system.model_dir`, or its fold's folder: one
/// writer per folder), then removes the leftovers of a checkpoint save that did not
/// complete, with a warning each.
///
/// # Errors
/// Another process training into the folder, or a folder or leftover that cannot be
/// written or removed.
fn hold_model_folder(settings: &Settings) -> Result<FolderLock, EngineError> {
    let lock = FolderLock::acquire(&settings.run_dir())?;
    for file in checkpoint::remove_incomplete(&settings.checkpoint_dir())? {
        tracing::warn!(file = %file.display(), "removed the leftover of a checkpoint save that did not complete");
    }
    Ok(lock)
}

/// One replica per device (networks for images with `channels`) and the optimiser,
/// resumed from a checkpoint or fresh (with transfer-learning weights copied in), every
/// rank holding rank 0's weights, and the frozen parameters set. Also the iteration to
/// start from and the checkpoint's fp16 loss scaler.
///
/// # Errors
/// A missing component, a plugin failure, an unreadable checkpoint, a bad regex, or a
/// peer process that died or hung.
fn ready_replicas(
    settings: &Settings,
    registry: &Registry,
    devices: &[tch::Device],
    channels: ChannelLayout,
    comm: &mut dyn Communicator,
) -> Result<(Replicas, Optimiser, u64, Option<LossScaler>), EngineError> {
    let t = &settings.training;
    let mut replicas = Replicas::build(registry, settings, channels, devices)?;
    let model = replicas.primary();
    let mut optimiser = Optimiser::new(OptimiserConfig::from_training(t), &model.params);
    let (start, saved_scaler) = restore(settings, model, &mut optimiser)?;
    if start == 0 && !t.restore_from.as_os_str().is_empty() {
        let names = regex::Regex::new(&t.vars_to_restore).map_err(|e| EngineError::Other(e.to_string()))?;
        let copied = checkpoint::load_matching(&t.restore_from, model, &names)?;
        tracing::info!(tensors = copied.len(), file = %t.restore_from.display(), "weights restored for transfer learning");
    }
    // Every rank starts from rank 0's weights.
    let model = replicas.primary();
    buckets::broadcast(
        &mut model.params.iter_mut().chain(model.buffers.iter_mut()).map(|(_, t)| t).collect::<Vec<_>>(),
        0,
        comm,
    )?;
    replicas.broadcast()?;
    if !t.vars_to_freeze.is_empty() {
        let names = regex::Regex::new(&t.vars_to_freeze).map_err(|e| EngineError::Other(e.to_string()))?;
        let frozen = replicas.freeze(&names);
        tracing::info!(parameters = frozen, pattern = %t.vars_to_freeze, "parameters frozen");
    }
    Ok((replicas, optimiser, start, saved_scaler))
}

/// The gradient buckets of the primary replica and, with one replica per process in a
/// job of several, the hooks that start each bucket's sum during backward (with
/// several replicas, the sums start after the replicas' gradients are summed).
///
/// # Errors
/// libtorch refusing a gradient hook.
fn gradient_averaging(
    settings: &Settings,
    replicas: &mut Replicas,
    comm: &dyn Communicator,
) -> Result<(Buckets, Option<Overlap>), EngineError> {
    let gradient_buckets = Buckets::plan(&replicas.primary().params, (settings.system.bucket_mb * 1048576.0) as usize);
    let overlap = if !comm.is_identity() && replicas.len() == 1 {
        Some(Overlap::hook(&mut replicas.primary().params, &gradient_buckets)?)
    } else {
        None
    };
    Ok((gradient_buckets, overlap))
}

/// Rank 0's logs (other ranks write none), in the run's folder created if missing.
///
/// # Errors
/// The folder or a log file that cannot be written.
fn open_log(settings: &Settings, start: u64, primary: bool) -> Result<Option<RunLog>, EngineError> {
    let t = &settings.training;
    let dir = settings.run_dir();
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::Other(format!("{}: {e}", dir.display())))?;
    // Only rank 0 writes logs and checkpoints.
    if !primary {
        return Ok(None);
    }
    Ok(Some(RunLog::open(&dir, start, t.tensorboard_every_n > 0).map_err(EngineError::Other)?))
}

/// The run's checkpoints: where they go, what each records beside the weights, and the
/// last one written.
struct Checkpoints {
    dir: PathBuf,
    meta: CheckpointMeta,
    /// The newest complete checkpoint, this run's or an earlier one's.
    last: Option<PathBuf>,
}

impl Checkpoints {
    /// The checkpoints of a run starting at `start`, with the plugins and settings each
    /// records.
    ///
    /// # Errors
    /// Settings that cannot be written as JSON: a checkpoint must record its config
    /// (bundles and inference read it back).
    fn new(
        settings: &Settings,
        registry: &Registry,
        start: u64,
        scaler: Option<LossScaler>,
    ) -> Result<Checkpoints, EngineError> {
        let dir = settings.checkpoint_dir();
        let config = serde_json::to_value(settings).map_err(|e| {
            EngineError::Other(format!("the configuration cannot be recorded in checkpoints as JSON: {e}"))
        })?;
        let meta = CheckpointMeta {
            iteration: start,
            seed: settings.system.seed,
            loss: f64::NAN,
            plugins: plugin_refs(registry, settings),
            torch_abi_tag: TORCH_ABI_TAG.to_owned(),
            config,
            // checkpoint::save records the model's.
            image_channels: Vec::new(),
            loss_scaler: scaler,
        };
        let last = checkpoint::list(&dir).last().map(|(_, p)| p.clone());
        Ok(Checkpoints { dir, meta, last })
    }

    /// Saves `model` and its optimiser state as the checkpoint of iteration `done`,
    /// keeping the newest `keep`.
    ///
    /// # Errors
    /// A checkpoint that cannot be written.
    fn save(
        &mut self,
        model: &Model,
        optimiser_state: &[(String, Tensor)],
        done: u64,
        loss: f64,
        scaler: Option<LossScaler>,
        keep: usize,
    ) -> Result<(), EngineError> {
        self.meta.iteration = done;
        self.meta.loss = loss;
        self.meta.loss_scaler = scaler;
        let path = checkpoint::save(&self.dir, model, optimiser_state, &self.meta)?;
        checkpoint::prune(&self.dir, keep);
        tracing::debug!(file = %path.display(), "checkpoint saved");
        self.last = Some(path);
        Ok(())
    }

    /// The last checkpoint's path, or "none", for a message.
    fn last_or_none(&self) -> String {
        self.last.as_ref().map_or("none".to_owned(), |p| p.display().to_string())
    }
}

/// The clock of one step: the time of each part, lap by lap.
struct StepTimer {
    started: Instant,
    lap_started: Instant,
    /// The parts timed so far.
    parts: StepParts,
}

impl StepTimer {
    /// A clock started now.
    fn start() -> StepTimer {
        let now = Instant::now();
        StepTimer { started: now, lap_started: now, parts: StepParts::default() }
    }

    /// Seconds since the last lap (or the start), starting the next.
    fn lap(&mut self) -> f64 {
        std::mem::replace(&mut self.lap_started, Instant::now()).elapsed().as_secs_f64()
    }

    /// Seconds since the start.
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The step's parts, the last lap counted as the periodic handlers.
    fn finish(mut self) -> StepParts {
        self.parts.periodic = self.lap();
        self.parts.step = self.elapsed();
        self.parts
    }
}
