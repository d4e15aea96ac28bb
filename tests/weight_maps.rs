//! Loss weight maps (`segmentation.weight`) in training runs: the maps reach the loss
//! (an all-zero map leaves the network unchanged, a brain mask changes the losses), and
//! a missing section or file, or negative weights, are named before training.

use std::path::{Path, PathBuf};

use niftyhost::io::nifti::{write_image, WriteOptions};
use niftyhost::io::read_volume;
use niftyhost_tests::{logged_losses, plugin_dir, repo_root, run, text, tissue_config, workspace_plugin};
use tch::Tensor;

/// Writes `<dir>/maps/<prefix>_2mm.nii.gz` (the bundled subject's id) on the bundled
/// tissue grid, voxel `v` being `f(tissue label at v)`; returns the folder.
fn weight_map(dir: &Path, prefix: &str, f: impl Fn(f32) -> f32) -> PathBuf {
    let tissue = read_volume(&repo_root().join("data/mni152/tissue_2mm.nii.gz")).unwrap();
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let data: Vec<f32> = tissue.data.iter().map(|&l| f(l)).collect();
    let path = maps.join(format!("{prefix}_2mm.nii.gz"));
    write_image(&path, &tissue.header, tissue.dims, 1, &data, &WriteOptions::default()).unwrap();
    maps
}

/// The tissue task with plain SGD and cross-entropy (3 steps, a checkpoint after each);
/// with `weights = Some((folder, prefix))` its files are the loss weight maps.
fn config(dir: &Path, weights: Option<(&Path, &str)>) -> PathBuf {
    plugin_dir(dir, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let section = match weights {
        Some((folder, prefix)) => {
            format!("[input.w]\npath_to_search = \"{}\"\nfilename_contains = [\"{prefix}_\"]\n", folder.display())
        }
        None => String::new(),
    };
    tissue_config(
        dir,
        "toynet",
        &format!(
            "batch_size = 2\nspatial_window_size = [12, 12, 12]\n\
             [training]\nloss = \"cross_entropy\"\noptimiser = \"sgd\"\nlr = 0.05\nmax_iter = 3\nsave_every_n = 1\n{section}"
        ),
    )
}

/// Trains with `config` (plus `--set` of each of `set`); returns the losses and the
/// checkpoints of iterations 1 and 3.
fn train(dir: &Path, config: &Path, set: &[&str]) -> (Vec<f64>, [Vec<(String, Tensor)>; 2]) {
    let mut args = vec!["train", "-c", config.to_str().unwrap(), "--set", "system.torch_threads=1"];
    for s in set {
        args.extend(["--set", s]);
    }
    let out = run(dir, &args);
    assert!(out.status.success(), "{}", text(&out).1);
    let checkpoint = |n: u64| {
        let path = dir.join(format!("model/checkpoints/iter_{n:08}.safetensors"));
        let mut tensors = Tensor::read_safetensors(&path).unwrap();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors
    };
    let losses = logged_losses(&dir.join("model/train_log.jsonl")).into_iter().map(|(_, l)| l).collect();
    (losses, [checkpoint(1), checkpoint(3)])
}

fn same(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb))
}

#[test]
fn an_all_zero_weight_map_leaves_the_network_unchanged_and_a_brain_mask_changes_the_losses() {
    let (plain, zero, mask) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (plain_losses, [plain_1, plain_3]) = train(plain.path(), &config(plain.path(), None), &[]);
    assert!(plain_losses.iter().all(|&l| l > 0.0), "{plain_losses:?}");
    assert!(!same(&plain_1, &plain_3), "plain SGD moved the network");

    // Weight 0 everywhere: the weighted mean is 0, no gradient, SGD leaves every parameter.
    let maps = weight_map(zero.path(), "zero", |_| 0.0);
    let (losses, [zero_1, zero_3]) =
        train(zero.path(), &config(zero.path(), Some((&maps, "zero"))), &["segmentation.weight=\"w\""]);
    assert_eq!(losses, vec![0.0; 3]);
    assert!(same(&zero_1, &zero_3), "an all-zero weight map changed the network");
    assert!(!same(&zero_1, &plain_1), "the first step of the unweighted run moved the same start");

    // The brain mask as weights: the same start and windows, other losses.
    let bundled = repo_root().join("data/mni152");
    let (losses, _) =
        train(mask.path(), &config(mask.path(), Some((&bundled, "brainmask"))), &["segmentation.weight=\"w\""]);
    assert!((losses[0] - plain_losses[0]).abs() > 1e-6, "{losses:?} vs {plain_losses:?}");
}

#[test]
fn a_missing_weight_section_or_file_and_negative_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |config: &Path, set: &str| {
        let out = run(d, &["check", "-c", config.to_str().unwrap(), "--set", set]);
        (out.status.code(), text(&out).1)
    };
    // No such section: a configuration error naming the key.
    let config_path = config(d, None);
    let (code, stderr) = check(&config_path, "segmentation.weight=\"nope\"");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`segmentation.weight` names input section `nope`"), "{stderr}");

    // With augmentation: refused, since the components do not transform weight maps.
    let maps = weight_map(d, "neg", |l| if l == 2.0 { -1.0 } else { 1.0 });
    let config_path = config(d, Some((&maps, "neg")));
    let out = run(
        d,
        &[
            "check",
            "-c",
            config_path.to_str().unwrap(),
            "--set",
            "segmentation.weight=\"w\"",
            "--set",
            "training.random_flipping_axes=[0]",
        ],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`segmentation.weight` cannot be used with training augmentation"), "{stderr}");

    // Negative weights: the file is named.
    let (code, stderr) = check(&config_path, "segmentation.weight=\"w\"");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("neg_2mm.nii.gz has") && stderr.contains("negative or non-finite voxels"), "{stderr}");

    // The subject has no file in the section: the subject and the section are named.
    std::fs::rename(maps.join("neg_2mm.nii.gz"), maps.join("neg_other.nii.gz")).unwrap();
    let (code, stderr) = check(&config_path, "segmentation.weight=\"w\"");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("subject `2mm` has no file in input section(s) [\"w\"]"), "{stderr}");
}
