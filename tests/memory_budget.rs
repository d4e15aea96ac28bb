//! Volume-sized allocations are fallible and checked against the memory budget (issue 19):
//! `info` keeps voxels in their stored type and computes its statistics without a float
//! copy, with the float path's exact results; a volume over the budget (an address-space
//! limit, `NIFTYHOST_MEMORY_BUDGET`, a gzip stream that inflates past it) is an error naming
//! the file, the size and the budget, never an abort.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use niftyhost::io::info::{FileInfo, Stats};
use niftyhost::io::nifti::read::read_raw;
use niftyhost::io::nifti::{read_image, write_image, NiftiHeader, Voxel, WriteOptions};
use niftyhost_tests::{niftyhost_bin, repo_root};

/// Same statistics, bit for bit (NaN equal to NaN).
fn assert_same(a: &Stats, b: &Stats, what: &str) {
    let bits = |s: &Stats| [s.min, s.max, s.mean, s.std, s.sum].map(f64::to_bits);
    assert_eq!(bits(a), bits(b), "{what}: {a:?} vs {b:?}");
    assert_eq!((a.voxels, a.nan_count, a.nonzero_count), (b.voxels, b.nan_count, b.nonzero_count), "{what}");
}

/// `info`'s statistics (stored type) and those of the `f64` volume (`read_image`).
fn both_ways(path: &Path) -> (Stats, Stats) {
    let stored = FileInfo::of(path, &read_raw(path, &|_| Ok(())).unwrap()).stats;
    let float = Stats::of(&read_image(path).unwrap().data);
    (stored, float)
}

#[test]
fn info_statistics_from_the_stored_type_equal_the_float_path_on_conformance_files() {
    let dir = repo_root().join("tests/data/nifti/conformance");
    let mut types = std::collections::BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".img") {
            continue; // Read through its .hdr.
        }
        let (stored, float) = both_ways(&path);
        assert_same(&stored, &float, &name);
        types.insert(read_raw(&path, &|_| Ok(())).unwrap().layout.datatype.name());
        files += 1;
    }
    assert!(files >= 20, "{files} conformance files");
    assert!(types.len() >= 4, "{types:?}");
}

fn write_typed<T: Voxel>(dir: &Path, values: &[T], options: &WriteOptions) -> PathBuf {
    let path = dir.join(format!("{}-{}.nii.gz", T::DATATYPE.name(), options.scl_slope));
    let reference = NiftiHeader { dim: [3, 5, 4, 3, 1, 1, 1, 1], ..NiftiHeader::default() };
    write_image(&path, &reference, [5, 4, 3], 1, values, options).unwrap();
    path
}

#[test]
fn info_statistics_from_the_stored_type_equal_the_float_path_for_every_datatype() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ramp = |i: usize| i as f64 * 7.3 - 100.0;
    let scalings =
        [WriteOptions::default(), WriteOptions { scl_slope: 0.37, scl_inter: -5.5, ..WriteOptions::default() }];
    for options in &scalings {
        let mut paths = vec![
            write_typed(d, &(0..60).map(|i| (i * 4) as u8).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| i as i8 - 30).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| (i * 1000) as u16).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| (i * 500) as i16 - 15000).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60u32).map(|i| i * 70_000_000).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| i as i32 * 30_000_000 - 900_000_000).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| (i as u64) << 50).collect::<Vec<_>>(), options),
            write_typed(d, &(0..60).map(|i| (i as i64 - 30) << 52).collect::<Vec<_>>(), options),
        ];
        // Floats with NaN and infinities, which the statistics count apart.
        let mut f: Vec<f32> = (0..60).map(|i| ramp(i) as f32).collect();
        f[3] = f32::NAN;
        f[7] = f32::INFINITY;
        paths.push(write_typed(d, &f, options));
        let mut g: Vec<f64> = (0..60).map(|i| ramp(i) / 3.0).collect();
        g[11] = f64::NEG_INFINITY;
        paths.push(write_typed(d, &g, options));
        for path in paths {
            let (stored, float) = both_ways(&path);
            assert_same(&stored, &float, &path.display().to_string());
            assert_eq!(stored.voxels, 60);
        }
    }
}

/// A single-file NIfTI-1 uint8 header of `dims`, voxels from byte 352.
fn uint8_header(dims: [i16; 3]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3, dims[0], dims[1], dims[2], 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&2i16.to_le_bytes());
    h[72..74].copy_from_slice(&8i16.to_le_bytes());
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// A sparse `.nii` of `dims` uint8 voxels, zero but for `marks` (voxel index, value).
fn sparse_uint8(path: &Path, dims: [i16; 3], marks: &[(u64, u8)]) {
    use std::io::{Seek, SeekFrom};
    let mut f = File::create(path).unwrap();
    f.write_all(&uint8_header(dims)).unwrap();
    let voxels: u64 = dims.iter().map(|&d| d as u64).product();
    f.set_len(352 + voxels).unwrap();
    for &(at, v) in marks {
        f.seek(SeekFrom::Start(352 + at)).unwrap();
        f.write_all(&[v]).unwrap();
    }
}

fn info_under(limit: Option<u64>, budget: Option<&str>, file: &Path) -> Output {
    let mut cmd = match limit {
        Some(l) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={l}")).arg(niftyhost_bin());
            c
        }
        None => Command::new(niftyhost_bin()),
    };
    cmd.args(["info", "--json"]).arg(file).env_remove("NIFTYHOST_MEMORY_BUDGET");
    if let Some(b) = budget {
        cmd.env("NIFTYHOST_MEMORY_BUDGET", b);
    }
    cmd.output().expect("niftyhost runs")
}

/// The budget an over-budget error states.
fn stated_budget(stderr: &str) -> u64 {
    let rest = stderr.split("memory budget of ").nth(1).unwrap_or_else(|| panic!("no budget in: {stderr}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn info_under_an_address_space_limit_fails_cleanly_or_succeeds_without_a_float_copy() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        println!("skipped: prlimit (util-linux) is not installed, so no address-space limit can be set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 4 GiB of uint8 voxels (sparse on disk) under a 1 GiB address space: refused before
    // allocating, naming the file, the size and the budget.
    let huge = dir.path().join("huge.nii");
    sparse_uint8(&huge, [2048, 2048, 1024], &[]);
    let limit = 1u64 << 30;
    let out = info_under(Some(limit), None, &huge);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "no abort, exit 1: {stderr}");
    assert!(stderr.contains("huge.nii") && stderr.contains("4294967296 bytes"), "{stderr}");
    assert!(stderr.contains("RLIMIT_AS"), "{stderr}");
    // The process's own mappings (libraries, stacks) come off the limit.
    let base = limit - stated_budget(&stderr);
    assert!(base < limit / 2, "{stderr}");

    // 64 MiB of uint8 voxels with 192 MiB of address space to spare: the float32 copy
    // (256 MiB) would not fit, the stored bytes do.
    let big = dir.path().join("big.nii");
    let voxels = 512u64 * 512 * 256;
    sparse_uint8(&big, [512, 512, 256], &[(0, 9), (voxels / 2, 200), (voxels - 1, 3)]);
    let out = info_under(Some(base + (192 << 20)), None, &big);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let stats = &json[0]["stats"];
    assert_eq!(stats["voxels"], voxels);
    assert_eq!(
        (stats["min"].as_f64(), stats["max"].as_f64(), stats["sum"].as_f64()),
        (Some(0.0), Some(200.0), Some(212.0))
    );
    assert_eq!(stats["nonzero_count"], 3);
}

#[test]
fn a_gzip_stream_inflating_past_the_budget_is_refused_naming_file_size_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB of zeros compress to ~16 KB: the header's claim is checked against the
    // budget before anything is inflated or allocated.
    let bomb = dir.path().join("bomb.nii.gz");
    let mut z = flate2::write::GzEncoder::new(File::create(&bomb).unwrap(), flate2::Compression::fast());
    z.write_all(&uint8_header([256, 256, 256])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..16 {
        z.write_all(&zeros).unwrap();
    }
    z.finish().unwrap();
    let out = info_under(None, Some("8M"), &bomb);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bomb.nii.gz") && stderr.contains("16777216 bytes"), "{stderr}");
    assert!(
        stderr.contains("memory budget of 8388608 bytes") && stderr.contains("NIFTYHOST_MEMORY_BUDGET"),
        "{stderr}"
    );
    // Within the budget it reads.
    let out = info_under(None, Some("20M"), &bomb);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A budget that is no size is an error naming the variable.
    let out = info_under(None, Some("lots"), &bomb);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NIFTYHOST_MEMORY_BUDGET is `lots`"), "{stderr}");
}

/// The bundled 2 mm tissue task (3 classes) with `sampling` windows, written into `dir`.
fn tissue_settings(dir: &Path, sampling: &str) -> niftyhost::config::Settings {
    let extra = format!("batch_size = 2\nspatial_window_size = [16, 16, 16]\nwindow_sampling = \"{sampling}\"\n");
    let path = niftyhost_tests::tissue_config(dir, "toynet", &extra);
    niftyhost::config::load(Some(&path), &niftyhost::config::Overrides::default()).unwrap()
}

#[test]
fn the_training_cache_holds_labels_as_one_byte_per_voxel_and_a_small_class_index() {
    use niftyhost::data::cache::CacheSize;
    use niftyhost::data::phases::training_subjects;
    use niftyhost::data::prepare::Preparation;
    use niftyhost::data::{load_subject, LabelVolume, LoadOptions, Prepared};
    use niftyhost::io::read_volume;
    let dir = tempfile::tempdir().unwrap();
    for sampling in ["balanced", "foreground", "uniform"] {
        let settings = tissue_settings(dir.path(), sampling);
        let subjects = training_subjects(&settings, Path::new(".")).unwrap().train;
        let options = LoadOptions::new(&settings, Preparation::learn_or_load(&settings, &subjects).unwrap());
        let volumes = load_subject(&subjects[0], &options).unwrap();
        let voxels: usize = volumes.dims.iter().product();
        // The classes as stored in the file, one byte each in the cache.
        let stored = read_volume(subjects[0].label.as_ref().unwrap()).unwrap().data;
        let expected: Vec<u8> = stored.iter().map(|&v| v as u8).collect();
        assert_eq!(volumes.label, Some(LabelVolume::U8(expected)), "{sampling}");
        let image_bytes = 4 * volumes.image.len();
        let cached = Prepared::new(volumes, settings.network.window_sampling, 3).unwrap().bytes();
        // Before: labels as int16 (2 bytes a voxel) and, for balanced and foreground
        // sampling, a 4-byte index per indexed voxel.
        assert!(cached >= image_bytes + voxels, "{sampling}: {cached} bytes");
        assert!(cached <= image_bytes + voxels + voxels / 100, "{sampling}: {cached} bytes for {voxels} voxels");
    }
}

#[test]
fn a_training_start_over_the_memory_budget_is_refused_naming_the_file_size_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        niftyhost_tests::tissue_config(dir.path(), "toynet", "batch_size = 2\nspatial_window_size = [16, 16, 16]\n");
    let plugins = [niftyhost_tests::workspace_plugin("toynet"), niftyhost_tests::workspace_plugin("seglosses")];
    niftyhost_tests::plugin_dir(dir.path(), &plugins);
    let out = Command::new(niftyhost_bin())
        .args(["train", "-c"])
        .arg(&config)
        .args(["--set", "training.max_iter=1"])
        .current_dir(dir.path())
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("NIFTYHOST_MEMORY_BUDGET", "1M")
        .output()
        .expect("niftyhost runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no abort, exit 1: {stderr}");
    // The 2 mm labels are 99 x 117 x 95 uint8 voxels: 4401540 bytes as float32.
    assert!(stderr.contains("tissue_2mm.nii.gz") && stderr.contains("4401540 bytes"), "{stderr}");
    assert!(
        stderr.contains("memory budget of 1048576 bytes") && stderr.contains("NIFTYHOST_MEMORY_BUDGET"),
        "{stderr}"
    );
}
