//! With feature `sdk`: records which libtorch this crate is built against (the ABI tag
//! that host and plugins compare) and refuses a libtorch of the wrong version.

use std::path::PathBuf;

/// Must match the `torch-sys` pin of the workspace.
const TORCH_SYS_VERSION: &str = "0.24.0";
const LIBTORCH_VERSION: &str = "2.11.0";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("CARGO_FEATURE_SDK").is_none() {
        return;
    }
    // torch-sys (links = "tch") exports the lib dir of the libtorch it compiled against.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    let root = PathBuf::from(&lib).parent().map(PathBuf::from).unwrap_or_default();
    let found = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_owned()))
        })
        .or_else(|| std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let base = found.split('+').next().unwrap_or_default();
    if base != LIBTORCH_VERSION {
        panic!(
            "libtorch at {} is version {found}, niftyhost needs {LIBTORCH_VERSION}: \
             run scripts/install-libtorch.sh (or unset LIBTORCH to use the one it installs)",
            root.display()
        );
    }
    // Unit tests of the SDK run against libtorch: give them its folder as rpath.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    println!(
        "cargo:rustc-env=NIFTYHOST_TORCH_ABI_TAG=tch-{TORCH_SYS_VERSION}/libtorch-{LIBTORCH_VERSION}/cxx11abi={abi}"
    );
}
