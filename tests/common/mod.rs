//! Helpers of the integration tests: where the built binary and plugins are, building
//! fixture plugins outside the host's build, and running the CLI.

pub mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The cargo target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// The profile folder the tests were built in (`target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_path_buf()
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`, or scripts/test.sh)",
        path.display()
    );
    path
}

/// The `niftyhost` binary of this build.
pub fn niftyhost_bin() -> PathBuf {
    built(profile_dir().join("niftyhost"))
}

/// A plugin library of this workspace's build (`unet3d`, `toynet`, `seglosses`).
pub fn workspace_plugin(name: &str) -> PathBuf {
    built(profile_dir().join(format!("lib{name}.so")))
}

/// A folder holding copies of the given plugin files.
pub fn plugin_dir(dir: &Path, plugins: &[PathBuf]) -> PathBuf {
    let out = dir.join("plugins");
    std::fs::create_dir_all(&out).unwrap();
    for p in plugins {
        std::fs::copy(p, out.join(p.file_name().unwrap())).unwrap();
    }
    out
}

/// Runs `niftyhost` in `cwd` with no plugin path from the environment.
pub fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(niftyhost_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("RUST_LOG", "info")
        .output()
        .expect("niftyhost runs")
}

/// stdout and stderr of a run as text.
pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Writes the bundled 2 mm tissue task config into `dir` (data paths absolute).
pub fn tissue_config(dir: &Path, network: &str, extra: &str) -> PathBuf {
    cohort_config(dir, &repo_root().join("data/mni152"), network, extra)
}

/// Writes the tissue task config into `dir` for the subjects of `data`: images
/// `t1_<id>.nii.gz`, labels `tissue_<id>.nii.gz` (see [`tissue_cohort`]).
pub fn cohort_config(dir: &Path, data: &Path, network: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[system]
seed = 3
model_dir = "{model}"
loader_threads = 2

[input.t1]
path_to_search = "{data}"
filename_contains = ["t1_"]

[input.label]
path_to_search = "{data}"
filename_contains = ["tissue_"]

[segmentation]
image = ["t1"]
label = "label"
num_classes = 3

[network]
name = "{network}"
{extra}
"#,
        model = dir.join("model").display(),
        data = data.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `ids.len()` distinct, small subjects into `data`: the bundled 2 mm T1 and tissue
/// labels rolled along `i` by 7 voxels more for each subject, then cut to the corner block
/// `[64, 72, 56]` (from voxel 0, so the affine still holds), as `t1_<id>.nii.gz` and
/// `tissue_<id>.nii.gz`.
pub fn tissue_cohort(data: &Path, ids: &[&str]) {
    use niftyhost::io::nifti::{write_image, WriteOptions};
    const BLOCK: [usize; 3] = [64, 72, 56];
    std::fs::create_dir_all(data).unwrap();
    let source = repo_root().join("data/mni152");
    let t1 = niftyhost::io::read_volume(&source.join("t1_2mm.nii.gz")).unwrap();
    let tissue = niftyhost::io::read_volume(&source.join("tissue_2mm.nii.gz")).unwrap();
    let [di, dj, _] = t1.dims;
    let block = |values: &[f32], roll: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(BLOCK.iter().product());
        for k in 0..BLOCK[2] {
            for j in 0..BLOCK[1] {
                out.extend((0..BLOCK[0]).map(|i| values[(i + roll) % di + di * (j + dj * k)]));
            }
        }
        out
    };
    for (n, id) in ids.iter().enumerate() {
        let image = block(&t1.data, 7 * n);
        write_image(&data.join(format!("t1_{id}.nii.gz")), &t1.header, BLOCK, 1, &image, &WriteOptions::default())
            .unwrap();
        let labels: Vec<u8> = block(&tissue.data, 7 * n).iter().map(|&v| v as u8).collect();
        niftyhost::io::write_labels(&data.join(format!("tissue_{id}.nii.gz")), &tissue.header, BLOCK, &labels).unwrap();
    }
}

/// `(iteration, loss)` of every line of a training run's `train_log.jsonl`.
pub fn logged_losses(log: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["iteration"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// A 1-channel volume of `dims` (i, j, k) on an identity grid, image `[k, j, i]`.
pub fn identity_volume(dims: [usize; 3], image: Vec<f32>) -> niftyhost::data::SubjectVolumes {
    use niftyhost::data::prepare::{Geometry, GeometryOptions};
    use niftyhost::preprocess::{Grid, IDENTITY};
    let options = GeometryOptions {
        axcodes: None,
        pixdim: None,
        padding: [0, 0, 0],
        padding_mode: niftyhost::config::PaddingMode::Constant,
    };
    let geometry = Geometry::plan(Grid::new(dims, IDENTITY).unwrap(), &options).unwrap();
    let reference = niftyhost::io::Volume {
        data: Vec::new(),
        dims,
        channels: 1,
        header: niftyhost::io::nifti::reference_for_affine(&IDENTITY),
        affine: IDENTITY,
        pixdim: [1.0; 3],
        path: "in.nii".into(),
    };
    niftyhost::data::SubjectVolumes {
        id: "s".into(),
        image,
        channels: 1,
        dims,
        label: None,
        weights: None,
        loss_weight: None,
        reference,
        geometry,
    }
}
