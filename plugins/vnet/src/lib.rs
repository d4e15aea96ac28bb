//! `vnet`: V-Net (Milletari et al., "V-Net: Fully Convolutional Neural Networks for
//! Volumetric Medical Image Segmentation", 3DV 2016), laid out as NiftyNet's `VNet`.
//!
//! Five resolution stages of 16, 32, 64, 128 and 256 maps with 1, 2, 3, 3 and 3
//! convolutions of 5³ each, every stage a residual unit (the first one's shortcut is
//! the input repeated to 16 channels); 2³ stride-2 convolutions down, 2³ transposed
//! convolutions up, each followed by the activation; decoder stages convolve the
//! concatenation of the up-sampled and the skip features and add the up-sampled ones.
//! Four halvings: each spatial size must be divisible by 16.

use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, Activation, ActivationKind, Conv, ConvBlockConfig, ConvConfig,
    DownKind, Downsample, DownsampleConfig, ResidualUnit, ResidualUnitConfig, Shortcut, UpKind, Upsample,
    UpsampleConfig,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "vnet",
    version: env!("CARGO_PKG_VERSION"),
    description: "V-Net (Milletari et al. 2016): residual encoder-decoder with 5x5x5 convolutions",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "vnet",
    description: "V-Net: 4 residual down stages, 4 up stages, 5x5x5 convolutions; sizes divisible by 16",
    params: &[
        Param {
            name: "base_channels",
            ty: ParamType::Int,
            default: "16",
            doc: "maps of the first stage (doubled per stage)",
        },
        Param { name: "norm", ty: ParamType::String, default: "\"none\"", doc: "normalisation (paper: none)" },
        Param { name: "activation", ty: ParamType::String, default: "\"prelu\"", doc: "activation (paper: prelu)" },
    ],
    build,
};

/// Convolutions per stage, from the first encoder stage to the bottom.
const CONVS: [usize; 5] = [1, 2, 3, 3, 3];
/// Stages that halve the resolution.
const HALVINGS: usize = 4;

/// A residual stage and what follows it: a down- or up-sampling and its activation.
struct Stage {
    unit: ResidualUnit,
    resample: Resample,
    activation: Activation,
}

enum Resample {
    Down(Downsample),
    Up(Upsample),
}

impl Stage {
    /// The residual features and the resampled, activated output.
    fn forward_t(&self, x: &Tensor, bypass: &Tensor, train: bool) -> (Tensor, Tensor) {
        let features = self.unit.forward_with_bypass(x, bypass, train);
        let resampled = match &self.resample {
            Resample::Down(d) => d.forward(&features),
            Resample::Up(u) => u.forward(&features),
        };
        let out = self.activation.forward(&resampled);
        (features, out)
    }
}

struct VNet {
    spatial_dims: usize,
    in_channels: i64,
    encoder: Vec<Stage>,
    /// The bottom stage, then the decoder stages from deepest to shallowest but one.
    decoder: Vec<Stage>,
    last: ResidualUnit,
    classifier: Conv,
}

impl NetworkModel for VNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("V-Net", shape, self.spatial_dims, self.in_channels)?;
        shape::divisible("V-Net", spatial, 1 << HALVINGS)
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let mut skips = Vec::with_capacity(HALVINGS);
        let mut x = input.shallow_clone();
        for stage in &self.encoder {
            let (features, down) = stage.forward_t(&x, &x, train);
            skips.push(features);
            x = down;
        }
        let (_, mut up) = self.decoder[0].forward_t(&x, &x, train);
        for (stage, skip) in self.decoder[1..].iter().zip(skips.iter().rev()) {
            let (_, next) = stage.forward_t(&Tensor::cat(&[&up, skip], 1), &up, train);
            up = next;
        }
        let features = self.last.forward_with_bypass(&Tensor::cat(&[&up, &skips[0]], 1), &up, train);
        self.classifier.forward(&features)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let base = params.positive("base_channels")?;
    let activation: ActivationKind = activation_param(params, "activation")?;
    let block = ConvBlockConfig::new(ConvConfig::new(dims, 5), norm_param(params, "norm")?, activation);
    let width = |stage: usize| base << stage;
    let unit = |convs: usize, shortcut| ResidualUnitConfig {
        block,
        kernels: vec![5; convs],
        last_activation: false,
        shortcut,
    };
    let down = DownsampleConfig::new(dims, DownKind::StridedConv, 2);
    let up = UpsampleConfig::new(dims, UpKind::TransposedConv, 2);

    let mut encoder = Vec::with_capacity(HALVINGS);
    for s in 0..HALVINGS {
        let p = root / format!("L{}", s + 1);
        let (c, shortcut) = if s == 0 { (c_in, Shortcut::Repeat) } else { (width(s), Shortcut::Identity) };
        encoder.push(Stage {
            unit: unit(CONVS[s], shortcut).init(&p, c, width(s))?,
            resample: Resample::Down(down.init(&(&p / "downsample"), width(s), width(s + 1))?),
            activation: activation.init(&(&p / "act"), width(s + 1)),
        });
    }
    // The bottom stage `V_` (s = 4), then R4, R3, R2: stage s convolves the up-sampled
    // maps of stage s + 1 concatenated with the skip of encoder stage s.
    let mut decoder = Vec::with_capacity(HALVINGS);
    for s in (1..=HALVINGS).rev() {
        let bottom = s == HALVINGS;
        let p = if bottom { root / "V_" } else { root / format!("R{}", s + 1) };
        let (c, features, out) =
            if bottom { (width(s), width(s), width(s)) } else { (width(s + 1) + width(s), width(s + 1), width(s)) };
        decoder.push(Stage {
            unit: unit(CONVS[s], Shortcut::Identity).init(&p, c, features)?,
            resample: Resample::Up(up.init(&(&p / "upsample"), features, out)?),
            activation: activation.init(&(&p / "act"), out),
        });
    }
    let p = root / "R1";
    let last = unit(CONVS[0], Shortcut::Identity).init(&p, 3 * base, 2 * base)?;
    let classifier = ConvConfig::new(dims, 1).init(&(&p / "classifier"), 2 * base, classes)?;
    Ok(Box::new(VNet { spatial_dims: dims, in_channels: c_in, encoder, decoder, last, classifier }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn has_niftynets_convolution_weights() {
        // NiftyNet's VNet, 1 channel → 2 classes, 5³ = 125-voxel kernels, 2³ = 8 for the
        // resampling convolutions:
        let encoder = 125 * 16 + 8 * 16 * 32 // L1
            + 125 * 2 * 32 * 32 + 8 * 32 * 64 // L2
            + 125 * 3 * 64 * 64 + 8 * 64 * 128 // L3
            + 125 * 3 * 128 * 128 + 8 * 128 * 256; // L4
        let decoder = 125 * 3 * 256 * 256 + 8 * 256 * 256 // V_
            + 125 * (384 * 256 + 2 * 256 * 256) + 8 * 256 * 128 // R4
            + 125 * (192 * 128 + 2 * 128 * 128) + 8 * 128 * 64 // R3
            + 125 * (96 * 64 + 64 * 64) + 8 * 64 * 32 // R2
            + 125 * 48 * 32 + 32 * 2; // R1
        assert_eq!(encoder + decoder, 71_042_576);
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 2}"#).unwrap();
        assert_eq!(count::kernel_weights(&net.vs), encoder + decoder);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        shape_table(
            &NETWORK,
            &[
                (
                    r#"{"in_channels": 1, "num_classes": 3, "base_channels": 4}"#,
                    &[1, 1, 16, 32, 16],
                    Expect::Shape(&[1, 3, 16, 32, 16]),
                ),
                (
                    r#"{"in_channels": 2, "num_classes": 2, "base_channels": 2, "norm": "batch", "activation": "relu"}"#,
                    &[2, 2, 32, 16, 16],
                    Expect::Shape(&[2, 2, 32, 16, 16]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 2, "base_channels": 4, "spatial_dims": 2}"#,
                    &[2, 1, 32, 16],
                    Expect::Shape(&[2, 2, 32, 16]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3, "base_channels": 4}"#,
                    &[1, 1, 64, 60, 64],
                    Expect::Error("V-Net needs each spatial size divisible by 16, got 60"),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3, "base_channels": 4}"#,
                    &[1, 1, 64, 64],
                    Expect::Error("V-Net needs a [N, C, D, H, W] input"),
                ),
            ],
        );
    }
}
