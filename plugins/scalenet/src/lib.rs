//! `scalenet`: ScaleNet (Fidon et al., "Scalable multimodal convolutional networks for
//! brain tumour segmentation", MICCAI 2017), laid out as NiftyNet's `ScaleNet`.
//!
//! Back end: each modality (input channel) gets its own 3³ convolution block to 16
//! maps; one scale block then mixes, with pre-activation residual units of a 3³ and a
//! 1³ convolution, the modalities of each feature (one unit per feature, `M_F`) and the
//! features of each modality (one unit per modality, `F_M`), and averages over the
//! modalities. Front end: HighRes3DNet on the 16 averaged maps. The per-feature and
//! per-modality units are grouped convolutions over a feature-major or modality-major
//! channel layout, which has exactly the parameters of NiftyNet's separate units.
//! NiftyNet asks for more than one modality; one works here too (the scale block then
//! only mixes within each map).

use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, ActivationKind, ConvBlock, ConvBlockConfig, ConvConfig,
    HighResNet, HighResNetConfig, HighResVariant, NormKind, ResidualUnit, ResidualUnitConfig,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "scalenet",
    version: env!("CARGO_PKG_VERSION"),
    description: "ScaleNet (Fidon et al. 2017): per-modality back end, scale block, HighRes3DNet front end",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "scalenet",
    description: "multimodal back end averaged over modalities, HighRes3DNet front end",
    params: &[
        Param { name: "norm", ty: ParamType::String, default: "\"batch\"", doc: "normalisation (paper: batch)" },
        Param { name: "activation", ty: ParamType::String, default: "\"prelu\"", doc: "activation (paper: prelu)" },
    ],
    build,
};

/// Maps per modality in the back end.
const FEATURES: i64 = 16;

struct ScaleNet {
    spatial_dims: usize,
    modalities: i64,
    per_modality: ConvBlock,
    modalities_per_feature: ResidualUnit,
    features_per_modality: ResidualUnit,
    front_end: HighResNet,
}

impl ScaleNet {
    /// Swaps the two factors of the channel axis: `[N, a·b, *S]` (a-major) →
    /// `[N, b·a, *S]` (b-major).
    fn swap_channel_factors(x: &Tensor, a: i64, b: i64) -> Tensor {
        let s = x.size();
        let mut split = vec![s[0], a, b];
        split.extend_from_slice(&s[2..]);
        x.reshape(split.as_slice()).transpose(1, 2).reshape(s.as_slice())
    }
}

impl NetworkModel for ScaleNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        shape::spatial("ScaleNet", shape, self.spatial_dims, self.modalities).map(|_| ())
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let m = self.modalities;
        let modality_major = self.per_modality.forward_t(input, train);
        let feature_major = Self::swap_channel_factors(&modality_major, m, FEATURES);
        let mixed = self.modalities_per_feature.forward_t(&feature_major, train);
        let modality_major = Self::swap_channel_factors(&mixed, FEATURES, m);
        let mixed = self.features_per_modality.forward_t(&modality_major, train);
        let s = mixed.size();
        let mut split = vec![s[0], m, FEATURES];
        split.extend_from_slice(&s[2..]);
        let averaged = mixed.reshape(split.as_slice()).mean_dim(1, false, None);
        self.front_end.forward_t(&averaged, train)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let m = params.positive("in_channels")?;
    let norm: NormKind = norm_param(params, "norm")?;
    let activation: ActivationKind = activation_param(params, "activation")?;
    let block = |groups: i64| ConvBlockConfig::new(ConvConfig::new(dims, 3).groups(groups), norm, activation);
    let scale_unit = |groups: i64| ResidualUnitConfig::new(block(groups).pre_activation(), &[3, 1]);
    let front_end = HighResNetConfig { spatial_dims: dims, variant: HighResVariant::Normal, norm, activation };
    Ok(Box::new(ScaleNet {
        spatial_dims: dims,
        modalities: m,
        per_modality: block(m).init(&(root / "per_modality"), m, m * FEATURES)?,
        modalities_per_feature: scale_unit(FEATURES).init(&(root / "M_F"), m * FEATURES, m * FEATURES)?,
        features_per_modality: scale_unit(m).init(&(root / "F_M"), m * FEATURES, m * FEATURES)?,
        front_end: front_end.init(&(root / "front_end"), FEATURES, params.positive("num_classes")?)?,
    }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};
    use tch::{Device, Kind, Tensor};

    use super::NETWORK;

    #[test]
    fn has_niftynets_convolution_weights_for_four_modalities() {
        // NiftyNet's ScaleNet, M = 4 modalities → 4 classes: per-modality 3³ convs
        // 4·27·16; M_F: 16 units of (27 + 1)·4·4; F_M: 4 units of (27 + 1)·16·16;
        // HighRes3DNet on 16 maps: 27·16·16 + 41 472 + 152 064 + 608 256 + 64·80 + 80·4.
        let back_end = 4 * 27 * 16 + 16 * 28 * 16 + 4 * 28 * 256;
        let front_end = 6_912 + 41_472 + 152_064 + 608_256 + 5_120 + 320;
        assert_eq!(back_end + front_end, 851_712);
        let net = build(&NETWORK, r#"{"in_channels": 4, "num_classes": 4}"#).unwrap();
        assert_eq!(count::kernel_weights(&net.vs), 851_712);
    }

    #[test]
    fn swapping_channel_factors_twice_is_the_identity() {
        let x = Tensor::randn([2, 12, 3, 3, 3], (Kind::Float, Device::Cpu));
        let swapped = super::ScaleNet::swap_channel_factors(&x, 3, 4);
        // Channel (modality 1, feature 2) = 1·4 + 2 moves to (feature 2, modality 1) = 2·3 + 1.
        assert_eq!(swapped.narrow(1, 7, 1), x.narrow(1, 6, 1));
        assert_eq!(super::ScaleNet::swap_channel_factors(&swapped, 4, 3), x);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        shape_table(
            &NETWORK,
            &[
                (r#"{"in_channels": 4, "num_classes": 4}"#, &[1, 4, 8, 8, 8], Expect::Shape(&[1, 4, 8, 8, 8])),
                (
                    r#"{"in_channels": 1, "num_classes": 3, "norm": "instance"}"#,
                    &[2, 1, 6, 7, 8],
                    Expect::Shape(&[2, 3, 6, 7, 8]),
                ),
                (
                    r#"{"in_channels": 2, "num_classes": 2, "spatial_dims": 2}"#,
                    &[2, 2, 12, 10],
                    Expect::Shape(&[2, 2, 12, 10]),
                ),
                (
                    r#"{"in_channels": 4, "num_classes": 4}"#,
                    &[1, 3, 8, 8, 8],
                    Expect::Error("ScaleNet needs a [N, C, D, H, W] input with 4 channels, got [1, 3, 8, 8, 8]"),
                ),
            ],
        );
    }
}
