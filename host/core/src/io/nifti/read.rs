//! Reading: which files hold header and voxels, checking sizes before allocating, and
//! turning on-disk voxels into `f32` or `f64` values with the header's scaling.
//!
//! Every size a header states is checked against what the file can hold before any
//! buffer of that size exists: a plain file against its length, a gzip file against
//! the most its compressed size can inflate to (and then the buffer grows only as the
//! stream really delivers data).

use std::path::{Path, PathBuf};

use super::affine::{best_affine, Affine, AffineSource};
use super::header::{parse_extensions, DataType, Endian, Format, Layout, NiftiHeader, NIFTI1_HEADER_SIZE};
use super::source::Source;
use super::{io_error, IoError};
use crate::budget::AllocError;

/// Header bytes between the header and the voxels read to list extensions; a larger
/// gap is skipped unread.
const EXTENSION_READ_LIMIT: u64 = 16 << 20;

/// The files of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The file holding the header.
    pub header: PathBuf,
    /// The file holding the voxels (the same file for `.nii`, the `.img` of a pair).
    pub image: PathBuf,
}

impl Files {
    /// Whether header and voxels are in separate files.
    pub fn is_pair(&self) -> bool {
        self.header != self.image
    }
}

/// For a name ending in `.hdr`/`.img` (any case, optionally `.gz`): the stem before
/// it (case kept), which half it names, and whether it is gzipped.
fn pair_stem(path: &Path) -> Option<(String, &'static str, bool)> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    for (ext, kind) in [(".hdr.gz", "hdr"), (".img.gz", "img"), (".hdr", "hdr"), (".img", "img")] {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return Some((name[..name.len() - ext.len()].to_owned(), kind, ext.ends_with(".gz")));
        }
    }
    None
}

/// Which files hold header and voxels: `x.hdr`/`x.img` (each optionally `.gz`, either
/// given) form a pair; anything else is a single file.
///
/// # Errors
/// A path that does not exist or is not a regular file (a FIFO, socket, device or
/// folder, refused before it is opened); a pair whose other half does not exist, naming
/// the files looked for.
pub fn locate(path: &Path) -> Result<Files, IoError> {
    crate::io::file_kind::regular_file(path).map_err(|m| io_error(path, m))?;
    let Some((stem, kind, gz)) = pair_stem(path) else {
        return Ok(Files { header: path.to_owned(), image: path.to_owned() });
    };
    let upper = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        let tail = n.len().saturating_sub(if gz { 7 } else { 4 });
        n[tail..].starts_with(".HDR") || n[tail..].starts_with(".IMG")
    });
    let other = if kind == "hdr" { "img" } else { "hdr" };
    let other = if upper { other.to_ascii_uppercase() } else { other.to_owned() };
    let dir = path.parent().unwrap_or(Path::new(""));
    let candidates: Vec<PathBuf> =
        [gz, !gz].iter().map(|&z| dir.join(format!("{stem}.{other}{}", if z { ".gz" } else { "" }))).collect();
    // Any kind of file counts as the other half here; opening it refuses what is not a
    // regular file, by name.
    let Some(found) = candidates.iter().find(|p| p.exists()) else {
        return Err(io_error(
            path,
            format!(
                "the other half of the header/image pair is missing: expected {} (or {})",
                candidates[0].display(),
                candidates[1].display()
            ),
        ));
    };
    Ok(if kind == "hdr" {
        Files { header: path.to_owned(), image: found.clone() }
    } else {
        Files { header: found.clone(), image: path.to_owned() }
    })
}

/// A header read from its file, with the open source positioned after it.
struct Opened {
    files: Files,
    header: NiftiHeader,
    source: Source,
}

fn open_header(path: &Path) -> Result<Opened, IoError> {
    let files = locate(path)?;
    let hp = &files.header;
    let mut source = Source::open(hp).map_err(|m| io_error(hp, m))?;
    let mut block = source.read_prefix(NIFTI1_HEADER_SIZE).map_err(|m| io_error(hp, m))?;
    if block.is_empty() {
        return Err(io_error(
            hp,
            "the file is empty (0 bytes), expected a 348-byte (NIfTI-1, Analyze 7.5) or 540-byte (NIfTI-2) header",
        ));
    }
    if block.len() >= 4 {
        let (size, _) = super::header::sniff([block[0], block[1], block[2], block[3]]).map_err(|m| io_error(hp, m))?;
        if size > block.len() && block.len() == NIFTI1_HEADER_SIZE {
            let rest = source.read_prefix(size - NIFTI1_HEADER_SIZE).map_err(|m| io_error(hp, m))?;
            block.extend_from_slice(&rest);
        }
    }
    let header = NiftiHeader::decode(&block).map_err(|m| io_error(hp, m))?;
    let pair_name = files.is_pair();
    match (pair_name, header.is_pair()) {
        (false, true) if header.format == Format::Analyze75 => {
            return Err(io_error(
                hp,
                "no NIfTI magic at bytes 344-347 (expected \"n+1\" in a single-file image): an Analyze 7.5 \
                 header comes as a .hdr/.img pair",
            ))
        }
        (false, true) => {
            return Err(io_error(
                hp,
                format!(
                    "magic \"{}\" says the voxels are in a separate .img file, but this is a single file \
                     (expected magic \"{}\")",
                    header.magic,
                    if header.format == Format::Nifti2 { "n+2" } else { "n+1" }
                ),
            ))
        }
        (true, false) => {
            return Err(io_error(
                hp,
                format!(
                    "magic \"{}\" says the voxels follow the header in the same file, but this is a .hdr/.img \
                     pair (expected magic \"{}\")",
                    header.magic,
                    if header.format == Format::Nifti2 { "ni2" } else { "ni1" }
                ),
            ))
        }
        _ => {}
    }
    Ok(Opened { files, header, source })
}

/// Reads only the header of an image (and the extensions of a single-file image, or of
/// a `.hdr` with extensions after its header).
///
/// # Errors
/// A missing or unreadable file, or a header that is not NIfTI-1/2 or Analyze 7.5.
pub fn read_header(path: &Path) -> Result<NiftiHeader, IoError> {
    let mut opened = open_header(path)?;
    if opened.header.format != Format::Analyze75 {
        let hp = opened.files.header.clone();
        if opened.files.is_pair() {
            read_pair_extensions(&mut opened)
        } else {
            let end = opened.header.vox_offset.clamp(0.0, 2f64.powi(62)) as u64;
            read_extensions(&mut opened, end)
        }
        .map_err(|m| io_error(&hp, m))?;
    }
    Ok(opened.header)
}

/// Reads the bytes up to `end` (when few enough) and keeps the extensions found there.
fn read_extensions(opened: &mut Opened, end: u64) -> Result<(), String> {
    let gap = end.saturating_sub(opened.source.position());
    if gap == 0 {
        return Ok(());
    }
    if gap > EXTENSION_READ_LIMIT {
        return opened.source.skip(gap, &|| "header extensions".to_owned());
    }
    let between = opened.source.read_prefix(gap as usize)?;
    opened.header.extensions = parse_extensions(&between, opened.header.endian);
    if (between.len() as u64) < gap {
        return Err(format!(
            "the file ends at byte {} but vox_offset says the voxels start at byte {end}",
            opened.source.position()
        ));
    }
    Ok(())
}

/// Reads what follows the header in a `.hdr` (up to a limit) and keeps the extensions
/// found there.
fn read_pair_extensions(opened: &mut Opened) -> Result<(), String> {
    let rest = opened.source.read_prefix(EXTENSION_READ_LIMIT as usize)?;
    opened.header.extensions = parse_extensions(&rest, opened.header.endian);
    Ok(())
}

/// An image's header with its voxels as stored on disk (byte order of the header).
pub struct RawImage {
    /// The header (with its extensions).
    pub header: NiftiHeader,
    /// What the header says about the voxels, checked.
    pub layout: Layout,
    /// The effective scaling (see [`NiftiHeader::scaling`]).
    pub scaling: Option<(f64, f64)>,
    /// The voxels' bytes, `layout.bytes` of them.
    pub bytes: Vec<u8>,
    /// Where header and voxels came from.
    pub files: Files,
    /// Whether the voxel file was gzip-compressed.
    pub gzip: bool,
}

/// A checked header with its voxel source positioned at the voxels.
struct Prepared {
    header: NiftiHeader,
    layout: Layout,
    scaling: Option<(f64, f64)>,
    files: Files,
    source: Source,
}

/// Opens header and voxel file and checks everything that can be checked before
/// reading voxels: layout, scaling, offset, and that the data fit in the file.
fn prepare(path: &Path, check_shape: &dyn Fn(&Layout) -> Result<(), String>) -> Result<Prepared, IoError> {
    let mut opened = open_header(path)?;
    let hp = opened.files.header.clone();
    let layout = opened.header.layout().map_err(|m| io_error(&hp, m))?;
    let scaling = opened.header.scaling().map_err(|m| io_error(&hp, m))?;
    check_shape(&layout).map_err(|m| io_error(&hp, m))?;
    let mut source = if opened.files.is_pair() {
        if opened.header.format != Format::Analyze75 {
            read_pair_extensions(&mut opened).map_err(|m| io_error(&hp, m))?;
        }
        let ip = &opened.files.image;
        let source = Source::open(ip).map_err(|m| io_error(ip, m))?;
        check_fits(&source, &layout)?;
        source
    } else {
        let min = opened.header.header_size() as u64 + 4;
        if layout.offset < min {
            return Err(io_error(
                &hp,
                format!(
                    "vox_offset is {}, expected at least {min} in a single-file image (the {}-byte header and the \
                     4-byte extension flag come first)",
                    opened.header.vox_offset,
                    opened.header.header_size()
                ),
            ));
        }
        check_fits(&opened.source, &layout)?;
        if opened.header.format != Format::Analyze75 {
            read_extensions(&mut opened, layout.offset).map_err(|m| io_error(&hp, m))?;
        }
        opened.source
    };
    let vp = source.path().to_owned();
    let at = source.position();
    if at < layout.offset {
        source.skip(layout.offset - at, &|| "the bytes before vox_offset".to_owned()).map_err(|m| io_error(&vp, m))?;
    }
    Ok(Prepared { header: opened.header, layout, scaling, files: opened.files, source })
}

/// Reads header and on-disk voxels, checking every stated size against the file before
/// allocating. `check_shape` sees the layout before any voxel is read (to refuse early).
///
/// # Errors
/// Everything [`read_header`] refuses; sizes and types the header states wrongly
/// (see [`NiftiHeader::layout`]); a single-file vox_offset below the header; a file
/// too short for the data; a corrupt or truncated gzip stream; a shape `check_shape`
/// refuses. Each names the file and says what was expected and found.
pub fn read_raw(path: &Path, check_shape: &dyn Fn(&Layout) -> Result<(), String>) -> Result<RawImage, IoError> {
    let mut p = prepare(path, check_shape)?;
    let vp = p.source.path().to_owned();
    let what = || p.layout.describe_voxels();
    let bytes = p.source.read_exact(p.layout.bytes, &what).map_err(|m| io_error(&vp, m))?;
    p.source.finish().map_err(|m| io_error(&vp, m))?;
    Ok(RawImage {
        gzip: p.source.is_gzip(),
        header: p.header,
        layout: p.layout,
        scaling: p.scaling,
        bytes,
        files: p.files,
    })
}

/// A header with its voxels decoded to values.
pub(crate) struct Decoded<T> {
    pub header: NiftiHeader,
    pub layout: Layout,
    pub scaling: Option<(f64, f64)>,
    pub files: Files,
    pub gzip: bool,
    pub values: Vec<T>,
}

/// Raw bytes per chunk of the pipelined decode.
const PIPELINE_CHUNK: usize = 1 << 20;

/// Gzip streams are decoded in a pipeline, with the values allocated up front, when
/// their stated data are at most this many bytes or at most
/// [`PIPELINE_GZIP_RATIO`] times the compressed size; larger claims are read whole
/// first (the stream must prove its size before the values are allocated). Plain
/// files, whose length was checked, always use the pipeline.
const PIPELINE_GZIP_LIMIT: usize = 64 << 20;

/// See [`PIPELINE_GZIP_LIMIT`]: a ratio no real image reaches (label maps compress
/// about 100:1 to 500:1).
const PIPELINE_GZIP_RATIO: u64 = 64;

/// Reads and decodes the voxels. Inflating (or reading) runs on one thread while the
/// chunks already read are converted on the others, so conversion mostly hides behind
/// decompression.
pub(crate) fn read_decoded<T: Sample>(
    path: &Path,
    check_shape: &dyn Fn(&Layout) -> Result<(), String>,
) -> Result<Decoded<T>, IoError> {
    let mut p = prepare(path, check_shape)?;
    let vp = p.source.path().to_owned();
    let (datatype, endian, scaling) = (p.layout.datatype, p.header.endian, p.scaling);
    let pipelined = !p.source.is_gzip()
        || p.layout.bytes <= PIPELINE_GZIP_LIMIT
        || p.layout.bytes as u64 <= p.source.file_len().saturating_mul(PIPELINE_GZIP_RATIO);
    let as_values = || format!("{} as {}", p.layout.describe_voxels(), T::NAME);
    let budget_error = |e: crate::budget::AllocError| io_error(&vp, e.to_string());
    let values = if !pipelined {
        // Both buffers are checked before the stream is inflated.
        crate::budget::check(budget_bytes::<T>(p.layout.voxels), &as_values).map_err(budget_error)?;
        let what = || p.layout.describe_voxels();
        let bytes = p.source.read_exact(p.layout.bytes, &what).map_err(|m| io_error(&vp, m))?;
        decode(&bytes, datatype, endian, scaling, &as_values).map_err(budget_error)?
    } else {
        let size = datatype.size();
        let mut values = crate::budget::try_zeroed::<T>(p.layout.voxels, &as_values).map_err(budget_error)?;
        advise_huge_pages(&mut values);
        let source = &mut p.source;
        let layout = &p.layout;
        rayon::scope(|scope| -> Result<(), String> {
            for out in values.chunks_mut(PIPELINE_CHUNK / size) {
                let what = || layout.describe_voxels();
                let bytes = source.read_exact(out.len() * size, &what)?;
                scope.spawn(move |_| decode_into(&bytes, datatype, endian, scaling, out));
            }
            Ok(())
        })
        .map_err(|m| io_error(&vp, m))?;
        values
    };
    p.source.finish().map_err(|m| io_error(&vp, m))?;
    Ok(Decoded {
        gzip: p.source.is_gzip(),
        header: p.header,
        layout: p.layout,
        scaling: p.scaling,
        files: p.files,
        values,
    })
}

/// Refuses a layout whose data cannot fit in what the (voxel) file can hold.
fn check_fits(source: &Source, layout: &Layout) -> Result<(), IoError> {
    let path = source.path();
    let available = source.max_remaining().saturating_add(source.position()).saturating_sub(layout.offset);
    if layout.bytes as u64 <= available {
        return Ok(());
    }
    let message = if source.is_gzip() {
        format!(
            "header says {} after byte {}, but a {}-byte gzip file inflates to at most {} bytes",
            layout.describe(),
            layout.offset,
            source.file_len(),
            source.file_len().saturating_mul(super::source::GZIP_MAX_RATIO)
        )
    } else {
        format!(
            "header says {} after byte {}, the file holds {} bytes of data",
            layout.describe(),
            layout.offset,
            source.file_len().saturating_sub(layout.offset)
        )
    };
    Err(io_error(path, message))
}

/// Asks Linux to back a large, freshly allocated (untouched) buffer with transparent
/// huge pages: filling a 35 MB volume then takes ~17 page faults instead of ~8600,
/// which otherwise cost more than the conversion itself. Advisory only: contents and
/// validity of the buffer are unchanged, and a refusal is ignored.
fn advise_huge_pages<T>(values: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(values);
        let start = values.as_mut_ptr() as usize;
        let (first, end) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
        if bytes >= 4 * HUGE && end > first {
            // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs pages of
            // this process's own mapping; `first..end` lies inside `values`' allocation,
            // no memory is read, written, freed or remapped, and errors are ignored.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// Bytes of `voxels` values of `T`, saturating.
fn budget_bytes<T>(voxels: usize) -> u64 {
    (voxels as u64).saturating_mul(std::mem::size_of::<T>() as u64)
}

/// A value type voxels decode to.
pub(crate) trait Sample: Copy + Default + Send + Sync + crate::budget::Zeroed {
    /// Its name in messages (`float32`).
    const NAME: &'static str;
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn from_u8(v: u8) -> Self;
}

impl Sample for f32 {
    const NAME: &'static str = "float32";
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_u8(v: u8) -> Self {
        f32::from(v)
    }
}

impl Sample for f64 {
    const NAME: &'static str = "float64";
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn from_u8(v: u8) -> Self {
        f64::from(v)
    }
}

/// Converts one run of on-disk voxels into `out` (same number of values), applying
/// `scaling` in f64 (as nibabel does).
fn decode_into<T: Sample>(
    bytes: &[u8],
    datatype: DataType,
    endian: Endian,
    scaling: Option<(f64, f64)>,
    out: &mut [T],
) {
    let big = endian == Endian::Big;
    macro_rules! each {
        ($prim:ty, $n:literal, $unscaled:expr) => {{
            let read = |c: &[u8]| -> $prim {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                if big {
                    <$prim>::from_be_bytes(a)
                } else {
                    <$prim>::from_le_bytes(a)
                }
            };
            let pairs = out.iter_mut().zip(bytes.chunks_exact($n));
            match scaling {
                None => pairs.for_each(|(o, c)| *o = $unscaled(read(c))),
                Some((s, i)) => pairs.for_each(|(o, c)| *o = T::from_f64(read(c) as f64 * s + i)),
            }
        }};
    }
    let wide = |v: f64| T::from_f64(v);
    match datatype {
        DataType::U8 => match scaling {
            None => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = T::from_u8(b)),
            Some((s, i)) => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = T::from_f64(f64::from(b) * s + i)),
        },
        DataType::I8 => each!(i8, 1, |v: i8| wide(f64::from(v))),
        DataType::U16 => each!(u16, 2, |v: u16| wide(f64::from(v))),
        DataType::I16 => each!(i16, 2, |v: i16| wide(f64::from(v))),
        DataType::U32 => each!(u32, 4, |v: u32| wide(f64::from(v))),
        DataType::I32 => each!(i32, 4, |v: i32| wide(f64::from(v))),
        DataType::U64 => each!(u64, 8, |v: u64| wide(v as f64)),
        DataType::I64 => each!(i64, 8, |v: i64| wide(v as f64)),
        DataType::F32 => each!(f32, 4, T::from_f32),
        DataType::F64 => each!(f64, 8, wide),
    }
}

/// Voxels converted per parallel task.
const DECODE_CHUNK: usize = 1 << 18;

/// Decodes `bytes` into a new buffer (fallible: `what` names it in the error).
fn decode<T: Sample>(
    bytes: &[u8],
    datatype: DataType,
    endian: Endian,
    scaling: Option<(f64, f64)>,
    what: &dyn Fn() -> String,
) -> Result<Vec<T>, AllocError> {
    use rayon::prelude::*;
    let size = datatype.size();
    // A zeroed allocation maps fresh pages lazily: the page faults of the output, which
    // dominate this conversion, are then fewer (huge pages) and shared by the threads.
    let mut out = crate::budget::try_zeroed::<T>(bytes.len() / size, what)?;
    advise_huge_pages(&mut out);
    out.par_chunks_mut(DECODE_CHUNK)
        .zip(bytes.par_chunks(DECODE_CHUNK * size))
        .for_each(|(o, b)| decode_into(b, datatype, endian, scaling, o));
    Ok(out)
}

/// On-disk voxels as `f32`, scaled. Integers wider than 24 bits and float64 round to
/// the nearest `f32`.
///
/// # Errors
/// The output over the memory budget, or refused by the system.
pub fn decode_f32(
    bytes: &[u8],
    datatype: DataType,
    endian: Endian,
    scaling: Option<(f64, f64)>,
) -> Result<Vec<f32>, AllocError> {
    decode(bytes, datatype, endian, scaling, &|| format!("{} bytes of {datatype} as float32", bytes.len()))
}

/// On-disk voxels as `f64`, scaled: exact for every type but 64-bit integers beyond
/// 2^53 (as numpy's `get_fdata`).
///
/// # Errors
/// The output over the memory budget, or refused by the system.
pub fn decode_f64(
    bytes: &[u8],
    datatype: DataType,
    endian: Endian,
    scaling: Option<(f64, f64)>,
) -> Result<Vec<f64>, AllocError> {
    decode(bytes, datatype, endian, scaling, &|| format!("{} bytes of {datatype} as float64", bytes.len()))
}

/// Visits on-disk voxels as scaled `f64` values, in order, a chunk at a time, without
/// a buffer of the whole volume: the values are those of [`decode_f64`].
pub fn for_each_f64(
    bytes: &[u8],
    datatype: DataType,
    endian: Endian,
    scaling: Option<(f64, f64)>,
    mut visit: impl FnMut(&[f64]),
) {
    const CHUNK: usize = 1 << 14;
    let size = datatype.size();
    let mut scratch = vec![0f64; CHUNK];
    for b in bytes.chunks(CHUNK * size) {
        let out = &mut scratch[..b.len() / size];
        decode_into(b, datatype, endian, scaling, out);
        visit(out);
    }
}

/// An image of any dimensionality with `f64` values, as nibabel's `get_fdata()`.
#[derive(Debug, Clone)]
pub struct Image {
    /// The header as read.
    pub header: NiftiHeader,
    /// The array shape `dim[1..=dim[0]]` (trailing 1s kept, as nibabel reports it).
    pub shape: Vec<usize>,
    /// Values after scaling, NIfTI memory order (first index fastest).
    pub data: Vec<f64>,
    /// The voxel-to-world affine nibabel would use.
    pub affine: Affine,
    /// Which header fields the affine came from.
    pub affine_source: AffineSource,
    /// The on-disk voxel type.
    pub datatype: DataType,
    /// The effective scaling, if any.
    pub scaling: Option<(f64, f64)>,
    /// Header and voxel files.
    pub files: Files,
    /// Whether the voxels were gzip-compressed.
    pub gzip: bool,
}

/// Reads any supported image as `f64` values (no precision lost for float64 files):
/// the lower-level read behind conformance checks and `niftyhost info`.
///
/// # Errors
/// As [`read_raw`].
pub fn read_image(path: &Path) -> Result<Image, IoError> {
    let d = read_decoded::<f64>(path, &|_| Ok(()))?;
    let (affine, affine_source) = best_affine(&d.header);
    Ok(Image {
        shape: d.layout.shape,
        data: d.values,
        affine,
        affine_source,
        datatype: d.layout.datatype,
        scaling: d.scaling,
        header: d.header,
        files: d.files,
        gzip: d.gzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_applies_byte_order_and_scaling() {
        let be = [0x01u8, 0x02, 0xff, 0xfe];
        assert_eq!(decode_f64(&be, DataType::I16, Endian::Big, None), Ok(vec![258.0, -2.0]));
        assert_eq!(decode_f64(&be, DataType::U16, Endian::Little, None), Ok(vec![513.0, 65279.0]));
        assert_eq!(decode_f32(&[1, 2], DataType::U8, Endian::Little, Some((0.5, 10.0))), Ok(vec![10.5, 11.0]));
        let nan = f32::NAN.to_le_bytes();
        assert!(decode_f32(&nan, DataType::F32, Endian::Little, None).unwrap()[0].is_nan());
        let big = (1u64 << 53).to_le_bytes();
        assert_eq!(decode_f64(&big, DataType::U64, Endian::Little, None), Ok(vec![9007199254740992.0]));
        let mut visited = vec![];
        for_each_f64(&be, DataType::I16, Endian::Big, Some((2.0, 1.0)), |v| visited.extend_from_slice(v));
        assert_eq!(visited, vec![517.0, -3.0]);
    }

    #[test]
    fn pairs_are_found_from_either_half() {
        let dir = std::env::temp_dir().join(format!("niftyhost-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (hdr, img) = (dir.join("a.HDR"), dir.join("a.IMG.gz"));
        std::fs::write(&hdr, b"").unwrap();
        std::fs::write(&img, b"").unwrap();
        let want = Files { header: hdr.clone(), image: img.clone() };
        assert_eq!(locate(&hdr).unwrap(), want);
        assert_eq!(locate(&img).unwrap(), want);
        let lonely = dir.join("b.hdr");
        std::fs::write(&lonely, b"").unwrap();
        let e = locate(&lonely).unwrap_err();
        assert!(e.message.contains("b.img"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
