//! Which segmentation is scored against which reference: from the config's dataset
//! (`<seg_dir>/<id><postfix>.nii.gz` for each held-out subject), from an input section of
//! segmentations paired with the label section by subject id (NiftyNet's `inferred`), or
//! from two folders matched by file name, without a dataset.

use std::path::{Path, PathBuf};

use super::EvaluationError;
use crate::config::Settings;
use crate::data::dataset::section_subjects;
use crate::data::phases::{existing_split, held_out_subjects};
use crate::data::split::Phase;

/// One subject's segmentation and reference label files.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Subject id.
    pub id: String,
    /// The segmentation.
    pub segmentation: PathBuf,
    /// The reference labels.
    pub reference: PathBuf,
    /// The subject's phase in the split (`None` for folders, or without a split).
    pub phase: Option<Phase>,
}

const EXTENSIONS: [&str; 2] = [".nii.gz", ".nii"];

/// A NIfTI file name without its extension, or `None` for other files.
fn stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    EXTENSIONS.iter().find_map(|ext| name.strip_suffix(ext)).map(str::to_owned)
}

/// The held-out subjects of the config's dataset with their segmentations in `seg_dir`.
///
/// # Errors
/// The dataset cannot be read, or a subject has no segmentation (every one is named).
pub fn from_dataset(settings: &Settings, base_dir: &Path, seg_dir: &Path) -> Result<Vec<Pair>, EvaluationError> {
    let subjects = held_out_subjects(settings, base_dir, true)?;
    let postfix = &settings.inference.output_postfix;
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for held in subjects {
        let s = held.subject;
        let segmentation = seg_dir.join(format!("{}{postfix}.nii.gz", s.id));
        match s.label {
            Some(reference) if segmentation.is_file() => {
                pairs.push(Pair { id: s.id, segmentation, reference, phase: held.phase })
            }
            _ => missing.push(format!("`{}`: expected {}", s.id, segmentation.display())),
        }
    }
    if !missing.is_empty() {
        return Err(EvaluationError::Other(format!(
            "no segmentation for {} subject(s) (run `niftyhost inference` first):\n  {}",
            missing.len(),
            missing.join("\n  ")
        )));
    }
    Ok(pairs)
}

/// The files of input section `evaluation.seg_section` paired with those of the label
/// section by subject id (as a subject's files pair across sections), every subject
/// found in both, with its phase in the split file when there is one. Subjects with only
/// a segmentation or only a reference are named in a warning.
///
/// # Errors
/// A section that cannot be read, a malformed split file, or no subject in both sections
/// (the ids of each are named).
pub fn from_section(settings: &Settings, base_dir: &Path) -> Result<Vec<Pair>, EvaluationError> {
    let (seg_name, ref_name) = (&settings.evaluation.seg_section, &settings.segmentation.label);
    let mut segmentations = section_subjects(settings, base_dir, seg_name, false)?;
    let references = section_subjects(settings, base_dir, ref_name, false)?;
    let split = existing_split(settings)?;
    let mut pairs = Vec::new();
    let mut no_segmentation = Vec::new();
    for (id, reference) in references {
        match segmentations.remove(&id) {
            Some(segmentation) => {
                let phase = split.as_ref().and_then(|s| s.phase(&id));
                pairs.push(Pair { id, segmentation, reference, phase });
            }
            None => no_segmentation.push(id),
        }
    }
    let no_reference: Vec<String> = segmentations.into_keys().collect();
    let unpaired = format!(
        "{} subject(s) of `{seg_name}` have no reference in `{ref_name}`: {no_reference:?}; {} of `{ref_name}` have no segmentation in `{seg_name}`: {no_segmentation:?}",
        no_reference.len(),
        no_segmentation.len()
    );
    if pairs.is_empty() {
        return Err(EvaluationError::Other(format!(
            "no subject has both a segmentation (input section `{seg_name}`, evaluation.seg_section) and a reference \
             (input section `{ref_name}`, segmentation.label): {unpaired} (ids are file names without the sections' filename_contains parts)"
        )));
    }
    if !(no_reference.is_empty() && no_segmentation.is_empty()) {
        tracing::warn!("evaluation: scoring the {} subject(s) in both sections; {unpaired}", pairs.len());
    }
    Ok(pairs)
}

/// Every NIfTI file of `ref_dir` (`<id>.nii[.gz]`) with the file of `seg_dir` named
/// `<id><postfix>.nii[.gz]`, or else `<id>.nii[.gz]` (other tools' outputs often keep
/// the reference's name).
///
/// # Errors
/// A folder that cannot be read, a folder without NIfTI files, or references without a
/// segmentation (every one is named).
pub fn from_folders(seg_dir: &Path, ref_dir: &Path, postfix: &str) -> Result<Vec<Pair>, EvaluationError> {
    let list = |dir: &Path| -> Result<Vec<(String, PathBuf)>, EvaluationError> {
        let entries = std::fs::read_dir(dir).map_err(|e| EvaluationError::Other(format!("{}: {e}", dir.display())))?;
        let mut files: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter_map(|p| stem(&p).map(|s| (s, p)))
            .collect();
        files.sort();
        Ok(files)
    };
    let references = list(ref_dir)?;
    if references.is_empty() {
        return Err(EvaluationError::Other(format!("{}: no .nii or .nii.gz reference files", ref_dir.display())));
    }
    let segmentations = list(seg_dir)?;
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (id, reference) in references {
        let wanted = format!("{id}{postfix}");
        let found =
            segmentations.iter().find(|(s, _)| *s == wanted).or_else(|| segmentations.iter().find(|(s, _)| *s == id));
        match found {
            Some((_, segmentation)) => {
                pairs.push(Pair { id, segmentation: segmentation.clone(), reference, phase: None })
            }
            None => missing.push(format!("`{id}`: expected {}/{wanted}.nii[.gz]", seg_dir.display())),
        }
    }
    if !missing.is_empty() {
        return Err(EvaluationError::Other(format!(
            "{} reference(s) in {} have no segmentation:\n  {}",
            missing.len(),
            ref_dir.display(),
            missing.join("\n  ")
        )));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for n in names {
            std::fs::write(dir.join(n), b"").unwrap();
        }
    }

    #[test]
    fn folders_pair_by_name_with_the_postfix_and_name_every_missing_file() {
        let root = std::env::temp_dir().join(format!("niftyhost-pairs-{}", std::process::id()));
        let (seg, reference) = (root.join("seg"), root.join("ref"));
        touch(&reference, &["b.nii.gz", "a.nii", "notes.txt"]);
        touch(&seg, &["a_seg.nii.gz", "b_seg.nii", "c_seg.nii.gz", "b.nii.gz"]);
        let pairs = from_folders(&seg, &reference, "_seg").unwrap();
        let ids: Vec<(&str, &str)> =
            pairs.iter().map(|p| (p.id.as_str(), p.segmentation.file_name().unwrap().to_str().unwrap())).collect();
        assert_eq!(ids, [("a", "a_seg.nii.gz"), ("b", "b_seg.nii")]);
        // Without the postfix's file, the reference's own name is taken.
        let pairs = from_folders(&seg, &reference, "_out").unwrap_err().to_string();
        assert!(pairs.contains("1 reference(s)") && pairs.contains("`a`: expected"), "{pairs}");
        std::fs::remove_file(seg.join("b.nii.gz")).unwrap();
        let err = from_folders(&seg, &reference, "").unwrap_err().to_string();
        assert!(err.contains("2 reference(s)") && err.contains("`a`") && err.contains("`b`"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_segmentation_section_pairs_by_subject_id_with_the_split_phase() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        // NiftyNet's eval file's layout: both sections in one folder, told apart by name.
        touch(&dir.join("d"), &["seg_a_x.nii.gz", "seg_b_x.nii", "seg_d_x.nii.gz", "ref_a.nii.gz", "ref_b.nii.gz"]);
        touch(&dir.join("d"), &["ref_c.nii.gz"]);
        let config = |extra: &str| {
            let text = format!(
                "[input.label]\npath_to_search = \"d\"\nfilename_contains = [\"ref_\"]\n\
                 [input.segs]\npath_to_search = \"d\"\nfilename_contains = [\"seg_\", \"_x\"]\n\
                 [system]\nmodel_dir = \"{}\"\n[evaluation]\nseg_section = \"segs\"\n{extra}",
                dir.join("m").display()
            );
            let path = dir.join("c.toml");
            std::fs::write(&path, text).unwrap();
            crate::config::load(Some(&path), &Default::default()).unwrap()
        };
        let s = config("");
        let pairs = from_section(&s, dir).unwrap();
        let got: Vec<(&str, String, String, Option<Phase>)> = pairs
            .iter()
            .map(|p| {
                let name = |f: &Path| f.file_name().unwrap().to_str().unwrap().to_owned();
                (p.id.as_str(), name(&p.segmentation), name(&p.reference), p.phase)
            })
            .collect();
        let expected = [("a", "seg_a_x.nii.gz", "ref_a.nii.gz"), ("b", "seg_b_x.nii", "ref_b.nii.gz")];
        let expected: Vec<_> = expected.iter().map(|(i, s, r)| (*i, s.to_string(), r.to_string(), None)).collect();
        assert_eq!(got, expected);
        // With a split file, each subject's phase (any phase: every pair is scored).
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("m/dataset_split.csv"), "subject_id,phase\na,TRAIN\nb,INFER\n").unwrap();
        let phases: Vec<Option<Phase>> = from_section(&s, dir).unwrap().iter().map(|p| p.phase).collect();
        assert_eq!(phases, [Some(Phase::Train), Some(Phase::Infer)]);
        // No subject in both: an error naming each section's unpaired ids.
        let s = config("[input.label2]\npath_to_search = \"d\"\nfilename_contains = [\"ref_c\"]\n[segmentation]\nlabel = \"label2\"\n");
        let err = from_section(&s, dir).unwrap_err().to_string();
        assert!(
            err.contains("no subject has both") && err.contains("[\"a\", \"b\", \"d\"]") && err.contains("ref_c"),
            "{err}"
        );
    }
}
