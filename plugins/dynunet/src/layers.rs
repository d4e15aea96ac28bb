//! The layers of a dynamic U-Net: 3D convolutions with a kernel and a stride per axis, and
//! the plain and residual blocks built from them.

use niftyhost_blocks::{Activation, ActivationKind, Norm, NormKind};
use niftyhost_plugin_api::PluginError;
use tch::nn::{self, Init};
use tch::Tensor;

/// A 3D convolution with bias, a kernel and a stride per axis, padded by `kernel / 2`
/// (same size at stride 1, `size / stride` for sizes divisible by the stride), or a
/// transposed convolution whose kernel equals its stride (exact up-sampling by it).
#[derive(Debug)]
pub struct Conv3 {
    weight: Tensor,
    bias: Tensor,
    stride: [i64; 3],
    padding: [i64; 3],
    transposed: bool,
}

impl Conv3 {
    fn init(
        p: &nn::Path,
        shape: Vec<i64>,
        fan_in: i64,
        stride: [i64; 3],
        padding: [i64; 3],
        transposed: bool,
    ) -> Conv3 {
        let weight = p.var("weight", &shape, nn::init::DEFAULT_KAIMING_UNIFORM);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let out = shape[usize::from(transposed)];
        let bias = p.var("bias", &[out], Init::Uniform { lo: -bound, up: bound });
        Conv3 { weight, bias, stride, padding, transposed }
    }

    /// A convolution `c_in → c_out` (`p.weight` `[c_out, c_in, kD, kH, kW]`, `p.bias`).
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64, kernel: [i64; 3], stride: [i64; 3]) -> Conv3 {
        let padding = kernel.map(|k| k / 2);
        let fan_in = c_in * kernel.iter().product::<i64>();
        Conv3::init(p, vec![c_out, c_in, kernel[0], kernel[1], kernel[2]], fan_in, stride, padding, false)
    }

    /// A transposed convolution `c_in → c_out` up-sampling by `stride` (`p.weight`
    /// `[c_in, c_out, sD, sH, sW]`, `p.bias`).
    pub fn up(p: &nn::Path, c_in: i64, c_out: i64, stride: [i64; 3]) -> Conv3 {
        let fan_in = c_in * stride.iter().product::<i64>();
        Conv3::init(p, vec![c_in, c_out, stride[0], stride[1], stride[2]], fan_in, stride, [0, 0, 0], true)
    }

    /// Convolves.
    ///
    /// # Shapes
    /// `[N, c_in, D, H, W]` → `[N, c_out, D / sD, H / sH, W / sW]` (transposed: `× s`)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.convolution(
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
            [1, 1, 1],
            self.transposed,
            [0, 0, 0],
            1,
        )
    }
}

/// How a level's convolutions are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two convolution → normalisation → activation units.
    Plain,
    /// Two convolutions (conv → norm → act → conv → norm) plus a shortcut (identity, or
    /// a strided 1³ convolution with bias when the maps or the size change), then the
    /// activation.
    Residual,
}

/// Normalisation and activation of every block.
#[derive(Debug, Clone, Copy)]
pub struct BlockStyle {
    /// Plain or residual.
    pub kind: BlockKind,
    /// The normalisation after each convolution.
    pub norm: NormKind,
    /// The activation.
    pub activation: ActivationKind,
}

/// A convolution followed by its normalisation.
#[derive(Debug)]
struct ConvNorm {
    conv: Conv3,
    norm: Norm,
}

impl ConvNorm {
    fn new(
        p: &nn::Path,
        norm: NormKind,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
    ) -> Result<ConvNorm, PluginError> {
        Ok(ConvNorm {
            conv: Conv3::new(&(p / "conv"), c_in, c_out, kernel, stride),
            norm: norm.init(&(p / "norm"), 3, c_out)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.norm.forward_t(&self.conv.forward(x), train)
    }
}

/// One level's block: its first convolution carries the level's stride.
#[derive(Debug)]
pub struct Block {
    first: ConvNorm,
    second: ConvNorm,
    /// `Some` for residual blocks: `None` inside is the identity.
    shortcut: Option<Option<Conv3>>,
    activation: Activation,
}

impl Block {
    /// A block `c_in → c_out` under `p` (`p.conv1`, `p.conv2`, and `p.shortcut` for a
    /// residual block that needs a projection).
    ///
    /// # Errors
    /// A normalisation that cannot take `c_out` maps.
    pub fn new(
        p: &nn::Path,
        style: BlockStyle,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
    ) -> Result<Block, PluginError> {
        let first = ConvNorm::new(&(p / "conv1"), style.norm, c_in, c_out, kernel, stride)?;
        let second = ConvNorm::new(&(p / "conv2"), style.norm, c_out, c_out, kernel, [1, 1, 1])?;
        let shortcut = (style.kind == BlockKind::Residual).then(|| {
            (c_in != c_out || stride != [1, 1, 1])
                .then(|| Conv3::new(&(p / "shortcut"), c_in, c_out, [1, 1, 1], stride))
        });
        Ok(Block { first, second, shortcut, activation: style.activation.init(&(p / "act"), c_out) })
    }

    /// Runs the block.
    ///
    /// # Shapes
    /// `[N, c_in, D, H, W]` → `[N, c_out, D / sD, H / sH, W / sW]`
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.activation.forward(&self.first.forward_t(x, train));
        let h = self.second.forward_t(&h, train);
        match &self.shortcut {
            None => self.activation.forward(&h),
            Some(None) => self.activation.forward(&(h + x)),
            Some(Some(projection)) => self.activation.forward(&(h + projection.forward(x))),
        }
    }
}
