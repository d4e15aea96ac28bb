//! Byte sources: a file read as it is or through gzip (recognised by its magic bytes,
//! whatever the name says), with every read bounded by what the file can hold.
//!
//! Gzip streams may have several members (all are decoded), and their CRC and length
//! trailers are checked: [`Source::finish`] inflates what follows the voxels, up to a
//! limit, so a corrupt or truncated stream is an error even when the voxels themselves
//! came out whole.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

/// Deflate cannot expand data by more than about 1032:1; with gzip framing a file of
/// `n` bytes inflates to at most `n * GZIP_MAX_RATIO` bytes.
pub const GZIP_MAX_RATIO: u64 = 1040;

/// Bytes a gzip stream may hold past the voxels before reading stops with an error
/// (trailing data is inflated only to check the CRC).
pub const GZIP_TRAILING_LIMIT: u64 = 64 << 20;

enum Reader {
    Plain(BufReader<File>),
    Gzip(Box<MultiGzDecoder<Cursor<Vec<u8>>>>),
}

/// An open file positioned at its start (of the decompressed stream, for gzip).
pub struct Source {
    path: PathBuf,
    reader: Reader,
    /// Bytes of the file on disk.
    file_len: u64,
    /// Bytes read so far (decompressed).
    pos: u64,
}

impl Source {
    /// Opens a file; gzip when it starts with `1f 8b`.
    ///
    /// # Errors
    /// The file cannot be opened or read, with the system's reason; a FIFO, socket,
    /// device or folder is refused before it is opened.
    pub fn open(path: &Path) -> Result<Source, String> {
        let describe = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => format!("cannot read: {e}"),
        };
        let meta = crate::io::file_kind::regular_file(path)?;
        let mut file = File::open(path).map_err(describe)?;
        let file_len = meta.len();
        let mut magic = [0u8; 2];
        let (got, error) = read_up_to(&mut file, &mut magic);
        if let Some(e) = error {
            return Err(describe(e));
        }
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let reader = if gzip {
            let what = || "the compressed file".to_owned();
            let len = usize::try_from(file_len).unwrap_or(usize::MAX);
            let mut compressed = crate::budget::try_with_capacity(len, &what).map_err(|e| e.to_string())?;
            compressed.extend_from_slice(&magic);
            file.read_to_end(&mut compressed).map_err(describe)?;
            Reader::Gzip(Box::new(MultiGzDecoder::new(Cursor::new(compressed))))
        } else {
            use std::io::Seek;
            file.seek(io::SeekFrom::Start(0)).map_err(describe)?;
            Reader::Plain(BufReader::with_capacity(1 << 16, file))
        };
        Ok(Source { path: path.to_owned(), reader, file_len, pos: 0 })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        matches!(self.reader, Reader::Gzip(_))
    }

    /// Bytes of the file on disk.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Bytes read so far (decompressed).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The most bytes that can still follow the current position: exact for a plain
    /// file, the deflate bound for gzip.
    pub fn max_remaining(&self) -> u64 {
        match self.reader {
            Reader::Plain(_) => self.file_len.saturating_sub(self.pos),
            Reader::Gzip(_) => self.file_len.saturating_mul(GZIP_MAX_RATIO).saturating_sub(self.pos),
        }
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, error) = match &mut self.reader {
            Reader::Plain(r) => read_up_to(r, buf),
            Reader::Gzip(r) => read_up_to(r.as_mut(), buf),
        };
        self.pos += n as u64;
        match error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn stream_error(&self, e: &io::Error) -> String {
        if !self.is_gzip() {
            return format!("read failed at byte {}: {e}", self.pos);
        }
        let text = e.to_string();
        if e.kind() == io::ErrorKind::UnexpectedEof || text.contains("incomplete") || text.contains("end of file") {
            format!("truncated gzip stream: it ends after {} decompressed bytes ({e})", self.pos)
        } else if text.contains("checksum") {
            format!(
                "corrupt gzip stream: the CRC-32 of the {} decompressed bytes does not match the one its trailer records",
                self.pos
            )
        } else {
            format!("corrupt gzip stream after {} decompressed bytes: {e}", self.pos)
        }
    }

    /// Reads up to `n` bytes; fewer only at the end of the stream. The buffer is at most
    /// what can still follow ([`Source::max_remaining`]), within the memory budget.
    ///
    /// # Errors
    /// A read failure, a corrupt gzip stream, or a buffer over the memory budget.
    pub fn read_prefix(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let n = n.min(usize::try_from(self.max_remaining()).unwrap_or(usize::MAX));
        let what = || format!("{n} bytes after the header");
        let mut buf = crate::budget::try_zeroed::<u8>(n, &what).map_err(|e| e.to_string())?;
        let got = self.read_raw(&mut buf).map_err(|e| self.stream_error(&e))?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Reads exactly `n` bytes into a buffer that grows with the data actually
    /// decoded (so a header that overstates the size costs no more memory than the
    /// stream holds); `what` describes the data for the error message. `n` is checked
    /// against the memory budget first, and every allocation is fallible.
    ///
    /// # Errors
    /// The stream ends first (`what` and the counts are named), a read failure, a
    /// corrupt gzip stream, or `n` bytes over the memory budget or refused by the system.
    pub fn read_exact(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<Vec<u8>, String> {
        const STEP: usize = 64 << 20;
        let start = self.pos;
        crate::budget::check(n as u64, what).map_err(|e| e.to_string())?;
        let mut buf: Vec<u8> = match self.reader {
            // Plain files were checked against their length: allocate at once.
            Reader::Plain(_) => crate::budget::try_zeroed(n, what).map_err(|e| e.to_string())?,
            Reader::Gzip(_) => Vec::new(),
        };
        let mut filled = 0usize;
        while filled < n {
            if buf.len() == filled {
                // Gzip streams grow in steps, doubling, as the data arrive.
                let grow = (n - filled).min(STEP.max(buf.len()));
                crate::budget::try_reserve(&mut buf, grow, what).map_err(|e| e.to_string())?;
                buf.resize(filled + grow, 0);
            }
            let got = self.read_raw(&mut buf[filled..]).map_err(|e| {
                format!("{} (reading the {n} bytes of {} from byte {start})", self.stream_error(&e), what())
            })?;
            if got == 0 {
                let kind = if self.is_gzip() { "the gzip stream ends" } else { "the file ends" };
                return Err(format!(
                    "{kind} after {filled} of the {n} bytes of {} (from byte {start}): the file is truncated",
                    what()
                ));
            }
            filled += got;
        }
        Ok(buf)
    }

    /// Skips `n` bytes.
    ///
    /// # Errors
    /// As [`Source::read_exact`].
    pub fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), String> {
        let mut left = n;
        let mut scratch = vec![0u8; 1 << 16];
        while left > 0 {
            let want = left.min(scratch.len() as u64) as usize;
            let got = self.read_raw(&mut scratch[..want]).map_err(|e| self.stream_error(&e))?;
            if got == 0 {
                return Err(format!("the file ends after {} of the {n} bytes of {}", n - left, what()));
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// For gzip, inflates the rest of the stream (up to [`GZIP_TRAILING_LIMIT`] bytes)
    /// so that truncation and CRC errors surface; nothing for a plain file.
    ///
    /// # Errors
    /// A corrupt or truncated gzip stream, or more trailing data than the limit.
    pub fn finish(&mut self) -> Result<(), String> {
        if !self.is_gzip() {
            return Ok(());
        }
        let mut scratch = vec![0u8; 1 << 16];
        let mut trailing = 0u64;
        loop {
            let got = self.read_raw(&mut scratch).map_err(|e| self.stream_error(&e))?;
            if got == 0 {
                return Ok(());
            }
            trailing += got as u64;
            if trailing > GZIP_TRAILING_LIMIT {
                return Err(format!(
                    "the gzip stream goes on for more than {GZIP_TRAILING_LIMIT} bytes past the voxel data \
                     (expected it to end with the data)"
                ));
            }
        }
    }
}

/// Reads until `buf` is full or the stream ends; retries interrupted reads. Returns the
/// bytes read, and the error that stopped it early, if any.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_allocate_no_more_than_the_file_can_hold() {
        let dir = std::env::temp_dir().join(format!("niftyhost-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("short.hdr");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut source = Source::open(&path).unwrap();
        // A terabyte asked of a 10-byte file: 10 bytes allocated and read, no abort.
        let got = source.read_prefix(1 << 40).unwrap();
        assert_eq!((got.as_slice(), got.capacity()), (&b"0123456789"[..], 10));
        assert_eq!(source.read_prefix(100).unwrap(), b"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
