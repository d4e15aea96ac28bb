//! Shape and behaviour tests of the blocks.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::crop::{centre_crop, crop_concat, same_size_valid};
use crate::shape::{divisible, fold_slices, spatial, unfold_slices};
use crate::*;

fn input(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

#[test]
fn same_padding_keeps_or_divides_the_size_in_2d_and_3d() {
    let vs = VarStore::new(Device::Cpu);
    let cases: &[(ConvConfig, &[i64], &[i64])] = &[
        (ConvConfig::new(3, 3), &[1, 2, 9, 8, 7], &[1, 4, 9, 8, 7]),
        (ConvConfig::new(3, 3).dilation(4), &[1, 2, 9, 8, 7], &[1, 4, 9, 8, 7]),
        (ConvConfig::new(3, 5).stride(2), &[1, 2, 8, 6, 4], &[1, 4, 4, 3, 2]),
        (ConvConfig::new(3, 2).stride(2), &[1, 2, 8, 6, 4], &[1, 4, 4, 3, 2]),
        (ConvConfig::new(3, 2).stride(2).transposed(), &[1, 2, 4, 3, 2], &[1, 4, 8, 6, 4]),
        (ConvConfig::new(3, 3).stride(2).transposed(), &[1, 2, 4, 3, 2], &[1, 4, 8, 6, 4]),
        (ConvConfig::new(3, 3).padding(Padding::Valid), &[1, 2, 9, 8, 7], &[1, 4, 7, 6, 5]),
        (ConvConfig::new(2, 3), &[3, 2, 9, 8], &[3, 4, 9, 8]),
        (ConvConfig::new(2, 3).padding(Padding::Valid), &[3, 2, 9, 8], &[3, 4, 7, 6]),
        (ConvConfig::new(3, 3).groups(2), &[1, 2, 5, 5, 5], &[1, 4, 5, 5, 5]),
    ];
    for (i, (cfg, shape, expected)) in cases.iter().enumerate() {
        let conv = cfg.init(&(vs.root() / format!("c{i}")), 2, 4).unwrap();
        assert_eq!(conv.forward(&input(shape)).size(), *expected, "{cfg:?}");
    }
}

#[test]
fn conv_settings_that_cannot_work_are_errors() {
    let vs = VarStore::new(Device::Cpu);
    let err = ConvConfig::new(3, 4).init(&(vs.root() / "even"), 2, 4).unwrap_err();
    assert!(err.message.contains("same padding needs an odd kernel"), "{}", err.message);
    let err = ConvConfig::new(3, 3).groups(3).init(&(vs.root() / "groups"), 2, 4).unwrap_err();
    assert!(err.message.contains("3 groups do not divide 2→4 channels"), "{}", err.message);
    let err = ConvConfig::new(1, 3).init(&(vs.root() / "dims"), 2, 4).unwrap_err();
    assert!(err.message.contains("spatial_dims must be 2 or 3, got 1"), "{}", err.message);
}

#[test]
fn conv_block_orders_and_counts_its_parameters() {
    let vs = VarStore::new(Device::Cpu);
    let post = ConvBlockConfig::new(ConvConfig::new(3, 3), NormKind::Batch, ActivationKind::PRelu);
    post.init(&(vs.root() / "post"), 2, 4).unwrap();
    // 3³·2·4 kernel, no bias (batch norm shifts), 2·4 norm, 4 PReLU slopes.
    assert_eq!(count::kernel_weights(&vs), 216);
    assert_eq!(count::trainable(&vs), 216 + 8 + 4);
    let vs = VarStore::new(Device::Cpu);
    let pre = post.pre_activation().init(&(vs.root() / "pre"), 2, 4).unwrap();
    // Pre-activation normalises the 2 input channels.
    assert_eq!(count::trainable(&vs), 216 + 4 + 2);
    assert_eq!(pre.forward_t(&input(&[2, 2, 4, 4, 4]), true).size(), [2, 4, 4, 4, 4]);
    let vs = VarStore::new(Device::Cpu);
    ConvBlockConfig::new(ConvConfig::new(2, 3), NormKind::None, ActivationKind::Relu).init(&vs.root(), 2, 4).unwrap();
    assert_eq!(count::kernels_and_biases(&vs), 72 + 4, "no normalisation: the convolution has a bias");
}

#[test]
fn every_norm_and_activation_runs_and_unknown_names_are_listed() {
    for norm in ["batch", "instance", "group:2", "none"] {
        for act in ActivationKind::NAMES {
            let vs = VarStore::new(Device::Cpu);
            let cfg = ConvBlockConfig::new(
                ConvConfig::new(3, 3),
                NormKind::parse(norm).unwrap(),
                ActivationKind::parse(act).unwrap(),
            );
            let y = cfg.init(&vs.root(), 1, 4).unwrap().forward_t(&input(&[2, 1, 4, 4, 4]), true);
            assert_eq!(y.size(), [2, 4, 4, 4, 4]);
            assert!(y.isfinite().all().int64_value(&[]) == 1, "{norm} {act}");
        }
    }
    assert!(NormKind::parse("layer").unwrap_err().contains("expected batch, instance, group"));
    assert!(ActivationKind::parse("swish").unwrap_err().contains("\"prelu\""));
    let vs = VarStore::new(Device::Cpu);
    let err = NormKind::Group(3).init(&vs.root(), 3, 8).unwrap_err();
    assert!(err.message.contains("3 groups do not divide 8 channels"), "{}", err.message);
}

#[test]
fn relu_on_a_known_input() {
    let vs = VarStore::new(Device::Cpu);
    let x = Tensor::from_slice(&[-2.0f32, 3.0]).view([1, 2, 1, 1, 1]);
    let prelu = ActivationKind::PRelu.init(&vs.root(), 2).forward(&x);
    assert_eq!(Vec::<f32>::try_from(prelu.view([-1])).unwrap(), [-0.5, 3.0]);
    let relu = ActivationKind::Relu.init(&vs.root(), 2).forward(&x);
    assert_eq!(Vec::<f32>::try_from(relu.view([-1])).unwrap(), [0.0, 3.0]);
}

#[test]
fn niftynet_activations_on_a_known_input() {
    let vs = VarStore::new(Device::Cpu);
    let x = Tensor::from_slice(&[-2.0f32, 0.0, 8.0]).view([1, 3, 1, 1, 1]);
    let softplus = |v: f32| (1.0 + v.exp()).ln();
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    for (name, want) in [
        ("relu6", [0.0, 0.0, 6.0]),
        ("sigmoid", [sigmoid(-2.0), 0.5, sigmoid(8.0)]),
        ("tanh", [(-2.0f32).tanh(), 0.0, 8.0f32.tanh()]),
        ("softplus", [softplus(-2.0), softplus(0.0), softplus(8.0)]),
        ("softsign", [-2.0 / 3.0, 0.0, 8.0 / 9.0]),
    ] {
        let y = ActivationKind::parse(name).unwrap().init(&vs.root(), 3).forward(&x);
        let got = Vec::<f32>::try_from(y.view([-1])).unwrap();
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5), "{name}: {got:?} != {want:?}");
    }
}

#[test]
fn identity_shortcut_zero_pads_channels_and_repeat_tiles_them() {
    let vs = VarStore::new(Device::Cpu);
    let block = ConvBlockConfig::new(ConvConfig::new(3, 3), NormKind::Batch, ActivationKind::Relu).pre_activation();
    let unit = ResidualUnitConfig { block, kernels: vec![3, 3], last_activation: true, shortcut: Shortcut::Identity }
        .init(&(vs.root() / "id"), 2, 4)
        .unwrap();
    assert_eq!(count::kernel_weights(&vs), 27 * (2 * 4 + 4 * 4), "no shortcut parameters");
    let x = input(&[1, 2, 4, 4, 4]);
    assert_eq!(unit.forward_t(&x, true).size(), [1, 4, 4, 4, 4]);

    let padded = residual_match(&x, 4);
    assert_eq!(padded.narrow(1, 0, 2), x);
    assert_eq!(padded.narrow(1, 2, 2).abs().sum(Kind::Float).double_value(&[]), 0.0);

    let vs = VarStore::new(Device::Cpu);
    let proj = ResidualUnitConfig { block, kernels: vec![3], last_activation: true, shortcut: Shortcut::Projection }
        .init(&vs.root(), 2, 4)
        .unwrap();
    assert_eq!(count::kernel_weights(&vs), 27 * 8 + 8, "3³ kernel plus the 1³ projection");
    assert_eq!(proj.forward_t(&x, true).size(), [1, 4, 4, 4, 4]);

    let vs = VarStore::new(Device::Cpu);
    let err = ResidualUnitConfig { block, kernels: vec![3], last_activation: true, shortcut: Shortcut::Repeat }
        .init(&vs.root(), 3, 4)
        .unwrap_err();
    assert!(err.message.contains("cannot repeat 3 channels into 4"), "{}", err.message);
}

fn residual_match(x: &Tensor, channels: i64) -> Tensor {
    crate::residual::match_channels(x, channels)
}

#[test]
fn sampling_layers_change_sizes_by_their_factor() {
    let vs = VarStore::new(Device::Cpu);
    let x = input(&[1, 4, 6, 6, 6]);
    for (i, kind) in [DownKind::StridedConv, DownKind::MaxPool, DownKind::AvgPool].into_iter().enumerate() {
        let down = DownsampleConfig::new(3, kind, 2).init(&(vs.root() / format!("d{i}")), 4, 4).unwrap();
        assert_eq!(down.forward(&x).size(), [1, 4, 3, 3, 3], "{kind:?}");
    }
    for (i, kind) in [UpKind::TransposedConv, UpKind::Linear, UpKind::Nearest].into_iter().enumerate() {
        let up = UpsampleConfig::new(3, kind, 3).init(&(vs.root() / format!("u{i}")), 4, 4).unwrap();
        assert_eq!(up.forward(&x).size(), [1, 4, 18, 18, 18], "{kind:?}");
    }
    let x2 = input(&[2, 4, 6, 4]);
    let down = DownsampleConfig::new(2, DownKind::MaxPool, 2).init(&vs.root(), 4, 4).unwrap();
    assert_eq!(down.forward(&x2).size(), [2, 4, 3, 2]);
    let up = UpsampleConfig::new(2, UpKind::Linear, 2).init(&vs.root(), 4, 4).unwrap();
    assert_eq!(up.forward(&x2).size(), [2, 4, 12, 8]);
    let err = DownsampleConfig::new(3, DownKind::MaxPool, 2).init(&vs.root(), 4, 8).unwrap_err();
    assert!(err.message.contains("pooling keeps the channels"), "{}", err.message);

    let v = Tensor::from_slice(&[1.0f32, 2.0]).view([1, 1, 1, 1, 2]);
    let up = UpsampleConfig::new(3, UpKind::Nearest, 2).init(&vs.root(), 1, 1).unwrap().forward(&v);
    assert_eq!(up.size(), [1, 1, 2, 2, 4]);
    assert_eq!(Vec::<f32>::try_from(up.narrow(2, 1, 1).narrow(3, 0, 1).reshape([-1])).unwrap(), [1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn crops_take_the_centre_and_same_size_valid_aligns_outputs() {
    let x = Tensor::arange(7, (Kind::Float, Device::Cpu)).view([1, 1, 7]);
    assert_eq!(Vec::<f32>::try_from(centre_crop(&x, &[3]).view([-1])).unwrap(), [2.0, 3.0, 4.0]);
    let skip = input(&[1, 2, 9, 9, 9]);
    assert_eq!(crop_concat(&skip, &input(&[1, 3, 5, 5, 5])).size(), [1, 5, 5, 5, 5]);

    // A "network" that loses 4 voxels per side and only produces sizes divisible by 3
    // (as DeepMedic): same_size_valid returns the input itself, aligned.
    let x = input(&[1, 1, 10, 7, 9]);
    let y = same_size_valid(
        &x,
        8,
        |s| (s + 2) / 3 * 3,
        |padded| {
            let out: Vec<i64> = padded.size()[2..].iter().map(|s| s - 8).collect();
            assert!(out.iter().all(|s| s % 3 == 0), "{out:?}");
            centre_crop(padded, &out)
        },
    );
    assert_eq!(y, x);
}

#[test]
fn shape_checks_name_the_network_and_the_constraint() {
    assert_eq!(
        divisible("V-Net", &[64, 60, 64], 16).unwrap_err(),
        "V-Net needs each spatial size divisible by 16, got 60"
    );
    assert_eq!(
        spatial("HighRes3DNet", &[1, 1, 8, 8], 3, 1).unwrap_err(),
        "HighRes3DNet needs a [N, C, D, H, W] input with 1 channel, got [1, 1, 8, 8]"
    );
    assert_eq!(spatial("x", &[1, 2, 8, 8], 2, 2).unwrap(), [8, 8]);
    let x = input(&[2, 3, 4, 5, 6]);
    let slices = fold_slices(&x);
    assert_eq!(slices.size(), [8, 3, 5, 6]);
    assert_eq!(unfold_slices(&slices, 4), x);
}
