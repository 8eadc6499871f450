//! The log file: a 64-byte header, then records, appended only.

use super::record::{encode_begin, encode_commit, Op};
use super::replay::{replay, ReplayReport};
use crate::error::{Error, FileKind, Result};
use crate::format::{
    rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64, DIRECTORY_VERSION, OLDEST_LOG_VERSION,
};
use crate::fsio::{sync_dir, write_atomic};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Magic bytes at offset 0 of a log file.
pub const LOG_MAGIC: [u8; 8] = *b"STRATALG";
/// Bytes of the log header; records start here.
pub(crate) use crate::limits::LOG_HEADER;
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

    /// Checks the header of `bytes` against what the generation expects
    /// and returns the log's version (3 or 4).
    pub(crate) fn check(&self, bytes: &[u8]) -> Result<u32> {
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
        if !(OLDEST_LOG_VERSION..=DIRECTORY_VERSION).contains(&version) {
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
        Ok(version)
    }
}

/// The log file a writer appends to.
pub(crate) struct LogWriter {
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    /// A failed append could not be cut back: the file may end in a
    /// partial record or an uncommitted batch, so nothing may follow it.
    broken: bool,
}

/// See [`LogWriter::sync_handle`].
pub(crate) struct SyncHandle {
    file: File,
    path: PathBuf,
}

impl SyncHandle {
    /// Makes every record written to the log before the call durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Bytes of encoded records a batch append buffers before writing them.
const BATCH_CHUNK: usize = 1 << 20;

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
        let path = write_atomic(dir, name, &bytes)?;
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
            broken: false,
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
            broken: false,
        };
        use std::io::Seek;
        w.file
            .seek(std::io::SeekFrom::Start(w.len))
            .map_err(|e| Error::io(&w.path, e))?;
        Ok(w)
    }

    fn check_broken(&self) -> Result<()> {
        if self.broken {
            return Err(Error::WriterPoisoned(format!(
                "a failed append to {} could not be cut back",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Writes `self.buf` at the end; on failure cuts the file back to
    /// `self.len` (the end of the last committed record).
    fn write_buf(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// After a failed write: cut back to `committed` bytes, or mark broken.
    fn cut_back(&mut self, committed: u64, seq: u64, e: std::io::Error) -> Error {
        use std::io::Seek;
        let cut = self.file.set_len(committed).and_then(|()| {
            self.file
                .seek(std::io::SeekFrom::Start(committed))
                .map(drop)
        });
        if cut.is_err() {
            self.broken = true;
        }
        self.len = committed;
        self.next_seq = seq;
        self.buf.clear();
        Error::io(&self.path, e)
    }

    /// Appends one record (written, not yet synced) and returns its sequence number.
    pub(crate) fn append(&mut self, op: &Op) -> Result<u64> {
        self.check_broken()?;
        self.buf.clear();
        let seq = self.next_seq;
        op.encode(seq, &mut self.buf);
        let n = self.buf.len() as u64;
        if let Err(e) = self.write_buf() {
            // Leave no partial record behind: cut back to the last whole one.
            return Err(self.cut_back(self.len, seq, e));
        }
        self.len += n;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Appends `ops` as one atomic unit (written, not yet synced): a single
    /// plain record for one operation, otherwise a batch-begin record, the
    /// operations and a batch-commit record, encoded and written in chunks
    /// of about 1 MiB so memory stays bounded. Until the commit record is
    /// in the file a replay drops the whole batch. On a write error the
    /// file is cut back to where the batch began.
    pub(crate) fn append_batch<'a>(
        &mut self,
        ops: impl ExactSizeIterator<Item = &'a Op>,
    ) -> Result<()> {
        self.check_broken()?;
        let n = ops.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let (start_len, start_seq) = (self.len, self.next_seq);
        self.buf.clear();
        let mut seq = start_seq;
        let mut written = 0u64;
        let framed = n > 1;
        if framed {
            encode_begin(seq, n, &mut self.buf);
            seq += 1;
        }
        for op in ops {
            op.encode(seq, &mut self.buf);
            seq += 1;
            if self.buf.len() >= BATCH_CHUNK {
                let k = self.buf.len() as u64;
                if let Err(e) = self.write_buf() {
                    return Err(self.cut_back(start_len, start_seq, e));
                }
                written += k;
            }
        }
        if framed {
            encode_commit(seq, n, &mut self.buf);
            seq += 1;
        }
        let k = self.buf.len() as u64;
        if let Err(e) = self.write_buf() {
            return Err(self.cut_back(start_len, start_seq, e));
        }
        self.len = start_len + written + k;
        self.next_seq = seq;
        Ok(())
    }

    /// Makes every appended record durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// A duplicate of the file handle, to sync from another thread while
    /// appends go on (a sync covers at least what was written before it).
    pub(crate) fn sync_handle(&self) -> Result<SyncHandle> {
        Ok(SyncHandle {
            file: self
                .file
                .try_clone()
                .map_err(|e| Error::io(&self.path, e))?,
            path: self.path.clone(),
        })
    }

    /// Bytes in the log (header included).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Records in the log (the last sequence number written).
    pub(crate) fn records(&self) -> u64 {
        self.next_seq - 1
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
/// decodes every record (framing, length and body checksums, consecutive
/// sequence numbers, batch framing) up to a torn tail, and returns the
/// committed operations (those of a torn batch are dropped). Allocation is bounded by the input's length. Used by
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
    if info.dim == 0 || info.dim > crate::limits::MAX_DIM {
        return Err(Error::corrupt(
            FileKind::Log,
            "header dim",
            format!("1..={}", crate::limits::MAX_DIM),
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
