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
}
