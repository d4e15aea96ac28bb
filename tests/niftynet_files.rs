//! NiftyNet's own example configuration files (tests/data/niftynet/, only their data
//! paths changed) train for two iterations and write a segmentation of every subject on
//! the input grid: `[SYSTEM] queue_length`, `activation_function = prelu` on toynet, a
//! `(0, 0, 3)` full-extent inference window, `num_classes` above the labels found,
//! `output_interp_order = 0` and a NiftyNet text `histogram_ref_file` as the files write them.
//! NiftyNet's evaluation file scores its `inferred` section against its labels.

use std::path::Path;

use niftyhost_tests::{plugin_dir, repo_root, run, text, tissue_cohort, workspace_plugin};

/// Small subjects `a`, `b` in `data`, each file named `<id>_<suffix>.nii.gz` for every
/// suffix (the T1 image for the image suffixes, the tissue labels for `Label`).
fn niftynet_subjects(data: &Path, images: &[&str]) {
    let raw = data.join("raw");
    tissue_cohort(&raw, &["a", "b"]);
    for id in ["a", "b"] {
        for suffix in images {
            std::fs::copy(raw.join(format!("t1_{id}.nii.gz")), data.join(format!("{id}_{suffix}.nii.gz"))).unwrap();
        }
        std::fs::copy(raw.join(format!("tissue_{id}.nii.gz")), data.join(format!("{id}_Label.nii.gz"))).unwrap();
    }
    std::fs::remove_dir_all(raw).unwrap();
}

/// Trains `file` for two iterations and segments with it in `dir`; returns the
/// segmentations written under `seg_dir` (relative to `dir`).
fn train_and_segment(dir: &Path, file: &str, seg_dir: &str) -> Vec<std::path::PathBuf> {
    std::fs::copy(repo_root().join("tests/data/niftynet").join(file), dir.join(file)).unwrap();
    // The files keep NiftyNet's num_gpus = 1: as in NiftyNet, a machine without a GPU runs
    // them on the CPU, with a warning (system.cpu_fallback, which the translation sets).
    let no_gpu = !Path::new("/dev/nvidia0").exists();
    let fell_back = |stderr: &str| stderr.contains("running on the CPU (system.cpu_fallback)");
    let out = run(dir, &["train", "-c", file, "--set", "training.max_iter=2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{file} train:\n{stdout}\n{stderr}");
    assert!(format!("{stdout}{stderr}").contains("to iteration 2"), "{stdout}\n{stderr}");
    assert!(!no_gpu || fell_back(&stderr), "{file} train: no CPU fallback warning:\n{stderr}");
    let out = run(dir, &["inference", "-c", file]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{file} inference:\n{stdout}\n{stderr}");
    assert!(!no_gpu || fell_back(&stderr), "{file} inference: no CPU fallback warning:\n{stderr}");
    let mut segs: Vec<_> = std::fs::read_dir(dir.join(seg_dir)).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs
}

#[test]
fn default_segmentation_ini_trains_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses"), workspace_plugin("augment")]);
    let data = dir.path().join("data/mono");
    niftynet_subjects(&data, &["T1"]);
    let segs = train_and_segment(dir.path(), "default_segmentation.ini", "models/model_monomodal_toy/output/toy");
    assert_eq!(segs.len(), 2, "{segs:?}");
    for (seg, id) in segs.iter().zip(["a", "b"]) {
        assert!(seg.file_name().unwrap().to_str().unwrap().starts_with(id), "{seg:?}");
        let seg = niftyhost::io::read_volume(seg).unwrap();
        let image = niftyhost::io::read_volume(&data.join(format!("{id}_T1.nii.gz"))).unwrap();
        // Resampled to 1 mm and back by nearest neighbour (output_interp_order = 0).
        assert_eq!(seg.dims, image.dims);
        // Values are label values of the training labels (0, 1, 2), never class indices past them.
        assert!(seg.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)), "label values only");
    }
}

#[test]
fn default_multimodal_segmentation_ini_trains_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses"), workspace_plugin("augment")]);
    let data = dir.path().join("data/multi");
    niftynet_subjects(&data, &["T1", "T2", "T1c", "Flair"]);
    let segs =
        train_and_segment(dir.path(), "default_multimodal_segmentation.ini", "models/model_multimodal_toy/output/toy");
    assert_eq!(segs.len(), 2, "{segs:?}");
    let image = niftyhost::io::read_volume(&data.join("a_T1.nii.gz")).unwrap();
    assert_eq!(niftyhost::io::read_volume(&segs[0]).unwrap().dims, image.dims);
    // normalisation = True: the landmarks are written in NiftyNet's text format, in a
    // folder made for them (as NiftyNet's file, which names a folder that is not there).
    let landmarks =
        std::fs::read_to_string(dir.path().join("data/multimodal_parcellation/standardisation_models.txt")).unwrap();
    let names: Vec<&str> = landmarks.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["t1", "t2", "t1c", "flair"], "{landmarks}");
    assert!(landmarks.lines().all(|l| l.split_whitespace().skip(1).all(|v| v.parse::<f64>().is_ok())), "{landmarks}");
}

/// NiftyNet's evaluation file, as it is: `[SEGMENTATION] inferred = seg` names the input
/// section of the segmentations, paired with `[label]`'s references by subject id (file
/// names without the sections' `filename_contains` parts, both in one folder); `weight = T1`
/// names a section the file lacks, which an evaluation does not read.
#[test]
fn default_multimodal_segmentation_eval_ini_scores_the_inferred_section() {
    let dir = tempfile::tempdir().unwrap();
    let file = "default_multimodal_segmentation_eval.ini";
    std::fs::copy(repo_root().join("tests/data/niftynet").join(file), dir.path().join(file)).unwrap();
    let raw = dir.path().join("raw");
    tissue_cohort(&raw, &["a", "b", "c"]);
    let data = dir.path().join("data/eval");
    std::fs::create_dir_all(&data).unwrap();
    let tissue = |id: &str| raw.join(format!("tissue_{id}.nii.gz"));
    let seg = |id: &str| data.join(format!("Correct_WS3WT3WC1MergedSPCP_{id}_corr_corrIT.nii.gz"));
    let reference = |id: &str| data.join(format!("CHJP_{id}_vote.nii.gz"));
    // a: segmented exactly; b: segmented as another subject (shifted labels); c: a
    // reference without segmentation; d: a segmentation without reference.
    for (from, to) in [
        (tissue("a"), seg("a")),
        (tissue("c"), seg("b")),
        (tissue("b"), seg("d")),
        (tissue("a"), reference("a")),
        (tissue("b"), reference("b")),
        (tissue("c"), reference("c")),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    let out = run(dir.path(), &["evaluation", "-c", file]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("1 subject(s) of `seg` have no reference in `label`: [\"d\"]")
            && stderr.contains("1 of `label` have no segmentation in `seg`: [\"c\"]"),
        "the unpaired subjects are named: {stderr}"
    );
    // save_csv_dir is in model_dir, as NiftyNet's output paths are.
    let csv = dir.path().join("models/model_multimodal_toy/NiftyNetTestEval/metrics.csv");
    let csv = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}\n{stderr}", csv.display()));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|c| *c == name).unwrap_or_else(|| panic!("{name}: {header:?}"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let cells = |name: &str| rows.iter().map(|r| r[column(name)]).collect::<Vec<_>>();
    // evaluation_units = foreground: one row per paired subject; no split file, no phase.
    assert_eq!(cells("subject"), ["a", "b"], "{csv}");
    assert_eq!(cells("label"), ["foreground", "foreground"], "{csv}");
    assert_eq!(cells("unit"), ["foreground", "foreground"], "{csv}");
    assert_eq!(cells("phase"), ["", ""], "{csv}");
    let dice: Vec<f64> = cells("dice").iter().map(|d| d.parse().unwrap()).collect();
    assert_eq!(dice[0], 1.0, "{csv}");
    assert!(dice[1] > 0.0 && dice[1] < 1.0, "{csv}");
    // The metrics the file asks for are columns (n_pos_ref, n_pos_seg, positive_predictive_values).
    for name in ["jaccard", "false_positive_rate", "ppv", "ref_voxels", "seg_voxels"] {
        column(name);
    }
    assert_eq!(cells("ref_voxels")[0], cells("seg_voxels")[0]);
}
