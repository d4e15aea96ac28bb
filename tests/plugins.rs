//! Plugin discovery, loading, listing and every load error, with fixture plugins.

use std::path::PathBuf;

use niftyhost::plugins::{LoadErrorKind, Registry, SearchPath};
use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;
use niftyhost_plugin_api::ComponentKind;
use niftyhost_tests::fixtures::{api_variant, sdk_fixture, Variant};
use niftyhost_tests::{plugin_dir, run, text, tissue_config, workspace_plugin};

fn only_files(files: &[PathBuf]) -> SearchPath {
    SearchPath { files: files.to_vec(), dirs: Vec::new() }
}

#[test]
fn list_plugins_shows_every_component_with_file_and_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let libs = [workspace_plugin("unet3d"), workspace_plugin("toynet"), workspace_plugin("seglosses")];
    plugin_dir(dir.path(), &libs);
    let out = run(dir.path(), &["list-plugins", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["name"].as_str().unwrap(), r["kind"].as_str().unwrap())).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("cross_entropy", "loss"),
            ("dice", "loss"),
            ("dice_ce", "loss"),
            ("dice_squared", "loss"),
            ("focal", "loss"),
            ("generalised_dice", "loss"),
            ("generalised_wasserstein_dice", "loss"),
            ("sensitivity_specificity", "loss"),
            ("toynet", "network"),
            ("tversky", "loss"),
            ("unet3d", "network")
        ]
    );
    for r in &rows {
        assert_eq!(r["status"], "ok");
        assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
        assert!(r["file"].as_str().unwrap().starts_with("plugins/lib"), "{r}");
        assert_eq!(r["version"], "0.1.0");
    }
    // The table has a header and one row per component.
    let out = run(dir.path(), &["list-plugins"]);
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 12, "a header and one row per component: {stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("unet3d") && l.contains("network") && l.ends_with("ok")), "{stdout}");
}

#[test]
fn several_libraries_load_side_by_side() {
    // abi_stable's cached loader would return the first library for every path.
    let reg = Registry::load(&only_files(&[workspace_plugin("toynet"), workspace_plugin("unet3d")]));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    let names: Vec<String> = reg.libraries.iter().map(|l| l.info.name.to_string()).collect();
    assert_eq!(names, ["toynet", "unet3d"]);
    assert!(reg.find(ComponentKind::Network, "unet3d").is_ok());
    assert!(reg.find(ComponentKind::Network, "toynet").is_ok());
}

#[test]
fn missing_plugin_names_places_searched_and_suggests_a_near_name() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d")]);
    let out = run(dir.path(), &["list-plugins", "--plugin", "plugins/libunet3e.so"]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, _) = text(&out);
    let line = stdout.lines().find(|l| l.contains("libunet3e.so")).expect("a row for the missing file");
    assert!(line.contains("not found (plugin folders searched: plugins"), "{line}");
    assert!(line.contains("did you mean plugins/libunet3d.so?"), "{line}");
    // The good plugin is still listed as usable.
    assert!(stdout.lines().any(|l| l.starts_with("unet3d") && l.ends_with("ok")), "{stdout}");
}

#[test]
fn a_file_that_is_not_a_plugin_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libnotes.so");
    std::fs::write(&fake, "these are my notes, not a library\n").unwrap();
    let reg = Registry::load(&only_files(&[fake.clone(), workspace_plugin("toynet")]));
    assert_eq!(reg.failures.len(), 1);
    assert!(matches!(reg.failures[0].kind, LoadErrorKind::NotAPlugin(_)), "{:?}", reg.failures[0]);
    let msg = reg.failures[0].to_string();
    assert!(msg.starts_with(&format!("plugin {}: not a niftyhost plugin:", fake.display())), "{msg}");
    assert_eq!(msg.lines().count(), 1);
    assert_eq!(reg.libraries.len(), 1, "the good plugin stays usable");
    // A real shared library (libtorch's libc10.so, mapped by this process) without a plugin root module.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let c10 = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libc10.so"))
        .expect("libc10.so is mapped");
    let reg = Registry::load(&only_files(&[PathBuf::from(c10)]));
    let msg = reg.failures[0].to_string();
    assert!(msg.contains("not a niftyhost plugin: it exports no abi_stable root module"), "{msg}");
}

#[test]
fn other_plugin_api_major_versions_are_refused_with_both_versions() {
    let older = api_variant("older", Variant { version: "0.9.0", ..Variant::default() });
    let newer = api_variant("newer", Variant { version: "2.0.0", ..Variant::default() });
    let reg = Registry::load(&only_files(&[older.clone(), newer.clone(), workspace_plugin("toynet")]));
    assert_eq!(reg.failures.len(), 2, "every failing plugin is reported: {:?}", reg.failures);
    assert_eq!(reg.failures[0].kind, LoadErrorKind::ApiVersion { host: "1.0.0".into(), plugin: "0.9.0".into() });
    assert_eq!(reg.failures[1].kind, LoadErrorKind::ApiVersion { host: "1.0.0".into(), plugin: "2.0.0".into() });
    assert_eq!(
        reg.failures[1].to_string(),
        format!(
            "plugin {}: built against plugin-api 2.0.0, incompatible with this host's plugin-api 1.0.0: rebuild the plugin",
            newer.display()
        )
    );
    assert_eq!(reg.libraries.len(), 1);
}

#[test]
fn a_changed_method_signature_is_a_short_layout_error() {
    let changed = api_variant(
        "layout",
        Variant {
            version: "1.0.0",
            patches: &[(
                "plugin-api/src/network.rs",
                "fn forward(&mut self, input: &RTensor, train: bool)",
                "fn forward(&mut self, input: &RTensor, train: bool, scale: f32)",
            )],
            torch_abi_tag: Some(TORCH_ABI_TAG),
        },
    );
    let reg = Registry::load(&only_files(&[changed]));
    let err = &reg.failures[0];
    let LoadErrorKind::Layout(cause) = &err.kind else { panic!("expected a layout error, got {err:?}") };
    let msg = err.to_string();
    assert!(msg.len() < 2000, "the cause, not abi_stable's layout dump ({} bytes): {msg}", msg.len());
    assert!(!cause.is_empty());
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn failing_initialisation_is_reported_with_the_plugins_reason() {
    let lib = api_variant("initfail", Variant { version: "1.0.0", ..Variant::default() });
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert_eq!(
        reg.failures[0].to_string(),
        format!("plugin {}: initialisation failed: licence file /nonexistent/licence.txt is missing", lib.display())
    );
}

#[test]
fn panics_inside_plugins_become_errors_not_aborts() {
    let reg = Registry::load(&only_files(&[sdk_fixture("panicky")]));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    let err = reg.new_network("panic_in_build", &serde_json::json!({})).err().expect("build panics");
    assert!(err.to_string().contains("plugin panicked: deliberate panic while building"), "{err}");

    let mut net = reg.new_network("panic_in_forward", &serde_json::json!({})).unwrap();
    let x = niftyhost_plugin_api::RTensor::from_tch(tch::Tensor::zeros(
        [1, 1, 4, 4, 4],
        (tch::Kind::Float, tch::Device::Cpu),
    ));
    let err = net.forward(&x, true).into_result().unwrap_err();
    assert!(err.panicked && err.message.contains("deliberate panic in forward"), "{err}");

    let loss = reg.new_loss("torch_shape_error", &serde_json::json!({})).unwrap();
    let err = loss.loss(&x, &x, abi_stable::std_types::ROption::RNone).into_result().unwrap_err();
    assert!(err.panicked, "{err}");
    assert_eq!(err.message.lines().count(), 1, "libtorch's backtrace is cut: {}", err.message);
}

#[test]
fn a_panic_in_training_is_reported_once_as_an_error_naming_the_component() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[sdk_fixture("panicky"), workspace_plugin("seglosses")]);
    let config = tissue_config(dir.path(), "panic_in_forward", "[training]\nmax_iter = 1");
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("network `panic_in_forward` forward"), "{stderr}");
    assert_eq!(stderr.matches("deliberate panic in forward").count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked at"), "the plugin's panic hook does not print: {stderr}");
}

#[test]
fn a_plugin_built_outside_the_host_is_dropped_in_and_trains_by_name() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[sdk_fixture("dropnet"), workspace_plugin("seglosses")]);
    let out = run(dir.path(), &["list-plugins", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.iter().find(|r| r["name"] == "dropnet").expect("dropnet listed");
    assert_eq!(
        (row["kind"].as_str(), row["version"].as_str(), row["status"].as_str()),
        (Some("network"), Some("0.3.1"), Some("ok"))
    );

    let config = tissue_config(
        dir.path(),
        "dropnet",
        "batch_size = 2\nspatial_window_size = [16, 16, 16]\n[network.params]\nwidth = 3\n[training]\nmax_iter = 4\nsave_every_n = 4",
    );
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["iterations"], 4);
    assert!(report["final_loss"].as_f64().unwrap().is_finite());
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model/checkpoints/iter_00000004.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["plugins"][0]["component"], "dropnet");
    assert_eq!(meta["plugins"][0]["version"], "0.3.1");
}

#[test]
fn an_unknown_component_name_suggests_the_nearest_and_lists_failures() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libbroken.so");
    std::fs::write(&fake, "x").unwrap();
    let reg = Registry::load(&only_files(&[workspace_plugin("unet3d"), fake]));
    let err = reg.find(ComponentKind::Network, "unet3").unwrap_err().to_string();
    assert!(
        err.starts_with("no network named `unet3` in the loaded plugins; did you mean `unet3d`? (available: unet3d)"),
        "{err}"
    );
    assert!(err.contains("libraries that failed to load:") && err.contains("libbroken.so"), "{err}");
}

#[test]
fn a_plugin_built_against_another_libtorch_is_refused_with_both_tags() {
    let other = "tch-0.24.0/libtorch-2.99.0/cxx11abi=1";
    let lib = api_variant("torchtag", Variant { version: "1.0.0", torch_abi_tag: Some(other), ..Variant::default() });
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert_eq!(
        reg.failures[0].to_string(),
        format!(
            "plugin {}: built against {other}, but this host uses {TORCH_ABI_TAG}: rebuild the plugin",
            lib.display()
        )
    );
}

#[test]
fn a_plugin_of_a_newer_minor_api_with_an_appended_field_loads() {
    let appended = "    ) -> RResult<AugmentationBox, PluginError>,\n    /// Added in 1.1.\n    pub describe: extern \"C\" fn() -> abi_stable::std_types::RString,\n}";
    let lib = api_variant(
        "newerminor",
        Variant {
            version: "1.1.0",
            patches: &[
                ("plugin-api/src/root.rs", "    ) -> RResult<AugmentationBox, PluginError>,\n}", appended),
                ("plugin/src/lib.rs", "new_loss, new_augmentation }", "new_loss, new_augmentation, describe }"),
            ],
            torch_abi_tag: Some(TORCH_ABI_TAG),
        },
    );
    let reg = Registry::load(&only_files(&[lib]));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    let (found, _) = reg.find(ComponentKind::Network, "versioned_net").unwrap();
    assert_eq!(found.info.name.as_str(), "versioned");
}
