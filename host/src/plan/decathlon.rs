//! A dataset in the Medical Segmentation Decathlon layout (as nnU-Net converts it):
//! `dataset.json` with `modality` (nnU-Net v1: `{"0": "CT"}`) or `channel_names` (v2),
//! and `labels` (v1: `{"0": "background"}`, v2: `{"background": 0}`); `imagesTr/` with one
//! file per channel (`case_001_0000.nii.gz`, `case_001_0001.nii.gz`), `labelsTr/`
//! (`case_001.nii.gz`) and `imagesTs/` (unlabelled subjects to segment). Becomes one input
//! section per channel and a label section whose subject ids pair.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, InputSection};

/// One image channel of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// The input section's name (the channel name in lower case, made unique).
    pub section: String,
    /// The channel name of `dataset.json` (nnU-Net reads it as the normalisation scheme).
    pub modality: String,
    /// The file-name suffix of the channel, `_0000`.
    pub suffix: String,
}

/// What `dataset.json` declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Decathlon {
    /// The dataset folder.
    pub root: PathBuf,
    /// The channels, in index order.
    pub channels: Vec<Channel>,
    /// Class names by label value `0..num_classes`.
    pub labels: Vec<String>,
}

fn bad(root: &Path, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("{}: {message}", root.join("dataset.json").display()))
}

/// Index → name entries of a `{"0": "CT", "1": "MR"}` object.
fn indexed(root: &Path, key: &str, v: &serde_json::Value) -> Result<BTreeMap<usize, String>, ConfigError> {
    let object = v.as_object().ok_or_else(|| bad(root, format!("`{key}` must be an object")))?;
    object
        .iter()
        .map(|(k, name)| {
            let index =
                k.trim().parse::<usize>().map_err(|_| bad(root, format!("`{key}` key {k:?} is not an index")))?;
            let name = name.as_str().ok_or_else(|| bad(root, format!("`{key}.{k}` must be a string")))?;
            Ok((index, name.to_owned()))
        })
        .collect()
}

/// A name usable as an input section: lower case letters, digits and `_`.
fn section_name(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let s = s.trim_matches('_').to_owned();
    if s.is_empty() {
        "image".to_owned()
    } else {
        s
    }
}

/// Reads `dir/dataset.json` and checks the folders.
///
/// # Errors
/// A missing or malformed `dataset.json` (no channels, labels that are not the values
/// `0..K-1`), or a missing `imagesTr`/`labelsTr` folder: configuration errors naming the
/// file and key.
pub fn read(dir: &Path) -> Result<Decathlon, ConfigError> {
    let path = dir.join("dataset.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(dir, format!("not JSON: {e}")))?;
    let channels = match (json.get("channel_names"), json.get("modality")) {
        (Some(v), _) => indexed(dir, "channel_names", v)?,
        (None, Some(v)) => indexed(dir, "modality", v)?,
        (None, None) => return Err(bad(dir, "expected `channel_names` (nnU-Net v2) or `modality` (v1)")),
    };
    if channels.is_empty() || channels.keys().copied().ne(0..channels.len()) {
        return Err(bad(dir, format!("channels must be numbered 0..n, got {:?}", channels.keys().collect::<Vec<_>>())));
    }
    let labels = read_labels(dir, json.get("labels"))?;
    for folder in ["imagesTr", "labelsTr"] {
        if !dir.join(folder).is_dir() {
            return Err(bad(dir, format!("the dataset has no {folder}/ folder")));
        }
    }
    let mut used = vec!["label".to_owned()];
    let channels = channels
        .into_iter()
        .map(|(index, modality)| {
            let mut section = section_name(&modality);
            while used.contains(&section) {
                section = format!("{section}_{index}");
            }
            used.push(section.clone());
            Channel { section, modality, suffix: format!("_{index:04}") }
        })
        .collect();
    Ok(Decathlon { root: dir.to_owned(), channels, labels })
}

/// The class names by value: v1 `{"0": "background"}` or v2 `{"background": 0}`, whose
/// values must be exactly `0..K-1`.
fn read_labels(dir: &Path, v: Option<&serde_json::Value>) -> Result<Vec<String>, ConfigError> {
    let object = v.and_then(|v| v.as_object()).ok_or_else(|| bad(dir, "expected an object `labels`"))?;
    let mut by_value = BTreeMap::new();
    for (k, v) in object {
        let (value, name) = match (k.trim().parse::<usize>(), v) {
            (Ok(value), serde_json::Value::String(name)) => (value, name.clone()),
            (_, serde_json::Value::Number(n)) => {
                let value = n.as_u64().ok_or_else(|| bad(dir, format!("`labels.{k}` must be a label value >= 0")))?;
                (value as usize, k.clone())
            }
            _ => {
                return Err(bad(
                    dir,
                    format!(
                        "`labels.{k}`: expected \"value\": \"name\" or \"name\": value (regions are not supported)"
                    ),
                ))
            }
        };
        if by_value.insert(value, name).is_some() {
            return Err(bad(dir, format!("label value {value} is declared twice")));
        }
    }
    if by_value.len() < 2 || by_value.keys().copied().ne(0..by_value.len()) {
        return Err(bad(
            dir,
            format!(
                "`labels` must declare the values 0..K-1 with K >= 2, got {:?}",
                by_value.keys().collect::<Vec<_>>()
            ),
        ));
    }
    Ok(by_value.into_values().collect())
}

impl Decathlon {
    /// The input sections: one per channel (training subjects from `imagesTr`, inference
    /// also from `imagesTs`, the channel suffix removed from the subject id), and `label`
    /// from `labelsTr`.
    pub fn sections(&self) -> Vec<(String, InputSection)> {
        let folder = |name: &str| self.root.join(name).display().to_string();
        let test = self.root.join("imagesTs");
        let mut sections: Vec<(String, InputSection)> = self
            .channels
            .iter()
            .map(|c| {
                let section = InputSection {
                    path_to_search: folder("imagesTr"),
                    inference_path_to_search: if test.is_dir() { folder("imagesTs") } else { String::new() },
                    filename_contains: vec![c.suffix.clone()],
                    modality: c.modality.clone(),
                    ..InputSection::default()
                };
                (c.section.clone(), section)
            })
            .collect();
        sections
            .push(("label".to_owned(), InputSection { path_to_search: folder("labelsTr"), ..InputSection::default() }));
        sections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(json: &str) -> (tempfile::TempDir, Result<Decathlon, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("imagesTr")).unwrap();
        std::fs::create_dir(dir.path().join("labelsTr")).unwrap();
        std::fs::write(dir.path().join("dataset.json"), json).unwrap();
        let read = read(dir.path());
        (dir, read)
    }

    #[test]
    fn v1_and_v2_declarations_agree() {
        let (_d1, v1) =
            dataset(r#"{"modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ", "2": "TZ"}}"#);
        let (_d2, v2) =
            dataset(r#"{"channel_names": {"1": "ADC", "0": "T2"}, "labels": {"background": 0, "TZ": 2, "PZ": 1}}"#);
        let (v1, v2) = (v1.unwrap(), v2.unwrap());
        assert_eq!(v1.channels, v2.channels);
        assert_eq!(v1.labels, v2.labels);
        assert_eq!(v1.labels, ["background", "PZ", "TZ"]);
        assert_eq!(v1.channels[1], Channel { section: "adc".into(), modality: "ADC".into(), suffix: "_0001".into() });
        let sections = v1.sections();
        assert_eq!(sections.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["t2", "adc", "label"]);
        assert_eq!(sections[0].1.filename_contains, ["_0000"]);
        assert!(sections[0].1.inference_path_to_search.is_empty(), "no imagesTs folder");
    }

    #[test]
    fn bad_declarations_are_named() {
        let (_d, r) = dataset(r#"{"labels": {"0": "background", "1": "x"}}"#);
        assert!(r.unwrap_err().to_string().contains("channel_names"));
        let (_d, r) = dataset(r#"{"modality": {"0": "CT"}, "labels": {"0": "background", "2": "x"}}"#);
        assert!(r.unwrap_err().to_string().contains("0..K-1"));
        let (_d, r) = dataset(r#"{"modality": {"0": "CT"}, "labels": {"background": 0, "organ": [1, 2]}}"#);
        assert!(r.unwrap_err().to_string().contains("regions"));
    }
}
