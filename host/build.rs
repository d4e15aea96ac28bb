//! The host's build script: the libtorch rpath (shared with the other binaries) and the
//! C++ shim that registers autograd hooks (`src/distributed/grad_hooks.cpp`), which tch lacks.

#[path = "../libtorch-link/rpath.rs"]
mod rpath;

fn main() {
    rpath::main();
    println!("cargo:rerun-if-changed=src/distributed/grad_hooks.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports the libtorch lib folder");
    let include = std::path::Path::new(&lib).join("../include");
    // The same C++ ABI torch-sys compiled its own wrapper with.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file("src/distributed/grad_hooks.cpp")
        .compile("niftyhost_grad_hooks");
}
