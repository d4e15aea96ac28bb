//! `niftyhost-blocks`: the building blocks the bundled network plugins are written with,
//! in 2D and 3D (`spatial_dims`).
//!
//! - [`ConvConfig`] / [`Conv`]: a dimension-agnostic (transposed) convolution with
//!   same or valid padding, dilation and groups;
//! - [`ConvBlockConfig`] / [`ConvBlock`]: convolution, normalisation ([`NormKind`]) and
//!   activation ([`ActivationKind`]), in post- or pre-activation order;
//! - [`ResidualUnitConfig`] / [`ResidualUnit`]: convolution blocks with a shortcut;
//! - [`DownsampleConfig`] / [`UpsampleConfig`]: strided convolution, max or average
//!   pooling; transposed convolution, (tri)linear or nearest up-sampling;
//! - [`crop`]: centre crops, crop-and-concatenate, padding, running a valid-convolution
//!   network with same-size output;
//! - [`shape`]: input checks whose errors name the constraint, and slice folding for 2D
//!   networks on 3D windows;
//! - [`HighResNetConfig`]: HighRes3DNet's dilated residual stack (its plugin, and
//!   ScaleNet's front end);
//! - [`count`] and [`testing`]: parameter counts and shape tables for the plugins' tests.
//!
//! Siblings: `niftyhost-plugin-api` (the SDK the plugins export with) and the network
//! plugins under `plugins/` (`unet3d`, `highres3dnet`, `vnet`, `unet2d`, `deepmedic`,
//! `densevnet`, `scalenet`, `dynunet`, `toynet`, `example-net`).
//!
//! Every constructor takes the `nn::Path` first and returns `Result<_, PluginError>`,
//! so a bad configuration is an error from the plugin's `build`, never a panic.

mod activation;
mod conv;
pub mod count;
pub mod crop;
mod highres;
mod norm;
mod residual;
mod sampling;
pub mod shape;
pub mod testing;

pub use activation::{Activation, ActivationKind};
pub use conv::{Conv, ConvBlock, ConvBlockConfig, ConvConfig, ConvStack, Padding};
pub use highres::{HighResNet, HighResNetConfig, HighResVariant};
pub use niftyhost_plugin_api::sdk::{channels_last_3d, is_channels_last_3d};
pub use norm::{Norm, NormKind};
pub use residual::{ResidualUnit, ResidualUnitConfig, Shortcut};
pub use sampling::{resize_linear, DownKind, Downsample, DownsampleConfig, UpKind, Upsample, UpsampleConfig};

use niftyhost_plugin_api::sdk::Params;
use niftyhost_plugin_api::PluginError;

/// The result of building a block.
pub type Result<T> = std::result::Result<T, PluginError>;

pub(crate) fn error(message: impl Into<String>) -> PluginError {
    PluginError::new(message.into())
}

/// `spatial_dims` from a network's parameters (the host always sends it): 2 or 3.
///
/// # Errors
/// A value other than 2 or 3.
pub fn spatial_dims(params: &Params) -> Result<usize> {
    match params.int("spatial_dims")? {
        d @ (2 | 3) => Ok(d as usize),
        d => Err(error(format!("spatial_dims must be 2 or 3, got {d}"))),
    }
}

/// The normalisation named by string parameter `key`.
///
/// # Errors
/// A name [`NormKind::parse`] does not know.
pub fn norm_param(params: &Params, key: &str) -> Result<NormKind> {
    NormKind::parse(&params.string(key)?).map_err(|e| error(format!("parameter `{key}`: {e}")))
}

/// The activation named by string parameter `key`.
///
/// # Errors
/// A name [`ActivationKind::parse`] does not know.
pub fn activation_param(params: &Params, key: &str) -> Result<ActivationKind> {
    ActivationKind::parse(&params.string(key)?).map_err(|e| error(format!("parameter `{key}`: {e}")))
}

#[cfg(test)]
mod tests;
