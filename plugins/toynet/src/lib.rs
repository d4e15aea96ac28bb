//! `toynet`: the smallest network that segments: two 3³ convolutions and a 1³ classifier.
//! A fast check that training, inference and evaluation work end to end.

use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "toynet",
    version: env!("CARGO_PKG_VERSION"),
    description: "a two-layer convolutional toy network",
    networks: &[NetworkDef {
        name: "toynet",
        description: "two 3x3x3 convolutions with ReLU and a 1x1x1 classifier",
        params: &[Param {
            name: "channels",
            ty: ParamType::Int,
            default: "8",
            doc: "feature maps of the hidden layers",
        }],
        build,
    }],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

struct ToyNet(nn::SequentialT);

impl NetworkModel for ToyNet {
    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor {
        self.0.forward_t(input, train)
    }
}

fn build(root: &nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let (c_in, k, c) = (params.positive("in_channels")?, params.positive("num_classes")?, params.positive("channels")?);
    let same = nn::ConvConfig { padding: 1, ..Default::default() };
    let seq = nn::seq_t()
        .add(nn::conv3d(root / "conv1", c_in, c, 3, same))
        .add_fn(Tensor::relu)
        .add(nn::conv3d(root / "conv2", c, c, 3, same))
        .add_fn(Tensor::relu)
        .add(nn::conv3d(root / "classifier", c, k, 1, Default::default()));
    Ok(Box::new(ToyNet(seq)))
}
