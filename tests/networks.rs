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
