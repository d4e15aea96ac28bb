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
