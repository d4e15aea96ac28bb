//! The listing of `niftyhost list-plugins`: one row per component and per library that
//! failed to load ([`Registry::listing`]), and its table ([`ListingTable`]).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::registry::Registry;

/// One row of `niftyhost list-plugins`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListingRow {
    /// Component name (or the library's file stem when it failed to load).
    pub name: String,
    /// network / loss / augmentation, `unknown kind <code>` (from a newer plugin-api), or "-".
    pub kind: String,
    /// Library version, or "-".
    pub version: String,
    /// The library file.
    pub file: PathBuf,
    /// sha256 of the file, or "-".
    pub sha256: String,
    /// "ok", "shadowed by <file>", "skipped: ..." or the one-line reason it cannot be used.
    pub status: String,
    /// One line about the component.
    pub description: String,
    /// True when a library earlier on the search path provides a component of that name.
    #[serde(skip)]
    pub shadowed: bool,
}

impl Registry {
    /// The rows of `niftyhost list-plugins`: one per component (shadowed copies included),
    /// one per failed library.
    pub fn listing(&self) -> Vec<ListingRow> {
        let mut rows = Vec::new();
        for lib in &self.libraries {
            for c in &lib.info.components {
                let first = self.components(c.kind).into_iter().find(|(_, o)| o.name == c.name).map(|(l, _)| &l.path);
                let (status, shadowed) = match first {
                    _ if c.kind.known_name().is_none() => {
                        ("skipped: a kind this host does not know (the plugin is newer)".to_owned(), false)
                    }
                    Some(p) if *p != lib.path => (format!("shadowed by {}", p.display()), true),
                    _ => ("ok".to_owned(), false),
                };
                rows.push(ListingRow {
                    name: c.name.clone(),
                    kind: c.kind.to_string(),
                    version: lib.info.version.clone(),
                    file: lib.path.clone(),
                    sha256: lib.sha256.clone(),
                    status,
                    description: c.description.clone(),
                    shadowed,
                });
            }
        }
        for f in &self.failures {
            let stem = f.path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
            rows.push(ListingRow {
                name: stem.strip_prefix("lib").unwrap_or(stem).to_owned(),
                kind: "-".into(),
                version: "-".into(),
                file: f.path.clone(),
                sha256: "-".into(),
                status: f.kind.to_string(),
                description: String::new(),
                shadowed: false,
            });
        }
        rows
    }
}

/// The listing as a table: a header, then one line per row, each column as wide as its
/// widest entry, sha256 cut to 12 characters. Shadowed copies are shown only with
/// `shadowed` set; otherwise a last line counts them.
pub struct ListingTable<'a> {
    /// The rows, as [`Registry::listing`] gives them.
    pub rows: &'a [ListingRow],
    /// Whether to show the rows of shadowed copies.
    pub shadowed: bool,
}

impl fmt::Display for ListingTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADER: [&str; 6] = ["name", "kind", "version", "sha256", "file", "status"];
        let cells = |r: &ListingRow| {
            let sha = r.sha256.get(..12).unwrap_or(&r.sha256).to_owned();
            [r.name.clone(), r.kind.clone(), r.version.clone(), sha, r.file.display().to_string(), r.status.clone()]
        };
        let shown: Vec<[String; 6]> = self.rows.iter().filter(|r| self.shadowed || !r.shadowed).map(cells).collect();
        let mut widths = HEADER.map(str::len);
        for row in &shown {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, row: [&str; 6]| {
            for (i, cell) in row.iter().enumerate().take(5) {
                write!(f, "{cell:<width$}  ", width = widths[i])?;
            }
            writeln!(f, "{}", row[5])
        };
        line(f, HEADER)?;
        for row in &shown {
            line(f, row.each_ref().map(String::as_str))?;
        }
        let hidden = self.rows.len() - shown.len();
        if hidden > 0 {
            writeln!(f, "({hidden} shadowed copies not shown; -v lists them)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, status: &str, shadowed: bool) -> ListingRow {
        ListingRow {
            name: name.into(),
            kind: kind.into(),
            version: "0.1.0".into(),
            file: PathBuf::from(format!("plugins/lib{name}.so")),
            sha256: "0123456789abcdef".into(),
            status: status.into(),
            description: String::new(),
            shadowed,
        }
    }

    #[test]
    fn columns_are_as_wide_as_their_content_and_shadowed_rows_need_verbose() {
        let rows = [
            row("generalised_wasserstein_dice", "loss", "ok", false),
            row("dice", "loss", "ok", false),
            row("dice", "loss", "shadowed by plugins/libdice.so", true),
        ];
        let table = ListingTable { rows: &rows, shadowed: false }.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let kind_at = "generalised_wasserstein_dice  ".len();
        assert_eq!(lines[0].find("kind"), Some(kind_at), "{table}");
        assert_eq!(lines[1].find("loss"), Some(kind_at), "{table}");
        assert_eq!(lines[2].find("loss"), Some(kind_at), "{table}");
        assert!(lines[1].contains("  0123456789ab  ") && lines[1].ends_with("  ok"), "{table}");
        assert_eq!(lines[3], "(1 shadowed copies not shown; -v lists them)");

        let verbose = ListingTable { rows: &rows, shadowed: true }.to_string();
        assert_eq!(verbose.lines().count(), 4, "{verbose}");
        assert!(verbose.lines().last().is_some_and(|l| l.ends_with("shadowed by plugins/libdice.so")), "{verbose}");
    }
}
