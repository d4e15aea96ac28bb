//! The synchronous data-parallel trainer on CPU replicas: the same code path as GPUs.

use std::collections::HashMap;
use std::path::Path;

use niftyhost_tests::{plugin_dir, run, text, tissue_config, workspace_plugin};
use tch::Tensor;

fn train(dir: &Path, devices: &str) -> HashMap<String, Tensor> {
    plugin_dir(dir, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir,
        "toynet",
        "batch_size = 4\nspatial_window_size = [12, 12, 12]\n\
         [training]\nloss = \"cross_entropy\"\noptimiser = \"sgd\"\nlr = 0.05\nmax_iter = 20\nsave_every_n = 20",
    );
    let out =
        run(dir, &["train", "-c", config.to_str().unwrap(), "--devices", devices, "--set", "system.torch_threads=1"]);
    assert!(out.status.success(), "{}", text(&out).1);
    Tensor::read_safetensors(dir.join("model/checkpoints/iter_00000020.safetensors")).unwrap().into_iter().collect()
}

#[test]
fn two_cpu_replicas_with_half_batches_match_one_replica_with_the_whole_batch() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (train(one.path(), "cpu"), train(two.path(), "cpu,cpu"));
    assert_eq!(a.len(), b.len());
    let mut moved = 0.0f64;
    for (name, ta) in &a {
        let diff = (ta - &b[name]).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name} differs by {diff} after 20 steps");
        moved = moved.max(ta.abs().max().double_value(&[]));
    }
    assert!(moved > 0.0);
    // The logs agree too, step by step.
    let losses = |d: &Path| -> Vec<f64> {
        std::fs::read_to_string(d.join("model/train_log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
            .collect()
    };
    for (x, y) in losses(one.path()).iter().zip(losses(two.path())) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    run_logs_record_every_device(&two.path().join("model"));
}

/// The two-replica run's logs: each JSONL step names both devices and their share of
/// the batch; TensorBoard events and the loss curve are there.
fn run_logs_record_every_device(model: &Path) {
    let log = std::fs::read_to_string(model.join("train_log.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(steps.len(), 20);
    for step in &steps {
        let devices = step["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2, "{step}");
        assert!(devices.iter().all(|d| d["windows"] == 2 && d["seconds"].as_f64().unwrap() > 0.0), "{step}");
        let pct = step["data_wait_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{step}");
    }
    let events: Vec<_> = std::fs::read_dir(model.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(events.len(), 1);
    let bytes = std::fs::read(&events[0]).unwrap();
    // Scalars for every step, and slices at the first step (default: every 50).
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("train/loss").count(), 20);
    assert_eq!(text.matches("windows/axial").count(), 1);
    let png = std::fs::read(model.join("loss_curve.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn validation_runs_on_the_valid_subjects_with_loss_and_dice_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugin_dir(d, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    // Two subjects (the bundled volumes under two ids); one becomes VALID.
    let data = niftyhost_tests::repo_root().join("data/mni152");
    for (section, file) in [("images", "t1_2mm.nii.gz"), ("labels", "tissue_2mm.nii.gz")] {
        let f = data.join(file);
        std::fs::write(d.join(format!("{section}.csv")), format!("a,{}\nb,{}\n", f.display(), f.display())).unwrap();
    }
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[system]\nmodel_dir = \"{m}\"\n[input.t1]\ncsv_file = \"images.csv\"\n[input.label]\ncsv_file = \"labels.csv\"\n\
             [segmentation]\nimage = [\"t1\"]\nlabel = \"label\"\nnum_classes = 3\n\
             [network]\nname = \"toynet\"\nspatial_window_size = [16, 16, 16]\n\
             [training]\nmax_iter = 6\nexclude_fraction_for_validation = 0.5\nvalidation_every_n = 2\nvalidation_max_iter = 2\n",
            m = d.join("model").display()
        ),
    )
    .unwrap();
    let out = run(d, &["train", "-c", config.to_str().unwrap(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let validations = report["validations"].as_array().unwrap();
    assert_eq!(validations.iter().map(|v| v["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4, 6]);
    for v in validations {
        assert!(v["loss"].as_f64().unwrap().is_finite());
        assert_eq!(v["dice"].as_array().unwrap().len(), 3);
    }
    let split = std::fs::read_to_string(d.join("model/dataset_split.csv")).unwrap();
    assert_eq!(split.matches("VALID").count(), 1, "{split}");
    let log = std::fs::read_to_string(d.join("model/train_log.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"validation\"")).count(), 3);
}

#[test]
fn transfer_learning_restores_and_freezes_the_parameters_the_regexes_name() {
    let source = tempfile::tempdir().unwrap();
    let a = train(source.path(), "cpu");
    let weights = source.path().join("model/checkpoints/iter_00000020.safetensors");

    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "toynet",
        &format!(
            "batch_size = 2\nspatial_window_size = [12, 12, 12]\n[training]\nlr = 0.05\nmax_iter = 5\nsave_every_n = 5\n\
             restore_from = \"{}\"\nvars_to_restore = \"^conv1\\\\.\"\nvars_to_freeze = \"^conv1\\\\.\"",
            weights.display()
        ),
    );
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let b: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("model/checkpoints/iter_00000005.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for name in ["conv1.weight", "conv1.bias"] {
        assert!(a[name].equal(&b[name]), "{name} restored from the source and frozen");
    }
    assert!(!a["classifier.weight"].equal(&b["classifier.weight"]), "other parameters are neither restored nor frozen");
    assert!(
        stderr.contains("parameters frozen") && stderr.contains("weights restored for transfer learning"),
        "{stderr}"
    );
}

#[test]
fn a_second_training_into_a_model_folder_in_use_exits_2_naming_the_folder_and_process() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "toynet",
        "batch_size = 1\nspatial_window_size = [8, 8, 8]\n[training]\nmax_iter = 1000000\nsave_every_n = 1000000",
    );
    let c = config.to_str().unwrap();
    let mut first = std::process::Command::new(niftyhost_tests::niftyhost_bin())
        .args(["train", "-c", c, "--set", "system.torch_threads=1"])
        .current_dir(dir.path())
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first run holds the lock once it logs its first iteration.
    let log = dir.path().join("model/train_log.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() > 0) {
        assert!(std::time::Instant::now() < deadline, "the first run logged no iteration in 120 s");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let second = run(dir.path(), &["train", "-c", c, "--max-iter", "2"]);
    let stderr = text(&second).1;
    let alive = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(alive, "the first run was still training when the second was refused");
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("model folder {}", dir.path().join("model").display())), "{stderr}");
    assert!(stderr.contains(&format!("process {}", first.id())), "{stderr}");
    assert!(!stderr.contains("training data checked"), "refused before reading data: {stderr}");
    // The kernel released the killed run's lock: a new run trains.
    let third = run(dir.path(), &["train", "-c", c, "--max-iter", "2"]);
    assert!(third.status.success(), "{}", text(&third).1);
}

#[test]
fn three_mistakes_are_named_at_once_before_any_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d"), workspace_plugin("seglosses"), workspace_plugin("augment")]);
    let config = tissue_config(
        dir.path(),
        "unet3d",
        "batch_size = 1\nspatial_window_size = [8, 8, 8]\n[training]\nmax_iter = 2\n\
         [[training.augmentation]]\nname = \"gausian_noise\"",
    );
    let c = config.to_str().unwrap();
    let out = run(dir.path(), &["train", "-c", c, "--set", "network.params.base_chanels=4", "--devices", "cuda:0"]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3 problem(s) found before reading any data"), "{stderr}");
    assert!(stderr.contains("base_chanels") && stderr.contains("base_channels"), "{stderr}");
    assert!(stderr.contains("gausian_noise") && stderr.contains("gaussian_noise"), "{stderr}");
    assert!(stderr.contains("cuda:0"), "{stderr}");
    assert!(!stderr.contains("training data checked"), "no volume is read: {stderr}");
    assert!(!dir.path().join("model").exists(), "nothing is written: {stderr}");
}
