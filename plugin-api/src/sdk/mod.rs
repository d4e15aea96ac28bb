//! Glue for plugin authors (feature `sdk`): write ordinary `tch` code, export it with
//! [`crate::export_plugin!`], and the SDK catches panics, validates parameters and
//! converts tensors at the boundary.
//!
//! ```ignore
//! use niftyhost_plugin_api::sdk::*;
//! static PLUGIN: PluginDef = PluginDef {
//!     name: "toynet", version: env!("CARGO_PKG_VERSION"), description: "…",
//!     networks: &[NetworkDef { name: "toynet", description: "…", params: &[…], build: build_toynet }],
//!     losses: &[], augmentations: &[],
//! };
//! niftyhost_plugin_api::export_plugin!(PLUGIN);
//! ```

mod adapters;
mod device;
pub mod export;
mod guard;
mod layout;
mod log;
mod nearest;
mod params;
mod tensor;

pub use adapters::{AugmentFn, Augmented, LossFn, NetworkModel};
pub use device::parse_device;
pub use export::{AugmentationDef, BuildNetwork, LossDef, NetworkDef, PluginDef};
pub use guard::{first_line, guard};
pub use layout::{channels_last_3d, is_channels_last_3d};
pub use log::{host_log, Host};
pub use nearest::nearest;
pub use params::{Param, ParamType, Params};
pub use tensor::TensorView;

/// The libtorch this crate was built against: `tch-<v>/libtorch-<v>/cxx11abi=<0|1>`.
/// Host and plugins compare tags; a plugin built against another libtorch is refused.
pub const TORCH_ABI_TAG: &str = env!("NIFTYHOST_TORCH_ABI_TAG");
