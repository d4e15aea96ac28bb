//! `dynunet`: the dynamic U-Net that nnU-Net configures (Isensee et al., "nnU-Net: a
//! self-configuring method for deep learning-based biomedical image segmentation", Nature
//! Methods 2021), with optional deep supervision.
//!
//! Each level (resolution stage) has its own kernel size and stride per axis, so pooling
//! can be anisotropic (e.g. `[1, 2, 2]` for thick slices). Encoder level `l`: a block whose
//! first convolution has the level's stride (level 0: `[1, 1, 1]`), `min(base·2^l, max)`
//! maps. Decoder level `l` (from the deepest up): a transposed convolution up-sampling by
//! the stride of level `l + 1`, the skip of level `l` concatenated, a block with level `l`'s
//! kernel. A 1³ convolution maps level 0 to class logits; with `deep_supervision = n`, the
//! decoder levels `1..=n` get their own 1³ heads, returned by `forward_outputs` after the
//! main output (finer first) for the host to train on; `forward` returns the main output
//! alone. Every convolution has a bias (as nnU-Net's).

mod layers;
mod topology;

use niftyhost_blocks::{shape, spatial_dims, ActivationKind, NormKind};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

pub use layers::{Block, BlockKind, BlockStyle, Conv3};
pub use topology::Topology;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "dynunet",
    version: env!("CARGO_PKG_VERSION"),
    description: "dynamic U-Net as nnU-Net configures it (Isensee et al. 2021), with deep supervision",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "dynunet",
    description: "U-Net with a kernel size and stride per level and axis, plain or residual blocks, deep supervision",
    params: &[
        Param {
            name: "kernel_sizes",
            ty: ParamType::IntListList,
            default: "[[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]",
            doc: "kernel [kD, kH, kW] per level (tensor order: D, H, W = the window's k, j, i), odd sizes",
        },
        Param {
            name: "strides",
            ty: ParamType::IntListList,
            default: "[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]",
            doc: "stride [sD, sH, sW] per level, the first [1, 1, 1]; inputs divisible by their product per axis",
        },
        Param {
            name: "base_channels",
            ty: ParamType::Int,
            default: "32",
            doc: "feature maps at level 0; level l has min(base·2^l, max_channels)",
        },
        Param { name: "max_channels", ty: ParamType::Int, default: "320", doc: "cap on the feature maps of a level" },
        Param {
            name: "block",
            ty: ParamType::String,
            default: "\"plain\"",
            doc: "plain (two conv-norm-act) or residual (two convs with an identity or 1x1x1 projection shortcut)",
        },
        Param { name: "norm", ty: ParamType::String, default: "\"instance\"", doc: "instance (affine), batch or none" },
        Param {
            name: "activation",
            ty: ParamType::String,
            default: "\"leaky_relu\"",
            doc: "leaky_relu (slope 0.01), relu, prelu, elu, selu, gelu, relu6, sigmoid, tanh, softplus or softsign",
        },
        Param {
            name: "deep_supervision",
            ty: ParamType::Int,
            default: "0",
            doc: "auxiliary outputs from the decoder levels just below full resolution (0: off; at most levels - 2)",
        },
    ],
    build,
};

/// A built dynamic U-Net.
pub struct DynUNet {
    in_channels: i64,
    topology: Topology,
    encoder: Vec<Block>,
    /// Decoder levels, deepest first: `(level, up-sampling, block)`.
    decoder: Vec<(usize, Conv3, Block)>,
    head: Conv3,
    /// Heads of decoder levels `1..=deep_supervision`, level 1 first.
    aux_heads: Vec<Conv3>,
}

impl DynUNet {
    /// Runs the encoder and decoder; returns the main logits then the auxiliary logits
    /// of the first `aux` heads (finer first).
    fn run(&self, input: &Tensor, train: bool, aux: usize) -> Vec<Tensor> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = input.shallow_clone();
        for block in &self.encoder {
            x = block.forward_t(&x, train);
            skips.push(x.shallow_clone());
        }
        let mut aux_outputs = Vec::with_capacity(aux);
        for (level, up, block) in &self.decoder {
            let upsampled = up.forward(&x);
            x = block.forward_t(&Tensor::cat(&[&skips[*level], &upsampled], 1), train);
            if (1..=aux).contains(level) {
                aux_outputs.push(self.aux_heads[level - 1].forward(&x));
            }
        }
        aux_outputs.reverse();
        std::iter::once(self.head.forward(&x)).chain(aux_outputs).collect()
    }
}

impl NetworkModel for DynUNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("dynunet", shape, 3, self.in_channels)?;
        let total = self.topology.total_stride();
        if spatial.iter().zip(total).any(|(s, t)| s % t != 0) {
            return Err(format!(
                "dynunet needs each spatial size divisible by the product of its strides along that axis: \
                 (D, H, W) by {total:?}, i.e. a window (i, j, k) divisible by [{}, {}, {}]; got (D, H, W) {spatial:?}",
                total[2], total[1], total[0]
            ));
        }
        Ok(())
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        self.run(input, train, 0).swap_remove(0)
    }

    fn forward_outputs_t(&self, input: &Tensor, train: bool) -> Vec<Tensor> {
        self.run(input, train, self.aux_heads.len())
    }
}

fn block_style(params: &Params) -> Result<BlockStyle, PluginError> {
    let kind = match params.choice("block", &["plain", "residual"])?.as_str() {
        "plain" => BlockKind::Plain,
        _ => BlockKind::Residual,
    };
    let norm = NormKind::parse(&params.choice("norm", &["instance", "batch", "none"])?)
        .map_err(|e| PluginError::new(format!("dynunet: parameter `norm`: {e}")))?;
    let activation = ActivationKind::parse(&params.string("activation")?)
        .map_err(|e| PluginError::new(format!("dynunet: parameter `activation`: {e}")))?;
    Ok(BlockStyle { kind, norm, activation })
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    if spatial_dims(params)? != 3 {
        return Err(PluginError::new("dynunet: only spatial_dims = 3 (3D windows) is supported"));
    }
    let in_channels = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let topology = Topology::from_params(params)?;
    let style = block_style(params)?;
    let levels = topology.levels();
    let deep_supervision = params.int("deep_supervision")?;
    if deep_supervision < 0 || deep_supervision as usize > levels - 2 {
        return Err(PluginError::new(format!(
            "dynunet: parameter `deep_supervision`: {deep_supervision} auxiliary outputs, expected 0 to {} \
             (levels - 2 with {levels} levels)",
            levels - 2
        )));
    }
    let c = &topology.channels;
    let mut encoder = Vec::with_capacity(levels);
    for l in 0..levels {
        let c_in = if l == 0 { in_channels } else { c[l - 1] };
        let p = root / format!("enc{l}");
        encoder.push(Block::new(&p, style, c_in, c[l], topology.kernels[l], topology.strides[l])?);
    }
    let mut decoder = Vec::with_capacity(levels - 1);
    for l in (0..levels - 1).rev() {
        let p = root / format!("dec{l}");
        let up = Conv3::up(&(&p / "up"), c[l + 1], c[l], topology.strides[l + 1]);
        decoder.push((l, up, Block::new(&p, style, 2 * c[l], c[l], topology.kernels[l], [1, 1, 1])?));
    }
    let head = Conv3::new(&(root / "head"), c[0], classes, [1, 1, 1], [1, 1, 1]);
    let aux_heads = (1..=deep_supervision as usize)
        .map(|l| Conv3::new(&(root / format!("aux{l}")), c[l], classes, [1, 1, 1], [1, 1, 1]))
        .collect();
    Ok(Box::new(DynUNet { in_channels, topology, encoder, decoder, head, aux_heads }))
}

#[cfg(test)]
mod tests;
