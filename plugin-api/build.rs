//! With feature `sdk`: records which libtorch this crate is built against, as the ABI tag
//! that host and plugins compare (`libtorch-link/libtorch-check` has verified its version), and
//! gives the SDK's unit tests an rpath to it.
//!
//! The tag's `tch-<v>` part is the torch-sys version, read from this crate's dependency on
//! torch-sys: an exact requirement (`=x.y.z`), so it is the version cargo builds, written
//! down once. The requirement is in this crate's manifest, or, with `workspace = true`, in
//! the workspace's `[workspace.dependencies]` (a packaged crate has it inlined).

use std::path::{Path, PathBuf};

/// The value of `key = "value"` on a TOML line, or the string literal of `key = "value"`'s
/// short form (`torch-sys = "=0.24.0"`).
fn string_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split_once(key)?.1.trim_start().strip_prefix('=')?.trim_start();
    rest.strip_prefix('"')?.split('"').next()
}

/// The line of the `torch-sys` dependency in a manifest (inline-table or string form).
fn torch_sys_line(manifest: &str) -> Option<&str> {
    manifest.lines().map(str::trim).find(|l| l.starts_with("torch-sys") && l[9..].trim_start().starts_with('='))
}

/// The manifest of the workspace that `dir` belongs to: the nearest `Cargo.toml` above it
/// with a `[workspace]` table.
fn workspace_manifest(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .map(|d| d.join("Cargo.toml"))
        .find(|m| std::fs::read_to_string(m).is_ok_and(|text| text.lines().any(|l| l.trim() == "[workspace]")))
}

/// The exact torch-sys version this crate depends on.
fn torch_sys_version() -> Result<String, String> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let own = dir.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", own.display());
    let text = std::fs::read_to_string(&own).map_err(|e| format!("{}: {e}", own.display()))?;
    let line = torch_sys_line(&text).ok_or_else(|| format!("{} has no torch-sys dependency", own.display()))?;
    let (manifest, requirement) = if line.contains("workspace = true") {
        let root = workspace_manifest(&dir).ok_or("torch-sys is inherited, but no workspace manifest was found")?;
        println!("cargo:rerun-if-changed={}", root.display());
        let text = std::fs::read_to_string(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let line = torch_sys_line(&text).ok_or_else(|| format!("{} has no torch-sys dependency", root.display()))?;
        let requirement = string_value(line, "version").or_else(|| string_value(line, "torch-sys")).map(str::to_owned);
        (root, requirement)
    } else {
        let requirement = string_value(line, "version").or_else(|| string_value(line, "torch-sys")).map(str::to_owned);
        (own, requirement)
    };
    let requirement = requirement.ok_or_else(|| format!("{}: no version for torch-sys", manifest.display()))?;
    match requirement.strip_prefix('=') {
        Some(version) => Ok(version.trim().to_owned()),
        None => Err(format!(
            "{}: torch-sys must be pinned exactly (`=x.y.z`), found `{requirement}`: the ABI tag names the version",
            manifest.display()
        )),
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("CARGO_FEATURE_SDK").is_none() {
        return;
    }
    let torch_sys = torch_sys_version().unwrap_or_else(|e| {
        eprintln!("error: cannot tell the torch-sys version for the libtorch ABI tag: {e}");
        std::process::exit(1)
    });
    let version =
        std::env::var("DEP_NIFTYHOST_LIBTORCH_VERSION").expect("niftyhost-libtorch-check exports the version");
    let lib = std::env::var("DEP_NIFTYHOST_LIBTORCH_LIB").expect("niftyhost-libtorch-check exports the lib folder");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    println!("cargo:rustc-env=NIFTYHOST_TORCH_ABI_TAG=tch-{torch_sys}/libtorch-{version}/cxx11abi={abi}");
}
