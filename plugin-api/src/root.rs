//! [`PluginModule`]: the root module every plugin library exports.

use abi_stable::library::RootModule;
use abi_stable::std_types::{RResult, RStr};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::{v1_0, AugmentationBox, HostModule_Ref, LossBox, NetworkBox, PluginError, PluginInfo_Ref};

/// The root module of a plugin library.
///
/// Every function catches panics and returns [`PluginError`] instead. Fields are appended
/// after the last one (with a minor version bump); none is ever removed or moved. The four
/// fields of 1.0 are always there; a field appended later is `None` when the plugin was
/// built against an older minor version.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// Since 1.0: initialises the library and describes it in the frozen 1.0 form. A host
    /// calls either this or [`PluginModule::describe`] once, before any factory; hosts of
    /// 1.1 or later call it only when `describe` is missing.
    pub init: extern "C" fn(host: HostModule_Ref) -> RResult<v1_0::PluginInfo, PluginError>,
    /// Since 1.0: builds the network component `name` from its JSON configuration object.
    pub new_network:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, host: HostModule_Ref) -> RResult<NetworkBox, PluginError>,
    /// Since 1.0: builds the loss component `name` from its JSON configuration object.
    pub new_loss:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, host: HostModule_Ref) -> RResult<LossBox, PluginError>,
    /// Since 1.0: builds the augmentation component `name` from its JSON configuration object.
    #[sabi(last_prefix_field)]
    pub new_augmentation: extern "C" fn(
        name: RStr<'_>,
        config_json: RStr<'_>,
        host: HostModule_Ref,
    ) -> RResult<AugmentationBox, PluginError>,
    /// Since 1.1: the libtorch the plugin was built against
    /// (`tch-<v>/libtorch-<v>/cxx11abi=<0|1>`, see `sdk::TORCH_ABI_TAG`). Plain data, so the
    /// host compares it before calling any function of the plugin, and refuses another.
    pub torch_abi_tag: RStr<'static>,
    /// Since 1.1: initialises the library (like [`PluginModule::init`]) and describes it in
    /// the extensible form. Hosts of 1.1 or later call this instead of `init`.
    pub describe: extern "C" fn(host: HostModule_Ref) -> RResult<PluginInfo_Ref, PluginError>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "niftyhost_plugin";
    const NAME: &'static str = "niftyhost plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}
