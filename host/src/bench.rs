//! `niftyhost bench`: throughput of the data pipeline on the 1 mm MNI152 tissue task
//! (`data/mni152_1mm`): NIfTI decoding, windows per second of the uniform and balanced
//! samplers from cached volumes, and the share of a real training loop spent waiting
//! for data. With `--augment`: the cost of each augmentation component and of the
//! default chain on one window, and the training loop's data wait with that chain on.
//! With `--inference`, only whole-volume inference of the T1 ([`run_inference`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::{load, Overrides, Settings};
use crate::data::phases::training_subjects;
use crate::data::prepare::Preparation;
use crate::data::{training_sampler, AugmentationChain, DataError, Loader};
use crate::engine::inference::{self, InferenceOptions};
use crate::engine::{trainer, EngineError, Model};
use crate::io::read_volume;
use crate::plugins::Registry;
use crate::torch::with_one_torch_thread;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Folder with `t1_*.nii.gz` and `tissue_*.nii.gz`.
    pub data_dir: PathBuf,
    /// Window edge, voxels.
    pub window: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// Loader threads.
    pub threads: usize,
    /// Batches timed per sampler.
    pub batches: u64,
    /// Training iterations timed (0: skip the training loop).
    pub train_iterations: u64,
    /// Scratch folder (split file, checkpoints).
    pub scratch: PathBuf,
    /// Also measure augmentation (needs the `augment` plugin).
    pub augment: bool,
    /// Timed runs of each inference.
    pub runs: usize,
}

/// Decoding figures.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeFigures {
    /// The file read.
    pub file: PathBuf,
    /// Voxels in it.
    pub voxels: usize,
    /// Best of five reads, milliseconds.
    pub milliseconds: f64,
    /// Million voxels decoded per second.
    pub megavoxels_per_second: f64,
}

/// One sampler's throughput.
#[derive(Debug, Clone, Serialize)]
pub struct SamplerFigures {
    /// uniform / balanced.
    pub sampler: String,
    /// Windows per second through the loader queue.
    pub patches_per_second: f64,
}

/// A real training loop's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingFigures {
    /// The network.
    pub network: String,
    /// Seconds per iteration.
    pub seconds_per_iteration: f64,
    /// Share of loop time waiting for batches.
    pub data_wait_share: f64,
    /// The host's share of a step (batch to tensors, dispatch, gradient averaging,
    /// optimiser, broadcast, logs) beside the plugin's forward and backward.
    pub host_overhead_share: f64,
    /// Mean seconds per step of each part.
    pub step_parts: trainer::StepParts,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Window edge.
    pub window: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Loader threads.
    pub threads: usize,
    /// NIfTI decoding.
    pub decode: DecodeFigures,
    /// Samplers.
    pub samplers: Vec<SamplerFigures>,
    /// The training loop, when run.
    pub training: Option<TrainingFigures>,
    /// Augmentation costs and the training loop with the default chain, with `--augment`.
    pub augmentation: Option<AugmentFigures>,
}

/// One way of segmenting the volume, timed.
#[derive(Debug, Clone, Serialize)]
pub struct InferenceRun {
    /// `inference.crop_to_foreground`.
    pub crop_to_foreground: bool,
    /// Windows run.
    pub windows: usize,
    /// Best seconds from reading the image to writing the labels.
    pub seconds: f64,
    /// Seconds in forward passes in that run, summed over the workers.
    pub network_seconds: f64,
}

/// Whole-volume inference figures.
#[derive(Debug, Clone, Serialize)]
pub struct InferenceReport {
    /// The image segmented.
    pub image: PathBuf,
    /// Its size `(i, j, k)`.
    pub dims: [usize; 3],
    /// The network (seeded random weights: the time does not depend on them).
    pub network: String,
    /// Window edge, voxels.
    pub window: usize,
    /// Fraction of a window shared with its neighbour.
    pub overlap: f64,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// Network replicas running batches side by side.
    pub workers: usize,
    /// Arithmetic of the forward passes.
    pub precision: String,
    /// Timed runs of each way, the best of which counts.
    pub best_of: usize,
    /// With and without the crop.
    pub runs: Vec<InferenceRun>,
    /// The process's peak resident memory after both, MB.
    pub peak_rss_mb: f64,
}

impl fmt::Display for InferenceReport {
    /// The setting, one line per way of segmenting and the peak memory, as `niftyhost
    /// bench --inference` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {:?}: {}, window {}³, overlap {}, batch {}, {} worker(s), precision {}",
            self.image.display(),
            self.dims,
            self.network,
            self.window,
            self.overlap,
            self.batch_size,
            self.workers,
            self.precision
        )?;
        for r in &self.runs {
            writeln!(
                f,
                "crop_to_foreground = {}: {} windows, {:.2} s reading to writing (best of {}), {:.2} s in the network",
                r.crop_to_foreground, r.windows, r.seconds, self.best_of, r.network_seconds
            )?;
        }
        writeln!(f, "peak RSS {:.0} MB", self.peak_rss_mb)
    }
}

/// One augmentation's cost.
#[derive(Debug, Clone, Serialize)]
pub struct AugmentCost {
    /// The component (or `chain`).
    pub name: String,
    /// Its parameters.
    pub params: serde_json::Value,
    /// Window edge it ran on, voxels.
    pub edge: usize,
    /// Median milliseconds per window.
    pub milliseconds: f64,
}

/// Augmentation figures.
#[derive(Debug, Clone, Serialize)]
pub struct AugmentFigures {
    /// The default chain's config keys.
    pub chain: Vec<(String, String)>,
    /// Each component alone, then the chain on the window and on the window with its margin.
    pub costs: Vec<AugmentCost>,
    /// The training loop with the chain on, when run.
    pub training: Option<TrainingFigures>,
}

impl fmt::Display for BenchReport {
    /// One line per figure, as `niftyhost bench` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decode;
        writeln!(f, "window {}³, batch {}, {} loader threads", self.window, self.batch_size, self.threads)?;
        writeln!(f, "decode {}: {:.1} ms ({:.0} Mvoxel/s)", d.file.display(), d.milliseconds, d.megavoxels_per_second)?;
        for s in &self.samplers {
            writeln!(f, "{} sampler: {:.0} patches/s", s.sampler, s.patches_per_second)?;
        }
        if let Some(t) = &self.training {
            writeln!(
                f,
                "{} training: {:.3} s/iteration, data wait {:.2}%, host overhead {:.2}% (plugin forward/backward {:.3} s, optimiser {:.4} s per step)",
                t.network,
                t.seconds_per_iteration,
                100.0 * t.data_wait_share,
                100.0 * t.host_overhead_share,
                t.step_parts.plugin,
                t.step_parts.optimiser,
            )?;
        }
        if let Some(a) = &self.augmentation {
            for c in &a.costs {
                writeln!(f, "augmentation {} ({}³): {:.1} ms/window", c.name, c.edge, c.milliseconds)?;
            }
            if let Some(t) = &a.training {
                writeln!(
                    f,
                    "{} training with the default chain: {:.3} s/iteration, data wait {:.2}%",
                    t.network,
                    t.seconds_per_iteration,
                    100.0 * t.data_wait_share
                )?;
            }
        }
        Ok(())
    }
}

/// The default chain: flips, rotation, scaling and elastic deformation (composed, one
/// resampling; every window deformed), then bias field, gamma and Gaussian noise.
pub const DEFAULT_CHAIN: &[(&str, &str)] = &[
    ("training.random_flipping_axes", "[0, 1, 2]"),
    ("training.rotation_angle", "[-10.0, 10.0]"),
    ("training.scaling_percentage", "[-10.0, 10.0]"),
    ("training.do_elastic_deformation", "true"),
    ("training.deformation_sigma", "4.0"),
    ("training.proportion_to_deform", "1.0"),
    ("training.bias_field_range", "[-0.3, 0.3]"),
    (
        "training.augmentation",
        "[{name = \"gamma\", probability = 0.5}, {name = \"gaussian_noise\", probability = 0.5, params = {std_range = [0.0, 0.1]}}]",
    ),
];

/// Each component alone, every random part forced on.
const COMPONENTS: &[(&str, &str)] = &[
    ("flip", r#"{"flip_probability": 1.0}"#),
    ("rotation", r#"{"rotation_angle": [-10.0, 10.0]}"#),
    ("scaling", r#"{"scaling_percentage": [-10.0, 10.0]}"#),
    ("elastic", r#"{"deformation_sigma": 4.0, "proportion_to_deform": 1.0}"#),
    (
        "spatial",
        r#"{"random_flipping_axes": [0, 1, 2], "rotation_angle": [-10.0, 10.0], "scaling_percentage": [-10.0, 10.0], "do_elastic_deformation": true, "deformation_sigma": 4.0, "proportion_to_deform": 1.0}"#,
    ),
    ("bias_field", r#"{"bias_field_range": [-0.3, 0.3]}"#),
    ("gamma", "{}"),
    ("gaussian_noise", "{}"),
    ("gaussian_blur", r#"{"sigma_range": [0.5, 1.5]}"#),
    ("contrast_brightness", "{}"),
];

/// Median milliseconds of `f(seed)` over `reps` seeds, after one warm-up call (the
/// median, not the mean: a shared machine's load spikes hit single calls).
fn median_ms(reps: u64, mut f: impl FnMut(u64) -> Result<(), EngineError>) -> Result<f64, EngineError> {
    f(u64::MAX)?;
    let mut times = Vec::with_capacity(reps as usize);
    for seed in 0..reps {
        let started = Instant::now();
        f(seed)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn augmentation(opts: &BenchOptions, registry: &Registry) -> Result<AugmentFigures, EngineError> {
    use abi_stable::std_types::ROption;
    use niftyhost_plugin_api::{RTensor, Spacing};
    use tch::{Kind, Tensor};

    let chain_keys: Vec<(String, String)> = DEFAULT_CHAIN.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let s = settings(opts, "uniform", DEFAULT_CHAIN)?;
    let margin = (opts.window as f64 * s.training.augmentation_margin).round() as usize;
    let subjects = training_subjects(&s, Path::new("."))?;
    let sampler = training_sampler(&s, subjects.train)?;
    let batch = sampler.batch(0)?;
    let w = opts.window as i64;
    let per = (w * w * w) as usize;
    let image = Tensor::from_slice(&batch.images[..per]).view([1, w, w, w]);
    let label = Tensor::from_slice(&batch.labels[..per]).view([1, w, w, w]).to_kind(Kind::Int64);
    let spacing = Spacing([1.0; 3]);
    let reps = 15;
    let mut costs = Vec::new();
    for (name, json) in COMPONENTS {
        let params: serde_json::Value = serde_json::from_str(json).map_err(|e| EngineError::Other(e.to_string()))?;
        let component = registry.new_augmentation(name, &params)?;
        let (img, lab) = (RTensor::from_tch(image.shallow_clone()), RTensor::from_tch(label.shallow_clone()));
        // As in the loader threads: one libtorch thread per call.
        let ms = median_ms(reps, |seed| {
            with_one_torch_thread(|| component.apply(&img, ROption::RSome(&lab), spacing, seed))
                .into_result()
                .map(drop)
                .map_err(|e| EngineError::Other(format!("augmentation `{name}`: {e}")))
        })?;
        costs.push(AugmentCost { name: name.to_string(), params, edge: opts.window, milliseconds: ms });
    }
    let chain = AugmentationChain::from_settings(&s, registry)?
        .ok_or_else(|| EngineError::Other("the default augmentation chain is empty".into()))?;
    let params = serde_json::to_value(crate::config::augmentation::chain(&s.training)).unwrap_or_default();
    for edge in [opts.window, opts.window + 2 * margin] {
        let e = edge as i64;
        let big_image = image.pad([0, e - w, 0, e - w, 0, e - w], "replicate", None);
        let big_label = label
            .to_kind(Kind::Float)
            .unsqueeze(0)
            .pad([0, e - w, 0, e - w, 0, e - w], "replicate", None)
            .squeeze_dim(0)
            .to_kind(Kind::Int64);
        let ms = median_ms(reps, |seed| {
            let _augmented =
                chain.apply(big_image.shallow_clone(), big_label.shallow_clone(), spacing.0, s.system.seed, seed)?;
            Ok(())
        })?;
        costs.push(AugmentCost { name: "chain".into(), params: params.clone(), edge, milliseconds: ms });
    }
    let training =
        if opts.train_iterations == 0 { None } else { Some(train_unet3d(opts, registry, "augmented", DEFAULT_CHAIN)?) };
    Ok(AugmentFigures { chain: chain_keys, costs, training })
}

/// The unet3d training loop's figures, with `extra` keys, in scratch folder `name`.
fn train_unet3d(
    opts: &BenchOptions,
    registry: &Registry,
    name: &str,
    extra: &[(&str, &str)],
) -> Result<TrainingFigures, EngineError> {
    let iterations = opts.train_iterations.to_string();
    let mut keys: Vec<(&str, &str)> = vec![
        ("network.name", "\"unet3d\""),
        ("training.loss", "\"dice_ce\""),
        ("training.max_iter", &iterations),
        ("training.save_every_n", &iterations),
        ("training.log_every_n", "1"),
    ];
    keys.extend_from_slice(extra);
    let mut s = settings(opts, "uniform", &keys)?;
    s.system.model_dir = opts.scratch.join(name);
    let report = trainer::train(&s, registry, Path::new("."))?;
    Ok(TrainingFigures {
        network: s.network.name.clone(),
        seconds_per_iteration: report.seconds_per_iteration,
        data_wait_share: report.data_wait_share,
        host_overhead_share: report.step_parts.host_overhead_share,
        step_parts: report.step_parts,
    })
}

fn settings(opts: &BenchOptions, sampling: &str, extra: &[(&str, &str)]) -> Result<Settings, EngineError> {
    let d = toml::Value::String(opts.data_dir.display().to_string()).to_string();
    let m = toml::Value::String(opts.scratch.join(sampling).display().to_string()).to_string();
    let w = opts.window;
    let mut keys: Vec<(String, String)> = vec![
        ("system.model_dir".into(), m),
        ("system.loader_threads".into(), opts.threads.to_string()),
        ("input.t1.path_to_search".into(), d.clone()),
        ("input.t1.filename_contains".into(), "[\"t1_\"]".into()),
        ("input.label.path_to_search".into(), d),
        ("input.label.filename_contains".into(), "[\"tissue_\"]".into()),
        ("segmentation.image".into(), "[\"t1\"]".into()),
        ("segmentation.num_classes".into(), "3".into()),
        ("network.batch_size".into(), opts.batch_size.to_string()),
        ("network.spatial_window_size".into(), format!("[{w}, {w}, {w}]")),
        ("network.window_sampling".into(), format!("\"{sampling}\"")),
    ];
    keys.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let cli = keys.into_iter().map(|(k, v)| ("niftyhost bench".to_owned(), k, v)).collect();
    Ok(load(None, &Overrides { cli, env: Vec::new() })?)
}

fn decode(file: &Path) -> Result<DecodeFigures, EngineError> {
    let mut best = f64::INFINITY;
    let mut voxels = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let v = read_volume(file)?;
        best = best.min(started.elapsed().as_secs_f64());
        voxels = v.data.len();
    }
    Ok(DecodeFigures {
        file: file.to_owned(),
        voxels,
        milliseconds: best * 1e3,
        megavoxels_per_second: voxels as f64 / best / 1e6,
    })
}

fn sampler_throughput(opts: &BenchOptions, sampling: &str) -> Result<SamplerFigures, EngineError> {
    let s = settings(opts, sampling, &[])?;
    let subjects = training_subjects(&s, Path::new("."))?;
    let sampler = Arc::new(training_sampler(&s, subjects.train)?);
    sampler.batch(0)?; // loads and indexes the volume: timed runs start from the cache
    let mut loader = Loader::spawn(Arc::clone(&sampler), 1, 1 + opts.batches, opts.threads, s.training.queue_length);
    let started = Instant::now();
    for _ in 0..opts.batches {
        let batch =
            loader.next_batch().ok_or_else(|| DataError::Invalid(vec!["the loader stopped early".into()]))??;
        loader.recycle(batch);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SamplerFigures {
        sampler: sampling.to_owned(),
        patches_per_second: (opts.batches as usize * opts.batch_size) as f64 / seconds,
    })
}

/// Runs every measurement.
///
/// # Errors
/// Missing data or plugins, or a failing job.
pub fn run(opts: &BenchOptions, registry: &Registry) -> Result<BenchReport, EngineError> {
    let decode = decode(&opts.data_dir.join("t1_1mm.nii.gz"))?;
    let samplers =
        ["uniform", "balanced"].iter().map(|s| sampler_throughput(opts, s)).collect::<Result<Vec<_>, _>>()?;
    let training = if opts.train_iterations == 0 { None } else { Some(train_unet3d(opts, registry, "uniform", &[])?) };
    let augmentation = if opts.augment { Some(augmentation(opts, registry)?) } else { None };
    Ok(BenchReport {
        window: opts.window,
        batch_size: opts.batch_size,
        threads: opts.threads,
        decode,
        samplers,
        training,
        augmentation,
    })
}

/// The process's peak resident memory so far, MB.
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes one plain struct that it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is a valid target.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    usage.ru_maxrss as f64 / 1024.0
}

/// Segments `t1_1mm.nii.gz` of the data folder with the default unet3d (seeded random
/// weights, one copy per worker), `opts.runs` times with `inference.crop_to_foreground`
/// and as many without, writing into the scratch folder. Run it in a process of its own
/// (after [`run`], the peak memory would be the data pipeline's).
///
/// # Errors
/// A missing image or plugin, or a failing inference.
pub fn run_inference(opts: &BenchOptions, registry: &Registry) -> Result<InferenceReport, EngineError> {
    let image = opts.data_dir.join("t1_1mm.nii.gz");
    let out = opts.scratch.join("bench_seg.nii.gz");
    std::fs::create_dir_all(&opts.scratch)
        .map_err(|e| EngineError::Other(format!("{}: {e}", opts.scratch.display())))?;
    let mut s = settings(
        opts,
        "uniform",
        &[
            ("network.name", "\"unet3d\""),
            ("network.whitening", "true"),
            ("inference.overlap", "0.25"),
            ("inference.batch_size", "2"),
        ],
    )?;
    // The crop changes which windows run, not the models: one predictor serves both.
    let options = InferenceOptions::from_settings(&s)?;
    // The benchmark image is one 3D T1.
    let channels = crate::data::ChannelLayout::one_per_section(&s.segmentation.image);
    let mut sets = (0..options.workers.max(1))
        .map(|_| {
            tch::manual_seed(s.system.seed as i64);
            Model::build(registry, &s, channels.clone(), tch::Device::Cpu).map(|m| vec![m])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let models = sets.remove(0);
    let mut predictor = inference::with_options(models, sets, &options)?;
    let mut runs = Vec::new();
    for crop in [true, false] {
        s.inference.crop_to_foreground = crop;
        let mut best: Option<inference::Segmented> = None;
        for _ in 0..opts.runs.max(1) {
            let done = inference::infer_files(
                &s,
                &mut predictor,
                Preparation::unlearned(&s),
                std::slice::from_ref(&image),
                &out,
                tch::Device::Cpu,
            )?;
            if best.as_ref().is_none_or(|b| done.seconds < b.seconds) {
                best = Some(done);
            }
        }
        if let Some(b) = best {
            runs.push(InferenceRun {
                crop_to_foreground: crop,
                windows: b.windows,
                seconds: b.seconds,
                network_seconds: b.network_seconds,
            });
        }
    }
    let dims = read_volume(&out)?.dims;
    Ok(InferenceReport {
        image,
        dims,
        network: s.network.name.clone(),
        window: options.tiling.window[0],
        overlap: options.tiling.overlap,
        batch_size: options.tiling.batch_size,
        workers: options.workers,
        precision: s.inference.precision.to_string(),
        best_of: opts.runs.max(1),
        runs,
        peak_rss_mb: peak_rss_mb(),
    })
}
