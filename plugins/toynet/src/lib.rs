//! `toynet`: the smallest network that segments: two 3³ convolutions with an activation
//! (ReLU unless `activation` says otherwise) and a 1³ classifier. A fast check that training, inference and evaluation work end to end.

use niftyhost_blocks::{activation_param, shape, spatial_dims, Activation, Conv, ConvConfig};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn;
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "toynet",
    version: env!("CARGO_PKG_VERSION"),
    description: "a two-layer convolutional toy network",
    networks: &[NETWORK],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

/// The network's declaration.
pub const NETWORK: NetworkDef = NetworkDef {
    name: "toynet",
    description: "two 3x3x3 convolutions with an activation (ReLU) and a 1x1x1 classifier",
    params: &[
        Param { name: "channels", ty: ParamType::Int, default: "8", doc: "feature maps of the hidden layers" },
        Param {
            name: "activation",
            ty: ParamType::String,
            default: "\"relu\"",
            doc: "activation after each hidden convolution: relu, prelu, leaky_relu, elu, selu, gelu, relu6, sigmoid, tanh, softplus, softsign",
        },
    ],
    build,
};

struct ToyNet {
    spatial_dims: usize,
    in_channels: i64,
    /// `conv1`, `conv2`, `classifier` (checkpoint names kept from the first version).
    convs: [Conv; 3],
    /// After `conv1` and `conv2` (PReLU's slopes under `act1`, `act2`; ReLU has none).
    acts: [Activation; 2],
}

impl NetworkModel for ToyNet {
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        shape::spatial("toynet", shape, self.spatial_dims, self.in_channels).map(|_| ())
    }

    fn forward_t(&self, input: &Tensor, _train: bool) -> Tensor {
        let [conv1, conv2, classifier] = &self.convs;
        let [act1, act2] = &self.acts;
        let h = act1.forward(&conv1.forward(input));
        classifier.forward(&act2.forward(&conv2.forward(&h)))
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let dims = spatial_dims(params)?;
    let (c_in, k, c) = (params.positive("in_channels")?, params.positive("num_classes")?, params.positive("channels")?);
    let same = ConvConfig::new(dims, 3);
    let convs = [
        same.init(&(root / "conv1"), c_in, c)?,
        same.init(&(root / "conv2"), c, c)?,
        ConvConfig::new(dims, 1).init(&(root / "classifier"), c, k)?,
    ];
    let kind = activation_param(params, "activation")?;
    let acts = [kind.init(&(root / "act1"), c), kind.init(&(root / "act2"), c)];
    Ok(Box::new(ToyNet { spatial_dims: dims, in_channels: c_in, convs, acts }))
}

#[cfg(test)]
mod tests {
    use niftyhost_blocks::count;
    use niftyhost_blocks::testing::{build, shape_table, Expect};

    use super::NETWORK;

    #[test]
    fn parameter_count_and_names() {
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3}"#).unwrap();
        // 27·1·8 + 8 + 27·8·8 + 8 + 8·3 + 3
        assert_eq!(count::trainable(&net.vs), 216 + 8 + 1728 + 8 + 24 + 3);
        let mut names: Vec<String> = net.vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            ["classifier.bias", "classifier.weight", "conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]
        );
    }

    #[test]
    fn prelu_adds_one_slope_per_channel_and_layer() {
        let net = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "activation": "prelu"}"#).unwrap();
        assert_eq!(count::trainable(&net.vs), 216 + 8 + 1728 + 8 + 24 + 3 + 2 * 8);
        assert!(net.vs.variables().contains_key("act2.weight"));
        let err = build(&NETWORK, r#"{"in_channels": 1, "num_classes": 3, "activation": "swish"}"#).err().unwrap();
        assert!(err.contains("activation"), "{err}");
    }

    #[test]
    fn output_shapes_and_input_errors() {
        shape_table(
            &NETWORK,
            &[
                (r#"{"in_channels": 1, "num_classes": 3}"#, &[2, 1, 5, 6, 7], Expect::Shape(&[2, 3, 5, 6, 7])),
                (
                    r#"{"in_channels": 2, "num_classes": 2, "spatial_dims": 2}"#,
                    &[2, 2, 6, 7],
                    Expect::Shape(&[2, 2, 6, 7]),
                ),
                (
                    r#"{"in_channels": 1, "num_classes": 3}"#,
                    &[2, 1, 6, 7],
                    Expect::Error("toynet needs a [N, C, D, H, W] input"),
                ),
            ],
        );
    }
}
