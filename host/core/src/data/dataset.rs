//! Subjects: files of each input section matched by subject id, loaded and whitened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::channels::ChannelLayout;
use super::labels::LabelVolume;
use super::prepare::{Geometry, Preparation};
use crate::config::{InputSection, Settings, WindowSampling};
use crate::io::nifti::affine::nonfinite_affine;
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
    /// Subjects lack a modality: one line per subject and section.
    #[error("subjects are missing files:\n  {}", .0.join("\n  "))]
    Missing(Vec<String>),
    /// Subjects whose files cannot be used together: every problem found.
    #[error("{} problem(s) in the data:\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    /// The split file cannot be used.
    #[error("{path}: {message}")]
    Split {
        /// The split file.
        path: PathBuf,
        /// What is wrong with it.
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
    /// The window-centre weight map, for the weighted sampler.
    pub weights: Option<PathBuf>,
    /// The voxel weight map of the loss (`segmentation.weight`).
    pub loss_weight: Option<PathBuf>,
}

/// Which files beyond the images a job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// The label section.
    pub labels: bool,
    /// The sampler's weight-map section.
    pub weights: bool,
    /// The loss's weight-map section.
    pub loss_weights: bool,
    /// The folders of `inference_path_to_search` too (inference of new, unlabelled
    /// subjects).
    pub inference_folders: bool,
}

impl Needs {
    /// What training with `settings` needs.
    pub fn training(settings: &Settings) -> Needs {
        Needs {
            labels: true,
            weights: settings.network.window_sampling == WindowSampling::Weighted,
            loss_weights: !settings.segmentation.weight.is_empty(),
            inference_folders: false,
        }
    }
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

/// The files a `csv_file` lists (`subject_id,path` records, an optional
/// `subject_id,...` header line, RFC 4180 quoting): relative paths are taken from the
/// CSV's own folder.
fn read_csv(path: &Path) -> Result<BTreeMap<String, PathBuf>, DataError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files = BTreeMap::new();
    for record in super::csv::read_records(path)? {
        let csv_error = |message: String| DataError::Csv { path: path.to_owned(), line: record.line, message };
        let [id, file] = record.fields.as_slice() else {
            return Err(csv_error(format!(
                "expected 2 fields `subject_id,path`, got {} (quote a path that holds a comma)",
                record.fields.len()
            )));
        };
        if record.line == 1 && id == "subject_id" {
            continue;
        }
        if id.is_empty() || file.is_empty() {
            return Err(csv_error("expected a subject id and a path, got an empty field".to_owned()));
        }
        if files.insert(id.clone(), base.join(file)).is_some() {
            return Err(csv_error(format!("subject `{id}` is listed a second time, expected one path per subject")));
        }
    }
    Ok(files)
}

/// The files of one input section, by subject id: its `csv_file`, else the files of its
/// `path_to_search` folders (and of its `inference_path_to_search` folders when
/// `inference_folders`; a subject found in both keeps its `path_to_search` file).
fn section_files(
    config_dir: &Path,
    name: &str,
    section: &InputSection,
    inference_folders: bool,
) -> Result<BTreeMap<String, PathBuf>, DataError> {
    if !section.csv_file.is_empty() {
        return read_csv(&config_dir.join(&section.csv_file));
    }
    let mut files = BTreeMap::new();
    let folders = |list: &str| list.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
    let mut dirs: Vec<String> = folders(&section.path_to_search);
    let searched = dirs.len();
    if inference_folders {
        dirs.extend(folders(&section.inference_path_to_search));
    }
    for (n, dir) in dirs.iter().enumerate() {
        let dir = config_dir.join(dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| IoError {
            path: dir.clone(),
            message: format!("cannot list folder of input section `{name}`: {e}"),
        })?;
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = strip_extension(name) else { continue };
            let wanted = section.filename_contains.iter().all(|p| name.contains(p.as_str()))
                && !section.filename_not_contains.iter().any(|p| !p.is_empty() && name.contains(p.as_str()));
            if wanted {
                let id = subject_id(stem, section);
                if n < searched || !files.contains_key(&id) {
                    files.insert(id, path);
                }
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

/// The files of input section `name` by subject id (its `csv_file`, else the files of its
/// `path_to_search` folders, and of its `inference_path_to_search` folders when
/// `inference_folders`), as every job pairs a subject's files across sections: the id is
/// the file name without the section's `filename_contains` parts.
///
/// # Errors
/// A section the config does not define, a CSV list that cannot be read, a folder that
/// cannot be listed or holds no file of the section.
pub fn section_subjects(
    settings: &Settings,
    base_dir: &Path,
    name: &str,
    inference_folders: bool,
) -> Result<BTreeMap<String, PathBuf>, DataError> {
    let Some(section) = settings.input.get(name) else {
        let message = settings.undefined_section("segmentation", name).unwrap_or_default();
        return Err(DataError::Invalid(vec![message]));
    };
    section_files(base_dir, name, section, inference_folders)
}

/// Matches the files of the image sections (plus the label and weight-map sections as
/// `needs` says) by subject id. Relative paths are taken from `base_dir`.
///
/// # Errors
/// Labels needed while `segmentation.label` is empty, a section without files, or
/// subjects missing from sections (all of them listed).
pub fn find_subjects(settings: &Settings, base_dir: &Path, needs: Needs) -> Result<Vec<Subject>, DataError> {
    let seg = &settings.segmentation;
    let mut sections: Vec<&String> = seg.image.iter().collect();
    if needs.labels {
        if seg.label.is_empty() {
            return Err(DataError::Invalid(vec![
                "this job needs labels, but `segmentation.label` is empty (images only): name the input section of the labels".into(),
            ]));
        }
        sections.push(&seg.label);
    }
    if needs.weights {
        sections.push(&seg.sampler);
    }
    if needs.loss_weights {
        sections.push(&seg.weight);
    }
    let found: Vec<(&String, BTreeMap<String, PathBuf>)> = sections
        .iter()
        .map(|name| Ok((*name, section_subjects(settings, base_dir, name, needs.inference_folders)?)))
        .collect::<Result<_, DataError>>()?;
    let all_ids: std::collections::BTreeSet<&String> = found.iter().flat_map(|(_, f)| f.keys()).collect();
    let mut missing = Vec::new();
    for id in &all_ids {
        let lacking: Vec<&str> = found.iter().filter(|(_, f)| !f.contains_key(*id)).map(|(n, _)| n.as_str()).collect();
        if !lacking.is_empty() {
            let having: Vec<&str> =
                found.iter().filter(|(_, f)| f.contains_key(*id)).map(|(n, _)| n.as_str()).collect();
            missing
                .push(format!("subject `{id}` has no file in input section(s) {lacking:?} (it has one in {having:?})"));
        }
    }
    if !missing.is_empty() {
        return Err(DataError::Missing(missing));
    }
    let file = |section: usize, id: &String| found[section].1[id].clone();
    let n_images = seg.image.len();
    let (label_at, weights_at) = (n_images, n_images + usize::from(needs.labels));
    let loss_weight_at = weights_at + usize::from(needs.weights);
    Ok(all_ids
        .into_iter()
        .map(|id| Subject {
            id: id.clone(),
            images: (0..n_images).map(|i| file(i, id)).collect(),
            label: needs.labels.then(|| file(label_at, id)),
            weights: needs.weights.then(|| file(weights_at, id)),
            loss_weight: needs.loss_weights.then(|| file(loss_weight_at, id)),
        })
        .collect())
}

/// A label value in a training window: class indices up to 32767 (libtorch has no
/// unsigned 16-bit type), half the bytes of float32 for the loader queue. Whole volumes
/// are held narrower where their classes fit ([`LabelVolume`]).
pub type Label = i16;

/// A subject's volumes, ready for sampling.
#[derive(Debug, Clone)]
pub struct SubjectVolumes {
    /// The subject id.
    pub id: String,
    /// Image channels stacked: `[C, k, j, i]` in memory.
    ///
    /// Images stay `float32` even when stored narrower (unlike labels): what prepares
    /// them (whitening, histogram standardisation, intensity clipping and z-scores, linear
    /// or cubic resampling, scl_slope scaling) makes floats, and whitening is on by
    /// default and in every bundled config. Keeping the stored type for the rare job that
    /// does none of these would put a voxel-type parameter through the reader, the check,
    /// the samplers, augmentation and inference's windows for no saving in the others.
    pub image: Vec<f32>,
    /// Number of image channels.
    pub channels: usize,
    /// Spatial size `(i, j, k)`.
    pub dims: [usize; 3],
    /// Labels `[k, j, i]` as class indices (one byte per voxel up to 256 classes), when
    /// loaded.
    pub label: Option<LabelVolume>,
    /// Window-centre weights `[k, j, i]`, when loaded.
    pub weights: Option<Vec<f32>>,
    /// The loss's voxel weights `[k, j, i]`, when loaded.
    pub loss_weight: Option<Vec<f32>>,
    /// The first image as read, without its voxels: header, geometry and file of the
    /// outputs written for this subject.
    pub reference: Volume,
    /// How the volumes were moved onto the network's grid (undone on outputs).
    pub geometry: Geometry,
}

impl SubjectVolumes {
    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        let maps = self.weights.as_ref().map_or(0, Vec::len) + self.loss_weight.as_ref().map_or(0, Vec::len);
        4 * (self.image.len() + maps) + self.label.as_ref().map_or(0, LabelVolume::bytes)
    }
}

/// How volumes are checked and prepared when loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Labels must be integers in `0..num_classes` (after the label map, if any).
    pub num_classes: usize,
    /// Labels are mapped by a learned label map (raw values are only checked integral).
    pub label_normalisation: bool,
    /// Geometry and intensity preparation.
    pub preparation: Preparation,
    /// The image sections, in `segmentation.image` order.
    pub image_sections: Vec<String>,
    /// The channels each image section must have (the model's, for inference); `None`
    /// takes them from the data.
    pub channels: Option<ChannelLayout>,
}

impl LoadOptions {
    /// Options with `preparation`.
    pub fn new(settings: &Settings, preparation: Preparation) -> LoadOptions {
        LoadOptions {
            num_classes: settings.segmentation.num_classes,
            label_normalisation: settings.segmentation.label_normalisation,
            preparation,
            image_sections: settings.segmentation.image.clone(),
            channels: None,
        }
    }

    /// Options for checking files only: nothing learned is needed.
    pub fn for_checking(settings: &Settings) -> LoadOptions {
        LoadOptions::new(settings, Preparation::unlearned(settings))
    }
}

/// Largest difference between affines of one subject's files taken as the same grid, mm.
const AFFINE_TOLERANCE_MM: f64 = 1e-3;

/// The files of a subject as read, before preparation.
struct Read {
    images: Vec<Volume>,
    label: Option<Volume>,
    weights: Option<Volume>,
    loss_weight: Option<Volume>,
}

/// Reads every file of a subject; unreadable files become problems.
fn read_all(subject: &Subject) -> (Option<Read>, Vec<String>) {
    let mut problems = Vec::new();
    let mut read = |p: &PathBuf| read_volume(p).map_err(|e| problems.push(e.to_string())).ok();
    let images: Vec<Option<Volume>> = subject.images.iter().map(&mut read).collect();
    let label = subject.label.as_ref().map(&mut read);
    let weights = subject.weights.as_ref().map(&mut read);
    let loss_weight = subject.loss_weight.as_ref().map(&mut read);
    if !problems.is_empty() {
        return (None, problems);
    }
    let unwrap = |v: Option<Option<Volume>>| v.map(|v| v.expect("read without problems"));
    let images = images.into_iter().map(|v| v.expect("read without problems")).collect();
    let (label, weights, loss_weight) = (unwrap(label), unwrap(weights), unwrap(loss_weight));
    (Some(Read { images, label, weights, loss_weight }), problems)
}

/// Every reason the files of one subject cannot be used together (empty if none).
fn problems_of(read: &Read, options: &LoadOptions) -> Vec<String> {
    let mut problems = Vec::new();
    let first = &read.images[0];
    let same_grid = |v: &Volume, what: &str, problems: &mut Vec<String>| {
        if v.dims != first.dims {
            problems.push(format!(
                "{what} {} is {:?} but image {} is {:?}",
                v.path.display(),
                v.dims,
                first.path.display(),
                first.dims
            ));
        }
        // NaN when either affine has a NaN or an infinity: a mismatch, never a match.
        let gap = (0..3)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .map(|(r, c)| (v.affine[r][c] - first.affine[r][c]).abs())
            .fold(0.0f64, |worst, g| if g.is_nan() || worst.is_nan() { f64::NAN } else { worst.max(g) });
        if gap.is_nan() {
            problems.push(format!(
                "{what} {} and image {} have affines that cannot be compared (non-finite entries)",
                v.path.display(),
                first.path.display()
            ));
        } else if gap > AFFINE_TOLERANCE_MM {
            problems.push(format!(
                "{what} {} and image {} have affines differing by up to {gap:.4} mm (tolerance {AFFINE_TOLERANCE_MM} mm)",
                v.path.display(),
                first.path.display()
            ));
        }
    };
    let volumes = read.images.iter().map(|v| ("image", v)).chain(
        [("label", &read.label), ("weight map", &read.weights), ("loss weight map", &read.loss_weight)]
            .into_iter()
            .filter_map(|(what, v)| v.as_ref().map(|v| (what, v))),
    );
    for (what, v) in volumes {
        if let Some(problem) = nonfinite_affine(&v.header) {
            problems.push(format!("{what} {}: {problem}", v.path.display()));
        }
    }
    for v in &read.images[1..] {
        same_grid(v, "image", &mut problems);
    }
    for v in &read.images {
        let bad = v.data.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            problems.push(format!("image {} has {bad} NaN or infinite voxels", v.path.display()));
        }
    }
    if let Some(l) = &read.label {
        same_grid(l, "label", &mut problems);
        if l.channels != 1 {
            problems.push(format!("label {} has {} channels, expected 1", l.path.display(), l.channels));
        }
        let k = options.num_classes as f32;
        let bad = if options.label_normalisation {
            l.data.iter().find(|v| v.fract() != 0.0)
        } else {
            l.data.iter().find(|&&v| v.fract() != 0.0 || !(0.0..k).contains(&v))
        };
        if let Some(v) = bad {
            let expected = if options.label_normalisation {
                "integers (segmentation.label_normalisation maps them to classes)".to_owned()
            } else {
                format!("integers in 0..{} (segmentation.num_classes)", options.num_classes)
            };
            problems.push(format!("label {} has value {v}, expected {expected}", l.path.display()));
        }
    }
    if let Some(w) = &read.weights {
        same_grid(w, "weight map", &mut problems);
        if w.data.iter().any(|v| !v.is_finite() || *v < 0.0) {
            problems.push(format!("weight map {} has negative or non-finite values", w.path.display()));
        } else if w.data.iter().all(|&v| v == 0.0) {
            problems.push(format!("weight map {} is zero everywhere", w.path.display()));
        }
    }
    if let Some(w) = &read.loss_weight {
        same_grid(w, "loss weight map", &mut problems);
        if w.channels != 1 {
            problems.push(format!("loss weight map {} has {} channels, expected 1", w.path.display(), w.channels));
        }
        let bad = w.data.iter().filter(|v| !v.is_finite() || **v < 0.0).count();
        if bad > 0 {
            problems.push(format!(
                "loss weight map {} has {bad} negative or non-finite voxels, expected finite values >= 0 (segmentation.weight)",
                w.path.display()
            ));
        }
    }
    problems
}

/// Reads a subject's files, checks that they agree and prepares the images.
///
/// # Errors
/// [`DataError::Invalid`] with every problem of the subject: images without the
/// channels of `options.channels` (found from their headers, before any voxel is read),
/// unreadable files, NaN/Inf in images or in an affine (the file and the header field
/// named), shape or affine mismatches, labels outside
/// `0..num_classes` or not integral.
pub fn load_subject(subject: &Subject, options: &LoadOptions) -> Result<SubjectVolumes, DataError> {
    let tag = |problems: Vec<String>| {
        DataError::Invalid(problems.into_iter().map(|p| format!("subject `{}`: {p}", subject.id)).collect())
    };
    if let Some(expected) = &options.channels {
        let found =
            ChannelLayout::of_subject(&options.image_sections, subject).map_err(|e| tag(vec![e.to_string()]))?;
        let differences = expected.differences(&found, &subject.images, "the model's input");
        if !differences.is_empty() {
            return Err(tag(differences));
        }
    }
    let (read, problems) = read_all(subject);
    let read = read.ok_or_else(|| tag(problems))?;
    let problems = problems_of(&read, options);
    if !problems.is_empty() {
        return Err(tag(problems));
    }
    let section_channels: Vec<usize> = read.images.iter().map(|v| v.channels).collect();
    let channels = section_channels.iter().sum();
    let mut images = read.images.into_iter();
    let mut reference = images.next().expect("a subject has images");
    let rest: Vec<Volume> = images.collect();
    let image = concat_channels(std::mem::take(&mut reference.data), &rest, &subject.id)
        .map_err(|e| tag(vec![e.to_string()]))?;
    let prepared = options.preparation.apply(
        &subject.id,
        &reference,
        image,
        &section_channels,
        read.label.map(|v| v.data),
        read.weights.map(|v| v.data),
    )?;
    // Checked: integers in 0..num_classes (after the label map). The float labels are
    // dropped once converted.
    let label = match (prepared.label, &subject.label) {
        (Some(values), Some(path)) => {
            let what = || format!("the labels of {}", path.display());
            Some(LabelVolume::from_classes(&values, options.num_classes, &what).map_err(|e| tag(vec![e]))?)
        }
        _ => None,
    };
    let loss_weight = read
        .loss_weight
        .map(|v| prepared.geometry.weight_map(v.data))
        .transpose()
        .map_err(|e| DataError::Invalid(vec![format!("subject `{}`: {e}", subject.id)]))?;
    Ok(SubjectVolumes {
        id: subject.id.clone(),
        channels,
        dims: prepared.geometry.prepared.dims,
        geometry: prepared.geometry,
        reference,
        image: prepared.images,
        label,
        weights: prepared.weights,
        loss_weight,
    })
}

/// `first`'s values followed by those of `rest` (a subject's image channels, one buffer),
/// the growth within the memory budget.
///
/// # Errors
/// The whole over the budget, or refused by the system.
pub(crate) fn concat_channels(
    mut first: Vec<f32>,
    rest: &[Volume],
    subject: &str,
) -> Result<Vec<f32>, crate::budget::AllocError> {
    let extra: usize = rest.iter().map(|v| v.data.len()).sum();
    let total = first.len() + extra;
    let what = || format!("the image channels of subject `{subject}` ({total} float32 values)");
    crate::budget::try_reserve(&mut first, extra, &what)?;
    for v in rest {
        first.extend_from_slice(&v.data);
    }
    Ok(first)
}

/// Checks every subject (in parallel) and lists every problem found; nothing is kept.
/// Returns the channel layout every subject has: `options.channels` when set, else the
/// one most subjects have (the first subject's among equals), every other one being a
/// problem.
///
/// # Errors
/// [`DataError::Invalid`] listing all problems of all subjects.
pub fn check_subjects(subjects: &[Subject], options: &LoadOptions) -> Result<ChannelLayout, DataError> {
    use rayon::prelude::*;
    let checked: Vec<(Option<ChannelLayout>, Vec<String>)> = subjects
        .par_iter()
        .map(|s| {
            // An unreadable header is a problem read_all reports.
            let layout = ChannelLayout::of_subject(&options.image_sections, s).ok();
            let problems = match read_all(s) {
                (Some(read), _) => problems_of(&read, options),
                (None, problems) => problems,
            };
            (layout, problems)
        })
        .collect();
    let expected = match &options.channels {
        Some(layout) => layout.clone(),
        None => most_common(checked.iter().filter_map(|(l, _)| l.as_ref()))
            .unwrap_or_else(|| ChannelLayout::one_per_section(&options.image_sections)),
    };
    let agreeing = checked.iter().filter(|(l, _)| l.as_ref() == Some(&expected)).count();
    let why = match &options.channels {
        Some(_) => "the model's input".to_owned(),
        None => format!("as {agreeing} of the {} subjects have", subjects.len()),
    };
    let problems: Vec<String> = subjects
        .iter()
        .zip(checked)
        .flat_map(|(s, (layout, mut problems))| {
            if let Some(found) = layout {
                problems.splice(0..0, expected.differences(&found, &s.images, &why));
            }
            problems.into_iter().map(|p| format!("subject `{}`: {p}", s.id)).collect::<Vec<_>>()
        })
        .collect();
    if problems.is_empty() {
        Ok(expected)
    } else {
        Err(DataError::Invalid(problems))
    }
}

/// The layout that occurs most often in `layouts`, the first among equals.
fn most_common<'a>(layouts: impl Iterator<Item = &'a ChannelLayout>) -> Option<ChannelLayout> {
    let mut counts: Vec<(&ChannelLayout, usize)> = Vec::new();
    for layout in layouts {
        match counts.iter_mut().find(|(l, _)| *l == layout) {
            Some((_, n)) => *n += 1,
            None => counts.push((layout, 1)),
        }
    }
    // max_by_key keeps the last of equals: scan in reverse to keep the first.
    counts.into_iter().rev().max_by_key(|(_, n)| *n).map(|(l, _)| l.clone())
}
