//! Model bundles through the CLI: export, then inference in an empty folder with
//! nothing but the binary; damaged, hostile and incompatible bundles refused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use niftyhost::io::read_volume;
use niftyhost_tests::{niftyhost_bin, plugin_dir, repo_root, run, text, tissue_config, workspace_plugin};

/// A trained toynet, its config, its `inference -c` output and its bundle (made once).
struct Trained {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    bundle: PathBuf,
}

fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        plugin_dir(&root, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
        let config = tissue_config(
            &root,
            "toynet",
            "batch_size = 1\nspatial_window_size = [12, 12, 12]\nnormalisation = true\n\
             [training]\nmax_iter = 2\nsave_every_n = 1\n\
             [inference]\nspatial_window_size = [40, 40, 40]\noverlap = 0.25\nblending = \"gaussian\"",
        );
        let c = config.to_str().unwrap();
        for args in [&["train", "-c", c][..], &["inference", "-c", c], &["export", "-c", c, "--out", "model.nhb"]] {
            let out = run(&root, args);
            assert!(out.status.success(), "{args:?} failed:\n{}", text(&out).1);
        }
        let bundle = root.join("model.nhb");
        Trained { _dir: dir, root, config, bundle }
    })
}

/// Runs `niftyhost` in `cwd` with a private temporary folder and no plugin path.
fn run_isolated(cwd: &Path, tmp: &Path, args: &[&str]) -> Output {
    Command::new(niftyhost_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("TMPDIR", tmp)
        .output()
        .expect("niftyhost runs")
}

fn t1() -> PathBuf {
    repo_root().join("data/mni152/t1_2mm.nii.gz")
}

/// The entries of a `.nhb` as (name, bytes).
fn entries(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(bundle).unwrap());
    let mut archive = tar::Archive::new(gz);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Writes entries as a `.nhb`; names are written verbatim into the tar header (so
/// `../evil` can be crafted).
fn write_bundle(path: &Path, entries: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::none());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn exported_bundle_segments_in_an_empty_folder_like_the_config() {
    let t = trained();
    // The manifest lists every other file with its sha256, the input spec and the ABI.
    let all = entries(&t.bundle);
    assert_eq!(all[0].0, "manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&all[0].1).unwrap();
    assert_eq!(manifest["format"], "niftyhost-bundle");
    assert_eq!(manifest["input"]["modalities"], serde_json::json!(["t1"]));
    assert_eq!(manifest["input"]["window"], serde_json::json!([40, 40, 40]));
    assert!(manifest["torch_abi_tag"].as_str().unwrap().contains("libtorch"));
    let names: Vec<&str> = all[1..].iter().map(|(n, _)| n.as_str()).collect();
    for needed in ["plugins/libtoynet.so", "weights/model_0.safetensors", "config.toml", "histogram.json"] {
        assert!(names.contains(&needed), "{needed} in {names:?}");
    }
    assert_eq!(manifest["files"].as_object().unwrap().len(), names.len());
    assert!(!names.iter().any(|n| n.contains("seglosses")), "inference needs no loss plugin");

    let empty = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bundle = t.bundle.to_str().unwrap();
    let out = run_isolated(
        empty.path(),
        tmp.path(),
        &["inference", "--model", bundle, "--image", t1().to_str().unwrap(), "--out", "seg.nii.gz"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let from_bundle = read_volume(&empty.path().join("seg.nii.gz")).unwrap();
    let from_config = read_volume(&t.root.join("model/inference/2mm_seg.nii.gz")).unwrap();
    assert_eq!(from_bundle.dims, [99, 117, 95]);
    assert_eq!(from_bundle.affine, from_config.affine);
    assert!(from_bundle.data == from_config.data, "same segmentation as `inference -c`");
    let left: Vec<_> = std::fs::read_dir(empty.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["seg.nii.gz"], "nothing else written in the working folder");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the unpacked bundle is removed");

    // An ensemble of two bundles (here twice the same): two passes, the same labels.
    let out = run_isolated(
        empty.path(),
        tmp.path(),
        &[
            "inference",
            "--json",
            "--model",
            bundle,
            "--model",
            bundle,
            "--image",
            t1().to_str().unwrap(),
            "--out",
            "ens.nii.gz",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["passes"], 2);
    assert!(read_volume(&empty.path().join("ens.nii.gz")).unwrap().data == from_config.data);
}

#[test]
fn config_inference_ensembles_checkpoints_with_tta_and_writes_quantised_probabilities() {
    let t = trained();
    let c = t.config.to_str().unwrap();
    let ckpt = |n: u32| t.root.join(format!("model/checkpoints/iter_{n:08}.safetensors")).display().to_string();
    let out = run(
        &t.root,
        &[
            "inference",
            "-c",
            c,
            "--json",
            "--image",
            t1().to_str().unwrap(),
            "--out",
            "prob.nii.gz",
            "--set",
            &format!("inference.checkpoints=[\"{}\", \"{}\"]", ckpt(1), ckpt(2)),
            "--set",
            "inference.tta_mirror_axes=[0, 1]",
            "--set",
            "inference.output_type=\"probabilities\"",
            "--set",
            "inference.probability_dtype=\"uint8\"",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["passes"], 8, "2 checkpoints × 4 mirrorings");
    let p = read_volume(&t.root.join("prob.nii.gz")).unwrap();
    assert_eq!((p.dims, p.channels), ([99, 117, 95], 3));
    assert_eq!(p.header.datatype, 2, "uint8");
    let v = 99 * 117 * 95;
    for i in (0..v).step_by(997) {
        let sum: f32 = (0..3).map(|c| p.data[c * v + i]).sum();
        assert!((sum - 1.0).abs() <= 2.0 / 255.0, "voxel {i}: probabilities sum to {sum}");
    }
}

#[test]
fn a_checkpoint_of_another_plugin_build_warns_once_however_many_workers() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let from = t.root.join("model/checkpoints/iter_00000002");
    let to = tmp.path().join("other_build");
    std::fs::copy(from.with_extension("safetensors"), to.with_extension("safetensors")).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.with_extension("json")).unwrap()).unwrap();
    let network = meta["plugins"].as_array_mut().unwrap().iter_mut().find(|p| p["kind"] == "network").unwrap();
    network["sha256"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(to.with_extension("json"), meta.to_string()).unwrap();
    let out = run(
        &t.root,
        &[
            "inference",
            "-c",
            t.config.to_str().unwrap(),
            "--image",
            t1().to_str().unwrap(),
            "--out",
            "other_build.nii.gz",
            "--set",
            &format!("inference.checkpoints=[\"{}\"]", to.with_extension("safetensors").display()),
            "--set",
            "inference.workers=3",
        ],
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    let warnings = stderr.matches("the plugin library differs from the one the checkpoint was trained with").count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(stderr.contains("other_build.json") || stderr.contains("other_build.safetensors"), "{stderr}");
}

fn refused(bundle: &Path) -> String {
    let empty = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = run_isolated(
        empty.path(),
        tmp.path(),
        &["inference", "--model", bundle.to_str().unwrap(), "--image", t1().to_str().unwrap(), "--out", "s.nii.gz"],
    );
    assert!(!out.status.success(), "{} was accepted", bundle.display());
    assert!(!empty.path().join("s.nii.gz").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing left in the temporary folder");
    assert!(!tmp.path().parent().unwrap().join("evil").exists());
    text(&out).1
}

#[test]
fn tampered_truncated_traversal_and_incompatible_bundles_are_refused() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let all = entries(&t.bundle);

    // One byte of the weights changed.
    let mut tampered = all.clone();
    let w = tampered.iter_mut().find(|(n, _)| n.starts_with("weights/")).unwrap();
    let last = w.1.len() - 1;
    w.1[last] ^= 1;
    let p = dir.path().join("tampered.nhb");
    write_bundle(&p, &tampered);
    let e = refused(&p);
    assert!(e.contains("weights/model_0.safetensors") && e.contains("sha256"), "{e}");

    // Cut in the middle.
    let bytes = std::fs::read(&t.bundle).unwrap();
    let p = dir.path().join("truncated.nhb");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = refused(&p);
    assert!(e.contains("truncated or corrupted"), "{e}");

    // A file that climbs out of the unpacking folder.
    let mut evil = all.clone();
    evil.insert(1, ("../evil".to_owned(), b"#!/bin/sh\n".to_vec()));
    let p = dir.path().join("traversal.nhb");
    write_bundle(&p, &evil);
    let e = refused(&p);
    assert!(e.contains("`../evil`") && e.contains("leave the unpacking folder"), "{e}");

    // Another libtorch ABI, or a newer plugin-api.
    for (field, value, expect) in [
        ("torch_abi_tag", "tch-0.99.0/libtorch-9.9.9/cxx11abi=1", "libtorch ABI"),
        ("plugin_api", "1.999.0", "plugin-api 1.999.0"),
    ] {
        let mut other = all.clone();
        let mut m: serde_json::Value = serde_json::from_slice(&other[0].1).unwrap();
        m[field] = serde_json::json!(value);
        other[0].1 = serde_json::to_vec(&m).unwrap();
        let p = dir.path().join(format!("{field}.nhb"));
        write_bundle(&p, &other);
        let e = refused(&p);
        assert!(e.contains("incompatible") && e.contains(expect), "{e}");
    }

    // A file the manifest does not list.
    let mut extra = all.clone();
    extra.push(("plugins/libextra.so".to_owned(), vec![0; 8]));
    let p = dir.path().join("extra.nhb");
    write_bundle(&p, &extra);
    let e = refused(&p);
    assert!(e.contains("not listed in the manifest"), "{e}");

    // The untouched bundle repacked by the test still works (the checks are not the
    // repacking's doing).
    let p = dir.path().join("repacked.nhb");
    write_bundle(&p, &all);
    let empty = tempfile::tempdir().unwrap();
    let out = run_isolated(
        empty.path(),
        dir.path(),
        &["inference", "--model", p.to_str().unwrap(), "--image", t1().to_str().unwrap(), "--out", "s.nii.gz"],
    );
    assert!(out.status.success(), "{}", text(&out).1);
}
