//! The parameter listing shown by `niftyhost <job> -h` and `niftyhost config`: every
//! host key with its default, and the parameters of every plugin component found, laid
//! out in aligned columns (key, default, description) within the terminal's width; and
//! the clap command that shows it after a job's own help.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;
use niftyhost_plugin_api::ComponentKind;

use crate::cli::{Cli, PluginArgs};
use crate::config::{INPUT_KEYS, KEYS};
use crate::plugins::Registry;

/// One line or row of the listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Text wrapped within the width, its lines starting at column `indent`; empty text
    /// is a blank line.
    Text {
        /// Columns before the text.
        indent: usize,
        /// The text.
        text: String,
    },
    /// A parameter: key, default and description in columns.
    Param {
        /// The dotted key.
        key: String,
        /// Its default, as written in a config.
        default: String,
        /// What it does.
        doc: String,
    },
}

fn text(indent: usize, text: impl Into<String>) -> Entry {
    Entry::Text { indent, text: text.into() }
}

/// Columns before a key.
const INDENT: usize = 2;
/// Spaces between columns.
const GAP: usize = 2;
/// Narrowest description column worth having beside the key and default; below it,
/// descriptions go under their key.
const MIN_DOC: usize = 20;
/// Where descriptions start when they go under their key.
const UNDER: usize = INDENT + 4;

/// The width the listing is laid out in: the terminal's, else `COLUMNS`, else 100 (as
/// clap finds it, so that clap does not wrap the listing again).
pub fn terminal_width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|&w| w > 0)
        .unwrap_or(100)
}

fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// The words of `text` in lines, the first starting at column `first`, the others at
/// `rest`, none past `width` unless it holds a single longer word.
fn wrap(text: &str, first: usize, rest: usize, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = " ".repeat(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && width_of(&line) + 1 + width_of(word) > width {
            lines.push(std::mem::replace(&mut line, " ".repeat(rest)));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    if !empty {
        lines.push(line);
    }
    lines
}

/// The columns of one table: a run of parameters between text lines.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Columns {
    /// Width of the key column.
    key: usize,
    /// Width of the default column.
    default: usize,
    /// Where descriptions start.
    doc: usize,
    /// Whether descriptions go beside the key and default (else under them).
    beside: bool,
}

impl Columns {
    /// Columns for rows of these key and default widths: defaults up to 1/6 of `width`
    /// get a column; keys get one as wide as leaves at least 2/5 of the width (and 20)
    /// to the descriptions. Without room for a key column, descriptions go under their key.
    fn fit(rows: &[(usize, usize)], width: usize) -> Columns {
        let default = rows.iter().map(|r| r.1).filter(|&d| d <= width / 6).max().unwrap_or(0);
        let doc_min = MIN_DOC.max(width * 2 / 5);
        let room = width.checked_sub(INDENT + GAP + default + GAP + doc_min);
        match room.and_then(|room| rows.iter().map(|r| r.0).filter(|&k| k <= room).max()) {
            Some(key) => Columns { key, default, doc: INDENT + key + GAP + default + GAP, beside: true },
            None => Columns { key: 0, default: 0, doc: UNDER, beside: false },
        }
    }

    /// The lines of one parameter.
    fn lines(&self, key: &str, default: &str, doc: &str, width: usize) -> Vec<String> {
        let (key_w, default_w, doc_col) = (self.key, self.default, self.doc);
        if self.beside && width_of(key) <= key_w && width_of(default) <= default_w {
            // As wide as the key and default columns: it takes the place of the first
            // line's indentation.
            let head = format!("{:INDENT$}{key:<key_w$}{:GAP$}{default:<default_w$}{:GAP$}", "", "", "");
            let mut lines = wrap(doc, doc_col, doc_col, width);
            match lines.first_mut() {
                Some(first) => first.replace_range(..doc_col, &head),
                None => lines.push(head.trim_end().to_owned()),
            }
            return lines;
        }
        let mut lines = if INDENT + width_of(key) + GAP + width_of(default) <= width {
            vec![format!("{:INDENT$}{key}{:GAP$}{default}", "", "")]
        } else {
            vec![format!("{:INDENT$}{key}", ""), format!("{:doc_col$}{default}", "")]
        };
        lines.extend(wrap(doc, doc_col, doc_col, width));
        lines
    }
}

/// Lays out `entries` within `width` columns. Each table (a run of parameters between
/// text lines) has three columns: keys, defaults, and descriptions wrapped onto lines
/// that start at the description column (see `Columns::fit`). A key or default longer
/// than its column runs on, and its description starts on the next line. No line is
/// longer than `width` unless it is a single longer word.
pub fn render(entries: &[Entry], width: usize) -> String {
    let mut out = String::new();
    let mut table: Option<Columns> = None;
    for (n, entry) in entries.iter().enumerate() {
        let lines = match entry {
            Entry::Text { text, .. } if text.is_empty() => vec![String::new()],
            Entry::Text { indent, text } => wrap(text, *indent, *indent, width),
            Entry::Param { key, default, doc } => {
                let columns = *table.get_or_insert_with(|| {
                    let rows: Vec<(usize, usize)> = entries[n..]
                        .iter()
                        .map_while(|e| match e {
                            Entry::Param { key, default, .. } => Some((width_of(key), width_of(default))),
                            Entry::Text { .. } => None,
                        })
                        .collect();
                    Columns::fit(&rows, width)
                });
                columns.lines(key, default, doc, width)
            }
        };
        if matches!(entry, Entry::Text { .. }) {
            table = None;
        }
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The host's keys, section by section.
pub fn host_parameters() -> Vec<Entry> {
    let mut out =
        vec![text(0, "Parameters (config keys; override with --set key=value or NIFTYHOST_<SECTION>__<KEY>=value):")];
    let param = |key: String, default: &str, doc: &str| Entry::Param { key, default: default.into(), doc: doc.into() };
    out.extend(KEYS.iter().map(|spec| param(spec.key.into(), spec.default, spec.doc)));
    out.extend(INPUT_KEYS.iter().map(|spec| param(format!("input.<name>.{}", spec.key), spec.default, spec.doc)));
    out
}

/// The parameters of every network, loss and augmentation component in `registry`.
pub fn plugin_parameters(registry: &Registry) -> Vec<Entry> {
    let mut out = Vec::new();
    for (kind, table) in [
        (ComponentKind::Network, "network.params"),
        (ComponentKind::Loss, "training.loss_params"),
        (ComponentKind::Augmentation, "training.augmentation.params"),
    ] {
        for (lib, c) in registry.components(kind) {
            let file = lib.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(text(0, ""));
            out.push(text(
                0,
                format!("{} `{}` ({file} {}): keys of [{table}]", kind.as_str(), c.name, lib.info.version),
            ));
            if c.params.is_empty() {
                out.push(text(INDENT, "(no parameters)"));
            }
            for p in c.params.iter() {
                out.push(Entry::Param {
                    key: format!("{table}.{}", p.name),
                    default: p.default_json.to_string(),
                    doc: format!("{} ({})", p.doc, p.ty),
                });
            }
        }
    }
    if out.is_empty() {
        out.push(text(0, ""));
        out.push(text(0, "(no plugins found: use --plugin FILE or --plugin-dir DIR to list their parameters)"));
    }
    for f in &registry.failures {
        out.push(text(INDENT, format!("! {f}")));
    }
    out
}

/// The whole listing, host keys and plugin parameters in the same columns, laid out
/// within `width`.
pub fn parameters(registry: &Registry, width: usize) -> String {
    let mut entries = host_parameters();
    entries.extend(plugin_parameters(registry));
    render(&entries, width)
}

/// The plugin flags of a command line, read before clap so `-h` can list plugin parameters.
fn prescan_plugins(args: &[OsString]) -> PluginArgs {
    let mut out = PluginArgs::default();
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        let (flag, inline) = a.split_once('=').map_or((a, None), |(f, v)| (f, Some(v.to_owned())));
        let target = match flag {
            "--plugin" => &mut out.plugins,
            "--plugin-dir" => &mut out.plugin_dirs,
            _ => continue,
        };
        if let Some(v) = inline.or_else(|| it.next().map(str::to_owned)) {
            target.push(PathBuf::from(v));
        }
    }
    out
}

/// The clap command of `niftyhost`; when `args` ask for help, the jobs that take a
/// config list every parameter after their options (plugins found with the `--plugin`
/// and `--plugin-dir` flags of `args`).
pub fn command(args: &[OsString]) -> clap::Command {
    let cmd = Cli::command();
    let wants_help = args.iter().any(|a| a == "-h" || a == "--help");
    if !wants_help {
        return cmd;
    }
    let registry = Registry::load(&prescan_plugins(args).search_path());
    let width = terminal_width();
    let listing = parameters(&registry, width);
    let with_listing = |c: clap::Command| c.after_help(listing.clone()).term_width(width);
    cmd.mut_subcommand("train", with_listing)
        .mut_subcommand("inference", with_listing)
        .mut_subcommand("export", with_listing)
        .mut_subcommand("evaluation", with_listing)
        .mut_subcommand("config", with_listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(key: &str, default: &str, doc: &str) -> Entry {
        Entry::Param { key: key.into(), default: default.into(), doc: doc.into() }
    }

    /// Lines longer than `width` that hold more than one word.
    fn too_long(out: &str, width: usize) -> Vec<&str> {
        out.lines().filter(|l| width_of(l) > width && l.split_whitespace().count() > 1).collect()
    }

    /// Renders `entries` at `width` and checks the lines against `expected`, and that no
    /// line but a single word is longer than `width`.
    fn assert_renders(entries: &[Entry], width: usize, expected: &[String]) {
        let out = render(entries, width);
        assert!(too_long(&out, width).is_empty(), "{out}");
        assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
    }

    /// The expected lines as owned strings.
    fn lines<const N: usize>(lines: [&str; N]) -> Vec<String> {
        lines.map(str::to_owned).to_vec()
    }

    #[test]
    fn keys_defaults_and_descriptions_are_aligned_columns_within_the_width() {
        let entries = [
            text(0, "Parameters (a heading long enough to need two lines at this width):"),
            param("a.seed", "1", "seed of every random draw, a description long enough to wrap onto three lines here"),
            param("a.longer_key", "\"runs\"", "short"),
            param("b.x", "[]", ""),
        ];
        // Key column 12 wide (a.longer_key), default column 6 ("runs"): descriptions at 2 + 12 + 2 + 6 + 2.
        let doc_col = 24;
        let expected = vec![
            "Parameters (a heading long enough to need two lines at this".to_owned(),
            "width):".to_owned(),
            format!("  {:<12}  {:<6}  seed of every random draw, a", "a.seed", "1"),
            format!("{:doc_col$}description long enough to wrap onto", ""),
            format!("{:doc_col$}three lines here", ""),
            "  a.longer_key  \"runs\"  short".to_owned(),
            format!("  {:<12}  []", "b.x"),
        ];
        assert_renders(&entries, 60, &expected);
    }

    #[test]
    fn an_overlong_key_or_default_puts_its_description_on_the_next_line() {
        let entries = [
            param("k", "1", "one"),
            param("a.key_much_longer_than_two_fifths_of_the_width", "2", "two words"),
            param("d", "[\"label\", \"foreground\"]", "three"),
        ];
        // Key column 1 wide (k), default column 1: descriptions at 2 + 1 + 2 + 1 + 2 = 8.
        let expected = lines([
            "  k  1  one",
            "  a.key_much_longer_than_two_fifths_of_the_width  2",
            "        two words",
            "  d  [\"label\", \"foreground\"]",
            "        three",
        ]);
        assert_renders(&entries, 60, &expected);
    }

    #[test]
    fn a_narrow_width_puts_descriptions_under_their_key_and_only_single_words_overflow() {
        let word = "a_single_word_longer_than_the_whole_width";
        let entries = [
            param("ab", "0", "x"),
            param("system.devices", "[\"cpu\"]", &format!("devices to run on {word} and more")),
            param("system.a_key_longer_than_the_width_itself", "0", "y"),
        ];
        // Columns of 2 and 1 would leave 24 - 9 for descriptions, under 20; `system.devices`
        // and its default would be 25 wide.
        let mut expected =
            lines(["  ab  0", "      x", "  system.devices", "      [\"cpu\"]", "      devices to run on"]);
        expected.push(format!("      {word}"));
        expected.extend(lines(["      and more", "  system.a_key_longer_than_the_width_itself", "      0", "      y"]));
        assert_renders(&entries, 24, &expected);
    }

    #[test]
    fn each_table_between_text_lines_has_its_own_columns() {
        let entries = [
            param("short.a", "1", "one"),
            text(0, "heading"),
            param("a.much.longer.key", "2", "two"),
            param("b", "[3, 3]", "three"),
        ];
        let expected = lines([
            "  short.a  1  one",
            "heading",
            "  a.much.longer.key  2       two",
            "  b                  [3, 3]  three",
        ]);
        assert_renders(&entries, 80, &expected);
    }

    #[test]
    fn the_host_listing_fits_common_widths() {
        for width in [60, 80, 100, 140] {
            let out = render(&host_parameters(), width);
            assert!(too_long(&out, width).is_empty(), "width {width}:\n{out}");
            for spec in KEYS {
                let line = out.lines().find(|l| l.starts_with(&format!("  {} ", spec.key)));
                let line = line.unwrap_or_else(|| panic!("{} missing at width {width}:\n{out}", spec.key));
                assert!(line.contains(spec.default), "{line}");
            }
        }
    }
}
