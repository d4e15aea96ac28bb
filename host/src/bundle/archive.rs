//! The archive of a bundle: a gzip-compressed tar of regular files, read with checks so
//! that unpacking never writes outside its own folder.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::BundleError;

/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 4096;
/// Most bytes a bundle may unpack to (64 GiB).
pub const MAX_UNPACKED_BYTES: u64 = 64 << 30;

/// Writes `files` (name in the archive, file on disk) as a `.tar.gz` at `out`, through a
/// temporary file renamed when complete.
///
/// # Errors
/// A file that cannot be read, or an output that cannot be written.
pub fn pack(out: &Path, files: &[(String, PathBuf)]) -> Result<(), BundleError> {
    let io = |path: &Path, e: std::io::Error| BundleError::Io { path: path.to_owned(), message: e.to_string() };
    let tmp = out.with_extension("nhb.tmp");
    let result = (|| -> Result<(), BundleError> {
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let gz = GzEncoder::new(BufWriter::with_capacity(1 << 20, file), Compression::new(1));
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        for (name, path) in files {
            let mut src = File::open(path).map_err(|e| io(path, e))?;
            let len = src.metadata().map_err(|e| io(path, e))?.len();
            let mut header = tar::Header::new_gnu();
            header.set_size(len);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, &mut src).map_err(|e| io(path, e))?;
        }
        let gz = tar.into_inner().map_err(|e| io(&tmp, e))?;
        let mut w = gz.finish().map_err(|e| io(&tmp, e))?;
        w.flush().map_err(|e| io(&tmp, e))?;
        w.into_inner().map_err(|e| io(&tmp, e.into_error()))?.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| io(out, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The relative path an entry may be unpacked to: plain names only (no root, no `..`,
/// no `.`), at most 4 levels.
///
/// # Errors
/// [`BundleError::UnsafeEntry`] naming the entry.
pub fn safe_relative(name: &Path, bundle: &Path) -> Result<PathBuf, BundleError> {
    let unsafe_entry = |why: &str| BundleError::UnsafeEntry {
        bundle: bundle.to_owned(),
        entry: name.display().to_string(),
        why: why.to_owned(),
    };
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => return Err(unsafe_entry("`.` in the path")),
            Component::ParentDir => return Err(unsafe_entry("`..` would leave the unpacking folder")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_entry("absolute path")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(unsafe_entry("empty path"));
    }
    if out.components().count() > 4 {
        return Err(unsafe_entry("more than 4 levels"));
    }
    Ok(out)
}

/// Unpacks the bundle at `bundle` into the empty folder `dest`: regular files only, each
/// path checked by [`safe_relative`], each file created new (never overwritten, never
/// through a link). Reads the compressed stream to its end, so a truncated or corrupted
/// file is refused. Returns the relative paths written.
///
/// # Errors
/// [`BundleError::Corrupt`] for a stream that is not a complete `.tar.gz`;
/// [`BundleError::UnsafeEntry`] for a link, device, absolute path or `..`; too many
/// entries or bytes.
pub fn unpack(bundle: &Path, dest: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let corrupt = |message: String| BundleError::Corrupt { bundle: bundle.to_owned(), message };
    let file = File::open(bundle).map_err(|e| BundleError::Io { path: bundle.to_owned(), message: e.to_string() })?;
    let mut gz = GzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut written = Vec::new();
    let mut total = 0u64;
    {
        let mut archive = tar::Archive::new(&mut gz);
        let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(format!("reading an entry: {e}")))?;
            let name = entry.path().map_err(|e| corrupt(format!("entry name: {e}")))?.into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                safe_relative(&name, bundle)?;
                continue;
            }
            if !kind.is_file() {
                return Err(BundleError::UnsafeEntry {
                    bundle: bundle.to_owned(),
                    entry: name.display().to_string(),
                    why: format!("{kind:?} entries are not allowed (regular files only)"),
                });
            }
            let rel = safe_relative(&name, bundle)?;
            if written.len() >= MAX_ENTRIES {
                return Err(corrupt(format!("more than {MAX_ENTRIES} entries")));
            }
            total = total.saturating_add(entry.size());
            if total > MAX_UNPACKED_BYTES {
                return Err(corrupt(format!("unpacks to more than {MAX_UNPACKED_BYTES} bytes")));
            }
            let path = dest.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| BundleError::Io { path: parent.to_owned(), message: e.to_string() })?;
            }
            let io = |e: std::io::Error| BundleError::Io { path: path.clone(), message: e.to_string() };
            let out = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io)?;
            let mut out = BufWriter::with_capacity(1 << 20, out);
            let copied =
                std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(format!("entry `{}`: {e}", rel.display())))?;
            if copied != entry.size() {
                return Err(corrupt(format!("entry `{}` is truncated", rel.display())));
            }
            out.flush().map_err(io)?;
            written.push(rel);
        }
    }
    // The end of the gzip stream: its CRC and length are checked only there.
    let mut rest = Vec::new();
    gz.read_to_end(&mut rest).map_err(|e| corrupt(format!("after the last entry: {e}")))?;
    Ok(written)
}
