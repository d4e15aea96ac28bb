//! Plugin discovery, loading, listing and every load error, with fixture plugins.

use std::path::{Path, PathBuf};

use niftyhost::plugins::{LoadErrorKind, Registry, SearchPath};
use niftyhost_plugin_api::sdk::TORCH_ABI_TAG;
use niftyhost_plugin_api::ComponentKind;
use niftyhost_tests::fixtures::{api_variant, sdk_fixture, Variant, NETWORK_1_1, ROOT_MODULE_1_0};
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
fn list_plugins_shows_shadowed_copies_only_with_verbose_in_columns_sized_to_content() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d"), workspace_plugin("seglosses")]);
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::copy(workspace_plugin("unet3d"), first.join("libunet3d.so")).unwrap();

    let out = run(dir.path(), &["list-plugins", "--plugin-dir", "first"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(!stdout.contains("shadowed by"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("unet3d ")).count(), 1, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("unet3d") && l.contains("first/libunet3d.so")), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("(1 shadowed copies not shown; -v lists them)"), "{stdout}");
    // Every column starts at the same place on every line, long names included.
    let table: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('(')).collect();
    let starts = |line: &str| -> Vec<usize> {
        let mut starts = vec![0];
        let bytes = line.as_bytes();
        for i in 2..bytes.len() {
            if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' && starts.len() < 6 {
                starts.push(i);
            }
        }
        starts
    };
    let header = starts(table[0]);
    assert_eq!(header.len(), 6, "{}", table[0]);
    for line in &table {
        assert_eq!(starts(line), header, "{line}\n{stdout}");
    }
    let long = table.iter().find(|l| l.starts_with("generalised_wasserstein_dice")).expect("a long name");
    assert_eq!(&long[header[1]..header[1] + 4], "loss", "{long}");

    let out = run(dir.path(), &["list-plugins", "--plugin-dir", "first", "-v"]);
    let (stdout, _) = text(&out);
    let shadowed = stdout.lines().find(|l| l.contains("shadowed by")).expect("a shadowed row with -v");
    assert!(shadowed.starts_with("unet3d") && shadowed.contains("plugins/libunet3d.so"), "{stdout}");
    assert!(shadowed.ends_with("shadowed by first/libunet3d.so"), "{shadowed}");

    // --json keeps every row.
    let out = run(dir.path(), &["list-plugins", "--plugin-dir", "first", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.iter().filter(|r| r["name"] == "unet3d").count(), 2);
    assert!(rows.iter().any(|r| r["status"] == "shadowed by first/libunet3d.so"), "{rows:?}");
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
    // A `--plugin` path that does not exist is a usage error.
    assert_eq!(out.status.code(), Some(2));
    let (stdout, _) = text(&out);
    let line = stdout.lines().find(|l| l.contains("libunet3e.so")).expect("a row for the missing file");
    assert!(line.contains("not found (plugin folders searched: plugins"), "{line}");
    assert!(line.contains("did you mean plugins/libunet3d.so?"), "{line}");
    // The good plugin is still listed as usable.
    assert!(stdout.lines().any(|l| l.starts_with("unet3d") && l.ends_with("ok")), "{stdout}");
    // A file that exists but is no plugin is not a usage error: exit code 1.
    std::fs::write(dir.path().join("plugins/libnotes.so"), "notes").unwrap();
    let out = run(dir.path(), &["list-plugins", "--plugin", "plugins/libnotes.so"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: plugin plugins/libnotes.so: not a niftyhost plugin"), "{stderr}");
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
    assert_eq!(reg.failures[0].kind, LoadErrorKind::ApiVersion { host: "1.2.0".into(), plugin: "0.9.0".into() });
    assert_eq!(reg.failures[1].kind, LoadErrorKind::ApiVersion { host: "1.2.0".into(), plugin: "2.0.0".into() });
    assert_eq!(
        reg.failures[1].to_string(),
        format!(
            "plugin {}: built against plugin-api 2.0.0, incompatible with this host's plugin-api 1.2.0: rebuild the plugin",
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
            // The host's own plugin-api version.
            version: "1.2.0",
            patches: &[
                (
                    "plugin-api/src/network.rs",
                    "fn forward(&mut self, input: &RTensor, train: bool)",
                    "fn forward(&mut self, input: &RTensor, train: bool, scale: f32)",
                ),
                // `forward_outputs`'s default calls `forward`.
                ("plugin-api/src/network.rs", "self.forward(input, train)", "self.forward(input, train, 1.0)"),
            ],
            init_fails: true,
            ..Variant::default()
        },
    );
    let reg = Registry::load(&only_files(std::slice::from_ref(&changed)));
    let err = &reg.failures[0];
    let LoadErrorKind::Layout(cause) = &err.kind else { panic!("expected a layout error, got {err:?}") };
    let msg = err.to_string();
    assert!(msg.len() < 2000, "the cause, not abi_stable's layout dump ({} bytes): {msg}", msg.len());
    assert!(msg.starts_with(&format!("plugin {}: plugin-api layout mismatch: ", changed.display())), "{msg}");
    // Where (the path from the root module to the method) and what, from the error's structure.
    assert!(cause.contains("new_network") && cause.contains("forward"), "{cause}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn a_plugin_of_an_older_minor_api_with_a_changed_signature_is_a_short_layout_error() {
    // The layouts are checked the other way round for an older plugin; the summary still
    // says where, and puts the host's side first.
    let changed = api_variant(
        "layout_1_0",
        Variant {
            version: "1.0.0",
            cuts: ROOT_MODULE_1_0,
            patches: &[(
                "plugin-api/src/network.rs",
                "fn forward(&mut self, input: &RTensor, train: bool)",
                "fn forward(&mut self, input: &RTensor, train: bool, scale: f32)",
            )],
            ..Variant::default()
        },
    );
    let reg = Registry::load(&only_files(std::slice::from_ref(&changed)));
    let err = &reg.failures[0];
    let LoadErrorKind::Layout(cause) = &err.kind else { panic!("expected a layout error, got {err:?}") };
    assert!(cause.contains("new_network") && cause.contains("forward"), "{cause}");
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
}

#[test]
fn failing_initialisation_is_reported_with_the_plugins_reason() {
    let lib = api_variant("initfail", Variant { version: "1.1.0", init_fails: true, ..Variant::default() });
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

/// A libtorch ABI tag other than the host's.
const OTHER_TORCH: &str = "tch-0.24.0/libtorch-2.99.0/cxx11abi=1";

/// Loading `lib` fails with the message naming the file and both libtorch tags.
fn assert_refused_for_libtorch(lib: &Path, other: &str) {
    let reg = Registry::load(&only_files(&[lib.to_owned()]));
    assert_eq!(
        reg.failures[0].to_string(),
        format!(
            "plugin {}: built against {other}, but this host uses {TORCH_ABI_TAG}: rebuild the plugin",
            lib.display()
        )
    );
}

#[test]
fn a_plugin_built_against_another_libtorch_is_refused_with_both_tags_before_it_runs() {
    // Its `describe` would fail: the refusal comes from the root module's tag, before it runs.
    let lib = api_variant(
        "torchtag",
        Variant { version: "1.1.0", torch_abi_tag: Some(OTHER_TORCH), init_fails: true, ..Variant::default() },
    );
    assert_refused_for_libtorch(&lib, OTHER_TORCH);
}

#[test]
fn a_plugin_of_the_previous_minor_api_loads_through_init_and_works() {
    let lib = api_variant("v1_0", Variant { version: "1.0.0", cuts: ROOT_MODULE_1_0, ..Variant::default() });
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    assert_eq!(reg.libraries[0].plugin_api, "1.0.0");
    assert!(reg.libraries[0].module.torch_abi_tag().is_none(), "a 1.0 root module has no tag");
    let (found, c) = reg.find(ComponentKind::Network, "versioned_net").unwrap();
    assert_eq!((found.info.name.as_str(), c.description.as_str()), ("versioned", "builds nothing"));
    // Its factories are called: the error is the plugin's own.
    let err = reg.new_network("versioned_net", &serde_json::json!({})).err().expect("the fixture builds nothing");
    assert_eq!(
        err.to_string(),
        format!("network `versioned_net` from {}: a version fixture builds nothing", lib.display())
    );
}

#[test]
fn a_plugin_of_the_previous_minor_api_is_refused_for_another_libtorch_after_init() {
    let lib = api_variant(
        "v1_0_torchtag",
        Variant { version: "1.0.0", cuts: ROOT_MODULE_1_0, torch_abi_tag: Some(OTHER_TORCH), ..Variant::default() },
    );
    assert_refused_for_libtorch(&lib, OTHER_TORCH);
}

#[test]
fn a_root_module_function_missing_from_an_older_plugin_is_an_error_naming_it() {
    // A root module with the tag of 1.1 but without `describe` (no released version looks
    // like this): the host reads the missing field as None and says so.
    let lib = api_variant(
        "nodescribe",
        Variant {
            version: "1.0.5",
            cuts: &[
                ("plugin-api/src/root.rs", "    /// Since 1.1: initialises", "}\n\nimpl RootModule"),
                ("plugin-api/src/root.rs", ", PluginInfo_Ref}", "};"),
                ("plugin/src/lib.rs", ", describe", " }"),
            ],
            ..Variant::default()
        },
    );
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert_eq!(
        reg.failures[0].to_string(),
        format!("plugin {}: lacks `describe` (built against plugin-api 1.0.5): rebuild the plugin", lib.display())
    );
}

#[test]
fn a_plugin_of_a_newer_minor_api_with_appended_fields_and_an_unknown_kind_loads() {
    let lib = api_variant(
        "newerminor",
        Variant {
            // Newer than the host's plugin-api (1.2).
            version: "1.3.0",
            patches: &[
                (
                    "plugin-api/src/root.rs",
                    "RResult<PluginInfo_Ref, PluginError>,\n}",
                    "RResult<PluginInfo_Ref, PluginError>,\n    /// Added in 1.3.\n    pub motto: extern \"C\" fn() -> abi_stable::std_types::RString,\n}",
                ),
                (
                    "plugin-api/src/schema.rs",
                    "pub params: RSlice<'static, ParamSpec_Ref>,\n}",
                    "pub params: RSlice<'static, ParamSpec_Ref>,\n    /// Added in 1.3.\n    pub tags: RSlice<'static, RStr<'static>>,\n}",
                ),
                ("plugin/src/lib.rs", "torch_abi_tag, describe }", "torch_abi_tag, describe, motto }"),
                (
                    "plugin/src/lib.rs",
                    "        params: RSlice::EMPTY,\n    };\n    vec![net.leak_into_prefix()]",
                    "        params: RSlice::EMPTY,\n        tags: RSlice::EMPTY,\n    };\n    let future = ComponentInfo {\n        name: RStr::from_str(\"future_thing\"),\n        kind: ComponentKind::from_code(7),\n        description: RStr::from_str(\"a kind from plugin-api 1.3\"),\n        params: RSlice::EMPTY,\n        tags: RSlice::EMPTY,\n    };\n    vec![net.leak_into_prefix(), future.leak_into_prefix()]",
                ),
            ],
            ..Variant::default()
        },
    );
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    assert_eq!(reg.libraries[0].plugin_api, "1.3.0");
    let (found, _) = reg.find(ComponentKind::Network, "versioned_net").unwrap();
    assert_eq!(found.info.name.as_str(), "versioned");
    // The component of an unknown kind is listed and skipped, never used.
    for kind in [ComponentKind::Network, ComponentKind::Loss, ComponentKind::Augmentation] {
        assert!(reg.find(kind, "future_thing").is_err());
    }
    let rows = reg.listing();
    let row = rows.iter().find(|r| r.name == "future_thing").expect("listed");
    assert_eq!(row.kind, "unknown kind 7");
    assert!(row.status.starts_with("skipped: a kind this host does not know"), "{row:?}");
    assert_eq!(row.file, lib);
}

#[test]
fn a_network_of_plugin_api_1_1_gets_the_default_forward_outputs_through_its_forward() {
    // Built against 1.1: the Network trait without `forward_outputs` (appended in 1.2), and a
    // network whose `forward` fails with its own message. The host's call of
    // `forward_outputs` must reach the default, which calls `forward`.
    let lib = api_variant(
        "v1_1_network",
        Variant {
            version: "1.1.0",
            cuts: &[NETWORK_1_1],
            patches: &[(
                "plugin/src/lib.rs",
                "extern \"C\" fn new_network(_: RStr<'_>, _: RStr<'_>, _: HostModule_Ref) -> RResult<NetworkBox, PluginError> {\n    refuse()\n}",
                r#"struct OldNet;

impl niftyhost_plugin_api::Network for OldNet {
    fn forward(&mut self, _: &niftyhost_plugin_api::RTensor, _: bool) -> RResult<niftyhost_plugin_api::RTensor, PluginError> {
        RResult::RErr(PluginError::new("forward of a plugin-api 1.1 network"))
    }
    fn named_parameters(&self) -> RResult<abi_stable::std_types::RVec<niftyhost_plugin_api::NamedTensor>, PluginError> {
        RResult::ROk(abi_stable::std_types::RVec::new())
    }
    fn named_buffers(&self) -> RResult<abi_stable::std_types::RVec<niftyhost_plugin_api::NamedTensor>, PluginError> {
        RResult::ROk(abi_stable::std_types::RVec::new())
    }
    fn set_device(&mut self, _: RStr<'_>) -> RResult<(), PluginError> {
        RResult::ROk(())
    }
}

extern "C" fn new_network(_: RStr<'_>, _: RStr<'_>, _: HostModule_Ref) -> RResult<NetworkBox, PluginError> {
    RResult::ROk(niftyhost_plugin_api::Network_TO::from_value(OldNet, abi_stable::sabi_trait::TD_Opaque))
}"#,
            )],
            ..Variant::default()
        },
    );
    let reg = Registry::load(&only_files(std::slice::from_ref(&lib)));
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    assert_eq!(reg.libraries[0].plugin_api, "1.1.0");
    let mut net = reg.new_network("versioned_net", &serde_json::json!({})).unwrap();
    let x = niftyhost_plugin_api::RTensor::from_tch(tch::Tensor::zeros([1, 1, 2, 2, 2], tch::kind::FLOAT_CPU));
    let err = net.forward_outputs(&x, false).into_result().map(|o| o.len()).unwrap_err();
    assert_eq!(err.message.as_str(), "forward of a plugin-api 1.1 network");
}
