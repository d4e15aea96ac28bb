//! `niftyhost bench`: throughput of the data pipeline on the 1 mm MNI152 tissue task
//! (`data/mni152_1mm`): NIfTI decoding, windows per second of the uniform and balanced
//! samplers from cached volumes, and the share of a real training loop spent waiting
//! for data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::{load, Overrides, Settings};
use crate::data::phases::training_subjects;
use crate::data::{training_sampler, DataError, Loader};
use crate::engine::{trainer, EngineError};
use crate::io::read_volume;
use crate::plugins::Registry;

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
    let training = if opts.train_iterations == 0 {
        None
    } else {
        let iterations = opts.train_iterations.to_string();
        let s = settings(
            opts,
            "uniform",
            &[
                ("network.name", "\"unet3d\""),
                ("training.loss", "\"dice_ce\""),
                ("training.max_iter", &iterations),
                ("training.save_every_n", &iterations),
                ("training.log_every_n", "1"),
            ],
        )?;
        let report = trainer::train(&s, registry, Path::new("."))?;
        Some(TrainingFigures {
            network: s.network.name.clone(),
            seconds_per_iteration: report.seconds_per_iteration,
            data_wait_share: report.data_wait_share,
            host_overhead_share: report.step_parts.host_overhead_share,
            step_parts: report.step_parts,
        })
    };
    Ok(BenchReport {
        window: opts.window,
        batch_size: opts.batch_size,
        threads: opts.threads,
        decode,
        samplers,
        training,
    })
}
