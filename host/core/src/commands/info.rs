//! `niftyhost info FILE... [--json]`: each file's summary ([`FileInfo`]), or why it
//! could not be read.

use std::fmt;
use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::cli::InfoArgs;
use crate::io::info::FileInfo;
use crate::io::nifti::read::read_raw;
use crate::io::IoError;

/// What `info` found about one file.
#[derive(Debug, Clone, PartialEq)]
pub enum InfoEntry {
    /// The file's summary.
    Read(Box<FileInfo>),
    /// Why it could not be read.
    Unreadable(IoError),
}

/// What `info` found about each file, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoReport {
    /// One per file.
    pub entries: Vec<InfoEntry>,
}

/// Files `info` could not read.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// The one file given.
    #[error(transparent)]
    One(IoError),
    /// Some of several files.
    #[error("{failed} of {files} files could not be read")]
    Several {
        /// Files not read.
        failed: usize,
        /// Files given.
        files: usize,
    },
}

/// `niftyhost info`: reads every file of `args`.
pub fn info(args: &InfoArgs) -> InfoReport {
    InfoReport::read(&args.files)
}

impl InfoReport {
    /// Reads and summarises every file (the voxels are kept in their stored type, one
    /// file at a time, and not converted: see [`Stats::of_stored`](crate::io::info::Stats::of_stored)).
    pub fn read(files: &[PathBuf]) -> InfoReport {
        let entries = files
            .iter()
            .map(|file| match read_raw(file, &|_| Ok(())) {
                Ok(image) => InfoEntry::Read(Box::new(FileInfo::of(file, &image))),
                Err(e) => InfoEntry::Unreadable(e),
            })
            .collect();
        InfoReport { entries }
    }

    /// The files that could not be read.
    pub fn failures(&self) -> impl Iterator<Item = &IoError> {
        self.entries.iter().filter_map(|e| match e {
            InfoEntry::Unreadable(e) => Some(e),
            InfoEntry::Read(_) => None,
        })
    }

    /// With several files, an `error: …` line for each file that could not be read, for
    /// stderr (with one file, its error is the command's).
    pub fn problems(&self) -> Problems<'_> {
        Problems(self)
    }

    /// Whether every file was read.
    ///
    /// # Errors
    /// The error of the one file given, or how many of several files could not be read.
    pub fn into_result(self) -> Result<(), InfoError> {
        let files = self.entries.len();
        let mut failures: Vec<IoError> = self
            .entries
            .into_iter()
            .filter_map(|e| match e {
                InfoEntry::Unreadable(e) => Some(e),
                InfoEntry::Read(_) => None,
            })
            .collect();
        match failures.len() {
            0 => Ok(()),
            1 if files == 1 => Err(InfoError::One(failures.remove(0))),
            failed => Err(InfoError::Several { failed, files }),
        }
    }
}

impl fmt::Display for InfoReport {
    /// Each readable file's summary, a blank line before every file but the first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, entry) in self.entries.iter().enumerate() {
            if let InfoEntry::Read(info) = entry {
                write!(f, "{}{info}", if n > 0 { "\n" } else { "" })?;
            }
        }
        Ok(())
    }
}

impl Serialize for InfoReport {
    /// An array of one object per file: the summary, or `{"file": …, "error": …}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.entries.len()))?;
        for entry in &self.entries {
            match entry {
                InfoEntry::Read(info) => seq.serialize_element(info)?,
                InfoEntry::Unreadable(e) => seq.serialize_element(&Unreadable(e))?,
            }
        }
        seq.end()
    }
}

/// An unreadable file as a JSON object.
struct Unreadable<'a>(&'a IoError);

impl Serialize for Unreadable<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("file", &self.0.path)?;
        map.serialize_entry("error", &self.0.message)?;
        map.end()
    }
}

/// The stderr lines of an [`InfoReport`]: see [`InfoReport::problems`].
#[derive(Debug)]
pub struct Problems<'a>(&'a InfoReport);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.entries.len() > 1 {
            for e in self.0.failures() {
                writeln!(f, "error: {e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(name: &str) -> InfoEntry {
        InfoEntry::Unreadable(IoError { path: PathBuf::from(name), message: "not a NIfTI or Analyze header".into() })
    }

    #[test]
    fn one_unreadable_file_is_the_error_itself() {
        let report = InfoReport { entries: vec![unreadable("a.txt")] };
        assert_eq!(report.problems().to_string(), "", "its error is the command's");
        assert_eq!(report.to_string(), "");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json, serde_json::json!([{"file": "a.txt", "error": "not a NIfTI or Analyze header"}]));
        let err = report.into_result().unwrap_err().to_string();
        assert_eq!(err, "a.txt: not a NIfTI or Analyze header");
    }

    #[test]
    fn several_files_list_each_failure_and_count_them() {
        let report = InfoReport { entries: vec![unreadable("a.txt"), unreadable("b.txt")] };
        assert_eq!(
            report.problems().to_string(),
            "error: a.txt: not a NIfTI or Analyze header\nerror: b.txt: not a NIfTI or Analyze header\n"
        );
        assert_eq!(report.into_result().unwrap_err().to_string(), "2 of 2 files could not be read");
    }
}
