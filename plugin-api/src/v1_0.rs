//! The description of a plugin as plugin-api 1.0 defined it, frozen: [`crate::PluginModule::init`]
//! returns it. A 1.0 host reads only this form; a host of 1.1 or later reads it only from a
//! plugin built against 1.0 (one whose root module has no `describe`).
//!
//! These are plain `#[repr(C)]` types: any change to them, even an appended field, would make
//! every 1.0 plugin and host incompatible. Never change them; extend [`crate::PluginInfo`]
//! and the other types of the extensible form instead.

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;

/// The kind of a component, as 1.0 knew them.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// A network: maps an image batch to logits.
    Network,
    /// A loss: maps logits and labels to a scalar.
    Loss,
    /// An augmentation: transforms one sample in the loader threads.
    Augmentation,
}

/// One hyper-parameter of a component.
///
/// `ty` is one of `int`, `float`, `bool`, `string`, `int_list`, `float_list`,
/// `string_list`; `default_json` is the default as a JSON literal.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The key in the component's config table.
    pub name: RString,
    /// The value type (see above).
    pub ty: RString,
    /// The default, as JSON.
    pub default_json: RString,
    /// One line saying what the parameter does.
    pub doc: RString,
}

/// One component of a plugin library.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ComponentInfo {
    /// The name configs use to select it (`network = "unet3d"`).
    pub name: RString,
    /// Network, loss or augmentation.
    pub kind: ComponentKind,
    /// One line for listings.
    pub description: RString,
    /// Its hyper-parameters.
    pub params: RVec<ParamSpec>,
}

/// What a plugin library says about itself when initialised through `init`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The library's name (usually the crate's lib name, e.g. `unet3d`).
    pub name: RString,
    /// The library's own version (its Cargo version).
    pub version: RString,
    /// One line for listings.
    pub description: RString,
    /// The libtorch the plugin was built against, e.g.
    /// `tch-0.24.0/libtorch-2.11.0/cxx11abi=1`. Since 1.1 the root module carries it too
    /// ([`crate::PluginModule::torch_abi_tag`]), and hosts of 1.1 or later read it there.
    pub torch_abi_tag: RString,
    /// The components it provides (only those of a kind 1.0 knows).
    pub components: RVec<ComponentInfo>,
}
