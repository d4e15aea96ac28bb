//! Hardening against odd input (issue 19): paths that are not regular files are refused
//! before they are opened (a FIFO does not hang), NaN or infinite affines are refused by
//! `check`, training and inference naming the file and the field, what a plugin returns
//! is checked (a loss that is no scalar or has no gradient, a network output of another
//! shape: an error naming the plugin, no panic), and the exit codes follow one contract
//! (0 success, 2 usage or configuration, 1 anything else).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use niftyhost::io::nifti::{reference_for_affine, write_image, write_labels, WriteOptions};
use niftyhost_tests::fixtures::sdk_fixture;
use niftyhost_tests::{cohort_config, niftyhost_bin, plugin_dir, run, text, workspace_plugin};

const N: usize = 16;
const DIMS: [usize; 3] = [N, N, N];

/// Runs `niftyhost` in `cwd`, killing it and failing the test when it takes longer than
/// `limit` (a hang must fail, not block the suite).
fn run_within(cwd: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(niftyhost_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("niftyhost runs");
    let started = Instant::now();
    while child.try_wait().expect("waiting for niftyhost").is_none() {
        if started.elapsed() > limit {
            child.kill().expect("kill the hung niftyhost");
            child.wait().expect("reap the hung niftyhost");
            panic!("niftyhost {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("niftyhost output")
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Writes subjects `ids` into `dir` as uncompressed NIfTI-1: `t1_<id>.nii` (a gradient)
/// and `tissue_<id>.nii` (labels 0..3), 1.5 mm voxels.
fn cohort(dir: &Path, ids: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let h = reference_for_affine(&[
        [1.5, 0.0, 0.0, -10.0],
        [0.0, 1.5, 0.0, 4.0],
        [0.0, 0.0, 1.5, 2.0],
        [0.0, 0.0, 0.0, 1.0],
    ]);
    let index = |n: usize| (n % N, (n / N) % N, n / (N * N));
    let image: Vec<f32> = (0..N * N * N).map(|n| index(n).0 as f32 * 10.0 + index(n).2 as f32).collect();
    let labels: Vec<u8> = (0..N * N * N).map(|n| (index(n).0 * 3 / N) as u8).collect();
    for id in ids {
        write_image(&dir.join(format!("t1_{id}.nii")), &h, DIMS, 1, &image, &WriteOptions::default()).unwrap();
        write_labels(&dir.join(format!("tissue_{id}.nii")), &h, DIMS, &labels).unwrap();
    }
}

/// A header field of an uncompressed NIfTI-1 file, by byte offset.
enum Field {
    F32(usize, f32),
    I16(usize, i16),
}

const QFORM_CODE: usize = 252;
const SFORM_CODE: usize = 254;
const QUATERN_B: usize = 256;
const QOFFSET_X: usize = 268;
const SROW_X0: usize = 280;

/// Overwrites header fields of an uncompressed little-endian NIfTI-1 file.
fn patch(path: &Path, fields: &[Field]) {
    let mut bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[344..347], b"n+1", "{} is an uncompressed NIfTI-1 file", path.display());
    for field in fields {
        match *field {
            Field::F32(at, v) => bytes[at..at + 4].copy_from_slice(&v.to_le_bytes()),
            Field::I16(at, v) => bytes[at..at + 2].copy_from_slice(&v.to_le_bytes()),
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// A folder with the toynet and seglosses plugins, subjects `a` and `b` in `data/`, and
/// a config training toynet on them for one iteration.
fn workspace(dir: &Path) -> PathBuf {
    workspace_with(dir, &[], "toynet", "")
}

/// As [`workspace`], with more plugin files, another network and more `[training]` keys.
fn workspace_with(dir: &Path, plugins: &[PathBuf], network: &str, training: &str) -> PathBuf {
    plugin_dir(dir, &[&[workspace_plugin("toynet"), workspace_plugin("seglosses")], plugins].concat());
    let data = dir.join("data");
    cohort(&data, &["a", "b"]);
    let extra = format!(
        "batch_size = 2\nspatial_window_size = [16, 16, 16]\n[training]\nmax_iter = 1\n\
         exclude_fraction_for_validation = 0.0\nexclude_fraction_for_inference = 0.0\n{training}"
    );
    cohort_config(dir, &data, network, &extra)
}

#[test]
fn a_fifo_given_as_an_image_is_refused_by_name_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let limit = Duration::from_secs(60);
    for name in ["fifo.nii", "fifo.hdr"] {
        mkfifo(&d.join(name));
        let out = run_within(d, &["info", name], limit);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("{name}: is a FIFO, not a regular file")), "{stderr}");
    }
    // The voxel half of a pair.
    cohort(&d.join("pair"), &["x"]);
    let mut header = std::fs::read(d.join("pair/t1_x.nii")).unwrap()[..348].to_vec();
    header[344..348].copy_from_slice(b"ni1\0");
    std::fs::write(d.join("pair/half.hdr"), header).unwrap();
    mkfifo(&d.join("pair/half.img"));
    let out = run_within(d, &["info", "pair/half.hdr"], limit);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("half.img: is a FIFO, not a regular file"), "{stderr}");
    // `check`: a subject's label is a FIFO.
    let config = workspace(d);
    let label = d.join("data/tissue_b.nii");
    std::fs::remove_file(&label).unwrap();
    mkfifo(&label);
    let out = run_within(d, &["check", "-c", config.to_str().unwrap()], limit);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}: is a FIFO, not a regular file", label.display())), "{stderr}");
}

#[test]
fn nan_or_infinite_affines_are_refused_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = workspace(d);
    let c = config.to_str().unwrap();
    let (image_b, label_a) = (d.join("data/t1_b.nii"), d.join("data/tissue_a.nii"));
    let label_a_as_written = std::fs::read(&label_a).unwrap();
    // The sform is chosen: a NaN in it. The qform is chosen: an infinite offset.
    patch(&image_b, &[Field::I16(SFORM_CODE, 1), Field::F32(SROW_X0, f32::NAN)]);
    patch(&label_a, &[Field::I16(SFORM_CODE, 0), Field::I16(QFORM_CODE, 1), Field::F32(QOFFSET_X, f32::INFINITY)]);

    // `info` shows the header as it is.
    let out = run(d, &["info", image_b.to_str().unwrap()]);
    let stdout = text(&out).0;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        stdout.contains("affine       from the sform") && stdout.lines().any(|l| l.trim_start().starts_with("[ NaN ")),
        "{stdout}"
    );

    let out = run(d, &["check", "-c", c]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("image {}: the sform is not finite: srow_x[0] = NaN", image_b.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("label {}: the qform is not finite: qoffset_x = inf", label_a.display())),
        "{stderr}"
    );
    // Paired with a finite affine, a NaN one is a mismatch, never a match.
    assert!(
        stderr.contains(&format!("label {} and image", label_a.display()))
            && stderr.contains("have affines that cannot be compared"),
        "{stderr}"
    );

    // Training refuses before it trains.
    let out = run(d, &["train", "-c", c]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("srow_x[0] = NaN") && stderr.contains(&image_b.display().to_string()), "{stderr}");
    assert!(
        !d.join("model/checkpoints").exists() || std::fs::read_dir(d.join("model/checkpoints")).unwrap().count() == 0
    );

    // A quaternion NaN with the qform alone.
    patch(&image_b, &[Field::I16(SFORM_CODE, 0), Field::I16(QFORM_CODE, 1), Field::F32(QUATERN_B, f32::NAN)]);
    std::fs::write(&label_a, label_a_as_written).unwrap();
    let out = run(d, &["check", "-c", c]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 problem(s) in the data"), "{stderr}");
    assert!(
        stderr.contains(&format!("image {}: the qform is not finite: quatern_b = NaN", image_b.display())),
        "{stderr}"
    );
    assert!(!stderr.contains(&label_a.display().to_string()), "a finite qform is no problem: {stderr}");

    // Inference on a file named with --image names that file, whatever --out is called.
    std::fs::rename(&image_b, d.join("bad.nii")).unwrap();
    std::fs::remove_file(d.join("data/tissue_b.nii")).unwrap();
    let out = run(d, &["train", "-c", c]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(d, &["inference", "-c", c, "--image", "bad.nii", "--out", "seg.nii.gz"]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.nii: the qform is not finite: quatern_b = NaN"), "{stderr}");
    assert!(!d.join("seg.nii.gz").exists());
}

#[test]
fn unknown_components_refused_parameters_and_bad_devices_exit_2_in_inference_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = workspace(d);
    let c = config.to_str().unwrap();
    let out = run(d, &["train", "-c", c]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(d, &["inference", "-c", c]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    for (set, said) in [
        ("network.name=\"toynett\"", "no network named `toynett`"),
        ("network.params={base_chanels=4}", "unknown parameter `base_chanels`"),
        ("system.devices=[\"gpu\"]", "unknown device `gpu`"),
    ] {
        let out = run(d, &["inference", "-c", c, "--set", set]);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(said), "{set}: {stderr}");
    }
    // Bad data is not a usage error.
    let out = run(d, &["inference", "-c", c, "--image", "missing.nii", "--out", "seg.nii.gz"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    // The contract is in the help.
    let out = run(d, &["--help"]);
    let stdout = text(&out).0;
    assert!(stdout.contains("Exit codes: 0 success; 2 a usage or configuration error"), "{stdout}");
}

#[test]
fn unusable_plugin_outputs_are_errors_naming_the_plugin_not_panics() {
    for (network, training, said) in [
        (
            "toynet",
            "loss = \"per_window_loss\"",
            "loss `per_window_loss` returned: a tensor of shape [2], expected a scalar (0-dim or one element)",
        ),
        ("toynet", "loss = \"detached_loss\"", "loss `detached_loss` returned: a loss without gradient"),
        ("extra_class", "", "network `extra_class` forward on Cpu: returned a tensor of shape [2, 4, 16, 16, 16]"),
        ("flat_output", "", "network `flat_output` forward on Cpu: returned a tensor of shape [24576]"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = workspace_with(d, &[sdk_fixture("badoutput")], network, training);
        let out = run(d, &["train", "-c", config.to_str().unwrap()]);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(1), "{network} {training}: {stderr}");
        assert!(stderr.contains(said), "{network} {training}: {stderr}");
        assert!(!stderr.contains("panicked"), "{network} {training}: {stderr}");
    }
}

#[test]
fn csv_file_paths_are_relative_to_the_csv_and_quoted_paths_may_hold_commas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    cohort(&data, &["a", "b"]);
    std::fs::create_dir_all(data.join("with,comma")).unwrap();
    std::fs::rename(data.join("t1_b.nii"), data.join("with,comma/t1_b.nii")).unwrap();
    let lists = d.join("lists/deep");
    std::fs::create_dir_all(&lists).unwrap();
    // Relative to the CSV's folder; from the working directory (`elsewhere`) they would
    // name nothing.
    let images = lists.join("t1.csv");
    std::fs::write(&images, "subject_id,path\na, ../../data/t1_a.nii\n\"b\",\"../../data/with,comma/t1_b.nii\"\r\n")
        .unwrap();
    let labels = lists.join("labels.csv");
    std::fs::write(&labels, "a,../../data/tissue_a.nii\nb,../../data/tissue_b.nii\n").unwrap();
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let config = d.join("config.toml");
    let write_config = |images: &Path| {
        std::fs::write(
            &config,
            format!(
                "[system]\nmodel_dir = \"{m}\"\n[input.t1]\ncsv_file = \"{i}\"\n[input.label]\ncsv_file = \"{l}\"\n\
                 [segmentation]\nimage = [\"t1\"]\nlabel = \"label\"\nnum_classes = 3\n",
                m = d.join("model").display(),
                i = images.display(),
                l = labels.display()
            ),
        )
        .unwrap();
    };
    write_config(&images);
    let out = run(&elsewhere, &["check", "-c", config.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 subjects: every file readable"), "{stderr}");
    // `check` wrote the split file into model_dir, as it says.
    assert!(d.join("model/dataset_split.csv").is_file());
    let help = text(&run(d, &["check", "--help"])).0.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("it writes the split file"), "{help}");

    // An unquoted comma makes a third field: refused with the line.
    let bad = lists.join("bad.csv");
    std::fs::write(&bad, "a,../../data/t1_a.nii\nb,../../data/with,comma/t1_b.nii\n").unwrap();
    write_config(&bad);
    let out = run(&elsewhere, &["check", "-c", config.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.csv:2: expected 2 fields `subject_id,path`, got 3 (quote a path that holds a comma)"),
        "{stderr}"
    );
}
