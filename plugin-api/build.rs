//! With feature `sdk`: records which libtorch this crate is built against, as the ABI tag
//! that host and plugins compare (`libtorch-link/libtorch-check` has verified its version), and
//! gives the SDK's unit tests an rpath to it.

/// Must match the `torch-sys` pin of the workspace.
const TORCH_SYS_VERSION: &str = "0.24.0";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("CARGO_FEATURE_SDK").is_none() {
        return;
    }
    let version =
        std::env::var("DEP_NIFTYHOST_LIBTORCH_VERSION").expect("niftyhost-libtorch-check exports the version");
    let lib = std::env::var("DEP_NIFTYHOST_LIBTORCH_LIB").expect("niftyhost-libtorch-check exports the lib folder");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    println!("cargo:rustc-env=NIFTYHOST_TORCH_ABI_TAG=tch-{TORCH_SYS_VERSION}/libtorch-{version}/cxx11abi={abi}");
}
