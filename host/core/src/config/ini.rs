//! NiftyNet-style INI configs: `[SYSTEM] [NETWORK] [TRAINING] [INFERENCE] [EVALUATION]
//! [SEGMENTATION]` plus one section per input (any other name), with untyped values
//! such as `(20, 42, 42)`, `True` or `T1`. The lines are read here; [`super::niftynet`]
//! translates each key to niftyhost's table layout or refuses it.

use std::path::Path;

use toml::{Table, Value};

use super::layers::insert;
use super::niftynet::{self, Explained, IniEntry, Outcome};
use super::ConfigError;

/// Reads the `key = value` lines of a NiftyNet INI text (a bare `key` has an empty value,
/// as Python's configparser allows).
///
/// # Errors
/// A key before any `[section]`.
pub fn entries(text: &str, origin: &str) -> Result<Vec<IniEntry>, ConfigError> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            continue;
        }
        let (key, raw) = line.split_once(['=', ':']).unwrap_or((line, ""));
        let section = section.clone().ok_or_else(|| ConfigError::Parse {
            origin: format!("{origin}:{}", n + 1),
            message: format!("a key before any [section]: `{line}`"),
        })?;
        out.push(IniEntry { line: n + 1, section, key: key.trim().to_ascii_lowercase(), raw: raw.trim().to_owned() });
    }
    Ok(out)
}

/// Every key of the NiftyNet file at `path` with what it became; niftyhost's check of
/// the values is `check` (its message names the niftyhost key).
///
/// # Errors
/// A key before any section.
pub fn explain(
    text: &str,
    path: &Path,
    check: impl Fn(&str, &Value) -> Result<(), String>,
) -> Result<Vec<Explained>, ConfigError> {
    let entries = entries(text, &path.display().to_string())?;
    Ok(niftynet::translate(&entries, check))
}

/// The error a key's outcome stops the configuration with, if it does.
pub fn outcome_error(e: &Explained, origin: &str) -> Option<ConfigError> {
    let key = format!("[{}] {}", e.section, e.key);
    let origin = format!("{origin}:{}", e.line);
    match &e.outcome {
        Outcome::Set { .. } | Outcome::Kept { .. } => None,
        Outcome::Refused { reason } => {
            Some(ConfigError::NiftyNet { key, origin, message: format!("refused: {reason}") })
        }
        Outcome::Invalid { message } => Some(ConfigError::NiftyNet { key, origin, message: message.clone() }),
        Outcome::Unknown { nearest } => Some(ConfigError::UnknownKey {
            key,
            origin,
            hint: nearest.as_ref().map(|n| format!("; did you mean `{n}`?")).unwrap_or_default(),
        }),
    }
}

/// Parses a NiftyNet INI text into niftyhost's table layout, checking each translated
/// value with `check` (which names the niftyhost key and `origin`).
///
/// # Errors
/// A section of another NiftyNet application (`[REGRESSION]`, `[GAN]`, ...), else the
/// first key that is unknown, refused or has a value its key does not take, in file order.
pub fn parse(
    text: &str,
    path: &Path,
    check: impl Fn(&str, &Value) -> Result<(), ConfigError>,
) -> Result<Table, ConfigError> {
    let origin = path.display().to_string();
    let explained = explain(text, path, |_, _| Ok(()))?;
    let mut root = Table::new();
    // A file of another NiftyNet application (regression, GAN, ...) is refused as such
    // rather than at its first key that segmentation lacks.
    let application = explained.iter().find(|e| niftynet::is_other_application(&e.section));
    for e in application.into_iter().chain(&explained) {
        if let Some(error) = outcome_error(e, &origin) {
            return Err(error);
        }
        if let Outcome::Set { keys } = &e.outcome {
            for (key, value) in keys {
                check(key, value)?;
                insert(&mut root, key, value.clone());
            }
        }
    }
    Ok(root)
}
