//! The three header layouts — Analyze 7.5 and NIfTI-1 (348 bytes), NIfTI-2 (540 bytes) —
//! decoded from either byte order into one [`NiftiHeader`], and encoded back (NIfTI-1 or
//! NIfTI-2, little-endian) for writing.
//!
//! Decoding never fails on field values: any 348- or 540-byte block with the right
//! `sizeof_hdr` decodes. What the values mean (sizes, data type, scaling) is checked
//! separately by [`NiftiHeader::layout`] and [`NiftiHeader::scaling`], which say what
//! they expected and what they found.

use std::fmt;

/// Bytes in an Analyze 7.5 or NIfTI-1 header.
pub const NIFTI1_HEADER_SIZE: usize = 348;
/// Bytes in a NIfTI-2 header.
pub const NIFTI2_HEADER_SIZE: usize = 540;

/// NIfTI intent code of a label (index) image, `NIFTI_INTENT_LABEL`.
pub const INTENT_LABEL: i32 = 1002;

/// The header layout of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Analyze 7.5 (a 348-byte header without a NIfTI magic; read as SPM2 does).
    Analyze75,
    /// NIfTI-1 (348 bytes, magic `n+1` or `ni1`).
    Nifti1,
    /// NIfTI-2 (540 bytes, magic `n+2` or `ni2`, 64-bit sizes and float64 geometry).
    Nifti2,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Analyze75 => "Analyze 7.5",
            Format::Nifti1 => "NIfTI-1",
            Format::Nifti2 => "NIfTI-2",
        })
    }
}

/// Byte order of a header and its voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

impl fmt::Display for Endian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endian::Little => "little-endian",
            Endian::Big => "big-endian",
        })
    }
}

/// The voxel types this reader and writer handle (NIfTI `datatype` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `NIFTI_TYPE_UINT8` (2).
    U8,
    /// `NIFTI_TYPE_INT8` (256).
    I8,
    /// `NIFTI_TYPE_UINT16` (512).
    U16,
    /// `NIFTI_TYPE_INT16` (4).
    I16,
    /// `NIFTI_TYPE_UINT32` (768).
    U32,
    /// `NIFTI_TYPE_INT32` (8).
    I32,
    /// `NIFTI_TYPE_UINT64` (1280).
    U64,
    /// `NIFTI_TYPE_INT64` (1024).
    I64,
    /// `NIFTI_TYPE_FLOAT32` (16).
    F32,
    /// `NIFTI_TYPE_FLOAT64` (64).
    F64,
}

impl DataType {
    /// Every supported type.
    pub const ALL: [DataType; 10] = [
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
    ];

    /// The supported type with NIfTI code `code`.
    ///
    /// # Errors
    /// A known but unsupported code (binary, complex, RGB, float128) or an unknown one,
    /// with a message naming the code.
    pub fn from_code(code: i32) -> Result<DataType, String> {
        if let Some(t) = Self::ALL.into_iter().find(|t| t.code() == code) {
            return Ok(t);
        }
        Err(match code_name(code) {
            Some(name) => format!(
                "datatype {code} ({name}) is not supported: expected one of {}",
                Self::ALL.map(|t| format!("{} ({})", t.code(), t.name())).join(", ")
            ),
            None => format!("unknown datatype code {code}: not a NIfTI or Analyze data type"),
        })
    }

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i32 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
        }
    }

    /// The numpy-style name (`uint8`, `int16`, `float32`, …).
    pub fn name(self) -> &'static str {
        code_name(self.code()).unwrap_or("?")
    }

    /// Whether values are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of any NIfTI-1 datatype code, supported or not.
pub fn code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "binary",
        2 => "uint8",
        4 => "int16",
        8 => "int32",
        16 => "float32",
        32 => "complex64",
        64 => "float64",
        128 => "RGB24",
        256 => "int8",
        512 => "uint16",
        768 => "uint32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "RGBA32",
        _ => return None,
    })
}

/// One header extension (NIfTI-1/2: after the header, before the voxels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// `ecode` (e.g. 6 = comment, 4 = AFNI, 2 = DICOM).
    pub code: i32,
    /// The content, without the 8-byte `esize`/`ecode` prefix.
    pub data: Vec<u8>,
}

/// A header of any of the three layouts, with every field widened (integers to `i64`,
/// floats to `f64`) so that NIfTI-1 and NIfTI-2 look the same.
///
/// Field names follow `nifti1.h`/`nifti2.h`; `spm_origin` is the SPM/Analyze `origin`
/// (the bytes NIfTI-1 uses for `qform_code`/`sform_code`), meaningful for Analyze only.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// Which layout the header had on disk.
    pub format: Format,
    /// Byte order of header and voxels.
    pub endian: Endian,
    /// The magic as text (`n+1`, `ni1`, `n+2`, `ni2`; empty for Analyze).
    pub magic: String,
    /// `dim_info` (frequency/phase/slice dimensions).
    pub dim_info: u8,
    /// `dim[0]` is the number of dimensions, `dim[1..=dim[0]]` their sizes.
    pub dim: [i64; 8],
    /// `intent_p1`.
    pub intent_p1: f64,
    /// `intent_p2`.
    pub intent_p2: f64,
    /// `intent_p3`.
    pub intent_p3: f64,
    /// `intent_code`.
    pub intent_code: i32,
    /// `datatype` code (what the voxels are; see [`DataType`]).
    pub datatype: i32,
    /// `bitpix` (must agree with `datatype`).
    pub bitpix: i32,
    /// `slice_start`.
    pub slice_start: i64,
    /// `pixdim[0]` is qfac (NIfTI), `pixdim[1..=3]` the voxel size, `pixdim[4]` the TR.
    pub pixdim: [f64; 8],
    /// Byte offset of the voxels in the data file.
    pub vox_offset: f64,
    /// `scl_slope` as stored (see [`NiftiHeader::scaling`] for what it means).
    pub scl_slope: f64,
    /// `scl_inter` as stored.
    pub scl_inter: f64,
    /// `slice_end`.
    pub slice_end: i64,
    /// `slice_code`.
    pub slice_code: i32,
    /// `xyzt_units` (bits 0–2 space, 3–5 time).
    pub xyzt_units: i32,
    /// `cal_max`.
    pub cal_max: f64,
    /// `cal_min`.
    pub cal_min: f64,
    /// `slice_duration`.
    pub slice_duration: f64,
    /// `toffset`.
    pub toffset: f64,
    /// `glmax` (Analyze; NIfTI-1 unused; 0 for NIfTI-2).
    pub glmax: i64,
    /// `glmin` (Analyze; NIfTI-1 unused; 0 for NIfTI-2).
    pub glmin: i64,
    /// `descrip` (up to 80 bytes).
    pub descrip: Vec<u8>,
    /// `aux_file` (up to 24 bytes).
    pub aux_file: Vec<u8>,
    /// `qform_code` (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5 template).
    pub qform_code: i32,
    /// `sform_code`.
    pub sform_code: i32,
    /// `quatern_b`.
    pub quatern_b: f64,
    /// `quatern_c`.
    pub quatern_c: f64,
    /// `quatern_d`.
    pub quatern_d: f64,
    /// `qoffset_x`.
    pub qoffset_x: f64,
    /// `qoffset_y`.
    pub qoffset_y: f64,
    /// `qoffset_z`.
    pub qoffset_z: f64,
    /// First row of the sform.
    pub srow_x: [f64; 4],
    /// Second row of the sform.
    pub srow_y: [f64; 4],
    /// Third row of the sform.
    pub srow_z: [f64; 4],
    /// `intent_name` (up to 16 bytes).
    pub intent_name: Vec<u8>,
    /// SPM's voxel `origin` (1-based) of an Analyze header; zeros otherwise.
    pub spm_origin: [i16; 3],
    /// Header extensions found between the header and `vox_offset`.
    pub extensions: Vec<Extension>,
}

impl Default for NiftiHeader {
    /// An empty little-endian NIfTI-1 single-file header: no dimensions, uint8, unit
    /// voxels, no scaling, no transforms.
    fn default() -> Self {
        NiftiHeader {
            format: Format::Nifti1,
            endian: Endian::Little,
            magic: "n+1".to_owned(),
            dim_info: 0,
            dim: [0, 1, 1, 1, 1, 1, 1, 1],
            intent_p1: 0.0,
            intent_p2: 0.0,
            intent_p3: 0.0,
            intent_code: 0,
            datatype: DataType::U8.code(),
            bitpix: 8,
            slice_start: 0,
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            slice_end: 0,
            slice_code: 0,
            xyzt_units: 0,
            cal_max: 0.0,
            cal_min: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            glmax: 0,
            glmin: 0,
            descrip: Vec::new(),
            aux_file: Vec::new(),
            qform_code: 0,
            sform_code: 0,
            quatern_b: 0.0,
            quatern_c: 0.0,
            quatern_d: 0.0,
            qoffset_x: 0.0,
            qoffset_y: 0.0,
            qoffset_z: 0.0,
            srow_x: [1.0, 0.0, 0.0, 0.0],
            srow_y: [0.0, 1.0, 0.0, 0.0],
            srow_z: [0.0, 0.0, 1.0, 0.0],
            intent_name: Vec::new(),
            spm_origin: [0; 3],
            extensions: Vec::new(),
        }
    }
}

/// Where the voxels of a header live and how many bytes they take, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The array shape, `dim[1..=dim[0]]`, each at least 1.
    pub shape: Vec<usize>,
    /// The voxel type.
    pub datatype: DataType,
    /// Number of voxels (product of `shape`).
    pub voxels: usize,
    /// Bytes of voxel data (`voxels` × bytes per voxel).
    pub bytes: usize,
    /// Byte offset of the voxels in the data file.
    pub offset: u64,
}

impl Layout {
    /// `99x117x95 int16 voxels (2201310 bytes)`: what the header describes.
    pub fn describe(&self) -> String {
        format!("{} ({} bytes)", self.describe_voxels(), self.bytes)
    }

    /// `99x117x95 int16 voxels`.
    pub fn describe_voxels(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        format!("{} {} voxels", dims.join("x"), self.datatype)
    }
}

/// Reads fields of a header block in its byte order; every offset is within the block.
struct Fields<'a> {
    bytes: &'a [u8],
    endian: Endian,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn i16(&self, at: usize) -> i16 {
        let a = self.array::<2>(at);
        match self.endian {
            Endian::Little => i16::from_le_bytes(a),
            Endian::Big => i16::from_be_bytes(a),
        }
    }
    fn i32(&self, at: usize) -> i32 {
        let a = self.array::<4>(at);
        match self.endian {
            Endian::Little => i32::from_le_bytes(a),
            Endian::Big => i32::from_be_bytes(a),
        }
    }
    fn i64(&self, at: usize) -> i64 {
        let a = self.array::<8>(at);
        match self.endian {
            Endian::Little => i64::from_le_bytes(a),
            Endian::Big => i64::from_be_bytes(a),
        }
    }
    fn f32(&self, at: usize) -> f64 {
        let a = self.array::<4>(at);
        f64::from(match self.endian {
            Endian::Little => f32::from_le_bytes(a),
            Endian::Big => f32::from_be_bytes(a),
        })
    }
    fn f64(&self, at: usize) -> f64 {
        let a = self.array::<8>(at);
        match self.endian {
            Endian::Little => f64::from_le_bytes(a),
            Endian::Big => f64::from_be_bytes(a),
        }
    }
    fn u8(&self, at: usize) -> u8 {
        self.bytes.get(at).copied().unwrap_or(0)
    }
    fn text(&self, at: usize, len: usize) -> Vec<u8> {
        let raw = self.bytes.get(at..at + len).unwrap_or(&[]);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        raw[..end].to_vec()
    }
}

/// How many header bytes a file starting with `first4` needs (348 or 540), and its byte
/// order, from `sizeof_hdr`.
///
/// # Errors
/// Neither 348 nor 540 in either byte order, with the values found.
pub fn sniff(first4: [u8; 4]) -> Result<(usize, Endian), String> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    match (le, be) {
        (348, _) => Ok((NIFTI1_HEADER_SIZE, Endian::Little)),
        (_, 348) => Ok((NIFTI1_HEADER_SIZE, Endian::Big)),
        (540, _) => Ok((NIFTI2_HEADER_SIZE, Endian::Little)),
        (_, 540) => Ok((NIFTI2_HEADER_SIZE, Endian::Big)),
        _ => Err(format!(
            "not a NIfTI or Analyze header: the first 4 bytes (sizeof_hdr) read {le} little-endian / {be} \
             big-endian{}, expected 348 (NIfTI-1, Analyze 7.5) or 540 (NIfTI-2)",
            printable(&first4).map(|t| format!(" (text \"{t}\")")).unwrap_or_default()
        )),
    }
}

/// The bytes as text when they are all printable ASCII (helps name a text file).
fn printable(bytes: &[u8]) -> Option<String> {
    bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\n' || *b == b'\r' || *b == b'\t')
        .then(|| bytes.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect())
}

impl NiftiHeader {
    /// Decodes a header block: 348 bytes (NIfTI-1 or Analyze 7.5) or 540 (NIfTI-2), in the
    /// byte order `sizeof_hdr` shows. Extensions are not part of the block.
    ///
    /// # Errors
    /// A block shorter than the header it announces, a `sizeof_hdr` that is neither 348
    /// nor 540, or a 540-byte header without the NIfTI-2 magic.
    pub fn decode(block: &[u8]) -> Result<NiftiHeader, String> {
        let first4: [u8; 4] = match block.get(..4) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => {
                return Err(format!(
                    "{} bytes is too short for a header: expected 348 (NIfTI-1, Analyze 7.5) or 540 (NIfTI-2)",
                    block.len()
                ))
            }
        };
        let (size, endian) = sniff(first4)?;
        if block.len() < size {
            return Err(format!(
                "the header is cut short: sizeof_hdr says {size} bytes, the file holds {}",
                block.len()
            ));
        }
        let f = Fields { bytes: &block[..size], endian };
        if size == NIFTI2_HEADER_SIZE {
            Self::decode_nifti2(&f)
        } else {
            Ok(Self::decode_nifti1(&f))
        }
    }

    fn decode_nifti1(f: &Fields<'_>) -> NiftiHeader {
        let magic_bytes = f.array::<4>(344);
        let magic = match &magic_bytes {
            b"n+1\0" => "n+1",
            b"ni1\0" => "ni1",
            _ => "",
        };
        let format = if magic.is_empty() { Format::Analyze75 } else { Format::Nifti1 };
        let analyze = format == Format::Analyze75;
        let dim: [i64; 8] = std::array::from_fn(|i| i64::from(f.i16(40 + 2 * i)));
        let pixdim: [f64; 8] = std::array::from_fn(|i| f.f32(76 + 4 * i));
        let row = |at: usize| -> [f64; 4] { std::array::from_fn(|i| f.f32(at + 4 * i)) };
        NiftiHeader {
            format,
            endian: f.endian,
            magic: magic.to_owned(),
            dim_info: f.u8(39),
            dim,
            intent_p1: f.f32(56),
            intent_p2: f.f32(60),
            intent_p3: f.f32(64),
            intent_code: i32::from(f.i16(68)),
            datatype: i32::from(f.i16(70)),
            bitpix: i32::from(f.i16(72)),
            slice_start: i64::from(f.i16(74)),
            pixdim,
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            slice_end: i64::from(f.i16(120)),
            slice_code: i32::from(f.u8(122)),
            xyzt_units: i32::from(f.u8(123)),
            cal_max: f.f32(124),
            cal_min: f.f32(128),
            slice_duration: f.f32(132),
            toffset: f.f32(136),
            glmax: i64::from(f.i32(140)),
            glmin: i64::from(f.i32(144)),
            descrip: f.text(148, 80),
            aux_file: f.text(228, 24),
            qform_code: if analyze { 0 } else { i32::from(f.i16(252)) },
            sform_code: if analyze { 0 } else { i32::from(f.i16(254)) },
            quatern_b: f.f32(256),
            quatern_c: f.f32(260),
            quatern_d: f.f32(264),
            qoffset_x: f.f32(268),
            qoffset_y: f.f32(272),
            qoffset_z: f.f32(276),
            srow_x: row(280),
            srow_y: row(296),
            srow_z: row(312),
            intent_name: f.text(328, 16),
            spm_origin: if analyze { [f.i16(253), f.i16(255), f.i16(257)] } else { [0; 3] },
            extensions: Vec::new(),
        }
    }

    fn decode_nifti2(f: &Fields<'_>) -> Result<NiftiHeader, String> {
        let magic_bytes = f.array::<8>(4);
        let magic = match &magic_bytes[..4] {
            b"n+2\0" => "n+2",
            b"ni2\0" => "ni2",
            _ => {
                return Err(format!(
                    "sizeof_hdr is 540 (NIfTI-2) but the magic is {:?}, expected \"n+2\" or \"ni2\"",
                    String::from_utf8_lossy(&magic_bytes[..4]).trim_end_matches('\0')
                ))
            }
        };
        let dim: [i64; 8] = std::array::from_fn(|i| f.i64(16 + 8 * i));
        let pixdim: [f64; 8] = std::array::from_fn(|i| f.f64(104 + 8 * i));
        let row = |at: usize| -> [f64; 4] { std::array::from_fn(|i| f.f64(at + 8 * i)) };
        Ok(NiftiHeader {
            format: Format::Nifti2,
            endian: f.endian,
            magic: magic.to_owned(),
            datatype: i32::from(f.i16(12)),
            bitpix: i32::from(f.i16(14)),
            dim,
            intent_p1: f.f64(80),
            intent_p2: f.f64(88),
            intent_p3: f.f64(96),
            pixdim,
            // An i64 offset; as f64 it stays exact below 2^53, far beyond any file.
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            cal_max: f.f64(192),
            cal_min: f.f64(200),
            slice_duration: f.f64(208),
            toffset: f.f64(216),
            slice_start: f.i64(224),
            slice_end: f.i64(232),
            descrip: f.text(240, 80),
            aux_file: f.text(320, 24),
            qform_code: f.i32(344),
            sform_code: f.i32(348),
            quatern_b: f.f64(352),
            quatern_c: f.f64(360),
            quatern_d: f.f64(368),
            qoffset_x: f.f64(376),
            qoffset_y: f.f64(384),
            qoffset_z: f.f64(392),
            srow_x: row(400),
            srow_y: row(432),
            srow_z: row(464),
            slice_code: f.i32(496),
            xyzt_units: f.i32(500),
            intent_code: f.i32(504),
            intent_name: f.text(508, 16),
            dim_info: f.u8(524),
            glmax: 0,
            glmin: 0,
            spm_origin: [0; 3],
            extensions: Vec::new(),
        })
    }

    /// Bytes of this header's layout on disk (348 or 540).
    pub fn header_size(&self) -> usize {
        match self.format {
            Format::Nifti2 => NIFTI2_HEADER_SIZE,
            _ => NIFTI1_HEADER_SIZE,
        }
    }

    /// Whether the voxels live in a separate `.img` file (magic `ni1`/`ni2`, or Analyze).
    pub fn is_pair(&self) -> bool {
        matches!(self.magic.as_str(), "ni1" | "ni2" | "")
    }

    /// The array shape `dim[1..=dim[0]]`, unchecked (see [`NiftiHeader::layout`]).
    pub fn shape(&self) -> Vec<i64> {
        let n = self.dim[0].clamp(0, 7) as usize;
        self.dim[1..=n].to_vec()
    }

    /// Checks what the header says about the voxels — number of dimensions, sizes,
    /// datatype and bitpix, offset — and computes the array layout, without overflow.
    ///
    /// # Errors
    /// `dim[0]` outside 1..=7, a size below 1, a voxel count or byte count that does not
    /// fit in memory addresses, an unsupported or unknown datatype, a bitpix that
    /// disagrees with the datatype, or a negative, fractional or non-finite vox_offset.
    pub fn layout(&self) -> Result<Layout, String> {
        let ndim = self.dim[0];
        if !(1..=7).contains(&ndim) {
            return Err(format!("dim[0] (number of dimensions) is {ndim}, expected 1 to 7"));
        }
        let dims = &self.dim[1..=ndim as usize];
        if let Some(bad) = dims.iter().position(|&d| d < 1) {
            return Err(format!(
                "dim[{}] is {}, expected every size of dim[1..={ndim}] = {dims:?} to be at least 1",
                bad + 1,
                dims[bad]
            ));
        }
        let datatype = DataType::from_code(self.datatype)?;
        let bits = 8 * datatype.size() as i32;
        if self.bitpix != bits {
            return Err(format!(
                "bitpix is {} but datatype {} ({}) has {bits} bits per voxel",
                self.bitpix,
                self.datatype,
                datatype.name()
            ));
        }
        let too_big = || {
            format!(
                "dims {} of {} make more bytes than memory can address",
                dims.iter().map(ToString::to_string).collect::<Vec<_>>().join("x"),
                datatype.name()
            )
        };
        let mut voxels: usize = 1;
        let mut shape = Vec::with_capacity(dims.len());
        for &d in dims {
            let d = usize::try_from(d).map_err(|_| too_big())?;
            voxels = voxels.checked_mul(d).ok_or_else(too_big)?;
            shape.push(d);
        }
        let bytes = voxels.checked_mul(datatype.size()).filter(|&b| b <= isize::MAX as usize).ok_or_else(too_big)?;
        let v = self.vox_offset;
        if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > 2f64.powi(62) {
            return Err(format!("vox_offset is {v}, expected a whole number of bytes, at least 0"));
        }
        Ok(Layout { shape, datatype, voxels, bytes, offset: v as u64 })
    }

    /// The effective scaling `(slope, inter)`, as nibabel reads it: `None` when scl_slope
    /// is 0, NaN or infinite (no scaling at all, the intercept ignored) or when it is
    /// exactly 1 with intercept 0. For Analyze (SPM2) a zero slope falls back to
    /// `cal_min/cal_max` over `glmin/glmax` when both ranges are non-zero, and a
    /// non-finite intercept counts as 0.
    ///
    /// # Errors
    /// NIfTI: a valid slope with a NaN or infinite intercept (nibabel refuses it too).
    pub fn scaling(&self) -> Result<Option<(f64, f64)>, String> {
        let (slope, inter) = (self.scl_slope, self.scl_inter);
        let effective = if slope != 0.0 && slope.is_finite() {
            if inter.is_finite() {
                Some((slope, inter))
            } else if self.format == Format::Analyze75 {
                Some((slope, 0.0))
            } else {
                return Err(format!("scl_slope is {slope} but scl_inter is {inter}, expected a finite intercept"));
            }
        } else if self.format == Format::Analyze75 {
            let unscaled = (self.glmax - self.glmin) as f64;
            let scaled = self.cal_max - self.cal_min;
            (unscaled != 0.0 && scaled != 0.0 && scaled.is_finite()).then(|| {
                let s = scaled / unscaled;
                (s, self.cal_min - s * self.glmin as f64)
            })
        } else {
            None
        };
        Ok(effective.filter(|&(s, i)| !(s == 1.0 && i == 0.0)))
    }

    /// The voxel size `pixdim[1..=3]` as stored.
    pub fn voxel_size(&self) -> [f64; 3] {
        [self.pixdim[1], self.pixdim[2], self.pixdim[3]]
    }

    /// The spatial unit from `xyzt_units` (`mm`, `m`, `um`, or `unknown`).
    pub fn space_unit(&self) -> &'static str {
        match self.xyzt_units & 0x07 {
            1 => "m",
            2 => "mm",
            3 => "um",
            _ => "unknown",
        }
    }

    /// Encodes the header as NIfTI-1 (348 bytes, little-endian), with the given magic
    /// (`n+1` or `ni1`), followed by the 4-byte extension flag (0: no extensions).
    ///
    /// # Errors
    /// A dimension that does not fit NIfTI-1's 16-bit sizes.
    pub fn encode_nifti1(&self, magic: &str) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; NIFTI1_HEADER_SIZE + 4];
        let fit16 = |v: i64, what: &str| -> Result<i16, String> {
            i16::try_from(v).map_err(|_| format!("{what} is {v}, which does not fit NIfTI-1's int16 field"))
        };
        let mut w = Writer { b: &mut b };
        w.i32(0, NIFTI1_HEADER_SIZE as i32);
        w.u8(38, b'r');
        w.u8(39, self.dim_info);
        for (i, &d) in self.dim.iter().enumerate() {
            w.i16(40 + 2 * i, fit16(d, &format!("dim[{i}]"))?);
        }
        w.f32(56, self.intent_p1);
        w.f32(60, self.intent_p2);
        w.f32(64, self.intent_p3);
        w.i16(68, fit16(i64::from(self.intent_code), "intent_code")?);
        w.i16(70, fit16(i64::from(self.datatype), "datatype")?);
        w.i16(72, fit16(i64::from(self.bitpix), "bitpix")?);
        w.i16(74, fit16(self.slice_start, "slice_start")?);
        for (i, &p) in self.pixdim.iter().enumerate() {
            w.f32(76 + 4 * i, p);
        }
        w.f32(108, self.vox_offset);
        w.f32(112, self.scl_slope);
        w.f32(116, self.scl_inter);
        w.i16(120, fit16(self.slice_end, "slice_end")?);
        w.u8(122, self.slice_code.clamp(0, 255) as u8);
        w.u8(123, self.xyzt_units.clamp(0, 255) as u8);
        w.f32(124, self.cal_max);
        w.f32(128, self.cal_min);
        w.f32(132, self.slice_duration);
        w.f32(136, self.toffset);
        w.text(148, 80, &self.descrip);
        w.text(228, 24, &self.aux_file);
        w.i16(252, fit16(i64::from(self.qform_code), "qform_code")?);
        w.i16(254, fit16(i64::from(self.sform_code), "sform_code")?);
        for (i, v) in [self.quatern_b, self.quatern_c, self.quatern_d, self.qoffset_x, self.qoffset_y, self.qoffset_z]
            .into_iter()
            .enumerate()
        {
            w.f32(256 + 4 * i, v);
        }
        for (r, row) in [self.srow_x, self.srow_y, self.srow_z].iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                w.f32(280 + 16 * r + 4 * c, v);
            }
        }
        w.text(328, 16, &self.intent_name);
        w.text(344, 4, magic.as_bytes());
        Ok(b)
    }

    /// Encodes the header as NIfTI-2 (540 bytes, little-endian) with magic `n+2` or
    /// `ni2`, followed by the 4-byte extension flag (0).
    pub fn encode_nifti2(&self, magic: &str) -> Vec<u8> {
        let mut b = vec![0u8; NIFTI2_HEADER_SIZE + 4];
        let mut w = Writer { b: &mut b };
        w.i32(0, NIFTI2_HEADER_SIZE as i32);
        w.text(4, 4, magic.as_bytes());
        w.bytes(8, &[b'\r', b'\n', 0x1a, b'\n']);
        w.i16(12, self.datatype as i16);
        w.i16(14, self.bitpix as i16);
        for (i, &d) in self.dim.iter().enumerate() {
            w.i64(16 + 8 * i, d);
        }
        w.f64(80, self.intent_p1);
        w.f64(88, self.intent_p2);
        w.f64(96, self.intent_p3);
        for (i, &p) in self.pixdim.iter().enumerate() {
            w.f64(104 + 8 * i, p);
        }
        w.i64(168, self.vox_offset as i64);
        w.f64(176, self.scl_slope);
        w.f64(184, self.scl_inter);
        w.f64(192, self.cal_max);
        w.f64(200, self.cal_min);
        w.f64(208, self.slice_duration);
        w.f64(216, self.toffset);
        w.i64(224, self.slice_start);
        w.i64(232, self.slice_end);
        w.text(240, 80, &self.descrip);
        w.text(320, 24, &self.aux_file);
        w.i32(344, self.qform_code);
        w.i32(348, self.sform_code);
        for (i, v) in [self.quatern_b, self.quatern_c, self.quatern_d, self.qoffset_x, self.qoffset_y, self.qoffset_z]
            .into_iter()
            .enumerate()
        {
            w.f64(352 + 8 * i, v);
        }
        for (r, row) in [self.srow_x, self.srow_y, self.srow_z].iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                w.f64(400 + 32 * r + 8 * c, v);
            }
        }
        w.i32(496, self.slice_code);
        w.i32(500, self.xyzt_units);
        w.i32(504, self.intent_code);
        w.text(508, 16, &self.intent_name);
        w.u8(524, self.dim_info);
        b
    }
}

/// Little-endian field writer over a zeroed block; offsets are within the block.
struct Writer<'a> {
    b: &'a mut [u8],
}

impl Writer<'_> {
    fn bytes(&mut self, at: usize, v: &[u8]) {
        if let Some(dst) = self.b.get_mut(at..at + v.len()) {
            dst.copy_from_slice(v);
        }
    }
    fn u8(&mut self, at: usize, v: u8) {
        self.bytes(at, &[v]);
    }
    fn i16(&mut self, at: usize, v: i16) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn i32(&mut self, at: usize, v: i32) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn i64(&mut self, at: usize, v: i64) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn f32(&mut self, at: usize, v: f64) {
        self.bytes(at, &(v as f32).to_le_bytes());
    }
    fn f64(&mut self, at: usize, v: f64) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn text(&mut self, at: usize, len: usize, v: &[u8]) {
        let n = v.len().min(len);
        self.bytes(at, &v[..n]);
    }
}

/// Splits the bytes between the header and the voxels into extensions (NIfTI-1/2: a
/// 4-byte flag whose first byte is non-zero, then `esize`, `ecode`, content, …). Stops
/// quietly at the first malformed entry: extensions never prevent reading the voxels.
pub fn parse_extensions(between: &[u8], endian: Endian) -> Vec<Extension> {
    let mut out = Vec::new();
    if between.len() < 4 || between[0] == 0 {
        return out;
    }
    let f = Fields { bytes: between, endian };
    let mut at = 4;
    while at + 8 <= between.len() {
        let esize = f.i32(at);
        let code = f.i32(at + 4);
        let Ok(size) = usize::try_from(esize) else { break };
        if size < 8 || at + size > between.len() {
            break;
        }
        out.push(Extension { code, data: between[at + 8..at + size].to_vec() });
        at += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nifti1_and_nifti2_encode_and_decode_to_the_same_header() {
        let mut h = NiftiHeader {
            dim: [3, 4, 5, 6, 1, 1, 1, 1],
            datatype: 4,
            bitpix: 16,
            pixdim: [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            scl_slope: 0.5,
            scl_inter: -3.0,
            qform_code: 1,
            sform_code: 2,
            quatern_c: 1.0,
            qoffset_x: 5.0,
            srow_x: [-2.0, 0.0, 0.0, 5.0],
            descrip: b"hello".to_vec(),
            ..NiftiHeader::default()
        };
        let back = NiftiHeader::decode(&h.encode_nifti1("n+1").unwrap()).unwrap();
        assert_eq!(back, h);
        h.format = Format::Nifti2;
        h.magic = "n+2".into();
        h.vox_offset = 544.0;
        let back = NiftiHeader::decode(&h.encode_nifti2("n+2")).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.layout().unwrap().bytes, 4 * 5 * 6 * 2);
    }

    #[test]
    fn big_endian_headers_decode() {
        let h = NiftiHeader { dim: [3, 2, 2, 2, 1, 1, 1, 1], ..NiftiHeader::default() };
        let mut b = h.encode_nifti1("n+1").unwrap();
        // Swap the fields this test looks at into big-endian.
        b[0..4].copy_from_slice(&348i32.to_be_bytes());
        for i in 0..8 {
            let v = i16::from_le_bytes([b[40 + 2 * i], b[41 + 2 * i]]);
            b[40 + 2 * i..42 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        let back = NiftiHeader::decode(&b).unwrap();
        assert_eq!(back.endian, Endian::Big);
        assert_eq!(back.dim, h.dim);
    }

    #[test]
    fn layout_refuses_what_cannot_be_read() {
        let ok = NiftiHeader { dim: [3, 2, 2, 2, 1, 1, 1, 1], ..NiftiHeader::default() };
        assert_eq!(ok.layout().unwrap().shape, vec![2, 2, 2]);
        let bad = |h: NiftiHeader, want: &str| {
            let e = h.layout().unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        bad(NiftiHeader { dim: [0; 8], ..ok.clone() }, "dim[0] (number of dimensions) is 0");
        bad(NiftiHeader { dim: [3, 2, 0, 2, 1, 1, 1, 1], ..ok.clone() }, "dim[2] is 0");
        bad(NiftiHeader { dim: [3, 2, -5, 2, 1, 1, 1, 1], ..ok.clone() }, "dim[2] is -5");
        bad(NiftiHeader { datatype: 32, ..ok.clone() }, "datatype 32 (complex64) is not supported");
        bad(NiftiHeader { datatype: 128, ..ok.clone() }, "datatype 128 (RGB24)");
        bad(NiftiHeader { datatype: 3, ..ok.clone() }, "unknown datatype code 3");
        bad(NiftiHeader { bitpix: 16, ..ok.clone() }, "bitpix is 16 but datatype 2 (uint8) has 8 bits");
        bad(NiftiHeader { vox_offset: -1.0, ..ok.clone() }, "vox_offset is -1");
        bad(NiftiHeader { vox_offset: f64::NAN, ..ok.clone() }, "vox_offset is NaN");
        let huge = NiftiHeader { format: Format::Nifti2, dim: [7, i64::MAX, 2, 2, 2, 2, 2, 2], ..ok.clone() };
        bad(huge, "more bytes than memory can address");
    }

    #[test]
    fn scaling_follows_nibabel() {
        let h = NiftiHeader::default();
        let s = |slope: f64, inter: f64| NiftiHeader { scl_slope: slope, scl_inter: inter, ..h.clone() }.scaling();
        assert_eq!(s(1.0, 0.0), Ok(None));
        assert_eq!(s(0.0, 100.0), Ok(None));
        assert_eq!(s(f64::NAN, 100.0), Ok(None));
        assert_eq!(s(f64::INFINITY, 1.0), Ok(None));
        assert_eq!(s(2.0, 1.0), Ok(Some((2.0, 1.0))));
        assert!(s(2.0, f64::NAN).unwrap_err().contains("scl_inter is NaN"));
        let spm = NiftiHeader {
            format: Format::Analyze75,
            scl_slope: 0.0,
            glmax: 110,
            glmin: 10,
            cal_max: 0.8,
            cal_min: 0.2,
            ..h.clone()
        };
        let (slope, inter) = spm.scaling().unwrap().unwrap();
        assert!((slope - 0.006).abs() < 1e-12 && (inter - (0.2 - 0.06)).abs() < 1e-12);
    }

    #[test]
    fn sniff_names_a_text_file() {
        let e = sniff(*b"hell").unwrap_err();
        assert!(e.contains("text \"hell\"") && e.contains("expected 348"), "{e}");
    }

    #[test]
    fn extensions_are_split() {
        let mut between = vec![1u8, 0, 0, 0];
        between.extend_from_slice(&16i32.to_le_bytes());
        between.extend_from_slice(&6i32.to_le_bytes());
        between.extend_from_slice(b"comment\0");
        let ext = parse_extensions(&between, Endian::Little);
        assert_eq!(ext, vec![Extension { code: 6, data: b"comment\0".to_vec() }]);
        assert!(parse_extensions(&[0, 0, 0, 0], Endian::Little).is_empty());
    }
}
