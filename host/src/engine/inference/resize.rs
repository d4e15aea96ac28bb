//! Inference of a network trained on whole volumes resized to its window
//! (`network.window_sampling = "resize"`, NiftyNet's resize sampler, as in its
//! `densevnet_config.ini`): the network only ever saw volumes at that scale, so each
//! volume is resized (trilinear) to the inference window and run as one window, and the
//! class scores are resized back (trilinear) to the volume before they become labels or
//! probabilities, as NiftyNet's resize aggregator does. The border is not used: the whole
//! window is kept.

use super::super::tensors::torch_error;
use super::super::EngineError;
use super::{predict_volume, Aggregated, Aggregator, Blend, Device, InferenceOptions, Predicted, Predictor, Store};
use crate::data::sampler::resize_trilinear;
use crate::data::SubjectVolumes;

/// [`predict_volume`] for `options.resize_to_window`: the volume resized to the window,
/// one window run, its scores resized back and stored as `store` asks.
///
/// # Shapes
/// `volume.image`: `[C, k, j, i]` → `[C, wk, wj, wi]`; scores `[K, wk, wj, wi]` →
/// `[K, k, j, i]`
///
/// # Errors
/// As [`predict_volume`]; a network whose output is not its input's size.
pub(super) fn predict_resized(
    predictor: &mut Predictor,
    volume: &SubjectVolumes,
    options: &InferenceOptions,
    store: Store,
    device: Device,
) -> Result<Predicted, EngineError> {
    let tiling = options.tiling.for_volume(volume.dims);
    let window = tiling.window;
    let image = resize(&volume.image, volume.channels, volume.dims, window, "the image resized to the inference window")?;
    let resized = SubjectVolumes {
        id: volume.id.clone(),
        image,
        channels: volume.channels,
        dims: window,
        label: None,
        weights: None,
        loss_weight: None,
        reference: volume.reference.clone(),
        geometry: volume.geometry.clone(),
    };
    let one_window = InferenceOptions {
        tiling: super::Tiling { window, border: [0; 3], overlap: 0.0, ..tiling },
        blend: Blend::Constant,
        foreground_margin: None,
        resize_to_window: false,
        ..options.clone()
    };
    let predicted = predict_volume(predictor, &resized, &one_window, Store::Float, device)?;
    let Aggregated::Float(scores) = predicted.volume else {
        return Err(EngineError::Other("a float store gave no float scores".into()));
    };
    let classes = options.num_classes;
    let scores = resize(&scores, classes, window, volume.dims, "the class scores resized back to the volume")?;
    let voxels = volume.dims.iter().product::<usize>();
    let ones = crate::budget::try_filled(voxels, 1.0f32, &|| "the blend weights of the resized volume".to_owned())
        .map_err(|e| EngineError::Other(e.to_string()))?;
    let mut aggregator = Aggregator::new(volume.dims, classes, volume.dims, ones, store)?;
    aggregator.add([0; 3], &scores, volume.dims, [0; 3])?;
    Ok(Predicted { volume: aggregator.finish()?, ..predicted })
}

/// [`resize_trilinear`] (the training sampler's resize), the error naming `what`.
fn resize(values: &[f32], channels: usize, from: [usize; 3], to: [usize; 3], what: &str) -> Result<Vec<f32>, EngineError> {
    if from == to {
        return Ok(values.to_vec());
    }
    resize_trilinear(values, channels, from, to).map_err(torch_error(what))
}
