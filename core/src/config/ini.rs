//! NiftyNet-style INI configs: `[SYSTEM] [NETWORK] [TRAINING] [INFERENCE] [EVALUATION]
//! [SEGMENTATION]` plus one section per input (any other name), with untyped values
//! such as `(20, 42, 42)`, `True` or `T1`, converted to the TOML layout niftyhost uses.

use toml::{Table, Value};

use super::keys::{INPUT_KEYS, KEYS};
use super::ConfigError;

const FIXED_SECTIONS: &[&str] = &["system", "network", "training", "inference", "evaluation", "segmentation"];

/// Converts one untyped INI value, guided by the type of the key's default.
fn convert(raw: &str, default: Option<&Value>) -> Value {
    let scalar = |s: &str| -> Value {
        let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
        if let Ok(i) = s.parse::<i64>() {
            Value::Integer(i)
        } else if let Ok(f) = s.parse::<f64>() {
            Value::Float(f)
        } else if s.eq_ignore_ascii_case("true") {
            Value::Boolean(true)
        } else if s.eq_ignore_ascii_case("false") {
            Value::Boolean(false)
        } else {
            Value::String(s.to_owned())
        }
    };
    let inner = raw.trim().trim_start_matches(['(', '[']).trim_end_matches([')', ']']);
    let wants_list = matches!(default, Some(Value::Array(_)));
    let looks_like_list = raw.trim().starts_with(['(', '[']) || raw.contains(',');
    let value = if wants_list || looks_like_list {
        Value::Array(inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(scalar).collect())
    } else {
        scalar(raw)
    };
    // A string key given a number-like value stays a string (e.g. a folder named `1`).
    match (default, &value) {
        (Some(Value::String(_)), Value::Integer(_) | Value::Float(_) | Value::Boolean(_)) => {
            Value::String(raw.trim().to_owned())
        }
        (Some(Value::String(_)), Value::Array(_)) => Value::String(raw.trim().to_owned()),
        _ => value,
    }
}

fn default_of(section: &str, key: &str) -> Option<Value> {
    let text = if FIXED_SECTIONS.contains(&section) {
        KEYS.iter().find(|s| s.key == format!("{section}.{key}"))?.default
    } else {
        INPUT_KEYS.iter().find(|s| s.key == key)?.default
    };
    toml::from_str::<Table>(&format!("v = {text}")).ok()?.remove("v")
}

/// Parses a NiftyNet INI text into niftyhost's table layout.
///
/// # Errors
/// A line that is neither a section, a `key = value` pair nor a comment.
pub fn parse(text: &str, origin: &str) -> Result<Table, ConfigError> {
    let mut root = Table::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_ascii_lowercase());
            continue;
        }
        let parse_error = |message: String| ConfigError::Parse { origin: format!("{origin}:{}", n + 1), message };
        let (key, raw) =
            line.split_once(['=', ':']).ok_or_else(|| parse_error(format!("expected `key = value`, got `{line}`")))?;
        let sec = section.clone().ok_or_else(|| parse_error("a key before any [section]".into()))?;
        let key = key.trim().to_ascii_lowercase();
        let mut value = convert(raw, default_of(&sec, &key).as_ref());
        if key == "axcodes" {
            // NiftyNet writes `axcodes = (A, R, S)`: keep the letters.
            value = Value::String(raw.chars().filter(char::is_ascii_alphabetic).collect());
        }
        if sec == "segmentation" && (key == "image" || key == "label") {
            // Section names are case-insensitive in NiftyNet; niftyhost stores them lowercased.
            value = lowercase_strings(value);
        }
        let table = if FIXED_SECTIONS.contains(&sec.as_str()) {
            root.entry(sec.clone()).or_insert_with(|| Value::Table(Table::new()))
        } else {
            let inputs = root.entry("input").or_insert_with(|| Value::Table(Table::new()));
            let inputs = inputs.as_table_mut().expect("input is a table");
            inputs.entry(sec.clone()).or_insert_with(|| Value::Table(Table::new()))
        };
        table.as_table_mut().expect("sections are tables").insert(key, value);
    }
    Ok(root)
}

fn lowercase_strings(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.to_ascii_lowercase()),
        Value::Array(a) => Value::Array(a.into_iter().map(lowercase_strings).collect()),
        other => other,
    }
}
