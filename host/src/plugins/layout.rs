//! The compatibility check of a plugin's root module against the host's: plugin-api
//! versions, then abi_stable's layout check in the direction the versions call for, and a
//! one-line summary of a mismatch built from the structure of abi_stable's errors.

use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility, AbiInstability, AbiInstabilityErrors, ExpectedFound,
};
use abi_stable::library::{LibHeader, RootModule};
use abi_stable::sabi_types::VersionNumber;
use abi_stable::type_layout::TLFieldOrFunction;
use abi_stable::StableAbi;
use niftyhost_plugin_api::PluginModule_Ref;

use super::load::LoadErrorKind;

/// The plugin-api version this host is built against.
pub fn host_api_version() -> VersionNumber {
    VersionNumber::new(PluginModule_Ref::VERSION_STRINGS).expect("the crate's own version parses")
}

/// Checks that a library's root module can be used as this host's [`PluginModule_Ref`], and
/// returns the plugin-api version it was built against.
///
/// abi_stable checks a library as an implementation of the host's interface, which must
/// have at least the host's fields: right for a plugin of the same or a newer minor version.
/// A plugin of an older minor version has fewer root-module fields; then the check runs the
/// other way round (the plugin's layout must be a prefix of the host's), and the fields it
/// lacks read as `None`.
///
/// # Errors
/// Another major version ([`LoadErrorKind::ApiVersion`]), unparsable version strings or no
/// layout ([`LoadErrorKind::NotAPlugin`]), or a layout mismatch ([`LoadErrorKind::Layout`]).
pub fn check_root_module(header: &LibHeader) -> Result<VersionNumber, LoadErrorKind> {
    let host = host_api_version();
    let plugin = VersionNumber::new(header.version_strings())
        .map_err(|e| LoadErrorKind::NotAPlugin(format!("its plugin-api version does not parse: {e}")))?;
    if plugin.major != host.major {
        return Err(LoadErrorKind::ApiVersion { host: host.to_string(), plugin: plugin.to_string() });
    }
    let Some(plugin_layout) = header.layout() else {
        return Err(LoadErrorKind::NotAPlugin("its root module carries no layout to check".into()));
    };
    let host_layout = <PluginModule_Ref as StableAbi>::LAYOUT;
    let older = plugin.minor < host.minor;
    let checked = if older {
        check_layout_compatibility(plugin_layout, host_layout)
    } else {
        check_layout_compatibility(host_layout, plugin_layout)
    };
    checked.map_err(|errors| LoadErrorKind::Layout(summary(&errors, older)))?;
    Ok(plugin)
}

/// (host's, plugin's) from a pair that abi_stable ordered (expected, found).
fn sides<T>(pair: &ExpectedFound<T>, plugin_first: bool) -> (&T, &T) {
    if plugin_first {
        (&pair.found, &pair.expected)
    } else {
        (&pair.expected, &pair.found)
    }
}

/// One mismatch in a few words, host's side first.
fn describe(instability: &AbiInstability, plugin_first: bool) -> String {
    use AbiInstability as AI;
    macro_rules! differ {
        ($what:expr, $pair:expr, $fmt:literal) => {{
            let (host, plugin) = sides($pair, plugin_first);
            format!(concat!("{} differs (host ", $fmt, ", plugin ", $fmt, ")"), $what, host, plugin)
        }};
    }
    match instability {
        AI::Name(pair) => differ!("type", pair, "`{}`"),
        AI::Package(pair) => differ!("package", pair, "`{}`"),
        AI::PackageVersion(pair) => differ!("package version", pair, "{}"),
        AI::FieldCountMismatch(pair) => differ!("field count", pair, "{}"),
        AI::MismatchedPrefixSize(pair) => differ!("prefix field count (a moved last_prefix_field)", pair, "{}"),
        AI::UnexpectedField(pair) => {
            let (host, plugin) = sides(pair, plugin_first);
            let (host, plugin) = (host.name(), plugin.name());
            // A function's parameters are compared as one field named by their list.
            if host.contains(',') || plugin.contains(',') {
                let count = |names: &str| names.split(',').filter(|n| !n.is_empty()).count();
                format!("parameter count differs (host {}, plugin {})", count(host), count(plugin))
            } else {
                format!("field differs (host `{host}`, plugin `{plugin}`)")
            }
        }
        AI::Size(pair) => differ!("size", pair, "{}"),
        AI::Alignment(pair) => differ!("alignment", pair, "{}"),
        AI::MismatchedPrimitive(pair) => differ!("primitive type", pair, "{:?}"),
        AI::TLDataDiscriminant(pair) => differ!("kind of type", pair, "{:?}"),
        AI::TooManyVariants(pair) => differ!("variant count", pair, "{}"),
        AI::UnexpectedVariant(pair) => differ!("variant", pair, "`{}`"),
        AI::ReprAttr(pair) => differ!("repr", pair, "{:?}"),
        AI::MismatchedExhaustiveness(pair) => differ!("exhaustiveness", pair, "{:?}"),
        AI::NonZeroness(pair) => differ!("non-zeroness", pair, "{}"),
        AI::GenericParamCount(_) | AI::MismatchedConstParam(_) => "generic parameters differ".into(),
        AI::FieldLifetimeMismatch(_) | AI::FnLifetimeMismatch(_) => "lifetimes differ".into(),
        AI::FnQualifierMismatch(_) => "function qualifiers differ".into(),
        AI::MismatchedPrefixConditionality(_) => "conditional prefix fields differ".into(),
        AI::EnumDiscriminant(_) => "enum discriminants differ".into(),
        AI::IncompatibleWithNonExhaustive(_) => "non-exhaustive enum storage too small".into(),
        AI::PackageVersionParseError(_) => "a package version does not parse".into(),
        AI::CyclicTypeChecking { .. } | AI::ReentrantLayoutCheckingCall => "the layout check could not finish".into(),
        AI::NoneExtraChecks | AI::ExtraCheckError(_) | AI::TagError { .. } => "extra layout checks failed".into(),
    }
}

/// Where a mismatch is: the path of fields and functions from the root module (tuple-field
/// indices left out, a function named once rather than as field and function).
fn location(trace: &[ExpectedFound<TLFieldOrFunction>]) -> String {
    let mut steps: Vec<&str> = trace
        .iter()
        .map(|step| match &step.expected {
            TLFieldOrFunction::Field(field) => field.name(),
            TLFieldOrFunction::Function(function) => function.name.as_str(),
        })
        .filter(|name| !name.chars().all(|c| c.is_ascii_digit()))
        .collect();
    steps.dedup();
    if steps.is_empty() {
        "root module".to_owned()
    } else {
        format!("`{}`", steps.join("."))
    }
}

/// The mismatches of a failed check, one `location: what` per error, on one line.
fn summary(errors: &AbiInstabilityErrors, plugin_first: bool) -> String {
    let mut causes: Vec<String> = Vec::new();
    for error in errors.errors.iter().filter(|e| !e.errs.is_empty()) {
        let what: Vec<String> = error.errs.iter().map(|i| describe(i, plugin_first)).collect();
        let cause = format!("{}: {}", location(&error.stack_trace), what.join(", "));
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    if causes.is_empty() {
        "the root module's layout differs".to_owned()
    } else {
        causes.join(" | ")
    }
}
