//! k-fold cross-validation through the CLI: `train --all-folds` into `<model_dir>/fold_<k>`
//! on one shared split (resuming, then skipping complete folds), the fold flags' errors,
//! `inference --folds` averaging the folds' probabilities, evaluation beside the single
//! folds, and `export --folds` bundling the same ensemble.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use niftyhost::io::nifti::{write_image, WriteOptions};
use niftyhost::io::{read_volume, write_labels};
use niftyhost_tests::{cohort_config, plugin_dir, repo_root, run, text, workspace_plugin};

const IDS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];
const EDGE: usize = 20;

/// Writes a `EDGE`³ block of the bundled 2 mm T1 and tissue labels per subject, each from
/// its own corner inside the brain, as `t1_<id>.nii.gz` and `tissue_<id>.nii.gz`.
fn tiny_cohort(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let source = repo_root().join("data/mni152");
    let t1 = read_volume(&source.join("t1_2mm.nii.gz")).unwrap();
    let tissue = read_volume(&source.join("tissue_2mm.nii.gz")).unwrap();
    let [di, dj, _] = t1.dims;
    for (n, id) in IDS.iter().enumerate() {
        let corner = [34 + 3 * n, 48 + 2 * n, 30 + n];
        let block = |values: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(EDGE.pow(3));
            for k in 0..EDGE {
                for j in 0..EDGE {
                    let row = di * (corner[1] + j + dj * (corner[2] + k));
                    out.extend((0..EDGE).map(|i| values[corner[0] + i + row]));
                }
            }
            out
        };
        let dims = [EDGE; 3];
        let image = block(&t1.data);
        write_image(&data.join(format!("t1_{id}.nii.gz")), &t1.header, dims, 1, &image, &WriteOptions::default())
            .unwrap();
        let labels: Vec<u8> = block(&tissue.data).iter().map(|&v| v as u8).collect();
        write_labels(&data.join(format!("tissue_{id}.nii.gz")), &tissue.header, dims, &labels).unwrap();
    }
}

/// A model trained on two folds, with what the runs printed.
struct Folds {
    _dir: tempfile::TempDir,
    /// Where training runs (network and loss plugins).
    root: PathBuf,
    /// Where the other jobs run: with the network plugin only, which is all they load.
    segment: PathBuf,
    config: PathBuf,
    /// `inference --folds all` before any fold was trained.
    untrained: Output,
    /// The first `train --all-folds --json` (fold 0 had a checkpoint at iteration 1).
    first: Output,
    /// The second one.
    second: Output,
}

impl Folds {
    /// Runs a job of the config in `segment`; it must succeed.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![args[0], "-c", self.config.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = run(&self.segment, &all);
        assert!(out.status.success(), "{args:?} failed:\n{}", text(&out).1);
        out
    }

    fn model(&self) -> PathBuf {
        self.root.join("model")
    }
}

fn folds() -> &'static Folds {
    static F: OnceLock<Folds> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        plugin_dir(&root, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
        let segment = root.join("segment");
        plugin_dir(&segment, &[workspace_plugin("toynet")]);
        tiny_cohort(&root.join("data"));
        let config = cohort_config(
            &root,
            &root.join("data"),
            "toynet",
            "batch_size = 1\nspatial_window_size = [12, 12, 12]\nnormalisation = true\n\
             [training]\nmax_iter = 2\nsave_every_n = 1\nk_folds = 2\nexclude_fraction_for_inference = 0.34\n\
             [inference]\nprecision = \"fp32\"\noverlap = 0.25",
        );
        let c = config.to_str().unwrap();
        let untrained = run(&root, &["inference", "-c", c, "--folds", "all"]);
        let out = run(&root, &["train", "-c", c, "--fold", "0", "--max-iter", "1"]);
        assert!(out.status.success(), "{}", text(&out).1);
        let first = run(&root, &["train", "-c", c, "--all-folds", "--json"]);
        assert!(first.status.success(), "{}", text(&first).1);
        let second = run(&root, &["train", "-c", c, "--all-folds", "--json"]);
        assert!(second.status.success(), "{}", text(&second).1);
        Folds { _dir: dir, root, segment, config, untrained, first, second }
    })
}

/// The split file's rows: id → (phase, fold).
fn split(model: &Path) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(model.join("dataset_split.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("subject_id,phase,fold"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), (f[1].to_owned(), f[2].to_owned()))
        })
        .collect()
}

fn ids(value: &serde_json::Value) -> Vec<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[test]
fn all_folds_train_each_fold_on_the_shared_split_resume_and_then_skip_complete_folds() {
    let f = folds();
    let model = f.model();
    let err = text(&f.untrained).1;
    assert_eq!(f.untrained.status.code(), Some(1), "{err}");
    assert!(
        err.contains("fold 0 is not trained") && err.contains(&model.join("fold_0").display().to_string()),
        "{err}"
    );

    let rows = split(&model);
    assert_eq!(rows.len(), IDS.len());
    let infer: Vec<&String> = rows.iter().filter(|(_, (p, _))| p == "INFER").map(|(id, _)| id).collect();
    assert_eq!(infer.len(), 2, "{rows:?}");
    let report: serde_json::Value = serde_json::from_slice(&f.first.stdout).unwrap();
    let records = report.as_array().unwrap();
    assert_eq!(records.len(), 2, "one record per fold");
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r["fold"], k);
        assert_eq!(r["status"], "trained");
        let dir = model.join(format!("fold_{k}"));
        assert_eq!(r["dir"], dir.display().to_string());
        let last = dir.join("checkpoints/iter_00000002.safetensors");
        assert_eq!(r["checkpoint"], last.display().to_string());
        assert!(last.is_file() && dir.join("train_log.jsonl").is_file());
        let t = &r["training"];
        assert_eq!(t["started_at"], if k == 0 { 1 } else { 0 }, "fold 0 resumed from its checkpoint");
        assert_eq!(t["iterations"], 2);
        // VALID is this fold of the split file, TRAIN the other folds; INFER never either.
        let of = |same: bool| -> Vec<String> {
            let k = k.to_string();
            rows.iter()
                .filter(|(_, (p, fold))| p != "INFER" && (*fold == k) == same)
                .map(|(id, _)| id.clone())
                .collect()
        };
        assert_eq!(ids(&t["valid_subjects"]), of(true), "fold {k}");
        assert_eq!(ids(&t["train_subjects"]), of(false), "fold {k}");
        assert_eq!(of(true).len(), 2);
        // One split and one learned preprocessing for every fold, at the top.
        assert!(!dir.join("dataset_split.csv").exists() && !dir.join("histogram.json").exists());
    }
    assert!(model.join("histogram.json").is_file());
    assert!(!model.join("checkpoints").exists(), "no run outside the fold folders");

    let report: serde_json::Value = serde_json::from_slice(&f.second.stdout).unwrap();
    for (k, r) in report.as_array().unwrap().iter().enumerate() {
        assert_eq!((&r["status"], &r["training"]), (&serde_json::json!("complete"), &serde_json::Value::Null));
        assert!(text(&f.second).1.contains(&format!("fold {k} of 2 is complete")), "{}", text(&f.second).1);
    }
    assert_eq!(split(&model), rows, "the split file is reused as it is");
}

#[test]
fn fold_flags_need_k_fold_cross_validation_and_a_fold_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Configuration errors come before any data is read: the data folder need not exist.
    let config = cohort_config(root, &root.join("none"), "toynet", "");
    let c = config.to_str().unwrap();
    let refused = |args: &[&str]| -> String {
        let out = run(root, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).1);
        text(&out).1
    };
    let err = refused(&["train", "-c", c, "--fold", "5", "--set", "training.k_folds=3"]);
    assert!(err.contains("`training.fold`") && err.contains("training.k_folds") && err.contains("--fold"), "{err}");
    assert!(err.contains("got fold 5 of 3"), "{err}");
    for flag in [&["--fold", "0"][..], &["--all-folds"]] {
        let err = refused(&[&["train", "-c", c][..], flag].concat());
        assert!(err.contains(&format!("`{}`", flag[0])) && err.contains("`training.k_folds`"), "{err}");
    }
    let err = refused(&["inference", "-c", c, "--folds", "all"]);
    assert!(err.contains("`--folds`") && err.contains("`training.k_folds`"), "{err}");
    let err = refused(&["evaluation", "-c", c, "--folds", "0,3", "--set", "training.k_folds=3"]);
    assert!(err.contains("fold 3") && err.contains("`training.k_folds` = 3"), "{err}");
    let err = refused(&["export", "-c", c, "--folds", "0,x", "--out", "m.nhb"]);
    assert!(err.contains("`all`"), "{err}");
    refused(&["inference", "-c", c, "--fold", "1", "--folds", "all"]);
    refused(&["train", "-c", c, "--fold", "1", "--all-folds"]);
}

/// Probabilities of `image` with `flags`, as (class-major values, classes).
fn probabilities(f: &Folds, name: &str, image: &Path, flags: &[&str]) -> (Vec<f32>, usize) {
    let out = f.root.join(name);
    let mut args = vec!["inference", "--image", image.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(["--set", "inference.output_type=\"probabilities\""]);
    args.extend(flags);
    if flags.first() == Some(&"--model") {
        let o = run(&f.segment, &args);
        assert!(o.status.success(), "{}", text(&o).1);
    } else {
        f.run(&args);
    }
    let v = read_volume(&out).unwrap();
    (v.data, v.channels)
}

#[test]
fn the_ensemble_of_folds_averages_their_probabilities_and_its_bundle_segments_the_same() {
    let f = folds();
    let model = f.model();
    let infer: Vec<String> = split(&model).into_iter().filter(|(_, (p, _))| p == "INFER").map(|(id, _)| id).collect();
    let image = f.root.join(format!("data/t1_{}.nii.gz", infer[0]));
    let (p0, classes) = probabilities(f, "p0.nii.gz", &image, &["--fold", "0"]);
    let (p1, _) = probabilities(f, "p1.nii.gz", &image, &["--fold", "1"]);
    let (both, _) = probabilities(f, "both.nii.gz", &image, &["--folds", "all"]);
    assert_eq!((classes, p0.len()), (3, 3 * EDGE.pow(3)));
    let differ = p0.iter().zip(&p1).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(differ > 1e-4, "the folds' networks differ ({differ})");
    for (i, ((a, b), m)) in p0.iter().zip(&p1).zip(&both).enumerate() {
        assert!((m - (a + b) / 2.0).abs() < 1e-5, "value {i}: ensemble {m}, folds {a} and {b}");
    }

    // The held-out subjects: one fold and the ensemble side by side, then evaluated.
    f.run(&["inference", "--fold", "1"]);
    f.run(&["inference", "--folds", "0,1"]);
    for dir in ["fold_1", "folds_0_1"] {
        for id in &infer {
            assert!(model.join(format!("{dir}/inference/{id}_seg.nii.gz")).is_file(), "{dir}: {id}");
        }
        assert_eq!(std::fs::read_dir(model.join(dir).join("inference")).unwrap().count(), infer.len());
    }
    f.run(&["evaluation", "--fold", "1"]);
    f.run(&["evaluation", "--folds", "all"]);
    for dir in ["fold_1", "folds_0_1"] {
        let csv = std::fs::read_to_string(model.join(dir).join("evaluation/metrics.csv")).unwrap();
        let subjects: std::collections::BTreeSet<&str> =
            csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
        assert_eq!(subjects.into_iter().collect::<Vec<_>>(), infer, "{dir}");
    }

    // One bundle holding both folds segments as `inference --folds all`.
    let bundle = f.root.join("folds.nhb");
    let out = f.run(&["export", "--folds", "all", "--json", "--out", bundle.to_str().unwrap()]);
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        exported["manifest"]["weights"],
        serde_json::json!(["weights/model_0.safetensors", "weights/model_1.safetensors"])
    );
    let (bundled, _) = probabilities(f, "bundled.nii.gz", &image, &["--model", bundle.to_str().unwrap()]);
    let gap = bundled.iter().zip(&both).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(gap < 1e-6, "bundle vs --folds all: {gap}");
}
