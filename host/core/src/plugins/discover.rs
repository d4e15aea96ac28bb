//! Where plugin libraries are looked for, in precedence order:
//! `--plugin` files, `--plugin-dir` folders, `NIFTYHOST_PLUGIN_PATH` (colon-separated),
//! `./plugins`, and `plugins/` beside the executable.

use std::path::{Path, PathBuf};

/// The ordered list of places to look.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    /// Library files named explicitly (`--plugin`).
    pub files: Vec<PathBuf>,
    /// Folders whose `lib*.so` files are all loaded.
    pub dirs: Vec<PathBuf>,
}

/// A library file to load, with the reason it was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// True when named with `--plugin` (a missing file is then an error).
    pub explicit: bool,
}

impl SearchPath {
    /// The standard search path: `files` and `dirs` from the command line, then
    /// `NIFTYHOST_PLUGIN_PATH`, `./plugins` and `<exe dir>/plugins`.
    pub fn standard(files: &[PathBuf], dirs: &[PathBuf]) -> SearchPath {
        let mut all_dirs: Vec<PathBuf> = dirs.to_vec();
        if let Some(path) = std::env::var_os("NIFTYHOST_PLUGIN_PATH") {
            all_dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
        }
        all_dirs.push(PathBuf::from("plugins"));
        if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
            all_dirs.push(exe_dir.join("plugins"));
        }
        SearchPath { files: files.to_vec(), dirs: all_dirs }
    }

    /// The library files to load, each once (by canonical path), explicit files first.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut push = |path: PathBuf, explicit: bool| {
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if !seen.contains(&key) {
                seen.push(key);
                out.push(Candidate { path, explicit });
            }
        };
        for f in &self.files {
            push(f.clone(), true);
        }
        for dir in &self.dirs {
            for f in library_files(dir) {
                tracing::debug!(file = %f.display(), "plugin candidate");
                push(f, false);
            }
        }
        out
    }

    /// Every library file name found in the search folders (for "did you mean").
    pub fn known_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().flat_map(|d| library_files(d)).collect()
    }
}

/// The `lib*.so` files of a folder, sorted (a missing folder has none).
fn library_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("lib") && n.ends_with(std::env::consts::DLL_SUFFIX))
        })
        .collect();
    files.sort();
    files
}
