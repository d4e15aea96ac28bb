//! How fast `niftyhost` decodes a NIfTI file: best and median of several reads, for the
//! raw bytes (inflate only), the `f32` volume the trainer uses and the `f64` image.
//!
//! ```sh
//! cargo run --release -p niftyhost --example decode_speed -- [FILE] [REPEATS]
//! ```
//!
//! FILE defaults to the bundled 1 mm MNI152 T1 (`data/mni152_1mm/t1_1mm.nii.gz`),
//! REPEATS to 30.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use niftyhost::io::nifti::{read, read_image, read_volume};

fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut times = Vec::with_capacity(repeats);
    let mut last = f(); // warm-up: page cache, allocator
    for _ in 0..repeats {
        let started = Instant::now();
        last = f();
        times.push(started.elapsed());
    }
    times.sort();
    (times[0], times[times.len() / 2], last)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mni152_1mm/t1_1mm.nii.gz"));
    let repeats: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(30).max(1);
    let compressed = std::fs::metadata(&file)?.len() as f64;

    let (best, median, raw) = time(repeats, || read::read_raw(&file, &|_| Ok(())));
    let raw = raw?;
    let bytes = raw.bytes.len() as f64;
    println!(
        "{}: {} {} voxels, {:.1} MB on disk, {:.1} MB of voxel data",
        file.display(),
        raw.layout.shape.iter().map(ToString::to_string).collect::<Vec<_>>().join("x"),
        raw.layout.datatype,
        compressed / 1e6,
        bytes / 1e6
    );
    let report = |what: &str, best: Duration, median: Duration| {
        println!(
            "{what:<28} best {:7.2} ms  median {:7.2} ms  {:7.1} MB/s decoded  {:6.1} MB/s compressed",
            best.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            bytes / best.as_secs_f64() / 1e6,
            compressed / best.as_secs_f64() / 1e6
        );
    };
    report("raw bytes (inflate + CRC)", best, median);
    let (best, median, _) =
        time(repeats, || read::decode_f32(&raw.bytes, raw.layout.datatype, raw.header.endian, raw.scaling));
    report("  bytes -> f32 alone", best, median);
    let (best, median, v) = time(repeats, || read_volume(&file));
    v?;
    report("read_volume (f32)", best, median);
    let (best, median, i) = time(repeats, || read_image(&file));
    i?;
    report("read_image (f64)", best, median);
    Ok(())
}
