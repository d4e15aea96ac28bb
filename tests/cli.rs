//! The command line: parameter help, config layering through flags, environment and
//! files, and configuration errors.

use std::process::Command;

use niftyhost_tests::{niftyhost_bin, plugin_dir, run, text, tissue_config, workspace_plugin};

#[test]
fn train_help_lists_every_host_key_and_the_plugins_parameters() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d"), workspace_plugin("seglosses")]);
    let out = run(dir.path(), &["train", "-h"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for spec in niftyhost::config::KEYS {
        // A key's row starts at column 2; descriptions (which may name keys) further right.
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {} ", spec.key)))
            .unwrap_or_else(|| panic!("{} missing:\n{stdout}", spec.key));
        assert!(line.contains(spec.default), "{line}");
    }
    assert!(stdout.contains("network `unet3d` (libunet3d.so 0.1.0): keys of [network.params]"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("network.params.base_channels") && l.contains("8")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("training.loss_params.ce_weight")), "{stdout}");
    assert!(stdout.contains("--batch-size") && stdout.contains("--set <KEY=VALUE>"), "{stdout}");
}

/// The parameter listing of `train -h` laid out in a terminal of `width` columns.
fn listing_at(width: usize, dir: &std::path::Path) -> Vec<String> {
    let out = Command::new(niftyhost_bin())
        .current_dir(dir)
        .args(["train", "-h"])
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("COLUMNS", width.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let listing: Vec<String> =
        stdout.lines().skip_while(|l| !l.starts_with("Parameters (")).map(str::to_owned).collect();
    assert!(listing.len() > niftyhost::config::KEYS.len(), "{stdout}");
    listing
}

/// The column every description line of a table starts at: the one where `doc` starts
/// on `key`'s line, and where every line of the table that is not a key line starts.
fn description_column(table: &[String], key: &str, default: &str, doc: &str) -> usize {
    let row = table.iter().find(|l| l.starts_with(&format!("  {key} "))).unwrap_or_else(|| panic!("{key}"));
    let (default_col, doc_col) = (row.find(default).unwrap(), row.find(doc).unwrap_or_else(|| panic!("{row}")));
    assert!(
        row[2 + key.len()..default_col].trim().is_empty()
            && row[default_col + default.len()..doc_col].trim().is_empty()
    );
    for line in table.iter().filter(|l| !l.is_empty() && l.starts_with("   ")) {
        let indent = line.len() - line.trim_start().len();
        assert_eq!(indent, doc_col, "not at the description column {doc_col}:\n{line}\n{}", table.join("\n"));
    }
    doc_col
}

#[test]
fn train_help_aligns_keys_defaults_and_descriptions_within_the_terminal_width() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d")]);
    for width in [80, 120] {
        let listing = listing_at(width, dir.path());
        for line in &listing {
            assert!(
                line.chars().count() <= width || line.split_whitespace().count() == 1,
                "longer than {width} and not a single word:\n{line}"
            );
        }
        // The host's table, then the network's, each with its own columns.
        let host: Vec<String> = listing.iter().skip(1).take_while(|l| !l.is_empty()).cloned().collect();
        let seed = description_column(&host, "system.seed", "1", "seed of every");
        let name = description_column(&host, "network.name", "\"toynet\"", "network component");
        assert_eq!(seed, name);
        let row = |key: &str| host.iter().find(|l| l.starts_with(&format!("  {key} "))).unwrap().clone();
        assert_eq!(row("system.seed").find(" 1 "), row("network.name").find(" \"toynet\" "), "defaults aligned");
        let start = listing.iter().position(|l| l.starts_with("network `unet3d`")).expect("unet3d listed");
        let unet: Vec<String> = listing[start + 1..].iter().take_while(|l| !l.is_empty()).cloned().collect();
        description_column(&unet, "network.params.base_channels", "8", "feature maps");
    }
}

#[test]
fn flags_beat_set_order_and_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = tissue_config(dir.path(), "toynet", "batch_size = 3\n[training]\nlr = 0.5\nmax_iter = 11");
    let out = Command::new(niftyhost_bin())
        .current_dir(dir.path())
        .args([
            "config",
            "-c",
            config.to_str().unwrap(),
            "--json",
            "--batch-size",
            "5",
            "--set",
            "training.max_iter=13",
        ])
        .env("NIFTYHOST_TRAINING__LR", "0.25")
        .env("NIFTYHOST_TRAINING__MAX_ITER", "12")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["network"]["batch_size"], 5, "flag beats file");
    assert_eq!(s["training"]["lr"], 0.25, "environment beats file");
    assert_eq!(s["training"]["max_iter"], 13, "--set beats environment");
    assert_eq!(s["training"]["optimiser"], "adam", "default kept");
}

#[test]
fn an_unknown_key_is_a_usage_error_naming_key_file_and_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let config = tissue_config(dir.path(), "toynet", "[training]\nmax_iters = 3");
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "unknown key `training.max_iters` in {}; did you mean `training.max_iter`?",
            config.display()
        )),
        "{stderr}"
    );
}

#[test]
fn device_and_precision_keys_are_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let config = tissue_config(dir.path(), "toynet", "[training]\nmax_iter = 1");
    let c = config.to_str().unwrap();
    let out = run(dir.path(), &["train", "-c", c, "--devices", "cpu,cpu", "--set", "system.num_gpus=2"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`system.num_gpus` = 2 and `system.devices` = [\"cpu\", \"cpu\"] disagree"), "{stderr}");
    let out = run(dir.path(), &["train", "-c", c, "--set", "training.mixed_precision=\"fp8\""]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`training.mixed_precision` must be none, fp16 or bf16, got \"fp8\""), "{stderr}");
}

#[test]
fn distributed_keys_and_launcher_variables_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(dir.path(), "toynet", "[training]\nmax_iter = 1");
    let c = config.to_str().unwrap();
    for (set, expected) in [
        (
            "system.distributed=\"gloo\"",
            "`system.distributed` must be one of auto, in-process, mpi, nccl, got \"gloo\"",
        ),
        ("system.comm_timeout_s=0", "`system.comm_timeout_s` must be a positive number, got 0"),
    ] {
        let out = run(dir.path(), &["train", "-c", c, "--set", set]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let launched = |vars: &[(&str, &str)], extra: &[&str]| {
        let out = Command::new(niftyhost_bin())
            .current_dir(dir.path())
            .args([&["train", "-c", c][..], extra].concat())
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        text(&out).1
    };
    let stderr = launched(&[("RANK", "3"), ("WORLD_SIZE", "2")], &[]);
    assert!(stderr.contains("environment variable RANK=\"3\": below WORLD_SIZE=2"), "{stderr}");
    let stderr = launched(
        &[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")],
        &["--set", "system.distributed=\"in-process\""],
    );
    assert!(stderr.contains("but Open MPI's mpirun started 2 processes"), "{stderr}");
    // torchrun-style launch on a CPU means MPI, which cannot join processes it did not start.
    let stderr =
        launched(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")], &["--set", "system.comm_timeout_s=20"]);
    assert!(stderr.contains("MPI sees rank 0 of 1"), "{stderr}");
}

#[test]
fn plugins_are_found_through_niftyhost_plugin_path() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(dir.path(), &[workspace_plugin("toynet")]);
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(niftyhost_bin())
        .current_dir(empty.path())
        .args(["list-plugins", "--json"])
        .env("NIFTYHOST_PLUGIN_PATH", &plugins)
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "toynet");
    assert_eq!(rows[0]["file"].as_str().unwrap(), plugins.join("libtoynet.so").to_str().unwrap());
}

#[test]
fn a_bad_network_parameter_names_the_plugin_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d"), workspace_plugin("seglosses")]);
    let config = tissue_config(dir.path(), "unet3d", "[network.params]\nbase_chanels = 4\n[training]\nmax_iter = 1");
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    // A parameter the plugin refuses is a configuration error, found before any data.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unet3d: unknown parameter `base_chanels`; did you mean `base_channels`?"), "{stderr}");
    assert!(!stderr.contains("training data checked"), "{stderr}");
    assert!(stderr.contains("libunet3d.so"), "{stderr}");
}

#[test]
fn plugin_log_records_reach_the_host_log() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(dir.path(), "toynet", "spatial_window_size = [8, 8, 8]\n[training]\nmax_iter = 1");
    let out = Command::new(niftyhost_bin())
        .current_dir(dir.path())
        .args(["-v", "train", "-c", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("built network `toynet`")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("DEBUG") && line.contains("plugin=\"toynet\"") && line.contains("1987 trainable parameters"),
        "{line}"
    );
}

#[test]
fn info_json_reports_shape_affine_and_value_range() {
    let root = niftyhost_tests::repo_root();
    let out = run(&root, &["info", "--json", "data/mni152/t1_2mm.nii.gz"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let files = report.as_array().expect("a JSON array");
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f["shape"], serde_json::json!([99, 117, 95]));
    assert_eq!(f["datatype"], "float32");
    assert_eq!(f["axcodes"], "RAS");
    let affine = serde_json::json!([
        [2.0, 0.0, 0.0, -98.0],
        [0.0, 2.0, 0.0, -134.0],
        [0.0, 0.0, 2.0, -72.0],
        [0.0, 0.0, 0.0, 1.0]
    ]);
    assert_eq!(f["affine"], affine);
    assert_eq!(f["stats"]["min"].as_f64(), Some(0.0));
    let max = f["stats"]["max"].as_f64().unwrap();
    assert!((max - 0.9882352948188782).abs() < 1e-7, "{max}");
    assert_eq!(f["stats"]["nan_count"], 0);

    // An unreadable file: exit code 1, the file named on stderr.
    let out = run(&root, &["info", "data/mni152/README.md"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("data/mni152/README.md: not a NIfTI or Analyze header"), "{stderr}");
}

/// A folder `dir/data` in which the 2 mm task stands in for the 1 mm one the benchmarks
/// read, with the unet3d and seglosses plugins in `dir/plugins`.
fn bench_folder(dir: &std::path::Path) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (from, to) in [("t1_2mm", "t1_1mm"), ("tissue_2mm", "tissue_1mm")] {
        let from = niftyhost_tests::repo_root().join(format!("data/mni152/{from}.nii.gz"));
        std::fs::copy(from, data.join(format!("{to}.nii.gz"))).unwrap();
    }
    plugin_dir(dir, &[workspace_plugin("unet3d"), workspace_plugin("seglosses")]);
}

#[test]
fn data_bench_reports_decoding_both_samplers_and_the_training_loop() {
    let dir = tempfile::tempdir().unwrap();
    bench_folder(dir.path());
    let args = "bench --data-dir data --window 16 --batch-size 2 --threads 1 --batches 5 --train-iterations 2 --json";
    let out = run(dir.path(), &args.split(' ').collect::<Vec<_>>());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["decode"]["voxels"], 99 * 117 * 95);
    assert!(report["decode"]["milliseconds"].as_f64().unwrap() > 0.0);
    let samplers: Vec<&str> =
        report["samplers"].as_array().unwrap().iter().map(|s| s["sampler"].as_str().unwrap()).collect();
    assert_eq!(samplers, ["uniform", "balanced"]);
    assert!(report["samplers"].as_array().unwrap().iter().all(|s| s["patches_per_second"].as_f64().unwrap() > 0.0));
    let training = &report["training"];
    assert_eq!(training["network"], "unet3d");
    assert!(training["seconds_per_iteration"].as_f64().unwrap() > 0.0, "{training}");
    assert!((0.0..=1.0).contains(&training["data_wait_share"].as_f64().unwrap()), "{training}");
    assert!(report["augmentation"].is_null(), "no --augment");
}

#[test]
fn inference_bench_times_the_volume_with_and_without_the_crop() {
    // The 2 mm T1 stands in for the 1 mm one. After whitening its foreground box is
    // 73 × 90 × 78 voxels: 3 × 4 × 3 windows of 32³ at overlap 0.25 instead of 4 × 5 × 4.
    let dir = tempfile::tempdir().unwrap();
    bench_folder(dir.path());
    let out =
        run(dir.path(), &["bench", "--inference", "--data-dir", "data", "--window", "32", "--runs", "1", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["dims"], serde_json::json!([99, 117, 95]));
    let runs = report["runs"].as_array().unwrap();
    let windows: Vec<(bool, u64)> =
        runs.iter().map(|r| (r["crop_to_foreground"].as_bool().unwrap(), r["windows"].as_u64().unwrap())).collect();
    assert_eq!(windows, vec![(true, 36), (false, 80)]);
    for r in runs {
        assert!(r["seconds"].as_f64().unwrap() > 0.0 && r["network_seconds"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(report["peak_rss_mb"].as_f64().unwrap() > 10.0, "{report}");
    assert!(stderr.contains("crop_to_foreground = true: 36 windows"), "{stderr}");
}

/// NiftyNet 0.1's command line, with no config file: train from an image and a label
/// folder paired by file name, then segment a folder of new images into `--save_seg_dir`.
#[test]
fn niftynet_01_command_line_trains_and_segments_without_a_config() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let staging = dir.path().join("staging");
    niftyhost_tests::tissue_cohort(&staging, &["a", "b", "c", "d"]);
    for (folder, prefix, ids) in
        [("T1", "t1_", &["a", "b", "c"][..]), ("Label", "tissue_", &["a", "b", "c"]), ("New", "t1_", &["d"])]
    {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for id in ids {
            let from = staging.join(format!("{prefix}{id}.nii.gz"));
            std::fs::copy(from, dir.path().join(folder).join(format!("{id}.nii.gz"))).unwrap();
        }
    }
    let train = [
        "train",
        "--net_name",
        "toynet",
        "--train_image_dir",
        "T1",
        "--train_label_dir",
        "Label",
        "--image_size",
        "16",
        "--label_size",
        "16",
        "--batch_size",
        "1",
        "--max_iter",
        "2",
        "--num_classes",
        "3",
        "--num_gpus",
        "0",
    ];
    let out = run(dir.path(), &train);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("train=3"), "the three image/label pairs train:\n{stderr}");
    let inference = [
        "inference",
        "--net_name",
        "toynet",
        "--eval_image_dir",
        "New",
        "--save_seg_dir",
        "segs",
        "--image_size",
        "32",
        "--label_size",
        "32",
        "--batch_size",
        "2",
        "--num_classes",
        "3",
    ];
    let out = run(dir.path(), &inference);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("falling back"), "new subjects are held out:\n{stderr}");
    let seg = niftyhost::io::read_volume(&dir.path().join("segs/d_seg.nii.gz")).unwrap();
    assert_eq!(seg.dims, [64, 72, 56]);

    // A label window inside the image window (a border of 2): the loss sees its centre,
    // and inference places windows by it.
    let mut border = train.to_vec();
    border[10] = "12";
    border.extend(["--model-dir", "border_model"]);
    let out = run(dir.path(), &border);
    assert!(out.status.success(), "{}", text(&out).1);
    let mut segment = inference.to_vec();
    (segment[8], segment[10], segment[12]) = ("16", "12", "1");
    segment.extend(["--model-dir", "border_model"]);
    segment[6] = "border_segs";
    let out = run(dir.path(), &segment);
    assert!(out.status.success(), "{}", text(&out).1);
    let seg = niftyhost::io::read_volume(&dir.path().join("border_segs/d_seg.nii.gz")).unwrap();
    assert_eq!(seg.dims, [64, 72, 56]);
    // A border of half a voxel is refused by name, before any work.
    border[10] = "13";
    let out = run(dir.path(), &border);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`network.label_size`") && stderr.contains("`network.spatial_window_size`"), "{stderr}");
    // A label file without its image is named.
    std::fs::copy(dir.path().join("Label/a.nii.gz"), dir.path().join("Label/z.nii.gz")).unwrap();
    let out =
        run(dir.path(), &["check", "--train_image_dir", "T1", "--train_label_dir", "Label", "--num_classes", "3"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("`z`"), "{stderr}");
    // `train -h` lists the flags in their own group.
    let help = text(&run(dir.path(), &["train", "-h"])).0;
    let group = help.find("NiftyNet 0.1 command line").expect("the NiftyNet group");
    assert!(help[group..].contains("--train_image_dir <DIR>") && help[group..].contains("--num_gpus <N>"), "{help}");
}
