//! Subjects: files of each input section matched by subject id, loaded and whitened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{InputSection, Settings};
use crate::io::{read_volume, IoError, Volume};

/// Data that cannot be used; names the file, section or subject.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A section found no file.
    #[error("input section `{section}` found no image in {place}")]
    NoFiles {
        /// The section.
        section: String,
        /// Where it looked.
        place: String,
    },
    /// A subject lacks a modality.
    #[error("subject `{subject}` has no file in input section `{section}` (it has one in `{other}`)")]
    Missing {
        /// The subject id.
        subject: String,
        /// The section without a file for it.
        section: String,
        /// A section that has one.
        other: String,
    },
    /// Image and label (or two modalities) do not agree.
    #[error("subject `{subject}`: {message}")]
    Mismatch {
        /// The subject id.
        subject: String,
        /// What disagrees, with both values.
        message: String,
    },
    /// A CSV list is malformed.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was expected.
        message: String,
    },
}

/// The files of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The id shared by its files.
    pub id: String,
    /// One file per image section, in `segmentation.image` order.
    pub images: Vec<PathBuf>,
    /// The label file, when labels are used.
    pub label: Option<PathBuf>,
}

const EXTENSIONS: &[&str] = &[".nii.gz", ".nii", ".hdr.gz", ".hdr"];

fn strip_extension(name: &str) -> Option<&str> {
    EXTENSIONS.iter().find_map(|e| name.strip_suffix(e))
}

/// The subject id of a file: its name without extension, the section's
/// `filename_contains` parts and `filename_removefromid`, trimmed of separators.
fn subject_id(stem: &str, section: &InputSection) -> String {
    let mut id = stem.to_owned();
    for part in section.filename_contains.iter().chain(std::iter::once(&section.filename_removefromid)) {
        if !part.is_empty() {
            id = id.replacen(part.as_str(), "", 1);
        }
    }
    let id = id.trim_matches(|c: char| c == '_' || c == '-' || c == '.' || c == ' ');
    if id.is_empty() {
        stem.to_owned()
    } else {
        id.to_owned()
    }
}

fn read_csv(path: &Path) -> Result<BTreeMap<String, PathBuf>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError { path: path.to_owned(), message: e.to_string() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let csv_error =
            |message: &str| DataError::Csv { path: path.to_owned(), line: n + 1, message: message.to_owned() };
        let (id, file) = line.split_once(',').ok_or_else(|| csv_error("expected `subject_id,path`"))?;
        if n == 0 && id.trim() == "subject_id" {
            continue;
        }
        files.insert(id.trim().to_owned(), base.join(file.trim()));
    }
    Ok(files)
}

/// The files of one input section, by subject id.
fn section_files(
    config_dir: &Path,
    name: &str,
    section: &InputSection,
) -> Result<BTreeMap<String, PathBuf>, DataError> {
    if !section.csv_file.is_empty() {
        return read_csv(&config_dir.join(&section.csv_file));
    }
    let mut files = BTreeMap::new();
    for dir in section.path_to_search.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let dir = config_dir.join(dir);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| IoError { path: dir.clone(), message: format!("cannot list folder: {e}") })?;
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = strip_extension(name) else { continue };
            let wanted = section.filename_contains.iter().all(|p| name.contains(p.as_str()))
                && !section.filename_not_contains.iter().any(|p| !p.is_empty() && name.contains(p.as_str()));
            if wanted {
                files.insert(subject_id(stem, section), path);
            }
        }
    }
    if files.is_empty() {
        return Err(DataError::NoFiles {
            section: name.to_owned(),
            place: format!("path_to_search = \"{}\"", section.path_to_search),
        });
    }
    Ok(files)
}

/// Matches the files of the image sections (and of the label section when
/// `with_labels`) by subject id. Relative paths are taken from `base_dir`.
///
/// # Errors
/// A section without files, or a subject missing from one of the sections.
pub fn find_subjects(settings: &Settings, base_dir: &Path, with_labels: bool) -> Result<Vec<Subject>, DataError> {
    let seg = &settings.segmentation;
    let mut sections: Vec<&String> = seg.image.iter().collect();
    if with_labels {
        sections.push(&seg.label);
    }
    let found: Vec<(&String, BTreeMap<String, PathBuf>)> = sections
        .iter()
        .map(|name| Ok((*name, section_files(base_dir, name, &settings.input[name.as_str()])?)))
        .collect::<Result<_, DataError>>()?;
    let (first_name, first) = &found[0];
    for (name, files) in &found[1..] {
        let missing = |a: &BTreeMap<String, PathBuf>, b: &BTreeMap<String, PathBuf>| {
            a.keys().find(|id| !b.contains_key(*id)).cloned()
        };
        if let Some(id) = missing(first, files) {
            return Err(DataError::Missing { subject: id, section: (*name).clone(), other: (*first_name).clone() });
        }
        if let Some(id) = missing(files, first) {
            return Err(DataError::Missing { subject: id, section: (*first_name).clone(), other: (*name).clone() });
        }
    }
    Ok(first
        .keys()
        .map(|id| Subject {
            id: id.clone(),
            images: found[..seg.image.len()].iter().map(|(_, f)| f[id].clone()).collect(),
            label: with_labels.then(|| found.last().expect("label section")).map(|(_, f)| f[id].clone()),
        })
        .collect())
}

/// A subject's volumes, ready for sampling.
#[derive(Debug, Clone)]
pub struct SubjectVolumes {
    /// The subject id.
    pub id: String,
    /// Image channels stacked: `[C, k, j, i]` in memory.
    pub image: Vec<f32>,
    /// Number of image channels.
    pub channels: usize,
    /// Spatial size `(i, j, k)`.
    pub dims: [usize; 3],
    /// Labels `[k, j, i]`, when loaded.
    pub label: Option<Vec<f32>>,
    /// The first image's volume header (geometry of outputs).
    pub header: nifti::NiftiHeader,
}

/// Z-scores each channel in place (mean 0, standard deviation 1; a constant channel
/// becomes 0).
fn whiten(data: &mut [f32], voxels: usize) {
    for channel in data.chunks_mut(voxels) {
        let n = channel.len() as f64;
        let mean = channel.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = channel.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt();
        let scale = if std > 0.0 { 1.0 / std } else { 0.0 };
        for v in channel.iter_mut() {
            *v = ((*v as f64 - mean) * scale) as f32;
        }
    }
}

/// Reads a subject's images (and label), checks that they agree and whitens images.
///
/// # Errors
/// Unreadable files, NaN/Inf in images, shape mismatches, or labels outside
/// `0..num_classes` or not integral, naming the subject and file.
pub fn load_subject(subject: &Subject, num_classes: usize, whitening: bool) -> Result<SubjectVolumes, DataError> {
    let mismatch = |message: String| DataError::Mismatch { subject: subject.id.clone(), message };
    let volumes: Vec<Volume> = subject.images.iter().map(|p| read_volume(p)).collect::<Result<_, _>>()?;
    let first = &volumes[0];
    for v in &volumes[1..] {
        if v.dims != first.dims {
            return Err(mismatch(format!(
                "{} is {:?} but {} is {:?}",
                v.path.display(),
                v.dims,
                first.path.display(),
                first.dims
            )));
        }
    }
    let mut image: Vec<f32> = Vec::with_capacity(volumes.iter().map(|v| v.data.len()).sum());
    for v in &volumes {
        if let Some(bad) = v.data.iter().find(|x| !x.is_finite()) {
            return Err(mismatch(format!("{} contains a non-finite value ({bad})", v.path.display())));
        }
        image.extend_from_slice(&v.data);
    }
    let channels = volumes.iter().map(|v| v.channels).sum();
    if whitening {
        whiten(&mut image, first.voxels());
    }
    let label = match &subject.label {
        None => None,
        Some(path) => {
            let l = read_volume(path)?;
            if l.dims != first.dims || l.channels != 1 {
                return Err(mismatch(format!(
                    "label {} is {:?}x{} but image {} is {:?}",
                    path.display(),
                    l.dims,
                    l.channels,
                    first.path.display(),
                    first.dims
                )));
            }
            if let Some(bad) = l.data.iter().find(|&&v| v.fract() != 0.0 || v < 0.0 || v >= num_classes as f32) {
                return Err(mismatch(format!(
                    "label {} has value {bad}, expected integers in 0..{num_classes} (segmentation.num_classes)",
                    path.display()
                )));
            }
            Some(l.data)
        }
    };
    Ok(SubjectVolumes {
        id: subject.id.clone(),
        image,
        channels,
        dims: first.dims,
        label,
        header: first.header.clone(),
    })
}

/// Finds and loads every subject, in parallel.
///
/// # Errors
/// The first subject that cannot be found or loaded.
pub fn load_subjects(
    settings: &Settings,
    base_dir: &Path,
    with_labels: bool,
) -> Result<Vec<SubjectVolumes>, DataError> {
    use rayon::prelude::*;
    let subjects = find_subjects(settings, base_dir, with_labels)?;
    let (classes, whitening) = (settings.segmentation.num_classes, settings.network.whitening);
    subjects.par_iter().map(|s| load_subject(s, classes, whitening)).collect()
}
