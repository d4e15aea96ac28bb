//! Fitting the inference window to the network before any volume is read: one forward
//! pass of a zero window (batch 1) shows whether the network takes it. A window it does
//! not take (a size its downsampling cannot divide, as in NiftyNet's own
//! `unet_config.ini` and `vnet_config.ini`) is enlarged as little as it takes: to the
//! next multiple of 2, 4, 8, … up to the divisor the network trained with
//! ([`Tiling::full_extent_multiple`]), the first the network takes, keeping the border,
//! with a warning; a window no such enlargement fixes is reported with the
//! network's own error, before any volume is read. A window the network takes is never
//! changed.

use tch::{Device, Kind, Tensor};

use super::super::EngineError;
use super::pipeline::{check_output, Target};
use super::predictor::{first_line, Predictor};
use super::{InferenceOptions, Tiling};

/// The configuration key of the inference window.
const WINDOW_KEY: &str = "inference.spatial_window_size";

/// The tiling of `options` with a window the predictor's models take, probed with a zero
/// window of `channels` on `device`: the configured one when it runs, else the first of
/// its [`enlargements`] that runs (the border stays, so the kept centre grows), with a warning
/// naming [`WINDOW_KEY`], both windows and the network's error. Full-extent axes (0) are
/// probed with `train_window`'s size and stay 0. A window that is the training window
/// (full-extent axes aside) is taken without a probe: the network trained on it.
///
/// With `inference.precision = "auto"` the windows are first probed without the fall-back
/// to float32, so that a window the network does not take is not mistaken for a network
/// that does not run in bf16.
///
/// # Shapes
/// Probes are `[1, channels, wk, wj, wi]`.
///
/// # Errors
/// The error of the configured window when neither it nor the enlarged one runs, a
/// plugin's with the windows tried named; an output the inference cannot use (a class
/// count other than `options.num_classes`, an output larger than the window or smaller
/// by more than the border).
pub fn fit_window(
    predictor: &mut Predictor,
    options: &InferenceOptions,
    channels: usize,
    train_window: [usize; 3],
    device: Device,
) -> Result<Tiling, EngineError> {
    let tiling = options.tiling;
    let probed = |window: [usize; 3]| -> [usize; 3] {
        std::array::from_fn(|a| if window[a] == 0 { train_window[a] } else { window[a] })
    };
    if probed(tiling.window) == train_window {
        return Ok(tiling);
    }
    let multiple = tiling.full_extent_multiple.map(|m| m.max(1));
    let candidates = enlargements(tiling.window, multiple);
    let target = Target { device, num_classes: options.num_classes, border: tiling.border };
    let rounds: &[bool] = if predictor.may_fall_back_to_fp32() { &[false, true] } else { &[false] };
    let mut first_error = None;
    for &fall_back in rounds {
        for &window in &candidates {
            match probe(predictor, probed(window), channels, target, fall_back) {
                Ok(()) if window == tiling.window => return Ok(tiling),
                Ok(()) => {
                    let reason = first_error.as_ref().map(reason).unwrap_or_default();
                    tracing::warn!(
                        key = WINDOW_KEY,
                        from = ?tiling.window,
                        to = ?window,
                        network = %network_name(predictor),
                        %reason,
                        "the network does not take the inference window (i, j, k; 0 = the volume's full extent): \
                         enlarged to the smallest window it takes among the multiples of powers of two up to \
                         {multiple:?}, the divisor of the training window `network.spatial_window_size` \
                         {train_window:?}; the border stays, so each window keeps more"
                    );
                    return Ok(Tiling { window, ..tiling });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let error = first_error.unwrap_or_else(|| EngineError::Other("no inference window was probed".into()));
    Err(naming_windows(error, tiling.window, probed(tiling.window), &candidates[1..]))
}

/// The windows to probe, smallest growth first: `window` itself, then `window` rounded up
/// on every axis to a multiple of 2, 4, 8, … (each axis at most to its `multiple`, the
/// training window's divisor), each distinct window once. Full-extent axes (0) stay 0.
fn enlargements(window: [usize; 3], multiple: [usize; 3]) -> Vec<[usize; 3]> {
    let mut windows = vec![window];
    let largest = multiple.iter().copied().max().unwrap_or(1);
    let mut step = 2;
    while step <= largest {
        let next: [usize; 3] = std::array::from_fn(|a| window[a].next_multiple_of(step.min(multiple[a])));
        if !windows.contains(&next) {
            windows.push(next);
        }
        step *= 2;
    }
    windows
}

/// Runs one zero window of `window` `(i, j, k)` through `predictor` and checks its output
/// as a batch's.
fn probe(
    predictor: &mut Predictor,
    window: [usize; 3],
    channels: usize,
    target: Target,
    fall_back: bool,
) -> Result<(), EngineError> {
    let [i, j, k] = window.map(|w| w as i64);
    let shape = [1, channels as i64, k, j, i];
    let x = Tensor::zeros(shape, (Kind::Float, target.device));
    let out = predictor.probe(&x, fall_back)?;
    check_output(&out.size(), &shape, target.num_classes, target.border).map(drop)
}

/// The name of the predictor's (first) network.
fn network_name(predictor: &Predictor) -> String {
    predictor.models.first().map_or_else(String::new, |m| m.name.clone())
}

/// Why a probe failed, in one line: the network's own message.
fn reason(error: &EngineError) -> String {
    match error {
        EngineError::Plugin { error, .. } => first_line(&error.message).to_owned(),
        other => other.to_string(),
    }
}

/// A plugin's `error` with the configured `window`, the one probed for it and the
/// `enlarged` windows tried added to what the host was doing.
fn naming_windows(error: EngineError, window: [usize; 3], probed: [usize; 3], enlarged: &[[usize; 3]]) -> EngineError {
    let EngineError::Plugin { context, error } = error else { return error };
    let probed = if probed == window { String::new() } else { format!(", probed as {probed:?}") };
    let tried = enlarged.iter().map(|w| format!(" or its enlargement {w:?}")).collect::<String>();
    EngineError::Plugin {
        context: format!("{context} on the inference window {window:?}{tried} (i, j, k; `{WINDOW_KEY}`{probed})"),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::enlargements;

    #[test]
    fn enlargements_grow_as_little_as_possible_first() {
        // 104 (NiftyNet's unet_config.ini) trained at 96 (divisor 32): 104 is already a
        // multiple of 2, 4 and 8, so 112 (16) then 128 (32).
        assert_eq!(enlargements([104, 104, 104], [32, 32, 32]), vec![[104; 3], [112; 3], [128; 3]]);
        // Full-extent axes stay 0; each axis stops at its own divisor.
        assert_eq!(enlargements([0, 0, 3], [32, 32, 4]), vec![[0, 0, 3], [0, 0, 4]]);
        assert_eq!(
            enlargements([20, 18, 24], [16, 16, 16]),
            vec![[20, 18, 24], [20, 20, 24], [24, 24, 24], [32, 32, 32]]
        );
    }
}
