//! Multi-channel inputs: a 4D image (`X×Y×Z×C`, or NIfTI's vector layout `X×Y×Z×1×C`)
//! gives the network C channels. The same two modalities as two 3D files or as one 4D
//! file give the same batches and losses; a 4D section mixes with a 3D one; checkpoints
//! and bundles record the channels and inference refuses images without them; `check`
//! names a subject whose channels differ from the others'.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use niftyhost::config::{load, Overrides, Settings};
use niftyhost::data::phases::training_subjects;
use niftyhost::data::{training_sampler, Batch, Loader};
use niftyhost::io::nifti::{reference_for_affine, write_image, write_labels, WriteOptions};
use niftyhost::io::read_volume;
use niftyhost_tests::{logged_losses, plugin_dir, run, text, workspace_plugin};

const N: usize = 24;
const DIMS: [usize; 3] = [N, N, N];
const SUBJECTS: [&str; 3] = ["s1", "s2", "s3"];

/// 1.5 mm voxels, a shifted origin.
fn reference() -> niftyhost::io::NiftiHeader {
    reference_for_affine(&[[1.5, 0.0, 0.0, -10.0], [0.0, 1.5, 0.0, 4.0], [0.0, 0.0, 1.5, 2.0], [0.0, 0.0, 0.0, 1.0]])
}

/// A 24³ volume whose voxel (i, j, k) is `f(i, j, k)`, NIfTI order.
fn volume<T>(f: impl Fn(f32, f32, f32) -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(N * N * N);
    for k in 0..N {
        for j in 0..N {
            for i in 0..N {
                out.push(f(i as f32, j as f32, k as f32));
            }
        }
    }
    out
}

/// Two modalities of subject `n` (a ball of two tissues in noise-free gradients, moved
/// with `n`) and its labels: 0 outside, 1 shell, 2 core.
fn modalities(n: usize) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let c = 11.0 + n as f32;
    let r = move |i: f32, j: f32, k: f32| ((i - c).powi(2) + (j - 12.0).powi(2) + (k - c * 0.9).powi(2)).sqrt();
    let class = move |i, j, k| match r(i, j, k) {
        d if d < 4.0 => 2u8,
        d if d < 8.0 => 1,
        _ => 0,
    };
    let a = volume(|i, j, k| 100.0 * f32::from(class(i, j, k)) + 2.0 * i + j);
    let b = volume(|i, j, k| 300.0 - 90.0 * f32::from(class(i, j, k)) + 3.0 * k - j);
    (a, b, volume(class))
}

/// Rewrites an uncompressed 4D NIfTI-1 file `X×Y×Z×C` as NIfTI's vector layout
/// `X×Y×Z×1×C` (intent "vector"): the voxels keep their order.
fn as_vector_layout(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let dim = |b: &[u8], n: usize| i16::from_le_bytes([b[40 + 2 * n], b[41 + 2 * n]]);
    assert_eq!(dim(&bytes, 0), 4);
    let channels = dim(&bytes, 4);
    for (n, value) in [(0, 5i16), (4, 1), (5, channels)] {
        bytes[40 + 2 * n..42 + 2 * n].copy_from_slice(&value.to_le_bytes());
    }
    bytes[68..70].copy_from_slice(&1007i16.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Writes every subject: `t1_`, `t2_` (3D), `both_` (4D: t1, t2), `vec_` (the same as
/// `X×Y×Z×1×2`, uncompressed) and `lab_` (labels).
fn cohort(dir: &Path) {
    let h = reference();
    let o = WriteOptions::default();
    for (n, id) in SUBJECTS.iter().enumerate() {
        let (a, b, labels) = modalities(n);
        write_image(&dir.join(format!("t1_{id}.nii.gz")), &h, DIMS, 1, &a, &o).unwrap();
        write_image(&dir.join(format!("t2_{id}.nii.gz")), &h, DIMS, 1, &b, &o).unwrap();
        let both = [a, b].concat();
        write_image(&dir.join(format!("both_{id}.nii.gz")), &h, DIMS, 2, &both, &o).unwrap();
        let vector = dir.join(format!("vec_{id}.nii"));
        write_image(&vector, &h, DIMS, 2, &both, &o).unwrap();
        as_vector_layout(&vector);
        write_labels(&dir.join(format!("lab_{id}.nii.gz")), &h, DIMS, &labels).unwrap();
    }
    let v = read_volume(&dir.join("vec_s1.nii")).unwrap();
    assert_eq!((v.header.dim[0], v.dims, v.channels), (5, DIMS, 2), "the vector layout reads as 2 channels");
}

/// A config training toynet on the image sections `images` (each reading the files
/// whose names start with `<section>_`) in `dir/<name>`.
fn config(dir: &Path, name: &str, images: &[&str], extra: &str) -> PathBuf {
    let mut text = format!(
        "[system]\nseed = 5\nmodel_dir = \"{}\"\nloader_threads = 2\ntorch_threads = 1\n",
        dir.join(name).display()
    );
    for section in images.iter().chain(&["lab"]) {
        text += &format!(
            "[input.{section}]\npath_to_search = \"{}\"\nfilename_contains = [\"{section}_\"]\n",
            dir.display()
        );
    }
    let list: Vec<String> = images.iter().map(|s| format!("\"{s}\"")).collect();
    text += &format!(
        "[segmentation]\nimage = [{}]\nlabel = \"lab\"\nnum_classes = 3\n\
         [network]\nname = \"toynet\"\nbatch_size = 2\nspatial_window_size = [16, 16, 16]\nwhitening = true\n\
         [training]\nmax_iter = 4\nsave_every_n = 4\nlr = 0.01\n\
         [inference]\nspatial_window_size = [24, 24, 24]\n{extra}",
        list.join(", ")
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A folder holding the cohort and the toynet and seglosses plugins.
fn cohort_with_plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cohort(dir.path());
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    dir
}

fn settings(config: &Path) -> Settings {
    load(Some(config), &Overrides::default()).unwrap()
}

fn batches(config: &Path, n: u64) -> Vec<Batch> {
    let s = settings(config);
    let subjects = training_subjects(&s, Path::new(".")).unwrap();
    let sampler = Arc::new(training_sampler(&s, subjects.train).unwrap());
    let mut loader = Loader::spawn(sampler, 0, n, 2, 3);
    (0..n).map(|_| loader.next_batch().unwrap().unwrap()).collect()
}

fn train(dir: &Path, config: &Path) -> String {
    let out = run(dir, &["train", "-c", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn checkpoint_meta(dir: &Path, name: &str) -> serde_json::Value {
    let json = dir.join(name).join("checkpoints/iter_00000004.json");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn two_3d_files_a_4d_file_and_the_5d_vector_layout_give_the_same_batches_and_losses() {
    let dir = cohort_with_plugins();
    let d = dir.path();
    let files = config(d, "files", &["t1", "t2"], "");
    let four_d = config(d, "four_d", &["both"], "");
    let vector = config(d, "vector", &["vec"], "");
    let reference = batches(&files, 6);
    assert_eq!(reference[0].images.len(), 2 * 2 * 16 * 16 * 16, "2 windows of 2 channels");
    assert!(reference == batches(&four_d, 6), "one 4D file gives other batches than two 3D files");
    assert!(reference == batches(&vector, 6), "the X×Y×Z×1×C layout gives other batches than X×Y×Z×C");

    for name in ["files", "four_d"] {
        train(d, &d.join(format!("{name}.toml")));
    }
    let losses = logged_losses(&d.join("files/train_log.jsonl"));
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|(_, l)| l.is_finite()), "{losses:?}");
    assert_eq!(losses, logged_losses(&d.join("four_d/train_log.jsonl")), "the same modalities, other losses");
    // The checkpoints record each section's channels.
    assert_eq!(checkpoint_meta(d, "files")["image_channels"], serde_json::json!([1, 1]));
    assert_eq!(checkpoint_meta(d, "four_d")["image_channels"], serde_json::json!([2]));
}

#[test]
fn a_4d_section_and_a_3d_section_train_with_their_channels_added() {
    let dir = cohort_with_plugins();
    let d = dir.path();
    let mixed = config(d, "mixed", &["both", "t2"], "");
    let out = run(d, &["check", "-c", mixed.to_str().unwrap(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["channels"]["channels"], serde_json::json!([2, 1]), "{stdout}");
    assert!(stderr.contains("image channels: both: 2, t2: 1 (in_channels 3)"), "{stderr}");
    let stderr = train(d, &mixed);
    assert!(stderr.contains("in_channels 3"), "{stderr}");
    assert_eq!(checkpoint_meta(d, "mixed")["image_channels"], serde_json::json!([2, 1]));
    assert_eq!(batches(&mixed, 1)[0].images.len(), 2 * 3 * 16 * 16 * 16, "2 windows of 3 channels");
}

#[test]
fn a_model_trained_on_4d_images_segments_4d_files_and_refuses_3d_ones() {
    let dir = cohort_with_plugins();
    let d = dir.path();
    let four_d = config(d, "four_d", &["both"], "");
    let c = four_d.to_str().unwrap();
    train(d, &four_d);
    let out = run(d, &["export", "-c", c, "--out", "model.nhb"]);
    assert!(out.status.success(), "{}", text(&out).1);

    // From the bundle, in a folder with nothing else: a 4D file is segmented, a 3D one
    // refused before the network runs, naming the file and both channel counts.
    let empty = tempfile::tempdir().unwrap();
    let bundle = d.join("model.nhb");
    let segment = |image: &str, out: &str| {
        let image = d.join(image);
        run(
            empty.path(),
            &["inference", "--model", bundle.to_str().unwrap(), "--image", image.to_str().unwrap(), "--out", out],
        )
    };
    let out = segment("both_s2.nii.gz", "seg.nii.gz");
    assert!(out.status.success(), "{}", text(&out).1);
    let seg = read_volume(&empty.path().join("seg.nii.gz")).unwrap();
    assert_eq!((seg.dims, seg.channels), (DIMS, 1));
    assert!(seg.data.iter().all(|&v| v == 0.0 || v == 1.0 || v == 2.0));
    let out = segment("t1_s2.nii.gz", "refused.nii.gz");
    let stderr = text(&out).1;
    assert!(!out.status.success(), "a 3D image was segmented by a model of 2 channels");
    assert!(
        stderr.contains(&format!(
            "image {} (section `both`) has 1 channel(s), expected 2",
            d.join("t1_s2.nii.gz").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("in all 1 channel(s), expected 2 (in_channels)"), "{stderr}");
    assert!(!empty.path().join("refused.nii.gz").exists());

    // With the config and its checkpoints: the cohort is segmented; once a subject's
    // image is 3D it is refused by name.
    let out = run(d, &["inference", "-c", c]);
    assert!(out.status.success(), "{}", text(&out).1);
    let (h, (a, _, _)) = (reference(), modalities(0));
    write_image(&d.join("both_s1.nii.gz"), &h, DIMS, 1, &a, &WriteOptions::default()).unwrap();
    let out = run(d, &["inference", "-c", c]);
    let stderr = text(&out).1;
    assert!(!out.status.success());
    assert!(stderr.contains("both_s1.nii.gz (section `both`) has 1 channel(s), expected 2"), "{stderr}");
}

#[test]
fn check_names_the_subject_whose_channels_differ_from_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cohort(d);
    let (a, _, _) = modalities(1);
    let odd = d.join("both_s2.nii.gz");
    write_image(&odd, &reference(), DIMS, 1, &a, &WriteOptions::default()).unwrap();
    let four_d = config(d, "four_d", &["both"], "");
    let out = run(d, &["check", "-c", four_d.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 problem(s) in the data"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "subject `s2`: image {} (section `both`) has 1 channel(s), expected 2 (as 2 of the 3 subjects have)",
            odd.display()
        )),
        "{stderr}"
    );
}
