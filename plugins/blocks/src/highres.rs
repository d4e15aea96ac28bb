//! HighRes3DNet (Li et al., IPMI 2017) as a reusable network body: the `highres3dnet`
//! plugin exposes it, and ScaleNet uses it as its front end.
//!
//! `conv_0` (3³) → three stages of three residual units (two pre-activation 3³
//! convolutions each, identity shortcut zero-padded to the new width) with 16, 32 and
//! 64 feature maps dilated by 1, 2 and 4 → head → class logits. Heads, as in NiftyNet:
//! - `Normal`: 1³ conv to 80 → 1³ classifier;
//! - `Small`: `conv_0` has stride 2; 3³ conv to 80 → 3³ transposed conv (stride 2) → 1³
//!   classifier;
//! - `Large`: 3³ conv to 64 → 1³ conv to 64 → 1³ classifier.

use tch::nn;
use tch::Tensor;

use crate::{
    error, ActivationKind, Conv, ConvBlock, ConvBlockConfig, ConvConfig, NormKind, ResidualUnit, ResidualUnitConfig,
    Result,
};

/// Which HighRes3DNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighResVariant {
    /// The paper's network.
    Normal,
    /// Stride-2 first convolution and a transposed convolution before the classifier.
    Small,
    /// An extra 3³ convolution in the head.
    Large,
}

impl HighResVariant {
    /// Parses `normal`, `small` or `large`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(name: &str) -> Result<HighResVariant> {
        match name {
            "normal" => Ok(HighResVariant::Normal),
            "small" => Ok(HighResVariant::Small),
            "large" => Ok(HighResVariant::Large),
            _ => Err(error(format!("HighRes3DNet variant must be normal, small or large, got \"{name}\""))),
        }
    }
}

/// HighRes3DNet's settings.
#[derive(Debug, Clone, Copy)]
pub struct HighResNetConfig {
    /// 2 or 3.
    pub spatial_dims: usize,
    /// Which variant.
    pub variant: HighResVariant,
    /// Normalisation of every block (the paper: batch).
    pub norm: NormKind,
    /// Activation of every block (the paper: PReLU).
    pub activation: ActivationKind,
}

/// Feature maps and dilation of the three residual stages.
const STAGES: [(i64, i64); 3] = [(16, 1), (32, 2), (64, 4)];
/// Residual units per stage.
const UNITS_PER_STAGE: usize = 3;

impl HighResNetConfig {
    /// Creates the network under `p` (`conv_0`, `res_<stage>_<unit>`, head layers
    /// `conv_1`, `conv_2`(, `deconv`, `conv_3`)).
    ///
    /// # Errors
    /// See [`ConvBlockConfig::init`].
    pub fn init(&self, p: &nn::Path, in_channels: i64, classes: i64) -> Result<HighResNet> {
        let dims = self.spatial_dims;
        let block = |kernel: i64| ConvBlockConfig::new(ConvConfig::new(dims, kernel), self.norm, self.activation);
        let first_stride = if self.variant == HighResVariant::Small { 2 } else { 1 };
        let conv_0 = block(3).with_conv(block(3).conv.stride(first_stride)).init(&(p / "conv_0"), in_channels, 16)?;
        let mut units = Vec::new();
        let mut width = 16;
        for (stage, (features, dilation)) in STAGES.into_iter().enumerate() {
            let dilated = block(3).with_conv(block(3).conv.dilation(dilation));
            let unit = ResidualUnitConfig::new(dilated.pre_activation(), &[3, 3]);
            for u in 0..UNITS_PER_STAGE {
                units.push(unit.init(&(p / format!("res_{}_{u}", stage + 1)), width, features)?);
                width = features;
            }
        }
        let classifier = |name: &str, c_in: i64| ConvConfig::new(dims, 1).init(&(p / name), c_in, classes);
        let (head, classifier) = match self.variant {
            HighResVariant::Normal => (vec![block(1).init(&(p / "conv_1"), 64, 80)?], classifier("conv_2", 80)?),
            HighResVariant::Small => {
                let deconv = block(3).with_conv(block(3).conv.stride(2).transposed());
                let head = vec![block(3).init(&(p / "conv_1"), 64, 80)?, deconv.init(&(p / "deconv"), 80, 80)?];
                (head, classifier("conv_2", 80)?)
            }
            HighResVariant::Large => {
                let head = vec![block(3).init(&(p / "conv_1"), 64, 64)?, block(1).init(&(p / "conv_2"), 64, 64)?];
                (head, classifier("conv_3", 64)?)
            }
        };
        Ok(HighResNet { conv_0, units, head, classifier })
    }
}

/// A network made by [`HighResNetConfig::init`].
#[derive(Debug)]
pub struct HighResNet {
    conv_0: ConvBlock,
    units: Vec<ResidualUnit>,
    head: Vec<ConvBlock>,
    classifier: Conv,
}

impl HighResNet {
    /// Class logits.
    ///
    /// # Shapes
    /// `[N, C, *S]` → `[N, K, *S]` (`Small`: `S` even)
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.conv_0.forward_t(x, train);
        for unit in &self.units {
            h = unit.forward_t(&h, train);
        }
        for block in &self.head {
            h = block.forward_t(&h, train);
        }
        self.classifier.forward(&h)
    }
}
