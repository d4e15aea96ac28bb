//! The parameter listing shown by `niftyhost <job> -h` and `niftyhost config`: every
//! host key with its default, and the parameters of every plugin component found.

use std::fmt::Write as _;

use niftyhost_plugin_api::ComponentKind;

use crate::config::{INPUT_KEYS, KEYS};
use crate::plugins::Registry;

/// The host's keys, section by section.
pub fn host_parameters() -> String {
    let mut out =
        String::from("Parameters (config keys; override with --set key=value or NIFTYHOST_<SECTION>__<KEY>=value):\n");
    for spec in KEYS {
        let _ = writeln!(out, "  {:<34} {:<18} {}", spec.key, spec.default, spec.doc);
    }
    for spec in INPUT_KEYS {
        let _ = writeln!(out, "  {:<34} {:<18} {}", format!("input.<name>.{}", spec.key), spec.default, spec.doc);
    }
    out
}

/// The parameters of every network, loss and augmentation component in `registry`.
pub fn plugin_parameters(registry: &Registry) -> String {
    let mut out = String::new();
    for (kind, table) in [
        (ComponentKind::Network, "network.params"),
        (ComponentKind::Loss, "training.loss_params"),
        (ComponentKind::Augmentation, "training.augmentation.params"),
    ] {
        for (lib, c) in registry.components(kind) {
            let file = lib.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = writeln!(out, "\n{} `{}` ({file} {}): keys of [{table}]", kind.as_str(), c.name, lib.info.version);
            if c.params.is_empty() {
                let _ = writeln!(out, "  (no parameters)");
            }
            for p in c.params.iter() {
                let _ = writeln!(
                    out,
                    "  {:<34} {:<18} {} ({})",
                    format!("{table}.{}", p.name),
                    p.default_json,
                    p.doc,
                    p.ty
                );
            }
        }
    }
    if out.is_empty() {
        out.push_str("\n(no plugins found: use --plugin FILE or --plugin-dir DIR to list their parameters)\n");
    }
    for f in &registry.failures {
        let _ = writeln!(out, "  ! {f}");
    }
    out
}
