//! The trainer: batches from the loader threads, forward and backward through the plugin
//! network and loss, an optimiser step, progress, logs and checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;
use niftyhost_plugin_api::ComponentKind;
use serde::Serialize;

use super::checkpoint::{self, CheckpointMeta, PluginRef};
use super::optim::Optimiser;
use super::replicas::Replicas;
use super::validation::{validate, EarlyStopping, Validation};
use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::phases::training_subjects;
use crate::data::{training_sampler, AugmentationChain, Loader};
use crate::plugins::Registry;
use crate::telemetry::Progress;

/// What a finished training run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
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
    /// Trainable scalars of the network.
    pub parameters: i64,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// The per-iteration log.
    pub log: PathBuf,
    /// Validations run.
    pub validations: Vec<Validation>,
    /// Iteration early stopping ended the run at, if it did.
    pub stopped_early: Option<u64>,
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

/// The iteration to start from, restoring weights and optimiser state when resuming.
fn restore(settings: &Settings, model: &mut Model, optimiser: &mut Optimiser) -> Result<u64, EngineError> {
    let dir = settings.checkpoint_dir();
    let wanted = settings.training.starting_iter;
    let found = checkpoint::list(&dir);
    let chosen = match wanted {
        0 => return Ok(0),
        -1 => match found.last() {
            Some(c) => c.clone(),
            None => {
                tracing::info!(dir = %dir.display(), "no complete checkpoint to resume from: starting at iteration 0");
                return Ok(0);
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
    tracing::info!(iteration = chosen.0, file = %chosen.1.display(), "resumed from checkpoint");
    Ok(chosen.0)
}

/// Trains the configured network; relative data paths are taken from `base_dir`.
///
/// # Errors
/// Bad data or configuration, a missing plugin, a plugin failure, a checkpoint that
/// cannot be written, or a NaN/infinite loss (the last good checkpoint is kept).
pub fn train(settings: &Settings, registry: &Registry, base_dir: &Path) -> Result<TrainReport, EngineError> {
    let devices = crate::torch::select_devices(&settings.system.devices)?;
    if settings.system.torch_threads > 0 {
        tch::set_num_threads(settings.system.torch_threads as i32);
    }
    tch::manual_seed(settings.system.seed as i64);
    let subjects = training_subjects(settings, base_dir)?;
    tracing::info!(train = subjects.train.len(), valid = subjects.valid.len(), "training data checked");
    // Only the training windows are augmented: validation draws from its own sampler.
    let mut sampler = training_sampler(settings, subjects.train)?;
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
    let early = EarlyStopping::parse(&t.early_stopping_mode, t.patience).map_err(EngineError::Other)?;
    let mut validations: Vec<Validation> = Vec::new();
    let mut stopped_early = None;

    let mut replicas = Replicas::build(registry, settings, &devices)?;
    let model = replicas.primary();
    let mut optimiser = Optimiser::new(settings.optimiser(), &model.params);
    let start = restore(settings, model, &mut optimiser)?;
    if start == 0 && !t.restore_from.as_os_str().is_empty() {
        let names = regex::Regex::new(&t.vars_to_restore).map_err(|e| EngineError::Other(e.to_string()))?;
        let copied = checkpoint::load_matching(&t.restore_from, model, &names)?;
        tracing::info!(tensors = copied.len(), file = %t.restore_from.display(), "weights restored for transfer learning");
    }
    replicas.broadcast();
    if !t.vars_to_freeze.is_empty() {
        let names = regex::Regex::new(&t.vars_to_freeze).map_err(|e| EngineError::Other(e.to_string()))?;
        let frozen = replicas.freeze(&names);
        tracing::info!(parameters = frozen, pattern = %t.vars_to_freeze, "parameters frozen");
    }
    let schedule = settings.schedule();
    let (name, parameters) = (replicas.primary().name.clone(), replicas.primary().parameter_count());
    tracing::info!(network = %name, parameters, devices = ?devices, "model ready");

    let mut loader = Loader::spawn(sampler, start, t.max_iter, settings.system.loader_threads, t.queue_length);
    std::fs::create_dir_all(&settings.system.model_dir)
        .map_err(|e| EngineError::Other(format!("{}: {e}", settings.system.model_dir.display())))?;
    let log_path = settings.system.model_dir.join("train_log.jsonl");
    // A fresh run starts a fresh log; a resumed run appends to it.
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(start > 0)
        .write(true)
        .truncate(start == 0)
        .open(&log_path)
        .map_err(|e| EngineError::Other(format!("{}: {e}", log_path.display())))?;

    let ckpt_dir = settings.checkpoint_dir();
    let mut meta = CheckpointMeta {
        iteration: start,
        seed: settings.system.seed,
        loss: f64::NAN,
        plugins: plugin_refs(registry, settings),
        torch_abi_tag: TORCH_ABI_TAG.to_owned(),
        config: serde_json::to_value(settings).unwrap_or_default(),
    };
    let mut last_checkpoint: Option<PathBuf> = checkpoint::list(&ckpt_dir).last().map(|(_, p)| p.clone());
    let progress = Progress::new(start, t.max_iter, "train");
    let started = Instant::now();
    let (mut wait, mut loss_value) = (0.0f64, f64::NAN);
    let patches = settings.network.batch_size as f64;
    for iteration in start..t.max_iter {
        let step_start = Instant::now();
        let batch =
            loader.next_batch().ok_or_else(|| EngineError::Other("the loader threads stopped early".into()))??;
        let waited = step_start.elapsed().as_secs_f64();
        wait += waited;
        let (images, labels) = batch.to_tensors();
        loader.recycle(batch);
        loss_value = replicas.forward_backward(&images, &labels, &t.loss)?;
        if !loss_value.is_finite() {
            let last = last_checkpoint.as_ref().map_or("none".to_owned(), |p| p.display().to_string());
            return Err(EngineError::NonFinite { iteration: iteration + 1, loss: loss_value, last_checkpoint: last });
        }
        let lr = schedule.lr(iteration);
        let grad_norm = optimiser.step(&mut replicas.primary().params, lr);
        replicas.broadcast();
        let done = iteration + 1;
        let step_secs = step_start.elapsed().as_secs_f64();
        let rate = progress.rate(done);
        let record = serde_json::json!({
            "iteration": done, "loss": loss_value, "lr": lr, "grad_norm": grad_norm, "patches_per_s": rate * patches,
            "data_wait_s": waited, "step_s": step_secs,
        });
        let _ = writeln!(log, "{record}");
        progress.update(done, format!("loss {loss_value:.4} | {:.1} patches/s", rate * patches));
        if (done % t.log_every_n.max(1) == 0 && !progress.is_visible()) || done == t.max_iter {
            tracing::info!(
                "iteration {done}/{} loss {loss_value:.4} {:.1} patches/s ETA {:.0}s",
                t.max_iter,
                rate * patches,
                progress.eta_secs(done)
            );
        }
        let mut stop = false;
        if let Some(vs) = validation_sampler.as_ref().filter(|_| done % t.validation_every_n == 0) {
            let classes = settings.segmentation.num_classes;
            let v = validate(&mut replicas, Arc::clone(vs), t.validation_max_iter, classes, done, &t.loss)?;
            let _ = writeln!(log, "{}", serde_json::json!({"validation": v}));
            tracing::info!(iteration = done, loss = v.loss, dice = ?v.dice, "validation");
            validations.push(v);
            let losses: Vec<f64> = validations.iter().map(|v| v.loss).collect();
            if early.should_stop(&losses) {
                tracing::info!(iteration = done, rule = ?early, "early stopping");
                stopped_early = Some(done);
                stop = true;
            }
        }
        if done % t.save_every_n == 0 || done == t.max_iter || stop {
            meta.iteration = done;
            meta.loss = loss_value;
            let model = replicas.primary();
            let path = checkpoint::save(&ckpt_dir, model, &optimiser.state(&model.params), &meta)?;
            checkpoint::prune(&ckpt_dir, t.max_checkpoints);
            tracing::debug!(file = %path.display(), "checkpoint saved");
            last_checkpoint = Some(path);
        }
        if stop {
            break;
        }
    }
    drop(progress);
    let seconds = started.elapsed().as_secs_f64();
    let end = stopped_early.unwrap_or(t.max_iter).max(start);
    let steps = (end - start).max(1) as f64;
    Ok(TrainReport {
        iterations: end,
        validations,
        stopped_early,
        started_at: start,
        final_loss: loss_value,
        seconds,
        seconds_per_iteration: seconds / steps,
        patches_per_second: steps * patches / seconds.max(1e-9),
        data_wait_share: wait / seconds.max(1e-9),
        parameters,
        checkpoint: last_checkpoint.unwrap_or_default(),
        log: log_path,
    })
}
