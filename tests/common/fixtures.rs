//! Fixture plugins, built outside the host's build into `target/fixtures`:
//! - `tests/fixtures` (a workspace of its own): `dropnet` (a user's network), `dropaug` (a
//!   user's augmentations),
//!   `panicky` (components that panic) and `badoutput` (components whose outputs the host
//!   must refuse);
//! - variants of `tests/fixtures/versioned` built against a generated copy of
//!   plugin-api with another version number, a changed method signature, the root module of
//!   plugin-api 1.0, or fields appended as a newer minor version would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;

use super::{repo_root, target_dir};

fn fixture_target() -> PathBuf {
    target_dir().join("fixtures")
}

fn cargo_build(manifest: &Path, env: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .envs(env.iter().copied())
        .args(["build", "--quiet", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(fixture_target())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building fixture {} failed", manifest.display());
}

/// A library of the `tests/fixtures` workspace (`dropnet`, `dropaug`, `panicky`, `badoutput`), built once.
pub fn sdk_fixture(lib: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&repo_root().join("tests/fixtures/Cargo.toml"), &[]));
    let path = fixture_target().join("debug").join(format!("lib{lib}.so"));
    assert!(path.is_file(), "fixture build did not produce {}", path.display());
    path
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}

/// How to build one variant of the `versioned` fixture.
#[derive(Default)]
pub struct Variant<'a> {
    /// The plugin-api version of the copy it is built against.
    pub version: &'a str,
    /// Cuts `(file under the variant folder, from, to)`: the text from `from` up to (not
    /// including) the next `to` is removed. Applied before `patches`.
    pub cuts: &'a [(&'a str, &'a str, &'a str)],
    /// Text replacements `(file under the variant folder, text, replacement)`, applied to
    /// the API copy (`plugin-api/src/...`) or the plugin (`plugin/src/lib.rs`).
    pub patches: &'a [(&'a str, &'a str, &'a str)],
    /// The libtorch ABI tag the plugin reports; `None`: the host's.
    pub torch_abi_tag: Option<&'a str>,
    /// Makes the plugin's `init` and `describe` fail.
    pub init_fails: bool,
}

/// The cut that removes `Network::forward_outputs` (appended in 1.2) from the API copy: the
/// network trait of plugin-api 1.0 and 1.1.
pub const NETWORK_1_1: (&str, &str, &str) =
    ("plugin-api/src/network.rs", "    /// Since 1.2: runs the network", "}\n\n/// An owned");

/// The cuts that turn the fixture and its API copy into a plugin built against plugin-api
/// 1.0: a root module without the fields appended in 1.1, a network trait without the
/// method appended in 1.2.
pub const ROOT_MODULE_1_0: &[(&str, &str, &str)] = &[
    NETWORK_1_1,
    ("plugin-api/src/root.rs", "    /// Since 1.1: the libtorch", "}\n\nimpl RootModule"),
    ("plugin-api/src/root.rs", ", PluginInfo_Ref}", "};"),
    ("plugin/src/lib.rs", "    let torch_abi_tag = RStr", "    PluginModule {"),
    ("plugin/src/lib.rs", ", torch_abi_tag, describe", " }"),
];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cut(path: &Path, from: &str, to: &str) {
    let text = read(path);
    let start = text.find(from).unwrap_or_else(|| panic!("cut start `{from}` not in {}", path.display()));
    let end = start + text[start..].find(to).unwrap_or_else(|| panic!("cut end `{to}` not in {}", path.display()));
    std::fs::write(path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

/// The `versioned` fixture built as `variant`, as `libversioned_<label>.so`.
pub fn api_variant(label: &str, variant: Variant<'_>) -> PathBuf {
    let version = variant.version;
    let root = fixture_target().join("src").join(label);
    let _ = std::fs::remove_dir_all(&root);
    let api = root.join("plugin-api");
    copy_dir(&repo_root().join("plugin-api/src"), &api.join("src"));
    std::fs::copy(repo_root().join("plugin-api/build.rs"), api.join("build.rs")).unwrap();
    std::fs::write(
        api.join("Cargo.toml"),
        format!(
            "[package]\nname = \"niftyhost-plugin-api\"\nversion = \"{version}\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n\
             [features]\nsdk = []\n\n[dependencies]\nabi_stable = \"0.11\"\n"
        ),
    )
    .unwrap();
    let plugin = root.join("plugin");
    copy_dir(&repo_root().join("tests/fixtures/versioned/src"), &plugin.join("src"));
    for (file, from, to) in variant.cuts {
        cut(&root.join(file), from, to);
    }
    for (file, from, to) in variant.patches {
        let path = root.join(file);
        let text = read(&path);
        assert!(text.contains(from), "patch target `{from}` not in {file}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }
    let lib = format!("versioned_{label}");
    std::fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fixture-{label}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\nname = \"{lib}\"\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nniftyhost-plugin-api = {{ path = \"../plugin-api\" }}\nabi_stable = \"0.11\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    // The workspace's lock file pins the same abi_stable as the host.
    std::fs::copy(repo_root().join("Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    let mut env = vec![("FIXTURE_TORCH_ABI_TAG", variant.torch_abi_tag.unwrap_or(TORCH_ABI_TAG))];
    if variant.init_fails {
        env.push(("FIXTURE_INIT_FAILS", "1"));
    }
    cargo_build(&plugin.join("Cargo.toml"), &env);
    let path = fixture_target().join("debug").join(format!("lib{lib}.so"));
    assert!(path.is_file(), "fixture build did not produce {}", path.display());
    path
}
