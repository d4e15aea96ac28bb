//! The metric set against independent implementations: the cases and expected values in
//! `tests/fixtures/metrics/` come from scipy (`distance_transform_edt(sampling=spacing)`,
//! `binary_erosion`, `ndimage.label`, numpy percentiles) and SimpleITK
//! (`HausdorffDistanceImageFilter`, `LabelOverlapMeasuresImageFilter`,
//! `ConnectedComponent`), written by `tests/fixtures/metrics/make_fixtures.py`.
//!
//! Tolerances: counts, surface voxel counts, component counts and detections are exact.
//! Ratios (Dice, rates, surface Dice, per-component Dice) and volumes agree to 1e-12
//! relative. Distances (HD, HD95, ASSD, directed means) agree to 1e-9 relative: both
//! sides compute the same exact Euclidean distances in double precision and differ only
//! in the order of floating-point operations; the script computes with the float32
//! voxel size NIfTI stores, the one the reader returns. SimpleITK's values agree to
//! 1e-6 relative (its distance maps are computed with their own rounding).
//!
//! Where definitions differ:
//! - SimpleITK's "average Hausdorff distance" is the mean of the two directed mean
//!   distances, `(mean d(S→R) + mean d(R→S)) / 2`; our ASSD (and MONAI's symmetric
//!   average surface distance) pools both sets, `(Σ d(S→R) + Σ d(R→S)) / (|∂S| + |∂R|)`.
//!   The test compares SimpleITK's value with the mean of our two directed means.
//! - SimpleITK's Hausdorff filter works on whatever voxel sets it is given: the script
//!   gives it the surface masks, so its Hausdorff distance is ours. (On the full masks,
//!   as it is usually called, it is the same number for Hausdorff distance, but its
//!   average differs.)
//! - SimpleITK's overlap filter leaves cases with an empty mask undefined; the script
//!   records no SimpleITK values there and the test compares our documented conventions
//!   with scipy's side only.

use std::path::PathBuf;

use niftyhost::io::read_volume;
use niftyhost::metrics::{evaluate_labels, BinaryMetrics, ComponentSummary, Connectivity, EvalOptions, Unit};
use niftyhost::preprocess::SavedModel;
use serde_json::Value;

fn fixtures() -> PathBuf {
    niftyhost_tests::repo_root().join("tests/fixtures/metrics")
}

/// A number of the JSON, with "nan", "inf" and "-inf" as strings.
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Equal within `rel` (relative to max(1, |want|)), NaN equal to NaN, infinities exact.
fn check(what: &str, got: f64, want: f64, rel: f64) {
    let ok = if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= rel * want.abs().max(1.0)
    };
    assert!(ok, "{what}: got {got}, expected {want} (tolerance {rel} relative)");
}

const RATIO: f64 = 1e-12;
const DISTANCE: f64 = 1e-9;
const SITK: f64 = 1e-6;

fn check_binary(at: &str, m: &BinaryMetrics, e: &Value) {
    let counts = [
        ("tp", m.tp),
        ("fp", m.fp),
        ("fn", m.fn_),
        ("tn", m.tn),
        ("ref_pos", m.ref_pos),
        ("ref_neg", m.ref_neg),
        ("seg_pos", m.seg_pos),
        ("seg_neg", m.seg_neg),
        ("seg_surface_voxels", m.seg_surface_voxels),
        ("ref_surface_voxels", m.ref_surface_voxels),
    ];
    for (name, got) in counts {
        assert_eq!(got, int(&e[name]), "{at}: {name}");
    }
    let ratios = [
        ("dice", m.dice),
        ("jaccard", m.jaccard),
        ("sensitivity", m.sensitivity),
        ("specificity", m.specificity),
        ("accuracy", m.accuracy),
        ("false_positive_rate", m.false_positive_rate),
        ("ppv", m.ppv),
        ("npv", m.npv),
        ("informedness", m.informedness),
        ("markedness", m.markedness),
        ("ref_volume_mm3", m.ref_volume_mm3),
        ("seg_volume_mm3", m.seg_volume_mm3),
        ("volume_difference_mm3", m.volume_difference_mm3),
        ("relative_volume_difference", m.relative_volume_difference),
        ("surface_dice", m.surface_dice),
    ];
    for (name, got) in ratios {
        check(&format!("{at}: {name}"), got, num(&e[name]), RATIO);
    }
    let distances = [
        ("hausdorff_mm", m.hausdorff_mm),
        ("hausdorff95_mm", m.hausdorff95_mm),
        ("assd_mm", m.assd_mm),
        ("mean_seg_to_ref_mm", m.mean_seg_to_ref_mm),
        ("mean_ref_to_seg_mm", m.mean_ref_to_seg_mm),
    ];
    for (name, got) in distances {
        check(&format!("{at}: {name}"), got, num(&e[name]), DISTANCE);
    }
    // SimpleITK, where it is defined (both masks non-empty).
    if let Some(s) = e["sitk"].as_object() {
        check(&format!("{at}: SimpleITK Hausdorff"), m.hausdorff_mm, num(&s["hausdorff_mm"]), SITK);
        let mean_of_means = (m.mean_seg_to_ref_mm + m.mean_ref_to_seg_mm) / 2.0;
        check(&format!("{at}: SimpleITK average Hausdorff"), mean_of_means, num(&s["average_hausdorff_mm"]), SITK);
        check(&format!("{at}: SimpleITK Dice"), m.dice, num(&s["dice"]), SITK);
        check(&format!("{at}: SimpleITK Jaccard"), m.jaccard, num(&s["jaccard"]), SITK);
    }
}

fn check_components(at: &str, c: &ComponentSummary, e: &Value) {
    let counts = [
        ("ref_components", c.ref_components()),
        ("seg_components", c.seg_components()),
        ("detected", c.detected()),
        ("missed", c.missed()),
        ("spurious", c.spurious()),
    ];
    for (name, got) in counts {
        assert_eq!(got as u64, int(&e[name]), "{at}: {name}");
    }
    for (name, got) in
        [("precision", c.precision()), ("recall", c.recall()), ("f1", c.f1()), ("mean_dice", c.mean_dice())]
    {
        check(&format!("{at}: {name}"), got, num(&e[name]), RATIO);
    }
    // Components are numbered alike (first voxel in memory order), so they compare one
    // by one.
    for (side, got) in [("reference", &c.reference), ("segmentation", &c.segmentation)] {
        let want = e[side].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{at}: {side} components");
        for (n, (g, w)) in got.iter().zip(want).enumerate() {
            let here = format!("{at}: {side} component {}", n + 1);
            assert_eq!(g.id, n + 1, "{here}");
            assert_eq!(g.voxels, int(&w["voxels"]), "{here}: voxels");
            assert_eq!(g.overlap_voxels, int(&w["overlap"]), "{here}: overlap");
            let partners: Vec<usize> = w["overlapping"].as_array().unwrap().iter().map(|p| int(p) as usize).collect();
            assert_eq!(g.overlapping, partners, "{here}: overlapping components");
            assert_eq!(g.hit, w["hit"].as_bool().unwrap(), "{here}: detected/matched");
            if side == "reference" {
                check(&format!("{here}: Dice"), g.dice, num(&w["dice"]), RATIO);
            }
        }
    }
}

#[test]
fn every_metric_matches_scipy_and_simpleitk_on_the_fixture_cases() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    let expected: Value = serde_json::from_str(&text).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let (mut rows_checked, mut cc_checked) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let seg = read_volume(&fixtures().join(format!("{name}_seg.nii.gz"))).unwrap();
        let reference = read_volume(&fixtures().join(format!("{name}_ref.nii.gz"))).unwrap();
        let dims: Vec<usize> = case["dims"].as_array().unwrap().iter().map(|d| int(d) as usize).collect();
        assert_eq!(seg.dims.to_vec(), dims, "{name}: dims");
        let spacing: Vec<f64> = case["spacing"].as_array().unwrap().iter().map(num).collect();
        assert_eq!(reference.pixdim.to_vec(), spacing, "{name}: the voxel size read is the one the script used");
        let labels: Vec<u32> = case["labels"].as_array().unwrap().iter().map(|l| int(l) as u32).collect();
        let tolerance_mm = num(&case["tolerance_mm"]);

        let expected_cc = case["components"].as_array().unwrap();
        let mut settings: Vec<(Connectivity, f64)> = expected_cc
            .iter()
            .map(|c| (Connectivity::from_neighbours(int(&c["connectivity"]) as u32).unwrap(), num(&c["min_overlap"])))
            .collect();
        settings.dedup();
        for (connectivity, min_overlap) in settings {
            let options = EvalOptions {
                labels: labels.clone(),
                units: vec![Unit::Label, Unit::Foreground, Unit::Cc],
                tolerance_mm,
                connectivity,
                min_overlap,
            };
            let rows = evaluate_labels(&seg.data, &reference.data, seg.dims, reference.pixdim, &options);
            let voxel_rows: Vec<_> = rows.iter().filter(|r| r.unit != Unit::Cc).collect();
            let want_rows = case["rows"].as_array().unwrap();
            assert_eq!(voxel_rows.len(), want_rows.len(), "{name}: label and foreground rows");
            for (got, want) in voxel_rows.iter().zip(want_rows) {
                assert_eq!(got.unit.name(), want["unit"].as_str().unwrap(), "{name}: unit order");
                assert_eq!(got.target.to_string(), want["target"].as_str().unwrap(), "{name}: target order");
                let at = format!("{name} {} {}", got.unit, got.target);
                check_binary(&at, got.metrics.as_ref().unwrap(), want);
                assert_eq!(got.ref_voxels, int(&want["ref_pos"]), "{at}: ref_voxels");
                assert_eq!(got.seg_voxels, int(&want["seg_pos"]), "{at}: seg_voxels");
                rows_checked += 1;
            }
            let cc_rows: Vec<_> = rows.iter().filter(|r| r.unit == Unit::Cc).collect();
            let want_cc: Vec<&Value> = expected_cc
                .iter()
                .filter(|c| {
                    int(&c["connectivity"]) == u64::from(connectivity.neighbours())
                        && num(&c["min_overlap"]) == min_overlap
                })
                .collect();
            assert_eq!(cc_rows.len(), want_cc.len(), "{name}: component rows");
            for (got, want) in cc_rows.iter().zip(want_cc) {
                assert_eq!(got.target.to_string(), want["target"].as_str().unwrap(), "{name}: component targets");
                let at = format!(
                    "{name} cc {} ({}-connected, overlap > {min_overlap})",
                    got.target,
                    connectivity.neighbours()
                );
                check_components(&at, got.components.as_ref().unwrap(), want);
                cc_checked += 1;
            }
        }
    }
    eprintln!("{rows_checked} label/foreground rows and {cc_checked} component rows match the fixtures");
}

/// The `niftyhost evaluation` job on two fixture subjects: every row, column, summary
/// and component file, with values matching the fixtures.
#[test]
fn evaluation_job_writes_every_metric_per_subject_label_and_unit() {
    let dir = tempfile::tempdir().unwrap();
    let (data, segs) = (dir.path().join("data"), dir.path().join("segs"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&segs).unwrap();
    for case in ["multilabel", "ellipsoids_aniso"] {
        let reference = fixtures().join(format!("{case}_ref.nii.gz"));
        // The image section only has to exist: the reference stands in for it.
        std::fs::copy(&reference, data.join(format!("img_{case}.nii.gz"))).unwrap();
        std::fs::copy(&reference, data.join(format!("ref_{case}.nii.gz"))).unwrap();
        std::fs::copy(fixtures().join(format!("{case}_seg.nii.gz")), segs.join(format!("{case}_seg.nii.gz"))).unwrap();
    }
    let config = dir.path().join("config.toml");
    let text = format!(
        "[system]\nmodel_dir = \"{model}\"\n\n[input.img]\npath_to_search = \"{data}\"\nfilename_contains = [\"img_\"]\n\n\
         [input.lab]\npath_to_search = \"{data}\"\nfilename_contains = [\"ref_\"]\n\n\
         [segmentation]\nimage = [\"img\"]\nlabel = \"lab\"\nnum_classes = 6\n\n\
         [evaluation]\nseg_dir = \"{segs}\"\nsurface_tolerance_mm = 1.6\n",
        model = dir.path().join("model").display(),
        data = data.display(),
        segs = segs.display(),
    );
    std::fs::write(&config, text).unwrap();
    let c = config.to_str().unwrap();
    let out = niftyhost_tests::run(dir.path(), &["evaluation", "-c", c]);
    let (_, stderr) = niftyhost_tests::text(&out);
    assert!(out.status.success(), "evaluation failed:\n{stderr}");
    assert!(stderr.contains("label unit: mean ± std (median)") && stderr.contains("cc unit"), "{stderr}");

    let eval = dir.path().join("model/evaluation");
    let csv = std::fs::read_to_string(eval.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..11],
        ["subject", "label", "dice", "jaccard", "tp", "fp", "fn", "tn", "ref_voxels", "seg_voxels", "unit"]
    );
    for column in
        ["hausdorff95_mm", "assd_mm", "surface_dice", "relative_volume_difference", "detection_f1", "informedness"]
    {
        assert!(header.contains(&column), "{column} in {header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    // Per subject: labels 0..5, the foreground, components of labels 1..5 and the
    // foreground.
    assert_eq!(rows.len(), 2 * (6 + 1 + 5 + 1));
    let field = |r: &Vec<&str>, name: &str| -> f64 {
        let v = r[header.iter().position(|h| *h == name).unwrap()];
        v.parse().unwrap_or_else(|_| panic!("{name} = {v:?}"))
    };
    let find = |subject: &str, label: &str, unit: &str| {
        rows.iter()
            .find(|r| r[0] == subject && r[1] == label && r[10] == unit)
            .unwrap_or_else(|| panic!("{subject} {label} {unit}"))
    };
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap();
    let case = expected["cases"].as_array().unwrap().iter().find(|c| c["name"] == "multilabel").unwrap();
    for want in case["rows"].as_array().unwrap() {
        let got = find("multilabel", want["target"].as_str().unwrap(), want["unit"].as_str().unwrap());
        for name in ["dice", "hausdorff_mm", "hausdorff95_mm", "assd_mm", "surface_dice", "sensitivity"] {
            // Six decimals in the CSV.
            check(&format!("multilabel {:?} {name}", &got[..2]), field(got, name), num(&want[name]), 1e-6);
        }
    }
    // Undefined and infinite values are spelled out; component rows leave voxel metrics
    // empty.
    let absent = find("ellipsoids_aniso", "3", "label");
    assert!(field(absent, "dice").is_nan() && field(absent, "hausdorff_mm").is_nan());
    assert_eq!(field(find("multilabel", "3", "label"), "hausdorff_mm"), f64::INFINITY);
    let cc = find("ellipsoids_aniso", "1", "cc");
    assert_eq!(cc[2], "");
    assert_eq!(
        (field(cc, "ref_components"), field(cc, "seg_components"), field(cc, "spurious_components")),
        (1.0, 2.0, 1.0)
    );

    let summary = std::fs::read_to_string(eval.join("metrics_summary.csv")).unwrap();
    assert!(summary.starts_with("unit,label,metric,n,mean,std,median,min,max,nan,inf\n"));
    let dice1: Vec<&str> = summary.lines().find(|l| l.starts_with("label,1,dice,")).unwrap().split(',').collect();
    let d = [field(find("multilabel", "1", "label"), "dice"), field(find("ellipsoids_aniso", "1", "label"), "dice")];
    assert_eq!(dice1[3], "2");
    check("summary mean", dice1[4].parse().unwrap(), (d[0] + d[1]) / 2.0, 1e-6);
    check("summary std", dice1[5].parse().unwrap(), (d[0] - d[1]).abs() / 2.0, 1e-6);
    let hd3: Vec<&str> = summary.lines().find(|l| l.starts_with("label,3,hausdorff_mm,")).unwrap().split(',').collect();
    assert_eq!((hd3[3], hd3[9], hd3[10]), ("0", "1", "1"), "label 3: NaN in one subject, inf in the other");
    let components = std::fs::read_to_string(eval.join("metrics_components.csv")).unwrap();
    assert!(components.lines().any(|l| l.starts_with("ellipsoids_aniso,1,segmentation,") && l.contains(",spurious,")));

    // No split file: every subject, said to be none known held out; the phase column is
    // empty.
    assert!(stderr.contains("evaluation: no split file") && stderr.contains("none known to be held out"), "{stderr}");
    assert_eq!(header.last(), Some(&"phase"));
    assert!(rows.iter().all(|r| r.last() == Some(&"")), "{csv}");
    // A split without INFER subjects: evaluation falls back to them and says so, and
    // the CSV names each subject's phase.
    let split = dir.path().join("model/dataset_split.csv");
    std::fs::write(&split, "subject_id,phase,fold\nmultilabel,TRAIN,\nellipsoids_aniso,VALID,\n").unwrap();
    let out = niftyhost_tests::run(dir.path(), &["evaluation", "-c", c]);
    let (_, stderr) = niftyhost_tests::text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("marks no subject INFER: falling back to 1 TRAIN, 1 VALID; these subjects are not held out"),
        "{stderr}"
    );
    assert!(stderr.contains("subjects scored: 1 TRAIN, 1 VALID"), "{stderr}");
    let phased = std::fs::read_to_string(eval.join("metrics.csv")).unwrap();
    assert!(phased.lines().skip(1).all(|l| l.starts_with("multilabel,") == l.ends_with(",TRAIN")), "{phased}");
    assert!(phased.lines().skip(1).all(|l| l.starts_with("ellipsoids_aniso,") == l.ends_with(",VALID")), "{phased}");
    // With an INFER subject, only it is scored, and nothing is said about falling back.
    std::fs::write(&split, "subject_id,phase,fold\nmultilabel,TRAIN,\nellipsoids_aniso,INFER,\n").unwrap();
    let out = niftyhost_tests::run(dir.path(), &["evaluation", "-c", c, "--json"]);
    let (stdout, stderr) = niftyhost_tests::text(&out);
    assert!(out.status.success() && !stderr.contains("falling back"), "{stderr}");
    let phased = std::fs::read_to_string(eval.join("metrics.csv")).unwrap();
    assert!(phased.lines().skip(1).all(|l| l.starts_with("ellipsoids_aniso,") && l.ends_with(",INFER")), "{phased}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["phases"], "1 INFER");
    assert_eq!(report["rows"][0]["phase"], "INFER");
    std::fs::remove_file(&split).unwrap();

    // Two folders, no config, from an empty folder: references paired with the
    // segmentations by name; with the config's labels, the same CSV.
    let refs = dir.path().join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    for case in ["multilabel", "ellipsoids_aniso"] {
        std::fs::copy(data.join(format!("ref_{case}.nii.gz")), refs.join(format!("{case}.nii.gz"))).unwrap();
    }
    let empty = tempfile::tempdir().unwrap();
    let out_csv = empty.path().join("out/metrics.csv");
    let (s, r, o) = (segs.to_str().unwrap(), refs.to_str().unwrap(), out_csv.to_str().unwrap());
    let flags =
        ["evaluation", "--seg-dir", s, "--ref-dir", r, "--out", o, "--set", "evaluation.surface_tolerance_mm=1.6"];
    let labels = "evaluation.labels=[0, 1, 2, 3, 4, 5]";
    let out = niftyhost_tests::run(empty.path(), &[&flags[..], &["--set", labels]].concat());
    assert!(out.status.success(), "{}", niftyhost_tests::text(&out).1);
    assert!(std::fs::read_to_string(&out_csv).unwrap() == csv, "folder and config evaluations differ");
    // Without labels given, the values found in the files are scored: 5 is in none.
    let out = niftyhost_tests::run(empty.path(), &flags);
    assert!(out.status.success(), "{}", niftyhost_tests::text(&out).1);
    let found = std::fs::read_to_string(&out_csv).unwrap();
    let scored: Vec<&str> =
        found.lines().filter(|l| l.starts_with("multilabel,") && l.contains(",label,")).map(|l| &l[11..12]).collect();
    assert_eq!(scored, ["0", "1", "2", "3", "4"]);
    std::fs::remove_file(segs.join("multilabel_seg.nii.gz")).unwrap();
    let out = niftyhost_tests::run(empty.path(), &flags);
    let (_, stderr) = niftyhost_tests::text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("have no segmentation") && stderr.contains("`multilabel`: expected"), "{stderr}");
    std::fs::copy(fixtures().join("multilabel_seg.nii.gz"), segs.join("multilabel_seg.nii.gz")).unwrap();

    // With label normalisation the saved label map's values are scored (segmentations
    // carry them).
    niftyhost::preprocess::LabelMap::from_values(vec![0, 2, 4])
        .unwrap()
        .save(dir.path().join("model/label_map.json"))
        .unwrap();
    let out = niftyhost_tests::run(
        dir.path(),
        &[
            "evaluation",
            "-c",
            c,
            "--set",
            "segmentation.label_normalisation=true",
            "--set",
            "evaluation.include_background=false",
        ],
    );
    assert!(out.status.success(), "{}", niftyhost_tests::text(&out).1);
    let csv = std::fs::read_to_string(eval.join("metrics.csv")).unwrap();
    let labels: Vec<&str> =
        csv.lines().filter(|l| l.starts_with("multilabel,")).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(labels, ["2", "4", "foreground", "2", "4", "foreground"]);

    // A bad option is a configuration error (exit code 2) naming the key.
    let out = niftyhost_tests::run(dir.path(), &["evaluation", "-c", c, "--set", "evaluation.connectivity=5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(niftyhost_tests::text(&out).1.contains("evaluation.connectivity"));
}
