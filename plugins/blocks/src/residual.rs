//! Residual units: a chain of convolution blocks plus a shortcut.

use tch::nn;
use tch::Tensor;

use crate::{error, Conv, ConvBlock, ConvBlockConfig, ConvConfig, Result};

/// How the shortcut matches the main path's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// The input itself, zero-padded (or cut) to the output's channels: no parameters
    /// (NiftyNet's element-wise sum, used by HighRes3DNet).
    Identity,
    /// The input's channels repeated up to the output's (V-Net's first stage).
    Repeat,
    /// A learned 1×1(×1) convolution.
    Projection,
}

/// A residual unit's settings.
#[derive(Debug, Clone)]
pub struct ResidualUnitConfig {
    /// The block applied per layer (its kernel is replaced by `kernels[i]`).
    pub block: ConvBlockConfig,
    /// One kernel size per convolution of the main path.
    pub kernels: Vec<i64>,
    /// Whether the last block of a post-activation unit keeps its activation (V-Net
    /// activates after the sum instead).
    pub last_activation: bool,
    /// The shortcut.
    pub shortcut: Shortcut,
}

impl ResidualUnitConfig {
    /// Blocks of `kernels`, each activated, with an identity shortcut.
    pub fn new(block: ConvBlockConfig, kernels: &[i64]) -> ResidualUnitConfig {
        ResidualUnitConfig { block, kernels: kernels.to_vec(), last_activation: true, shortcut: Shortcut::Identity }
    }

    /// Creates the unit under `p` (`p.conv_<i>` per layer, `p.shortcut` if projected).
    /// The first layer maps `in_channels` → `out_channels`, the others keep
    /// `out_channels`.
    ///
    /// # Errors
    /// No kernels; [`Shortcut::Repeat`] with `out_channels` not a multiple of
    /// `in_channels`; see [`ConvBlockConfig::init`].
    pub fn init(&self, p: &nn::Path, in_channels: i64, out_channels: i64) -> Result<ResidualUnit> {
        if self.kernels.is_empty() {
            return Err(error("residual unit: needs at least one convolution"));
        }
        if self.shortcut == Shortcut::Repeat && out_channels % in_channels != 0 {
            return Err(error(format!("residual unit: cannot repeat {in_channels} channels into {out_channels}")));
        }
        let last = self.kernels.len() - 1;
        let blocks = self
            .kernels
            .iter()
            .enumerate()
            .map(|(i, &kernel)| {
                let mut block = self.block.with_conv(ConvConfig { kernel, ..self.block.conv });
                if i == last && !self.last_activation && !block.pre_activation {
                    block = block.with_activation(crate::ActivationKind::None);
                }
                block.init(&(p / format!("conv_{i}")), if i == 0 { in_channels } else { out_channels }, out_channels)
            })
            .collect::<Result<Vec<_>>>()?;
        let projection = match self.shortcut {
            Shortcut::Projection => Some(ConvConfig::new(self.block.conv.spatial_dims, 1).bias(false).init(
                &(p / "shortcut"),
                in_channels,
                out_channels,
            )?),
            _ => None,
        };
        Ok(ResidualUnit { blocks, projection, repeat: self.shortcut == Shortcut::Repeat, out_channels })
    }
}

/// A unit made by [`ResidualUnitConfig::init`].
#[derive(Debug)]
pub struct ResidualUnit {
    blocks: Vec<ConvBlock>,
    projection: Option<Conv>,
    repeat: bool,
    out_channels: i64,
}

impl ResidualUnit {
    /// The main path on `x` plus the shortcut of `x`.
    ///
    /// # Shapes
    /// `[N, C_in, *S]` → `[N, C_out, *S]` (same-padded, stride 1)
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_with_bypass(x, x, train)
    }

    /// The main path on `x` plus the shortcut of `bypass` (V-Net's decoder adds the
    /// up-sampled features, not the concatenation it convolves).
    ///
    /// # Shapes
    /// `x` `[N, C_in, *S]`, `bypass` `[N, C_b, *S]` → `[N, C_out, *S]`
    pub fn forward_with_bypass(&self, x: &Tensor, bypass: &Tensor, train: bool) -> Tensor {
        let main = self.blocks.iter().fold(x.shallow_clone(), |h, b| b.forward_t(&h, train));
        let shortcut = match &self.projection {
            Some(conv) => conv.forward(bypass),
            None if self.repeat => {
                let times = self.out_channels / bypass.size()[1];
                let mut reps = vec![1; bypass.dim()];
                reps[1] = times;
                bypass.repeat(reps.as_slice())
            }
            None => match_channels(bypass, self.out_channels),
        };
        main + shortcut
    }
}

/// `x` with its channels zero-padded or cut to `channels`.
///
/// # Shapes
/// `[N, C, *S]` → `[N, channels, *S]`
pub fn match_channels(x: &Tensor, channels: i64) -> Tensor {
    let c = x.size()[1];
    if c == channels {
        x.shallow_clone()
    } else if c > channels {
        x.narrow(1, 0, channels)
    } else {
        // constant_pad_nd pads the last axes first: zeros for every spatial axis, then
        // (0, channels − c) for the channel axis.
        let mut pad = vec![0; 2 * (x.dim() - 2)];
        pad.extend([0, channels - c]);
        x.constant_pad_nd(pad.as_slice())
    }
}
