//! Declaring a plugin library and exporting its root module.

use std::sync::OnceLock;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use tch::nn::VarStore;
use tch::Device;

use super::adapters::{AugmentationAdapter, LossAdapter, NetworkAdapter};
use super::{guard, host_log, AugmentFn, Host, LossFn, NetworkModel, Param, Params, TORCH_ABI_TAG};
use crate::{
    v1_0, AugmentationBox, Augmentation_TO, ComponentInfo, ComponentInfo_Ref, ComponentKind, HostModule_Ref, LogLevel,
    LossBox, Loss_TO, NetworkBox, Network_TO, ParamSpec_Ref, PluginError, PluginInfo, PluginInfo_Ref,
    HOST_NETWORK_KEYS,
};

/// Builds a network under `root` (a fresh CPU `VarStore`) from validated parameters.
pub type BuildNetwork = fn(root: &tch::nn::Path, params: &Params) -> Result<Box<dyn NetworkModel>, PluginError>;

/// A network component: its name, schema and constructor.
pub struct NetworkDef {
    /// Name used in configs.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Its hyper-parameters (besides [`HOST_NETWORK_KEYS`], always given).
    pub params: &'static [Param],
    /// Its constructor.
    pub build: BuildNetwork,
}

/// A loss component.
pub struct LossDef {
    /// Name used in configs.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Its hyper-parameters.
    pub params: &'static [Param],
    /// Builds the loss from validated parameters.
    pub build: fn(params: &Params) -> Result<Box<dyn LossFn>, PluginError>,
}

/// An augmentation component.
pub struct AugmentationDef {
    /// Name used in configs.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Its hyper-parameters.
    pub params: &'static [Param],
    /// Builds the augmentation from validated parameters.
    pub build: fn(params: &Params) -> Result<Box<dyn AugmentFn>, PluginError>,
}

/// Everything a plugin library provides.
pub struct PluginDef {
    /// The library's name.
    pub name: &'static str,
    /// Its version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Its networks.
    pub networks: &'static [NetworkDef],
    /// Its losses.
    pub losses: &'static [LossDef],
    /// Its augmentations.
    pub augmentations: &'static [AugmentationDef],
}

fn component(
    name: &'static str,
    kind: ComponentKind,
    description: &'static str,
    params: &[Param],
) -> ComponentInfo_Ref {
    let params: Vec<ParamSpec_Ref> = params.iter().map(Param::spec).collect();
    ComponentInfo {
        name: RStr::from_str(name),
        kind,
        description: RStr::from_str(description),
        params: RSlice::from_slice(params.leak()),
    }
    .leak_into_prefix()
}

impl PluginDef {
    /// The description sent to the host. It is leaked (prefix types are `'static`):
    /// [`crate::export_plugin!`] builds it once per library.
    pub fn info(&self) -> PluginInfo_Ref {
        let networks = self.networks.iter().map(|d| component(d.name, ComponentKind::Network, d.description, d.params));
        let losses = self.losses.iter().map(|d| component(d.name, ComponentKind::Loss, d.description, d.params));
        let augs =
            self.augmentations.iter().map(|d| component(d.name, ComponentKind::Augmentation, d.description, d.params));
        let components: Vec<ComponentInfo_Ref> = networks.chain(losses).chain(augs).collect();
        PluginInfo {
            name: RStr::from_str(self.name),
            version: RStr::from_str(self.version),
            description: RStr::from_str(self.description),
            components: RSlice::from_slice(components.leak()),
        }
        .leak_into_prefix()
    }

    fn unknown(&self, kind: ComponentKind, name: &str) -> PluginError {
        PluginError::new(format!("plugin `{}` has no {kind} named `{name}`", self.name))
    }
}

/// The 1.0 form of a description, for a 1.0 host: the same components, less those of a kind
/// 1.0 does not know.
pub fn info_v1_0(info: PluginInfo_Ref) -> v1_0::PluginInfo {
    let kind_v1_0 = |kind: ComponentKind| match kind {
        ComponentKind::Network => Some(v1_0::ComponentKind::Network),
        ComponentKind::Loss => Some(v1_0::ComponentKind::Loss),
        ComponentKind::Augmentation => Some(v1_0::ComponentKind::Augmentation),
        _ => None,
    };
    let param = |p: &ParamSpec_Ref| v1_0::ParamSpec {
        name: p.name().into(),
        ty: p.ty().into(),
        default_json: p.default_json().into(),
        doc: p.doc().into(),
    };
    let components = info.components().as_slice().iter().filter_map(|c| {
        Some(v1_0::ComponentInfo {
            name: c.name().into(),
            kind: kind_v1_0(c.kind())?,
            description: c.description().into(),
            params: c.params().as_slice().iter().map(param).collect(),
        })
    });
    v1_0::PluginInfo {
        name: info.name().into(),
        version: info.version().into(),
        description: info.description().into(),
        torch_abi_tag: RString::from(TORCH_ABI_TAG),
        components: components.collect::<RVec<_>>(),
    }
}

/// The library's description, built on first use and kept in `cache` (the library's own).
fn cached_info(def: &'static PluginDef, cache: &'static OnceLock<PluginInfo_Ref>) -> PluginInfo_Ref {
    *cache.get_or_init(|| def.info())
}

/// Body of the root module's `describe` (called by hosts of plugin-api 1.1 and later).
pub fn describe(
    def: &'static PluginDef,
    cache: &'static OnceLock<PluginInfo_Ref>,
    host: HostModule_Ref,
) -> RResult<PluginInfo_Ref, PluginError> {
    guard(|| {
        Host::install(host, def.name);
        Ok(cached_info(def, cache))
    })
}

/// Body of the root module's `init` (called by 1.0 hosts).
pub fn init(
    def: &'static PluginDef,
    cache: &'static OnceLock<PluginInfo_Ref>,
    host: HostModule_Ref,
) -> RResult<v1_0::PluginInfo, PluginError> {
    guard(|| {
        Host::install(host, def.name);
        Ok(info_v1_0(cached_info(def, cache)))
    })
}

/// Body of the root module's `new_network`.
pub fn new_network(def: &'static PluginDef, name: RStr<'_>, config: RStr<'_>) -> RResult<NetworkBox, PluginError> {
    guard(|| {
        let d = def.networks.iter().find(|d| d.name == name.as_str());
        let d = d.ok_or_else(|| def.unknown(ComponentKind::Network, name.as_str()))?;
        let params = Params::parse(d.name, config.as_str(), d.params, &HOST_NETWORK_KEYS)?;
        let vs = VarStore::new(Device::Cpu);
        let model = (d.build)(&vs.root(), &params)?;
        let scalars: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        host_log(LogLevel::Debug, &format!("built network `{}` with {scalars} trainable parameters", d.name));
        let adapter = NetworkAdapter { name: d.name, vs, model };
        Ok(Network_TO::from_value(adapter, TD_Opaque))
    })
}

/// Body of the root module's `new_loss`.
pub fn new_loss(def: &'static PluginDef, name: RStr<'_>, config: RStr<'_>) -> RResult<LossBox, PluginError> {
    guard(|| {
        let d = def.losses.iter().find(|d| d.name == name.as_str());
        let d = d.ok_or_else(|| def.unknown(ComponentKind::Loss, name.as_str()))?;
        let params = Params::parse(d.name, config.as_str(), d.params, &[])?;
        Ok(Loss_TO::from_value(LossAdapter((d.build)(&params)?), TD_Opaque))
    })
}

/// Body of the root module's `new_augmentation`.
pub fn new_augmentation(
    def: &'static PluginDef,
    name: RStr<'_>,
    config: RStr<'_>,
) -> RResult<AugmentationBox, PluginError> {
    guard(|| {
        let d = def.augmentations.iter().find(|d| d.name == name.as_str());
        let d = d.ok_or_else(|| def.unknown(ComponentKind::Augmentation, name.as_str()))?;
        let params = Params::parse(d.name, config.as_str(), d.params, &[])?;
        Ok(Augmentation_TO::from_value(AugmentationAdapter((d.build)(&params)?), TD_Opaque))
    })
}

/// Exports a `static` [`PluginDef`] as this library's root module.
///
/// Use it once per cdylib, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    ($def:path) => {
        #[$crate::abi_stable::export_root_module]
        fn niftyhost_root_module() -> $crate::PluginModule_Ref {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            use $crate::abi_stable::std_types::{RResult, RStr};
            use $crate::{AugmentationBox, HostModule_Ref, LossBox, NetworkBox, PluginError, PluginInfo_Ref};

            static INFO: std::sync::OnceLock<PluginInfo_Ref> = std::sync::OnceLock::new();
            extern "C" fn init(host: HostModule_Ref) -> RResult<$crate::v1_0::PluginInfo, PluginError> {
                $crate::sdk::export::init(&$def, &INFO, host)
            }
            extern "C" fn describe(host: HostModule_Ref) -> RResult<PluginInfo_Ref, PluginError> {
                $crate::sdk::export::describe(&$def, &INFO, host)
            }
            extern "C" fn new_network(
                n: RStr<'_>,
                c: RStr<'_>,
                _h: HostModule_Ref,
            ) -> RResult<NetworkBox, PluginError> {
                $crate::sdk::export::new_network(&$def, n, c)
            }
            extern "C" fn new_loss(n: RStr<'_>, c: RStr<'_>, _h: HostModule_Ref) -> RResult<LossBox, PluginError> {
                $crate::sdk::export::new_loss(&$def, n, c)
            }
            extern "C" fn new_augmentation(
                n: RStr<'_>,
                c: RStr<'_>,
                _h: HostModule_Ref,
            ) -> RResult<AugmentationBox, PluginError> {
                $crate::sdk::export::new_augmentation(&$def, n, c)
            }
            let torch_abi_tag = RStr::from_str($crate::sdk::TORCH_ABI_TAG);
            $crate::PluginModule { init, new_network, new_loss, new_augmentation, torch_abi_tag, describe }
                .leak_into_prefix()
        }
    };
}
