//! `unet3d`: 3D U-Net (Çiçek et al., "3D U-Net: Learning Dense Volumetric Segmentation
//! from Sparse Annotation", MICCAI 2016) on the shared blocks, same-padded so the output
//! window equals the input window.
//!
//! Each encoder level is two 3³ convolution → normalisation → activation blocks and a 2³
//! max pool; each decoder level a 2³ transposed convolution, the skip connection
//! concatenated, and two blocks; a 1³ convolution maps to class logits. Two channel
//! layouts:
//! - `compact` (default): both blocks of level `l` have `base·2^l` maps, the transposed
//!   convolution halves the maps;
//! - `cicek`: the paper's: level `l` has `base·2^l` then `base·2^(l+1)` maps, the
//!   transposed convolution keeps the maps (and has no bias, as in the paper's count).

use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, ActivationKind, Conv, ConvBlockConfig, ConvConfig, ConvStack,
    DownKind, Downsample, NormKind, UpKind, Upsample, UpsampleConfig,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "unet3d",
    version: env!("CARGO_PKG_VERSION"),
    description: "3D U-Net (Çiçek et al. 2016), same-padded",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
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
            doc: "normalisation: instance, batch, group, group:<n> or none",
        },
        Param {
            name: "activation",
            ty: ParamType::String,
            default: "\"relu\"",
            doc: "relu, prelu, leaky_relu, elu, selu, gelu or none",
        },
        Param {
            name: "layout",
            ty: ParamType::String,
            default: "\"compact\"",
            doc: "channel layout: compact, or cicek (the paper's: second block doubles, up-convolution keeps maps)",
        },
    ],
    build,
};

struct UNet3d {
    spatial_dims: usize,
    in_channels: i64,
    down: Vec<ConvStack>,
    pool: Downsample,
    bottom: ConvStack,
    up: Vec<(Upsample, ConvStack)>,
    classifier: Conv,
    depth: usize,
}

impl NetworkModel for UNet3d {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("unet3d", shape, self.spatial_dims, self.in_channels)?;
        shape::divisible(&format!("unet3d with depth {}", self.depth), spatial, 1 << self.depth)
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let mut skips = Vec::with_capacity(self.depth);
        let mut x = input.shallow_clone();
        for level in &self.down {
            let features = level.forward_t(&x, train);
            x = self.pool.forward(&features);
            skips.push(features);
        }
        x = self.bottom.forward_t(&x, train);
        for ((upsample, block), skip) in self.up.iter().zip(skips.iter().rev()) {
            let up = upsample.forward(&x);
            x = block.forward_t(&Tensor::cat(&[skip, &up], 1), train);
        }
        self.classifier.forward(&x)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let base = params.positive("base_channels")?;
    let depth = params.positive("depth")? as usize;
    let norm: NormKind = norm_param(params, "norm")?;
    let activation: ActivationKind = activation_param(params, "activation")?;
    let cicek = params.choice("layout", &["compact", "cicek"])? == "cicek";
    if depth > 6 {
        return Err(PluginError::new(format!("unet3d: depth must be at most 6, got {depth}")));
    }
    let block = ConvBlockConfig::new(ConvConfig::new(dims, 3), norm, activation);
    let width = |level: usize| base << level;
    // Maps leaving encoder level l (the skip), and leaving decoder level l.
    let level_out = |level: usize| if cicek { 2 * width(level) } else { width(level) };
    let mut down = Vec::with_capacity(depth);
    for l in 0..depth {
        let c = if l == 0 { c_in } else { level_out(l - 1) };
        down.push(ConvStack::new(&(root / format!("down{l}")), block, &[c, width(l), level_out(l)])?);
    }
    let bottom = ConvStack::new(&(root / "bottom"), block, &[level_out(depth - 1), width(depth), level_out(depth)])?;
    let mut up = Vec::with_capacity(depth);
    for l in (0..depth).rev() {
        let p = root / format!("up{l}");
        let (c_below, up_out) = if cicek { (level_out(l + 1), level_out(l + 1)) } else { (width(l + 1), width(l)) };
        let mut cfg = UpsampleConfig::new(dims, UpKind::TransposedConv, 2);
        cfg.conv = cfg.conv.bias(!cicek);
        let upsample = cfg.init(&(&p / "upsample"), c_below, up_out)?;
        up.push((upsample, ConvStack::new(&p, block, &[level_out(l) + up_out, level_out(l), level_out(l)])?));
    }
    let pool = Downsample::pool(dims, DownKind::MaxPool, 2);
    let classifier = ConvConfig::new(dims, 1).init(&(root / "classifier"), level_out(0), classes)?;
    Ok(Box::new(UNet3d { spatial_dims: dims, in_channels: c_in, down, pool, bottom, up, classifier, depth }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn cicek_layout_has_the_papers_19_069_955_parameters() {
        // Çiçek et al. 2016, §2: "The architecture has 19069955 parameters in total"
        // (3 input channels, 3 labels, 32 maps at the first level). Their count is the
        // convolutions' weights and biases with bias-free up-convolutions.
        let net = build(
            &NETWORK,
            r#"{"in_channels": 3, "num_classes": 3, "base_channels": 32, "depth": 3, "norm": "none", "layout": "cicek"}"#,
        )
        .unwrap();
        assert_eq!(count::trainable(&net.vs), 19_069_955);
    }

    #[test]
    fn compact_default_keeps_its_parameter_count() {
        // base 8, depth 3, instance norm, 1 → 3 channels: kernels 27·(1·8 + 8·8 + 8·16 +
        // 16·16 + 16·32 + 32·32 + 32·64 + 64·64) + 8·(64·32 + 32·16 + 16·8) + up
        // blocks 27·(64·32 + 32·32 + 32·16 + 16·16 + 16·8 + 8·8) + 8·3.
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3}"#).unwrap();
        let encoder = 27 * (8 + 64 + 128 + 256 + 512 + 1024 + 2048 + 4096);
        let up_convs = 8 * (64 * 32 + 32 * 16 + 16 * 8);
        let decoder = 27 * (64 * 32 + 32 * 32 + 32 * 16 + 16 * 16 + 16 * 8 + 8 * 8);
        assert_eq!(count::kernel_weights(&net.vs), encoder + up_convs + decoder + 8 * 3);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        shape_table(
            &NETWORK,
            &[
                (r#"{"in_channels": 1, "num_classes": 3}"#, &[2, 1, 16, 24, 32], Expect::Shape(&[2, 3, 16, 24, 32])),
                (
                    r#"{"in_channels": 2, "num_classes": 4, "depth": 2, "norm": "batch"}"#,
                    &[1, 2, 12, 8, 4],
                    Expect::Shape(&[1, 4, 12, 8, 4]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 2, "layout": "cicek", "base_channels": 4}"#,
                    &[1, 1, 8, 8, 8],
                    Expect::Shape(&[1, 2, 8, 8, 8]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 2, "spatial_dims": 2, "activation": "prelu"}"#,
                    &[3, 1, 16, 24],
                    Expect::Shape(&[3, 2, 16, 24]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3}"#,
                    &[1, 1, 16, 12, 16],
                    Expect::Error("unet3d with depth 3 needs each spatial size divisible by 8, got 12"),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3}"#,
                    &[1, 2, 16, 16, 16],
                    Expect::Error("needs a [N, C, D, H, W] input with 1 channel"),
                ),
            ],
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "depth": 7}"#).err().unwrap();
        assert_eq!(err, "unet3d: depth must be at most 6, got 7");
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "norm": "layer"}"#).err().unwrap();
        assert!(err.contains("parameter `norm`: unknown normalisation \"layer\""), "{err}");
    }
}
