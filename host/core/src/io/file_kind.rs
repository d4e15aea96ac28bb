//! What kind of file a path names, checked before it is opened: opening a FIFO blocks
//! until a writer comes, and a device or socket is no image, so anything but a regular
//! file is refused by name.

use std::fs::Metadata;
use std::io;
use std::path::Path;

/// What a file that is not a regular file is, in words (`"a FIFO"`, `"a folder"`, ...);
/// `None` for a regular file.
fn irregular_kind(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
        if kind.is_char_device() {
            return Some("a character device");
        }
        if kind.is_block_device() {
            return Some("a block device");
        }
    }
    Some("of another kind")
}

/// The metadata of a regular file (symbolic links followed), read without opening it.
///
/// # Errors
/// The path does not exist or cannot be examined (the system's reason), or names a
/// FIFO, socket, device or folder: `"is a FIFO, not a regular file"`.
pub fn regular_file(path: &Path) -> Result<Metadata, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => format!("cannot read: {e}"),
    })?;
    match irregular_kind(&meta) {
        None => Ok(meta),
        Some(kind) => Err(format!("is {kind}, not a regular file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_passes_and_a_folder_is_named() {
        let dir = std::env::temp_dir().join(format!("niftyhost-file-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.nii");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(regular_file(&file).unwrap().len(), 1);
        assert_eq!(regular_file(&dir).unwrap_err(), "is a folder, not a regular file");
        assert_eq!(regular_file(&dir.join("missing.nii")).unwrap_err(), "no such file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_character_device_is_named() {
        assert_eq!(regular_file(Path::new("/dev/null")).unwrap_err(), "is a character device, not a regular file");
    }
}
