//! Every bundled network trains through the CLI: a few iterations on tiny windows of the
//! bundled tissue task leave a checkpoint and finite losses (CI's guard that each
//! plugin loads, builds from its config and back-propagates in the host).

use niftyhost_tests::{plugin_dir, run, text, tissue_config, workspace_plugin};

/// (network, window in NIfTI order, `[network.params]` for a small, fast instance).
const NETWORKS: &[(&str, &str, &str)] = &[
    ("toynet", "[8, 8, 8]", "channels = 4"),
    ("unet3d", "[8, 8, 8]", "base_channels = 4"),
    ("highres3dnet", "[8, 8, 8]", "variant = \"small\""),
    ("vnet", "[16, 16, 16]", "base_channels = 2"),
    ("unet2d", "[16, 16, 1]", "base_channels = 2"),
    ("deepmedic", "[9, 9, 9]", "norm = \"instance\""),
    ("densevnet", "[8, 8, 8]", "n_dense_layers = [1, 1, 1]"),
    ("scalenet", "[8, 8, 8]", "activation = \"relu\""),
    ("example_net", "[8, 8, 8]", "width = 4"),
    (
        "dynunet",
        "[8, 8, 8]",
        "base_channels = 2\nkernel_sizes = [[3, 3, 3], [3, 3, 3]]\nstrides = [[1, 1, 1], [2, 2, 2]]",
    ),
];

#[test]
fn every_network_trains_a_few_iterations_to_a_checkpoint_with_finite_losses() {
    for (network, window, params) in NETWORKS {
        let dir = tempfile::tempdir().unwrap();
        plugin_dir(dir.path(), &[workspace_plugin(network), workspace_plugin("seglosses")]);
        let config = tissue_config(
            dir.path(),
            network,
            &format!(
                "batch_size = 1\nspatial_window_size = {window}\n[network.params]\n{params}\n\
                 [training]\nloss = \"dice_ce\"\nlr = 0.001\nmax_iter = 2\nsave_every_n = 2"
            ),
        );
        let out = run(dir.path(), &["train", "-c", config.to_str().unwrap(), "--set", "system.torch_threads=1"]);
        assert!(out.status.success(), "{network} failed to train:\n{}", text(&out).1);
        let checkpoint = dir.path().join("model/checkpoints/iter_00000002.safetensors");
        assert!(checkpoint.is_file(), "{network}: no checkpoint at {}", checkpoint.display());
        let log = std::fs::read_to_string(dir.path().join("model/train_log.jsonl")).unwrap();
        let losses: Vec<f64> =
            log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64()).collect();
        assert_eq!(losses.len(), 2, "{network}: one loss per iteration in {log}");
        assert!(losses.iter().all(|l| l.is_finite()), "{network}: losses {losses:?}");
    }
}

/// The tissue task with `dynunet` (3 levels, base 4, deep supervision `ds`) on 16³ windows
/// in `dir`, checkpointing every iteration.
fn dynunet_config(dir: &std::path::Path, ds: i64, max_iter: usize) -> std::path::PathBuf {
    plugin_dir(dir, &[workspace_plugin("dynunet"), workspace_plugin("seglosses")]);
    tissue_config(
        dir,
        "dynunet",
        &format!(
            "batch_size = 2\nspatial_window_size = [16, 16, 16]\n[network.params]\nbase_channels = 4\n\
             kernel_sizes = [[3, 3, 3], [3, 3, 3], [3, 3, 3]]\nstrides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]\n\
             deep_supervision = {ds}\n[training]\nloss = \"dice_ce\"\nlr = 0.01\nmax_iter = {max_iter}\nsave_every_n = 1\n\
             max_checkpoints = 10"
        ),
    )
}

fn checkpoint_tensor(dir: &std::path::Path, iteration: usize, name: &str) -> tch::Tensor {
    let path = dir.join(format!("model/checkpoints/iter_{iteration:08}.safetensors"));
    let tensors = tch::Tensor::read_safetensors(&path).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let found = tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in {names:?}"));
    found.1.shallow_clone()
}

#[test]
fn dynunet_trains_its_auxiliary_heads_with_deep_supervision() {
    let dir = tempfile::tempdir().unwrap();
    let config = dynunet_config(dir.path(), 1, 6);
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap(), "--set", "system.torch_threads=1"]);
    assert!(out.status.success(), "dynunet failed to train:\n{}", text(&out).1);
    let log = std::fs::read_to_string(dir.path().join("model/train_log.jsonl")).unwrap();
    let losses: Vec<f64> =
        log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64()).collect();
    assert_eq!(losses.len(), 6, "{log}");
    assert!(losses.iter().all(|l| l.is_finite()), "losses {losses:?}");
    // The auxiliary head gets gradients only through the host's deep-supervision loss:
    // Adam leaves a parameter without gradient untouched.
    let (first, last) =
        (checkpoint_tensor(dir.path(), 1, "aux1.weight"), checkpoint_tensor(dir.path(), 6, "aux1.weight"));
    assert!(!first.equal(&last), "aux1.weight did not change: the auxiliary output was not trained");
}

#[test]
fn dynunet_parameter_errors_exit_2_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let config = dynunet_config(dir.path(), 0, 1);
    let c = config.to_str().unwrap();
    for (set, expected) in [
        (
            "network.params.kernel_sizes=[[3,3,3],[2,3,3],[3,3,3]]",
            "parameter `kernel_sizes`: level 1 has kernel 2 along D, expected an odd size",
        ),
        (
            "network.params.strides=[[1,1,1],[2,2,2]]",
            "parameter `strides`: 2 levels, but `kernel_sizes` has 3: give one stride per level",
        ),
        ("network.params.deep_supervision=2", "parameter `deep_supervision`: 2 auxiliary outputs, expected 0 to 1"),
    ] {
        let out = run(dir.path(), &["train", "-c", c, "--set", set]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    // A window the strides do not divide: the rule in both axis orders.
    let out = run(dir.path(), &["train", "-c", c, "--set", "network.spatial_window_size=[16,16,10]"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("i.e. a window (i, j, k) divisible by [4, 4, 4]; got (D, H, W) [10, 16, 16]"), "{stderr}");
    // `train -h` shows the nested-list type.
    let out = run(dir.path(), &["train", "-h"]);
    let (stdout, _) = text(&out);
    let (_, from_strides) = stdout.split_once("network.params.strides").expect("strides listed");
    let entry = from_strides.split("network.params.").next().unwrap_or_default();
    assert!(entry.contains("(int_list_list)"), "{entry}");
}
