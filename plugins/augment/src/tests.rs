//! Properties of every component, called as the host calls them (through the schema).

use niftyhost_plugin_api::sdk::{AugmentFn, Params};
use tch::{Kind, Tensor};

use super::PLUGIN;

fn component(name: &str, json: &str) -> Box<dyn AugmentFn> {
    let def = PLUGIN.augmentations.iter().find(|d| d.name == name).expect("component exists");
    let params = Params::parse(name, json, def.params, &[]).expect("valid parameters");
    (def.build)(&params).expect("component builds")
}

/// A `[1, D, H, W]` image whose voxels all differ, and a label of values {0, 2, 5}.
fn sample(d: i64, h: i64, w: i64) -> (Tensor, Tensor) {
    let n = d * h * w;
    let image = (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.37).sin().view([1, d, h, w]);
    let label = (Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)) * 7).remainder(3).view([1, d, h, w]);
    let label = label.eq(1).to_kind(Kind::Int64) * 2 + label.eq(2).to_kind(Kind::Int64) * 5;
    (image, label)
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn flips_are_exact_involutions() {
    let flip = component("flip", r#"{"flip_probability": 1.0}"#);
    let (image, label) = sample(5, 6, 7);
    let sp = [1.0, 1.0, 1.0];
    let (once, once_l) = flip.apply(&image, Some(&label), sp, 11).unwrap();
    assert!(same(&once, &image.flip([1, 2, 3])), "probability 1 flips every axis");
    assert!(same(&once_l.as_ref().unwrap(), &label.flip([1, 2, 3])));
    let (twice, twice_l) = flip.apply(&once, once_l.as_ref(), sp, 11).unwrap();
    assert!(same(&twice, &image) && same(&twice_l.unwrap(), &label));
    // With probability 0.5 per axis, some seed flips only a subset; it is still an involution.
    let half = component("flip", r#"{"random_flipping_axes": [0, 2]}"#);
    for seed in 0..8 {
        let (a, _) = half.apply(&image, None, sp, seed).unwrap();
        let (b, _) = half.apply(&a, None, sp, seed).unwrap();
        assert!(same(&b, &image), "seed {seed}");
        // Only i (tensor dim 3) and k (dim 1) may flip: j (dim 2) never does.
        let allowed: [&[i64]; 4] = [&[], &[3], &[1], &[1, 3]];
        assert!(allowed.iter().any(|d| same(&a, &image.flip(*d))), "seed {seed}: flipped an axis not listed");
    }
}

#[test]
fn zero_rotation_and_unit_scaling_are_the_identity() {
    let (image, label) = sample(6, 7, 8);
    let sp = [2.0, 1.0, 0.5];
    let none = component(
        "spatial",
        r#"{"rotation_angle": [0.0, 0.0], "scaling_percentage": [0.0, 0.0], "do_elastic_deformation": true, "deformation_sigma": 0.0, "proportion_to_deform": 0.0}"#,
    );
    let (out, out_l) = none.apply(&image, Some(&label), sp, 3).unwrap();
    assert!(same(&out, &image) && same(&out_l.unwrap(), &label));
    // The resampling path itself, with the identity matrix and zero displacement.
    let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let zero = Tensor::zeros([3, 6, 7, 8], (Kind::Float, tch::Device::Cpu));
    let grid = super::spatial::sampling_grid(identity, Some(&zero), [6, 7, 8], sp);
    let (out, out_l) = super::spatial::resample(&image, Some(&label), &grid);
    let err = (&out - &image).abs().max().double_value(&[]);
    assert!(err < 1e-5, "identity resampling differs by {err}");
    assert!(same(&out_l.unwrap(), &label));
}

#[test]
fn a_quarter_turn_about_k_permutes_voxels_and_honours_the_axis_convention() {
    let (image, label) = sample(3, 9, 9);
    let quarter = component("rotation", r#"{"rotation_angle": [], "rotation_angle_z": [90.0, 90.0]}"#);
    let (out, out_l) = quarter.apply(&image, Some(&label), [3.0, 1.0, 1.0], 0).unwrap();
    // out[k][j][i] = in[k][i][n-1-j]
    let expected = image.transpose(2, 3).flip([2]);
    let err = (&out - &expected).abs().max().double_value(&[]);
    assert!(err < 1e-4, "quarter turn differs by {err}");
    assert!(same(&out_l.unwrap(), &label.transpose(2, 3).flip([2])));
}

#[test]
fn scaling_honours_anisotropic_spacing_through_the_centre() {
    // Doubling the size maps the centre voxel to itself and voxel offsets to half offsets.
    let d = 9;
    let image =
        Tensor::arange(d, (Kind::Float, tch::Device::Cpu)).view([1, 1, 1, d]).expand([1, 3, 3, d], false).contiguous();
    let zoom = component("scaling", r#"{"scaling_percentage": [100.0, 100.0], "isotropic_scaling": true}"#);
    let (out, _) = zoom.apply(&image, None, [5.0, 0.7, 0.3], 1).unwrap();
    let row = Vec::<f32>::try_from(out.get(0).get(1).get(1)).unwrap();
    let want: Vec<f32> = (0..d).map(|i| 4.0 + (i as f32 - 4.0) / 2.0).collect();
    for (a, b) in row.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{row:?} vs {want:?}");
    }
}

#[test]
fn label_values_stay_within_the_original_label_set() {
    let (image, label) = sample(12, 13, 14);
    let all = component(
        "spatial",
        r#"{"random_flipping_axes": [0, 1, 2], "rotation_angle": [-30.0, 30.0], "scaling_percentage": [-20.0, 20.0], "do_elastic_deformation": true, "deformation_sigma": 3.0, "proportion_to_deform": 1.0}"#,
    );
    for seed in 0..6 {
        let (out, out_l) = all.apply(&image, Some(&label), [1.5, 1.0, 1.0], seed).unwrap();
        let out_l = out_l.unwrap();
        assert_eq!(out.size(), image.size());
        assert_eq!(out_l.kind(), Kind::Int64);
        let bad = out_l.ne(0).logical_and(&out_l.ne(2)).logical_and(&out_l.ne(5)).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(bad, 0, "seed {seed}: labels outside {{0, 2, 5}}");
        assert!(!same(&out_l, &label), "seed {seed}: the label moved with the image");
        // Linear interpolation stays within the image's range.
        assert!(out.max().double_value(&[]) <= image.max().double_value(&[]) + 1e-6);
        assert!(out.min().double_value(&[]) >= image.min().double_value(&[]) - 1e-6);
    }
}

#[test]
fn image_and_label_move_together() {
    // The label is the image's rounded value: after any transform they must still agree
    // wherever nearest and linear sampling coincide (on the flat plateaus).
    let image = Tensor::zeros([1, 16, 16, 16], (Kind::Float, tch::Device::Cpu));
    let _ = image.narrow(1, 4, 8).narrow(2, 4, 8).narrow(3, 4, 8).fill_(1.0);
    let label = image.to_kind(Kind::Int64);
    let t = component(
        "spatial",
        r#"{"rotation_angle": [-40.0, 40.0], "scaling_percentage": [-10.0, 10.0], "random_flipping_axes": [0]}"#,
    );
    let (out, out_l) = t.apply(&image, Some(&label), [1.0, 1.0, 1.0], 5).unwrap();
    let out_l = out_l.unwrap();
    let plateau_in = out.ge(0.99).logical_and(&out_l.ne(1)).sum(Kind::Int64).int64_value(&[]);
    let plateau_out = out.le(0.01).logical_and(&out_l.ne(0)).sum(Kind::Int64).int64_value(&[]);
    assert_eq!((plateau_in, plateau_out), (0, 0));
}

#[test]
fn same_seed_same_sample_and_seeds_differ() {
    let (image, label) = sample(8, 8, 8);
    for (name, json) in [
        (
            "spatial",
            r#"{"rotation_angle": [-20.0, 20.0], "do_elastic_deformation": true, "proportion_to_deform": 1.0, "deformation_sigma": 2.0}"#,
        ),
        ("gaussian_noise", "{}"),
        ("bias_field", "{}"),
        ("gamma", "{}"),
        ("contrast_brightness", "{}"),
        ("gaussian_blur", r#"{"sigma_range": [0.5, 2.0]}"#),
    ] {
        let c = component(name, json);
        let (a, _) = c.apply(&image, Some(&label), [1.0; 3], 42).unwrap();
        let (b, _) = c.apply(&image, Some(&label), [1.0; 3], 42).unwrap();
        let (d, _) = c.apply(&image, Some(&label), [1.0; 3], 43).unwrap();
        assert!(same(&a, &b), "{name}: same seed differs");
        assert!(!same(&a, &d), "{name}: seeds 42 and 43 agree");
    }
}

#[test]
fn intensity_augmentations_keep_shape_finiteness_and_the_label() {
    let (image, label) = sample(10, 11, 12);
    let image = Tensor::cat(&[&image, &(image.shallow_clone() * 3.0 + 1.0)], 0);
    for (name, json) in [
        ("bias_field", r#"{"bias_field_range": [-1.0, 1.0], "bf_order": 4}"#),
        ("gamma", r#"{"gamma_range": [0.3, 3.0]}"#),
        ("gaussian_noise", r#"{"std_range": [0.5, 1.0]}"#),
        ("gaussian_blur", r#"{"sigma_range": [0.5, 3.0]}"#),
        ("contrast_brightness", "{}"),
    ] {
        let c = component(name, json);
        for seed in 0..4 {
            let (out, out_l) = c.apply(&image, Some(&label), [2.0, 1.0, 0.8], seed).unwrap();
            assert_eq!(out.size(), image.size(), "{name}");
            assert_eq!(out.kind(), Kind::Float, "{name}");
            assert!(bool::try_from(out.isfinite().all()).unwrap(), "{name}: non-finite output");
            assert!(same(&out_l.unwrap(), &label), "{name}: label changed");
        }
    }
}

#[test]
fn gamma_keeps_each_channels_range_and_blur_keeps_a_constant() {
    let (image, _) = sample(6, 6, 6);
    let (out, _) = component("gamma", "{}").apply(&image, None, [1.0; 3], 9).unwrap();
    for (a, b) in [(out.min(), image.min()), (out.max(), image.max())] {
        assert!((a.double_value(&[]) - b.double_value(&[])).abs() < 1e-5);
    }
    let flat = Tensor::full([1, 5, 6, 7], 2.5, (Kind::Float, tch::Device::Cpu));
    let (out, _) =
        component("gaussian_blur", r#"{"sigma_range": [2.0, 2.0]}"#).apply(&flat, None, [1.0, 2.0, 0.5], 1).unwrap();
    assert!((out - 2.5).abs().max().double_value(&[]) < 1e-5);
    let (out, _) = component("bias_field", r#"{"bf_order": 0}"#).apply(&flat, None, [1.0; 3], 1).unwrap();
    let ratio = &out / 2.5;
    assert!((ratio.max() - ratio.min()).double_value(&[]) < 1e-6, "order 0 is a constant factor");
}

#[test]
fn bad_parameters_name_the_component_and_the_key() {
    let def = PLUGIN.augmentations.iter().find(|d| d.name == "spatial").unwrap();
    let err = Params::parse("spatial", r#"{"rotation_angel": [1, 2]}"#, def.params, &[]).unwrap_err();
    assert!(err.message.contains("did you mean `rotation_angle`"), "{}", err.message);
    let p = Params::parse("spatial", r#"{"rotation_angle": [10, -10]}"#, def.params, &[]).unwrap();
    let err = (def.build)(&p).err().expect("lo > hi is refused");
    assert!(err.message.starts_with("spatial: parameter `rotation_angle`"), "{}", err.message);
    let p = Params::parse("spatial", r#"{"random_flipping_axes": [3]}"#, def.params, &[]).unwrap();
    let err = (def.build)(&p).err().expect("axis 3 is refused");
    assert!(err.message.contains("random_flipping_axes"), "{}", err.message);
    let flip = component("flip", "{}");
    let err = flip.apply(&Tensor::zeros([4, 4, 4], (Kind::Float, tch::Device::Cpu)), None, [1.0; 3], 0).unwrap_err();
    assert!(err.message.contains("[C, D, H, W]"), "{}", err.message);
}

#[test]
fn rotation_is_physical_with_anisotropic_voxels() {
    // H: 5 voxels of 2 mm, W: 9 voxels of 1 mm: both 8 mm across. A quarter turn about k
    // takes the output voxel at (x, y) mm from the input at (−y, x): for even i that is
    // input voxel (j' = 2 + (i − 4)/2, i' = 8 − 2j).
    let (image, _) = sample(2, 5, 9);
    let quarter = component("rotation", r#"{"rotation_angle": [], "rotation_angle_z": [90.0, 90.0]}"#);
    let (out, _) = quarter.apply(&image, None, [1.0, 2.0, 1.0], 0).unwrap();
    for k in 0..2 {
        for j in 0..5i64 {
            for i in (0..9i64).step_by(2) {
                let got = out.double_value(&[0, k, j, i]);
                let want = image.double_value(&[0, k, 2 + (i - 4) / 2, 8 - 2 * j]);
                assert!((got - want).abs() < 1e-4, "({k}, {j}, {i}): {got} vs {want}");
            }
        }
    }
}
