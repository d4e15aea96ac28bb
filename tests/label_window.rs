//! `network.label_size` smaller than the window (NiftyNet's border): the loss is the loss
//! of the centre window alone, border outputs get no gradient, valid-convolution outputs
//! meet labels cropped to them, and inference writes each voxel from a window centre.

use abi_stable::std_types::ROption;
use niftyhost::config::{load, Overrides, Settings};
use niftyhost::data::ChannelLayout;
use niftyhost::engine::inference::{
    mirrorings, predict_volume, Aggregated, Compute, InferenceOptions, OutputKind, Predictor, Store,
};
use niftyhost::engine::label_window::LabelWindow;
use niftyhost::engine::replicas::Replicas;
use niftyhost::engine::Model;
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_plugin_api::{LossBox, RTensor};
use niftyhost_tests::{identity_volume, tissue_config, workspace_plugin};
use tch::{Device, Kind, Tensor};

fn registry() -> Registry {
    let files = ["toynet", "deepmedic", "seglosses"].map(workspace_plugin).to_vec();
    Registry::load(&SearchPath { files, dirs: vec![] })
}

/// The tissue config with `network` lines (under `[network]`).
fn settings(dir: &std::path::Path, network: &str, lines: &str) -> Settings {
    load(Some(&tissue_config(dir, network, lines)), &Overrides::default()).unwrap()
}

/// A valid DeepMedic (d_factor 1): windows of `s` give outputs of `s - 16`.
const VALID_DEEPMEDIC: &str = "[network.params]\nd_factor = 1\npad_input = false";

fn loss_of(loss: &LossBox, logits: &Tensor, labels: &Tensor) -> Tensor {
    let (logits, labels) = (RTensor::from_tch(logits.shallow_clone()), RTensor::from_tch(labels.shallow_clone()));
    loss.loss(&logits, &labels, ROption::RNone).into_result().unwrap().into_tch()
}

/// `t` `[N, C, D, H, W]` without `b` voxels on each side of every spatial axis.
fn centre(t: &Tensor, b: i64) -> Tensor {
    let s = t.size();
    t.narrow(2, b, s[2] - 2 * b).narrow(3, b, s[3] - 2 * b).narrow(4, b, s[4] - 2 * b)
}

/// Labels of `[n, 1, s, s, s]`: random 0/1 inside a border of `b`, 2 on it, so that a
/// loss that saw the border would differ.
fn labels_with_border(n: i64, s: i64, b: i64) -> Tensor {
    let inner = Tensor::randint(2, [n, 1, s - 2 * b, s - 2 * b, s - 2 * b], (Kind::Int64, Device::Cpu));
    let labels = Tensor::full([n, 1, s, s, s], 2, (Kind::Int64, Device::Cpu));
    centre(&labels, b).copy_(&inner);
    labels
}

fn gradients(model: &Model) -> Vec<Tensor> {
    model.params.iter().map(|(_, p)| p.grad().copy()).collect()
}

#[test]
fn a_3_voxel_border_trains_on_the_centre_window_alone() {
    tch::manual_seed(11);
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let s = settings(dir.path(), "toynet", "spatial_window_size = [10, 10, 10]\nlabel_size = [4, 4, 4]");
    let channels = ChannelLayout::one_per_section(&s.segmentation.image);
    let mut replicas = Replicas::build(&reg, &s, channels, &[Device::Cpu]).unwrap();
    assert_eq!(replicas.label_window(), LabelWindow { border: [3, 3, 3] });
    let images = Tensor::randn([2, 1, 10, 10, 10], (Kind::Float, Device::Cpu));
    let labels = labels_with_border(2, 10, 3);
    let step = replicas.forward_backward(&images, &labels, None, "dice_ce", 1.0).unwrap();
    let trained = gradients(replicas.primary());

    // By hand: the same network, its output and the labels cropped with tch.
    let loss = reg.new_loss("dice_ce", &serde_json::json!({})).unwrap();
    let model = replicas.primary();
    model.params.iter_mut().for_each(|(_, p)| p.zero_grad());
    let logits = model.forward(&images, true).unwrap();
    let by_hand = loss_of(&loss, &centre(&logits, 3), &centre(&labels, 3));
    assert!((step.loss - by_hand.double_value(&[])).abs() < 1e-6, "{} vs {}", step.loss, by_hand.double_value(&[]));
    let whole = loss_of(&loss, &logits, &labels).double_value(&[]);
    assert!((whole - step.loss).abs() > 1e-2, "the border's labels would change the loss: {whole} vs {}", step.loss);
    by_hand.backward();
    for (g, h) in trained.iter().zip(gradients(replicas.primary())) {
        assert!(g.allclose(&h, 1e-5, 1e-7, false), "parameter gradients differ");
    }

    // The loss's gradient reaches the centre outputs only.
    let logits = Tensor::randn([2, 3, 10, 10, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let on = replicas.label_window().apply(logits.shallow_clone(), labels.shallow_clone(), None, "toynet").unwrap();
    loss_of(&loss, &on.logits, &on.labels).backward();
    let grad = logits.grad().abs();
    let inside = centre(&grad, 3).sum(Kind::Double).double_value(&[]);
    let all = grad.sum(Kind::Double).double_value(&[]);
    assert!(inside > 0.0 && all == inside, "gradient {all} in all, {inside} in the centre");

    // Validation's logits and labels are the centre window too.
    let (value, logits, labels) = replicas.evaluate(&images, &labels, None, "dice_ce").unwrap();
    assert_eq!((logits.size(), labels.size()), (vec![2, 3, 4, 4, 4], vec![2, 1, 4, 4, 4]));
    assert!((value - step.loss).abs() < 1e-6, "toynet is the same in evaluation mode");
}

#[test]
fn a_valid_network_meets_labels_cropped_to_its_output_and_other_windows_are_named() {
    tch::manual_seed(5);
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let lines = format!("spatial_window_size = [19, 19, 19]\nlabel_size = [3, 3, 3]\n{VALID_DEEPMEDIC}");
    let s = settings(dir.path(), "deepmedic", &lines);
    let channels = ChannelLayout::one_per_section(&s.segmentation.image);
    let mut replicas = Replicas::build(&reg, &s, channels.clone(), &[Device::Cpu]).unwrap();
    let images = Tensor::randn([1, 1, 19, 19, 19], (Kind::Float, Device::Cpu));
    let labels = labels_with_border(1, 19, 8);
    let step = replicas.forward_backward(&images, &labels, None, "dice_ce", 1.0).unwrap();
    let logits = replicas.primary().forward(&images, true).unwrap();
    assert_eq!(logits.size(), [1, 3, 3, 3, 3]);
    let loss = reg.new_loss("dice_ce", &serde_json::json!({})).unwrap();
    let by_hand = loss_of(&loss, &logits, &centre(&labels, 8)).double_value(&[]);
    assert!((step.loss - by_hand).abs() < 1e-6, "{} vs {by_hand}", step.loss);

    // A label window the output is not: named with the network and the shapes.
    let lines = format!("spatial_window_size = [19, 19, 19]\nlabel_size = [5, 5, 5]\n{VALID_DEEPMEDIC}");
    let s = settings(dir.path(), "deepmedic", &lines);
    let mut replicas = Replicas::build(&reg, &s, channels, &[Device::Cpu]).unwrap();
    let err = replicas.forward_backward(&images, &labels, None, "dice_ce", 1.0).unwrap_err().to_string();
    assert!(err.contains("`deepmedic`") && err.contains("[1, 3, 3, 3, 3]") && err.contains("[N, K, 5, 5, 5]"), "{err}");
}

/// Segments a random volume of `dims` with the network of `s` (probabilities, no
/// overlap, every window run) and runs the same network once over the whole volume
/// zero-padded by `pad` on each side, as the windows at its edges are: both as
/// `[K, k, j, i]` values, the windows run and the options.
fn tiled_and_whole(s: &Settings, dims: [usize; 3], pad: i64) -> (Vec<f32>, Vec<f32>, usize, InferenceOptions) {
    let model =
        Model::build(&registry(), s, ChannelLayout::one_per_section(&s.segmentation.image), Device::Cpu).unwrap();
    let mut predictor = Predictor::new(vec![model], mirrorings(&[]).unwrap(), false, Compute::default());
    let mut options = InferenceOptions::from_settings(s).unwrap();
    options.tiling.overlap = 0.0;
    options.foreground_margin = None;
    options.compute = Compute::default();
    options.output = OutputKind::Probabilities { quantised: false };
    let [i, j, k] = dims.map(|d| d as i64);
    let x = Tensor::randn([1, 1, k, j, i], (Kind::Float, Device::Cpu));
    let image = Vec::<f32>::try_from(x.view([-1])).unwrap();
    let v = identity_volume(dims, image);
    let tiled = predict_volume(&mut predictor, &v, &options, Store::Float, Device::Cpu).unwrap();
    let Aggregated::Float(values) = tiled.volume else { panic!("a float store gives floats") };
    let padded = x.constant_pad_nd([pad, pad, pad, pad, pad, pad]);
    let whole = predictor.predict(&padded).unwrap();
    // An output of the padded size loses the padding; a valid network's is the volume's.
    let whole = centre(&whole, (whole.size()[2] - k) / 2).contiguous();
    (values, Vec::<f32>::try_from(whole.view([-1])).unwrap(), tiled.windows, options)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn inference_writes_every_voxel_from_a_window_centre() {
    tch::manual_seed(3);
    let dir = tempfile::tempdir().unwrap();
    // toynet sees 2 voxels around each output: with a border of 3 every kept voxel is
    // computed as over the whole (zero-padded) volume, and the kept regions of 4 tile
    // 12 × 8 × 16.
    let s = settings(dir.path(), "toynet", "spatial_window_size = [10, 10, 10]\nlabel_size = [4, 4, 4]");
    let (tiled, whole, windows, options) = tiled_and_whole(&s, [12, 8, 16], 3);
    assert_eq!((options.tiling.border, options.tiling.kept()), ([3, 3, 3], [4, 4, 4]));
    assert_eq!(windows, 3 * 2 * 4, "one window per kept region");
    assert!(max_difference(&tiled, &whole) < 1e-5, "differs by {}", max_difference(&tiled, &whole));
    // Without the border, window edges (zero-padded inside the volume) show.
    let s = settings(dir.path(), "toynet", "spatial_window_size = [4, 4, 4]");
    let (tiled, whole, _, _) = tiled_and_whole(&s, [12, 8, 16], 3);
    assert!(max_difference(&tiled, &whole) > 1e-3);

    // A valid DeepMedic: windows of 19 give the 3³ label window, placed by it.
    let lines = format!("spatial_window_size = [19, 19, 19]\nlabel_size = [3, 3, 3]\n{VALID_DEEPMEDIC}");
    let s = settings(dir.path(), "deepmedic", &lines);
    let (tiled, whole, windows, options) = tiled_and_whole(&s, [9, 9, 3], 8);
    assert_eq!((options.tiling.border, windows), ([8, 8, 8], 3 * 3));
    assert!(max_difference(&tiled, &whole) < 1e-5, "differs by {}", max_difference(&tiled, &whole));
}
