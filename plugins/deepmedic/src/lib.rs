//! `deepmedic`: DeepMedic (Kamnitsas et al., "Efficient multi-scale 3D CNN with fully
//! connected CRF for accurate brain lesion segmentation", MedIA 2017), laid out as
//! NiftyNet's `DeepMedic`.
//!
//! Two pathways of eight valid 3³ convolutions (30, 30, 40, 40, 40, 40, 50, 50 maps):
//! the normal pathway on the centre of the input, the subsampled pathway on the input
//! averaged over `d_factor`³ cells, its output repeated back up. Both are concatenated
//! and classified by two 1³ layers of 150 maps and a 1³ classifier. The valid network
//! maps an input of `s` to `s − 16·d_factor` (57 → 9 for `d_factor` 3) and needs `s`
//! odd, divisible by `d_factor` and above `16·d_factor`.
//!
//! With `pad_input` (the default) the network zero-pads its input so that the output has
//! the input's size, as the host's trainer and window aggregator expect; any size works.

use niftyhost_blocks::crop::{centre_crop, same_size_valid};
use niftyhost_blocks::{
    activation_param, norm_param, shape, spatial_dims, Conv, ConvBlockConfig, ConvConfig, ConvStack, DownKind,
    Downsample, Padding, UpKind, Upsample,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "deepmedic",
    version: env!("CARGO_PKG_VERSION"),
    description: "DeepMedic (Kamnitsas et al. 2017): normal and subsampled pathways",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "deepmedic",
    description: "two-pathway (normal + subsampled) valid 3D CNN",
    params: &[
        Param {
            name: "d_factor",
            ty: ParamType::Int,
            default: "3",
            doc: "subsampling factor of the second pathway (odd)",
        },
        Param { name: "norm", ty: ParamType::String, default: "\"batch\"", doc: "normalisation (paper: batch)" },
        Param { name: "activation", ty: ParamType::String, default: "\"prelu\"", doc: "activation (paper: prelu)" },
        Param {
            name: "pad_input",
            ty: ParamType::Bool,
            default: "true",
            doc: "zero-pad the input so the output has its size (false: output 16·d_factor smaller)",
        },
    ],
    build,
};

/// Maps of the eight convolutions of each pathway.
const PATHWAY: [i64; 8] = [30, 30, 40, 40, 40, 40, 50, 50];
/// Maps of the two fully connected (1³) layers.
const FULLY_CONNECTED: [i64; 2] = [150, 150];
/// Voxels the eight valid 3³ convolutions lose across each axis.
const PATHWAY_SHRINK: i64 = 2 * PATHWAY.len() as i64;

struct DeepMedic {
    spatial_dims: usize,
    in_channels: i64,
    d_factor: i64,
    pad_input: bool,
    normal: ConvStack,
    subsample: Downsample,
    subsampled: ConvStack,
    upsample: Upsample,
    fully_connected: ConvStack,
    classifier: Conv,
}

impl DeepMedic {
    /// The valid network: `[N, C, *S]` → `[N, K, *(S − 16·d)]`.
    fn valid_forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out: Vec<i64> = x.size()[2..].iter().map(|s| s - PATHWAY_SHRINK * self.d_factor).collect();
        let normal_in: Vec<i64> = out.iter().map(|s| s + PATHWAY_SHRINK).collect();
        // Each map goes as soon as the next is made: at 195³ windows with 160 classes
        // (NiftyNet's deepmedic_config.ini) every one of the last layers' is gigabytes.
        let both = {
            let normal = self.normal.forward_t(&centre_crop(x, &normal_in), train);
            let coarse = self.upsample.forward(&self.subsampled.forward_t(&self.subsample.forward(x), train));
            Tensor::cat(&[&normal, &coarse], 1)
        };
        self.classifier.forward(&self.fully_connected.forward_owned(both, train))
    }
}

impl NetworkModel for DeepMedic {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("DeepMedic", shape, self.spatial_dims, self.in_channels)?;
        if self.pad_input {
            return Ok(());
        }
        let d = self.d_factor;
        shape::each(
            &format!("DeepMedic (d_factor {d}) without pad_input"),
            spatial,
            &format!("odd, divisible by {d} and above {} (e.g. {})", PATHWAY_SHRINK * d, (PATHWAY_SHRINK + 3) * d),
            |s| s % 2 == 1 && s % d == 0 && s > PATHWAY_SHRINK * d,
        )
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        if !self.pad_input {
            return self.valid_forward(input, train);
        }
        // Admissible outputs o: o + 16d odd and divisible by d ⇔ o an odd multiple of d.
        let d = self.d_factor;
        let admissible = |s: i64| (s..).find(|o| o % d == 0 && o % 2 == 1).unwrap_or(s);
        same_size_valid(input, PATHWAY_SHRINK * d, admissible, |padded| self.valid_forward(padded, train))
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let d_factor = params.positive("d_factor")?;
    if d_factor % 2 == 0 {
        return Err(PluginError::new(format!(
            "deepmedic: d_factor must be odd (the subsampled pathway stays centred), got {d_factor}"
        )));
    }
    let block = ConvBlockConfig::new(
        ConvConfig::new(dims, 3).padding(Padding::Valid),
        norm_param(params, "norm")?,
        activation_param(params, "activation")?,
    );
    let pathway: Vec<i64> = std::iter::once(c_in).chain(PATHWAY).collect();
    let last = PATHWAY[PATHWAY.len() - 1];
    let fully_connected: Vec<i64> = std::iter::once(2 * last).chain(FULLY_CONNECTED).collect();
    let one = block.with_conv(ConvConfig::new(dims, 1).bias(block.conv.bias));
    Ok(Box::new(DeepMedic {
        spatial_dims: dims,
        in_channels: c_in,
        d_factor,
        pad_input: params.bool("pad_input")?,
        normal: ConvStack::new(&(root / "normal"), block, &pathway)?,
        subsample: Downsample::pool(dims, DownKind::AvgPool, d_factor),
        subsampled: ConvStack::new(&(root / "subsampled"), block, &pathway)?,
        upsample: Upsample::interpolate(UpKind::Nearest, d_factor),
        fully_connected: ConvStack::new(&(root / "fc"), one, &fully_connected)?,
        classifier: ConvConfig::new(dims, 1).init(&(root / "classifier"), FULLY_CONNECTED[1], classes)?,
    }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn has_niftynets_convolution_weights() {
        // Per pathway 27·(1·30 + 30·30 + 30·40 + 40·40 + 40·40 + 40·40 + 40·50 + 50·50)
        // = 308 610; two pathways, then 1³ layers 100·150 + 150·150 + 150·K.
        assert_eq!(27 * (30 + 900 + 1200 + 1600 + 1600 + 1600 + 2000 + 2500), 308_610);
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 5}"#).unwrap();
        assert_eq!(count::kernel_weights(&net.vs), 2 * 308_610 + 15_000 + 22_500 + 750);
        assert_eq!(count::kernel_weights(&net.vs), 655_470);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        let valid = r#"{"in_channels": 1, "num_classes": 3, "pad_input": false}"#;
        let same = r#"{"in_channels": 2, "num_classes": 4}"#;
        shape_table(
            &NETWORK,
            &[
                (valid, &[1, 1, 57, 57, 57], Expect::Shape(&[1, 3, 9, 9, 9])),
                // NiftyNet's inference windows: its docstring's 105 -> 57, deepmedic_config.ini's 195 -> 147.
                (valid, &[1, 1, 105, 105, 105], Expect::Shape(&[1, 3, 57, 57, 57])),
                (valid, &[1, 1, 195, 57, 57], Expect::Shape(&[1, 3, 147, 9, 9])),
                (valid, &[2, 1, 63, 57, 51], Expect::Shape(&[2, 3, 15, 9, 3])),
                (r#"{"in_channels": 1, "num_classes": 2, "pad_input": false, "d_factor": 5}"#, &[1, 1, 85, 85, 85], Expect::Shape(&[1, 2, 5, 5, 5])),
                (same, &[2, 2, 16, 17, 9], Expect::Shape(&[2, 4, 16, 17, 9])),
                (r#"{"in_channels": 1, "num_classes": 2, "spatial_dims": 2}"#, &[2, 1, 20, 24], Expect::Shape(&[2, 2, 20, 24])),
                (valid, &[1, 1, 57, 56, 57], Expect::Error("DeepMedic (d_factor 3) without pad_input needs each spatial size odd, divisible by 3 and above 48 (e.g. 57), got 56")),
                (valid, &[1, 1, 45, 57, 57], Expect::Error("got 45")),
                (same, &[2, 1, 16, 16, 16], Expect::Error("DeepMedic needs a [N, C, D, H, W] input with 2 channels")),
            ],
        );
    }

    #[test]
    fn even_subsampling_factor_is_an_error() {
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "d_factor": 2}"#).err().unwrap();
        assert!(err.contains("d_factor must be odd"), "{err}");
    }
}
