//! CSV records as RFC 4180 writes them: fields separated by commas, a field in double
//! quotes may hold commas (and a doubled `""` for a quote), spaces around an unquoted
//! field are dropped. One record per line (a quoted field cannot span lines).

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
    use super::fields;

    #[test]
    fn quoted_fields_keep_commas_and_doubled_quotes() {
        assert_eq!(fields("s1, data/a.nii").unwrap(), ["s1", "data/a.nii"]);
        assert_eq!(fields("s1,\"data/a,b.nii\"\r\n").unwrap(), ["s1", "data/a,b.nii"]);
        assert_eq!(fields("\"s \"\"1\"\"\" , \"x\"").unwrap(), ["s \"1\"", "x"]);
        assert_eq!(fields("a,,b,").unwrap(), ["a", "", "b", ""]);
        assert_eq!(fields("s1,\"data/a.nii").unwrap_err(), "field 2 opens a quote that is not closed");
        assert!(fields("s1,\"a\"b").unwrap_err().contains("field 2 has text after its closing quote"));
    }
}
