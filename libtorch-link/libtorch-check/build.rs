//! Checks that `LIBTORCH` (set by `.cargo/config.toml` to `.libtorch/torch`, or by the
//! user) holds libtorch 2.11.0, and says what to run when it does not.

use std::path::Path;

const WANTED: &str = "2.11.0";
const FIX: &str = "run scripts/install-libtorch.sh (it installs torch 2.11.0 into ~/.cache/niftyhost \
                   and links it as .libtorch), or point LIBTORCH at a torch 2.11.0 installation";

fn version_of(root: &Path) -> Option<String> {
    let py = std::fs::read_to_string(root.join("version.py")).ok();
    let from_py = py.as_deref().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_owned()))
    });
    from_py.or_else(|| std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_owned()))
}

fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        fail(format!("libtorch is not configured (LIBTORCH is unset): {FIX}"));
    };
    let root = Path::new(&libtorch);
    println!("cargo:rerun-if-changed={}", root.join("version.py").display());
    if !root.join("lib").join("libtorch_cpu.so").exists() {
        fail(format!("no libtorch at {} (LIBTORCH): {FIX}", root.display()));
    }
    match version_of(root) {
        Some(v) if v.split('+').next() == Some(WANTED) => {
            println!("cargo:version={WANTED}");
            println!("cargo:lib={}", root.join("lib").display());
        }
        found => fail(format!(
            "libtorch at {} is version {}, niftyhost needs {WANTED}: {FIX}",
            root.display(),
            found.as_deref().unwrap_or("unknown")
        )),
    }
}
