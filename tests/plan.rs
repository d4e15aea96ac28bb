//! `niftyhost plan`: a Decathlon folder written here (2 channels, one of them CT, and
//! imagesTs) planned, then trained, segmented and evaluated with the planned config;
//! fingerprint statistics against the values the test wrote; the refusals; the same
//! bytes for the same data whatever the thread count.

use std::path::{Path, PathBuf};

use niftyhost::io::nifti::{reference_for_affine, write_image, Voxel, WriteOptions};
use niftyhost_tests::{plugin_dir, run, text, workspace_plugin};

/// Volume size of the synthetic subjects `(i, j, k)`.
const DIMS: [usize; 3] = [24, 20, 16];

fn affine(spacing: [f64; 3]) -> [[f64; 4]; 4] {
    [[spacing[0], 0.0, 0.0, 0.0], [0.0, spacing[1], 0.0, 0.0], [0.0, 0.0, spacing[2], 0.0], [0.0, 0.0, 0.0, 1.0]]
}

/// The label of voxel `(i, j, k)` of subject `n`: a box of class 1 with a core of class 2,
/// shifted by the subject.
fn label_at(n: usize, i: usize, j: usize, k: usize) -> u8 {
    let inside = |lo: usize, hi: usize| (lo + n..hi + n).contains(&i) && (4..16).contains(&j) && (4..12).contains(&k);
    if inside(9, 13) {
        2
    } else {
        u8::from(inside(6, 16))
    }
}

/// Writes a volume of `f(i, j, k)` (an image, or labels as uint8).
fn write<T: Voxel>(path: &Path, dims: [usize; 3], spacing: [f64; 3], f: impl Fn(usize, usize, usize) -> T) {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            data.extend((0..dims[0]).map(|i| f(i, j, k)));
        }
    }
    write_image(path, &reference_for_affine(&affine(spacing)), dims, 1, &data, &WriteOptions::default()).unwrap();
}

/// The CT value of a voxel: the label's class times 100 plus a ramp along `i`, so the
/// foreground's statistics are known from the labels.
fn ct_at(n: usize, i: usize, j: usize, k: usize) -> f32 {
    f32::from(label_at(n, i, j, k)) * 100.0 + i as f32 - 500.0 * f32::from(label_at(n, i, j, k) == 0)
}

/// A Decathlon folder: `train` labelled subjects with channels CT (`_0000`) and T2
/// (`_0001`), `test` unlabelled ones in imagesTs.
fn decathlon(root: &Path, train: usize, test: usize) -> PathBuf {
    let ds = root.join("Task01_Synthetic");
    for folder in ["imagesTr", "labelsTr", "imagesTs"] {
        std::fs::create_dir_all(ds.join(folder)).unwrap();
    }
    std::fs::write(
        ds.join("dataset.json"),
        r#"{"name": "synthetic", "channel_names": {"0": "CT", "1": "T2"},
            "labels": {"background": 0, "organ": 1, "core": 2}, "file_ending": ".nii.gz"}"#,
    )
    .unwrap();
    let spacing = [1.0, 1.0, 2.0];
    for n in 0..train + test {
        let (folder, id) =
            if n < train { ("imagesTr", format!("case_{n:03}")) } else { ("imagesTs", format!("test_{n:03}")) };
        write(&ds.join(folder).join(format!("{id}_0000.nii.gz")), DIMS, spacing, |i, j, k| ct_at(n, i, j, k));
        write(&ds.join(folder).join(format!("{id}_0001.nii.gz")), DIMS, spacing, |i, j, k| {
            (i + 2 * j + 3 * k) as f32 + 50.0 * f32::from(label_at(n, i, j, k))
        });
        if n < train {
            write(&ds.join("labelsTr").join(format!("{id}.nii.gz")), DIMS, spacing, |i, j, k| label_at(n, i, j, k));
        }
    }
    ds
}

fn plugins(dir: &Path) -> String {
    let libs = ["dynunet", "seglosses", "augment"].map(workspace_plugin);
    plugin_dir(dir, &libs).display().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_planned_decathlon_dataset_trains_segments_its_test_images_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let ds = decathlon(dir.path(), 5, 2);
    let plugins = plugins(dir.path());
    let out = dir.path().join("planned.toml");
    let (o, e) = text(&run(
        dir.path(),
        &[
            "plan",
            "--dataset",
            ds.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--plugin-dir",
            &plugins,
            "--memory-gb",
            "0.5",
            "--set",
            "system.model_dir=\"model\"",
        ],
    ));
    assert!(out.is_file(), "{o}\n{e}");
    assert!(e.contains("check: forward/backward of"), "the batch is checked for real:\n{e}");
    let planned = std::fs::read_to_string(&out).unwrap();
    // One section per channel, paired with the labels by id, imagesTs for inference.
    assert!(planned.contains("[input.ct]") && planned.contains("[input.t2]") && planned.contains("[input.label]"));
    assert!(planned.contains("filename_contains = [\"_0001\"]"), "{planned}");
    assert!(planned.contains("inference_path_to_search ="), "{planned}");
    assert!(planned.contains("name = \"dynunet\""));
    // Anisotropic k (2 mm against 1 mm): 1×3×3 kernels in [D, H, W] at level 0.
    assert!(planned.contains("kernel_sizes = [[1, 3, 3]"), "{planned}");
    assert!(planned.contains("pixdim = [1.0, 1.0, 2.0]"), "{planned}");
    // Every derived value names its rule.
    for key in ["axcodes", "pixdim", "batch_size", "spatial_window_size", "kernel_sizes", "strides", "max_iter"] {
        let line = planned.lines().find(|l| l.starts_with(&format!("{key} ="))).unwrap();
        assert!(line.contains("# rule:") || line.contains("# --iterations"), "{line}");
    }

    // Fingerprint: CT foreground = class 1 (100 + i) and class 2 (200 + i) voxels; the
    // statistics recomputed here from the same definition.
    let fp = json(&dir.path().join("fingerprint.json"));
    assert_eq!(fp["subjects"].as_array().unwrap().len(), 5);
    let mut values: Vec<f64> = Vec::new();
    let mut classes = [0u64; 3];
    for k in 0..DIMS[2] {
        for j in 0..DIMS[1] {
            for i in 0..DIMS[0] {
                let l = label_at(0, i, j, k);
                classes[usize::from(l)] += 1;
                if l > 0 {
                    values.push(f64::from(ct_at(0, i, j, k)));
                }
            }
        }
    }
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    let pct = |q: f64| {
        let r = q / 100.0 * (values.len() - 1) as f64;
        let lo = r.floor() as usize;
        values[lo] + (r - r.floor()) * (values[(lo + 1).min(values.len() - 1)] - values[lo])
    };
    let s0 = &fp["subjects"][0];
    assert_eq!(s0["id"], "case_000");
    assert_eq!(s0["shape"], serde_json::json!(DIMS));
    assert_eq!(s0["axcodes"], "RAS");
    assert_eq!(s0["class_voxels"], serde_json::json!(classes));
    let ct = &s0["intensity"][0];
    assert_eq!(ct["voxels"].as_u64().unwrap() as usize, values.len());
    assert!((ct["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{ct}");
    assert!((ct["std"].as_f64().unwrap() - std).abs() < 1e-9, "{ct}");
    assert!((ct["percentile_00_5"].as_f64().unwrap() - pct(0.5)).abs() < 1e-9, "{ct}");
    assert!((ct["percentile_99_5"].as_f64().unwrap() - pct(99.5)).abs() < 1e-9, "{ct}");
    // CT is clipped and z-scored with the cohort's foreground statistics, written in the config.
    let agg = &fp["aggregates"]["intensity"][0];
    let clip = format!(
        "intensity_clip = [{:?}, {:?}]",
        (agg["percentile_00_5"].as_f64().unwrap() * 1e4).round() / 1e4,
        (agg["percentile_99_5"].as_f64().unwrap() * 1e4).round() / 1e4
    );
    assert!(planned.contains(&clip), "{clip} in\n{planned}");
    assert!(planned.contains("intensity_zscore = ["));

    // Train a couple of iterations, segment (imagesTs too: held out), evaluate.
    let cfg = out.to_str().unwrap();
    let quick = ["--max-iter", "2", "--set", "training.save_every_n=2", "--set", "inference.tta_mirror_axes=[0]"];
    let train = run(dir.path(), &[&["train", "-c", cfg, "--plugin-dir", &plugins][..], &quick].concat());
    let (o, e) = text(&train);
    assert!(train.status.success(), "{o}\n{e}");
    let infer = run(dir.path(), &[&["inference", "-c", cfg, "--plugin-dir", &plugins][..], &quick].concat());
    let (o, e) = text(&infer);
    assert!(infer.status.success(), "{o}\n{e}");
    for id in ["test_005", "test_006"] {
        assert!(dir.path().join(format!("model/inference/{id}_seg.nii.gz")).is_file(), "{id}: {e}");
    }
    let eval = run(dir.path(), &["evaluation", "-c", cfg]);
    let (o, e) = text(&eval);
    assert!(eval.status.success(), "{o}\n{e}");
}

#[test]
fn plans_are_the_same_bytes_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let ds = decathlon(dir.path(), 3, 0);
    let mut outputs = Vec::new();
    for threads in ["1", "3"] {
        let out = dir.path().join(format!("t{threads}/planned.toml"));
        let plan = std::process::Command::new(niftyhost_tests::niftyhost_bin())
            .args(["plan", "--dataset", ds.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-check"])
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
        outputs.push((std::fs::read(&out).unwrap(), std::fs::read(out.with_file_name("fingerprint.json")).unwrap()));
    }
    assert!(outputs[0] == outputs[1], "planned.toml and fingerprint.json differ between 1 and 3 threads");
}

/// Runs `plan -c` on a config of sections `image` and `label` in `data`.
fn plan_config(dir: &Path, data: &Path, classes: usize) -> (i32, String) {
    let cfg = dir.join("data.toml");
    std::fs::write(
        &cfg,
        format!(
            "[input.image]\npath_to_search = {d:?}\nfilename_contains = [\"_img\"]\n\
             [input.label]\npath_to_search = {d:?}\nfilename_contains = [\"_lab\"]\n\
             [segmentation]\nimage = [\"image\"]\nlabel = \"label\"\nnum_classes = {classes}\n",
            d = data.display().to_string()
        ),
    )
    .unwrap();
    let out = run(dir, &["plan", "-c", cfg.to_str().unwrap(), "--out", "p/planned.toml", "--no-check"]);
    (out.status.code().unwrap_or(-1), text(&out).1)
}

#[test]
fn plan_refuses_what_it_cannot_plan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let sp = [1.0, 1.0, 1.0];
    write(&data.join("a_img.nii.gz"), DIMS, sp, |i, _, _| i as f32);
    write(&data.join("a_lab.nii.gz"), DIMS, sp, |i, j, k| label_at(0, i, j, k));
    // One subject only: a usage error.
    let (code, e) = plan_config(dir.path(), &data, 3);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("at least 2 labelled subjects"), "{e}");
    // A label of another shape and one of another spacing: named, exit 1 (bad data).
    write(&data.join("b_img.nii.gz"), DIMS, sp, |i, _, _| i as f32);
    write(&data.join("b_lab.nii.gz"), [24, 20, 15], sp, |_, _, _| 1u8);
    write(&data.join("c_img.nii.gz"), DIMS, sp, |i, _, _| i as f32);
    write(&data.join("c_lab.nii.gz"), DIMS, [1.0, 1.0, 1.5], |_, _, _| 1u8);
    let (code, e) = plan_config(dir.path(), &data, 3);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("b_img.nii.gz") && e.contains("b_lab.nii.gz") && e.contains("[24, 20, 15]"), "{e}");
    assert!(e.contains("c_lab.nii.gz") && e.contains("mm"), "{e}");
    // Labels outside the declared classes (0..2 of num_classes 2): the file and values named.
    write(&data.join("b_lab.nii.gz"), DIMS, sp, |i, j, k| label_at(0, i, j, k));
    write(&data.join("c_lab.nii.gz"), DIMS, sp, |i, j, k| label_at(0, i, j, k));
    let (code, e) = plan_config(dir.path(), &data, 2);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("a_lab.nii.gz holds values 2 outside the declared classes 0..1"), "{e}");
    // And the same data with 3 classes plans.
    let (code, e) = plan_config(dir.path(), &data, 3);
    assert_eq!(code, 0, "{e}");
}

#[test]
fn the_cohort_subjects_plan_from_niftynet_style_sections() {
    let dir = tempfile::tempdir().unwrap();
    let cohort = niftyhost_tests::repo_root().join("tests/data/cohort");
    let cfg = dir.path().join("data.toml");
    let section = |name: &str, part: &str| {
        format!(
            "[input.{name}]\npath_to_search = {:?}\nfilename_contains = [\"{part}\"]\n",
            cohort.display().to_string()
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "{}{}{}[segmentation]\nimage = [\"t1\", \"t2\"]\nlabel = \"label\"\nnum_classes = 3\n",
            section("t1", "_t1"),
            section("t2", "_t2"),
            section("label", "_label")
        ),
    )
    .unwrap();
    let out = run(dir.path(), &["plan", "-c", cfg.to_str().unwrap(), "--out", "planned.toml", "--no-check"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    let planned = std::fs::read_to_string(dir.path().join("planned.toml")).unwrap();
    // sub00 and sub06 are 2.2 mm, sub05 2 mm: the median; three axis codes, a tie → RAS.
    assert!(planned.contains("pixdim = [2.2, 2.2, 2.2]"), "{planned}");
    assert!(planned.contains("axcodes = \"RAS\""), "{planned}");
    assert!(planned.contains("kernel_sizes = [[3, 3, 3]"), "{planned}");
    assert!(planned.contains("base_channels = 16"), "a CPU device: {planned}");
    let check = run(dir.path(), &["config", "-c", "planned.toml"]);
    assert!(check.status.success(), "{}", text(&check).1);
}

#[test]
fn minutes_give_the_iterations_of_the_measured_step_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let ds = decathlon(dir.path(), 3, 0);
    let plugins = plugins(dir.path());
    let base = ["plan", "--dataset", ds.to_str().unwrap(), "--out", "planned.toml", "--plugin-dir", &plugins];
    let out = run(dir.path(), &[&base[..], &["--memory-gb", "0.5", "--minutes", "0.5"]].concat());
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    // The check's timed line: "a warm step of B windows of [..] on Cpu: S s, N iterations in 0.5 min".
    let line = e.lines().find(|l| l.contains("a warm step of")).unwrap_or_else(|| panic!("no timed step:\n{e}"));
    let seconds: f64 = line.split(": ").last().unwrap().split(" s,").next().unwrap().trim().parse().unwrap();
    let n: f64 = line.split(" s, ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // S is printed to 2 decimals: N is 30 s over a step within half a hundredth of it.
    assert!(seconds > 0.0, "{line}");
    assert!(
        n <= (30.0 / (seconds - 0.005).max(1e-3)).floor() && n >= (30.0 / (seconds + 0.005)).floor().max(1.0),
        "{line}"
    );
    let planned = std::fs::read_to_string(dir.path().join("planned.toml")).unwrap();
    let max_iter = planned.lines().find(|l| l.starts_with("max_iter =")).unwrap();
    assert!(max_iter.starts_with(&format!("max_iter = {n} ")), "{max_iter} against {line}");
    assert!(max_iter.contains("# rule: the training budget (--minutes 0.5)"), "{max_iter}");

    // Refused before any data is read: a budget that is not positive, and no check to time.
    let zero = run(dir.path(), &[&base[..], &["--minutes", "0"]].concat());
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero).1);
    assert!(text(&zero).1.contains("`--minutes` must be a positive number"), "{}", text(&zero).1);
    let unchecked = run(dir.path(), &[&base[..], &["--minutes", "1", "--no-check"]].concat());
    assert_eq!(unchecked.status.code(), Some(2), "{}", text(&unchecked).1);
    assert!(text(&unchecked).1.contains("--no-check"), "{}", text(&unchecked).1);
}
