//! The log file: a 64-byte header, then records, appended only.

use super::record::{decode, Decoded, Op};
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::sync_dir;
use crate::format::{
    rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64, DIRECTORY_VERSION, OLDEST_LOG_VERSION,
};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Magic bytes at offset 0 of a log file.
pub const LOG_MAGIC: [u8; 8] = *b"STRATALG";
/// Bytes of the log header; records start here.
pub const LOG_HEADER: usize = 64;
const OFF_CRC: usize = 60;

/// Which generation a log belongs to; checked when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogHeader {
    pub generation: u64,
    pub build_id: u128,
    pub dim: u32,
}

impl LogHeader {
    pub(crate) fn encode(&self) -> [u8; LOG_HEADER] {
        let mut b = [0u8; LOG_HEADER];
        b[..8].copy_from_slice(&LOG_MAGIC);
        wr_u32(&mut b, 8, DIRECTORY_VERSION);
        wr_u32(&mut b, 12, 0);
        wr_u64(&mut b, 16, self.generation);
        wr_u128(&mut b, 24, self.build_id);
        wr_u32(&mut b, 40, self.dim);
        let crc = crc32fast::hash(&b[..OFF_CRC]);
        wr_u32(&mut b, OFF_CRC, crc);
        b
    }

    /// Checks the header of `bytes` against what the generation expects.
    pub(crate) fn check(&self, bytes: &[u8]) -> Result<()> {
        let f = FileKind::Log;
        if bytes.len() < LOG_HEADER {
            return Err(Error::corrupt(
                f,
                "header",
                "64 bytes",
                format!("{} bytes (truncated)", bytes.len()),
            ));
        }
        let magic: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
        if magic != LOG_MAGIC {
            return Err(Error::BadMagic {
                file: f,
                found: magic,
            });
        }
        let version = rd_u32(bytes, 8);
        if version < OLDEST_LOG_VERSION || version > DIRECTORY_VERSION {
            return Err(Error::UnsupportedVersion {
                file: f,
                found: version,
                oldest: OLDEST_LOG_VERSION,
                newest: DIRECTORY_VERSION,
            });
        }
        let (stored, computed) = (rd_u32(bytes, OFF_CRC), crc32fast::hash(&bytes[..OFF_CRC]));
        if stored != computed {
            return Err(Error::ChecksumMismatch {
                file: f,
                what: "header".into(),
                stored,
                computed,
            });
        }
        if rd_u32(bytes, 12) != 0
            || rd_u32(bytes, 44) != 0
            || bytes[48..OFF_CRC].iter().any(|b| *b != 0)
        {
            return Err(Error::corrupt(
                f,
                "header flags/reserved bytes",
                "zero",
                "non-zero",
            ));
        }
        let found = LogHeader {
            generation: rd_u64(bytes, 16),
            build_id: rd_u128(bytes, 24),
            dim: rd_u32(bytes, 40),
        };
        if found != *self {
            return Err(Error::corrupt(
                f,
                "header generation/build id/dim",
                format!(
                    "generation {}, build {:032x}, dim {} (the current generation's)",
                    self.generation, self.build_id, self.dim
                ),
                format!(
                    "generation {}, build {:032x}, dim {}",
                    found.generation, found.build_id, found.dim
                ),
            ));
        }
        Ok(())
    }
}

/// What replaying a log found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Valid records applied.
    pub records: u64,
    /// Bytes of header plus valid records: where the next record goes.
    pub valid_len: u64,
    /// Bytes after the last valid record that form a torn (partly written)
    /// record, left by a crash during an append. A writer truncates them.
    pub torn_bytes: u64,
}

/// Replays the records of a log whose bytes are `bytes` (header included),
/// calling `apply(seq, op, offset)` for each valid record in order. A torn
/// tail stops the replay and is reported; a damaged record followed by more
/// bytes is an error naming its offset (records before it were applied).
pub(crate) fn replay(
    bytes: &[u8],
    header: &LogHeader,
    mut apply: impl FnMut(u64, Op, u64) -> Result<()>,
) -> Result<ReplayReport> {
    header.check(bytes)?;
    let mut at = LOG_HEADER;
    let mut records = 0u64;
    loop {
        if at == bytes.len() {
            return Ok(ReplayReport {
                records,
                valid_len: at as u64,
                torn_bytes: 0,
            });
        }
        match decode(&bytes[at..], header.dim as usize) {
            Decoded::Record { seq, op, len } => {
                if seq != records + 1 {
                    return Err(Error::corrupt(
                        FileKind::Log,
                        format!("record at offset {at} sequence number"),
                        records + 1,
                        seq,
                    ));
                }
                apply(seq, op, at as u64)?;
                records += 1;
                at += len;
            }
            Decoded::Torn => {
                return Ok(ReplayReport {
                    records,
                    valid_len: at as u64,
                    torn_bytes: (bytes.len() - at) as u64,
                });
            }
            Decoded::Corrupt(why) => {
                return Err(Error::corrupt(
                    FileKind::Log,
                    format!("record at offset {at} (after {records} valid records)"),
                    "a valid record",
                    why,
                ));
            }
        }
    }
}

/// The log file a writer appends to.
pub(crate) struct LogWriter {
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Creates a log holding a header and `records` (already framed, numbered
    /// from 1), durably and atomically: written under a temporary name,
    /// fsynced and renamed, so a crash never leaves a short log behind.
    pub(crate) fn create(
        dir: &Path,
        name: &str,
        header: &LogHeader,
        records: &[u8],
        first_seq: u64,
    ) -> Result<LogWriter> {
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(records);
        let path = crate::format::manifest::write_atomic(dir, name, &bytes)?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(LogWriter {
            file,
            path,
            len: bytes.len() as u64,
            next_seq: first_seq,
            buf: Vec::new(),
        })
    }

    /// Opens an existing log for appending after `report` (from a replay of
    /// its bytes): a torn tail is cut off and the cut made durable.
    pub(crate) fn resume(path: PathBuf, report: &ReplayReport) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if report.torn_bytes > 0 {
            file.set_len(report.valid_len)
                .map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        let mut w = LogWriter {
            file,
            path,
            len: report.valid_len,
            next_seq: report.records + 1,
            buf: Vec::new(),
        };
        use std::io::Seek;
        w.file
            .seek(std::io::SeekFrom::Start(w.len))
            .map_err(|e| Error::io(&w.path, e))?;
        Ok(w)
    }

    /// Appends one record (written, not yet synced) and returns its sequence number.
    pub(crate) fn append(&mut self, op: &Op) -> Result<u64> {
        self.buf.clear();
        let seq = self.next_seq;
        op.encode(seq, &mut self.buf);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Leave no partial record behind: cut back to the last whole one.
            let _ = self.file.set_len(self.len);
            use std::io::Seek;
            let _ = self.file.seek(std::io::SeekFrom::Start(self.len));
            return Err(Error::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Makes every appended record durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes in the log (header included).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The header fields of a log file, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogInfo {
    /// The generation the log applies to.
    pub generation: u64,
    /// The build id of that generation's files.
    pub build_id: u128,
    /// Dimension of the logged vectors.
    pub dim: u32,
}

/// Parses a whole log file from bytes, with no filesystem and no index:
/// checks the header (magic, version, checksum, reserved bytes), then
/// decodes every record (framing, checksums, consecutive sequence numbers)
/// up to a torn tail. Allocation is bounded by the input's length. Used by
/// tools and fuzz targets; opening an index replays through the same code.
pub fn parse_log(bytes: &[u8]) -> Result<(LogInfo, Vec<Op>, ReplayReport)> {
    if bytes.len() < LOG_HEADER {
        return Err(Error::corrupt(
            FileKind::Log,
            "header",
            "64 bytes",
            format!("{} bytes (truncated)", bytes.len()),
        ));
    }
    let info = LogInfo {
        generation: rd_u64(bytes, 16),
        build_id: rd_u128(bytes, 24),
        dim: rd_u32(bytes, 40),
    };
    let header = LogHeader {
        generation: info.generation,
        build_id: info.build_id,
        dim: info.dim,
    };
    if info.dim == 0 || info.dim > crate::format::MAX_DIM {
        return Err(Error::corrupt(
            FileKind::Log,
            "header dim",
            format!("1..={}", crate::format::MAX_DIM),
            info.dim,
        ));
    }
    let mut ops = Vec::new();
    let report = replay(bytes, &header, |_, op, _| {
        ops.push(op);
        Ok(())
    })?;
    Ok((info, ops, report))
}
