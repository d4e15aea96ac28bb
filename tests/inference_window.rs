//! Inference windows a network cannot take (issue 18: NiftyNet's `unet_config.ini` and
//! `vnet_config.ini` infer on windows their networks cannot divide): probed before any
//! volume is read, enlarged as little as it takes (up to the training window's divisor) with
//! a warning, a window the
//! network takes left as it is, and a window no enlargement fixes reported with the
//! network's error.

use niftyhost::config::{load, Overrides, Settings};
use niftyhost::data::ChannelLayout;
use niftyhost::engine::inference::{fit_window, mirrorings, Compute, InferenceOptions, Predictor, Tiling};
use niftyhost::engine::EngineError;
use niftyhost::engine::Model;
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_tests::{plugin_dir, repo_root, run, text, tissue_config, workspace_plugin};
use tch::Device;

/// A small V-Net (sizes divisible by 16) trained on 16³ windows.
const VNET: &str = "spatial_window_size = [16, 16, 16]\n[network.params]\nbase_channels = 2";

/// The settings of the tissue task with `network` lines, and the predictor of a freshly
/// built (untrained) network.
fn untrained(dir: &std::path::Path, network: &str, lines: &str) -> (Settings, Predictor) {
    let files = [network].map(workspace_plugin).to_vec();
    let registry = Registry::load(&SearchPath { files, dirs: vec![] });
    let s = load(Some(&tissue_config(dir, network, lines)), &Overrides::default()).unwrap();
    let channels = ChannelLayout::one_per_section(&s.segmentation.image);
    let model = Model::build(&registry, &s, channels, Device::Cpu).unwrap();
    (s, Predictor::new(vec![model], mirrorings(&[]).unwrap(), false, Compute::default()))
}

/// The tiling [`fit_window`] gives the network of `s` for `[inference]` `lines`.
fn fitted(dir: &std::path::Path, network: &str, lines: &str, inference: &str) -> (Tiling, Result<Tiling, EngineError>) {
    let (s, mut predictor) = untrained(dir, network, &format!("{lines}\n[inference]\n{inference}"));
    let options = InferenceOptions::from_settings(&s).unwrap();
    (options.tiling, fit_window(&mut predictor, &options, 1, s.train_window(), Device::Cpu))
}

#[test]
fn windows_a_vnet_cannot_divide_grow_to_the_training_multiple_and_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    // vnet_config.ini's (0, 0, 3): full-extent axes stay 0, k grows to 16, the border stays.
    let (asked, got) = fitted(dir.path(), "vnet", VNET, "spatial_window_size = [0, 0, 3]\nborder = [5, 5, 1]");
    let got = got.unwrap();
    assert_eq!((asked.window, got.window), ([0, 0, 3], [0, 0, 16]));
    assert_eq!((got.border, got.kept()[2]), ([5, 5, 1], 14), "the border stays, the kept centre grows");
    assert_eq!(Tiling { window: asked.window, ..got }, asked, "only the window changes");
    let (_, got) = fitted(dir.path(), "vnet", VNET, "spatial_window_size = [16, 40, 20]");
    assert_eq!(got.unwrap().window, [16, 48, 32]);
    // Windows the network takes are not changed.
    for window in ["[0, 0, 32]", "[32, 16, 48]", "[16, 16, 16]"] {
        let (asked, got) = fitted(dir.path(), "vnet", VNET, &format!("spatial_window_size = {window}"));
        assert_eq!(got.unwrap(), asked, "{window}");
    }
}

#[test]
fn a_window_the_network_takes_is_kept_even_off_the_training_multiple() {
    let dir = tempfile::tempdir().unwrap();
    // Strides 1, 2, 2: sizes divisible by 4 run, though the training multiple is 16.
    let dynunet = "spatial_window_size = [16, 16, 16]\n[network.params]\nbase_channels = 2\n\
                   kernel_sizes = [[3, 3, 3], [3, 3, 3], [3, 3, 3]]\nstrides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]";
    let (asked, got) = fitted(dir.path(), "dynunet", dynunet, "spatial_window_size = [20, 12, 24]");
    assert_eq!((asked.full_extent_multiple, got.unwrap()), ([16; 3], asked));
    let (_, got) = fitted(dir.path(), "dynunet", dynunet, "spatial_window_size = [20, 18, 24]");
    // The smallest enlargement it takes: 18 → 20 (a multiple of 4; 2 is not enough), the
    // other axes unchanged, not the training multiple's [32, 32, 32].
    assert_eq!(got.unwrap().window, [20, 20, 24], "the smallest enlargement that runs");
}

#[test]
fn a_window_no_enlargement_fixes_is_the_networks_error_naming_the_window() {
    let dir = tempfile::tempdir().unwrap();
    // A valid DeepMedic with a label window: sizes must be odd; the training window 19
    // has no power-of-two divisor to grow to.
    let deepmedic = "spatial_window_size = [19, 19, 19]\nlabel_size = [3, 3, 3]\n\
                     [network.params]\nd_factor = 1\npad_input = false";
    let (_, got) = fitted(dir.path(), "deepmedic", deepmedic, "spatial_window_size = [18, 19, 19]");
    let err = got.unwrap_err().to_string();
    assert!(err.contains("network `deepmedic` forward on the inference window [18, 19, 19]"), "{err}");
    assert!(err.contains("`inference.spatial_window_size`"), "{err}");
    assert!(err.contains("DeepMedic (d_factor 1) without pad_input needs each spatial size odd"), "{err}");
    // A larger window it takes keeps the label window's border.
    let (asked, got) = fitted(dir.path(), "deepmedic", deepmedic, "spatial_window_size = [21, 19, 23]");
    assert_eq!((got.unwrap(), asked.border), (asked, [8, 8, 8]));

    // V-Net trained on 4 voxels along k (its multiple there): 6 grows to 8, which does
    // not run either; the original error is named, with both windows.
    let vnet = "spatial_window_size = [16, 16, 4]\n[network.params]\nbase_channels = 2";
    let (_, got) = fitted(dir.path(), "vnet", vnet, "spatial_window_size = [16, 16, 6]");
    let err = got.unwrap_err().to_string();
    assert!(
        err.contains("network `vnet` forward on the inference window [16, 16, 6] or its enlargement [16, 16, 8]"),
        "{err}"
    );
    assert!(err.contains("V-Net needs each spatial size divisible by 16, got 6"), "{err}");
}

/// `niftyhost inference` of the bundled T1 with `window`, to `out` in `dir`: the exit
/// status and stderr.
fn segment(dir: &std::path::Path, window: &str, out: &str) -> (bool, String) {
    let t1 = repo_root().join("data/mni152/t1_2mm.nii.gz");
    let set = format!("inference.spatial_window_size={window}");
    let args = ["inference", "-c", "config.toml", "--set", &set, "--set", "system.torch_threads=1"];
    let args = [&args[..], &["--set", "inference.workers=1", "--image", t1.to_str().unwrap(), "--out", out]].concat();
    let output = run(dir, &args);
    (output.status.success(), text(&output).1)
}

#[test]
fn a_trained_vnet_segments_with_a_window_it_cannot_divide_as_with_the_enlarged_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugin_dir(d, &[workspace_plugin("vnet"), workspace_plugin("seglosses")]);
    tissue_config(
        d,
        "vnet",
        &format!("batch_size = 1\n{VNET}\n[training]\nloss = \"dice_ce\"\nmax_iter = 1\nsave_every_n = 1"),
    );
    let out = run(d, &["train", "-c", "config.toml", "--set", "system.torch_threads=1"]);
    assert!(out.status.success(), "vnet failed to train:\n{}", text(&out).1);

    let (ok, stderr) = segment(d, "[16,16,20]", "enlarged.nii.gz");
    assert!(ok, "inference failed:\n{stderr}");
    let warning = stderr.lines().find(|l| l.contains("WARN") && l.contains("inference.spatial_window_size"));
    let warning = warning.unwrap_or_else(|| panic!("no warning naming the key:\n{stderr}"));
    assert!(warning.contains("[16, 16, 20]") && warning.contains("[16, 16, 32]"), "{warning}");
    assert!(warning.contains("V-Net needs each spatial size divisible by 16, got 20"), "{warning}");

    // The enlarged window asked for: no warning, the same file.
    let (ok, stderr) = segment(d, "[16,16,32]", "asked.nii.gz");
    assert!(ok && !stderr.contains("inference.spatial_window_size"), "{stderr}");
    let (enlarged, asked) = (d.join("enlarged.nii.gz"), d.join("asked.nii.gz"));
    assert_eq!(std::fs::read(&enlarged).unwrap(), std::fs::read(&asked).unwrap(), "the outputs differ");

    // The segmentation has the input's geometry.
    let input = niftyhost::io::read_volume(&repo_root().join("data/mni152/t1_2mm.nii.gz")).unwrap();
    let seg = niftyhost::io::read_volume(&enlarged).unwrap();
    assert_eq!((seg.dims, seg.affine, seg.channels), (input.dims, input.affine, 1));
}
