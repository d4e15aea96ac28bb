//! The parameter listing shown by `niftyhost <job> -h` and `niftyhost config`: every
//! host key with its default, and the parameters of every plugin component found; and
//! the clap command that shows it after a job's own help.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::CommandFactory;
use niftyhost_plugin_api::ComponentKind;

use crate::cli::{Cli, PluginArgs};
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

/// The plugin flags of a command line, read before clap so `-h` can list plugin parameters.
fn prescan_plugins(args: &[OsString]) -> PluginArgs {
    let mut out = PluginArgs::default();
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        let (flag, inline) = a.split_once('=').map_or((a, None), |(f, v)| (f, Some(v.to_owned())));
        let target = match flag {
            "--plugin" => &mut out.plugins,
            "--plugin-dir" => &mut out.plugin_dirs,
            _ => continue,
        };
        if let Some(v) = inline.or_else(|| it.next().map(str::to_owned)) {
            target.push(PathBuf::from(v));
        }
    }
    out
}

/// The clap command of `niftyhost`; when `args` ask for help, the jobs that take a
/// config list every parameter after their options (plugins found with the `--plugin`
/// and `--plugin-dir` flags of `args`).
pub fn command(args: &[OsString]) -> clap::Command {
    let cmd = Cli::command();
    let wants_help = args.iter().any(|a| a == "-h" || a == "--help");
    if !wants_help {
        return cmd;
    }
    let registry = Registry::load(&prescan_plugins(args).search_path());
    let listing = format!("{}{}", host_parameters(), plugin_parameters(&registry));
    let with_listing = |c: clap::Command| c.after_help(listing.clone());
    cmd.mut_subcommand("train", with_listing)
        .mut_subcommand("inference", with_listing)
        .mut_subcommand("export", with_listing)
        .mut_subcommand("evaluation", with_listing)
        .mut_subcommand("config", with_listing)
}
