//! What a loaded library declares about itself, in the host's own types: read from the
//! extensible description of plugin-api 1.1 and later (`describe`), or from the frozen 1.0
//! one (`init`) of a plugin built against 1.0.

use niftyhost_plugin_api::{v1_0, ComponentInfo_Ref, ComponentKind, ParamSpec_Ref, PluginInfo_Ref};

/// A library's description.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryInfo {
    /// The library's name (e.g. `unet3d`).
    pub name: String,
    /// The library's own version.
    pub version: String,
    /// One line for listings.
    pub description: String,
    /// Its components, including those of a kind this host does not know.
    pub components: Vec<Component>,
}

/// One component of a library.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// The name configs use to select it.
    pub name: String,
    /// Its kind; one this host does not know (from a newer plugin-api) is listed, never used.
    pub kind: ComponentKind,
    /// One line for listings.
    pub description: String,
    /// Its hyper-parameters.
    pub params: Vec<Parameter>,
}

/// One hyper-parameter of a component.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The key in the component's config table.
    pub name: String,
    /// The value type (`int`, `float_list`, ...).
    pub ty: String,
    /// The default, as JSON.
    pub default_json: String,
    /// One line saying what it does.
    pub doc: String,
}

impl From<ParamSpec_Ref> for Parameter {
    fn from(p: ParamSpec_Ref) -> Parameter {
        Parameter {
            name: p.name().to_string(),
            ty: p.ty().to_string(),
            default_json: p.default_json().to_string(),
            doc: p.doc().to_string(),
        }
    }
}

impl From<ComponentInfo_Ref> for Component {
    fn from(c: ComponentInfo_Ref) -> Component {
        Component {
            name: c.name().to_string(),
            kind: c.kind(),
            description: c.description().to_string(),
            params: c.params().as_slice().iter().map(|p| Parameter::from(*p)).collect(),
        }
    }
}

impl From<PluginInfo_Ref> for LibraryInfo {
    fn from(info: PluginInfo_Ref) -> LibraryInfo {
        LibraryInfo {
            name: info.name().to_string(),
            version: info.version().to_string(),
            description: info.description().to_string(),
            components: info.components().as_slice().iter().map(|c| Component::from(*c)).collect(),
        }
    }
}

impl From<&v1_0::PluginInfo> for LibraryInfo {
    fn from(info: &v1_0::PluginInfo) -> LibraryInfo {
        let param = |p: &v1_0::ParamSpec| Parameter {
            name: p.name.to_string(),
            ty: p.ty.to_string(),
            default_json: p.default_json.to_string(),
            doc: p.doc.to_string(),
        };
        let component = |c: &v1_0::ComponentInfo| Component {
            name: c.name.to_string(),
            kind: ComponentKind::from(c.kind),
            description: c.description.to_string(),
            params: c.params.iter().map(param).collect(),
        };
        LibraryInfo {
            name: info.name.to_string(),
            version: info.version.to_string(),
            description: info.description.to_string(),
            components: info.components.iter().map(component).collect(),
        }
    }
}
