//! `niftyhost config -c file.ini --explain`: what each key of a NiftyNet INI file became
//! in niftyhost (the niftyhost keys and values it sets), or why it was kept with nothing to
//! set, refused, invalid or unknown.

use std::fmt;

use serde::Serialize;

use crate::cli::JobArgs;
use crate::config::niftynet::{Explained, Outcome};
use crate::config::{self, ConfigError};

/// Every key of the file, in file order.
#[derive(Debug, Serialize)]
pub struct ExplainReport {
    /// The INI file.
    pub file: String,
    /// Each key and what it became.
    pub keys: Vec<Explained>,
}

impl ExplainReport {
    /// How many keys stop the configuration from loading.
    pub fn errors(&self) -> usize {
        self.keys.iter().filter(|k| k.outcome.is_error()).count()
    }
}

impl fmt::Display for ExplainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "NiftyNet configuration {}:", self.file)?;
        for key in &self.keys {
            writeln!(f, "{key}")?;
        }
        let count = |p: fn(&Outcome) -> bool| self.keys.iter().filter(|k| p(&k.outcome)).count();
        writeln!(
            f,
            "{} keys: {} translated, {} kept with nothing to set, {} refused, {} invalid, {} unknown",
            self.keys.len(),
            count(|o| matches!(o, Outcome::Set { .. })),
            count(|o| matches!(o, Outcome::Kept { .. })),
            count(|o| matches!(o, Outcome::Refused { .. })),
            count(|o| matches!(o, Outcome::Invalid { .. })),
            count(|o| matches!(o, Outcome::Unknown { .. })),
        )
    }
}

/// A report whose file does not load, and the error that says so.
#[derive(Debug)]
pub struct ExplainFailure {
    /// What each key became.
    pub report: ExplainReport,
    /// Why the configuration does not load.
    pub error: anyhow::Error,
}

/// Explains the NiftyNet INI file of `-c`, then loads the whole configuration (so rules
/// between keys are checked too).
///
/// # Errors
/// No `-c` .ini file, or an unreadable one (`report` empty); keys that are refused,
/// invalid or unknown, or a configuration that does not load (with the report).
pub fn explain(args: &JobArgs) -> Result<ExplainReport, ExplainFailure> {
    let empty =
        |file: String, error: anyhow::Error| ExplainFailure { report: ExplainReport { file, keys: Vec::new() }, error };
    let Some(path) = args.config.as_deref().filter(|p| p.extension().is_some_and(|e| e == "ini" || e == "cfg")) else {
        let error =
            ConfigError::Invalid("`--explain` explains a NiftyNet .ini file: give it with `-c FILE.ini`".into());
        return Err(empty(String::new(), error.into()));
    };
    let file = path.display().to_string();
    let keys = match config::explain_ini(path) {
        Ok(keys) => keys,
        Err(e) => return Err(empty(file, e.into())),
    };
    let report = ExplainReport { file, keys };
    let errors = report.errors();
    if errors > 0 {
        let error = ConfigError::Invalid(format!(
            "{errors} of the {} keys of {} are refused, invalid or unknown (see above)",
            report.keys.len(),
            report.file
        ));
        return Err(ExplainFailure { report, error: error.into() });
    }
    match super::settings(args) {
        Ok(_) => Ok(report),
        Err(error) => Err(ExplainFailure { report, error: error.into() }),
    }
}
