//! The manifest's bytes: 64 (48 up to directory version 3) naming the
//! current generation of an index directory and, since version 4, the
//! least its append log must hold. Encoding and validation only; reading,
//! replacing and naming files is the directory layer's
//! (`dir/manifest.rs`). Layout and crash analysis:
//! `format-spec/manifest.md`.

use super::{rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64};
use super::{DIRECTORY_VERSION, MANIFEST_MAGIC, OLDEST_SUPPORTED_VERSION};
use crate::error::{Error, FileKind, Result};
/// Length of a version 1–3 MANIFEST.
const LEN_V3: usize = 48;
const OFF_CRC_V3: usize = 40;
/// Length of a version-4 MANIFEST.
const LEN: usize = 64;
const OFF_CRC: usize = 60;
/// Flag bit 0 (version 4): the generation has a log, bounded by `log`.
const FLAG_HAS_LOG: u32 = 1;

/// The least the generation's log holds, as of the last publish,
/// compaction, first log creation or writer checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBound {
    /// Bytes (header included) of committed records at least.
    pub len: u64,
    /// Committed records at least.
    pub records: u64,
}

/// What the manifest says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub build_id: u128,
    /// `Some`: the log must exist and hold at least this much. `None`: no
    /// log is required (a fresh publish, or a MANIFEST of version 1–3).
    pub log: Option<LogBound>,
}

impl Manifest {
    /// A manifest naming generation `generation` with no log bound.
    pub(crate) fn new(generation: u64, build_id: u128) -> Manifest {
        Manifest {
            generation,
            build_id,
            log: None,
        }
    }

    /// The version-4 encoding (always written at `DIRECTORY_VERSION`).
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&MANIFEST_MAGIC);
        wr_u32(&mut b, 8, DIRECTORY_VERSION);
        let bound = self.log.unwrap_or(LogBound { len: 0, records: 0 });
        wr_u32(
            &mut b,
            12,
            if self.log.is_some() { FLAG_HAS_LOG } else { 0 },
        );
        wr_u64(&mut b, 16, self.generation);
        wr_u128(&mut b, 24, self.build_id);
        wr_u64(&mut b, 40, bound.len);
        wr_u64(&mut b, 48, bound.records);
        let crc = crc32fast::hash(&b[..OFF_CRC]);
        wr_u32(&mut b, OFF_CRC, crc);
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Manifest> {
        let f = FileKind::Manifest;
        if b.len() != LEN && b.len() != LEN_V3 {
            return Err(Error::corrupt(
                f,
                "length",
                format!("{LEN_V3} (versions 1-3) or {LEN} (version 4)"),
                b.len(),
            ));
        }
        let magic: [u8; 8] = b[..8].try_into().expect("8 bytes");
        if magic != MANIFEST_MAGIC {
            return Err(Error::BadMagic {
                file: f,
                found: magic,
            });
        }
        let version = rd_u32(b, 8);
        if !(OLDEST_SUPPORTED_VERSION..=DIRECTORY_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                file: f,
                found: version,
                oldest: OLDEST_SUPPORTED_VERSION,
                newest: DIRECTORY_VERSION,
            });
        }
        let (want_len, off_crc) = if version >= 4 {
            (LEN, OFF_CRC)
        } else {
            (LEN_V3, OFF_CRC_V3)
        };
        if b.len() != want_len {
            return Err(Error::corrupt(
                f,
                format!("length of a version-{version} manifest"),
                want_len,
                b.len(),
            ));
        }
        let (stored, computed) = (rd_u32(b, off_crc), crc32fast::hash(&b[..off_crc]));
        if stored != computed {
            return Err(Error::ChecksumMismatch {
                file: f,
                what: "manifest".into(),
                stored,
                computed,
            });
        }
        let flags = rd_u32(b, 12);
        let allowed = if version >= 4 { FLAG_HAS_LOG } else { 0 };
        if flags & !allowed != 0 {
            return Err(Error::corrupt(f, "flags", allowed, flags));
        }
        let reserved = if version >= 4 { 56 } else { 44 };
        if rd_u32(b, reserved) != 0 {
            return Err(Error::corrupt(
                f,
                format!("reserved bytes {reserved}..{}", reserved + 4),
                0,
                rd_u32(b, reserved),
            ));
        }
        let log = if version >= 4 {
            let bound = LogBound {
                len: rd_u64(b, 40),
                records: rd_u64(b, 48),
            };
            if flags & FLAG_HAS_LOG != 0 {
                if bound.len < crate::limits::LOG_HEADER as u64 {
                    return Err(Error::corrupt(
                        f,
                        "log length bound",
                        "at least 64 (a log header)",
                        bound.len,
                    ));
                }
                Some(bound)
            } else {
                if bound != (LogBound { len: 0, records: 0 }) {
                    return Err(Error::corrupt(
                        f,
                        "log bound of a generation without a log",
                        "0 bytes, 0 records",
                        format!("{} bytes, {} records", bound.len, bound.records),
                    ));
                }
                None
            }
        } else {
            None
        };
        Ok(Manifest {
            generation: rd_u64(b, 16),
            build_id: rd_u128(b, 24),
            log,
        })
    }
}
