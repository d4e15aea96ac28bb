//! The GPU check (scripts/gpu-check.sh, issue 20) in its CPU mode, with this build's binary
//! and plugins as the bundle: every step is in the report with numbers or the reason it was
//! skipped, and a failing step is recorded while the check goes on. This keeps the script
//! working while no GPU is at hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use niftyhost_tests::{niftyhost_bin, repo_root, text, workspace_plugin};
use serde_json::Value;

/// Every step of the check, in order.
const STEPS: &[&str] = &[
    "bundle",
    "train_fp32_b2",
    "train_bf16_b2",
    "train_fp16_b2",
    "train_fp32_b4",
    "train_bf16_b4",
    "train_fp16_b4",
    "losses_vs_cpu",
    "inference_fp32",
    "inference_bf16",
    "nccl_one_process",
    "nccl_two_processes",
    "pytorch",
    "comparison",
];

/// A bundle folder as scripts/build-gpu-bundle.sh lays it out, of links to this build.
fn bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(bundle.join("plugins")).unwrap();
    std::os::unix::fs::symlink(niftyhost_bin(), bundle.join("niftyhost")).unwrap();
    let engine = niftyhost_bin().with_file_name("niftyhost-engine");
    std::os::unix::fs::symlink(engine, bundle.join("niftyhost-engine")).unwrap();
    for name in ["unet3d", "seglosses"] {
        let lib = workspace_plugin(name);
        std::os::unix::fs::symlink(&lib, bundle.join("plugins").join(lib.file_name().unwrap())).unwrap();
    }
    bundle
}

/// Runs the check in CPU mode; returns its output and its JSON report.
fn gpu_check(dir: &Path, bundle: &Path, extra: &[&str]) -> (Output, Value) {
    let out_dir = dir.join("out");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/gpu-check.sh"))
        .args(["--cpu", "--bundle", bundle.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
        .args(["--work", dir.join("work").to_str().unwrap()])
        .args(extra)
        .output()
        .expect("bash runs scripts/gpu-check.sh");
    let report = std::fs::read_to_string(out_dir.join("gpu-check.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); output:\n{}\n{}", text(&out).0, text(&out).1));
    (out, serde_json::from_str(&report).expect("the report is JSON"))
}

/// The report's steps, checked to be every step of [`STEPS`] in that order.
fn steps(report: &Value) -> &serde_json::Map<String, Value> {
    let order: Vec<&str> = report["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(order, STEPS, "the steps and their order");
    let steps = report["steps"].as_object().unwrap();
    assert_eq!(steps.len(), STEPS.len(), "{:?}", steps.keys());
    steps
}

fn number(step: &Value, key: &str) -> f64 {
    step[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number in {step:#}"))
}

fn share(step: &Value, key: &str) {
    let v = number(step, key);
    assert!((0.0..=1.0).contains(&v), "`{key}` = {v} is not a share in {step:#}");
}

#[test]
fn cpu_mode_reports_every_step_with_numbers_or_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = gpu_check(dir.path(), &bundle(dir.path()), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "the check failed:\n{stdout}\n{stderr}");
    assert_eq!(report["mode"], "cpu");
    assert_eq!(report["ok"], true);
    let steps = steps(&report);
    for (name, step) in steps.iter() {
        match step["status"].as_str() {
            Some("ok") => {}
            Some("skipped") => {
                assert!(!step["reason"].as_str().unwrap_or("").is_empty(), "{name} skipped without a reason")
            }
            other => panic!("{name}: status {other:?}: {step:#}"),
        }
        assert!(stdout.contains(name), "the summary lacks {name}:\n{stdout}");
    }

    // Training: timings after warm-up, shares, and the first 10 losses.
    for name in ["train_fp32_b2", "train_fp32_b4"] {
        let step = &steps[name];
        assert_eq!(step["status"], "ok", "{name}: {step:#}");
        let per_iteration = number(step, "seconds_per_iteration");
        assert!(per_iteration > 0.0);
        let expected = number(step, "batch") / per_iteration;
        assert!((number(step, "patches_per_second") - expected).abs() < 1e-6 * expected, "{step:#}");
        share(step, "data_wait_share");
        share(step, "host_overhead_share");
        assert!(number(step, "peak_rss_mib") > 0.0);
        assert_eq!(step["timed_iterations"], 10 - 3 - 1, "iterations after warm-up, the last left out");
        let losses = step["first_losses"].as_array().unwrap();
        assert_eq!(losses.len(), 10);
        assert!(losses.iter().all(|l| l.as_f64().is_some_and(f64::is_finite)), "{losses:?}");
    }
    for name in ["train_bf16_b2", "train_fp16_b2", "train_bf16_b4", "train_fp16_b4"] {
        assert_eq!(steps[name]["status"], "skipped");
        assert!(steps[name]["reason"].as_str().unwrap().contains("CUDA"), "{:#}", steps[name]);
    }

    // The reference run's losses are the device run's (here both on the CPU).
    let losses = &steps["losses_vs_cpu"];
    assert_eq!(losses["status"], "ok", "{losses:#}");
    assert_eq!(losses["device_losses"], steps["train_fp32_b2"]["first_losses"]);
    assert!(number(losses, "max_relative_difference") <= 1e-3, "{losses:#}");

    for name in ["inference_fp32", "inference_bf16"] {
        let step = &steps[name];
        assert_eq!(step["status"], "ok", "{name}: {step:#}");
        assert!(number(step, "windows") >= 1.0);
        for key in ["cold_seconds", "warm_seconds", "warm_network_seconds"] {
            assert!(number(step, key) > 0.0, "{name}: {key}");
        }
    }
    for name in ["nccl_one_process", "nccl_two_processes"] {
        assert_eq!(steps[name]["status"], "skipped");
    }

    // The PyTorch baseline runs where a Python with torch is found; the comparison follows it.
    match steps["pytorch"]["status"].as_str() {
        Some("ok") => {
            assert_eq!(steps["comparison"]["status"], "ok");
            assert!(number(&steps["comparison"]["ratios"]["fp32_b2"], "ratio") > 0.0);
        }
        _ => assert_eq!(steps["comparison"]["status"], "skipped"),
    }

    // The summary is also written beside the report, with the logs.
    let summary = std::fs::read_to_string(dir.path().join("out/gpu-check.txt")).unwrap();
    assert!(summary.ends_with("all steps passed\n"), "{summary}");
    assert!(stdout.contains(&summary), "the summary is printed");
    assert!(dir.path().join("out/gpu-check-logs.tar.gz").is_file());
}

#[test]
fn a_failing_step_is_recorded_and_the_check_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("broken");
    std::fs::create_dir_all(bundle.join("plugins")).unwrap();
    let fake = bundle.join("niftyhost");
    std::fs::write(&fake, "#!/bin/sh\necho 'error: this niftyhost always fails' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (out, report) = gpu_check(dir.path(), &bundle, &["--torch-python", "false"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "a failed step makes the exit status 1:\n{stdout}");
    assert_eq!(report["ok"], false);

    let steps = steps(&report);
    let train = &steps["train_fp32_b2"];
    assert_eq!(train["status"], "failed");
    let error = train["error"].as_str().unwrap();
    assert!(error.starts_with("niftyhost train exited with 1: error: this niftyhost always fails"), "{error}");
    assert!(
        steps["inference_fp32"]["error"].as_str().unwrap().contains("train_fp32_b2"),
        "{:#}",
        steps["inference_fp32"]
    );
    assert_eq!(steps["pytorch"]["status"], "failed");
    assert_eq!(steps["train_bf16_b2"]["status"], "skipped", "skipping does not depend on other steps");
    let failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(failed.contains(&"bundle") && failed.contains(&"losses_vs_cpu"), "{failed:?}");
    assert!(stdout.contains(&format!("FAILED: {}", failed.join(", "))), "{stdout}");
}
