//! Shared build script of the crates that produce binaries linked against libtorch:
//! torch-sys gives final binaries no rpath, so `target/*/niftyhost` (and test binaries)
//! would not find `libtorch_cpu.so` outside `cargo run`. Embed the libtorch lib dir.

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    // Set by torch-sys (links = "tch") for crates that depend on it directly.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .or_else(|_| std::env::var("LIBTORCH").map(|l| format!("{l}/lib")))
        .expect("depend on torch-sys directly, or set LIBTORCH (scripts/install-libtorch.sh)");
    // The resolved folder, so binaries keep working if the checkout's .libtorch link moves.
    let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
