//! Down- and up-sampling by an integer factor.

use tch::nn;
use tch::Tensor;

use crate::{error, Conv, ConvConfig, Result};

/// How to down-sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownKind {
    /// A learned convolution of kernel `kernel` and stride `factor`.
    StridedConv,
    /// Max pooling over `factor`-sized cells.
    MaxPool,
    /// Average pooling over `factor`-sized cells.
    AvgPool,
}

/// A down-sampling layer's settings.
#[derive(Debug, Clone, Copy)]
pub struct DownsampleConfig {
    /// 2 or 3.
    pub spatial_dims: usize,
    /// Which operation.
    pub kind: DownKind,
    /// Down-sampling factor per axis.
    pub factor: i64,
    /// The strided convolution's settings (kernel, bias); stride is `factor`.
    pub conv: ConvConfig,
}

impl DownsampleConfig {
    /// Pooling (`MaxPool` or `AvgPool`) by `factor`, or a strided convolution with kernel
    /// `factor` and bias.
    pub fn new(spatial_dims: usize, kind: DownKind, factor: i64) -> DownsampleConfig {
        DownsampleConfig { spatial_dims, kind, factor, conv: ConvConfig::new(spatial_dims, factor) }
    }

    /// Creates the layer (a strided convolution's weights under `p`).
    ///
    /// # Errors
    /// A factor below 1; see [`ConvConfig::init`].
    pub fn init(&self, p: &nn::Path, in_channels: i64, out_channels: i64) -> Result<Downsample> {
        if self.factor < 1 {
            return Err(error(format!("down-sampling factor must be positive, got {}", self.factor)));
        }
        Ok(match self.kind {
            DownKind::StridedConv => Downsample::Conv(
                ConvConfig { spatial_dims: self.spatial_dims, stride: self.factor, ..self.conv }.init(
                    p,
                    in_channels,
                    out_channels,
                )?,
            ),
            DownKind::MaxPool | DownKind::AvgPool if in_channels != out_channels => {
                return Err(error(format!("pooling keeps the channels, asked for {in_channels}→{out_channels}")))
            }
            kind => Downsample::Pool { kind, factor: self.factor, spatial_dims: self.spatial_dims },
        })
    }
}

/// A layer made by [`DownsampleConfig::init`].
#[derive(Debug)]
pub enum Downsample {
    /// A strided convolution.
    Conv(Conv),
    /// Pooling.
    Pool {
        /// Max or average.
        kind: DownKind,
        /// Cell size.
        factor: i64,
        /// 2 or 3.
        spatial_dims: usize,
    },
}

impl Downsample {
    /// Parameter-free pooling (`MaxPool` or `AvgPool`; a `StridedConv` kind means
    /// average pooling) over `factor`-sized cells.
    pub fn pool(spatial_dims: usize, kind: DownKind, factor: i64) -> Downsample {
        let kind = if kind == DownKind::MaxPool { kind } else { DownKind::AvgPool };
        Downsample::Pool { kind, factor: factor.max(1), spatial_dims }
    }

    /// Down-samples.
    ///
    /// # Shapes
    /// `[N, C_in, *S]` → `[N, C_out, *S / factor]` (rounded down for pooling)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Downsample::Conv(conv) => conv.forward(x),
            Downsample::Pool { kind, factor, spatial_dims } => {
                let (k, zero, one) = (vec![*factor; *spatial_dims], vec![0; *spatial_dims], vec![1; *spatial_dims]);
                match (kind, spatial_dims) {
                    (DownKind::MaxPool, 2) => x.max_pool2d(&k, &k, &zero, &one, false),
                    (DownKind::MaxPool, _) => x.max_pool3d(&k, &k, &zero, &one, false),
                    (_, 2) => x.avg_pool2d(&k, &k, &zero, false, true, None),
                    _ => x.avg_pool3d(&k, &k, &zero, false, true, None),
                }
            }
        }
    }
}

/// How to up-sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpKind {
    /// A learned transposed convolution of kernel `kernel` and stride `factor`.
    TransposedConv,
    /// (Tri/bi)linear interpolation.
    Linear,
    /// Nearest neighbour: each voxel repeated `factor` times per axis.
    Nearest,
}

/// An up-sampling layer's settings.
#[derive(Debug, Clone, Copy)]
pub struct UpsampleConfig {
    /// 2 or 3.
    pub spatial_dims: usize,
    /// Which operation.
    pub kind: UpKind,
    /// Up-sampling factor per axis.
    pub factor: i64,
    /// The transposed convolution's settings (kernel, bias); stride is `factor`.
    pub conv: ConvConfig,
}

impl UpsampleConfig {
    /// Interpolation by `factor`, or a transposed convolution with kernel `factor` and
    /// bias.
    pub fn new(spatial_dims: usize, kind: UpKind, factor: i64) -> UpsampleConfig {
        UpsampleConfig { spatial_dims, kind, factor, conv: ConvConfig::new(spatial_dims, factor) }
    }

    /// Creates the layer (a transposed convolution's weights under `p`).
    ///
    /// # Errors
    /// A factor below 1; interpolation asked to change the channels; see
    /// [`ConvConfig::init`].
    pub fn init(&self, p: &nn::Path, in_channels: i64, out_channels: i64) -> Result<Upsample> {
        if self.factor < 1 {
            return Err(error(format!("up-sampling factor must be positive, got {}", self.factor)));
        }
        Ok(match self.kind {
            UpKind::TransposedConv => {
                Upsample::Conv(
                    ConvConfig { spatial_dims: self.spatial_dims, stride: self.factor, ..self.conv }
                        .transposed()
                        .init(p, in_channels, out_channels)?,
                )
            }
            _ if in_channels != out_channels => {
                return Err(error(format!("interpolation keeps the channels, asked for {in_channels}→{out_channels}")))
            }
            kind => Upsample::Interpolate { kind, factor: self.factor },
        })
    }
}

/// A layer made by [`UpsampleConfig::init`].
#[derive(Debug)]
pub enum Upsample {
    /// A transposed convolution.
    Conv(Conv),
    /// Interpolation.
    Interpolate {
        /// Linear or nearest.
        kind: UpKind,
        /// Factor per axis.
        factor: i64,
    },
}

impl Upsample {
    /// Parameter-free interpolation (`Linear` or `Nearest`; a `TransposedConv` kind means
    /// linear) by `factor`.
    pub fn interpolate(kind: UpKind, factor: i64) -> Upsample {
        let kind = if kind == UpKind::Nearest { kind } else { UpKind::Linear };
        Upsample::Interpolate { kind, factor: factor.max(1) }
    }

    /// Up-samples.
    ///
    /// # Shapes
    /// `[N, C_in, *S]` → `[N, C_out, *S × factor]`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Upsample::Conv(conv) => conv.forward(x),
            Upsample::Interpolate { kind: UpKind::Nearest, factor } => {
                (2..x.dim() as i64).fold(x.shallow_clone(), |h, axis| h.repeat_interleave_self_int(*factor, axis, None))
            }
            Upsample::Interpolate { factor, .. } => {
                let size: Vec<i64> = x.size()[2..].iter().map(|s| s * factor).collect();
                resize_linear(x, &size)
            }
        }
    }
}

/// (Bi/tri)linear resize of the spatial axes to `size` (half-pixel centres, as
/// TensorFlow's `resize_images` and PyTorch's `align_corners=False`).
///
/// # Shapes
/// `[N, C, *S]` → `[N, C, *size]`
pub fn resize_linear(x: &Tensor, size: &[i64]) -> Tensor {
    if x.size()[2..] == *size {
        return x.shallow_clone();
    }
    match size.len() {
        2 => x.upsample_bilinear2d(size, false, None, None),
        _ => x.upsample_trilinear3d(size, false, None, None, None),
    }
}
