//! The dataset split: which subjects are TRAIN, VALID or INFER, kept in a CSV file
//! (`subject_id,phase,fold`) so that every run of an experiment uses the same split.
//!
//! A missing file is made from the config: subjects sorted by id and shuffled with the
//! run's seed; the first `round(n · exclude_fraction_for_inference)` are INFER, the next
//! `round(n · exclude_fraction_for_validation)` VALID, the rest TRAIN. With `k_folds > 1`
//! the non-INFER subjects are dealt round-robin into k folds (the `fold` column) and
//! fold `training.fold` is VALID, so one file serves every fold. An existing file is
//! reused as it is; a subject missing from it is an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::DataError;
use crate::io::IoError;
use crate::rng::Stream;

/// The role of a subject in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Phase {
    /// Trained on.
    Train,
    /// Validated on during training.
    Valid,
    /// Held out for inference.
    Infer,
}

impl Phase {
    /// The name the split file and the evaluation CSV use: `TRAIN`, `VALID` or `INFER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Train => "TRAIN",
            Phase::Valid => "VALID",
            Phase::Infer => "INFER",
        }
    }

    /// Reads a phase name (case-insensitive; `TRAINING`, `VALIDATION` and `INFERENCE` too).
    pub fn parse(s: &str) -> Option<Phase> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRAIN" | "TRAINING" => Some(Phase::Train),
            "VALID" | "VALIDATION" => Some(Phase::Valid),
            "INFER" | "INFERENCE" => Some(Phase::Infer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Phase {
    /// `TRAIN`, `VALID` or `INFER`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to make a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitSpec {
    /// Seed of the shuffle.
    pub seed: u64,
    /// Fraction set aside as VALID (without folds).
    pub valid_fraction: f64,
    /// Fraction set aside as INFER.
    pub infer_fraction: f64,
    /// Number of folds (0 = no cross-validation).
    pub k_folds: usize,
    /// The VALID fold.
    pub fold: usize,
}

/// Each subject's phase (and fold, in k-fold cross-validation).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    rows: BTreeMap<String, (Phase, Option<usize>)>,
}

impl Split {
    /// Splits `ids` as `spec` says (see the module docs).
    pub fn make(ids: &[String], spec: &SplitSpec) -> Split {
        let mut order: Vec<&String> = ids.iter().collect();
        order.sort();
        let mut rng = Stream::new(&[spec.seed, 0x5EED_5E1D]);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let n = order.len() as f64;
        let n_infer = (n * spec.infer_fraction).round() as usize;
        let n_valid = (n * spec.valid_fraction).round() as usize;
        let mut rows = BTreeMap::new();
        for (position, id) in order.into_iter().enumerate() {
            let row = if position < n_infer {
                (Phase::Infer, None)
            } else if spec.k_folds > 1 {
                let f = (position - n_infer) % spec.k_folds;
                (if f == spec.fold { Phase::Valid } else { Phase::Train }, Some(f))
            } else if position < n_infer + n_valid {
                (Phase::Valid, None)
            } else {
                (Phase::Train, None)
            };
            rows.insert(id.clone(), row);
        }
        Split { rows }
    }

    /// Reads a split file (CSV, quoted fields as [`super::csv`] reads them), taking VALID
    /// from the `fold` column when `k_folds > 1`.
    ///
    /// # Errors
    /// A path that is not a readable regular file, or a line that is not
    /// `subject_id,phase[,fold]`.
    pub fn read(path: &Path, spec: &SplitSpec) -> Result<Split, DataError> {
        let mut rows = BTreeMap::new();
        for record in super::csv::read_records(path)? {
            let bad = |message: String| DataError::Csv { path: path.to_owned(), line: record.line, message };
            let fields = &record.fields;
            if record.line == 1 && fields[0] == "subject_id" {
                continue;
            }
            let (id, phase) = match fields.as_slice() {
                [id, phase, ..] => (id, Phase::parse(phase)),
                _ => return Err(bad("expected `subject_id,phase[,fold]`".into())),
            };
            let phase =
                phase.ok_or_else(|| bad(format!("phase must be TRAIN, VALID or INFER, got `{}`", fields[1])))?;
            let fold = match fields.get(2).filter(|f| !f.is_empty()) {
                Some(f) => Some(f.parse::<usize>().map_err(|_| bad(format!("fold must be a number, got `{f}`")))?),
                None => None,
            };
            let phase = match (phase, fold) {
                (Phase::Infer, _) => Phase::Infer,
                (_, Some(f)) if spec.k_folds > 1 => {
                    if f == spec.fold {
                        Phase::Valid
                    } else {
                        Phase::Train
                    }
                }
                (_, None) if spec.k_folds > 1 => {
                    return Err(bad(format!(
                        "`training.k_folds` = {} but this split file has no fold column: delete it to make a new split",
                        spec.k_folds
                    )))
                }
                (phase, _) => phase,
            };
            rows.insert(id.clone(), (phase, fold));
        }
        Ok(Split { rows })
    }

    /// Writes the split as `subject_id,phase,fold` (an id with a comma or quote quoted).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        let mut text = String::from("subject_id,phase,fold\n");
        for (id, (phase, fold)) in &self.rows {
            let fold = fold.map(|f| f.to_string()).unwrap_or_default();
            let _ = writeln!(text, "{},{},{fold}", super::csv::field(id), phase.as_str());
        }
        let fail = |e: std::io::Error| DataError::Io(IoError { path: path.to_owned(), message: e.to_string() });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        std::fs::write(path, text).map_err(fail)
    }

    /// The phase of a subject, if the split knows it.
    pub fn phase(&self, id: &str) -> Option<Phase> {
        self.rows.get(id).map(|r| r.0)
    }

    /// The subjects of a phase, sorted.
    pub fn ids(&self, phase: Phase) -> Vec<String> {
        self.rows.iter().filter(|(_, r)| r.0 == phase).map(|(id, _)| id.clone()).collect()
    }

    /// Reuses the split file at `path` if it exists, else makes one from `ids` and
    /// writes it there.
    ///
    /// # Errors
    /// An unreadable or malformed file, or subjects the file does not list.
    pub fn load_or_make(path: &Path, ids: &[String], spec: &SplitSpec) -> Result<Split, DataError> {
        if !path.exists() {
            let split = Split::make(ids, spec);
            split.write(path)?;
            tracing::info!(file = %path.display(), train = split.ids(Phase::Train).len(), valid = split.ids(Phase::Valid).len(), infer = split.ids(Phase::Infer).len(), "dataset split made");
            return Ok(split);
        }
        let split = Split::read(path, spec)?;
        let missing: Vec<&String> = ids.iter().filter(|id| split.phase(id).is_none()).collect();
        if !missing.is_empty() {
            return Err(DataError::Split {
                path: path.to_owned(),
                message: format!("lists no phase for subjects {missing:?}: delete it to make a new split, or add them"),
            });
        }
        Ok(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i:02}")).collect()
    }

    fn spec(valid: f64, infer: f64, k_folds: usize, fold: usize) -> SplitSpec {
        SplitSpec { seed: 5, valid_fraction: valid, infer_fraction: infer, k_folds, fold }
    }

    #[test]
    fn fractions_are_honoured_and_the_seed_decides() {
        let s = Split::make(&ids(20), &spec(0.2, 0.1, 0, 0));
        assert_eq!((s.ids(Phase::Train).len(), s.ids(Phase::Valid).len(), s.ids(Phase::Infer).len()), (14, 4, 2));
        assert_eq!(s, Split::make(&ids(20), &spec(0.2, 0.1, 0, 0)), "same seed, same split");
        let other = Split::make(&ids(20), &SplitSpec { seed: 6, ..spec(0.2, 0.1, 0, 0) });
        assert_ne!(s.ids(Phase::Valid), other.ids(Phase::Valid));
    }

    #[test]
    fn folds_partition_the_non_infer_subjects() {
        let mut seen = Vec::new();
        for fold in 0..4 {
            let s = Split::make(&ids(21), &spec(0.0, 0.0, 4, fold));
            assert!((5..=6).contains(&s.ids(Phase::Valid).len()));
            seen.extend(s.ids(Phase::Valid));
        }
        seen.sort();
        assert_eq!(seen, ids(21), "every subject is VALID in exactly one fold");
    }

    #[test]
    fn the_file_round_trips_and_serves_every_fold() {
        let dir = std::env::temp_dir().join(format!("niftyhost-split-{}", std::process::id()));
        let path = dir.join("split.csv");
        let _ = std::fs::remove_file(&path);
        let made = Split::load_or_make(&path, &ids(9), &spec(0.0, 0.2, 3, 1)).unwrap();
        assert_eq!(Split::read(&path, &spec(0.0, 0.2, 3, 1)).unwrap(), made);
        let fold2 = Split::load_or_make(&path, &ids(9), &spec(0.0, 0.2, 3, 2)).unwrap();
        assert_eq!(fold2, Split::make(&ids(9), &spec(0.0, 0.2, 3, 2)));
        let err = Split::load_or_make(&path, &ids(10), &spec(0.0, 0.2, 3, 1)).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "split.csv: lists no phase for subjects [\"s09\"]: delete it to make a new split, or add them"
            ),
            "{err}"
        );
        // Ids that need quoting in CSV (file names may hold commas) read back as written.
        let odd: Vec<String> = vec!["a,b".into(), "say \"hi\"".into(), "plain".into()];
        let made = Split::make(&odd, &spec(0.0, 0.0, 0, 0));
        made.write(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"a,b\",TRAIN,"));
        assert_eq!(Split::read(&path, &spec(0.0, 0.0, 0, 0)).unwrap(), made);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
