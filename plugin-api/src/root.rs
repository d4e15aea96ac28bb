//! [`PluginModule`]: the root module every plugin library exports.

use abi_stable::library::RootModule;
use abi_stable::std_types::{RResult, RStr};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::{AugmentationBox, HostModule_Ref, LossBox, NetworkBox, PluginError, PluginInfo};

/// The root module of a plugin library.
///
/// Every function catches panics and returns [`PluginError`] instead. Fields may be
/// appended after the last one (with a minor version bump); none is ever removed.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Initialises the library and describes it. Called once, before any factory.
    pub init: extern "C" fn(host: HostModule_Ref) -> RResult<PluginInfo, PluginError>,
    /// Builds the network component `name` from its JSON configuration object.
    pub new_network:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, host: HostModule_Ref) -> RResult<NetworkBox, PluginError>,
    /// Builds the loss component `name` from its JSON configuration object.
    pub new_loss:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, host: HostModule_Ref) -> RResult<LossBox, PluginError>,
    /// Builds the augmentation component `name` from its JSON configuration object.
    #[sabi(last_prefix_field)]
    pub new_augmentation: extern "C" fn(
        name: RStr<'_>,
        config_json: RStr<'_>,
        host: HostModule_Ref,
    ) -> RResult<AugmentationBox, PluginError>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "niftyhost_plugin";
    const NAME: &'static str = "niftyhost plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}
