//! NiftyNet 0.6 INI files written from its configuration specification: every section,
//! translated keys train and segment on tiny data, `config --explain` names each key, a
//! refused key exits 2 naming key and reason, a misspelt key gets "did you mean".

use std::path::Path;

use niftyhost_tests::{plugin_dir, run, text, tissue_cohort, workspace_plugin};

/// A NiftyNet segmentation config over the tissue cohort in `data`, with `extra` lines
/// added to `[TRAINING]`.
fn niftynet_ini(dir: &Path, data: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[T1]
path_to_search = {data}
filename_contains = t1_
filename_not_contains =
csv_file =
spatial_window_size = (16, 16, 16)
axcodes = (R, A, S)
interp_order = 3
loader = nibabel

[Label]
path_to_search = {data}
filename_contains = tissue_
spatial_window_size = (16, 16, 16)
axcodes = (R, A, S)
interp_order = 0

[SYSTEM]
cuda_devices = \"\"
num_threads = 2
num_gpus = 0
model_dir = {model}
event_handler = model_saver, model_restorer, sampler_threading, apply_gradients, output_interpreter, console_logger, tensorboard_logger

[NETWORK]
name = toynet
activation_function = relu
batch_size = 2
decay = 0.0001
reg_type = L2
volume_padding_size = 2
window_sampling = uniform
queue_length = 4
normalisation = False
whitening = True
normalise_foreground_only = True
foreground_type = otsu_plus
multimod_foreground_type = and
keep_prob = 1.0

[TRAINING]
optimiser = adam
sample_per_volume = 2
lr = 0.01
loss_type = Dice_NS
starting_iter = 0
save_every_n = 0
tensorboard_every_n = 0
max_iter = 2
max_checkpoints = 2
validation_every_n = -1
{extra}

[INFERENCE]
border = (2, 2, 2)
inference_iter = -1
save_seg_dir = ./seg
output_postfix = _niftynet_out
output_interp_order = 0
spatial_window_size = (32, 32, 32)

[EVALUATION]
evaluations = dice, jaccard, hausdorff_distance
save_csv_dir = ./eval

[SEGMENTATION]
image = T1
label = Label
output_prob = False
num_classes = 3
label_normalisation = False
softmax = True
evaluation_units = foreground
",
        data = data.display(),
        model = dir.join("model").display(),
    );
    let path = dir.join("niftynet.ini");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_niftynet_ini_trains_segments_and_is_explained_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let data = dir.path().join("data");
    tissue_cohort(&data, &["a", "b", "c"]);
    let ini = niftynet_ini(dir.path(), &data, "exclude_fraction_for_inference = 0.34");
    let c = ini.to_str().unwrap();

    // --explain: one line per key, each naming what it became.
    let out = run(dir.path(), &["config", "-c", c, "--explain"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "[T1] axcodes = (R, A, S)  -> input.t1.axcodes = \"RAS\"",
        "[T1] interp_order = 3  -> input.t1.interp_order = 3",
        "[T1] spatial_window_size = (16, 16, 16)  -> network.spatial_window_size = [16, 16, 16]",
        "[Label] spatial_window_size = (16, 16, 16)  -> kept, nothing to set: the label window is the image window",
        "[NETWORK] foreground_type = otsu_plus  -> network.foreground_type = \"otsu\"",
        "[NETWORK] queue_length = 4  -> training.queue_length = 2",
        "[TRAINING] loss_type = Dice_NS  -> training.loss = \"dice\"",
        "[INFERENCE] save_seg_dir = ./seg  -> inference.output_dir =",
        "[EVALUATION] evaluations = dice, jaccard, hausdorff_distance  -> kept, nothing to set: niftyhost writes every metric",
        "[SEGMENTATION] output_prob = False  -> inference.output_prob = false",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in\n{stdout}");
    }
    let keys = std::fs::read_to_string(&ini).unwrap().lines().filter(|l| l.contains('=')).count();
    assert!(stdout.contains(&format!("{keys} keys: ")), "every key is accounted for:\n{stdout}");

    // --json: the same, as data.
    let out = run(dir.path(), &["config", "-c", c, "--explain", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["keys"].as_array().unwrap().len(), keys);
    assert_eq!(report["keys"][0]["outcome"], "set");

    // Trains a few iterations, then segments its INFER subject into save_seg_dir.
    let out = run(dir.path(), &["train", "-c", c]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let out = run(dir.path(), &["inference", "-c", c]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let segs: Vec<_> =
        std::fs::read_dir(dir.path().join("model/seg")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let name = segs[0].to_string_lossy().into_owned();
    assert!(name.ends_with("_niftynet_out.nii.gz"), "{name}");
    let seg = niftyhost::io::read_volume(&dir.path().join("model/seg").join(&name)).unwrap();
    assert_eq!(seg.dims, [64, 72, 56]);
}

#[test]
fn refused_and_misspelt_niftynet_keys_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (extra, wants) in [
        ("antialiasing = True", "NiftyNet key `[TRAINING] antialiasing` in "),
        ("loss_type = L2Loss", "refused: a regression loss: niftyhost segments only"),
        ("window_sampling = balanced", "refused: a [NETWORK] key: NiftyNet 0.6 reads it only there"),
        ("max_iterr = 3", "unknown key `[TRAINING] max_iterr`"),
        ("max_iterr = 3", "did you mean `max_iter`?"),
        ("optimiser = adamm", "`training.optimiser` must be one of sgd"),
    ] {
        let ini = niftynet_ini(dir.path(), &data, extra);
        let c = ini.to_str().unwrap();
        let out = run(dir.path(), &["train", "-c", c]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(wants), "{extra}: {stderr}");
        // --explain lists the key with its reason and exits 2 too.
        let out = run(dir.path(), &["config", "-c", c, "--explain"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        let key = extra.split(" = ").next().unwrap();
        let line = stdout.lines().filter(|l| l.contains(&format!("[TRAINING] {key} = "))).last().unwrap_or_default();
        assert!(line.contains("-> refused") || line.contains("-> unknown") || line.contains("-> invalid"), "{stdout}");
    }
    // A refused [GAN] section and the TOML-only --explain.
    let gan = dir.path().join("gan.ini");
    std::fs::write(&gan, "[GAN]\nnoise_size = 100\n").unwrap();
    let out = run(dir.path(), &["config", "-c", gan.to_str().unwrap(), "--explain"]);
    assert!(text(&out).0.contains("[GAN] configures NiftyNet's generative adversarial network application"));
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "").unwrap();
    let out = run(dir.path(), &["config", "-c", toml.to_str().unwrap(), "--explain"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("`--explain` explains a NiftyNet .ini file"), "{}", text(&out).1);
}

/// Every NiftyNet network name a refused network's message lists (`PORTED_NETWORKS`)
/// translates to a network of the workspace's plugins.
#[test]
fn the_networks_a_refusal_lists_are_there() {
    use niftyhost::config::niftynet::PORTED_NETWORKS;
    use niftyhost::config::{load, Overrides};
    use niftyhost::plugins::{Registry, SearchPath};
    use niftyhost_plugin_api::ComponentKind;
    let libs = ["toynet", "highres3dnet", "deepmedic", "scalenet", "vnet", "densevnet", "unet3d", "unet2d", "dynunet"];
    let registry = Registry::load(&SearchPath { files: libs.map(workspace_plugin).to_vec(), dirs: vec![] });
    let dir = tempfile::tempdir().unwrap();
    for name in PORTED_NETWORKS {
        let ini = dir.path().join(format!("{name}.ini"));
        std::fs::write(
            &ini,
            format!("[image]\npath_to_search = d\n[label]\npath_to_search = d\n[NETWORK]\nname = {name}\n"),
        )
        .unwrap();
        let settings = load(Some(&ini), &Overrides::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = registry.find(ComponentKind::Network, &settings.network.name);
        assert!(found.is_ok(), "{name} -> {}: {:?}", settings.network.name, found.err());
    }
}
