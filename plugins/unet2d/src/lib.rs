//! `unet2d`: the 2D U-Net of Ronneberger et al. ("U-Net: Convolutional Networks for
//! Biomedical Image Segmentation", MICCAI 2015), laid out as NiftyNet's `UNet2D`.
//!
//! Five levels of two valid 3×3 convolutions (64, 128, 256, 512, 1024 maps by default),
//! 2×2 max pooling down, 2×2 transposed convolutions up, crop-and-concatenate skips, a
//! 1×1 classifier. Valid convolutions make the output 184 pixels smaller than the input,
//! and the input must be ≡ 12 (mod 16) and at least 188 (572 → 388 in the paper).
//!
//! With `pad_input` (the default) the network zero-pads its input so that the output has
//! the input's size, as the host's trainer and window aggregator expect; any size works.
//! On 3D windows (`spatial_dims` 3) every axial slice `[H, W]` of `[N, C, D, H, W]` is
//! segmented on its own (use windows of depth 1, e.g. `[96, 96, 1]` in NIfTI order).

use niftyhost_blocks::crop::{crop_concat, same_size_valid};
use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, Conv, ConvBlock, ConvBlockConfig, ConvConfig, ConvStack,
    DownKind, Downsample, Padding,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "unet2d",
    version: env!("CARGO_PKG_VERSION"),
    description: "2D U-Net (Ronneberger et al. 2015), valid convolutions, slice by slice on 3D windows",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "unet2d",
    description: "2D U-Net with valid convolutions and crop-and-concatenate skips",
    params: &[
        Param { name: "base_channels", ty: ParamType::Int, default: "64", doc: "maps of the first level (paper: 64)" },
        Param {
            name: "norm",
            ty: ParamType::String,
            default: "\"batch\"",
            doc: "normalisation (NiftyNet: batch; paper: none)",
        },
        Param { name: "activation", ty: ParamType::String, default: "\"relu\"", doc: "activation (paper: relu)" },
        Param {
            name: "pad_input",
            ty: ParamType::Bool,
            default: "true",
            doc: "zero-pad the input so the output has its size (false: output 184 smaller, input ≡ 12 mod 16)",
        },
    ],
    build,
};

/// Pixels the valid network loses across each axis.
const SHRINK: i64 = 184;
/// Number of 2× poolings.
const LEVELS: usize = 4;

struct UNet2d {
    spatial_dims: usize,
    in_channels: i64,
    pad_input: bool,
    /// Four encoder levels and the bottom.
    down: Vec<ConvStack>,
    pool: Downsample,
    /// Up-convolution and double convolution, deepest first.
    up: Vec<(ConvBlock, ConvStack)>,
    classifier: Conv,
}

impl UNet2d {
    /// The valid network on 2D images: `[B, C, H, W]` → `[B, K, H − 184, W − 184]`.
    fn valid_forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut skips = Vec::with_capacity(LEVELS);
        let mut h = x.shallow_clone();
        for (i, level) in self.down.iter().enumerate() {
            h = level.forward_t(&h, train);
            if i < LEVELS {
                skips.push(h.shallow_clone());
                h = self.pool.forward(&h);
            }
        }
        for ((up, level), skip) in self.up.iter().zip(skips.iter().rev()) {
            h = level.forward_t(&crop_concat(skip, &up.forward_t(&h, train)), train);
        }
        self.classifier.forward(&h)
    }

    fn forward_2d(&self, x: &Tensor, train: bool) -> Tensor {
        if self.pad_input {
            // Smallest admissible output ≥ s: output + 184 ≡ 12 (mod 16) ⇔ output ≡ 4.
            same_size_valid(x, SHRINK, |s| s + (4 - s).rem_euclid(16), |padded| self.valid_forward(padded, train))
        } else {
            self.valid_forward(x, train)
        }
    }
}

impl NetworkModel for UNet2d {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("UNet2D", shape, self.spatial_dims, self.in_channels)?;
        if self.pad_input {
            return Ok(());
        }
        // Slices are [H, W]: the last two axes.
        shape::each(
            "UNet2D without pad_input",
            &spatial[spatial.len() - 2..],
            "≡ 12 (mod 16) and at least 188 (e.g. 572)",
            |s| s >= 188 && s % 16 == 12,
        )
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        if self.spatial_dims == 3 {
            let depth = input.size()[2];
            shape::unfold_slices(&self.forward_2d(&shape::fold_slices(input), train), depth)
        } else {
            self.forward_2d(input, train)
        }
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let base = params.positive("base_channels")?;
    let conv = ConvConfig::new(2, 3).padding(Padding::Valid);
    let block = ConvBlockConfig::new(conv, norm_param(params, "norm")?, activation_param(params, "activation")?);
    let width = |level: usize| base << level;
    let mut down = Vec::with_capacity(LEVELS + 1);
    for l in 0..=LEVELS {
        let c = if l == 0 { c_in } else { width(l - 1) };
        down.push(ConvStack::new(&(root / format!("down{l}")), block, &[c, width(l), width(l)])?);
    }
    let up_conv = block.with_conv(ConvConfig::new(2, 2).stride(2).transposed().bias(block.conv.bias));
    let mut up = Vec::with_capacity(LEVELS);
    for l in (0..LEVELS).rev() {
        let p = root / format!("up{l}");
        let upsample = up_conv.init(&(&p / "upsample"), width(l + 1), width(l))?;
        up.push((upsample, ConvStack::new(&p, block, &[2 * width(l), width(l), width(l)])?));
    }
    Ok(Box::new(UNet2d {
        spatial_dims: spatial_dims(params)?,
        in_channels: c_in,
        pad_input: params.bool("pad_input")?,
        down,
        pool: Downsample::pool(2, DownKind::MaxPool, 2),
        up,
        classifier: ConvConfig::new(2, 1).init(&(root / "classifier"), width(0), classes)?,
    }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn has_the_papers_31_030_658_weights_and_biases() {
        // Ronneberger et al. 2015, Fig. 1, 1 channel → 2 classes, no normalisation:
        // 3×3 convolutions 1→64→64→128→128→256→256→512→512→1024→1024 and
        // 1024→512→512, 512→256→256, 256→128→128, 128→64→64 (after concatenation),
        // 2×2 up-convolutions 1024→512→256→128→64, 1×1 64→2, each with a bias.
        let convs: [(i64, i64); 18] = [
            (1, 64),
            (64, 64),
            (64, 128),
            (128, 128),
            (128, 256),
            (256, 256),
            (256, 512),
            (512, 512),
            (512, 1024),
            (1024, 1024),
            (1024, 512),
            (512, 512),
            (512, 256),
            (256, 256),
            (256, 128),
            (128, 128),
            (128, 64),
            (64, 64),
        ];
        let three: i64 = convs.iter().map(|(i, o)| 9 * i * o + o).sum();
        let two: i64 = [(1024, 512), (512, 256), (256, 128), (128, 64)].iter().map(|(i, o)| 4 * i * o + o).sum();
        assert_eq!(three + two + 64 * 2 + 2, 31_030_658);
        let net =
            build(&NETWORK, r#"{"in_channels": 1, "num_classes": 2, "norm": "none", "spatial_dims": 2}"#).unwrap();
        assert_eq!(count::trainable(&net.vs), 31_030_658);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        let small = r#"{"in_channels": 1, "num_classes": 3, "base_channels": 2}"#;
        let valid_2d =
            r#"{"in_channels": 1, "num_classes": 2, "base_channels": 2, "pad_input": false, "spatial_dims": 2}"#;
        shape_table(
            &NETWORK,
            &[
                (valid_2d, &[1, 1, 572, 188], Expect::Shape(&[1, 2, 388, 4])),
                (valid_2d, &[2, 1, 204, 188], Expect::Shape(&[2, 2, 20, 4])),
                (small, &[2, 1, 3, 20, 17], Expect::Shape(&[2, 3, 3, 20, 17])),
                (small, &[1, 1, 1, 96, 96], Expect::Shape(&[1, 3, 1, 96, 96])),
                (valid_2d, &[1, 1, 572, 570], Expect::Error("UNet2D without pad_input needs each spatial size ≡ 12 (mod 16) and at least 188 (e.g. 572), got 570")),
                (valid_2d, &[1, 1, 172, 572], Expect::Error("got 172")),
                (small, &[1, 1, 96, 96], Expect::Error("UNet2D needs a [N, C, D, H, W] input")),
            ],
        );
    }
}
