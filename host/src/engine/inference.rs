//! Sliding-window inference: windows on a grid with overlap, probabilities averaged
//! where windows overlap, labels written as NIfTI in the input's geometry.

use std::path::{Path, PathBuf};

use niftyhost_plugin_api::ComponentKind;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::checkpoint;
use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::grid::corners;
use crate::data::phases::held_out_subjects;
use crate::data::prepare::Preparation;
use crate::data::window::extract;
use crate::data::{load_subject, LoadOptions, SubjectVolumes};
use crate::io::write_labels;
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
    /// Seconds for this subject.
    pub seconds: f64,
}

/// How the volume is tiled with windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tiling {
    /// Window fed to the network `(i, j, k)`.
    pub window: [usize; 3],
    /// Voxels dropped from each side of every output window (NiftyNet's `border`): only
    /// the central `window - 2·border` of each output is kept.
    pub border: [usize; 3],
    /// Fraction of a kept region shared with its neighbour.
    pub overlap: f64,
    /// Windows per forward pass.
    pub batch_size: usize,
}

/// Class probabilities of a whole volume, averaged over overlapping windows.
///
/// The kept central regions of the windows tile the volume; a window reaching past the
/// volume is filled with 0.
///
/// # Shapes
/// returns `[K, k, j, i]` in memory (`K = num_classes`)
///
/// # Errors
/// The plugin's error.
pub fn segment_volume(
    model: &mut Model,
    volume: &SubjectVolumes,
    tiling: &Tiling,
    device: tch::Device,
) -> Result<(Vec<f32>, usize), EngineError> {
    let [di, dj, dk] = volume.dims;
    let window = tiling.window;
    let [wi, wj, wk] = window;
    let [bi, bj, bk] = tiling.border;
    let kept: [usize; 3] = std::array::from_fn(|a| window[a] - 2 * tiling.border[a]);
    let voxels = di * dj * dk;
    // Corners of the kept regions; the windows start `border` earlier.
    let grid = corners(volume.dims, kept, tiling.overlap);
    let mut sum: Vec<f32> = Vec::new();
    let mut count = vec![0u16; voxels];
    let mut classes = 0usize;
    for chunk in grid.chunks(tiling.batch_size.max(1)) {
        let mut buf = Vec::with_capacity(chunk.len() * volume.channels * wi * wj * wk);
        for c in chunk {
            let start: [isize; 3] = std::array::from_fn(|a| c[a] as isize - tiling.border[a] as isize);
            extract(&volume.image, volume.dims, volume.channels, start, window, 0.0, &mut buf);
        }
        let shape = [chunk.len() as i64, volume.channels as i64, wk as i64, wj as i64, wi as i64];
        let input = Tensor::from_slice(&buf).view(shape).to_device(device);
        let probs = model
            .probabilities(&input)
            .map_err(|error| EngineError::Plugin { context: format!("network `{}` forward", model.name), error })?;
        let probs = probs.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let k = probs.size()[1] as usize;
        if probs.size()[2..] != shape[2..] {
            return Err(EngineError::Other(format!(
                "network `{}` returned windows of {:?} for inputs of {:?}; inference needs same-size outputs",
                model.name,
                &probs.size()[2..],
                &shape[2..]
            )));
        }
        if sum.is_empty() {
            classes = k;
            sum = vec![0.0; k * voxels];
        }
        let flat: Vec<f32> = Vec::<f32>::try_from(probs.view([-1])).map_err(|e| EngineError::Other(e.to_string()))?;
        let per_window = k * wi * wj * wk;
        for (n, c) in chunk.iter().enumerate() {
            let w = &flat[n * per_window..(n + 1) * per_window];
            for z in 0..kept[2].min(dk - c[2]) {
                for y in 0..kept[1].min(dj - c[1]) {
                    let row = ((c[2] + z) * dj + c[1] + y) * di + c[0];
                    let len = kept[0].min(di - c[0]);
                    for cls in 0..k {
                        let src = &w[((cls * wk + bk + z) * wj + bj + y) * wi + bi..][..len];
                        let dst = &mut sum[cls * voxels + row..][..len];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    }
                    count[row..row + len].iter_mut().for_each(|c| *c += 1);
                }
            }
        }
    }
    for cls in 0..classes {
        for (s, &c) in sum[cls * voxels..(cls + 1) * voxels].iter_mut().zip(&count) {
            *s /= c.max(1) as f32;
        }
    }
    Ok((sum, grid.len()))
}

/// Undoes the preparation on class probabilities of the prepared grid: labels on the
/// input file's grid, with the input's label values.
///
/// # Errors
/// A geometry that does not fit, or a label value that does not fit uint8.
fn labels_in_input_geometry(
    v: &SubjectVolumes,
    probs: &[f32],
    classes: usize,
    label_map: Option<&crate::preprocess::LabelMap>,
) -> Result<Vec<u8>, EngineError> {
    let fail = |e: crate::preprocess::PreprocessError| EngineError::Other(format!("subject `{}`: {e}", v.id));
    let probs = v.geometry.probabilities_to_input(probs, classes).map_err(fail)?;
    let mut labels = v.geometry.labels_to_original(argmax(&probs, classes)).map_err(fail)?;
    if let Some(map) = label_map {
        map.invert(&mut labels).map_err(fail)?;
    }
    labels
        .iter()
        .map(|&l| {
            u8::try_from(l as i64).map_err(|_| {
                EngineError::Other(format!("subject `{}`: label value {l} does not fit a uint8 segmentation", v.id))
            })
        })
        .collect()
}

/// The class of highest probability per voxel.
///
/// # Shapes
/// `probs`: `[K, voxels]` → `[voxels]`
pub fn argmax(probs: &[f32], classes: usize) -> Vec<f32> {
    let voxels = probs.len() / classes.max(1);
    (0..voxels)
        .map(|v| {
            let mut best = 0usize;
            for c in 1..classes {
                if probs[c * voxels + v] > probs[best * voxels + v] {
                    best = c;
                }
            }
            best as f32
        })
        .collect()
}

/// Builds the network and restores a checkpoint for inference (`-1` = latest).
///
/// # Errors
/// No such checkpoint, or one that does not fit the network.
pub fn model_for_inference(
    settings: &Settings,
    registry: &Registry,
    device: Device,
    iteration: i64,
) -> Result<(Model, PathBuf), EngineError> {
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
    let meta = checkpoint::read_meta(&weights)?;
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
    let mut model = Model::build(registry, settings, device)?;
    checkpoint::load_weights(&weights, &mut model)?;
    Ok((model, weights))
}

/// Segments every subject of the image sections and writes `<id><postfix>.nii.gz`.
///
/// # Errors
/// Bad data, no checkpoint, a plugin failure, or an unwritable output.
pub fn infer(settings: &Settings, registry: &Registry, base_dir: &Path) -> Result<Vec<Segmented>, EngineError> {
    let device = crate::torch::single_device(&settings.device_names())?;
    let (mut model, weights) = model_for_inference(settings, registry, device, settings.inference.inference_iter)?;
    tracing::info!(checkpoint = %weights.display(), "segmenting with");
    let subjects = held_out_subjects(settings, base_dir, false)?;
    let options = LoadOptions::new(settings, Preparation::saved(settings)?);
    let out_dir = settings.inference_dir();
    let progress = Progress::new(0, subjects.len() as u64, "infer");
    let mut out = Vec::new();
    for (n, subject) in subjects.iter().enumerate() {
        let started = std::time::Instant::now();
        // One subject in memory at a time.
        let v = load_subject(subject, &options)?;
        let inf = &settings.inference;
        let b = &inf.border;
        let tiling = Tiling {
            window: settings.inference_window(),
            border: [b[0], b[1], b[2]],
            overlap: inf.overlap,
            batch_size: inf.batch_size,
        };
        let (probs, windows) = segment_volume(&mut model, &v, &tiling, device)?;
        let labels = labels_in_input_geometry(
            &v,
            &probs,
            settings.segmentation.num_classes,
            options.preparation.label_map.as_deref(),
        )?;
        let output = out_dir.join(format!("{}{}.nii.gz", v.id, inf.output_postfix));
        write_labels(&output, &v.reference.header, v.reference.dims, &labels)?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(subject = %v.id, windows, seconds = format!("{seconds:.2}"), output = %output.display(), "segmented");
        progress.update(n as u64 + 1, v.id.clone());
        out.push(Segmented { subject: v.id.clone(), output, windows, seconds });
    }
    Ok(out)
}
