//! Fallible tensor operations on what plugins return and on device transfers: tch's
//! `f_*` functions with errors that name the plugin or the data and the operation, so a
//! loss of the wrong shape, a loss without gradient or a device out of memory ends a job
//! with an error instead of a panic.

use niftyhost_plugin_api::PluginError;
use tch::{Device, TchError, Tensor};

use super::EngineError;

/// A libtorch error as an engine error saying what was being done.
pub fn torch_error(doing: impl std::fmt::Display) -> impl FnOnce(TchError) -> EngineError {
    move |e| EngineError::Other(format!("{doing}: {e}"))
}

/// `t` on `device` (itself when it is there already).
///
/// # Errors
/// The transfer fails (e.g. the device is out of memory), naming `what` and the device.
pub fn to_device(t: &Tensor, device: Device, what: &str) -> Result<Tensor, EngineError> {
    t.f_to_device(device).map_err(torch_error(format_args!("moving {what} to {device:?}")))
}

fn loss_error(name: &str, doing: &str, message: String) -> EngineError {
    EngineError::Plugin { context: format!("loss `{name}` {doing}"), error: PluginError::new(message) }
}

/// The value of a loss plugin's result, checked to be a scalar (0-dim or one element)
/// and, when `trained`, to carry a gradient back to the network.
///
/// # Errors
/// A loss of another shape, a detached loss when `trained`, or a value that cannot be
/// read; each names the loss.
pub fn loss_value(loss: &Tensor, name: &str, trained: bool) -> Result<f64, EngineError> {
    if loss.numel() != 1 {
        return Err(loss_error(
            name,
            "returned",
            format!("a tensor of shape {:?}, expected a scalar (0-dim or one element)", loss.size()),
        ));
    }
    if trained && !loss.requires_grad() {
        return Err(loss_error(
            name,
            "returned",
            "a loss without gradient (detached from the network's output, or computed under no_grad): \
             the network cannot be trained through it"
                .to_owned(),
        ));
    }
    loss.f_double_value(&[]).map_err(|e| loss_error(name, "reading its value", e.to_string()))
}

/// Backpropagates a loss checked by [`loss_value`], scaled by `scale`.
///
/// # Errors
/// libtorch refuses the backward pass (e.g. out of memory), naming the loss.
pub fn backward(loss: &Tensor, scale: f64, name: &str) -> Result<(), EngineError> {
    loss.f_mul_scalar(scale)
        .and_then(|scaled| scaled.f_backward())
        .map_err(|e| loss_error(name, "backward", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn a_vector_or_detached_loss_is_an_error_naming_the_loss() {
        let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let vector = x.sum_dim_intlist([1].as_slice(), false, Kind::Float);
        let err = loss_value(&vector, "per_window", true).unwrap_err().to_string();
        assert_eq!(err, "loss `per_window` returned: a tensor of shape [2], expected a scalar (0-dim or one element)");
        let detached = x.sum(Kind::Float).detach();
        let err = loss_value(&detached, "detached", true).unwrap_err().to_string();
        assert!(err.starts_with("loss `detached` returned: a loss without gradient"), "{err}");
        // Without training (validation), a detached scalar is fine; so is a [1] tensor.
        assert_eq!(loss_value(&detached, "detached", false).unwrap(), 6.0);
        let one = x.sum(Kind::Float).reshape([1]);
        assert_eq!(loss_value(&one, "one", true).unwrap(), 6.0);
        backward(&one, 0.5, "one").unwrap();
        assert_eq!(Vec::<f32>::try_from(x.grad().view([-1])).unwrap(), vec![0.5; 6]);
    }
}
