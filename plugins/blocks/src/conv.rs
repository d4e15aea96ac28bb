//! Convolutions in 2D or 3D, and the convolution → normalisation → activation block.

use tch::nn::{self, Init};
use tch::Tensor;

use crate::{error, Activation, ActivationKind, Norm, NormKind, Result};

/// How a convolution treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zero-padded so that the output size is `ceil(input / stride)` (or
    /// `input × stride` for a transposed convolution).
    Same,
    /// No padding: each side loses `dilation × (kernel − 1) / 2` voxels.
    Valid,
}

/// A convolution's settings; [`ConvConfig::init`] creates its weights.
#[derive(Debug, Clone, Copy)]
pub struct ConvConfig {
    /// 2 or 3.
    pub spatial_dims: usize,
    /// Kernel size along every spatial axis.
    pub kernel: i64,
    /// Stride along every spatial axis.
    pub stride: i64,
    /// Dilation along every spatial axis.
    pub dilation: i64,
    /// Border handling.
    pub padding: Padding,
    /// Channel groups (`in` and `out` channels must both be multiples).
    pub groups: i64,
    /// Whether the convolution adds a learned bias.
    pub bias: bool,
    /// A transposed convolution (up-sampling by `stride`).
    pub transposed: bool,
}

impl Default for ConvConfig {
    /// A same-padded 3³ convolution with bias, stride 1, in 3D.
    fn default() -> Self {
        ConvConfig {
            spatial_dims: 3,
            kernel: 3,
            stride: 1,
            dilation: 1,
            padding: Padding::Same,
            groups: 1,
            bias: true,
            transposed: false,
        }
    }
}

impl ConvConfig {
    /// A same-padded convolution of `kernel` in `spatial_dims` dimensions with bias.
    pub fn new(spatial_dims: usize, kernel: i64) -> ConvConfig {
        ConvConfig { spatial_dims, kernel, ..Default::default() }
    }

    /// The same settings with another stride.
    pub fn stride(self, stride: i64) -> ConvConfig {
        ConvConfig { stride, ..self }
    }

    /// The same settings with another dilation.
    pub fn dilation(self, dilation: i64) -> ConvConfig {
        ConvConfig { dilation, ..self }
    }

    /// The same settings with or without bias.
    pub fn bias(self, bias: bool) -> ConvConfig {
        ConvConfig { bias, ..self }
    }

    /// The same settings with another padding.
    pub fn padding(self, padding: Padding) -> ConvConfig {
        ConvConfig { padding, ..self }
    }

    /// The same settings with `groups` channel groups.
    pub fn groups(self, groups: i64) -> ConvConfig {
        ConvConfig { groups, ..self }
    }

    /// The same settings as a transposed convolution.
    pub fn transposed(self) -> ConvConfig {
        ConvConfig { transposed: true, ..self }
    }

    /// `(padding, output_padding)` for one axis.
    fn border(&self) -> Result<(i64, i64)> {
        let extent = self.dilation * (self.kernel - 1);
        match (self.padding, self.transposed) {
            (Padding::Valid, _) => Ok((0, 0)),
            // Output n·s: (n−1)s − 2p + extent + op + 1 = n·s.
            (Padding::Same, true) => {
                let need = extent + 1 - self.stride;
                if need < 0 {
                    return Err(error(format!(
                        "transposed convolution: kernel {} is smaller than stride {}",
                        self.kernel, self.stride
                    )));
                }
                let p = (need + 1) / 2;
                Ok((p, 2 * p - need))
            }
            (Padding::Same, false) if self.kernel == self.stride && self.dilation == 1 => Ok((0, 0)),
            (Padding::Same, false) if extent % 2 == 0 => Ok((extent / 2, 0)),
            (Padding::Same, false) => Err(error(format!(
                "same padding needs an odd kernel (or kernel = stride), got kernel {} stride {}",
                self.kernel, self.stride
            ))),
        }
    }

    /// Creates the weights (Kaiming-uniform, bias uniform in ±1/√fan-in) under `p`:
    /// `p.weight` `[out, in/groups, k, k(, k)]` (`[in, out/groups, ...]` when transposed)
    /// and `p.bias` `[out]`.
    ///
    /// # Errors
    /// `spatial_dims` other than 2 or 3, non-positive sizes, channels not divisible by
    /// `groups`, or a kernel that cannot be same-padded.
    pub fn init(&self, p: &nn::Path, in_channels: i64, out_channels: i64) -> Result<Conv> {
        if !matches!(self.spatial_dims, 2 | 3) {
            return Err(error(format!("convolution: spatial_dims must be 2 or 3, got {}", self.spatial_dims)));
        }
        if [in_channels, out_channels, self.kernel, self.stride, self.dilation, self.groups].iter().any(|&v| v < 1) {
            return Err(error(format!(
                "convolution: channels, kernel, stride, dilation and groups must be positive, got {in_channels}→{out_channels} {self:?}"
            )));
        }
        if in_channels % self.groups != 0 || out_channels % self.groups != 0 {
            return Err(error(format!(
                "convolution: {} groups do not divide {in_channels}→{out_channels} channels",
                self.groups
            )));
        }
        let (padding, output_padding) = self.border()?;
        let mut shape = if self.transposed {
            vec![in_channels, out_channels / self.groups]
        } else {
            vec![out_channels, in_channels / self.groups]
        };
        shape.extend(std::iter::repeat(self.kernel).take(self.spatial_dims));
        let weight = p.var("weight", &shape, nn::init::DEFAULT_KAIMING_UNIFORM);
        let fan_in = (in_channels / self.groups) * self.kernel.pow(self.spatial_dims as u32);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let bias = self.bias.then(|| p.var("bias", &[out_channels], Init::Uniform { lo: -bound, up: bound }));
        Ok(Conv { weight, bias, config: *self, padding, output_padding })
    }
}

/// A convolution made by [`ConvConfig::init`].
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    config: ConvConfig,
    padding: i64,
    output_padding: i64,
}

impl Conv {
    /// Convolves.
    ///
    /// # Shapes
    /// `[N, C_in, *S]` → `[N, C_out, *S']` with `S'` = `ceil(S / stride)` (same),
    /// `S − dilation·(kernel − 1)` (valid, stride 1) or `S × stride` (transposed, same).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let c = &self.config;
        let axes = |v: i64| vec![v; c.spatial_dims];
        x.convolution(
            &self.weight,
            self.bias.as_ref(),
            axes(c.stride),
            axes(self.padding),
            axes(c.dilation),
            c.transposed,
            axes(self.output_padding),
            c.groups,
        )
    }
}

/// Convolution, normalisation and activation; [`ConvBlockConfig::init`] builds one.
#[derive(Debug, Clone, Copy)]
pub struct ConvBlockConfig {
    /// The convolution.
    pub conv: ConvConfig,
    /// The normalisation.
    pub norm: NormKind,
    /// The activation.
    pub activation: ActivationKind,
    /// `false`: conv → norm → activation (post-activation, the default);
    /// `true`: norm → activation → conv (pre-activation, as in residual units of
    /// HighRes3DNet).
    pub pre_activation: bool,
}

impl ConvBlockConfig {
    /// A post-activation block; the convolution has a bias only without normalisation.
    pub fn new(conv: ConvConfig, norm: NormKind, activation: ActivationKind) -> ConvBlockConfig {
        ConvBlockConfig { conv: conv.bias(norm.wants_conv_bias()), norm, activation, pre_activation: false }
    }

    /// The same block in pre-activation order (norm → activation → conv).
    pub fn pre_activation(self) -> ConvBlockConfig {
        ConvBlockConfig { pre_activation: true, ..self }
    }

    /// The same block with another convolution.
    pub fn with_conv(self, conv: ConvConfig) -> ConvBlockConfig {
        ConvBlockConfig { conv, ..self }
    }

    /// The same block with another activation.
    pub fn with_activation(self, activation: ActivationKind) -> ConvBlockConfig {
        ConvBlockConfig { activation, ..self }
    }

    /// Creates the block's layers under `p` (`p.conv`, `p.norm`, `p.act`).
    ///
    /// # Errors
    /// See [`ConvConfig::init`] and [`NormKind::init`].
    pub fn init(&self, p: &nn::Path, in_channels: i64, out_channels: i64) -> Result<ConvBlock> {
        let normalised = if self.pre_activation { in_channels } else { out_channels };
        Ok(ConvBlock {
            conv: self.conv.init(&(p / "conv"), in_channels, out_channels)?,
            norm: self.norm.init(&(p / "norm"), self.conv.spatial_dims, normalised)?,
            activation: self.activation.init(&(p / "act"), normalised),
            pre_activation: self.pre_activation,
        })
    }
}

/// A block made by [`ConvBlockConfig::init`].
#[derive(Debug)]
pub struct ConvBlock {
    conv: Conv,
    norm: Norm,
    activation: Activation,
    pre_activation: bool,
}

impl ConvBlock {
    /// Runs the block.
    ///
    /// # Shapes
    /// As [`Conv::forward`].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if self.pre_activation {
            self.conv.forward(&self.activation.forward(&self.norm.forward_t(x, train)))
        } else {
            // The normalised maps are a fresh tensor that no backward pass reads (the
            // norms and the convolution keep their inputs): outside training, ReLU runs
            // in place. The convolution's maps go before the activation's are made (in
            // training the norm's backward pass keeps them anyway).
            let convolved = self.conv.forward(x);
            let normalised = self.norm.forward_t(&convolved, train);
            drop(convolved);
            self.activation.forward_owned(normalised, !train)
        }
    }
}

/// Convolution blocks applied in turn, named `p.conv1`, `p.conv2`, … (U-Net's double
/// convolution, DeepMedic's pathways).
#[derive(Debug)]
pub struct ConvStack(Vec<ConvBlock>);

impl ConvStack {
    /// One block per step of `channels` (`channels[0]` in, then each block's out).
    ///
    /// # Errors
    /// Fewer than two channel counts; see [`ConvBlockConfig::init`].
    pub fn new(p: &nn::Path, block: ConvBlockConfig, channels: &[i64]) -> Result<ConvStack> {
        if channels.len() < 2 {
            return Err(error("a convolution stack needs input and output channels"));
        }
        let blocks = channels
            .windows(2)
            .enumerate()
            .map(|(i, c)| block.init(&(p / format!("conv{}", i + 1)), c[0], c[1]))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConvStack(blocks))
    }

    /// Runs the blocks.
    ///
    /// # Shapes
    /// `[N, channels[0], *S]` → `[N, channels[last], *S']`
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_owned(x.shallow_clone(), train)
    }

    /// Runs the blocks on `x`, which goes as soon as the first block has run (unless the
    /// caller or a backward pass holds it too): each block's input is freed once its
    /// output is made.
    ///
    /// # Shapes
    /// As [`ConvStack::forward_t`].
    pub fn forward_owned(&self, x: Tensor, train: bool) -> Tensor {
        self.0.iter().fold(x, |h, b| b.forward_t(&h, train))
    }
}
