//! Helpers for the network plugins' tests: build a declared network from JSON
//! parameters, and run shape tables (configuration, input shape, expected output shape
//! or error), as MONAI's `test_<net>.py`.

use niftyhost_plugin_api::sdk::{NetworkDef, NetworkModel, Params};
use niftyhost_plugin_api::HOST_NETWORK_KEYS;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A network built outside the host, with its variables.
pub struct Built {
    /// The network's variables.
    pub vs: VarStore,
    /// The network.
    pub model: Box<dyn NetworkModel>,
}

/// Builds `def` from `params` (a JSON object; `spatial_dims` defaults to 3).
///
/// # Errors
/// The plugin's parameter or build error message.
pub fn build(def: &NetworkDef, params: &str) -> Result<Built, String> {
    let mut json: serde_json::Value = serde_json::from_str(params).map_err(|e| e.to_string())?;
    if json.get("spatial_dims").is_none() {
        json["spatial_dims"] = 3.into();
    }
    let params = Params::parse(def.name, &json.to_string(), def.params, &HOST_NETWORK_KEYS)
        .map_err(|e| e.message.into_string())?;
    let vs = VarStore::new(Device::Cpu);
    let model = (def.build)(&vs.root(), &params).map_err(|e| e.message.into_string())?;
    Ok(Built { vs, model })
}

/// What a shape-table row expects.
#[derive(Debug)]
pub enum Expect {
    /// This output shape.
    Shape(&'static [i64]),
    /// An input-check error containing this text.
    Error(&'static str),
}

/// Runs each row `(parameters, input shape, expectation)` through `check_input` and, when
/// accepted, a training-mode forward pass of random input; panics (fails the test) on
/// the first row that disagrees, naming it.
pub fn shape_table(def: &NetworkDef, rows: &[(&str, &[i64], Expect)]) {
    for (params, input, expect) in rows {
        let built = build(def, params).unwrap_or_else(|e| panic!("{} {params}: build failed: {e}", def.name));
        let checked = built.model.check_input(input);
        match (expect, checked) {
            (Expect::Shape(shape), Ok(())) => {
                let x = Tensor::randn(*input, (Kind::Float, Device::Cpu));
                let y = built.model.forward_t(&x, true);
                assert_eq!(y.size(), *shape, "{} {params} on {input:?}", def.name);
                assert!(y.isfinite().all().int64_value(&[]) == 1, "{} {params}: non-finite output", def.name);
            }
            (Expect::Error(text), Err(message)) => {
                assert!(message.contains(text), "{} {params} on {input:?}: `{message}` lacks `{text}`", def.name)
            }
            (expect, got) => panic!("{} {params} on {input:?}: expected {expect:?}, got {got:?}", def.name),
        }
    }
}
