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
use super::optim::Optimiser;
use super::precision::{LossScaler, Precision};
use super::replicas::Replicas;
use super::validation::{validate, EarlyStopping, Validation};
use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::phases::training_subjects;
use crate::data::{training_sampler, AugmentationChain, Loader};
use crate::distributed::buckets::{self, Buckets};
use crate::distributed::overlap::Overlap;
use crate::distributed::{self, Communicator};
use crate::plugins::Registry;
use crate::runlog::{RunLog, StepRecord};
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
    let devices = crate::torch::select_devices(&distributed::local_device_names(settings, &world))?;
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

fn train_with(
    settings: &Settings,
    registry: &Registry,
    base_dir: &Path,
    devices: &[tch::Device],
    comm: &mut dyn Communicator,
) -> Result<TrainReport, EngineError> {
    let (rank, processes) = (comm.world().rank, comm.world().size);
    let primary = comm.world().is_primary();
    crate::torch::set_intra_op_threads(settings.system.torch_threads);
    tch::manual_seed(settings.system.seed as i64);
    // Rank 0 writes the split file and learns the preprocessing; the others then read them.
    if !primary {
        comm.barrier()?;
    }
    let subjects = training_subjects(settings, base_dir)?;
    tracing::info!(train = subjects.train.len(), valid = subjects.valid.len(), "training data checked");
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
    let early = EarlyStopping::parse(&t.early_stopping_mode, t.patience).map_err(EngineError::Other)?;
    let mut validations: Vec<Validation> = Vec::new();
    let mut stopped_early = None;

    let mut replicas = Replicas::build(registry, settings, devices)?;
    let model = replicas.primary();
    let mut optimiser = Optimiser::new(settings.optimiser(), &model.params);
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
    replicas.broadcast();
    if !t.vars_to_freeze.is_empty() {
        let names = regex::Regex::new(&t.vars_to_freeze).map_err(|e| EngineError::Other(e.to_string()))?;
        let frozen = replicas.freeze(&names);
        tracing::info!(parameters = frozen, pattern = %t.vars_to_freeze, "parameters frozen");
    }
    let schedule = settings.schedule();
    let (name, parameters) = (replicas.primary().name.clone(), replicas.primary().parameter_count());
    tracing::info!(network = %name, parameters, devices = ?devices, rank, processes, backend = comm.backend(), "model ready");
    let gradient_buckets = Buckets::plan(&replicas.primary().params, (settings.system.bucket_mb * 1048576.0) as usize);
    // With one replica per process, buckets start during backward; with several, after
    // the replicas' gradients are summed.
    let overlap = if !comm.is_identity() && replicas.len() == 1 {
        Some(Overlap::hook(&mut replicas.primary().params, &gradient_buckets)?)
    } else {
        None
    };

    let mut scaler = (replicas.precision() == Precision::Fp16).then(|| saved_scaler.unwrap_or_default());
    let mut loader = Loader::spawn(sampler, start, t.max_iter, settings.system.loader_threads, t.queue_length);
    std::fs::create_dir_all(&settings.system.model_dir)
        .map_err(|e| EngineError::Other(format!("{}: {e}", settings.system.model_dir.display())))?;
    // Only rank 0 writes logs and checkpoints.
    let mut log = if primary {
        Some(RunLog::open(&settings.system.model_dir, start, t.tensorboard_every_n > 0).map_err(EngineError::Other)?)
    } else {
        None
    };

    let ckpt_dir = settings.checkpoint_dir();
    let mut meta = CheckpointMeta {
        iteration: start,
        seed: settings.system.seed,
        loss: f64::NAN,
        plugins: plugin_refs(registry, settings),
        torch_abi_tag: TORCH_ABI_TAG.to_owned(),
        config: serde_json::to_value(settings).unwrap_or_default(),
        loss_scaler: scaler,
    };
    let mut last_checkpoint: Option<PathBuf> = checkpoint::list(&ckpt_dir).last().map(|(_, p)| p.clone());
    let progress = Progress::new(start, t.max_iter, "train");
    let started = Instant::now();
    let mut loss_value = f64::NAN;
    let mut parts = StepParts::default();
    let patches = (settings.network.batch_size * processes) as f64;
    for iteration in start..t.max_iter {
        let mut part = StepParts::default();
        let step_start = Instant::now();
        let mut clock = Instant::now();
        let mut lap = || std::mem::replace(&mut clock, Instant::now()).elapsed().as_secs_f64();
        let batch =
            loader.next_batch().ok_or_else(|| EngineError::Other("the loader threads stopped early".into()))??;
        part.data_wait = lap();
        let (images, labels) = batch.to_tensors();
        loader.recycle(batch);
        part.batch_to_tensors = lap();
        let scale = scaler.map_or(1.0, |s| s.scale);
        let outcome = match &overlap {
            Some(o) => o.backward(comm, || replicas.forward_backward(&images, &labels, &t.loss, scale))?,
            None => replicas.forward_backward(&images, &labels, &t.loss, scale)?,
        };
        part.plugin = outcome.replicas.iter().map(|r| r.seconds).fold(0.0, f64::max);
        part.dispatch_and_averaging = (lap() - part.plugin).max(0.0);
        // Every rank takes part, even with a non-finite loss, so that all stop together.
        match &overlap {
            Some(o) => o.all_reduce_mean(&replicas.primary().params, comm)?,
            None => gradient_buckets.all_reduce_mean(&replicas.primary().params, comm)?,
        }
        loss_value = comm.mean(outcome.loss)?;
        part.communication = lap();
        if !loss_value.is_finite() {
            let last = last_checkpoint.as_ref().map_or("none".to_owned(), |p| p.display().to_string());
            return Err(EngineError::NonFinite { iteration: iteration + 1, loss: loss_value, last_checkpoint: last });
        }
        let lr = schedule.lr(iteration);
        let params = &mut replicas.primary().params;
        let grad_norm = match scaler.as_mut().map(|s| s.unscale(params)) {
            Some(false) => f64::NAN,
            _ => optimiser.step(params, lr),
        };
        part.optimiser = lap();
        replicas.broadcast();
        part.broadcast = lap();
        let done = iteration + 1;
        let rate = progress.rate(done);
        let so_far = step_start.elapsed().as_secs_f64();
        if let Some(log) = log.as_mut() {
            log.step(&StepRecord {
                iteration: done,
                loss: loss_value,
                lr,
                grad_norm,
                patches_per_s: rate * patches,
                data_wait_s: part.data_wait,
                data_wait_pct: 100.0 * part.data_wait / so_far.max(1e-12),
                step_s: so_far,
                loss_scale: scaler.map(|s| s.scale),
                devices: outcome.replicas,
            });
        }
        progress.update(done, format!("loss {loss_value:.4} | {:.1} patches/s", rate * patches));
        if primary && ((done % t.log_every_n.max(1) == 0 && !progress.is_visible()) || done == t.max_iter) {
            tracing::info!(
                "iteration {done}/{} loss {loss_value:.4} {:.1} patches/s ETA {:.0}s",
                t.max_iter,
                rate * patches,
                progress.eta_secs(done)
            );
        }
        part.logs = lap();
        if let Some(log) = log
            .as_mut()
            .filter(|_| t.tensorboard_every_n > 0 && (done % t.tensorboard_every_n == 0 || done == start + 1))
        {
            log_slices(log, &mut replicas, &images, &labels, done, settings, &t.loss)?;
        }
        let mut stop = false;
        if let Some(vs) = validation_sampler.as_ref().filter(|_| done % t.validation_every_n == 0) {
            let classes = settings.segmentation.num_classes;
            // Every rank validates the same windows with the same weights, so all reach the
            // same early-stopping decision without a message.
            let v = validate(&mut replicas, Arc::clone(vs), t.validation_max_iter, classes, done, &t.loss)?;
            if let Some(log) = log.as_mut() {
                log.validation(&v);
                tracing::info!(iteration = done, loss = v.loss, dice = ?v.dice, "validation");
            }
            validations.push(v);
            let losses: Vec<f64> = validations.iter().map(|v| v.loss).collect();
            if early.should_stop(&losses) {
                tracing::info!(iteration = done, rule = ?early, "early stopping");
                stopped_early = Some(done);
                stop = true;
            }
        }
        // Only rank 0 writes checkpoints.
        if primary && (done % t.save_every_n == 0 || done == t.max_iter || stop) {
            // The log reaches the disk before the checkpoint that a resume starts from.
            if let Some(log) = log.as_mut() {
                log.flush();
            }
            meta.iteration = done;
            meta.loss = loss_value;
            meta.loss_scaler = scaler;
            let model = replicas.primary();
            let path = checkpoint::save(&ckpt_dir, model, &optimiser.state(&model.params), &meta)?;
            checkpoint::prune(&ckpt_dir, t.max_checkpoints);
            tracing::debug!(file = %path.display(), "checkpoint saved");
            last_checkpoint = Some(path);
        }
        part.periodic = lap();
        part.step = step_start.elapsed().as_secs_f64();
        parts.add(&part);
        if stop {
            break;
        }
    }
    drop(progress);
    let seconds = started.elapsed().as_secs_f64();
    let end = stopped_early.unwrap_or(t.max_iter).max(start);
    let steps = (end - start).max(1) as f64;
    let parts = parts.mean(steps);
    let loss_curve = match log.as_mut().map(|log| log.finish(&format!("{name}: loss"))) {
        Some(Ok(path)) => Some(path),
        Some(Err(e)) => {
            tracing::warn!("loss curve not drawn: {e}");
            None
        }
        None => None,
    };
    Ok(TrainReport {
        network: settings.network.name.clone(),
        iterations: end,
        validations,
        stopped_early,
        started_at: start,
        final_loss: loss_value,
        seconds,
        seconds_per_iteration: seconds / steps,
        patches_per_second: steps * patches / seconds.max(1e-9),
        data_wait_share: parts.data_wait / parts.step.max(1e-12),
        communication_share: parts.communication / parts.step.max(1e-12),
        rank,
        processes,
        backend: comm.backend().to_owned(),
        step_parts: parts,
        parameters,
        checkpoint: last_checkpoint.unwrap_or_default(),
        log: settings.system.model_dir.join(crate::runlog::JSONL_FILE),
        tensorboard: log.as_ref().and_then(|l| l.event_file().map(Path::to_owned)),
        loss_curve,
    })
}

/// Logs the middle slices of the batch's first window with the network's prediction.
fn log_slices(
    log: &mut RunLog,
    replicas: &mut Replicas,
    images: &Tensor,
    labels: &Tensor,
    step: u64,
    settings: &Settings,
    loss_name: &str,
) -> Result<(), EngineError> {
    let (image, label) = (images.narrow(0, 0, 1), labels.narrow(0, 0, 1));
    let (_, logits) = replicas.evaluate(&image, &label, loss_name)?;
    let prediction = logits.argmax(1, false).get(0);
    log.slices(step, &image.get(0).get(0), &label.get(0).get(0), &prediction, settings.segmentation.num_classes);
    Ok(())
}
