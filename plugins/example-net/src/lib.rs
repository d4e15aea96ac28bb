//! `example_net`: the README's "write your own network plugin" recipe, built by CI.
use niftyhost_blocks::{norm_param, shape, spatial_dims, ActivationKind, Conv, ConvBlock, ConvBlockConfig, ConvConfig};
use niftyhost_blocks::{ResidualUnit, ResidualUnitConfig};
use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Param, ParamType, Params, PluginDef};
use niftyhost_plugin_api::PluginError;
use tch::{nn, Tensor};

/// The library's declaration: one network, no losses or augmentations.
pub static PLUGIN: PluginDef = PluginDef {
    name: "example_net",
    version: env!("CARGO_PKG_VERSION"),
    description: "the README's example network plugin",
    networks: &[NetworkDef {
        name: "example_net",
        description: "a convolution block, two residual units and a 1x1x1 classifier",
        params: &[
            Param { name: "width", ty: ParamType::Int, default: "16", doc: "feature maps" },
            Param { name: "norm", ty: ParamType::String, default: "\"instance\"", doc: "normalisation" },
        ],
        build,
    }],
    losses: &[],
    augmentations: &[],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

struct ExampleNet {
    spatial_dims: usize,
    in_channels: i64,
    stem: ConvBlock,
    units: Vec<ResidualUnit>,
    classifier: Conv,
}

impl NetworkModel for ExampleNet {
    fn check_input(&self, input_shape: &[i64]) -> Result<(), String> {
        shape::spatial("example_net", input_shape, self.spatial_dims, self.in_channels).map(|_| ())
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.units.iter().fold(self.stem.forward_t(x, train), |h, unit| unit.forward_t(&h, train));
        self.classifier.forward(&h)
    }
}

fn build(root: &nn::Path, p: &Params) -> Result<Box<dyn NetworkModel>, PluginError> {
    let (dims, c_in, width) = (spatial_dims(p)?, p.positive("in_channels")?, p.positive("width")?);
    let block = ConvBlockConfig::new(ConvConfig::new(dims, 3), norm_param(p, "norm")?, ActivationKind::PRelu);
    let unit = ResidualUnitConfig::new(block.pre_activation(), &[3, 3]);
    Ok(Box::new(ExampleNet {
        spatial_dims: dims,
        in_channels: c_in,
        stem: block.init(&(root / "stem"), c_in, width)?,
        units: vec![unit.init(&(root / "res1"), width, width)?, unit.init(&(root / "res2"), width, width)?],
        classifier: ConvConfig::new(dims, 1).init(&(root / "classifier"), width, p.positive("num_classes")?)?,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn readme_lists_this_file_and_it_stays_under_60_lines() {
        let source = include_str!("lib.rs");
        let listing = source.split("\n#[cfg(test)]").next().unwrap();
        assert!(listing.lines().count() < 60, "the recipe promises under 60 lines");
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!("```rust\n{listing}```")),
            "README.md shows an outdated plugins/example-net/src/lib.rs"
        );
    }
}
