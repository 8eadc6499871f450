//! The one replayer of the append log: open, refresh and compaction all
//! read records through [`replay_file`] or [`replay_file_after`] (and
//! fuzzing through [`replay`]), so a torn tail and a corrupt record mean the same thing
//! everywhere: a torn tail (a record cut short, or a batch without its
//! commit, at the end) was never committed and is dropped, reported in
//! [`ReplayReport::torn_bytes`]; a damaged record anywhere else is an
//! [`Error::Corrupt`] naming its offset.

use super::file::{LogHeader, LOG_HEADER};
use super::record::{decode, Decoded, Op, Rec};
use crate::error::{Error, FileKind, Result};
use std::path::Path;

/// What replaying a log found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records up to the end of the last committed one (plain records and
    /// whole batches, batch-begin and -commit records included): the next
    /// record gets sequence number `records + 1`.
    pub records: u64,
    /// Bytes of header plus committed records: where the next record goes.
    pub valid_len: u64,
    /// Bytes after `valid_len`: a torn (partly written) record, or a batch
    /// whose commit record is missing, left by a crash during an append.
    /// Dropped whole; a writer truncates them.
    pub torn_bytes: u64,
    /// Whole records among the `torn_bytes` (those of an uncommitted batch).
    pub torn_records: u64,
    /// Operations applied (batch-begin and -commit records not counted).
    pub ops: u64,
    /// Committed batches (begin/commit framed) among them.
    pub batches: u64,
    /// The log's format version (3 or 4; 0 before a log was read).
    pub version: u32,
}

/// A batch being read: where its begin record is, what it declared.
struct OpenBatch {
    start: usize,
    count: u64,
    ops: Vec<(u64, Op, u64)>,
}

/// Replays the records of a log whose bytes are `bytes` (header included),
/// calling `apply(seq, op, offset)` for each committed operation in order.
/// A torn tail stops the replay and is reported; a damaged record is an
/// error naming its offset (operations before it were applied).
pub(crate) fn replay(
    bytes: &[u8],
    header: &LogHeader,
    apply: impl FnMut(u64, Op, u64) -> Result<()>,
) -> Result<ReplayReport> {
    let version = header.check(bytes)?;
    replay_records(
        &bytes[LOG_HEADER..],
        LOG_HEADER as u64,
        version,
        header.dim as usize,
        0,
        apply,
    )
}

/// The one log decoder: replays `bytes`, the records of a log of `version`
/// from absolute offset `base` (the end of a committed record, or of the
/// header), after `records_before` records. Every reader uses it: open,
/// refresh, compaction's carry-over, [`parse_log`].
///
/// Operations outside a batch apply at once; those of a batch are held
/// until its commit record and then applied together. A batch whose commit
/// is missing at the end of the bytes (the file ends, or a torn record
/// follows) is torn and dropped whole; a batch followed by anything but
/// its operations and commit is corruption. The torn/corrupt rule for a
/// single record: [`decode`].
pub(crate) fn replay_records(
    bytes: &[u8],
    base: u64,
    version: u32,
    dim: usize,
    records_before: u64,
    mut apply: impl FnMut(u64, Op, u64) -> Result<()>,
) -> Result<ReplayReport> {
    let mut at = 0usize;
    let mut records = records_before;
    let mut report = ReplayReport {
        records,
        valid_len: base,
        version,
        ..Default::default()
    };
    let mut batch: Option<OpenBatch> = None;
    let corrupt = |at: usize, records: u64, why: String| {
        Error::corrupt(
            FileKind::Log,
            format!(
                "record at offset {} (after {records} valid records)",
                base + at as u64
            ),
            "a valid record",
            why,
        )
    };
    while at < bytes.len() {
        let (seq, rec, len) = match decode(&bytes[at..], dim, version) {
            Decoded::Record { seq, rec, len } => (seq, rec, len),
            Decoded::Torn => break,
            Decoded::Corrupt(why) => return Err(corrupt(at, records, why)),
        };
        if seq != records + 1 {
            return Err(Error::corrupt(
                FileKind::Log,
                format!("record at offset {} sequence number", base + at as u64),
                records + 1,
                seq,
            ));
        }
        let offset = base + at as u64;
        match (rec, batch.as_mut()) {
            (Rec::Op(op), None) => {
                apply(seq, op, offset)?;
                report.ops += 1;
            }
            (Rec::Op(op), Some(b)) => {
                if b.ops.len() as u64 == b.count {
                    return Err(corrupt(
                        at,
                        records,
                        format!(
                            "an operation after the {} announced by the batch begun at offset {}, before its commit",
                            b.count,
                            base + b.start as u64
                        ),
                    ));
                }
                b.ops.push((seq, op, offset));
            }
            (Rec::Begin { count }, None) => {
                if count < 2 {
                    return Err(corrupt(
                        at,
                        records,
                        format!("a batch of {count} operations (batches hold at least 2)"),
                    ));
                }
                batch = Some(OpenBatch {
                    start: at,
                    count,
                    ops: Vec::new(),
                });
            }
            (Rec::Begin { .. }, Some(b)) => {
                return Err(corrupt(
                    at,
                    records,
                    format!(
                        "a batch begin inside the uncommitted batch begun at offset {}",
                        base + b.start as u64
                    ),
                ));
            }
            (Rec::Commit { count }, None) => {
                return Err(corrupt(
                    at,
                    records,
                    format!("a commit of {count} operations outside any batch"),
                ));
            }
            (Rec::Commit { count }, Some(b)) => {
                if count != b.count || b.ops.len() as u64 != b.count {
                    return Err(corrupt(
                        at,
                        records,
                        format!(
                            "a commit of {count} operations for the batch begun at offset {} announcing {} and holding {}",
                            base + b.start as u64,
                            b.count,
                            b.ops.len()
                        ),
                    ));
                }
                let b = batch.take().expect("open batch");
                report.ops += b.ops.len() as u64;
                report.batches += 1;
                for (seq, op, offset) in b.ops {
                    apply(seq, op, offset)?;
                }
            }
        }
        records += 1;
        at += len;
        if batch.is_none() {
            report.records = records;
            report.valid_len = base + at as u64;
        }
    }
    let committed = (report.valid_len - base) as usize;
    report.torn_bytes = (bytes.len() - committed) as u64;
    report.torn_records = records - report.records;
    Ok(report)
}

/// Replays the whole log file at `path`, which belongs to the generation
/// `header` describes, calling `apply(seq, op, offset)` for each committed
/// operation in order; `Ok(None)` if there is no log file.
pub(crate) fn replay_file(
    path: &Path,
    header: &LogHeader,
    apply: impl FnMut(u64, Op, u64) -> Result<()>,
) -> Result<Option<ReplayReport>> {
    match crate::regular::read_regular(path) {
        Ok(bytes) => replay(&bytes, header, apply).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// What [`replay_file_after`] found.
pub(crate) enum Replayed {
    /// The records after the earlier replay, applied; the report covers
    /// the whole log (counts added to the earlier report's).
    Applied(ReplayReport),
    /// There is no log file.
    Missing,
    /// The log was replaced by one of another version (a writer upgraded
    /// it) since the earlier replay: offsets into the old file mean nothing
    /// in the new one, so replay it from the start.
    Rewritten,
}

/// [`replay_file`] of only what follows the committed records an earlier
/// replay of the same file found (`after`), reading no byte before them
/// (the whole file if `after` saw no log).
///
/// Errors: the header does not match `header`; the file is now shorter
/// than `after` says it was (cut); a damaged record ([`replay_records`]).
pub(crate) fn replay_file_after(
    path: &Path,
    header: &LogHeader,
    after: &ReplayReport,
    apply: impl FnMut(u64, Op, u64) -> Result<()>,
) -> Result<Replayed> {
    let base = after.valid_len;
    if base < LOG_HEADER as u64 {
        // The log was created since: its header is checked first.
        return Ok(match replay_file(path, header, apply)? {
            Some(report) => Replayed::Applied(report),
            None => Replayed::Missing,
        });
    }
    let (bytes, file_len, file_version) = match read_from(path, base) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::Missing),
        Err(e) => return Err(Error::io(path, e)),
    };
    if file_version != after.version {
        return Ok(Replayed::Rewritten);
    }
    if file_len < base {
        return Err(Error::corrupt(
            FileKind::Log,
            format!("length of {}", path.display()),
            format!("at least {base} bytes (the committed records already read)"),
            format!("{file_len} bytes: the log was cut"),
        ));
    }
    let report = replay_records(
        &bytes,
        base,
        after.version,
        header.dim as usize,
        after.records,
        apply,
    )?;
    Ok(Replayed::Applied(ReplayReport {
        ops: after.ops + report.ops,
        batches: after.batches + report.batches,
        ..report
    }))
}

/// The bytes of `path` from offset `from` to its end, its length, and the
/// version word of its header (0 if the file is shorter than 12 bytes).
fn read_from(path: &Path, from: u64) -> std::io::Result<(Vec<u8>, u64, u32)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::regular::open_regular(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 12];
    let version = match f.read_exact(&mut head) {
        Ok(()) => u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")),
        Err(_) => 0,
    };
    f.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok((out, len, version))
}
