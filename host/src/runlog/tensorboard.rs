//! TensorBoard event files, written without TensorFlow: a file of length-prefixed,
//! CRC-32C-checked records, each a protocol-buffer `Event` (TensorFlow's
//! `tensorflow/core/util/event.proto` and `summary.proto`). Only the fields TensorBoard
//! needs for scalars and images are encoded.
//!
//! Record framing: `u64 length`, `u32 masked_crc32c(length bytes)`, `data`,
//! `u32 masked_crc32c(data)`, all little-endian.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
                bit += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// The CRC TFRecord stores: rotated and offset, so data holding its own CRC does not
/// check itself.
fn masked_crc(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One framed record.
pub fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// A minimal protocol-buffer encoder: the wire types TensorBoard's messages use.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn double(mut self, field: u32, v: f64) -> Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
}

/// A value of a summary.
pub enum SummaryValue<'a> {
    /// A scalar.
    Scalar(f32),
    /// An encoded image (PNG) with its size and channel count (1 grey, 3 RGB).
    Image { png: &'a [u8], height: u32, width: u32, channels: u32 },
}

/// The encoded `Event` of one summary value at `step`.
pub fn summary_event(wall_time: f64, step: i64, tag: &str, value: &SummaryValue<'_>) -> Vec<u8> {
    let value = match value {
        SummaryValue::Scalar(v) => Proto::default().bytes(1, tag.as_bytes()).float(2, *v),
        SummaryValue::Image { png, height, width, channels } => {
            let image = Proto::default()
                .int(1, i64::from(*height))
                .int(2, i64::from(*width))
                .int(3, i64::from(*channels))
                .bytes(4, png);
            Proto::default().bytes(1, tag.as_bytes()).bytes(4, &image.0)
        }
    };
    let summary = Proto::default().bytes(1, &value.0);
    Proto::default().double(1, wall_time).int(2, step).bytes(5, &summary.0).0
}

/// The first event of every file: the format version.
pub fn version_event(wall_time: f64) -> Vec<u8> {
    Proto::default().double(1, wall_time).bytes(3, b"brain.Event:2").0
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An open event file in a TensorBoard log folder.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Starts a new event file in `dir` (created if needed). A resumed run starts
    /// another file; TensorBoard merges the files of a folder by step.
    ///
    /// # Errors
    /// The folder or file cannot be created or written.
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let start = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name = format!("events.out.tfevents.{}.{}.{}", start as u64, host.trim(), std::process::id());
        let path = dir.join(name);
        let mut writer = EventWriter { file: BufWriter::new(File::create(&path)?), path };
        writer.file.write_all(&record(&version_event(start)))?;
        Ok(writer)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one tagged value at `step`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn add(&mut self, step: u64, tag: &str, value: &SummaryValue<'_>) -> std::io::Result<()> {
        self.file.write_all(&record(&summary_event(now(), step as i64, tag, value)))
    }

    /// Pushes buffered events to the file, so a running TensorBoard sees them.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 (iSCSI), appendix B.4, and the usual "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(&(0u8..32).collect::<Vec<_>>()), 0x46DD_794E);
    }

    #[test]
    fn events_match_tensorboards_own_encoding() {
        // Written by TensorBoard's protocol buffers and record writer: see the script
        // beside the file.
        let reference = include_bytes!("../../../tests/fixtures/tensorboard/reference.tfevents");
        let mut ours = record(&version_event(1795840999.25));
        ours.extend(record(&summary_event(1795841000.5, 300, "train/loss", &SummaryValue::Scalar(0.8344))));
        let image = SummaryValue::Image { png: b"\x89PNG-not-really", height: 2, width: 3, channels: 1 };
        ours.extend(record(&summary_event(1795841001.0, 12345678901, "windows/axial", &image)));
        assert_eq!(ours.as_slice(), reference.as_slice());
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut p = Proto::default();
        p.varint(300);
        assert_eq!(p.0, [0xac, 0x02]);
        let negative = Proto::default().int(2, -1);
        assert_eq!(negative.0.len(), 1 + 10, "negative int64 take ten bytes");
    }
}
