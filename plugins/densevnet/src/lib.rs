//! `densevnet`: Dense V-Net (Gibson et al., "Automatic multi-organ segmentation on
//! abdominal CT with dense V-networks", IEEE TMI 2018), laid out as NiftyNet's
//! `DenseVNet` without its optional parts (spatial prior, batch-wise dropout, built-in
//! affine augmentation).
//!
//! The input is averaged over 2³ cells (NiftyNet: 3³ windows, stride 2) and normalised, and a 5³ stride-2
//! convolution makes 24 initial features; three dense feature stacks (5, 10, 10 layers
//! of 3³ convolutions adding 4, 8, 16 maps each, every layer seeing all earlier maps)
//! each give a skip (3³ convolution to 12, 24, 24 maps) and, but the last, a stride-2
//! 3³ convolution to 24 maps for the next stack. The skips are resized (trilinear) to
//! half the input size, concatenated with the pooled input, classified by a 3³
//! convolution and resized to the input size. Three halvings: each spatial size must be
//! divisible by 8.

use niftyhost_blocks::{
    activation_param, norm_param, resize_linear, shape, spatial_dims, ActivationKind, Conv, ConvBlock, ConvBlockConfig,
    ConvConfig, DownKind, Downsample, Norm,
};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "densevnet",
    version: env!("CARGO_PKG_VERSION"),
    description: "Dense V-Net (Gibson et al. 2018): dense feature stacks at three resolutions",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "densevnet",
    description: "Dense V-Net; sizes divisible by 8",
    params: &[
        Param {
            name: "n_dense_channels",
            ty: ParamType::IntList,
            default: "[4, 8, 16]",
            doc: "maps each dense layer adds, per stack",
        },
        Param { name: "n_dense_layers", ty: ParamType::IntList, default: "[5, 10, 10]", doc: "dense layers per stack" },
        Param {
            name: "n_seg_channels",
            ty: ParamType::IntList,
            default: "[12, 24, 24]",
            doc: "maps of each stack's skip",
        },
        Param {
            name: "n_input_channels",
            ty: ParamType::Int,
            default: "24",
            doc: "initial features and down-sampled maps",
        },
        Param { name: "norm", ty: ParamType::String, default: "\"batch\"", doc: "normalisation (paper: batch)" },
        Param { name: "activation", ty: ParamType::String, default: "\"relu\"", doc: "activation (paper: relu)" },
    ],
    build,
};

/// A dense feature stack with its skip and (but the last) its down-sampling.
struct DenseStack {
    layers: Vec<ConvBlock>,
    skip: ConvBlock,
    down: Option<ConvBlock>,
}

impl DenseStack {
    /// `(skip, down)`: the stack's skip features and the next stack's input.
    fn forward_t(&self, x: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
        let mut stack = vec![x.shallow_clone()];
        for layer in &self.layers {
            let next = layer.forward_t(&Tensor::cat(&stack, 1), train);
            stack.push(next);
        }
        let all = Tensor::cat(&stack, 1);
        (self.skip.forward_t(&all, train), self.down.as_ref().map(|d| d.forward_t(&all, train)))
    }
}

struct DenseVNet {
    spatial_dims: usize,
    in_channels: i64,
    pool: Downsample,
    input_norm: Norm,
    initial: ConvBlock,
    stacks: Vec<DenseStack>,
    classifier: Conv,
}

impl NetworkModel for DenseVNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let spatial = shape::spatial("Dense V-Net", shape, self.spatial_dims, self.in_channels)?;
        shape::divisible("Dense V-Net", spatial, 8)
    }

    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        let pooled = self.input_norm.forward_t(&self.pool.forward(input), train);
        let half = pooled.size()[2..].to_vec();
        let mut features = vec![pooled.shallow_clone()];
        let mut x = Some(Tensor::cat(&[&pooled, &self.initial.forward_t(input, train)], 1));
        for stack in &self.stacks {
            let Some(h) = x.take() else { break };
            let (skip, down) = stack.forward_t(&h, train);
            features.push(resize_linear(&skip, &half));
            x = down;
        }
        let logits = self.classifier.forward(&Tensor::cat(&features, 1));
        resize_linear(&logits, &input.size()[2..])
    }
}

fn ints(params: &Params, key: &str) -> Result<Vec<i64>, PluginError> {
    params
        .floats(key)?
        .into_iter()
        .map(|v| {
            (v >= 1.0 && v.fract() == 0.0)
                .then_some(v as i64)
                .ok_or_else(|| PluginError::new(format!("densevnet: `{key}` must hold positive integers, got {v}")))
        })
        .collect()
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let c_in = params.positive("in_channels")?;
    let classes = params.positive("num_classes")?;
    let dense = ints(params, "n_dense_channels")?;
    let layers = ints(params, "n_dense_layers")?;
    let seg = ints(params, "n_seg_channels")?;
    let initial_maps = params.positive("n_input_channels")?;
    if dense.len() != 3 || layers.len() != 3 || seg.len() != 3 {
        return Err(PluginError::new(format!(
            "densevnet: n_dense_channels, n_dense_layers and n_seg_channels need 3 values (one per stack), got {}, {} and {}",
            dense.len(),
            layers.len(),
            seg.len()
        )));
    }
    let norm = norm_param(params, "norm")?;
    let block = ConvBlockConfig::new(ConvConfig::new(dims, 3), norm, activation_param(params, "activation")?);
    let initial = ConvBlockConfig::new(ConvConfig::new(dims, 5).stride(2), norm, ActivationKind::None);
    let mut stacks = Vec::with_capacity(3);
    let mut c = c_in + initial_maps;
    for s in 0..3 {
        let p = root / format!("stack{s}");
        let mut width = c;
        let mut convs = Vec::with_capacity(layers[s] as usize);
        for l in 0..layers[s] {
            convs.push(block.init(&(&p / format!("dense{l}")), width, dense[s])?);
            width += dense[s];
        }
        let down = if s < 2 {
            Some(block.with_conv(block.conv.stride(2)).init(&(&p / "down"), width, initial_maps)?)
        } else {
            None
        };
        stacks.push(DenseStack { layers: convs, skip: block.init(&(&p / "skip"), width, seg[s])?, down });
        c = initial_maps;
    }
    let skips: i64 = seg.iter().sum();
    Ok(Box::new(DenseVNet {
        spatial_dims: dims,
        in_channels: c_in,
        pool: Downsample::pool(dims, DownKind::AvgPool, 2),
        input_norm: norm.init(&(root / "input_norm"), dims, c_in)?,
        initial: initial.init(&(root / "initial"), c_in, initial_maps)?,
        stacks,
        classifier: ConvConfig::new(dims, 3).init(&(root / "classifier"), c_in + skips, classes)?,
    }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn has_niftynets_convolution_weights() {
        // NiftyNet's DenseVNet defaults, 1 channel → K classes:
        // initial 5³·1·24; stack 0 (input 25): 27·4·(25 + 29 + 33 + 37 + 41), skip 27·45·12,
        // down 27·45·24; stack 1 (input 24): 27·8·(24 + 32 + … + 96), skip 27·104·24,
        // down 27·104·24; stack 2: 27·16·(24 + 40 + … + 168), skip 27·184·24;
        // classifier 27·(1 + 12 + 24 + 24)·K.
        let body = 3_000 + 17_820 + 14_580 + 29_160 + 129_600 + 67_392 + 67_392 + 414_720 + 119_232;
        assert_eq!(body, 862_896);
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 9}"#).unwrap();
        assert_eq!(count::kernel_weights(&net.vs), body + 27 * 61 * 9);
    }

    #[test]
    fn output_shapes_and_input_errors() {
        let small = r#"{"in_channels": 1, "num_classes": 3, "n_dense_layers": [2, 2, 2]}"#;
        shape_table(
            &NETWORK,
            &[
                (small, &[2, 1, 16, 24, 8], Expect::Shape(&[2, 3, 16, 24, 8])),
                (
                    r#"{"in_channels": 2, "num_classes": 4, "norm": "instance"}"#,
                    &[1, 2, 16, 16, 16],
                    Expect::Shape(&[1, 4, 16, 16, 16]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 2, "spatial_dims": 2}"#,
                    &[2, 1, 32, 24],
                    Expect::Shape(&[2, 2, 32, 24]),
                ),
                (
                    small,
                    &[1, 1, 16, 20, 16],
                    Expect::Error("Dense V-Net needs each spatial size divisible by 8, got 20"),
                ),
                (small, &[1, 1, 16, 16], Expect::Error("Dense V-Net needs a [N, C, D, H, W] input")),
            ],
        );
    }

    #[test]
    fn stack_lists_of_the_wrong_length_are_errors() {
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "n_seg_channels": [12, 24]}"#).err().unwrap();
        assert!(err.contains("need 3 values (one per stack), got 3, 3 and 2"), "{err}");
    }
}
