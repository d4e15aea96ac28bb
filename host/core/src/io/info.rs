//! What a user checks first about an image (as `nib-ls` or `fslinfo` show it): format,
//! shape, on-disk data type, scaling, voxel size, orientation, affine and value
//! statistics, summarised from an image read ([`FileInfo`]). `niftyhost info` prints it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::nifti::affine::xform_name;
use super::nifti::read::{for_each_f64, RawImage};
use super::nifti::{axcodes_string, best_affine, Affine};

/// Value statistics over every voxel (NaN and infinities counted, not summed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Voxels (all channels/volumes).
    pub voxels: usize,
    /// Smallest finite value (null when there is none).
    pub min: f64,
    /// Largest finite value.
    pub max: f64,
    /// Mean of the finite values.
    pub mean: f64,
    /// Standard deviation of the finite values (population).
    pub std: f64,
    /// Sum of the finite values.
    pub sum: f64,
    /// Voxels that are NaN or infinite.
    pub nan_count: usize,
    /// Finite voxels that are not 0.
    pub nonzero_count: usize,
}

impl Stats {
    /// The statistics of `values` (`get_fdata()` semantics: scaled, NaN-aware).
    pub fn of(values: &[f64]) -> Stats {
        Stats::of_chunks(&|visit| visit(values))
    }

    /// The statistics of an image's on-disk voxels, scaled as [`Stats::of`] sees them
    /// after `read_image`, but computed a chunk at a time from the stored type: no `f64`
    /// (or `f32`) copy of the volume is made. The results equal [`Stats::of`]'s exactly
    /// (same values, same order of summation).
    pub fn of_stored(image: &RawImage) -> Stats {
        let (datatype, endian, scaling) = (image.layout.datatype, image.header.endian, image.scaling);
        Stats::of_chunks(&|visit| for_each_f64(&image.bytes, datatype, endian, scaling, visit))
    }

    /// The statistics of the values `each` visits, chunk by chunk, in order; `each` is
    /// called twice (the standard deviation needs the mean first).
    fn of_chunks(each: &dyn Fn(&mut dyn FnMut(&[f64]))) -> Stats {
        let (mut sum, mut n, mut nonzero, mut voxels) = (0.0, 0usize, 0usize, 0usize);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        each(&mut |values| {
            voxels += values.len();
            for &v in values.iter().filter(|v| v.is_finite()) {
                sum += v;
                n += 1;
                min = min.min(v);
                max = max.max(v);
                nonzero += usize::from(v != 0.0);
            }
        });
        let mean = if n > 0 { sum / n as f64 } else { f64::NAN };
        let mut squares = 0.0;
        each(&mut |values| {
            for v in values.iter().filter(|v| v.is_finite()) {
                squares += (v - mean) * (v - mean);
            }
        });
        let var = squares / n as f64;
        let (min, max) = if n > 0 { (min, max) } else { (f64::NAN, f64::NAN) };
        Stats { voxels, min, max, mean, std: var.sqrt(), sum, nan_count: voxels - n, nonzero_count: nonzero }
    }
}

/// One header extension, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionInfo {
    /// `ecode`.
    pub code: i32,
    /// Bytes of content.
    pub bytes: usize,
}

/// What `info` reports about one readable file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    /// The file named.
    pub file: PathBuf,
    /// The header file when header and voxels are a pair.
    pub header_file: Option<PathBuf>,
    /// The voxel file when header and voxels are a pair.
    pub image_file: Option<PathBuf>,
    /// `NIfTI-1`, `NIfTI-2` or `Analyze 7.5`.
    pub format: String,
    /// The header magic (`n+1`, `ni1`, `n+2`; empty for Analyze).
    pub magic: String,
    /// Whether the voxels are gzip-compressed.
    pub gzip: bool,
    /// `little-endian` or `big-endian`.
    pub byte_order: String,
    /// The array shape (`dim[1..=dim[0]]`).
    pub shape: Vec<usize>,
    /// On-disk data type (`uint8`, `int16`, `float32`, …).
    pub datatype: String,
    /// Its NIfTI code.
    pub datatype_code: i32,
    /// `bitpix`.
    pub bitpix: i32,
    /// `scl_slope` as stored.
    pub scl_slope: f64,
    /// `scl_inter` as stored.
    pub scl_inter: f64,
    /// Whether values are scaled (nibabel's rule: slope not 0/NaN/inf, and not 1 and 0).
    pub scaled: bool,
    /// Effective slope (1 when not scaled).
    pub slope: f64,
    /// Effective intercept (0 when not scaled).
    pub inter: f64,
    /// `pixdim[1..=ndim]` (voxel size, then e.g. the TR).
    pub voxel_size: Vec<f64>,
    /// Spatial unit from `xyzt_units`.
    pub space_unit: String,
    /// Axis codes of the affine (`RAS`, `LPS`, …).
    pub axcodes: String,
    /// The voxel-to-world affine nibabel would use.
    pub affine: Affine,
    /// Where it came from: `sform`, `qform` or `pixdim`.
    pub affine_source: String,
    /// `qform_code`.
    pub qform_code: i32,
    /// `sform_code`.
    pub sform_code: i32,
    /// `vox_offset`.
    pub vox_offset: f64,
    /// Header extensions.
    pub extensions: Vec<ExtensionInfo>,
    /// `descrip`.
    pub description: String,
    /// Value statistics after scaling.
    pub stats: Stats,
}

impl FileInfo {
    /// The report of an image read with [`read_raw`](super::nifti::read::read_raw), named
    /// `file`: the statistics come from the voxels in their stored type
    /// ([`Stats::of_stored`]).
    pub fn of(file: &Path, image: &RawImage) -> FileInfo {
        let h = &image.header;
        let (slope, inter) = image.scaling.unwrap_or((1.0, 0.0));
        let (affine, affine_source) = best_affine(h);
        FileInfo {
            file: file.to_owned(),
            header_file: image.files.is_pair().then(|| image.files.header.clone()),
            image_file: image.files.is_pair().then(|| image.files.image.clone()),
            format: h.format.to_string(),
            magic: h.magic.clone(),
            gzip: image.gzip,
            byte_order: h.endian.to_string(),
            shape: image.layout.shape.clone(),
            datatype: image.layout.datatype.name().to_owned(),
            datatype_code: h.datatype,
            bitpix: h.bitpix,
            scl_slope: h.scl_slope,
            scl_inter: h.scl_inter,
            scaled: image.scaling.is_some(),
            slope,
            inter,
            voxel_size: h.pixdim[1..=image.layout.shape.len()].to_vec(),
            space_unit: h.space_unit().to_owned(),
            axcodes: axcodes_string(&affine),
            affine,
            affine_source: affine_source.to_string(),
            qform_code: h.qform_code,
            sform_code: h.sform_code,
            vox_offset: h.vox_offset,
            extensions: h.extensions.iter().map(|e| ExtensionInfo { code: e.code, bytes: e.data.len() }).collect(),
            description: String::from_utf8_lossy(&h.descrip).into_owned(),
            stats: Stats::of_stored(image),
        }
    }
}

impl fmt::Display for FileInfo {
    /// The file, then one indented `key value` line per item.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[String]| v.join(" x ");
        let mut out = format!("{}\n", self.file.display());
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<12} {v}\n"));
        let mut container = vec![self.format.clone()];
        let name = |p: &Option<PathBuf>| {
            p.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        };
        container.push(match &self.image_file {
            Some(_) => format!("pair {} + {}", name(&self.header_file), name(&self.image_file)),
            None => "single file".to_owned(),
        });
        if self.gzip {
            container.push("gzip".to_owned());
        }
        container.push(self.byte_order.clone());
        line("format", container.join(", "));
        line("shape", join(&self.shape.iter().map(ToString::to_string).collect::<Vec<_>>()));
        line("datatype", format!("{} (code {}, {} bits)", self.datatype, self.datatype_code, self.bitpix));
        line(
            "scaling",
            if self.scaled {
                format!("value = stored x {} + {}", num(self.slope), num(self.inter))
            } else {
                format!("none (scl_slope {}, scl_inter {})", num(self.scl_slope), num(self.scl_inter))
            },
        );
        let unit = if self.space_unit == "unknown" { String::new() } else { format!(" {}", self.space_unit) };
        let size: Vec<String> = self.voxel_size.iter().take(3).map(|&v| num(v)).collect();
        line("voxel size", format!("{}{unit}", join(&size)));
        if self.voxel_size.len() > 3 {
            let rest: Vec<String> = self.voxel_size[3..].iter().map(|&v| num(v)).collect();
            line("pixdim[4..]", rest.join(" "));
        }
        line("orientation", self.axcodes.clone());
        line(
            "affine",
            format!(
                "from the {} (sform_code {} {}, qform_code {} {})",
                self.affine_source,
                self.sform_code,
                xform_name(self.sform_code),
                self.qform_code,
                xform_name(self.qform_code)
            ),
        );
        let cells: Vec<Vec<String>> = self.affine[..3].iter().map(|r| r.iter().map(|&v| num(v)).collect()).collect();
        let width = cells.iter().flatten().map(String::len).max().unwrap_or(1);
        for row in &cells {
            let row: Vec<String> = row.iter().map(|c| format!("{c:>width$}")).collect();
            line("", format!("[ {} ]", row.join("  ")));
        }
        let usual_offset = if self.image_file.is_some() { 0.0 } else { 352.0 };
        if !self.extensions.is_empty() || self.vox_offset != usual_offset {
            let ext: Vec<String> =
                self.extensions.iter().map(|e| format!("code {} ({} bytes)", e.code, e.bytes)).collect();
            line(
                "data",
                format!(
                    "from byte {}{}",
                    num(self.vox_offset),
                    if ext.is_empty() { String::new() } else { format!("; extensions: {}", ext.join(", ")) }
                ),
            );
        }
        if !self.description.is_empty() {
            line("description", self.description.clone());
        }
        let s = &self.stats;
        line(
            "values",
            format!(
                "min {}  max {}  mean {}  std {}  sum {}",
                num(s.min),
                num(s.max),
                num(s.mean),
                num(s.std),
                num(s.sum)
            ),
        );
        line("", format!("{} voxels, {} non-zero, {} NaN/inf", s.voxels, s.nonzero_count, s.nan_count));
        f.write_str(&out)
    }
}

/// A number for people: integers as such, others with 6 significant digits.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if (1e-4..1e7).contains(&a) {
        let digits = (5 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.digits$}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    } else {
        format!("{v:.5e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-98.0), "-98");
        assert_eq!(num(0.9882352948188782), "0.988235");
        assert_eq!(num(3100.76171875), "3100.76");
        assert_eq!(num(2.1e-33), "2.10000e-33");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(-0.0), "0");
    }

    #[test]
    fn statistics_skip_nan_and_count_it() {
        let s = Stats::of(&[1.0, f64::NAN, 3.0, 0.0]);
        assert_eq!((s.min, s.max, s.sum, s.nan_count, s.nonzero_count, s.voxels), (0.0, 3.0, 4.0, 1, 2, 4));
        assert!((s.mean - 4.0 / 3.0).abs() < 1e-12);
        let empty = Stats::of(&[f64::NAN]);
        assert!(empty.min.is_nan() && empty.mean.is_nan());
    }
}
