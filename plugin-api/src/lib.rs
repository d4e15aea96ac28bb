//! The stable interface between the `niftyhost` host and its plugins.
//!
//! A plugin is an `abi_stable` cdylib (`lib<name>.so`) that exports one root module,
//! [`PluginModule`]. The library may hold several *components*: networks, losses and
//! augmentations, each with a name, a description and a parameter schema.
//!
//! Everything that crosses the boundary is declared here:
//! - [`RTensor`]: an owning handle to one libtorch tensor;
//! - [`PluginError`]: the error every entry point returns instead of panicking;
//! - [`ParamSpec`] / [`ComponentInfo`] / [`PluginInfo`] / [`ComponentKind`]: what a plugin
//!   declares about itself, in the extensible form of 1.1 ([`v1_0`] keeps the frozen form of
//!   1.0, which 1.0 hosts read);
//! - [`HostModule`]: what the host offers a plugin (logging);
//! - the `#[sabi_trait]`s [`Network`], [`Loss`] and [`Augmentation`].
//!
//! The default build depends on `abi_stable` only. The `sdk` feature adds the glue that
//! plugin authors (and the host) use: conversions to and from `tch::Tensor`, panic guards,
//! parameter parsing against a schema and the [`export_plugin!`] macro.
//!
//! # Versioning
//! The ABI version is this crate's Cargo version. Additive changes (a field appended to a
//! prefix type after its `last_prefix_field`, a method appended to a trait after its
//! `last_prefix_field`, a new [`ComponentKind`] code) bump the minor version; anything else
//! bumps the major version. The host refuses a plugin built against another major version,
//! and loads one built against any minor version of its own major: a field the older side
//! lacks reads as `None` (see `Cargo.toml` for the exact rules).
#![warn(missing_docs)]
// abi_stable 0.11's derive macros trip this lint.
#![allow(non_local_definitions)]
// `*_Ref` and `*_TO` names are abi_stable's conventions.
#![allow(non_camel_case_types)]

mod augment;
mod error;
mod host;
mod loss;
mod network;
mod root;
mod schema;
mod tensor;
pub mod v1_0;

pub use augment::{Augmentation, AugmentationBox, Augmentation_TO, AugmentedSample, Spacing};
pub use error::PluginError;
pub use host::{HostModule, HostModule_Ref, LogLevel};
pub use loss::{Loss, LossBox, Loss_TO};
pub use network::{NamedTensor, Network, NetworkBox, Network_TO};
pub use root::{PluginModule, PluginModule_Ref};
pub use schema::{
    ComponentInfo, ComponentInfo_Ref, ComponentKind, ParamSpec, ParamSpec_Ref, PluginInfo, PluginInfo_Ref,
};
pub use tensor::RTensor;

/// Re-exported so that plugins and the host use the very same `abi_stable`.
pub use abi_stable;

#[cfg(feature = "sdk")]
pub mod sdk;

/// Names the host passes to every network in its configuration object, besides the
/// network's own parameters: they need no entry in a network's schema.
pub const HOST_NETWORK_KEYS: [&str; 3] = ["in_channels", "num_classes", "spatial_dims"];
