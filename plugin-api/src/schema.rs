//! What a plugin declares about itself, in the extensible form added in plugin-api 1.1 and
//! returned by [`crate::PluginModule::describe`]: its components and their parameters.
//!
//! [`PluginInfo`], [`ComponentInfo`] and [`ParamSpec`] are prefix types: a later minor
//! version may append fields after the last one, and a reader gets `None` for a field the
//! writer's version did not have. [`ComponentKind`] is an integer code, so a later minor
//! version may add kinds; a host lists a kind it does not know and skips it.
//!
//! Values of these types are `'static` (a plugin builds them once and leaks them), and
//! every field is `Copy`, as prefix-type accessors require.

use std::fmt;

use abi_stable::std_types::{RSlice, RStr};
use abi_stable::StableAbi;

/// The kind of a component: an integer code, with the kinds this version knows as constants
/// spelled like the variants of 1.0's enum ([`crate::v1_0::ComponentKind`]).
///
/// Later minor versions may add codes; [`ComponentKind::known_name`] is `None` for those.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComponentKind(u32);

#[allow(non_upper_case_globals)]
impl ComponentKind {
    /// A network: maps an image batch to logits.
    pub const Network: ComponentKind = ComponentKind(0);
    /// A loss: maps logits and labels to a scalar.
    pub const Loss: ComponentKind = ComponentKind(1);
    /// An augmentation: transforms one sample in the loader threads.
    pub const Augmentation: ComponentKind = ComponentKind(2);

    /// The kind with this code (known to this version or not).
    pub const fn from_code(code: u32) -> ComponentKind {
        ComponentKind(code)
    }

    /// Its code.
    pub const fn code(self) -> u32 {
        self.0
    }

    /// The lowercase name used in configs and listings, for a kind this version knows.
    pub fn known_name(self) -> Option<&'static str> {
        match self {
            ComponentKind::Network => Some("network"),
            ComponentKind::Loss => Some("loss"),
            ComponentKind::Augmentation => Some("augmentation"),
            _ => None,
        }
    }

    /// The lowercase name used in configs and listings; `unknown` for a kind of a newer
    /// plugin-api (its [`fmt::Display`] says `unknown kind <code>`).
    pub fn as_str(self) -> &'static str {
        self.known_name().unwrap_or("unknown")
    }
}

impl From<crate::v1_0::ComponentKind> for ComponentKind {
    fn from(kind: crate::v1_0::ComponentKind) -> ComponentKind {
        match kind {
            crate::v1_0::ComponentKind::Network => ComponentKind::Network,
            crate::v1_0::ComponentKind::Loss => ComponentKind::Loss,
            crate::v1_0::ComponentKind::Augmentation => ComponentKind::Augmentation,
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown kind {}", self.0),
        }
    }
}

impl fmt::Debug for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One hyper-parameter of a component.
///
/// `ty` is one of `int`, `float`, `bool`, `string`, `int_list`, `float_list`,
/// `string_list`, `int_list_list` (a list of integer lists, since 1.2; a host that does not
/// know a type shows it as given); `default_json` is the default as a JSON literal.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ParamSpec_Ref)))]
#[sabi(missing_field(option))]
pub struct ParamSpec {
    /// The key in the component's config table.
    pub name: RStr<'static>,
    /// The value type (see above).
    pub ty: RStr<'static>,
    /// The default, as JSON.
    pub default_json: RStr<'static>,
    /// One line saying what the parameter does.
    #[sabi(last_prefix_field)]
    pub doc: RStr<'static>,
}

/// One component of a plugin library.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ComponentInfo_Ref)))]
#[sabi(missing_field(option))]
pub struct ComponentInfo {
    /// The name configs use to select it (`network = "unet3d"`).
    pub name: RStr<'static>,
    /// Network, loss, augmentation, or a kind of a newer plugin-api.
    pub kind: ComponentKind,
    /// One line for listings.
    pub description: RStr<'static>,
    /// Its hyper-parameters.
    #[sabi(last_prefix_field)]
    pub params: RSlice<'static, ParamSpec_Ref>,
}

/// What a plugin library says about itself through `describe`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginInfo_Ref)))]
#[sabi(missing_field(option))]
pub struct PluginInfo {
    /// The library's name (usually the crate's lib name, e.g. `unet3d`).
    pub name: RStr<'static>,
    /// The library's own version (its Cargo version).
    pub version: RStr<'static>,
    /// One line for listings.
    pub description: RStr<'static>,
    /// The components it provides.
    #[sabi(last_prefix_field)]
    pub components: RSlice<'static, ComponentInfo_Ref>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_1_0_keep_their_names_and_an_unknown_kind_says_its_code() {
        for (old, name) in [
            (crate::v1_0::ComponentKind::Network, "network"),
            (crate::v1_0::ComponentKind::Loss, "loss"),
            (crate::v1_0::ComponentKind::Augmentation, "augmentation"),
        ] {
            let kind = ComponentKind::from(old);
            assert_eq!((kind.known_name(), kind.to_string()), (Some(name), name.to_owned()));
        }
        let future = ComponentKind::from_code(7);
        assert_eq!((future.known_name(), future.as_str()), (None, "unknown"));
        assert_eq!(future.to_string(), "unknown kind 7");
        assert_eq!(format!("{:?}", ComponentKind::Loss), "loss");
    }
}
