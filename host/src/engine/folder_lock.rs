//! One writer per model folder: an exclusive advisory lock (`flock`) on
//! `<model_dir>/.niftyhost.lock`, held for as long as the job runs. The kernel releases it
//! when the process ends, however it ends, so a killed run never leaves a stale lock; the
//! file itself stays, holding the process id of the last holder for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the model folder.
pub const LOCK_FILE: &str = ".niftyhost.lock";

/// A model folder that cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum FolderLockError {
    /// Another process holds the lock.
    #[error(
        "model folder {folder} is in use by another niftyhost process ({holder}); wait for it to finish, stop it, or choose another `system.model_dir`"
    )]
    Busy {
        /// The model folder.
        folder: PathBuf,
        /// Who holds it, as far as the lock file says ("process 1234").
        holder: String,
    },
    /// The folder or its lock file cannot be created, or the lock cannot be taken.
    #[error("model folder {folder}: cannot lock {file}: {source}")]
    Io {
        /// The model folder.
        folder: PathBuf,
        /// The lock file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The lock on one model folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Creates `folder` if needed and takes its lock without waiting.
    ///
    /// # Errors
    /// [`FolderLockError::Busy`] naming the folder and the holder's process id when another
    /// process (or another lock in this process) holds it; [`FolderLockError::Io`] when the
    /// folder or the lock file cannot be created.
    pub fn acquire(folder: &Path) -> Result<FolderLock, FolderLockError> {
        let path = folder.join(LOCK_FILE);
        let io = |source| FolderLockError::Io { folder: folder.to_owned(), file: path.clone(), source };
        std::fs::create_dir_all(folder).map_err(io)?;
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        if let Err(e) = try_lock_exclusive(&file) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io(e));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid}"),
                Err(_) => "process id not recorded".to_owned(),
            };
            return Err(FolderLockError::Busy { folder: folder.to_owned(), holder });
        }
        let record = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        record(&mut file).map_err(io)?;
        Ok(FolderLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it immediate.
        let _ = unlock(&self.file);
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns and keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(unix)]
fn unlock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: as in `try_lock_exclusive`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_folder_and_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("model");
        let first = FolderLock::acquire(&folder).unwrap();
        let recorded = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(recorded.trim(), std::process::id().to_string());
        let err = FolderLock::acquire(&folder).unwrap_err();
        assert!(matches!(err, FolderLockError::Busy { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&folder.display().to_string()), "{text}");
        assert!(text.contains(&format!("process {}", std::process::id())), "{text}");
        drop(first);
        let again = FolderLock::acquire(&folder).unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
    }

    #[test]
    fn a_folder_that_cannot_be_created_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = FolderLock::acquire(&file.join("model")).unwrap_err();
        assert!(matches!(err, FolderLockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("plain/model"), "{err}");
    }
}
