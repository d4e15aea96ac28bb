//! `fuzz-reader`: a seeded mutation fuzzer of the NIfTI reader (header parser, `read_header`,
//! `read_raw` with `info`'s statistics, `read_volume`), written here because cargo-fuzz and a
//! nightly libFuzzer are not available offline.
//!
//! Each case takes a seed file (the conformance files and `tests/fuzz/corpus/`), applies a
//! few mutations (bit flips; header fields such as dim, datatype, bitpix, vox_offset,
//! pixdim, scl_*, qform/sform codes, quaternions and srow set to boundary values; truncation;
//! appended bytes; extension flag and sizes; gzip wrapping, truncation and corruption), writes
//! it to a file and reads it. Findings are saved to the findings folder and counted:
//! - a panic (caught with `catch_unwind`);
//! - a hang: a case running longer than `--case-seconds` (the run stops there);
//! - an allocation above the memory budget: while a case is read, this binary's global
//!   allocator refuses and counts any single allocation larger than `NIFTYHOST_MEMORY_BUDGET`
//!   (set to `--budget`), which the reader should have refused itself before asking;
//! - an abort (a process killed by an allocation failure): the case being run is kept in
//!   `<findings>/in-progress.*` and reported by the next run.
//!
//! ```text
//! fuzz-reader [--seed N] [--cases N | --seconds S] [--budget 64M] [--case-seconds S]
//!             [--corpus DIR]... [--findings DIR] [--work DIR]
//! ```
//! Prints a summary line `cases N panics P hangs H over-budget A aborted B` and exits 1
//! when any of them is not 0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use niftyhost::io::nifti::{self, read};
use niftyhost::rng::Stream;

/// The global allocator: the system's, refusing (and counting) any single allocation
/// above [`LIMIT`] bytes.
struct Counting;

/// Bytes one allocation may take (the budget given to the reader).
static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether a case is being read: only the reader's allocations are checked, not the
/// fuzzer's own (seeds, mutated copies).
static ARMED: AtomicBool = AtomicBool::new(false);
/// Allocations refused for being above [`LIMIT`].
static OVER: AtomicUsize = AtomicUsize::new(0);
/// The largest refused size.
static LARGEST: AtomicU64 = AtomicU64::new(0);

impl Counting {
    fn refuse(size: usize) -> bool {
        if ARMED.load(Ordering::Relaxed) && size as u64 > LIMIT.load(Ordering::Relaxed) {
            OVER.fetch_add(1, Ordering::Relaxed);
            LARGEST.fetch_max(size as u64, Ordering::Relaxed);
            return true;
        }
        false
    }
}

// SAFETY: every call is forwarded to `System` unchanged, or answered with null (a
// refused allocation, which GlobalAlloc allows).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Counting::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Counting::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Counting::refuse(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Options {
    seed: u64,
    cases: Option<u64>,
    seconds: Option<f64>,
    budget: String,
    case_seconds: f64,
    corpus: Vec<PathBuf>,
    findings: PathBuf,
    work: PathBuf,
}

fn options() -> Result<Options, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        seed: 1,
        cases: None,
        seconds: None,
        budget: "64M".to_owned(),
        case_seconds: 30.0,
        corpus: vec![],
        findings: root.join("fuzz/findings"),
        work: std::env::temp_dir().join(format!("fuzz-reader-{}", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: `{v}` is not a number"));
        match flag.as_str() {
            "--seed" => o.seed = value()?.parse().map_err(|_| "--seed: expected an integer".to_owned())?,
            "--cases" => o.cases = Some(number(value()?)? as u64),
            "--seconds" => o.seconds = Some(number(value()?)?),
            "--budget" => o.budget = value()?,
            "--case-seconds" => o.case_seconds = number(value()?)?,
            "--corpus" => o.corpus.push(PathBuf::from(value()?)),
            "--findings" => o.findings = PathBuf::from(value()?),
            "--work" => o.work = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!(
                    "fuzz-reader [--seed N] [--cases N | --seconds S] [--budget 64M] [--case-seconds S] \
                     [--corpus DIR]... [--findings DIR] [--work DIR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if o.corpus.is_empty() {
        o.corpus = vec![root.join("data/nifti/conformance"), root.join("fuzz/corpus")];
    }
    if o.cases.is_none() && o.seconds.is_none() {
        o.cases = Some(200);
    }
    Ok(o)
}

/// A seed or a case: the bytes of a single file, or of a `.hdr`/`.img` pair.
#[derive(Clone)]
struct Sample {
    name: String,
    /// The (decompressed) header file, or the whole single file.
    header: Vec<u8>,
    /// The (decompressed) voxel file of a pair.
    image: Option<Vec<u8>>,
    /// Whether the seed was gzipped.
    gzip: bool,
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut out = vec![];
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).ok()?;
    Some(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn load_seeds(dirs: &[PathBuf]) -> Result<Vec<Sample>, String> {
    let mut seeds = vec![];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
            let lower = name.to_ascii_lowercase();
            let is = |ext: &str| lower.ends_with(ext);
            if !(is(".nii") || is(".nii.gz") || is(".hdr") || is(".hdr.gz")) {
                continue;
            }
            let raw = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (header, gz) = match gunzip(&raw) {
                Some(d) => (d, true),
                None => (raw, false),
            };
            let image = if is(".hdr") || is(".hdr.gz") {
                let stem = &name[..name.len() - if gz { 7 } else { 4 }];
                let img = ["img", "img.gz"].iter().map(|e| dir.join(format!("{stem}.{e}"))).find(|p| p.exists());
                let Some(img) = img else { continue };
                let bytes = std::fs::read(&img).map_err(|e| format!("{}: {e}", img.display()))?;
                Some(gunzip(&bytes).unwrap_or(bytes))
            } else {
                None
            };
            seeds.push(Sample { name, header, image, gzip: gz });
        }
    }
    if seeds.is_empty() {
        return Err("no seed files (.nii, .nii.gz, .hdr/.img) found in the corpus folders".to_owned());
    }
    Ok(seeds)
}

/// How a header field is stored.
#[derive(Clone, Copy)]
enum Kind {
    I16,
    I32,
    I64,
    F32,
    F64,
}

/// Header fields of interest: (offset, kind, count), NIfTI-1/Analyze then NIfTI-2.
const FIELDS1: &[(usize, Kind, usize)] = &[
    (0, Kind::I32, 1),    // sizeof_hdr
    (40, Kind::I16, 8),   // dim
    (68, Kind::I16, 1),   // intent_code
    (70, Kind::I16, 1),   // datatype
    (72, Kind::I16, 1),   // bitpix
    (76, Kind::F32, 8),   // pixdim
    (108, Kind::F32, 1),  // vox_offset
    (112, Kind::F32, 2),  // scl_slope, scl_inter
    (252, Kind::I16, 2),  // qform_code, sform_code
    (256, Kind::F32, 6),  // quatern_b..qoffset_z
    (280, Kind::F32, 12), // srow_x, srow_y, srow_z
    (348, Kind::I32, 1),  // extension flag
    (352, Kind::I32, 2),  // first extension: esize, ecode
];
const FIELDS2: &[(usize, Kind, usize)] = &[
    (0, Kind::I32, 1),    // sizeof_hdr
    (12, Kind::I16, 2),   // datatype, bitpix
    (16, Kind::I64, 8),   // dim
    (104, Kind::F64, 8),  // pixdim
    (168, Kind::I64, 1),  // vox_offset
    (176, Kind::F64, 2),  // scl_slope, scl_inter
    (344, Kind::I32, 2),  // qform_code, sform_code
    (352, Kind::F64, 6),  // quatern_b..qoffset_z
    (400, Kind::F64, 12), // srow_x, srow_y, srow_z
    (504, Kind::I32, 1),  // intent_code
    (540, Kind::I32, 1),  // extension flag
    (544, Kind::I32, 2),  // first extension: esize, ecode
];

const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    4,
    5,
    7,
    8,
    16,
    32,
    64,
    128,
    255,
    256,
    348,
    352,
    540,
    544,
    511,
    512,
    768,
    1024,
    1280,
    1536,
    1792,
    2048,
    2304,
    65535,
    i16::MAX as i64,
    i16::MIN as i64,
    1 << 20,
    1 << 30,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 40,
    i64::MAX,
    i64::MIN,
];
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    351.0,
    352.0,
    353.0,
    540.0,
    544.0,
    352.5,
    1e-30,
    1e10,
    1e30,
    3.4e38,
    f64::MAX,
    f64::MIN_POSITIVE,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

fn pick<T: Copy>(rng: &mut Stream, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

/// The layout of a header block: NIfTI-2 or not, big-endian or not.
fn header_kind(h: &[u8]) -> (bool, bool) {
    let Some(first) = h.get(..4) else { return (false, false) };
    let le = i32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    let be = i32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    (le == 540 || be == 540, le != 348 && le != 540 && (be == 348 || be == 540))
}

fn set_field(rng: &mut Stream, h: &mut Vec<u8>) {
    let (two, big) = header_kind(h);
    let (at, kind, count) = pick(rng, if two { FIELDS2 } else { FIELDS1 });
    let width = match kind {
        Kind::I16 => 2,
        Kind::I32 | Kind::F32 => 4,
        Kind::I64 | Kind::F64 => 8,
    };
    let at = at + width * rng.below(count as u64) as usize;
    let int = pick(rng, INTS).wrapping_add(pick(rng, &[0, 0, 0, 1, -1]));
    let float = pick(rng, FLOATS);
    let bytes: Vec<u8> = match (kind, big) {
        (Kind::I16, false) => (int as i16).to_le_bytes().to_vec(),
        (Kind::I16, true) => (int as i16).to_be_bytes().to_vec(),
        (Kind::I32, false) => (int as i32).to_le_bytes().to_vec(),
        (Kind::I32, true) => (int as i32).to_be_bytes().to_vec(),
        (Kind::I64, false) => int.to_le_bytes().to_vec(),
        (Kind::I64, true) => int.to_be_bytes().to_vec(),
        (Kind::F32, false) => (float as f32).to_le_bytes().to_vec(),
        (Kind::F32, true) => (float as f32).to_be_bytes().to_vec(),
        (Kind::F64, false) => float.to_le_bytes().to_vec(),
        (Kind::F64, true) => float.to_be_bytes().to_vec(),
    };
    if h.len() < at + width {
        h.resize(at + width, 0);
    }
    h[at..at + width].copy_from_slice(&bytes);
}

/// An offset, mostly within the header and its extensions.
fn offset(rng: &mut Stream, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    if rng.below(4) > 0 {
        rng.below(len.min(700) as u64) as usize
    } else {
        rng.below(len as u64) as usize
    }
}

fn mutate_bytes(rng: &mut Stream, bytes: &mut Vec<u8>, header: bool) {
    match rng.below(if header { 7 } else { 3 }) {
        0 => {
            let at = offset(rng, bytes.len());
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => {
            let at =
                if rng.below(2) == 0 { offset(rng, bytes.len()) } else { rng.below(bytes.len() as u64 + 1) as usize };
            bytes.truncate(at);
        }
        2 => {
            let extra = rng.below(64) as usize;
            bytes.extend((0..extra).map(|_| rng.below(256) as u8));
        }
        3 | 4 | 5 => set_field(rng, bytes),
        _ => {
            // A byte pattern over a run (e.g. a whole dim or the magic).
            let at = offset(rng, bytes.len());
            let run = 1 + rng.below(16) as usize;
            let value = pick(rng, &[0u8, 0xff, 0x7f, 0x80, b'n', b'+']);
            for b in bytes.iter_mut().skip(at).take(run) {
                *b = value;
            }
        }
    }
}

/// Gzip framing of a case's file: as the seed, added or removed, then possibly corrupted.
fn encode(rng: &mut Stream, bytes: &[u8], seed_gzip: bool) -> Vec<u8> {
    let zip = if seed_gzip { rng.below(8) > 0 } else { rng.below(8) == 0 };
    if !zip {
        return bytes.to_vec();
    }
    let mut z = gzip(bytes);
    match rng.below(6) {
        0 => {
            let at = 10 + rng.below(z.len().saturating_sub(10) as u64 + 1) as usize;
            if let Some(b) = z.get_mut(at) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => {
            let cut = rng.below(z.len() as u64 + 1) as usize;
            z.truncate(cut);
        }
        2 => {
            // Trailer: CRC or length.
            let at = z.len().saturating_sub(1 + rng.below(8) as usize);
            if let Some(b) = z.get_mut(at) {
                *b = b.wrapping_add(1);
            }
        }
        3 => {
            // A second member, or garbage after the first.
            if rng.below(2) == 0 {
                z.extend(gzip(&bytes[..bytes.len().min(1000)]));
            } else {
                z.extend((0..rng.below(32)).map(|_| rng.below(256) as u8));
            }
        }
        _ => {}
    }
    z
}

/// A mutated case from a seed, as files to write: (name, bytes) of each.
fn make_case(rng: &mut Stream, seed: &Sample) -> Vec<(String, Vec<u8>)> {
    let mut case = seed.clone();
    let mutations = 1 + rng.below(4);
    for _ in 0..mutations {
        match (&mut case.image, rng.below(5)) {
            (Some(img), 0) => mutate_bytes(rng, img, false),
            _ => mutate_bytes(rng, &mut case.header, true),
        }
    }
    let header = encode(rng, &case.header, case.gzip);
    let gz = |b: &[u8]| b.starts_with(&[0x1f, 0x8b]);
    match &case.image {
        None => {
            // The name mostly tells the framing, not always.
            let named_gz = if rng.below(10) == 0 { !gz(&header) } else { gz(&header) };
            vec![(format!("case.nii{}", if named_gz { ".gz" } else { "" }), header)]
        }
        Some(img) => {
            let image = encode(rng, img, case.gzip);
            let h = format!("case.hdr{}", if gz(&header) { ".gz" } else { "" });
            let i = format!("case.img{}", if gz(&image) { ".gz" } else { "" });
            vec![(h, header), (i, image)]
        }
    }
}

/// Runs every reader entry point on the case written at `path` (`header` being the
/// decompressed header bytes); errors are expected, panics are findings.
fn exercise(path: &Path, header: &[u8]) -> usize {
    let mut outcomes = 0;
    let block = &header[..header.len().min(540)];
    if let Ok(h) = nifti::NiftiHeader::decode(block) {
        let _ = h.layout();
        let _ = h.scaling();
        let _ = nifti::best_affine(&h);
        outcomes += 1;
    }
    if let Ok(h) = read::read_header(path) {
        let _ = nifti::best_affine(&h);
        outcomes += 1;
    }
    if let Ok(raw) = read::read_raw(path, &|_| Ok(())) {
        let _ = niftyhost::io::info::FileInfo::of(path, &raw);
        outcomes += 1;
    }
    if nifti::read_channels(path).is_ok() {
        outcomes += 1;
    }
    if let Ok(v) = nifti::read_volume(path) {
        let _ = v.axcodes();
        outcomes += 1;
    }
    outcomes
}

#[derive(Default)]
struct Tally {
    cases: u64,
    panics: u64,
    hangs: u64,
    over_budget: u64,
    aborted: u64,
    read_ok: u64,
}

fn save(findings: &Path, kind: &str, n: u64, files: &[(String, Vec<u8>)], note: &str) {
    let _ = std::fs::create_dir_all(findings);
    for (name, bytes) in files {
        let _ = std::fs::write(findings.join(format!("{kind}-{n}-{name}")), bytes);
    }
    let _ = std::fs::write(findings.join(format!("{kind}-{n}.txt")), note);
    println!("finding: {kind} in case {n}: {note} (saved to {})", findings.display());
}

/// Files of the case in progress, kept until it ends (an abort leaves them).
const IN_PROGRESS: &str = "in-progress-";

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz-reader: {e}");
            std::process::exit(2);
        }
    };
    // The reader's budget, and the allocator's limit: the same bytes.
    std::env::set_var(niftyhost::budget::BUDGET_ENV, &o.budget);
    let budget = match niftyhost::budget::budget() {
        Ok(b) => b.bytes,
        Err(e) => {
            eprintln!("fuzz-reader: --budget: {e}");
            std::process::exit(2);
        }
    };
    let seeds = match load_seeds(&o.corpus) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fuzz-reader: {e}");
            std::process::exit(2);
        }
    };
    let mut tally = Tally::default();
    // A previous run that aborted left its case behind.
    if let Ok(entries) = std::fs::read_dir(&o.findings) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(IN_PROGRESS) {
                let kept = o.findings.join(format!("aborted-{rest}"));
                let _ = std::fs::rename(e.path(), &kept);
                println!("finding: a previous run aborted (the process died) on {}", kept.display());
                tally.aborted += 1;
            }
        }
    }
    let _ = std::fs::create_dir_all(&o.work);
    let _ = std::fs::create_dir_all(&o.findings);
    std::panic::set_hook(Box::new(|_| {}));
    LIMIT.store(budget, Ordering::Relaxed);

    let (to_worker, cases) = mpsc::channel::<(PathBuf, Vec<u8>)>();
    let (to_main, results) = mpsc::channel::<Result<usize, String>>();
    std::thread::spawn(move || {
        for (path, header) in cases {
            ARMED.store(true, Ordering::Relaxed);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| exercise(&path, &header)));
            ARMED.store(false, Ordering::Relaxed);
            let outcome = outcome.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned())
            });
            if to_main.send(outcome).is_err() {
                return;
            }
        }
    });

    let start = Instant::now();
    let mut rng = Stream::new(&[o.seed]);
    println!(
        "fuzz-reader: seed {} on {} seed files, budget {budget} bytes, per-case limit {} s",
        o.seed,
        seeds.len(),
        o.case_seconds
    );
    loop {
        if o.cases.is_some_and(|n| tally.cases >= n) || o.seconds.is_some_and(|s| start.elapsed().as_secs_f64() >= s) {
            break;
        }
        let n = tally.cases;
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut files = make_case(&mut rng, seed);
        let _ = std::fs::remove_dir_all(&o.work);
        let _ = std::fs::create_dir_all(&o.work);
        for (name, bytes) in &files {
            let _ = std::fs::write(o.findings.join(format!("{IN_PROGRESS}{name}")), bytes);
            if std::fs::write(o.work.join(name), bytes).is_err() {
                eprintln!("fuzz-reader: cannot write to {}", o.work.display());
                std::process::exit(2);
            }
        }
        let decompressed = gunzip(&files[0].1).unwrap_or_else(|| files[0].1.clone());
        let over_before = OVER.load(Ordering::Relaxed);
        let path = o.work.join(&files[0].0);
        // A pair is read from either half.
        let path = if files.len() == 2 && rng.below(2) == 0 { o.work.join(&files[1].0) } else { path };
        to_worker.send((path, decompressed)).expect("the worker runs until the end");
        let note = format!("seed {}", seed.name);
        match results.recv_timeout(Duration::from_secs_f64(o.case_seconds)) {
            Ok(Ok(read)) => tally.read_ok += u64::from(read > 0),
            Ok(Err(message)) => {
                tally.panics += 1;
                save(&o.findings, "panic", n, &files, &format!("{note}: {message}"));
            }
            Err(_) => {
                tally.hangs += 1;
                save(&o.findings, "hang", n, &files, &format!("{note}: still running after {} s", o.case_seconds));
                tally.cases += 1;
                files.clear();
            }
        }
        let over = OVER.load(Ordering::Relaxed) - over_before;
        if over > 0 {
            tally.over_budget += 1;
            let largest = LARGEST.load(Ordering::Relaxed);
            save(&o.findings, "over-budget", n, &files, &format!("{note}: {over} allocations, up to {largest} bytes"));
        }
        for e in std::fs::read_dir(&o.findings).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(IN_PROGRESS) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if files.is_empty() {
            break; // A hang: the worker is stuck.
        }
        tally.cases += 1;
    }
    let _ = std::fs::remove_dir_all(&o.work);
    println!(
        "cases {} panics {} hangs {} over-budget {} aborted {} (read without error by some entry point: {}) in {:.1} s",
        tally.cases,
        tally.panics,
        tally.hangs,
        tally.over_budget,
        tally.aborted,
        tally.read_ok,
        start.elapsed().as_secs_f64()
    );
    let failed = tally.panics + tally.hangs + tally.over_budget + tally.aborted;
    std::process::exit(i32::from(failed > 0));
}
