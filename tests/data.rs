//! The data pipeline: samplers, loader threads, determinism, the dataset check and the
//! split, on the bundled 2 mm example and on small volumes written by the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use niftyhost::config::{load, Overrides, Settings};
use niftyhost::data::phases::{held_out_subjects, training_subjects};
use niftyhost::data::{foreground_windows, training_sampler, Batch, Loader, Phase, Split};
use niftyhost::io::{read_volume, write_labels};
use niftyhost_tests::{plugin_dir, repo_root, run, text, workspace_plugin};

/// Writes a uint8 volume of `dims` whose voxel (i, j, k) is `f(i, j, k)`.
fn write_u8(path: &Path, dims: [usize; 3], f: impl Fn(usize, usize, usize) -> u8) {
    let reference = read_volume(&repo_root().join("data/mni152/tissue_2mm.nii.gz")).unwrap();
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(f(i, j, k));
            }
        }
    }
    write_labels(path, &reference.header, dims, &data).unwrap();
}

fn settings(dir: &Path, body: &str) -> Settings {
    let path = dir.join("config.toml");
    std::fs::write(&path, format!("[system]\nmodel_dir = \"{}\"\nseed = 9\n{body}", dir.join("model").display()))
        .unwrap();
    load(Some(&path), &Overrides::default()).unwrap()
}

/// The bundled example with the brain mask as the weighted sampler's map.
fn example(dir: &Path, sampling: &str, window: usize, batch: usize) -> Settings {
    let data = repo_root().join("data/mni152");
    let d = data.display();
    settings(
        dir,
        &format!(
            "[input.t1]\npath_to_search = \"{d}\"\nfilename_contains = [\"t1_\"]\n\
             [input.label]\npath_to_search = \"{d}\"\nfilename_contains = [\"tissue_\"]\n\
             [input.weights]\npath_to_search = \"{d}\"\nfilename_contains = [\"brainmask_\"]\n\
             [segmentation]\nimage = [\"t1\"]\nlabel = \"label\"\nnum_classes = 3\nsampler = \"weights\"\n\
             [network]\nbatch_size = {batch}\nspatial_window_size = [{window}, {window}, {window}]\nwindow_sampling = \"{sampling}\"\n"
        ),
    )
}

fn batches(settings: &Settings, threads: usize, n: u64) -> Vec<Batch> {
    let subjects = training_subjects(settings, Path::new(".")).unwrap();
    let sampler = Arc::new(training_sampler(settings, subjects.train).unwrap());
    let mut loader = Loader::spawn(sampler, 0, n, threads, 3);
    (0..n).map(|_| loader.next_batch().unwrap().unwrap()).collect()
}

#[test]
fn one_seed_gives_the_same_batches_with_1_2_and_8_loader_threads() {
    for sampling in ["uniform", "balanced", "weighted", "resize", "foreground"] {
        let dir = tempfile::tempdir().unwrap();
        let s = example(dir.path(), sampling, 12, 3);
        let one = batches(&s, 1, 10);
        assert_eq!(one[0].images.len(), 3 * 12 * 12 * 12);
        // One subject resized whole gives the same window every time; the others move.
        assert_eq!(one[0] == one[1], sampling == "resize", "{sampling}: batches of consecutive iterations");
        for threads in [2, 8] {
            assert!(one == batches(&s, threads, 10), "{sampling}: {threads} threads changed the batches");
        }
    }
}

#[test]
fn the_ranks_shares_are_disjoint_and_together_the_whole_batch() {
    // Foreground sampling's share is of the iteration's whole batch, so it shards alike.
    for sampling in ["uniform", "foreground"] {
        let dir = tempfile::tempdir().unwrap();
        let whole = example(dir.path(), sampling, 8, 6);
        let per_rank = example(dir.path(), sampling, 8, 2);
        let subjects = training_subjects(&whole, Path::new(".")).unwrap();
        let one = training_sampler(&whole, subjects.train.clone()).unwrap();
        let ranks: Vec<_> =
            (0..3).map(|r| training_sampler(&per_rank, subjects.train.clone()).unwrap().with_shard(r, 3)).collect();
        let per = 8 * 8 * 8;
        for t in [0, 1, 7] {
            let all = one.batch(t).unwrap();
            let shares: Vec<Batch> = ranks.iter().map(|r| r.batch(t).unwrap()).collect();
            for (r, share) in shares.iter().enumerate() {
                let what = format!("{sampling}, iteration {t}, rank {r}");
                assert_eq!(share.images[..], all.images[r * 2 * per..(r + 1) * 2 * per], "{what}");
                assert_eq!(share.labels[..], all.labels[r * 2 * per..(r + 1) * 2 * per], "{what}");
            }
            assert_ne!(shares[0].images, shares[1].images, "{sampling}: ranks 0 and 1 drew the same windows");
        }
    }
}

#[test]
fn balanced_windows_centre_each_class_about_equally() {
    let dir = tempfile::tempdir().unwrap();
    let s = example(dir.path(), "balanced", 9, 4);
    let mut counts = [0usize; 3];
    for b in batches(&s, 2, 60) {
        for w in 0..b.size {
            // Centre voxel (4, 4, 4) of each 9³ label window.
            counts[b.labels[w * 729 + (4 * 9 + 4) * 9 + 4] as usize] += 1;
        }
    }
    // 240 windows; uniform sampling would centre ~80% of them on label 0.
    for (class, &n) in counts.iter().enumerate() {
        assert!((55..=105).contains(&n), "class {class}: {n} of 240 windows ({counts:?})");
    }
}

#[test]
fn weighted_windows_centre_on_the_only_positive_weight() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_u8(&d.join("img_a.nii.gz"), [16, 16, 16], |i, j, k| (i + 16 * j + 7 * k) as u8);
    write_u8(&d.join("seg_a.nii.gz"), [16, 16, 16], |_, _, _| 0);
    write_u8(&d.join("w_a.nii.gz"), [16, 16, 16], |i, j, k| u8::from((i, j, k) == (5, 6, 7)));
    let s = settings(
        d,
        &format!(
            "[input.img]\npath_to_search = \"{p}\"\nfilename_contains = [\"img_\"]\n\
             [input.seg]\npath_to_search = \"{p}\"\nfilename_contains = [\"seg_\"]\n\
             [input.w]\npath_to_search = \"{p}\"\nfilename_contains = [\"w_\"]\n\
             [segmentation]\nimage = [\"img\"]\nlabel = \"seg\"\nnum_classes = 2\nsampler = \"w\"\n\
             [network]\nbatch_size = 2\nspatial_window_size = [5, 5, 5]\nwindow_sampling = \"weighted\"\nwhitening = false\n",
            p = d.display()
        ),
    );
    for b in batches(&s, 2, 5) {
        for w in 0..2 {
            // The window's centre (2, 2, 2) is voxel (5, 6, 7).
            assert_eq!(b.images[w * 125 + (2 * 5 + 2) * 5 + 2], (5 + 16 * 6 + 7 * 7) as f32);
        }
    }
}

/// A 24³ subject `id` in `dir` whose image is `(i + 3j + 7k) mod 251` and whose label is
/// 1 on the 2³ cube at `(17, 4, 9)` when `labelled`, else 0 everywhere; its loss weight
/// map (section `w`) is the label file's twin.
fn cube_subject(dir: &Path, id: &str, labelled: bool) {
    write_u8(&dir.join(format!("img_{id}.nii.gz")), [24, 24, 24], |i, j, k| ((i + 3 * j + 7 * k) % 251) as u8);
    let cube = move |i: usize, j: usize, k: usize| {
        u8::from(labelled && (17..19).contains(&i) && (4..6).contains(&j) && (9..11).contains(&k))
    };
    write_u8(&dir.join(format!("seg_{id}.nii.gz")), [24, 24, 24], cube);
    write_u8(&dir.join(format!("w_{id}.nii.gz")), [24, 24, 24], cube);
}

/// Sampling the subjects of `dir` in 5³ windows, batches of `batch`; `segmentation` and
/// `network` are more lines of those sections.
fn cube_settings(dir: &Path, batch: usize, segmentation: &str, network: &str) -> Settings {
    settings(
        dir,
        &format!(
            "[input.img]\npath_to_search = \"{p}\"\nfilename_contains = [\"img_\"]\n\
             [input.seg]\npath_to_search = \"{p}\"\nfilename_contains = [\"seg_\"]\n\
             [input.w]\npath_to_search = \"{p}\"\nfilename_contains = [\"w_\"]\n\
             [segmentation]\nimage = [\"img\"]\nlabel = \"seg\"\nnum_classes = 2\n{segmentation}\n\
             [network]\nbatch_size = {batch}\nspatial_window_size = [5, 5, 5]\nwhitening = false\n{network}\n",
            p = dir.display()
        ),
    )
}

/// Window `w` (of 5³ voxels) of a batch: its image and label voxels.
fn window_of(b: &Batch, w: usize) -> (&[f32], &[i16]) {
    (&b.images[w * 125..(w + 1) * 125], &b.labels[w * 125..(w + 1) * 125])
}

/// The voxel at the centre `(2, 2, 2)` of a 5³ window.
const CENTRE: usize = (2 * 5 + 2) * 5 + 2;

#[test]
fn foreground_windows_are_the_last_of_each_batch_centred_on_labelled_voxels_the_rest_uniform() {
    let dir = tempfile::tempdir().unwrap();
    cube_subject(dir.path(), "a", true);
    // (batch size, share, foreground windows): round(B·share), but at least one when share > 0.
    for (batch, share, expected) in [(2, 0.33, 1), (3, 0.5, 2), (5, 0.33, 2), (4, 0.1, 1), (4, 1.0, 4), (4, 0.0, 0)] {
        assert_eq!(foreground_windows(batch, share), expected, "B = {batch}, share = {share}");
        let uniform = batches(&cube_settings(dir.path(), batch, "", ""), 1, 8);
        let sampling = format!("window_sampling = \"foreground\"\nforeground_oversample = {share}");
        let s = cube_settings(dir.path(), batch, "", &sampling);
        let foreground = batches(&s, 1, 8);
        assert!(foreground == batches(&s, 4, 8), "B = {batch}, share = {share}: 4 threads changed the windows");
        for (t, (f, u)) in foreground.iter().zip(&uniform).enumerate() {
            for w in 0..batch {
                let what = format!("B = {batch}, share = {share}, iteration {t}, window {w}");
                if w < batch - expected {
                    assert_eq!(window_of(f, w), window_of(u, w), "{what}: a uniform window");
                } else {
                    assert_eq!(window_of(f, w).1[CENTRE], 1, "{what}: centred on a labelled voxel");
                }
            }
        }
    }
    // Uniform windows of this volume are rarely centred on the cube (8 of 20³ centres).
    let uniform = batches(&cube_settings(dir.path(), 4, "", ""), 1, 8);
    let centred = uniform.iter().flat_map(|b| (0..4).map(move |w| window_of(b, w).1[CENTRE])).filter(|&l| l == 1);
    assert!(centred.count() < 4, "the uniform windows are not a fair control");
}

#[test]
fn a_subject_without_labelled_voxels_gets_uniform_windows_and_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    cube_subject(dir.path(), "empty", false);
    let uniform = batches(&cube_settings(dir.path(), 2, "", ""), 2, 6);
    // This also writes the config the training run below reads.
    let s = cube_settings(dir.path(), 2, "", "window_sampling = \"foreground\"\nforeground_oversample = 1.0");
    assert!(batches(&s, 2, 6) == uniform);
    // Training warns once, naming the subject, however many windows it draws from it.
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = dir.path().join("config.toml");
    let out = run(
        dir.path(),
        &["train", "-c", config.to_str().unwrap(), "--max-iter", "4", "--set", "system.torch_threads=1"],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("has no labelled voxel")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("empty"), "{stderr}");
}

#[test]
fn loss_weight_maps_are_cut_with_the_windows_of_the_labels() {
    // The weight map is the label file's twin, so each of its windows equals the label window.
    let dir = tempfile::tempdir().unwrap();
    cube_subject(dir.path(), "a", true);
    for sampling in ["uniform", "foreground", "resize", "balanced"] {
        let network = format!("window_sampling = \"{sampling}\"");
        let with = batches(&cube_settings(dir.path(), 3, "weight = \"w\"", &network), 2, 6);
        for b in &with {
            let labels: Vec<f32> = b.labels.iter().map(|&l| f32::from(l)).collect();
            assert_eq!(b.loss_weights, labels, "{sampling}");
            assert_eq!(b.loss_weight_tensor().unwrap().size(), [3, 1, 5, 5, 5], "{sampling}");
        }
        if ["foreground", "balanced"].contains(&sampling) {
            assert!(with.iter().any(|b| b.labels.contains(&1)), "{sampling}: no window reached the cube");
        }
        // Without `segmentation.weight` the batch has none, and the same windows.
        let without = batches(&cube_settings(dir.path(), 3, "", &network), 2, 6);
        for (a, b) in with.iter().zip(&without) {
            assert!(b.loss_weights.is_empty() && b.loss_weight_tensor().is_none());
            assert_eq!((&a.images, &a.labels), (&b.images, &b.labels), "{sampling}");
        }
    }
}

#[test]
fn sample_per_volume_draws_runs_from_one_volume_and_epochs_visit_every_subject() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (id, value) in [("a", 10u8), ("b", 20), ("c", 30)] {
        write_u8(&d.join(format!("img_{id}.nii.gz")), [8, 8, 8], |_, _, _| value);
        write_u8(&d.join(format!("seg_{id}.nii.gz")), [8, 8, 8], |_, _, _| 0);
    }
    let s = settings(
        d,
        &format!(
            "[input.img]\npath_to_search = \"{p}\"\nfilename_contains = [\"img_\"]\n\
             [input.seg]\npath_to_search = \"{p}\"\nfilename_contains = [\"seg_\"]\n\
             [segmentation]\nimage = [\"img\"]\nlabel = \"seg\"\nnum_classes = 2\n\
             [network]\nbatch_size = 1\nspatial_window_size = [4, 4, 4]\nwhitening = false\n\
             [training]\nsample_per_volume = 3\n",
            p = d.display()
        ),
    );
    let values: Vec<f32> = batches(&s, 2, 18).iter().map(|b| b.images[0]).collect();
    for run in values.chunks(3) {
        assert!(run.iter().all(|&v| v == run[0]), "a run of 3 comes from one volume: {values:?}");
    }
    for epoch in values.chunks(9) {
        let mut seen: Vec<f32> = epoch.iter().step_by(3).copied().collect();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, [10.0, 20.0, 30.0], "each epoch visits every subject once: {values:?}");
    }
}

/// Writes subjects `ids` (16³ images and labels) into `dir`; `label_of` makes each label.
fn synthetic(
    dir: &Path,
    ids: &[&str],
    label_dims: impl Fn(&str) -> [usize; 3],
    label_value: impl Fn(&str) -> u8,
) -> PathBuf {
    for id in ids {
        write_u8(&dir.join(format!("img_{id}.nii.gz")), [16, 16, 16], |i, _, _| i as u8);
        write_u8(
            &dir.join(format!("seg_{id}.nii.gz")),
            label_dims(id),
            |i, _, _| if i < 4 { label_value(id) } else { 0 },
        );
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[system]\nmodel_dir = \"{m}\"\n[input.img]\npath_to_search = \"{p}\"\nfilename_contains = [\"img_\"]\n\
             [input.seg]\npath_to_search = \"{p}\"\nfilename_contains = [\"seg_\"]\n\
             [segmentation]\nimage = [\"img\"]\nlabel = \"seg\"\nnum_classes = 3\n\
             [training]\nexclude_fraction_for_inference = 0.4\n",
            m = dir.join("model").display(),
            p = dir.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn check_lists_every_problem_of_every_subject_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let config = synthetic(
        dir.path(),
        &["s1", "s2", "s3"],
        |id| if id == "s1" { [16, 16, 15] } else { [16, 16, 16] },
        |id| if id == "s3" { 7 } else { 1 },
    );
    let out = run(dir.path(), &["check", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 problem(s) in the data"), "{stderr}");
    assert!(stderr.contains("subject `s1`: label") && stderr.contains("is [16, 16, 15] but image"), "{stderr}");
    assert!(
        stderr.contains("subject `s3`: label") && stderr.contains("has value 7, expected integers in 0..3"),
        "{stderr}"
    );
    // Training (its components found and checked first) runs the same check and stops
    // before building anything.
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let out = run(dir.path(), &["train", "-c", config.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert!(stderr.contains("2 problem(s) in the data"), "{stderr}");
    assert!(!stderr.contains("model ready"), "{stderr}");
}

#[test]
fn a_subject_missing_a_modality_is_named_with_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = synthetic(dir.path(), &["s1", "s2"], |_| [16, 16, 16], |_| 1);
    std::fs::remove_file(dir.path().join("seg_s2.nii.gz")).unwrap();
    let out = run(dir.path(), &["check", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("subject `s2` has no file in input section(s) [\"seg\"] (it has one in [\"img\"])"),
        "{stderr}"
    );
}

#[test]
fn the_split_is_made_once_reused_and_inference_takes_the_infer_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["s1", "s2", "s3", "s4", "s5"];
    let config = synthetic(dir.path(), &ids, |_| [16, 16, 16], |_| 1);
    let s = load(Some(&config), &Overrides::default()).unwrap();
    let subjects = training_subjects(&s, dir.path()).unwrap();
    assert_eq!((subjects.train.len(), subjects.valid.len(), subjects.checked), (3, 0, 5));
    let split_file = dir.path().join("model/dataset_split.csv");
    let split = Split::read(&split_file, &niftyhost::data::phases::split_spec(&s)).unwrap();
    let infer = split.ids(Phase::Infer);
    assert_eq!(infer.len(), 2);
    let held = held_out_subjects(&s, dir.path(), false).unwrap();
    assert!(held.iter().all(|h| h.phase == Some(Phase::Infer)));
    assert_eq!(held.into_iter().map(|h| h.subject.id).collect::<Vec<_>>(), infer);
    // Other fractions later do not change an existing split.
    let before = std::fs::read_to_string(&split_file).unwrap();
    assert!(before.starts_with("subject_id,phase,fold\n"), "{before}");
    let o = Overrides {
        cli: vec![("--set".into(), "training.exclude_fraction_for_inference".into(), "0.0".into())],
        ..Default::default()
    };
    let s2 = load(Some(&config), &o).unwrap();
    assert_eq!(training_subjects(&s2, dir.path()).unwrap().train.len(), 3);
    assert_eq!(std::fs::read_to_string(&split_file).unwrap(), before);
}

/// Writes a float32 16³ volume with `affine` whose voxel (i, j, k) is `f(i, j, k)`.
fn write_f32(path: &Path, affine: [[f64; 4]; 4], f: impl Fn(usize, usize, usize) -> f32) {
    use niftyhost::io::nifti::{reference_for_affine, write_image, WriteOptions};
    let mut data = Vec::with_capacity(16 * 16 * 16);
    for k in 0..16 {
        for j in 0..16 {
            for i in 0..16 {
                data.push(f(i, j, k));
            }
        }
    }
    write_image(path, &reference_for_affine(&affine), [16, 16, 16], 1, &data, &WriteOptions::default()).unwrap();
}

#[test]
fn bad_data_is_reported_per_file_nan_images_moved_affines_and_fractional_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let eye = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
    let mut moved = eye;
    moved[0][3] = 5.0;
    // s1: NaN voxels in the image; s2: label grid shifted by 5 mm; s3: label 1.5.
    write_f32(&d.join("img_s1.nii"), eye, |i, _, _| if i == 3 { f32::NAN } else { 1.0 });
    write_f32(&d.join("seg_s1.nii"), eye, |_, _, _| 0.0);
    write_f32(&d.join("img_s2.nii"), eye, |_, _, _| 1.0);
    write_f32(&d.join("seg_s2.nii"), moved, |_, _, _| 0.0);
    write_f32(&d.join("img_s3.nii"), eye, |_, _, _| 1.0);
    write_f32(&d.join("seg_s3.nii"), eye, |i, _, _| if i == 0 { 1.5 } else { 0.0 });
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let config = d.join("config.toml");
    let body = |seg_dir: &Path| {
        format!(
            "[system]\nmodel_dir = \"{m}\"\n[input.img]\npath_to_search = \"{p}\"\nfilename_contains = [\"img_\"]\n\
             [input.seg]\npath_to_search = \"{s}\"\nfilename_contains = [\"seg_\"]\n\
             [segmentation]\nimage = [\"img\"]\nlabel = \"seg\"\nnum_classes = 2\n",
            m = d.join("model").display(),
            p = d.display(),
            s = seg_dir.display()
        )
    };
    std::fs::write(&config, body(d)).unwrap();
    let out = run(d, &["check", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("3 problem(s) in the data"), "{stderr}");
    assert!(stderr.contains("img_s1.nii has 256 NaN or infinite voxels"), "{stderr}");
    assert!(stderr.contains("seg_s2.nii and image") && stderr.contains("differing by up to 5.0000 mm"), "{stderr}");
    assert!(stderr.contains("seg_s3.nii has value 1.5, expected integers in 0..2"), "{stderr}");
    // A section whose folder holds no image names the section and the folder.
    std::fs::write(&config, body(&d.join("empty"))).unwrap();
    let out = run(d, &["check", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("input section `seg` found no image in path_to_search"), "{stderr}");
}
