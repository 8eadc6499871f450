//! The manifest: a 64-byte file (48 bytes up to directory version 3)
//! naming the current generation of an index directory and, since version
//! 4, the least its append log must hold; replaced atomically (temp file, fsync, rename, fsync of the
//! directory). Layout and crash analysis: `format-spec/manifest.md`.

use super::{rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64};
use super::{DIRECTORY_VERSION, MANIFEST_MAGIC, OLDEST_SUPPORTED_VERSION};
use crate::error::{Error, FileKind, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name inside an index directory.
pub const MANIFEST_NAME: &str = "MANIFEST";
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
    pub(crate) fn graph_name(&self) -> String {
        format!("g{:08}.graph", self.generation)
    }
    pub(crate) fn vectors_name(&self) -> String {
        format!("g{:08}.vectors", self.generation)
    }
    pub(crate) fn log_name(&self) -> String {
        format!("g{:08}.log", self.generation)
    }

    /// The generation a data or log file name belongs to (`gNNNNNNNN.graph`,
    /// `.vectors` or `.log`), if it is one.
    pub(crate) fn generation_of(name: &str) -> Option<u64> {
        let (stem, ext) = name.split_once('.')?;
        let digits = stem.strip_prefix('g')?;
        if !matches!(ext, "graph" | "vectors" | "log")
            || digits.len() < 8
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok()
    }

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

    /// Reads the manifest of `dir`; `Ok(None)` if there is none.
    pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_NAME);
        match crate::regular::read_regular(&path) {
            Ok(b) => Manifest::decode(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Writes `bytes` to `dir/name` crash-safely: a temporary name in the same
/// directory, fsync, then rename over the final name.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temp_path(dir, name);
    let fin = dir.join(name);
    let guard = TempFile(Some(tmp.clone()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
    guard.keep();
    Ok(fin)
}

/// A temporary name for `name` in `dir`: unique per process and call, so
/// concurrent writers never share a temp file; left-over ones are removed
/// when a writer opens the directory.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()))
}

/// Removes a temporary file when dropped, unless [`TempFile::keep`] was
/// called: every error path of a write removes what it left behind.
pub(crate) struct TempFile(pub(crate) Option<PathBuf>);

impl TempFile {
    /// The file was renamed into place (or is wanted): do not remove it.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Fsyncs a directory so renames inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// Takes the directory's writer lock (the `LOCK` file), held until the
/// returned file is dropped; [`Error::WriterLocked`] if a writer holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(crate::live::LOCK_NAME);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::WriterLocked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Writes a generation's two data files durably (temp name, fsync, rename,
/// fsync of the directory). They are not current until [`write_manifest`].
pub(crate) fn publish_files(dir: &Path, m: &Manifest, graph: &[u8], vectors: &[u8]) -> Result<()> {
    write_atomic(dir, &m.graph_name(), graph)?;
    write_atomic(dir, &m.vectors_name(), vectors)?;
    sync_dir(dir)
}

/// Makes `m` the current generation: the manifest's atomic replacement.
pub(crate) fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    write_atomic(dir, MANIFEST_NAME, &m.encode())?;
    sync_dir(dir)
}

/// Publishes a new generation in `dir`: both data files first, then the
/// manifest that names them; older generations' files are removed after.
/// A crash at any point leaves either the old or the new generation current.
pub(crate) fn publish(
    dir: &Path,
    build_id: u128,
    graph: &[u8],
    vectors: &[u8],
) -> Result<Manifest> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Publishing replaces the index under any writer: take the writer lock.
    let _lock = lock_dir(dir)?;
    publish_locked(dir, build_id, |dir, m| {
        publish_files(dir, m, graph, vectors)
    })
}

/// [`publish`] for a caller that holds the writer lock of `dir`:
/// `write_files` puts the generation's two data files in place durably
/// (for [`publish_files`] or a rename of files written beforehand).
pub(crate) fn publish_locked(
    dir: &Path,
    build_id: u128,
    write_files: impl FnOnce(&Path, &Manifest) -> Result<()>,
) -> Result<Manifest> {
    let old = Manifest::read(dir)?;
    let generation = match old {
        None => 1,
        Some(o) => o.generation.checked_add(1).ok_or_else(|| {
            Error::corrupt(
                FileKind::Manifest,
                "generation",
                "below u64::MAX",
                o.generation,
            )
        })?,
    };
    let m = Manifest::new(generation, build_id);
    // A log left under the new generation's number (by a compaction that
    // died before its switch) must not be paired with these files.
    let stale = dir.join(m.log_name());
    if let Err(e) = fs::remove_file(&stale) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io(stale, e));
        }
    }
    // A failure before the manifest names the new files removes them.
    let new_files = [m.graph_name(), m.vectors_name()].map(|n| TempFile(Some(dir.join(n))));
    write_files(dir, &m)?;
    if let Err(e) = write_manifest(dir, &m) {
        // Whether the switch happened is what the MANIFEST says now.
        if Manifest::read(dir).ok().flatten() == Some(m) {
            new_files.into_iter().for_each(TempFile::keep);
        }
        return Err(e);
    }
    new_files.into_iter().for_each(TempFile::keep);
    if let Some(o) = old {
        // Readers that still map the old files keep their pages (unlinked
        // files stay alive while mapped); failure to remove is harmless.
        // The old generation's log goes too: the new build replaced its data.
        let _ = fs::remove_file(dir.join(o.graph_name()));
        let _ = fs::remove_file(dir.join(o.vectors_name()));
        let _ = fs::remove_file(dir.join(o.log_name()));
    }
    Ok(m)
}
