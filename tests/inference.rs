//! Sliding-window inference pieces on known cases: blending of overlapping windows,
//! test-time mirroring with a mirror-symmetric network, and label postprocessing.

use niftyhost::config::{load, Blending, Overrides, PaddingMode};
use niftyhost::data::ChannelLayout;
use niftyhost::engine::inference::output::OutputKind;
use niftyhost::engine::inference::postprocess::{fill_holes, keep_largest_component, remove_small_components};
use niftyhost::engine::inference::{
    memory, mirrorings, predict_volume, Aggregated, Aggregator, Blend, Compute, Concurrency, Cost, InferenceOptions,
    InferencePrecision, Postprocess, Predicted, Predictor, Region, Store, Tiling, WindowMemory,
};
use niftyhost::engine::Model;
use niftyhost::metrics::components::Connectivity;
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_tests::fixtures::sdk_fixture;
use niftyhost_tests::{identity_volume as volume, tissue_config, workspace_plugin};
use tch::{Device, Kind, Tensor};

/// Two windows along `i` on a 1×1 line of 6 voxels, kept regions of 4 at i = 0 and
/// i = 2 (overlap on i = 2, 3), one class: the first outputs 1, the second 0.
fn blend_line(blend: Blend) -> (Vec<f32>, Vec<f32>) {
    let weights = blend.weights([4, 1, 1]);
    let mut agg = Aggregator::new([6, 1, 1], 1, [4, 1, 1], weights.clone(), Store::Float).unwrap();
    agg.add([0, 0, 0], &[1.0; 4], [4, 1, 1], [0, 0, 0]).unwrap();
    agg.add([2, 0, 0], &[0.0; 4], [4, 1, 1], [0, 0, 0]).unwrap();
    let Aggregated::Float(out) = agg.finish().unwrap() else { panic!("a float store gives floats") };
    (out, weights)
}

#[test]
fn constant_blending_averages_and_gaussian_blending_favours_the_nearer_window_centre() {
    let (constant, _) = blend_line(Blend::Constant);
    assert_eq!(constant, vec![1.0, 1.0, 0.5, 0.5, 0.0, 0.0]);

    let (gaussian, w) = blend_line(Blend::from(Blending::Gaussian));
    // Voxel 2 is index 2 of the first window and index 0 of the second; voxel 3 is
    // index 3 of the first and 1 of the second.
    let expect2 = w[2] / (w[2] + w[0]);
    let expect3 = w[3] / (w[3] + w[1]);
    assert!((gaussian[2] - expect2).abs() < 1e-6, "{gaussian:?}");
    assert!((gaussian[3] - expect3).abs() < 1e-6, "{gaussian:?}");
    assert_eq!(&gaussian[..2], &[1.0, 1.0]);
    assert_eq!(&gaussian[4..], &[0.0, 0.0]);
    // Voxel 2 is nearer the first window's centre (1.5) than the second's (3.5).
    assert!(gaussian[2] > 0.5 && gaussian[3] < 0.5, "{gaussian:?}");
    assert!((gaussian[2] + gaussian[3] - 1.0).abs() < 1e-6, "the two overlap voxels mirror each other");
}

#[test]
fn labels_and_quantised_stores_agree_with_the_float_store() {
    // Two classes over a 3×2×2 volume in two overlapping windows along k.
    let window: Vec<f32> = (0..24).map(|v| (v % 7) as f32 / 7.0).collect();
    let run = |store| {
        let mut agg = Aggregator::new([3, 2, 3], 2, [3, 2, 2], vec![1.0; 12], store).unwrap();
        agg.add([0, 0, 0], &window, [3, 2, 2], [0, 0, 0]).unwrap();
        agg.add([0, 0, 1], &window, [3, 2, 2], [0, 0, 0]).unwrap();
        agg.finish().unwrap()
    };
    let Aggregated::Float(p) = run(Store::Float) else { panic!() };
    let Aggregated::Labels(l) = run(Store::Labels) else { panic!() };
    let Aggregated::Quantised(q) = run(Store::Quantised) else { panic!() };
    let v = 18;
    for i in 0..v {
        assert_eq!(l[i], u8::from(p[v + i] > p[i]), "voxel {i}");
        for c in 0..2 {
            assert!((f32::from(q[c * v + i]) / 255.0 - p[c * v + i]).abs() <= 0.5 / 255.0 + 1e-6);
        }
    }
}

fn toynet(dir: &std::path::Path) -> Model {
    let config = tissue_config(dir, "toynet", "[network.params]\nchannels = 4");
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("toynet")], dirs: vec![] });
    Model::build(&reg, &settings, ChannelLayout::one_per_section(&settings.segmentation.image), Device::Cpu).unwrap()
}

#[test]
fn mirror_tta_leaves_a_symmetric_network_unchanged_and_averages_mirrors_otherwise() {
    tch::manual_seed(7);
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::rand([1, 1, 6, 7, 8], (Kind::Float, Device::Cpu));

    // A plain toynet: TTA over axis i is the mean of f(x) and flip(f(flip(x))).
    let model = toynet(dir.path());
    let mut plain = Predictor::new(vec![model], mirrorings(&[]).unwrap(), false, Compute::default());
    let f = plain.predict(&x).unwrap();
    let ff = plain.predict(&x.flip([4])).unwrap().flip([4]);
    let mut tta = Predictor::new(plain.models, mirrorings(&[0]).unwrap(), false, Compute::default());
    let averaged = tta.predict(&x).unwrap();
    assert!(averaged.allclose(&((&f + &ff) / 2.0), 1e-5, 1e-6, false));
    assert!(!f.allclose(&ff, 1e-3, 1e-4, false), "a random toynet is not mirror-symmetric");

    // Kernels symmetric under every flip make the network mirror-equivariant: TTA over
    // all three axes gives the plain output.
    for (_, w) in &tta.models[0].params {
        if w.dim() == 5 {
            let sym = (w
                + w.flip([2])
                + w.flip([3])
                + w.flip([4])
                + w.flip([2, 3])
                + w.flip([2, 4])
                + w.flip([3, 4])
                + w.flip([2, 3, 4]))
                / 8.0;
            tch::no_grad(|| w.shallow_clone().copy_(&sym));
        }
    }
    tta.mirrorings = mirrorings(&[]).unwrap();
    let f = tta.predict(&x).unwrap();
    tta.mirrorings = mirrorings(&[0, 1, 2]).unwrap();
    assert_eq!(tta.passes(), 8);
    let averaged = tta.predict(&x).unwrap();
    assert!(averaged.allclose(&f, 1e-5, 1e-6, false), "max diff {}", (averaged - &f).abs().max().double_value(&[]));
    let sum = f.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!(sum.allclose(&Tensor::ones_like(&sum), 1e-5, 1e-6, false), "probabilities sum to 1");
}

/// A 6×5×1 slice as a string grid (rows are j, columns i).
fn grid(rows: &[&str]) -> Vec<u8> {
    rows.iter().flat_map(|r| r.bytes().map(|b| b - b'0')).collect()
}

#[test]
fn postprocessing_keeps_the_largest_removes_small_and_fills_holes() {
    let dims = [6, 5, 1];
    let c6 = Connectivity::Six;
    let mut l = grid(&["110001", "110001", "000000", "011100", "000000"]);
    keep_largest_component(&mut l, dims, 1, c6);
    assert_eq!(l, grid(&["110000", "110000", "000000", "000000", "000000"]));

    let mut l = grid(&["110001", "110001", "000000", "011100", "000002"]);
    remove_small_components(&mut l, dims, 1, 3, c6);
    assert_eq!(l, grid(&["110000", "110000", "000000", "011100", "000002"]), "2 voxels < 3 go, label 2 stays");

    // A ring of 1 around a hole of 0 and a 2; a gap to the edge is not a hole.
    let mut l = grid(&["111100", "100100", "120100", "111100", "000000"]);
    fill_holes(&mut l, [6, 5, 1], 1, Connectivity::TwentySix);
    assert_eq!(l, grid(&["111100", "111100", "121100", "111100", "000000"]), "other labels in the hole are kept");
    let mut open = grid(&["111100", "100100", "100000", "111100", "000000"]);
    let before = open.clone();
    fill_holes(&mut open, [6, 5, 1], 1, Connectivity::TwentySix);
    assert_eq!(open, before, "a region reaching the edge is not a hole");

    // Postprocess runs the steps in order with a volume threshold in mm³.
    let p = Postprocess {
        remove_small: vec![1],
        min_volume_mm3: 6.0,
        keep_largest: vec![],
        fill_holes: vec![],
        connectivity: c6,
    };
    let mut l = grid(&["110001", "110001", "000000", "011100", "000000"]);
    p.apply(&mut l, dims, 2.0);
    assert_eq!(l, grid(&["110000", "110000", "000000", "011100", "000000"]), "6 mm³ = 3 voxels of 2 mm³");
}

#[test]
fn outputs_resampled_back_to_the_input_grid_keep_the_input_geometry_and_labels() {
    use niftyhost::data::prepare::{Geometry, GeometryOptions};
    use niftyhost::engine::inference::output::{write_output, OutputKind};
    use niftyhost::io::nifti::reference_for_affine;
    use niftyhost::preprocess::{Grid, LabelMap};

    // An 8×8×8 input at 1 mm, prepared at 2 mm (4×4×4) with 1 voxel of padding (6×6×6).
    let mut affine = niftyhost::preprocess::IDENTITY;
    affine[0][3] = -4.0;
    let original = Grid::new([8, 8, 8], affine).unwrap();
    let options = GeometryOptions {
        axcodes: None,
        pixdim: Some([2.0, 2.0, 2.0]),
        padding: [1, 1, 1],
        padding_mode: PaddingMode::Constant,
    };
    let geometry = Geometry::plan(original, &options).unwrap();
    assert_eq!(geometry.prepared.dims, [6, 6, 6]);
    // Two classes: class 1 where i >= 3 on the prepared grid (world x >= 0 mm).
    let n = 216;
    let mut q = vec![0u8; 2 * n];
    for v in 0..n {
        let i = v % 6;
        q[if i >= 3 { n + v } else { v }] = 255;
    }
    let header = reference_for_affine(&affine);
    let reference = niftyhost::io::Volume {
        data: Vec::new(),
        dims: [8, 8, 8],
        channels: 1,
        header,
        affine,
        pixdim: [1.0; 3],
        path: "in.nii".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let map = LabelMap::from_values(vec![0, 7]).unwrap();
    let none = Postprocess {
        remove_small: vec![],
        min_volume_mm3: 0.0,
        keep_largest: vec![],
        fill_holes: vec![],
        connectivity: Connectivity::Six,
    };
    let path = dir.path().join("seg.nii.gz");
    let aggregated = Aggregated::Quantised(q.clone());
    write_output(&path, "s", &reference, &geometry, aggregated, 2, OutputKind::Labels, Some(&map), &none).unwrap();
    let seg = niftyhost::io::read_volume(&path).unwrap();
    assert_eq!(seg.dims, [8, 8, 8]);
    assert_eq!(seg.affine, affine);
    // World x = i - 4: label value 7 (class 1) right of the centre, 0 left of it.
    for v in 0..512 {
        let i = v % 8;
        if i <= 2 {
            assert_eq!(seg.data[v], 0.0, "voxel {v}");
        } else if i >= 5 {
            assert_eq!(seg.data[v], 7.0, "voxel {v}");
        }
    }
    // Probabilities come back as 2 volumes on the input grid.
    let path = dir.path().join("prob.nii.gz");
    let kind = OutputKind::Probabilities { quantised: true };
    write_output(&path, "s", &reference, &geometry, Aggregated::Quantised(q), 2, kind, None, &none).unwrap();
    let p = niftyhost::io::read_volume(&path).unwrap();
    assert_eq!((p.dims, p.channels), ([8, 8, 8], 2));
    assert!((0..512).all(|v| (p.data[v] + p.data[512 + v] - 1.0).abs() < 2.0 / 255.0));
}

fn options(batch_size: usize, compute: Compute) -> InferenceOptions {
    InferenceOptions {
        tiling: Tiling { window: [8, 8, 8], border: [0, 0, 0], overlap: 0.0, batch_size, full_extent_multiple: [1; 3] },
        nearest_labels: false,
        blend: Blend::Constant,
        mirror_axes: vec![],
        output: OutputKind::Probabilities { quantised: false },
        postprocess: Postprocess {
            remove_small: vec![],
            min_volume_mm3: 0.0,
            keep_largest: vec![],
            fill_holes: vec![],
            connectivity: Connectivity::Six,
        },
        num_classes: 3,
        compute,
        workers: 1,
        worker_threads: 1,
        foreground_margin: None,
        resize_to_window: false,
        window_memory: None,
    }
}

#[test]
fn constant_windows_share_one_pass_and_workers_blend_what_one_predictor_blends() {
    // 32 × 8 × 8: i < 16 constant (two windows of 8 share one pass), i >= 16 random.
    let dims = [32, 8, 8];
    let noise = Tensor::randn([2048], (Kind::Float, Device::Cpu));
    let noise = Vec::<f32>::try_from(&noise).unwrap();
    let image: Vec<f32> = (0..2048).map(|v| if v % 32 < 16 { 0.5 } else { noise[v] }).collect();
    let v = volume(dims, image);
    let dir = tempfile::tempdir().unwrap();
    let float = |p: Predicted| match p.volume {
        Aggregated::Float(f) => f,
        _ => panic!("a float store gives floats"),
    };
    let mut one = Predictor::new(vec![toynet(dir.path())], mirrorings(&[]).unwrap(), false, Compute::default());
    // The constant window's own output, computed alone.
    let alone = one.predict(&Tensor::full([1, 1, 8, 8, 8], 0.5, (Kind::Float, Device::Cpu))).unwrap();
    let alone = Vec::<f32>::try_from(alone.view([-1])).unwrap();
    let reference =
        float(predict_volume(&mut one, &v, &options(1, Compute::default()), Store::Float, Device::Cpu).unwrap());
    // [K, k, j, i]: every voxel with i < 16 has the constant window's output.
    for c in 0..3 {
        for k in 0..8 {
            for j in 0..8 {
                for i in 0..16 {
                    let got = reference[((c * 8 + k) * 8 + j) * 32 + i];
                    let want = alone[((c * 8 + k) * 8 + j) * 8 + i % 8];
                    assert!((got - want).abs() < 1e-6, "class {c} voxel ({i}, {j}, {k}): {got} vs {want}");
                }
            }
        }
    }
    // Batches of 3 on two workers (one predictor and one replica) blend the same.
    let mut two = Predictor::new(vec![toynet(dir.path())], mirrorings(&[]).unwrap(), false, Compute::default())
        .with_workers(vec![vec![toynet(dir.path())]], 1);
    let opts = options(3, Compute::default());
    for models in [&two.models, &two.helpers[0].models] {
        for (dst, src) in models[0].params.iter().zip(&one.models[0].params) {
            tch::no_grad(|| dst.1.shallow_clone().copy_(&src.1));
        }
    }
    let parallel = float(predict_volume(&mut two, &v, &opts, Store::Float, Device::Cpu).unwrap());
    assert_eq!(two.helpers.len(), 1, "the replicas come back after the volume");
    let max = reference.iter().zip(&parallel).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "workers differ by {max}");
    // Measured, a window of 8³ costs at least twice its float32 output, and three per
    // batch on two workers fit this machine.
    let configured = Concurrency { batch: 3, workers: 2 };
    let measured = memory::measure(&mut two, &[[8, 8, 8]], 1, configured, Device::Cpu).unwrap();
    assert!(measured.host.per_voxel >= 2.0 * 3.0 * 4.0, "{measured:?}");
    assert_eq!((measured.voxels, measured.fitted), (512, configured));
    // Windows too large for the memory run one at a time, on one worker, blending the same.
    let huge = Cost { fixed: 0.0, per_voxel: 1e18 };
    let tight = WindowMemory { host: huge, host_usable: Some(1 << 30), ..measured };
    assert_eq!(tight.fit([8, 8, 8], configured), Concurrency { batch: 1, workers: 1 });
    let opts = InferenceOptions { window_memory: Some(tight), ..options(3, Compute::default()) };
    let one_at_a_time = float(predict_volume(&mut two, &v, &opts, Store::Float, Device::Cpu).unwrap());
    assert_eq!(two.helpers.len(), 1, "the unused replica stays");
    let max = reference.iter().zip(&one_at_a_time).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "one window at a time differs by {max}");
    // bf16 channels-last passes stay close to float32.
    let fast = Compute { precision: InferencePrecision::Bf16, channels_last: true };
    let mut bf = Predictor::new(vec![toynet(dir.path())], mirrorings(&[]).unwrap(), false, fast);
    for (dst, src) in bf.models[0].params.iter().zip(&one.models[0].params) {
        tch::no_grad(|| dst.1.shallow_clone().copy_(&src.1.to_kind(dst.1.kind())));
    }
    let close = float(predict_volume(&mut bf, &v, &options(2, fast), Store::Float, Device::Cpu).unwrap());
    let max = reference.iter().zip(&close).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 0.05, "bf16 differs by {max}");
}

#[test]
fn cropping_to_the_foreground_runs_fewer_windows_blends_the_same_inside_and_gives_class_0_outside() {
    // 40 × 24 × 16 of constant 0.25 with random values in i 10..22, j 6..13, k 3..9.
    let dims = [40, 24, 16];
    let noise = Vec::<f32>::try_from(&Tensor::randn([40 * 24 * 16], (Kind::Float, Device::Cpu))).unwrap();
    let inside = |i: usize, j: usize, k: usize| (10..22).contains(&i) && (6..13).contains(&j) && (3..9).contains(&k);
    let at = |v: usize| (v % 40, v / 40 % 24, v / 960);
    let image: Vec<f32> = (0..noise.len())
        .map(|v| {
            let (i, j, k) = at(v);
            if inside(i, j, k) {
                noise[v]
            } else {
                0.25
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut predictor = Predictor::new(vec![toynet(dir.path())], mirrorings(&[]).unwrap(), false, Compute::default());
    let mut opts = options(2, Compute::default());
    opts.foreground_margin = Some(1);
    let cropped =
        predict_volume(&mut predictor, &volume(dims, image.clone()), &opts, Store::Float, Device::Cpu).unwrap();
    // The box i 9..23, j 5..14, k 2..10, widened to the 8-voxel window along k: 2 × 2 × 1
    // windows instead of 5 × 3 × 2.
    let region = Region { start: [9, 5, 2], size: [14, 9, 8] };
    assert_eq!(cropped.windows, 4);
    let Aggregated::Float(cropped) = cropped.volume else { panic!("a float store gives floats") };
    // The region cut out and run whole gives the same values inside it.
    let [ri, rj, rk] = region.size;
    let sub: Vec<f32> =
        (0..ri * rj * rk).map(|v| image[((v / (ri * rj) + 2) * 24 + v / ri % rj + 5) * 40 + v % ri + 9]).collect();
    opts.foreground_margin = None;
    let whole = predict_volume(&mut predictor, &volume(region.size, sub), &opts, Store::Float, Device::Cpu).unwrap();
    let Aggregated::Float(whole) = whole.volume else { panic!("a float store gives floats") };
    let voxels = 40 * 24 * 16;
    for c in 0..3 {
        for v in 0..voxels {
            let (i, j, k) = at(v);
            let got = cropped[c * voxels + v];
            let in_region = (9..23).contains(&i) && (5..14).contains(&j) && (2..10).contains(&k);
            let want = if in_region {
                whole[c * ri * rj * rk + ((k - 2) * rj + j - 5) * ri + i - 9]
            } else if c == 0 {
                1.0
            } else {
                0.0
            };
            assert!((got - want).abs() < 1e-6, "class {c} voxel ({i}, {j}, {k}): {got} vs {want}");
        }
    }
    // A volume of background alone runs no window and is all class 0.
    opts.foreground_margin = Some(0);
    let empty =
        predict_volume(&mut predictor, &volume(dims, vec![0.25; voxels]), &opts, Store::Labels, Device::Cpu).unwrap();
    assert_eq!(empty.windows, 0);
    assert_eq!(empty.volume, Aggregated::Labels(vec![0; voxels]));
}

#[test]
fn resize_sampling_runs_the_volume_resized_to_one_window_and_resizes_the_scores_back() {
    tch::manual_seed(11);
    let dir = tempfile::tempdir().unwrap();
    let mut predictor = Predictor::new(vec![toynet(dir.path())], mirrorings(&[]).unwrap(), false, Compute::default());
    // 20 × 12 × 6 resized to the 8³ window: shrunk along i and j, stretched along k.
    let dims = [20, 12, 6];
    let voxels = 20 * 12 * 6;
    let image = Vec::<f32>::try_from(Tensor::rand([voxels as i64], (Kind::Float, Device::Cpu))).unwrap();
    let mut opts = options(4, Compute::default());
    opts.resize_to_window = true;
    opts.tiling.border = [1, 1, 1]; // not used: the whole window is kept
    opts.foreground_margin = Some(0); // not used: the whole volume is resized
    let got = predict_volume(&mut predictor, &volume(dims, image.clone()), &opts, Store::Float, Device::Cpu).unwrap();
    assert_eq!(got.windows, 1);
    let Aggregated::Float(got) = got.volume else { panic!("a float store gives floats") };
    // The same by hand: trilinear down to 8³, class probabilities, trilinear back up.
    let small = Tensor::from_slice(&image).view([1, 1, 6, 12, 20]).upsample_trilinear3d([8, 8, 8], false, None, None, None);
    let scores = predictor.predict(&small).unwrap();
    let want = scores.upsample_trilinear3d([6, 12, 20], false, None, None, None);
    let want = Vec::<f32>::try_from(want.view([-1])).unwrap();
    assert_eq!(got.len(), 3 * voxels);
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "differs from resizing by hand by {max}");
    // Labels are the arg-max of those scores.
    let labels = predict_volume(&mut predictor, &volume(dims, image), &opts, Store::Labels, Device::Cpu).unwrap();
    let Aggregated::Labels(labels) = labels.volume else { panic!("a label store gives labels") };
    let argmax = |v: usize| (0..3).max_by(|&a, &b| want[a * voxels + v].total_cmp(&want[b * voxels + v])).unwrap();
    assert!((0..voxels).all(|v| usize::from(labels[v]) == argmax(v)));
}

#[test]
fn a_batch_that_runs_out_of_memory_runs_again_in_halves() {
    let dir = tempfile::tempdir().unwrap();
    let config = tissue_config(dir.path(), "one_window_memory", "");
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let reg = Registry::load(&SearchPath { files: vec![sdk_fixture("badoutput")], dirs: vec![] });
    let channels = ChannelLayout::one_per_section(&settings.segmentation.image);
    let model = Model::build(&reg, &settings, channels, Device::Cpu).unwrap();
    let mut predictor = Predictor::new(vec![model], mirrorings(&[]).unwrap(), false, Compute::default());
    // Four windows of 8³, none constant, in one batch of 4: out of memory, then two
    // batches of 2 (out of memory), then one window at a time.
    let v = volume([32, 8, 8], (0..2048).map(|v| v as f32 / 2048.0).collect());
    let halved = predict_volume(&mut predictor, &v, &options(4, Compute::default()), Store::Float, Device::Cpu).unwrap();
    assert_eq!(halved.windows, 4);
    let one = predict_volume(&mut predictor, &v, &options(1, Compute::default()), Store::Float, Device::Cpu).unwrap();
    assert_eq!(halved.volume, one.volume);
}
