//! Sharded inference through the CLI: `--shard i/n` and a Slurm job array's variables
//! split the INFER subjects into disjoint shards whose outputs are, file for file, those
//! of one unsharded run; evaluation over the shared folder sees every subject.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use niftyhost_tests::{cohort_config, niftyhost_bin, plugin_dir, text, tissue_cohort, workspace_plugin};

/// The Slurm variables a test run starts without (the host may be inside a job array).
const SLURM: [&str; 4] =
    ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"];

/// Runs `niftyhost` in `cwd` with these Slurm variables only and no plugin path.
fn run_with(cwd: &Path, slurm: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(niftyhost_bin());
    cmd.args(args).current_dir(cwd).env_remove("NIFTYHOST_PLUGIN_PATH").env("RUST_LOG", "info");
    for name in SLURM {
        cmd.env_remove(name);
    }
    cmd.envs(slurm.iter().copied());
    cmd.output().expect("niftyhost runs")
}

/// The subjects one `inference --json` run segmented, checking it succeeded.
fn segmented(out: &Output) -> BTreeSet<String> {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "inference failed:\n{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    rows.as_array().unwrap().iter().map(|r| r["subject"].as_str().unwrap().to_owned()).collect()
}

/// File name → bytes of every file in `dir`.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn refused(out: &Output) -> String {
    let (_, stderr) = text(out);
    assert_eq!(out.status.code(), Some(2), "a usage error exits with 2:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn shards_split_the_infer_subjects_disjointly_and_together_equal_one_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ids = ["s0", "s1", "s2", "s3", "s4"];
    tissue_cohort(&root.join("data"), &ids);
    plugin_dir(root, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = cohort_config(
        root,
        &root.join("data"),
        "toynet",
        "batch_size = 1\nspatial_window_size = [12, 12, 12]\n\
         [training]\nmax_iter = 1\nsave_every_n = 1\nexclude_fraction_for_inference = 0.6\n\
         [inference]\nspatial_window_size = [40, 40, 40]\noverlap = 0.1",
    );
    let c = config.to_str().unwrap();
    let train = run_with(root, &[], &["train", "-c", c]);
    assert!(train.status.success(), "train failed:\n{}", text(&train).1);
    let split = std::fs::read_to_string(root.join("model/dataset_split.csv")).unwrap();
    let infer: BTreeSet<String> = split
        .lines()
        .filter(|l| l.split(',').nth(1) == Some("INFER"))
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    assert!(infer.len() >= 3 && infer.len() < ids.len(), "the split holds 3+ INFER subjects and others: {split}");
    let infer_into = |folder: &str, slurm: &[(&str, &str)], extra: &[&str]| {
        let set = format!("inference.output_dir=\"{folder}\"");
        run_with(root, slurm, &[&["inference", "-c", c, "--json", "--set", &set][..], extra].concat())
    };

    // One unsharded run: every INFER subject, and only those.
    let all = segmented(&infer_into("all", &[], &[]));
    assert_eq!(all, infer);

    // Two shards into one folder: disjoint, together every subject; round robin over the
    // sorted ids, so the first shard has the odd one out.
    let mut shards = Vec::new();
    for flag in ["0/2", "1/2"] {
        let out = infer_into("sharded", &[], &["--shard", flag]);
        let (_, stderr) = text(&out);
        let got = segmented(&out);
        assert!(
            stderr.contains(&format!("shard={flag}")) && stderr.contains(&format!("cohort={}", infer.len())),
            "{stderr}"
        );
        shards.push(got);
        if flag == "0/2" {
            // Evaluation now names exactly the subjects of the missing shard.
            let out = run_with(root, &[], &["evaluation", "-c", c, "--seg-dir", "sharded"]);
            let (_, stderr) = text(&out);
            assert!(!out.status.success());
            let sorted: Vec<&String> = infer.iter().collect();
            for (p, id) in sorted.iter().enumerate() {
                assert_eq!(stderr.contains(&format!("`{id}`: expected")), p % 2 == 1, "{id}: {stderr}");
            }
        }
    }
    let sorted: Vec<String> = infer.iter().cloned().collect();
    let expected: Vec<BTreeSet<String>> = (0..2).map(|i| sorted.iter().skip(i).step_by(2).cloned().collect()).collect();
    assert_eq!(shards, expected);
    assert!(shards[0].is_disjoint(&shards[1]));
    assert_eq!(&shards[0] | &shards[1], infer);
    let unsharded = files(&root.join("all"));
    assert_eq!(unsharded.len(), infer.len());
    assert!(files(&root.join("sharded")) == unsharded, "the shards' outputs differ from the unsharded run's");
    let distinct: BTreeSet<&Vec<u8>> = unsharded.iter().map(|(_, b)| b).collect();
    assert_eq!(distinct.len(), infer.len(), "the subjects differ, so must their segmentations");

    // A Slurm job array: task 1 of --array=1-2 (no COUNT: MAX - MIN + 1) is shard 0/2;
    // `--shard` wins over the array's variables.
    let first = infer_into(
        "slurm",
        &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "2")],
        &[],
    );
    assert_eq!(segmented(&first), shards[0]);
    let second =
        infer_into("slurm", &[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2")], &["--shard", "1/2"]);
    assert_eq!(segmented(&second), shards[1]);
    assert!(files(&root.join("slurm")) == unsharded, "the array's outputs differ from the unsharded run's");

    // Evaluation over the shards' folder scores every INFER subject.
    let out = run_with(root, &[], &["evaluation", "-c", c, "--seg-dir", "sharded", "--out", "metrics.csv"]);
    assert!(out.status.success(), "evaluation failed:\n{}", text(&out).1);
    let csv = std::fs::read_to_string(root.join("metrics.csv")).unwrap();
    let scored: BTreeSet<String> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()).collect();
    assert_eq!(scored, infer);

    // More shards than subjects: a warning, nothing written, not an error.
    let out = infer_into("empty", &[], &["--shard", "4/5"]);
    assert!(segmented(&out).is_empty());
    assert!(text(&out).1.contains("has no subject"), "{}", text(&out).1);
    assert!(!root.join("empty").exists() || files(&root.join("empty")).is_empty());
}

#[test]
fn rejects_bad_shards_from_the_flag_the_key_and_the_slurm_variables() {
    let dir = tempfile::tempdir().unwrap();
    let config = cohort_config(dir.path(), &dir.path().join("data"), "toynet", "");
    tissue_cohort(&dir.path().join("data"), &["a"]);
    let c = config.to_str().unwrap();
    for (flag, bad) in [("--shard", "2/2"), ("--shard", "x"), ("--set", "inference.shard=1/0")] {
        let stderr = refused(&run_with(dir.path(), &[], &["inference", "-c", c, flag, bad]));
        let given = bad.trim_start_matches("inference.shard=");
        assert!(
            stderr.contains("`inference.shard` (`--shard`)")
                && stderr.contains("0 <= i < n")
                && stderr.contains(&format!("\"{given}\"")),
            "{stderr}"
        );
    }
    let stderr = refused(&run_with(dir.path(), &[("SLURM_ARRAY_TASK_ID", "3")], &["inference", "-c", c]));
    assert!(stderr.contains("SLURM_ARRAY_TASK_COUNT") && stderr.contains("--shard i/n"), "{stderr}");
    let stderr = refused(&run_with(
        dir.path(),
        &[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "2")],
        &["inference", "-c", c],
    ));
    assert!(stderr.contains("SLURM_ARRAY_TASK_ID = 2") && stderr.contains("--array=0-1"), "{stderr}");
    // One image has nothing to split.
    let t1 = dir.path().join("data/t1_a.nii.gz");
    let args = ["inference", "-c", c, "--image", t1.to_str().unwrap(), "--out", "o.nii.gz", "--shard", "0/2"];
    let stderr = refused(&run_with(dir.path(), &[], &args));
    assert!(stderr.contains("does not apply to `--image`"), "{stderr}");
}
