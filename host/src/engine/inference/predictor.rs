//! The predictor: an ensemble of models (one per checkpoint or bundle) run on every
//! test-time mirroring of a window batch ([`super::tta`]), outputs averaged, optionally
//! with replicas that run batches side by side; and how a config's checkpoints become
//! one.

use std::path::{Path, PathBuf};

use niftyhost_plugin_api::ComponentKind;
use tch::{Device, Kind, Tensor};

use super::super::tensors::{to_device, torch_error};
use super::super::{checkpoint, EngineError, Model};
use super::compute::{Compute, InferencePrecision};
use super::output::OutputKind;
use super::tta::mirrorings;
use super::InferenceOptions;
use crate::config::Settings;
use crate::data::ChannelLayout;
use crate::plugins::Registry;

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

    /// The channels of each image section the models take (`None` without a model).
    pub fn channels(&self) -> Option<&ChannelLayout> {
        self.models.first().map(|m| &m.channels)
    }

    /// Batches it can run at once: itself and each of its helpers.
    pub fn workers(&self) -> usize {
        1 + self.helpers.len()
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
        self.predict_falling_back(input, true)
    }

    /// The averaged output of every model run once on `input`, unmirrored: a probe of
    /// whether the models take windows of its size. With `fall_back`, a model that fails
    /// in bf16 (`inference.precision = "auto"`) makes the predictor fall back to float32
    /// as [`Predictor::predict`] does; without, the predictor is left as it was.
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, K, D, H, W]`
    ///
    /// # Errors
    /// As [`Predictor::predict`].
    pub fn probe(&mut self, input: &Tensor, fall_back: bool) -> Result<Tensor, EngineError> {
        if fall_back {
            self.predict_falling_back(input, false)
        } else {
            self.predict_once(input, false)
        }
    }

    /// Whether a failure in bf16 would still make the predictor fall back to float32
    /// (`inference.precision = "auto"` before a first batch ran).
    pub fn may_fall_back_to_fp32(&self) -> bool {
        self.fp32_copies.is_some()
    }

    /// [`Predictor::predict_once`], falling back to float32 once when a model fails in
    /// bf16 and `inference.precision = "auto"`.
    fn predict_falling_back(&mut self, input: &Tensor, mirrored: bool) -> Result<Tensor, EngineError> {
        match self.predict_once(input, mirrored) {
            Err(EngineError::Plugin { error, .. }) if self.fp32_copies.is_some() => {
                let name = self.models.first().map(|m| m.name.clone()).unwrap_or_default();
                tracing::warn!(
                    network = %name,
                    error = %first_line(&error.message),
                    "the network does not run in bf16 here: float32 instead (`inference.precision = \"fp32\"` says so up front)"
                );
                self.fall_back_to_fp32();
                self.predict_once(input, mirrored)
            }
            Ok(out) => {
                self.fp32_copies = None;
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    /// The averaged output of every model on `input`, and on each of its mirrorings when
    /// `mirrored`, in the current precision.
    fn predict_once(&mut self, input: &Tensor, mirrored: bool) -> Result<Tensor, EngineError> {
        let identity = [Vec::new()];
        let mirrorings: &[Vec<i64>] =
            if !mirrored || self.mirrorings.is_empty() { &identity } else { &self.mirrorings };
        let passes = self.models.len() * mirrorings.len();
        let input = self.compute.prepare_input(input);
        let mut sum: Option<Tensor> = None;
        for model in &mut self.models {
            for dims in mirrorings {
                let flip = |t: &Tensor, what: &str| {
                    t.f_flip(dims.as_slice()).map_err(torch_error(format_args!("mirroring {what} along {dims:?}")))
                };
                let x = if dims.is_empty() { input.shallow_clone() } else { flip(&input, "the windows")? };
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
                let y = if self.logits { y.f_to_kind(Kind::Float) } else { y.f_softmax(1, Kind::Float) }
                    .map_err(torch_error(format_args!("the class probabilities of network `{}`", model.name)))?;
                let y = if dims.is_empty() { y } else { flip(&y, &format!("network `{}`'s output", model.name))? };
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
        let mean = if passes == 1 { sum } else { sum / (passes as f64) };
        let mean = to_device(&mean, tch::Device::Cpu, "the network's output")?;
        Ok(mean.f_to_kind(Kind::Float).map_err(torch_error("the network's output as float32"))?.contiguous())
    }
}

/// A plugin's error message up to its first line break (libtorch's messages go on with
/// a C++ backtrace, sometimes with escaped line breaks).
pub(super) fn first_line(message: &str) -> &str {
    message.split('\n').next().unwrap_or_default().split("\\n").next().unwrap_or_default()
}

/// Warns when a plugin library the checkpoint `weights` names differs (by sha256) from
/// the one `registry` loaded for that component.
fn warn_if_plugins_differ(registry: &Registry, weights: &Path) {
    let Ok(meta) = checkpoint::read_meta(weights) else { return };
    for p in &meta.plugins {
        // Augmentations do not take part in inference.
        let kind = match p.kind.as_str() {
            "loss" => ComponentKind::Loss,
            "network" => ComponentKind::Network,
            _ => continue,
        };
        if let Ok((lib, _)) = registry.find(kind, &p.component) {
            if lib.sha256 != p.sha256 {
                tracing::warn!(component = %p.component, saved = %p.version, loaded = %lib.info.version, checkpoint = %weights.display(), "the plugin library differs from the one the checkpoint was trained with");
            }
        }
    }
}

/// Builds the network for images with `channels` and restores one checkpoint file.
///
/// # Errors
/// A checkpoint that does not fit the network.
pub fn model_from_checkpoint(
    settings: &Settings,
    registry: &Registry,
    device: Device,
    channels: &ChannelLayout,
    weights: &Path,
) -> Result<Model, EngineError> {
    let mut model = Model::build(registry, settings, channels.clone(), device)?;
    checkpoint::load_weights(weights, &mut model)?;
    Ok(model)
}

/// One model per checkpoint (each taking images with `channels`) for each of `workers`
/// workers, after one warning per checkpoint trained with other plugin libraries than
/// `registry`'s.
///
/// # Errors
/// As [`model_from_checkpoint`].
pub fn worker_models(
    settings: &Settings,
    registry: &Registry,
    device: Device,
    channels: &ChannelLayout,
    checkpoints: &[PathBuf],
    workers: usize,
) -> Result<Vec<Vec<Model>>, EngineError> {
    for weights in checkpoints {
        warn_if_plugins_differ(registry, weights);
    }
    (0..workers.max(1))
        .map(|_| checkpoints.iter().map(|w| model_from_checkpoint(settings, registry, device, channels, w)).collect())
        .collect()
}

/// The checkpoint files a config segments with: `inference.checkpoints`, else the one of
/// `inference.inference_iter` (`-1` = latest).
///
/// # Errors
/// No such checkpoint.
pub fn checkpoints_for_inference(settings: &Settings) -> Result<Vec<PathBuf>, EngineError> {
    if !settings.inference.checkpoints.is_empty() {
        for p in &settings.inference.checkpoints {
            if !p.is_file() {
                return Err(EngineError::Other(format!(
                    "`inference.checkpoints` names {}, which is not a file",
                    p.display()
                )));
            }
        }
        return Ok(settings.inference.checkpoints.clone());
    }
    let iteration = settings.inference.inference_iter;
    let dir = settings.checkpoint_dir();
    let found = checkpoint::list(&dir);
    let chosen = if iteration < 0 { found.last() } else { found.iter().find(|(i, _)| *i == iteration as u64) };
    let (_, weights) = chosen.cloned().ok_or_else(|| {
        EngineError::Other(format!(
            "no checkpoint {} in {} (have {:?}): train first, or set `inference.inference_iter`",
            if iteration < 0 { "at all".to_owned() } else { iteration.to_string() },
            dir.display(),
            found.iter().map(|(i, _)| *i).collect::<Vec<_>>()
        ))
    })?;
    Ok(vec![weights])
}

/// The predictor of a config: one model per checkpoint, each taking the image channels
/// the checkpoints record, the configured mirrorings.
///
/// # Errors
/// Bad options, no checkpoint, checkpoints that record different channels, a network or
/// checkpoint that cannot be loaded.
pub fn predictor(settings: &Settings, registry: &Registry, device: Device) -> Result<Predictor, EngineError> {
    let options = InferenceOptions::from_settings(settings)?;
    let checkpoints = checkpoints_for_inference(settings)?;
    for weights in &checkpoints {
        tracing::info!(checkpoint = %weights.display(), "segmenting with");
    }
    let channels = checkpoint::recorded_channels(&checkpoints, &settings.segmentation.image)?;
    let mut sets = worker_models(settings, registry, device, &channels, &checkpoints, options.workers)?;
    let models = sets.remove(0);
    with_options(models, sets, &options)
}

/// The predictor of `options` over `models`, with `replicas` (further copies of
/// `models`, `options.workers - 1` of them) as its workers.
///
/// # Errors
/// Bad mirror axes.
pub fn with_options(
    models: Vec<Model>,
    replicas: Vec<Vec<Model>>,
    options: &InferenceOptions,
) -> Result<Predictor, EngineError> {
    let predictor = Predictor::new(
        models,
        mirrorings(&options.mirror_axes).map_err(EngineError::Other)?,
        options.output == OutputKind::Logits,
        options.compute,
    );
    tracing::debug!(workers = options.workers, threads = options.worker_threads, compute = ?options.compute, "inference");
    Ok(if replicas.is_empty() { predictor } else { predictor.with_workers(replicas, options.worker_threads) })
}
