//! `highres3dnet`: HighRes3DNet (Li et al., "On the compactness, efficiency, and
//! representation of 3D convolutional networks: brain parcellation as a pretext task",
//! IPMI 2017), with NiftyNet's small and large variants. The body is
//! [`niftyhost_blocks::HighResNetConfig`] (ScaleNet's front end too).

use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, HighResNet, HighResNetConfig, HighResVariant,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "highres3dnet",
    version: env!("CARGO_PKG_VERSION"),
    description: "HighRes3DNet (Li et al. 2017): dilated residual network, normal, small and large",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "highres3dnet",
    description: "20 layers of dilated residual 3x3x3 convolutions at full resolution",
    params: &[
        Param {
            name: "variant",
            ty: ParamType::String,
            default: "\"normal\"",
            doc: "normal (the paper), small (stride-2 first layer, needs even sizes) or large (extra 3x3x3 layer)",
        },
        Param { name: "norm", ty: ParamType::String, default: "\"batch\"", doc: "normalisation (paper: batch)" },
        Param { name: "activation", ty: ParamType::String, default: "\"prelu\"", doc: "activation (paper: prelu)" },
    ],
    build,
};

struct HighRes3DNet {
    spatial_dims: usize,
    in_channels: i64,
    small: bool,
    net: HighResNet,
}

impl NetworkModel for HighRes3DNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("HighRes3DNet", shape, self.spatial_dims, self.in_channels)?;
        if self.small {
            shape::divisible("HighRes3DNet (small)", spatial, 2)?;
        }
        Ok(())
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(input, train)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let config = HighResNetConfig {
        spatial_dims: spatial_dims(params)?,
        variant: HighResVariant::parse(&params.string("variant")?)?,
        norm: norm_param(params, "norm")?,
        activation: activation_param(params, "activation")?,
    };
    let in_channels = params.positive("in_channels")?;
    let net = config.init(root, in_channels, params.positive("num_classes")?)?;
    let small = config.variant == HighResVariant::Small;
    Ok(Box::new(HighRes3DNet { spatial_dims: config.spatial_dims, in_channels, small, net }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    fn kernel_weights(variant: &str) -> i64 {
        let params = format!(r#"{{"in_channels": 1, "num_classes": 160, "variant": "{variant}"}}"#);
        count::kernel_weights(&build(&NETWORK, &params).unwrap().vs)
    }

    #[test]
    fn has_niftynets_820_144_convolution_weights_for_160_classes() {
        // NiftyNet's HighRes3DNet (bias-free convolutions), 1 channel → 160 classes:
        // conv_0 27·16 + res_1 6·27·16·16 + res_2 27·(16·32 + 5·32·32)
        // + res_3 27·(32·64 + 5·64·64) + conv_1 64·80 + conv_2 80·160.
        assert_eq!(432 + 41_472 + 152_064 + 608_256 + 5_120 + 12_800, 820_144);
        assert_eq!(kernel_weights("normal"), 820_144);
    }

    #[test]
    fn small_and_large_variants_match_niftynets_definitions() {
        let body = 432 + 41_472 + 152_064 + 608_256;
        // small: conv_1 27·64·80, deconv 27·80·80, conv_2 80·160.
        assert_eq!(kernel_weights("small"), body + 138_240 + 172_800 + 12_800);
        // large: conv_1 27·64·64, conv_2 64·64, conv_3 64·160.
        assert_eq!(kernel_weights("large"), body + 110_592 + 4_096 + 10_240);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        shape_table(
            &NETWORK,
            &[
                (r#"{"in_channels": 1, "num_classes": 3}"#, &[1, 1, 9, 10, 11], Expect::Shape(&[1, 3, 9, 10, 11])),
                (
                    r#"{"in_channels": 2, "num_classes": 4, "variant": "large", "norm": "instance"}"#,
                    &[2, 2, 8, 8, 8],
                    Expect::Shape(&[2, 4, 8, 8, 8]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3, "variant": "small"}"#,
                    &[1, 1, 8, 10, 12],
                    Expect::Shape(&[1, 3, 8, 10, 12]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 2, "spatial_dims": 2}"#,
                    &[2, 1, 12, 10],
                    Expect::Shape(&[2, 2, 12, 10]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3, "variant": "small"}"#,
                    &[1, 1, 8, 9, 8],
                    Expect::Error("HighRes3DNet (small) needs each spatial size divisible by 2, got 9"),
                ),
                (
                    r#"{"in_channels": 3, "num_classes": 3}"#,
                    &[1, 1, 8, 8, 8],
                    Expect::Error("HighRes3DNet needs a [N, C, D, H, W] input with 3 channels"),
                ),
            ],
        );
    }

    #[test]
    fn unknown_variant_is_an_error() {
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "variant": "tiny"}"#).err().unwrap();
        assert!(err.contains("variant must be normal, small or large, got \"tiny\""), "{err}");
    }
}
