//! Augmentation in the training pipeline: the chain a config describes (NiftyNet keys
//! and `[[training.augmentation]]`), determinism across loader threads, drop-in
//! augmentation plugins, errors, and that only training windows are augmented.

use std::path::Path;
use std::sync::Arc;

use niftyhost::config::augmentation::chain;
use niftyhost::config::{load, AugmentationEntry, Overrides, Settings};
use niftyhost::data::phases::training_subjects;
use niftyhost::data::{training_sampler, AugmentationChain, Batch, Loader};
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_tests::fixtures::sdk_fixture;
use niftyhost_tests::{plugin_dir, repo_root, run, text, workspace_plugin};

/// The bundled 2 mm example, windows of 20³, two per batch, with `extra` appended.
fn settings(dir: &Path, extra: &str) -> Settings {
    try_settings(dir, extra).unwrap()
}

fn try_settings(dir: &Path, extra: &str) -> Result<Settings, niftyhost::config::ConfigError> {
    let d = repo_root().join("data/mni152");
    let d = d.display();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[system]\nmodel_dir = \"{m}\"\nseed = 5\n\
             [input.t1]\npath_to_search = \"{d}\"\nfilename_contains = [\"t1_\"]\n\
             [input.label]\npath_to_search = \"{d}\"\nfilename_contains = [\"tissue_\"]\n\
             [segmentation]\nimage = [\"t1\"]\nlabel = \"label\"\nnum_classes = 3\n\
             [network]\nbatch_size = 2\nspatial_window_size = [20, 20, 20]\n{extra}",
            m = dir.join("model").display()
        ),
    )
    .unwrap();
    load(Some(&path), &Overrides::default())
}

fn registry(files: &[std::path::PathBuf]) -> Registry {
    Registry::load(&SearchPath { files: files.to_vec(), dirs: Vec::new() })
}

/// `n` batches with the chain `settings` describes (if any), on `threads` loader threads.
fn batches(settings: &Settings, reg: &Registry, threads: usize, n: u64) -> Vec<Batch> {
    let subjects = training_subjects(settings, Path::new(".")).unwrap();
    let mut sampler = training_sampler(settings, subjects.train).unwrap();
    if let Some(c) = AugmentationChain::from_settings(settings, reg).unwrap() {
        sampler = sampler.with_augmentation(Arc::new(c), settings.training.augmentation_margin);
    }
    let mut loader = Loader::spawn(Arc::new(sampler), 0, n, threads, 2);
    (0..n).map(|_| loader.next_batch().unwrap().unwrap()).collect()
}

const FULL_CHAIN: &str = "[training]\nrandom_flipping_axes = [0, 1, 2]\nrotation_angle = [-15.0, 15.0]\n\
    scaling_percentage = [-10.0, 10.0]\ndo_elastic_deformation = true\nproportion_to_deform = 1.0\n\
    deformation_sigma = 4.0\nbias_field_range = [-0.3, 0.3]\n\
    [[training.augmentation]]\nname = \"gamma\"\nprobability = 0.5\n\
    [[training.augmentation]]\nname = \"gaussian_noise\"\nprobability = 0.5\nparams = { std_range = [0.0, 0.2] }\n";

#[test]
fn augmented_windows_are_the_same_with_1_and_3_loader_threads() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), FULL_CHAIN);
    let names: Vec<String> = chain(&s.training).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["spatial", "bias_field", "gamma", "gaussian_noise"]);
    let reg = registry(&[workspace_plugin("augment")]);
    let one = batches(&s, &reg, 1, 6);
    let three = batches(&s, &reg, 3, 6);
    assert!(one == three, "1 and 3 loader threads gave different augmented batches");
    let plain = batches(&settings(dir.path(), ""), &reg, 1, 6);
    for (a, p) in one.iter().zip(&plain) {
        assert_eq!((a.images.len(), a.labels.len()), (p.images.len(), p.labels.len()));
        assert!(a.images != p.images && a.labels != p.labels, "the chain changed nothing");
        assert!(a.labels.iter().all(|l| (0..3).contains(l)), "labels outside 0..3");
        assert!(a.images.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn niftynet_ini_keys_become_the_spatial_and_bias_field_components() {
    let dir = tempfile::tempdir().unwrap();
    let d = repo_root().join("data/mni152");
    let ini = format!(
        "[T1]\npath_to_search = {d}\nfilename_contains = t1_\n[label]\npath_to_search = {d}\nfilename_contains = tissue_\n\
         [SYSTEM]\nmodel_dir = {m}\n[NETWORK]\nname = toynet\n\
         [TRAINING]\nrotation_angle = (-10.0, 10.0)\nrotation_angle_z = (-5, 5)\nscaling_percentage = (-10.0, 10.0)\n\
         random_flipping_axes = 0,1\ndo_elastic_deformation = True\nnum_ctrl_points = 5\nbias_field_range = (-0.5, 0.5)\nbf_order = 2\n\
         [SEGMENTATION]\nimage = T1\nlabel = label\nnum_classes = 3\n",
        d = d.display(),
        m = dir.path().join("m").display()
    );
    let path = dir.path().join("c.ini");
    std::fs::write(&path, ini).unwrap();
    let s = load(Some(&path), &Overrides::default()).unwrap();
    let entries = chain(&s.training);
    assert_eq!(entries.len(), 2);
    let (spatial, bias) = (&entries[0], &entries[1]);
    assert_eq!((spatial.name.as_str(), spatial.probability), ("spatial", 1.0));
    let p = serde_json::Value::Object(spatial.params.clone());
    assert_eq!(p["random_flipping_axes"], serde_json::json!([0, 1]));
    assert_eq!(p["rotation_angle"], serde_json::json!([-10.0, 10.0]));
    assert_eq!(p["rotation_angle_z"], serde_json::json!([-5.0, 5.0]));
    assert_eq!(p["do_elastic_deformation"], true);
    assert_eq!(p["num_ctrl_points"], 5);
    assert_eq!(bias.name, "bias_field");
    assert_eq!(serde_json::Value::Object(bias.params.clone())["bf_order"], 2);
    // The components accept what the host derived from the keys.
    let reg = registry(&[workspace_plugin("augment")]);
    AugmentationChain::build(&reg, &entries).unwrap();
    // NiftyNet's `-1` means no flipping; nothing set means no chain at all.
    let none = settings(dir.path(), "[training]\nrandom_flipping_axes = [-1]\n");
    assert!(chain(&none.training).is_empty());
}

#[test]
fn unknown_components_parameters_and_entry_keys_name_the_nearest() {
    let reg = registry(&[workspace_plugin("augment")]);
    let entry = |name: &str, params: serde_json::Value| AugmentationEntry {
        name: name.into(),
        probability: 1.0,
        params: params.as_object().unwrap().clone(),
    };
    let err = AugmentationChain::build(&reg, &[entry("gama", serde_json::json!({}))]).unwrap_err().to_string();
    assert!(err.starts_with("no augmentation named `gama` in the loaded plugins; did you mean `gamma`?"), "{err}");
    let err = AugmentationChain::build(&reg, &[entry("gamma", serde_json::json!({"gamma_rang": [1, 2]}))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("augmentation `gamma` from"), "{err}");
    assert!(err.contains("unknown parameter `gamma_rang`; did you mean `gamma_range`?"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = try_settings(dir.path(), "[[training.augmentation]]\nname = \"gamma\"\nprobabilty = 0.5\n");
    let err = err.unwrap_err().to_string();
    assert!(err.contains("unknown field `probabilty`") && err.contains("`probability`"), "{err}");
    let err = try_settings(dir.path(), "[[training.augmentation]]\nname = \"gamma\"\nprobability = 1.5\n");
    let err = err.unwrap_err().to_string();
    assert!(err.contains("`training.augmentation[0]` (`gamma`): `probability` must be in [0, 1], got 1.5"), "{err}");
}

#[test]
fn a_drop_in_augmentation_plugin_is_applied_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&[sdk_fixture("dropaug")]);
    let shifted = settings(
        dir.path(),
        "[training]\naugmentation_margin = 0.0\n[[training.augmentation]]\nname = \"shift_intensity\"\nparams = { value = 100.0 }\n",
    );
    let plain = batches(&settings(dir.path(), ""), &reg, 1, 3);
    let with = batches(&shifted, &reg, 2, 3);
    for (a, p) in with.iter().zip(&plain) {
        assert_eq!(a.labels, p.labels);
        assert!(a.images.iter().zip(&p.images).all(|(x, y)| *x == y + 100.0), "the drop-in shift was not applied");
    }
}

#[test]
fn training_augments_only_training_windows_through_a_drop_in_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Two subjects (copies of the bundled volume): one TRAIN, one VALID.
    for id in ["a", "b"] {
        for kind in ["t1", "tissue"] {
            let src = repo_root().join(format!("data/mni152/{kind}_2mm.nii.gz"));
            std::fs::copy(src, data.join(format!("{kind}_{id}.nii.gz"))).unwrap();
        }
    }
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses"), sdk_fixture("dropaug")]);
    let record = dir.path().join("calls.txt");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[system]\nmodel_dir = \"model\"\nseed = 2\n\
             [input.t1]\npath_to_search = \"data\"\nfilename_contains = [\"t1_\"]\n\
             [input.label]\npath_to_search = \"data\"\nfilename_contains = [\"tissue_\"]\n\
             [segmentation]\nimage = [\"t1\"]\nlabel = \"label\"\nnum_classes = 3\n\
             [network]\nname = \"toynet\"\nbatch_size = 2\nspatial_window_size = [16, 16, 16]\n\
             [training]\nmax_iter = 3\nsave_every_n = 3\nexclude_fraction_for_validation = 0.5\n\
             validation_every_n = 1\nvalidation_max_iter = 2\n\
             [[training.augmentation]]\nname = \"record\"\nparams = {{ file = \"{}\" }}\n\
             [inference]\nspatial_window_size = [32, 32, 32]\n",
            record.display()
        ),
    )
    .unwrap();
    let out = run(dir.path(), &["train", "-c", "config.toml", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["validations"].as_array().map(Vec::len), Some(3), "validation ran");
    let out = run(dir.path(), &["inference", "-c", "config.toml"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let calls = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    // 3 iterations × 2 windows, each 16 + 2 × round(0.125 × 16) = 20 voxels a side;
    // validation (3 × 2 × 2 windows) and inference add none.
    assert_eq!(lines.len(), 6, "{calls}");
    assert!(lines.iter().all(|l| l.ends_with("[1, 20, 20, 20]")), "{calls}");
    let mut seeds: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 6, "every window has its own seed: {calls}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model/checkpoints/iter_00000003.json")).unwrap(),
    )
    .unwrap();
    let plugins = meta["plugins"].as_array().unwrap();
    assert!(plugins
        .iter()
        .any(|p| p["component"] == "record" && p["kind"] == "augmentation" && p["version"] == "0.2.0"));
}

#[test]
fn the_augmented_example_config_builds_its_chain() {
    let path = repo_root().join("configs/unet3d_augment.toml");
    let s = load(Some(&path), &Overrides::default()).unwrap();
    let entries = chain(&s.training);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["spatial", "gamma", "gaussian_noise"]);
    let built = AugmentationChain::build(&registry(&[workspace_plugin("augment")]), &entries).unwrap();
    assert_eq!(built.names(), names);
}
