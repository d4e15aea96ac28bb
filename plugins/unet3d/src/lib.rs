//! `unet3d`: a compact 3D U-Net (Çiçek et al., "3D U-Net: Learning Dense Volumetric
//! Segmentation from Sparse Annotation", MICCAI 2016) with same-padded convolutions, so
//! the output window equals the input window.
//!
//! Each encoder level is two 3³ convolution → normalisation → ReLU blocks followed by a
//! 2³ max pool; the channel count doubles per level. Each decoder level upsamples with a
//! 2³ transposed convolution, concatenates the skip connection and applies two blocks. A
//! 1³ convolution maps to class logits.

use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "unet3d",
    version: env!("CARGO_PKG_VERSION"),
    description: "3D U-Net (Çiçek et al. 2016), same-padded",
    networks: &[NetworkDef {
        name: "unet3d",
        description: "3D U-Net with configurable depth, width and normalisation",
        params: &[
            Param {
                name: "base_channels",
                ty: ParamType::Int,
                default: "8",
                doc: "feature maps at the first level (doubled per level)",
            },
            Param { name: "depth", ty: ParamType::Int, default: "3", doc: "number of 2x down-samplings" },
            Param {
                name: "norm",
                ty: ParamType::String,
                default: "\"instance\"",
                doc: "normalisation: instance, batch or none",
            },
        ],
        build,
    }],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

enum Norm {
    Instance(nn::GroupNorm),
    Batch(nn::BatchNorm),
    Identity,
}

impl Norm {
    fn new(p: nn::Path, kind: &str, channels: i64) -> Norm {
        match kind {
            // Group norm with one group per channel is instance norm with affine weights.
            "instance" => Norm::Instance(nn::group_norm(p, channels, channels, Default::default())),
            "batch" => Norm::Batch(nn::batch_norm3d(p, channels, Default::default())),
            _ => Norm::Identity,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Norm::Instance(n) => n.forward_t(x, train),
            Norm::Batch(n) => n.forward_t(x, train),
            Norm::Identity => x.shallow_clone(),
        }
    }
}

/// Two (3³ convolution → normalisation → ReLU) blocks.
struct DoubleConv {
    convs: [nn::Conv3D; 2],
    norms: [Norm; 2],
}

impl DoubleConv {
    fn new(p: &nn::Path, norm: &str, c_in: i64, c_out: i64) -> DoubleConv {
        let same = nn::ConvConfig { padding: 1, bias: norm == "none", ..Default::default() };
        DoubleConv {
            convs: [nn::conv3d(p / "conv1", c_in, c_out, 3, same), nn::conv3d(p / "conv2", c_out, c_out, 3, same)],
            norms: [Norm::new(p / "norm1", norm, c_out), Norm::new(p / "norm2", norm, c_out)],
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.norms[0].forward_t(&x.apply(&self.convs[0]), train).relu();
        self.norms[1].forward_t(&x.apply(&self.convs[1]), train).relu()
    }
}

struct UNet3d {
    down: Vec<DoubleConv>,
    bottom: DoubleConv,
    up: Vec<(nn::ConvTranspose3D, DoubleConv)>,
    classifier: nn::Conv3D,
    depth: usize,
}

impl NetworkModel for UNet3d {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let factor = 1i64 << self.depth;
        match shape {
            [_, _, spatial @ ..] if spatial.len() == 3 => match spatial.iter().find(|&&s| s % factor != 0) {
                Some(s) => Err(format!(
                    "unet3d with depth {} needs each spatial size divisible by {factor}, got {s} in {shape:?}",
                    self.depth
                )),
                None => Ok(()),
            },
            _ => Err(format!("unet3d needs a [N, C, D, H, W] input, got {shape:?}")),
        }
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let mut skips = Vec::with_capacity(self.depth);
        let mut x = input.shallow_clone();
        for level in &self.down {
            let features = level.forward_t(&x, train);
            x = features.max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false);
            skips.push(features);
        }
        x = self.bottom.forward_t(&x, train);
        for ((upsample, block), skip) in self.up.iter().zip(skips.iter().rev()) {
            let up = x.apply(upsample);
            x = block.forward_t(&Tensor::cat(&[skip, &up], 1), train);
        }
        x.apply(&self.classifier)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let base = params.positive("base_channels")?;
    let depth = params.positive("depth")? as usize;
    let norm = params.choice("norm", &["instance", "batch", "none"])?;
    if depth > 6 {
        return Err(PluginError::new(format!("unet3d: depth must be at most 6, got {depth}")));
    }
    let width = |level: usize| base << level;
    let down = (0..depth)
        .map(|l| {
            DoubleConv::new(&(root / format!("down{l}")), &norm, if l == 0 { c_in } else { width(l - 1) }, width(l))
        })
        .collect();
    let bottom = DoubleConv::new(&(root / "bottom"), &norm, width(depth - 1), width(depth));
    let up = (0..depth)
        .rev()
        .map(|l| {
            let p = root / format!("up{l}");
            let cfg = nn::ConvTransposeConfig { stride: 2, ..Default::default() };
            let upsample = nn::conv_transpose3d(&p / "upsample", width(l + 1), width(l), 2, cfg);
            (upsample, DoubleConv::new(&p, &norm, 2 * width(l), width(l)))
        })
        .collect();
    let classifier = nn::conv3d(root / "classifier", width(0), classes, 1, Default::default());
    Ok(Box::new(UNet3d { down, bottom, up, classifier, depth }))
}
