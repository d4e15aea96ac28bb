//! Sliding-window inference: windows on a grid with overlap ([`tiling`]; a window the
//! network does not take is enlarged before any volume is read, [`fit`]; as many run at
//! once as fit in memory, [`memory`](mod@memory)) over the
//! foreground's bounding box ([`foreground`]), run in batches on one or more workers
//! (`pipeline`) through a [`predictor`](mod@predictor) (an ensemble of models with
//! test-time mirroring, [`tta`]), blended with constant or Gaussian weights ([`blend`])
//! into a compact slab-wise accumulator ([`aggregate`]),
//! brought back to the input's geometry and written as labels, probabilities or logits
//! ([`output`]), labels optionally postprocessed ([`postprocess`]). A cohort can be split
//! between processes ([`shard`]); [`job`] is an inference as the command line runs it,
//! from a config or from bundles.

pub mod aggregate;
pub mod blend;
pub mod compute;
pub mod fit;
pub mod foreground;
pub mod job;
pub mod memory;
pub mod output;
mod pipeline;
pub mod postprocess;
pub mod predictor;
mod resize;
pub mod tiling;
pub mod tta;

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Device;

pub use self::aggregate::{Aggregated, Aggregator, Store};
pub use self::blend::Blend;
pub use self::compute::{Compute, InferencePrecision, PrecisionOnDevice};
pub use self::fit::fit_window;
pub use self::memory::{Concurrency, Cost, WindowMemory};
pub use self::foreground::Region;
pub use self::output::{OutputKind, OutputStore};
use self::pipeline::{Batches, Blender};
pub use self::postprocess::Postprocess;
pub use self::predictor::{
    checkpoints_for_inference, model_from_checkpoint, predictor, with_options, worker_models, Predictor,
};
pub use self::shard::Shard;
pub use self::tiling::Tiling;
pub use self::tta::mirrorings;
use super::EngineError;
use crate::config::{ConfigError, Settings, WindowSampling};
use crate::data::phases::held_out_subjects;
use crate::data::prepare::Preparation;
use crate::data::{load_subject, LoadOptions, Subject, SubjectVolumes};
use crate::metrics::components::Connectivity;
use crate::plugins::Registry;
use crate::telemetry::Progress;
pub use niftyhost_core::shard;

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
    /// Seconds in the network's forward passes, summed over the workers (so with
    /// several workers it can exceed `seconds`).
    pub network_seconds: f64,
}

impl std::fmt::Display for Segmented {
    /// `subject: output (windows, seconds)`, as `niftyhost inference` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({} windows, {:.2} s)", self.subject, self.output.display(), self.windows, self.seconds)
    }
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
    /// Precision and layout of the forward passes.
    pub compute: Compute,
    /// Batches run at once, each by its own copy of the network on its own thread.
    pub workers: usize,
    /// libtorch threads of each worker when `workers > 1`.
    pub worker_threads: usize,
    /// Labels go back to the input grid by nearest neighbour from the arg-max on the
    /// prepared grid (`inference.output_interp_order = 0`), not through probabilities.
    pub nearest_labels: bool,
    /// Run windows only over the foreground's bounding box widened by this many voxels
    /// ([`foreground`]), the rest being class 0; `None` runs them over the whole volume.
    pub foreground_margin: Option<usize>,
    /// Each volume is resized to the window and run as one window, its scores resized
    /// back ([`resize`](mod@resize)): the network trained on whole volumes resized so
    /// (`network.window_sampling = "resize"`).
    pub resize_to_window: bool,
    /// What one window costs in memory, once measured ([`memory::measure`]): the
    /// windows run at once are then as many as fit; `None` runs them as configured.
    pub window_memory: Option<WindowMemory>,
}

impl InferenceOptions {
    /// Reads the `[inference]` keys (checked when the configuration loaded), for the
    /// device the job runs on: `inference.precision = "auto"` probes the CPU here.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for settings that skipped [`Settings::validate`]: an
    /// output that contradicts `output_prob`, a connectivity other than 6, 18 or 26.
    pub fn from_settings(s: &Settings) -> Result<InferenceOptions, ConfigError> {
        let inf = &s.inference;
        let invalid = |m: String| ConfigError::Invalid(m);
        // Inference runs on one device.
        let on_cpu = s.device_names().iter().all(|d| d == "cpu");
        let device = if on_cpu { Device::Cpu } else { Device::Cuda(0) };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = if s.system.torch_threads > 0 { s.system.torch_threads } else { cores };
        let workers = match inf.workers {
            0 if on_cpu => threads.min(MAX_AUTO_WORKERS),
            0 => 1,
            n => n,
        };
        let output = inf.output_kind().map_err(invalid)?;
        let connectivity = Connectivity::from_neighbours(inf.connectivity).ok_or_else(|| {
            invalid(format!("`inference.connectivity` must be 6, 18 or 26, got {}", inf.connectivity))
        })?;
        let postprocess = Postprocess {
            remove_small: inf.remove_small_components.clone(),
            min_volume_mm3: inf.min_component_mm3,
            keep_largest: inf.keep_largest_component.clone(),
            fill_holes: inf.fill_holes.clone(),
            connectivity,
        };
        Ok(InferenceOptions {
            tiling: Tiling {
                window: s.inference_window(),
                // At least the label window's border: the network was trained on it alone.
                border: s.inference_border(),
                overlap: inf.overlap,
                batch_size: inf.batch_size.max(1),
                full_extent_multiple: s.full_extent_multiple(),
            },
            blend: Blend::from(inf.blending),
            mirror_axes: inf.tta_mirror_axes.clone(),
            output,
            postprocess,
            num_classes: s.segmentation.num_classes,
            // Measured on the CPU only (oneDNN); GPUs keep libtorch's default layout.
            compute: Compute { precision: inf.precision.on(device), channels_last: inf.channels_last && on_cpu },
            workers,
            worker_threads: (threads / workers).max(1),
            nearest_labels: inf.output_interp_order == 0,
            // Logits have no value that means "background": they run every window.
            foreground_margin: (inf.crop_to_foreground && output != OutputKind::Logits)
                .then_some(inf.foreground_margin),
            resize_to_window: s.network.window_sampling == WindowSampling::Resize,
            window_memory: None,
        })
    }
}

/// Most workers `inference.workers = 0` picks (one per core up to this).
const MAX_AUTO_WORKERS: usize = 4;

/// A blended volume and how it was made.
#[derive(Debug)]
pub struct Predicted {
    /// The blended volume.
    pub volume: Aggregated,
    /// Windows run.
    pub windows: usize,
    /// Seconds in the network's forward passes, summed over the workers.
    pub network_seconds: f64,
}

/// Runs the predictor over a prepared volume and blends the window outputs. With
/// `options.foreground_margin`, windows cover only the foreground's bounding box and the
/// voxels outside it are class 0 ([`foreground`]). Windows whose input is constant all
/// have the same output: it is computed once per constant. With helpers
/// ([`Predictor::with_workers`]) batches run on one thread per worker while this thread
/// cuts windows and blends the outputs, in grid order. With `options.resize_to_window`
/// the volume is resized to one window instead ([`resize`](mod@resize)).
///
/// # Shapes
/// `volume.image`: `[C, k, j, i]`; windows fed as `[N, C, wk, wj, wi]`
///
/// # Errors
/// A plugin failure, a network whose output is neither the input's size nor smaller by
/// at most the border on each side, or a class count other than `num_classes`.
pub fn predict_volume(
    predictor: &mut Predictor,
    volume: &SubjectVolumes,
    options: &InferenceOptions,
    store: Store,
    device: Device,
) -> Result<Predicted, EngineError> {
    if options.resize_to_window {
        return resize::predict_resized(predictor, volume, options, store, device);
    }
    let mut tiling = options.tiling.for_volume(volume.dims);
    let configured = Concurrency { batch: tiling.batch_size, workers: predictor.workers() };
    let at_once = options.window_memory.map_or(configured, |m| m.fit(tiling.window, configured));
    tiling.batch_size = at_once.batch;
    let tiling = &tiling;
    let kept = tiling.kept();
    let region = match options.foreground_margin {
        None => Some(Region::whole(volume.dims)),
        Some(margin) => foreground::bounding_box(&volume.image, volume.channels, volume.dims)
            .map(|b| foreground::widen(b, margin, kept, volume.dims)),
    };
    let grid: Vec<[usize; 3]> = region.map_or_else(Vec::new, |r| {
        tiling.corners(r.size).into_iter().map(|c| std::array::from_fn(|a| c[a] + r.start[a])).collect()
    });
    tracing::debug!(?region, windows = grid.len(), "windows over");
    let mut agg = Aggregator::new(volume.dims, options.num_classes, kept, options.blend.weights(kept), store)?;
    if region.is_none_or(|r| !r.is_whole(volume.dims)) {
        // Outside the windows: the background class, with probability 1.
        agg = agg.with_fill((0..options.num_classes).map(|c| if c == 0 { 1.0 } else { 0.0 }).collect())?;
    }
    let mut blender = Blender::new(agg, tiling, options.num_classes);
    let batches = Batches::new(volume, tiling, &grid);
    let target = pipeline::Target { device, num_classes: options.num_classes, border: tiling.border };
    let network = pipeline::run(predictor, batches, &mut blender, target, at_once.workers)?;
    Ok(Predicted { volume: blender.into_volume()?, windows: grid.len(), network_seconds: network.as_secs_f64() })
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
    let store = match options.output {
        OutputKind::Labels if options.nearest_labels => Store::Labels,
        _ => options.output.store(&volume.geometry),
    };
    let started = std::time::Instant::now();
    let predicted = predict_volume(predictor, &volume, options, store, device)?;
    let windows_seconds = started.elapsed().as_secs_f64();
    let (aggregated, windows, network_seconds) = (predicted.volume, predicted.windows, predicted.network_seconds);
    volume.image = Vec::new();
    let started = std::time::Instant::now();
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
    tracing::debug!(
        subject = %volume.id,
        windows_seconds = format!("{windows_seconds:.2}"),
        output_seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "windows blended, output written"
    );
    Ok((windows, network_seconds))
}

/// Fits `options` to the predictor before any volume is read: a window it takes
/// ([`fit_window`]), and what one such window costs in memory ([`memory::measure`]),
/// probed with the channels its models take (one per image section when they record
/// none).
///
/// # Errors
/// As [`fit_window`] and [`memory::measure`].
fn fit_to_predictor(
    settings: &Settings,
    predictor: &mut Predictor,
    options: &mut InferenceOptions,
    device: Device,
) -> Result<(), EngineError> {
    let channels = predictor.channels().map_or(settings.segmentation.image.len(), |c| c.total());
    let train_window = settings.train_window();
    options.tiling = fit_window(predictor, options, channels, train_window, device)?;
    // Full-extent axes (0) at the training window's size, then at twice it.
    let window = options.tiling.window;
    let sized = |scale: usize| -> [usize; 3] {
        std::array::from_fn(|a| if window[a] == 0 { scale * train_window[a] } else { window[a] })
    };
    let windows = if window.contains(&0) { vec![sized(1), sized(2)] } else { vec![sized(1)] };
    let configured = Concurrency { batch: options.tiling.batch_size, workers: predictor.workers() };
    options.window_memory = Some(memory::measure(predictor, &windows, channels, configured, device)?);
    Ok(())
}

/// Segments one subject given by its image files (one per modality; a 4D file gives
/// its channels) and writes `out`.
///
/// # Errors
/// Unreadable images, images without the channels the predictor's models take (before
/// the network runs), a plugin failure, an unwritable output.
pub fn infer_files(
    settings: &Settings,
    predictor: &mut Predictor,
    preparation: Preparation,
    images: &[PathBuf],
    out: &Path,
    device: Device,
) -> Result<Segmented, EngineError> {
    let mut options = InferenceOptions::from_settings(settings)?;
    let modalities = &settings.segmentation.image;
    let channels = predictor.channels().cloned();
    if images.len() != modalities.len() {
        return Err(EngineError::Config(ConfigError::Invalid(format!(
            "the model takes {} image(s) ({}), got {} --image",
            modalities.len(),
            channels.map_or_else(|| modalities.join(", "), |c| format!("channels {c}")),
            images.len()
        ))));
    }
    fit_to_predictor(settings, predictor, &mut options, device)?;
    let started = std::time::Instant::now();
    let id = out
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".gz").trim_end_matches(".nii").to_owned())
        .unwrap_or_else(|| "image".into());
    let subject = Subject { id: id.clone(), images: images.to_vec(), label: None, weights: None, loss_weight: None };
    let mut load = LoadOptions::new(settings, preparation);
    load.channels = channels;
    let v = load_subject(&subject, &load)?;
    tracing::debug!(subject = %id, seconds = format!("{:.2}", started.elapsed().as_secs_f64()), "read and prepared");
    let (windows, network_seconds) = segment_subject(predictor, v, &options, &load.preparation, out, device)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(subject = %id, windows, seconds = format!("{seconds:.2}"), network_seconds = format!("{network_seconds:.2}"), output = %out.display(), "segmented");
    Ok(Segmented { subject: id, output: out.to_owned(), windows, passes: predictor.passes(), seconds, network_seconds })
}

/// Segments every subject of the image sections (the INFER ones when the split file has
/// any), or those of shard `inference.shard`, and writes `<id><postfix>.nii.gz`.
///
/// # Errors
/// Bad data (images without the channels the checkpoints record included), no
/// checkpoint, a plugin failure, or an unwritable output.
pub fn infer(settings: &Settings, registry: &Registry, base_dir: &Path) -> Result<Vec<Segmented>, EngineError> {
    let shard = settings.inference.shard.unwrap_or(Shard::ALL);
    let device = crate::torch::single_device(&settings.device_names())?;
    let mut options = InferenceOptions::from_settings(settings)?;
    let mut predictor = predictor(settings, registry, device)?;
    fit_to_predictor(settings, &mut predictor, &mut options, device)?;
    let cohort: Vec<_> = held_out_subjects(settings, base_dir, false)?.into_iter().map(|h| h.subject).collect();
    let total = cohort.len();
    let subjects = shard.select(cohort, |s| s.id.as_str());
    if subjects.is_empty() && total > 0 {
        tracing::warn!(%shard, cohort = total, "this shard has no subject: there are fewer subjects than shards");
    } else if !shard.is_all() {
        tracing::info!(%shard, subjects = subjects.len(), cohort = total, "segmenting this shard's subjects");
    }
    let mut load = LoadOptions::new(settings, Preparation::saved(settings)?);
    load.channels = predictor.channels().cloned();
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
