//! NIfTI reader conformance against what nibabel 5.4.2 reads (every record of
//! `tests/data/nifti/ground_truth.json`: the conformance files beside it and the bundled
//! MNI152 volumes), the same voxels from every container, and bad
//! inputs generated here: each must be an error naming the file and what was expected,
//! never a panic or a huge allocation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use niftyhost::io::nifti::{
    axcodes_string, read_header, read_image, read_volume, DataType, Endian, Image, IoError, NiftiHeader,
};
use niftyhost_tests::repo_root;
use serde_json::Value;

/// The conformance files and their ground truth, in the repository.
fn data_dir() -> PathBuf {
    repo_root().join("tests/data/nifti")
}

/// A ground-truth record's file: `conformance/…` beside the ground truth, `mni152/…` in
/// the example data (`data/mni152`, or `data/mni152_1mm` for the 1 mm volumes).
fn data_file(file: &str) -> PathBuf {
    match file.strip_prefix("mni152/") {
        Some(name) => {
            let two_mm = repo_root().join("data/mni152").join(name);
            if two_mm.is_file() {
                two_mm
            } else {
                repo_root().join("data/mni152_1mm").join(name)
            }
        }
        None => data_dir().join(file),
    }
}

fn records() -> Vec<Value> {
    let path = data_dir().join("ground_truth.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["files"].as_array().expect("ground_truth.json has a files array").clone()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::Null => f64::NAN,
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

/// Tolerance of values that should be identical: serde_json (without its
/// `float_roundtrip` feature) may parse the last digit of a float64 one unit off.
const EXACT: f64 = 4.0 * f64::EPSILON;

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= rel * want.abs().max(1e-300)
}

/// numpy's dtype string of a data type (`i2`, `u1`, `f4`, …).
fn numpy_code(t: DataType) -> &'static str {
    match t {
        DataType::U8 => "u1",
        DataType::I8 => "i1",
        DataType::U16 => "u2",
        DataType::I16 => "i2",
        DataType::U32 => "u4",
        DataType::I32 => "i4",
        DataType::U64 => "u8",
        DataType::I64 => "i8",
        DataType::F32 => "f4",
        DataType::F64 => "f8",
    }
}

/// Statistics as `make_data.py` computes them from nibabel's `get_fdata()`.
struct Stats {
    sum: f64,
    mean: f64,
    min: f64,
    max: f64,
    std: f64,
    nan_count: usize,
    nonzero: usize,
    ijk: [f64; 3],
}

fn stats(values: impl Iterator<Item = f64> + Clone, shape: &[usize]) -> Stats {
    let (mut sum, mut n, mut nan_count, mut nonzero) = (0.0, 0usize, 0usize, 0usize);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ijk = [0.0; 3];
    let plane = shape[0] * shape.get(1).unwrap_or(&1);
    let volume = plane * shape.get(2).unwrap_or(&1);
    for (at, v) in values.clone().enumerate() {
        if !v.is_finite() {
            nan_count += 1;
            continue;
        }
        sum += v;
        n += 1;
        min = min.min(v);
        max = max.max(v);
        if v != 0.0 {
            nonzero += 1;
        }
        let within = at % volume;
        let (i, j, k) = (within % shape[0], (within / shape[0]) % shape.get(1).unwrap_or(&1), within / plane);
        ijk[0] += v * i as f64;
        ijk[1] += v * j as f64;
        ijk[2] += v * k as f64;
    }
    let mean = sum / n as f64;
    let var = values.filter(|v| v.is_finite()).map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    Stats { sum, mean, min, max, std: var.sqrt(), nan_count, nonzero, ijk }
}

/// Compares one record with what we read; returns every disagreement.
fn check_record(rec: &Value) -> Vec<String> {
    let file = rec["file"].as_str().unwrap();
    let path = data_file(file);
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    let image = match read_image(&path) {
        Ok(i) => i,
        Err(e) => return vec![format!("read_image failed: {e}")],
    };
    match read_header(&path) {
        Ok(h) => expect(h == image.header, "read_header differs from the header read with the voxels".to_owned()),
        Err(e) => expect(false, format!("read_header failed: {e}")),
    }
    let shape: Vec<usize> = rec["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    expect(image.shape == shape, format!("shape {:?}, nibabel {shape:?}", image.shape));

    // On-disk type and byte order.
    let dtype = rec["disk_dtype_str"].as_str().unwrap();
    expect(
        &dtype[1..] == numpy_code(image.datatype),
        format!("datatype {} ({}), nibabel {dtype}", image.datatype, numpy_code(image.datatype)),
    );
    let endian_ok = match &dtype[..1] {
        ">" => image.header.endian == Endian::Big,
        "<" => image.header.endian == Endian::Little,
        _ => true,
    };
    expect(endian_ok, format!("byte order {:?}, nibabel {dtype}", image.header.endian));

    // Scaling.
    let (slope, inter) = image.scaling.unwrap_or((1.0, 0.0));
    expect(close(slope, num(&rec["slope"]), 1e-12), format!("slope {slope}, nibabel {}", rec["slope"]));
    expect(close(inter, num(&rec["inter"]), 1e-12), format!("inter {inter}, nibabel {}", rec["inter"]));

    // Geometry.
    let want: Vec<Vec<f64>> =
        rec["affine"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(num).collect()).collect();
    let affine_ok = (0..4).all(|r| (0..4).all(|c| (image.affine[r][c] - want[r][c]).abs() <= 1e-5));
    expect(affine_ok, format!("affine {:?} ({}), nibabel {want:?}", image.affine, image.affine_source));
    let zooms: Vec<f64> = rec["zooms"].as_array().unwrap().iter().map(num).collect();
    let ours: Vec<f64> = image.header.pixdim[1..=zooms.len()].to_vec();
    expect(ours.iter().zip(&zooms).all(|(a, b)| close(*a, *b, 1e-7)), format!("zooms {ours:?}, nibabel {zooms:?}"));
    let axcodes: String = rec["axcodes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap_or("?")).collect();
    expect(
        axcodes_string(&image.affine) == axcodes,
        format!("axcodes {}, nibabel {axcodes}", axcodes_string(&image.affine)),
    );
    for (key, code) in [("qform_code", image.header.qform_code), ("sform_code", image.header.sform_code)] {
        if let Some(want) = rec.get(key).and_then(Value::as_i64) {
            expect(i64::from(code) == want, format!("{key} {code}, nibabel {want}"));
        }
    }

    // Values (f64 read: exact up to summation order).
    let fdata = &rec["fdata"];
    let s = stats(image.data.iter().copied(), &image.shape);
    for (name, got, rel) in [
        ("sum", s.sum, 1e-9),
        ("mean", s.mean, 1e-9),
        ("min", s.min, EXACT),
        ("max", s.max, EXACT),
        ("std", s.std, 1e-7),
    ] {
        let want = num(&fdata[name]);
        expect(close(got, want, rel), format!("fdata {name} {got}, nibabel {want}"));
    }
    let counts = (fdata["nan_count"].as_u64().unwrap() as usize, fdata["nonzero_count"].as_u64().unwrap() as usize);
    expect(
        (s.nan_count, s.nonzero) == counts,
        format!("nan/nonzero counts {:?}, nibabel {counts:?}", (s.nan_count, s.nonzero)),
    );
    let wsums: Vec<f64> = rec["index_weighted_sums_ijk"].as_array().unwrap().iter().map(num).collect();
    expect(
        (0..3).all(|a| close(s.ijk[a], wsums[a], 1e-9)),
        format!("index-weighted sums {:?}, nibabel {wsums:?}", s.ijk),
    );
    let strides: Vec<usize> = shape.iter().scan(1, |acc, &d| Some(std::mem::replace(acc, *acc * d))).collect();
    for probe in rec["probes"].as_array().unwrap() {
        let index: Vec<usize> =
            probe["index"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        let want = num(&probe["value"]);
        let got = image.data[at];
        expect(close(got, want, EXACT), format!("value at {index:?}: {got}, nibabel {want}"));
    }

    // The f32 volume read used by training: same shape, affine, voxel size, values.
    match read_volume(&path) {
        Err(e) => bad.push(format!("read_volume failed: {e}")),
        Ok(v) => {
            let mut vshape = v.dims.to_vec();
            if shape.len() > 3 {
                vshape.push(v.channels);
            }
            expect(vshape[..] == shape[..shape.len().min(4)], format!("volume dims {vshape:?}, nibabel {shape:?}"));
            expect(v.affine == image.affine, "volume affine differs from the f64 read".to_owned());
            expect(v.pixdim[..] == image.header.pixdim[1..4], format!("volume pixdim {:?}", v.pixdim));
            let vs = stats(v.data.iter().map(|&x| f64::from(x)), &shape);
            let want = num(&fdata["sum"]);
            expect(close(vs.sum, want, 1e-6), format!("f32 volume sum {}, nibabel {want}", vs.sum));
            expect(vs.nan_count == counts.0, format!("f32 volume NaNs {}", vs.nan_count));
            let exact = image.data.iter().zip(&v.data).all(|(&a, &b)| (a.is_nan() && b.is_nan()) || a as f32 == b);
            expect(exact, "f32 volume is not the f64 read rounded to f32".to_owned());
        }
    }
    bad
}

#[test]
fn every_ground_truth_record_reads_as_nibabel_reads_it() {
    let records = records();
    assert_eq!(records.len(), 27, "tests/data/nifti/ground_truth.json lists 27 files");
    let mut failures = Vec::new();
    for rec in &records {
        let problems = check_record(rec);
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", rec["file"].as_str().unwrap(), problems.join("\n  ")));
        }
    }
    eprintln!("{}/{} ground-truth records conform", records.len() - failures.len(), records.len());
    assert!(
        failures.is_empty(),
        "{} of {} records differ from nibabel:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n")
    );
}

#[test]
fn every_container_of_the_same_data_gives_identical_voxels() {
    // Group records by what nibabel says about their values.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rec in records() {
        let key = format!("{} {} {}", rec["shape"], rec["fdata"]["sum"], rec["index_weighted_sums_ijk"]);
        groups.entry(key).or_default().push(rec["file"].as_str().unwrap().to_owned());
    }
    let shared: Vec<&Vec<String>> = groups.values().filter(|g| g.len() > 1).collect();
    let anatomical = shared.iter().find(|g| g.iter().any(|f| f.ends_with("nibabel_anatomical.nii"))).unwrap();
    for f in [
        "nipy_anatomical.nii.gz",
        "derived_pair_anatomical.hdr",
        "derived_qform_sform_differ.nii",
        "derived_analyze_anatomical.hdr",
    ] {
        assert!(anatomical.iter().any(|g| g.ends_with(f)), "{f} not grouped with anatomical.nii: {anatomical:?}");
    }
    for group in shared {
        let images: Vec<Image> = group.iter().map(|f| read_image(&data_file(f)).unwrap()).collect();
        for (f, image) in group.iter().zip(&images).skip(1) {
            assert!(
                image.data.iter().zip(&images[0].data).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())),
                "{f} and {} hold different voxels",
                group[0]
            );
        }
        eprintln!("identical voxels: {}", group.join(", "));
    }
}

#[test]
fn float64_files_keep_their_precision() {
    let path = data_dir().join("conformance/dipy_ascm_out_test.nii.gz");
    let image = read_image(&path).unwrap();
    assert_eq!(image.datatype, DataType::F64);
    // Some values are not representable as f32: the f64 read must not round them.
    assert!(image.data.iter().any(|&v| f64::from(v as f32) != v));
}

#[test]
fn gzipped_header_image_pairs_read_like_the_plain_pair() {
    let src = data_dir().join("conformance");
    let dir = tempfile::tempdir().unwrap();
    for ext in ["hdr", "img"] {
        let bytes = std::fs::read(src.join(format!("derived_pair_anatomical.{ext}"))).unwrap();
        std::fs::write(dir.path().join(format!("pair.{ext}.gz")), gzip(&bytes)).unwrap();
    }
    let plain = read_image(&src.join("derived_pair_anatomical.hdr")).unwrap();
    for name in ["pair.hdr.gz", "pair.img.gz"] {
        let gz = read_image(&dir.path().join(name)).unwrap();
        assert_eq!(
            (gz.shape.clone(), gz.affine, gz.data.clone()),
            (plain.shape.clone(), plain.affine, plain.data.clone())
        );
        assert!(gz.gzip && gz.files.is_pair());
    }
}

/// Writing in the geometry of every conformance file and reading back gives the same
/// values and affine, with sform and qform agreeing wherever the affine has no shear.
#[test]
fn outputs_written_in_each_reference_geometry_read_back_identically() {
    use niftyhost::io::nifti::affine::{qform, sform};
    use niftyhost::io::nifti::{write_image, WriteOptions};
    let out = tempfile::tempdir().unwrap();
    for rec in records() {
        let file = rec["file"].as_str().unwrap();
        let Ok(v) = read_volume(&data_file(file)) else { continue };
        for name in ["out.nii", "out.nii.gz"] {
            let path = out.path().join(name);
            write_image(&path, &v.header, v.dims, v.channels, &v.data, &WriteOptions::default()).unwrap();
            let back = read_volume(&path).unwrap();
            assert_eq!((back.dims, back.channels), (v.dims, v.channels), "{file}");
            assert!(
                back.data.iter().zip(&v.data).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())),
                "{file}: values differ"
            );
            let h = &back.header;
            assert_eq!((h.vox_offset, h.magic.as_str(), h.scl_slope, h.scl_inter), (352.0, "n+1", 1.0, 0.0));
            assert!(h.sform_code > 0, "{file}: sform_code {}", h.sform_code);
            let near = |a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64| {
                a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() <= tol)
            };
            assert!(near(&back.affine, &v.affine, 1e-4), "{file}: affine {:?} vs {:?}", back.affine, v.affine);
            assert_eq!(back.axcodes(), v.axcodes(), "{file}");
            if !file.contains("S0_10slices") {
                // No shear: the quaternion form is the same affine.
                assert!(near(&qform(h), &sform(h), 1e-4), "{file}: qform {:?} vs sform {:?}", qform(h), sform(h));
            }
        }
    }
}

// ---------------------------------------------------------------- bad inputs

/// A little-endian NIfTI-1 single-file header (352 bytes with the extension flag).
fn header(dims: &[i64], datatype: i32, bitpix: i32) -> NiftiHeader {
    let mut dim = [1i64; 8];
    dim[0] = dims.len() as i64;
    dim[1..=dims.len()].copy_from_slice(dims);
    NiftiHeader { dim, datatype, bitpix, ..NiftiHeader::default() }
}

fn nii(h: &NiftiHeader, data_bytes: usize) -> Vec<u8> {
    let mut bytes = h.encode_nifti1(&h.magic).unwrap();
    bytes.extend((0..data_bytes).map(|i| (i % 251) as u8));
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Reads `bytes` saved as `name` with every reader entry point; all must fail with a
/// message naming the file and containing each of `want`.
fn refused(dir: &Path, name: &str, bytes: &[u8], want: &[&str]) -> IoError {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let volume = read_volume(&path).expect_err("read_volume accepted a bad file");
    let image = read_image(&path).expect_err("read_image accepted a bad file");
    assert_eq!(volume.message, image.message);
    let text = volume.to_string();
    eprintln!("refused as expected: {text}");
    assert!(text.contains(name), "the error does not name the file: {text}");
    for w in want {
        assert!(volume.message.contains(w), "expected {w:?} in: {text}");
    }
    volume
}

#[test]
fn truncated_and_corrupt_gzip_streams_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(repo_root().join("data/mni152/t1_2mm.nii.gz")).unwrap();
    refused(dir.path(), "half.nii.gz", &good[..good.len() / 2], &["truncated gzip stream", "99x117x95 float32 voxels"]);
    // Voxels complete, gzip trailer (CRC + length) missing.
    refused(dir.path(), "no_trailer.nii.gz", &good[..good.len() - 8], &["truncated gzip stream"]);
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    refused(dir.path(), "bad_crc.nii.gz", &bad_crc, &["corrupt gzip stream: the CRC-32"]);
    // A second gzip member is decoded too: the file reads whole.
    let raw = {
        let mut d = flate2::read::GzDecoder::new(&good[..]);
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    let (a, b) = raw.split_at(1_000_000);
    let mut two = gzip(a);
    two.extend(gzip(b));
    let path = dir.path().join("two_members.nii.gz");
    std::fs::write(&path, two).unwrap();
    let v = read_volume(&path).unwrap();
    let reference = read_volume(&repo_root().join("data/mni152/t1_2mm.nii.gz")).unwrap();
    assert_eq!(v.data, reference.data);
}

#[test]
fn a_header_larger_than_its_data_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let h = header(&[99, 117, 95], 4, 16);
    refused(
        dir.path(),
        "short.nii",
        &nii(&h, 1200),
        &["header says 99x117x95 int16 voxels (2200770 bytes) after byte 352, the file holds 1200 bytes of data"],
    );
    let e = refused(dir.path(), "short.nii.gz", &gzip(&nii(&h, 1200)), &["99x117x95 int16 voxels"]);
    assert!(e.message.contains("inflates to at most") || e.message.contains("stream ends after 1200"), "{e}");
}

#[test]
fn a_header_claiming_a_terabyte_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let h = header(&[10000, 10000, 10000], 2, 8);
    refused(
        dir.path(),
        "tera.nii",
        &nii(&h, 100),
        &["header says 10000x10000x10000 uint8 voxels (1000000000000 bytes)", "the file holds 100 bytes"],
    );
    refused(dir.path(), "tera.nii.gz", &gzip(&nii(&h, 100)), &["1000000000000 bytes", "inflates to at most"]);
    // Sizes whose product overflows.
    let h = header(&[32767, 32767, 32767, 32767, 32767, 32767, 32767], 64, 64);
    refused(dir.path(), "overflow.nii", &nii(&h, 8), &["more bytes than memory can address"]);
    // NIfTI-2: 64-bit sizes.
    let mut h2 = header(&[1 << 40, 1 << 20, 4], 2, 8);
    h2.format = niftyhost::io::nifti::Format::Nifti2;
    h2.magic = "n+2".into();
    h2.vox_offset = 544.0;
    let mut bytes = h2.encode_nifti2("n+2");
    bytes.extend([0u8; 64]);
    refused(dir.path(), "huge2.nii", &bytes, &["the file holds 64 bytes"]);
}

#[test]
fn zero_negative_and_missing_sizes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), "zero.nii", &nii(&header(&[4, 0, 4], 2, 8), 64), &["dim[2] is 0, expected"]);
    refused(dir.path(), "negative.nii", &nii(&header(&[4, 4, -3], 2, 8), 64), &["dim[3] is -3, expected"]);
    let mut h = header(&[4, 4, 4], 2, 8);
    h.dim[0] = 0;
    refused(dir.path(), "rank0.nii", &nii(&h, 64), &["dim[0] (number of dimensions) is 0, expected 1 to 7"]);
    h.dim[0] = 9;
    refused(dir.path(), "rank9.nii", &nii(&h, 64), &["dim[0] (number of dimensions) is 9"]);
}

#[test]
fn unknown_unsupported_and_inconsistent_datatypes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), "unknown.nii", &nii(&header(&[2, 2, 2], 3, 8), 64), &["unknown datatype code 3"]);
    refused(
        dir.path(),
        "complex.nii",
        &nii(&header(&[2, 2, 2], 32, 64), 64),
        &["datatype 32 (complex64) is not supported", "expected one of"],
    );
    refused(dir.path(), "rgb.nii", &nii(&header(&[2, 2, 2], 128, 24), 64), &["datatype 128 (RGB24)"]);
    refused(
        dir.path(),
        "bitpix.nii",
        &nii(&header(&[2, 2, 2], 4, 8), 64),
        &["bitpix is 8 but datatype 4 (int16) has 16 bits per voxel"],
    );
}

#[test]
fn a_single_file_vox_offset_inside_the_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for offset in [0.0, 348.0] {
        let mut h = header(&[2, 2, 2], 2, 8);
        h.vox_offset = offset;
        refused(
            dir.path(),
            "offset.nii",
            &nii(&h, 64),
            &[&format!("vox_offset is {offset}, expected at least 352 in a single-file image")],
        );
    }
    let mut h = header(&[2, 2, 2], 2, 8);
    h.vox_offset = 352.5;
    refused(dir.path(), "fraction.nii", &nii(&h, 64), &["vox_offset is 352.5, expected a whole number"]);
    h.vox_offset = 1e9;
    refused(dir.path(), "beyond.nii", &nii(&h, 64), &["after byte 1000000000, the file holds 0 bytes of data"]);
}

#[test]
fn empty_text_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), "empty.nii", b"", &["the file is empty (0 bytes), expected a 348-byte"]);
    refused(dir.path(), "empty.nii.gz", b"", &["the file is empty (0 bytes)"]);
    refused(
        dir.path(),
        "notes.nii",
        b"subject,path\nsub-01,/data/sub-01.nii.gz\n",
        &["not a NIfTI or Analyze header", "expected 348 (NIfTI-1, Analyze 7.5) or 540 (NIfTI-2)", "text \"subj\""],
    );
    refused(dir.path(), "short.nii", &nii(&header(&[2, 2, 2], 2, 8), 0)[..100], &["cut short", "the file holds 100"]);
    let missing = dir.path().join("missing.nii.gz");
    assert!(read_volume(&missing).unwrap_err().to_string().contains("missing.nii.gz: no such file"));
    assert!(read_header(&missing).is_err());
    // A pair without its image.
    let mut h = header(&[2, 2, 2], 2, 8);
    h.magic = "ni1".into();
    h.vox_offset = 0.0;
    let hdr = dir.path().join("lonely.hdr");
    std::fs::write(&hdr, &h.encode_nifti1("ni1").unwrap()[..348]).unwrap();
    let e = read_volume(&hdr).unwrap_err();
    assert!(e.message.contains("lonely.img"), "{e}");
    // A single file whose magic says pair, and the other way round.
    refused(dir.path(), "magic.nii", &nii(&h, 64), &["magic \"ni1\" says the voxels are in a separate .img file"]);
    let mut bytes = nii(&header(&[2, 2, 2], 2, 8), 0);
    bytes.truncate(348);
    std::fs::write(dir.path().join("single.img"), [0u8; 8]).unwrap();
    refused(dir.path(), "single.hdr", &bytes, &["magic \"n+1\" says the voxels follow the header in the same file"]);
}

#[test]
fn scaling_and_shape_problems_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = header(&[2, 2, 2], 2, 8);
    h.scl_slope = 2.0;
    h.scl_inter = f64::NAN;
    refused(
        dir.path(),
        "inter.nii",
        &nii(&h, 8),
        &["scl_slope is 2 but scl_inter is NaN, expected a finite intercept"],
    );
    // A 5D image with non-trivial 4th and 5th dimensions cannot be a volume (but is an image).
    let path = dir.path().join("five.nii");
    std::fs::write(&path, nii(&header(&[2, 2, 2, 2, 3], 2, 8), 48)).unwrap();
    let e = read_volume(&path).unwrap_err();
    assert!(e.message.contains("expected a 3D or 4D image") && e.message.contains("2x2x2x2x3"), "{e}");
    assert_eq!(read_image(&path).unwrap().shape, vec![2, 2, 2, 2, 3]);
    // NIfTI's vector layout X×Y×Z×1×C is a volume of C channels.
    let path = dir.path().join("vector.nii");
    std::fs::write(&path, nii(&header(&[2, 2, 2, 1, 3], 2, 8), 24)).unwrap();
    let v = read_volume(&path).unwrap();
    assert_eq!((v.dims, v.channels), ([2, 2, 2], 3));
    // 5D with trailing 1s is a volume.
    let path = dir.path().join("five_ones.nii");
    std::fs::write(&path, nii(&header(&[2, 2, 2, 3, 1], 2, 8), 24)).unwrap();
    let v = read_volume(&path).unwrap();
    assert_eq!((v.dims, v.channels), ([2, 2, 2], 3));
}

#[test]
fn random_corruptions_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let base = nii(&header(&[3, 4, 5], 4, 16), 120);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let mut bytes = base.clone();
        for _ in 0..1 + round % 8 {
            let at = (next() % 352) as usize;
            bytes[at] = next() as u8;
        }
        let cut = if round % 5 == 0 { (next() % bytes.len() as u64) as usize } else { bytes.len() };
        let path = dir.path().join(format!("r{round}.nii"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let _ = read_volume(&path);
        let _ = read_image(&path);
        let _ = read_header(&path);
        let gz = dir.path().join(format!("r{round}.nii.gz"));
        let mut z = gzip(&bytes);
        let zcut = if round % 3 == 0 { (next() % z.len() as u64) as usize } else { z.len() };
        if round % 4 == 0 {
            let at = (next() % z.len() as u64) as usize;
            z[at] ^= 0x5a;
        }
        std::fs::write(&gz, &z[..zcut]).unwrap();
        let _ = read_volume(&gz);
    }
}
