//! CSV records as RFC 4180 writes them: fields separated by commas, a field in double
//! quotes may hold commas (and a doubled `""` for a quote), spaces around an unquoted
//! field are dropped. One record per line (a quoted field cannot span lines). Used for
//! the files users write or edit: `csv_file` input lists and the split file.

use std::borrow::Cow;
use std::path::Path;

use super::DataError;
use crate::io::IoError;

/// One non-empty line of a CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The line number, from 1.
    pub line: usize,
    /// Its fields.
    pub fields: Vec<String>,
}

/// Every non-empty line of the CSV file at `path` as fields (a leading UTF-8 byte-order
/// mark is dropped). The path is checked to be a regular file before it is opened, so a
/// FIFO cannot block the reader.
///
/// # Errors
/// A path that is not a readable regular file, or a malformed line (with its number).
pub fn read_records(path: &Path) -> Result<Vec<Record>, DataError> {
    let io = |message: String| DataError::Io(IoError { path: path.to_owned(), message });
    crate::io::file_kind::regular_file(path).map_err(io)?;
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let fields = fields(l).map_err(|message| DataError::Csv { path: path.to_owned(), line: n + 1, message })?;
            Ok(Record { line: n + 1, fields })
        })
        .collect()
}

/// `value` as one CSV field: quoted (quotes doubled) when it holds a comma or a quote or
/// starts or ends with a space, which [`fields`] would otherwise read differently.
pub fn field(value: &str) -> Cow<'_, str> {
    if value.contains([',', '"']) || value.trim() != value {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(value)
    }
}

/// The fields of one line.
///
/// # Errors
/// A quote that is not closed, or text between a closing quote and the next comma.
pub fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim_end_matches(['\r', '\n']);
    loop {
        let trimmed = rest.trim_start();
        let (field, after) = if let Some(quoted) = trimmed.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("field {} opens a quote that is not closed", out.len() + 1)),
                    Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                        value.push('"');
                        chars.next();
                    }
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => value.push(c),
                }
            };
            let after = quoted[end..].trim_start();
            if !after.is_empty() && !after.starts_with(',') {
                return Err(format!(
                    "field {} has text after its closing quote: expected a comma or the end of the line",
                    out.len() + 1
                ));
            }
            (value, after)
        } else {
            let end = trimmed.find(',').unwrap_or(trimmed.len());
            (trimmed[..end].trim_end().to_owned(), &trimmed[end..])
        };
        out.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{field, fields};

    #[test]
    fn quoted_fields_keep_commas_and_doubled_quotes() {
        assert_eq!(fields("s1, data/a.nii").unwrap(), ["s1", "data/a.nii"]);
        assert_eq!(fields("s1,\"data/a,b.nii\"\r\n").unwrap(), ["s1", "data/a,b.nii"]);
        assert_eq!(fields("\"s \"\"1\"\"\" , \"x\"").unwrap(), ["s \"1\"", "x"]);
        assert_eq!(fields("a,,b,").unwrap(), ["a", "", "b", ""]);
        assert_eq!(fields("s1,\"data/a.nii").unwrap_err(), "field 2 opens a quote that is not closed");
        assert!(fields("s1,\"a\"b").unwrap_err().contains("field 2 has text after its closing quote"));
    }

    #[test]
    fn written_fields_read_back_as_they_were() {
        assert_eq!(field("sub01"), "sub01");
        for value in ["sub 01", "a,b", "say \"hi\"", " padded ", ""] {
            let line = format!("{},TRAIN", field(value));
            assert_eq!(fields(&line).unwrap(), [value, "TRAIN"], "{line}");
        }
    }
}
