//! Sliding-window inference: windows on a grid with overlap ([`tiling`]), run through an
//! ensemble of models with test-time mirroring ([`tta`]), blended with constant or
//! Gaussian weights ([`blend`]) into a compact slab-wise accumulator ([`aggregate`]),
//! brought back to the input's geometry and written as labels, probabilities or logits
//! ([`output`]), labels optionally postprocessed ([`postprocess`]). A cohort can be split
//! between processes ([`shard`]).

pub mod aggregate;
pub mod blend;
pub mod output;
pub mod postprocess;
pub mod shard;
pub mod tiling;
pub mod tta;

use std::path::{Path, PathBuf};

use niftyhost_plugin_api::ComponentKind;
use serde::Serialize;
use tch::{Device, Tensor};

pub use self::aggregate::{Aggregated, Aggregator, Store};
pub use self::blend::Blend;
pub use self::output::OutputKind;
pub use self::postprocess::Postprocess;
pub use self::shard::Shard;
pub use self::tiling::Tiling;
pub use self::tta::{mirrorings, Predictor};
use super::checkpoint;
use super::{EngineError, Model};
use crate::config::{ConfigError, Settings};
use crate::data::phases::held_out_subjects;
use crate::data::prepare::Preparation;
use crate::data::window::extract;
use crate::data::{load_subject, LoadOptions, Subject, SubjectVolumes};
use crate::metrics::components::Connectivity;
use crate::plugins::Registry;
use crate::telemetry::Progress;

/// One segmentation written.
#[derive(Debug, Clone, Serialize)]
pub struct Segmented {
    /// The subject.
    pub subject: String,
    /// The output file.
    pub output: PathBuf,
    /// Windows run.
    pub windows: usize,
    /// Forward passes per window batch (models × mirrorings).
    pub passes: usize,
    /// Seconds for this subject (reading to writing).
    pub seconds: f64,
    /// Of which in the network's forward passes.
    pub network_seconds: f64,
}

/// Everything that decides how a volume is segmented, read from `[inference]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceOptions {
    /// Windows.
    pub tiling: Tiling,
    /// Weights of overlapping windows.
    pub blend: Blend,
    /// Test-time mirroring axes (`0 = i`).
    pub mirror_axes: Vec<usize>,
    /// What is written.
    pub output: OutputKind,
    /// Label postprocessing.
    pub postprocess: Postprocess,
    /// Classes the network outputs.
    pub num_classes: usize,
}

impl InferenceOptions {
    /// Reads and checks the `[inference]` keys.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn from_settings(s: &Settings) -> Result<InferenceOptions, ConfigError> {
        let inf = &s.inference;
        let invalid = |m: String| ConfigError::Invalid(m);
        let blend = Blend::parse(&inf.blending).map_err(|e| invalid(format!("`inference.blending`: {e}")))?;
        mirrorings(&inf.tta_mirror_axes).map_err(|e| invalid(format!("`inference.tta_mirror_axes`: {e}")))?;
        let output = OutputKind::parse(&inf.output_type, inf.output_prob, &inf.probability_dtype).map_err(invalid)?;
        let connectivity = Connectivity::from_neighbours(inf.connectivity).ok_or_else(|| {
            invalid(format!("`inference.connectivity` must be 6, 18 or 26, got {}", inf.connectivity))
        })?;
        if !(inf.min_component_mm3 >= 0.0 && inf.min_component_mm3.is_finite()) {
            return Err(invalid(format!("`inference.min_component_mm3` must be >= 0, got {}", inf.min_component_mm3)));
        }
        let postprocess = Postprocess {
            remove_small: inf.remove_small_components.clone(),
            min_volume_mm3: inf.min_component_mm3,
            keep_largest: inf.keep_largest_component.clone(),
            fill_holes: inf.fill_holes.clone(),
            connectivity,
        };
        if !postprocess.is_empty() && output != OutputKind::Labels {
            return Err(invalid(
                "postprocessing (keep_largest_component, remove_small_components, fill_holes) needs `inference.output_type = \"labels\"`"
                    .into(),
            ));
        }
        let b = &inf.border;
        Ok(InferenceOptions {
            tiling: Tiling {
                window: s.inference_window(),
                border: [
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                    b.get(2).copied().unwrap_or(0),
                ],
                overlap: inf.overlap,
                batch_size: inf.batch_size.max(1),
            },
            blend,
            mirror_axes: inf.tta_mirror_axes.clone(),
            output,
            postprocess,
            num_classes: s.segmentation.num_classes,
        })
    }
}

/// A blended volume and how it was made.
#[derive(Debug)]
pub struct Predicted {
    /// The blended volume.
    pub volume: Aggregated,
    /// Windows run.
    pub windows: usize,
    /// Seconds in the network's forward passes.
    pub network_seconds: f64,
}

/// Runs the predictor over a prepared volume and blends the window outputs.
///
/// # Shapes
/// `volume.image`: `[C, k, j, i]`; windows fed as `[N, C, wk, wj, wi]`
///
/// # Errors
/// A plugin failure, a network whose output size differs from its input, or a class
/// count other than `num_classes`.
pub fn predict_volume(
    predictor: &mut Predictor,
    volume: &SubjectVolumes,
    options: &InferenceOptions,
    store: Store,
    device: Device,
) -> Result<Predicted, EngineError> {
    let tiling = &options.tiling;
    let mut network = std::time::Duration::ZERO;
    let window = tiling.window;
    let [wi, wj, wk] = window;
    let kept = tiling.kept();
    let grid = tiling.corners(volume.dims);
    let mut agg = Aggregator::new(volume.dims, options.num_classes, kept, options.blend.weights(kept), store)?;
    let mut buf = Vec::with_capacity(tiling.batch_size * volume.channels * wi * wj * wk);
    for chunk in grid.chunks(tiling.batch_size) {
        buf.clear();
        for c in chunk {
            extract(&volume.image, volume.dims, volume.channels, tiling.window_start(*c), window, 0.0, &mut buf);
        }
        let shape = [chunk.len() as i64, volume.channels as i64, wk as i64, wj as i64, wi as i64];
        let input = Tensor::from_slice(&buf).view(shape).to_device(device);
        let started = std::time::Instant::now();
        let out = predictor.predict(&input)?;
        network += started.elapsed();
        let size = out.size();
        if size.len() != 5 || size[2..] != shape[2..] || size[0] != shape[0] {
            return Err(EngineError::Other(format!(
                "the network returned {size:?} for inputs of {shape:?}; inference needs outputs of the input's window size"
            )));
        }
        if size[1] as usize != options.num_classes {
            return Err(EngineError::Other(format!(
                "the network returned {} classes, segmentation.num_classes is {}",
                size[1], options.num_classes
            )));
        }
        let values =
            Vec::<f32>::try_from(out.view([-1])).map_err(|e| EngineError::Other(format!("network output: {e}")))?;
        let per_window = options.num_classes * wi * wj * wk;
        for (n, c) in chunk.iter().enumerate() {
            agg.add(*c, &values[n * per_window..(n + 1) * per_window], window, tiling.border)?;
        }
    }
    Ok(Predicted { volume: agg.finish()?, windows: grid.len(), network_seconds: network.as_secs_f64() })
}

/// Segments one prepared subject and writes the output to `path`. The image is dropped
/// as soon as the windows have run, before the output is brought back and written.
/// Returns the windows run and the seconds spent in the network.
///
/// # Errors
/// As [`predict_volume`] and [`output::write_output`].
pub fn segment_subject(
    predictor: &mut Predictor,
    mut volume: SubjectVolumes,
    options: &InferenceOptions,
    preparation: &Preparation,
    path: &Path,
    device: Device,
) -> Result<(usize, f64), EngineError> {
    let store = options.output.store(&volume.geometry);
    let predicted = predict_volume(predictor, &volume, options, store, device)?;
    let (aggregated, windows, network_seconds) = (predicted.volume, predicted.windows, predicted.network_seconds);
    volume.image = Vec::new();
    output::write_output(
        path,
        &volume.id,
        &volume.reference,
        &volume.geometry,
        aggregated,
        options.num_classes,
        options.output,
        preparation.label_map.as_deref(),
        &options.postprocess,
    )?;
    Ok((windows, network_seconds))
}

/// Builds the network and restores one checkpoint file.
///
/// # Errors
/// A checkpoint that does not fit the network.
pub fn model_from_checkpoint(
    settings: &Settings,
    registry: &Registry,
    device: Device,
    weights: &Path,
) -> Result<Model, EngineError> {
    if let Ok(meta) = checkpoint::read_meta(weights) {
        for p in &meta.plugins {
            // Augmentations do not take part in inference.
            let kind = match p.kind.as_str() {
                "loss" => ComponentKind::Loss,
                "network" => ComponentKind::Network,
                _ => continue,
            };
            if let Ok((lib, _)) = registry.find(kind, &p.component) {
                if lib.sha256 != p.sha256 {
                    tracing::warn!(component = %p.component, saved = %p.version, loaded = %lib.info.version, "the plugin library differs from the one the checkpoint was trained with");
                }
            }
        }
    }
    let mut model = Model::build(registry, settings, device)?;
    checkpoint::load_weights(weights, &mut model)?;
    Ok(model)
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

/// The predictor of a config: one model per checkpoint, the configured mirrorings.
///
/// # Errors
/// Bad options, no checkpoint, a network or checkpoint that cannot be loaded.
pub fn predictor(settings: &Settings, registry: &Registry, device: Device) -> Result<Predictor, EngineError> {
    let options = InferenceOptions::from_settings(settings)?;
    let mut models = Vec::new();
    for weights in checkpoints_for_inference(settings)? {
        tracing::info!(checkpoint = %weights.display(), "segmenting with");
        models.push(model_from_checkpoint(settings, registry, device, &weights)?);
    }
    Ok(Predictor {
        models,
        mirrorings: mirrorings(&options.mirror_axes).map_err(EngineError::Other)?,
        logits: options.output == OutputKind::Logits,
    })
}

/// Segments one subject given by its image files (one per modality) and writes `out`.
///
/// # Errors
/// Unreadable images, a plugin failure, an unwritable output.
pub fn infer_files(
    settings: &Settings,
    predictor: &mut Predictor,
    preparation: Preparation,
    images: &[PathBuf],
    out: &Path,
    device: Device,
) -> Result<Segmented, EngineError> {
    let options = InferenceOptions::from_settings(settings)?;
    let modalities = &settings.segmentation.image;
    if images.len() != modalities.len() {
        return Err(EngineError::Config(ConfigError::Invalid(format!(
            "the model takes {} image(s) ({}), got {} --image",
            modalities.len(),
            modalities.join(", "),
            images.len()
        ))));
    }
    let started = std::time::Instant::now();
    let id = out
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".gz").trim_end_matches(".nii").to_owned())
        .unwrap_or_else(|| "image".into());
    let subject = Subject { id: id.clone(), images: images.to_vec(), label: None, weights: None };
    let load = LoadOptions::new(settings, preparation);
    let v = load_subject(&subject, &load)?;
    let (windows, network_seconds) = segment_subject(predictor, v, &options, &load.preparation, out, device)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(subject = %id, windows, seconds = format!("{seconds:.2}"), network_seconds = format!("{network_seconds:.2}"), output = %out.display(), "segmented");
    Ok(Segmented { subject: id, output: out.to_owned(), windows, passes: predictor.passes(), seconds, network_seconds })
}

/// Segments every subject of the image sections (the INFER ones when the split file has
/// any), or those of shard `inference.shard`, and writes `<id><postfix>.nii.gz`.
///
/// # Errors
/// A bad `inference.shard`, bad data, no checkpoint, a plugin failure, or an unwritable
/// output.
pub fn infer(settings: &Settings, registry: &Registry, base_dir: &Path) -> Result<Vec<Segmented>, EngineError> {
    let shard = Shard::parse(&settings.inference.shard)
        .map_err(|e| ConfigError::Invalid(format!("`inference.shard` (`--shard`): {e}")))?;
    let device = crate::torch::single_device(&settings.device_names())?;
    let options = InferenceOptions::from_settings(settings)?;
    let mut predictor = predictor(settings, registry, device)?;
    let cohort = held_out_subjects(settings, base_dir, false)?;
    let total = cohort.len();
    let subjects = shard.select(cohort, |s| s.id.as_str());
    if subjects.is_empty() && total > 0 {
        tracing::warn!(%shard, cohort = total, "this shard has no subject: there are fewer subjects than shards");
    } else if !shard.is_all() {
        tracing::info!(%shard, subjects = subjects.len(), cohort = total, "segmenting this shard's subjects");
    }
    let load = LoadOptions::new(settings, Preparation::saved(settings)?);
    let out_dir = settings.inference_dir();
    let progress = Progress::new(0, subjects.len() as u64, "infer");
    let mut out = Vec::new();
    for (n, subject) in subjects.iter().enumerate() {
        let started = std::time::Instant::now();
        // One subject in memory at a time.
        let v = load_subject(subject, &load)?;
        let path = out_dir.join(format!("{}{}.nii.gz", v.id, settings.inference.output_postfix));
        let id = v.id.clone();
        let (windows, network_seconds) =
            segment_subject(&mut predictor, v, &options, &load.preparation, &path, device)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(subject = %id, windows, seconds = format!("{seconds:.2}"), network_seconds = format!("{network_seconds:.2}"), output = %path.display(), "segmented");
        progress.update(n as u64 + 1, id.clone());
        out.push(Segmented {
            subject: id,
            output: path,
            windows,
            passes: predictor.passes(),
            seconds,
            network_seconds,
        });
    }
    Ok(out)
}
