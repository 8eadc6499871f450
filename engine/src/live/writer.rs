//! The single writer of an index directory: validates, logs, applies and
//! syncs every operation.

use super::auto_compact::{AutoCompact, AutoCompactStats, AutoCompactor};
use super::flusher::{spawn_flusher, Wake};
use super::linker::Linker;
use super::reader::Index;
use super::state::State;
use super::{check_bound, lock, log_header, missing_log, OpenGeneration};
use crate::dir::gc::remove_other_generations;
use crate::dir::lock::{lock as lock_dir, WriterLock};
use crate::dir::manifest::{read_current, write as write_manifest};
use crate::dir::names;
use crate::dir::open::paths;
use crate::error::{Error, Result};
use crate::format::manifest::{LogBound, Manifest};
use crate::format::DIRECTORY_VERSION;
use crate::generation::OpenOptions;
use crate::log::file::LogWriter;
use crate::log::replay::{replay_file, ReplayReport};
use crate::log::Op;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a writer makes appended operations durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every operation: each one is durable when it returns.
    EveryOp,
    /// fsync once `max_ops` operations are pending or the oldest pending one
    /// is `max_delay` old, on a background flusher thread (an operation
    /// never waits for a sync; a failed sync is the error of the next
    /// operation); [`Writer::flush`] makes everything durable at once.
    Group {
        /// Pending operations that trigger a sync.
        max_ops: usize,
        /// Age of the oldest pending operation that triggers a sync.
        max_delay: Duration,
    },
    /// No fsync until [`Writer::flush`] (or compaction): operations survive
    /// a process crash (the OS has them) but not a power cut.
    None,
}

pub(super) struct WriterInner {
    pub(super) log: LogWriter,
    pub(super) durability: Durability,
    pub(super) pending: usize,
    pub(super) oldest_pending: Option<Instant>,
    /// Changed by every sync of the writer's own and every new log, so
    /// that the flusher's sync, begun before, does not count for it.
    pub(super) sync_epoch: u64,
    /// A sync of the flusher's that failed, reported by the next operation.
    pub(super) flush_error: Option<Error>,
    /// Wakes the flusher (group mode).
    pub(super) wake: Option<Wake>,
    /// The MANIFEST as this writer last wrote or read it.
    pub(super) manifest: Manifest,
}

impl WriterInner {
    pub(super) fn sync(&mut self) -> Result<()> {
        self.flush_error = None;
        if self.pending > 0 {
            self.log.sync()?;
            self.pending = 0;
            self.oldest_pending = None;
            self.sync_epoch += 1;
        }
        Ok(())
    }

    pub(super) fn after_append(&mut self) -> Result<()> {
        self.pending += 1;
        self.oldest_pending.get_or_insert_with(Instant::now);
        match self.durability {
            Durability::EveryOp => self.sync(),
            Durability::Group { max_ops, .. } => {
                if let Some(e) = self.flush_error.take() {
                    return Err(e);
                }
                if self.pending >= max_ops.max(1) {
                    if let Some(w) = &self.wake {
                        w.notify_one();
                    }
                }
                Ok(())
            }
            Durability::None => Ok(()),
        }
    }
}

/// The single writer of an index directory: appends every operation to the
/// log before applying it; searches through [`Writer::live`] see it at once.
/// By default it also compacts on its own, in the background, once the log
/// has grown past [`AutoCompact`]'s threshold (see [`WriterOptions`]).
pub struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) auto: AutoCompactor,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) flusher: Option<std::thread::JoinHandle<()>>,
    pub(super) _lock: WriterLock,
}

/// What a writer shares with its background compaction.
pub(super) struct Shared {
    pub(super) live: Index,
    /// Held for a whole compaction: one at a time.
    pub(super) compacting: Mutex<()>,
    pub(super) inner: Arc<Mutex<WriterInner>>,
    /// Links sealed chunks off the operations' path.
    pub(super) linker: Linker,
}

/// How a [`Writer`] works: durability and automatic compaction.
///
/// ```
/// use strata::{AutoCompact, Durability, WriterOptions};
/// let options = WriterOptions {
///     auto_compact: Some(AutoCompact { log_fraction: 0.5, ..Default::default() }),
///     ..WriterOptions::new(Durability::EveryOp)
/// };
/// assert!(WriterOptions::new(Durability::EveryOp).auto_compact.is_some());
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterOptions {
    /// When operations become durable.
    pub durability: Durability,
    /// When to compact in the background; `None`: only on
    /// [`Writer::compact`].
    pub auto_compact: Option<AutoCompact>,
}

impl WriterOptions {
    /// `durability` with the default automatic compaction.
    pub fn new(durability: Durability) -> Self {
        WriterOptions {
            durability,
            auto_compact: Some(AutoCompact::default()),
        }
    }
}

impl Writer {
    /// Opens `dir` for writing: takes the lock file (failing with
    /// [`Error::WriterLocked`] if another writer holds it), replays the log,
    /// truncates a torn tail, and removes files of other generations left
    /// by an interrupted compaction.
    ///
    /// Automatic compaction is on, with [`AutoCompact::default`]; see
    /// [`Writer::open_with`].
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<Writer> {
        Self::open_with(dir, &WriterOptions::new(durability))
    }

    /// [`Writer::open`] with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: &WriterOptions) -> Result<Writer> {
        let durability = options.durability;
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        // Under the lock nobody else switches generations: no retry.
        let manifest = read_current(&dir)?;
        let gen = OpenGeneration::open(&dir, &manifest, &OpenOptions::default())?;
        remove_other_generations(&dir, manifest.generation);
        let mut state = State::new(gen);
        let header = log_header(state.gen());
        let path = paths(&dir, &manifest).log;
        let log_name = names::log(manifest.generation);
        let mut log = match state.replay(&path)? {
            Some(report) => {
                check_bound(&manifest, &path, &report)?;
                if report.version < DIRECTORY_VERSION {
                    // An older log: rewrite its committed operations as
                    // current records (atomically: temp file, rename), so
                    // that appends never mix two framings in one file.
                    let mut records = Vec::new();
                    let mut n = 0u64;
                    replay_file(&path, &header, |_, op, _| {
                        n += 1;
                        op.encode(n, &mut records);
                        Ok(())
                    })?;
                    let log = LogWriter::create(&dir, &log_name, &header, &records, n + 1)?;
                    state.view.log = ReplayReport {
                        records: n,
                        valid_len: log.len(),
                        version: DIRECTORY_VERSION,
                        ops: n,
                        ..ReplayReport::default()
                    };
                    log
                } else {
                    LogWriter::resume(path, &report)?
                }
            }
            None => {
                missing_log(&manifest, &path)?;
                // The log is created (header only) before the MANIFEST
                // names it: a crash between the two leaves an empty log
                // that no reader needs.
                let log = LogWriter::create(&dir, &log_name, &header, &[], 1)?;
                state.view.log = ReplayReport {
                    valid_len: log.len(),
                    version: DIRECTORY_VERSION,
                    ..ReplayReport::default()
                };
                log
            }
        };
        // Record in the MANIFEST (at this build's directory version, so
        // older readers refuse the directory from now on) that the log
        // exists and holds at least what it holds now, once that is durable.
        let bound = Manifest {
            log: Some(LogBound {
                len: log.len(),
                records: log.records(),
            }),
            ..manifest
        };
        if bound != manifest {
            log.sync()?;
            write_manifest(&dir, &bound)?;
        }
        state.view.log.torn_bytes = 0;
        let inner = Arc::new(Mutex::new(WriterInner {
            log,
            durability,
            pending: 0,
            oldest_pending: None,
            sync_epoch: 0,
            flush_error: None,
            wake: None,
            manifest: bound,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = match durability {
            Durability::Group { max_ops, max_delay } => {
                let wake = Wake::default();
                super::lock(&inner).wake = Some(wake.clone());
                Some(spawn_flusher(
                    inner.clone(),
                    wake,
                    stop.clone(),
                    max_ops,
                    max_delay,
                ))
            }
            _ => None,
        };
        let live = Index::new(dir, state);
        let linker = Linker::spawn(&live);
        Ok(Writer {
            shared: Arc::new(Shared {
                live,
                compacting: Mutex::new(()),
                inner,
                linker,
            }),
            auto: AutoCompactor::new(options.auto_compact),
            stop,
            flusher,
            _lock: lock,
        })
    }

    /// Whether a writer (in any process) holds the lock of `dir` now, so
    /// that [`Writer::open`] or a build into `dir` would fail with
    /// [`Error::WriterLocked`]. A snapshot: it may change right after.
    pub fn is_locked(dir: impl AsRef<Path>) -> Result<bool> {
        crate::dir::lock::is_locked(dir.as_ref())
    }

    /// What the automatic compactions did so far.
    pub fn auto_compact_stats(&self) -> AutoCompactStats {
        self.auto.stats()
    }

    /// Returns once no automatic compaction is running (one that runs now
    /// is waited for; none is started).
    pub fn wait_for_auto_compact(&self) {
        self.auto.wait();
    }

    /// Returns once every logged row is linked into the overlay's graph
    /// (but those of a last, partly filled chunk of 64, which searches find
    /// by an exact scan until it fills). Operations return with at most a
    /// few chunks left to a background thread; this waits for them.
    pub fn wait_for_linking(&self) {
        self.shared.linker.wait(&self.shared.live);
    }

    /// A searchable view that sees every operation of this writer at once.
    pub fn live(&self) -> Index {
        self.shared.live.clone()
    }

    fn run(&self, op: Op) -> Result<()> {
        let mut inner = lock(&self.shared.inner);
        let live = &self.shared.live;
        {
            let mut st = live.state();
            let prepared = st.check(&op)?;
            inner.log.append(&op)?;
            st.apply(&op, prepared);
            st.view.log.records = inner.log.records();
            st.view.log.valid_len = inner.log.len();
            st.view.log.ops += 1;
            live.publish(&mut st);
        }
        self.shared.linker.after_change(live);
        let durable = inner.after_append();
        drop(inner);
        self.auto.after_commit(&self.shared);
        durable
    }

    /// Inserts a new id ([`Error::IdExists`] if it is live).
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_with_labels(id, vector, &[])
    }

    /// [`Writer::insert`] of a vector carrying `labels` (any order,
    /// duplicates ignored, at most
    /// [`MAX_LABELS_PER_VECTOR`](crate::format::MAX_LABELS_PER_VECTOR)),
    /// which [label filters](crate::Filter::labels) select by at once.
    pub fn insert_with_labels(&self, id: u64, vector: &[f32], labels: &[u32]) -> Result<()> {
        self.run(Op::Insert {
            id,
            vector: vector.to_vec(),
            labels: crate::builder::normalized_labels(labels)?.into(),
        })
    }

    /// Deletes a live id ([`Error::UnknownId`] otherwise).
    pub fn delete(&self, id: u64) -> Result<()> {
        self.run(Op::Delete { id })
    }

    /// Inserts `id`, replacing its vector if it is live.
    pub fn upsert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.upsert_with_labels(id, vector, &[])
    }

    /// [`Writer::upsert`] with the vector's labels (replacing those it had).
    pub fn upsert_with_labels(&self, id: u64, vector: &[f32], labels: &[u32]) -> Result<()> {
        self.run(Op::Upsert {
            id,
            vector: vector.to_vec(),
            labels: crate::builder::normalized_labels(labels)?.into(),
        })
    }

    /// Applies `ops` as one atomic unit: all of them or none, in the log
    /// (a batch-begin record, the operations, a batch-commit record: a
    /// crash before the commit is durable drops the whole batch at replay)
    /// and in memory (searches see none of it until all of it).
    ///
    /// Every operation is validated first, in order, against the current
    /// contents as changed by the operations before it in the batch, and
    /// nothing is written if one fails: the error is
    /// [`Error::BatchRejected`] naming its position and id. With
    /// [`BatchOptions::skip_existing`], an insert of an id that is live
    /// with the same vector (bit for bit, after the same preparation as at
    /// insert) is skipped, and one whose vector differs fails with
    /// [`Error::IdExistsWithOtherVector`]; with
    /// [`BatchOptions::ignore_missing`], a delete of an id that is not live
    /// is skipped. So retrying a batch that was committed (or not) before
    /// a crash, with both options, commits exactly what is missing.
    ///
    /// The batch is durable as one operation of the writer's
    /// [`Durability`]; if the sync that makes it durable fails, the batch
    /// is committed all the same and the error is
    /// [`Error::CommittedNotDurable`]. Its records are encoded and written in chunks of
    /// about 1 MiB, so the log side needs no memory proportional to it.
    pub fn apply_batch(&self, ops: &[Op], options: BatchOptions) -> Result<BatchReport> {
        // Labels are logged ascending and distinct, whatever order the
        // caller gave them in.
        let sorted: Vec<Op>;
        let ops = if ops.iter().all(|op| labels_normalized(op.labels())) {
            ops
        } else {
            sorted = ops.iter().cloned().map(normalize_labels).collect();
            &sorted
        };
        let mut inner = lock(&self.shared.inner);
        let mut report = BatchReport::default();
        // Validated on the state (searches go on, on their snapshot): it
        // cannot change meanwhile, since every change holds the writer lock.
        let live = &self.shared.live;
        let st = live.state();
        let p = st.padded();
        let dim = st.gen().index.dim();
        // Ids the batch changed so far: Some(i) live with the i-th prepared
        // row of the batch, None removed.
        let mut overlay: HashMap<u64, Option<usize>> = HashMap::new();
        // The labels of the ids the batch inserted so far.
        let mut batch_labels: HashMap<u64, &Vec<u32>> = HashMap::new();
        let mut prepared: Vec<f32> = Vec::new();
        // Per operation kept: its prepared row index, or None (a delete).
        let mut keep: Vec<(usize, Option<usize>)> = Vec::with_capacity(ops.len());
        for (position, op) in ops.iter().enumerate() {
            let id = op.id();
            let reject = |source: Error| Error::BatchRejected {
                position,
                id,
                source: Box::new(source),
            };
            let live = match overlay.get(&id) {
                Some(slot) => slot.is_some(),
                None => st.contains(id),
            };
            match op {
                Op::Insert { vector, labels, .. } | Op::Upsert { vector, labels, .. } => {
                    let row = st
                        .check(&Op::Upsert {
                            id,
                            vector: vector.clone(),
                            labels: labels.clone(),
                        })
                        .map_err(reject)?
                        .expect("a prepared row");
                    if live && matches!(op, Op::Insert { .. }) {
                        if !options.skip_existing {
                            return Err(reject(Error::IdExists(id)));
                        }
                        let same = match overlay.get(&id) {
                            Some(Some(i)) => {
                                prepared[i * p..i * p + dim] == row[..dim]
                                    && batch_labels.get(&id) == Some(&labels)
                            }
                            _ => match st.slot_of.get(&id) {
                                Some(&node) => {
                                    st.view.overlay.row(node)[..dim] == row[..dim]
                                        && st.view.overlay.labels(node) == &labels[..]
                                }
                                None => {
                                    st.gen().index.get(id).is_ok_and(|v| v[..] == row[..dim])
                                        && st.gen().index.labels(id).is_ok_and(|l| l == *labels)
                                }
                            },
                        };
                        if !same {
                            return Err(reject(Error::IdExistsWithOtherVector(id)));
                        }
                        report.skipped_existing.push(id);
                        continue;
                    }
                    let i = prepared.len() / p;
                    prepared.extend_from_slice(&row);
                    overlay.insert(id, Some(i));
                    batch_labels.insert(id, labels);
                    keep.push((position, Some(i)));
                    if matches!(op, Op::Insert { .. }) {
                        report.inserted += 1;
                    } else {
                        report.upserted += 1;
                    }
                }
                Op::Delete { .. } => {
                    if !live {
                        if !options.ignore_missing {
                            return Err(reject(Error::UnknownId(id)));
                        }
                        report.skipped_missing.push(id);
                        continue;
                    }
                    overlay.insert(id, None);
                    keep.push((position, None));
                    report.deleted += 1;
                }
            }
        }
        drop(st);
        if keep.is_empty() {
            return Ok(report);
        }
        let before = inner.log.records();
        inner
            .log
            .append_batch(keep.iter().map(|&(position, _)| &ops[position]))?;
        let mut st = live.state();
        for &(position, row) in &keep {
            let row = row.map(|i| prepared[i * p..(i + 1) * p].to_vec());
            st.apply(&ops[position], row);
        }
        st.view.log.records = inner.log.records();
        st.view.log.valid_len = inner.log.len();
        st.view.log.ops += keep.len() as u64;
        if keep.len() > 1 {
            st.view.log.batches += 1;
        }
        report.log_records = inner.log.records() - before;
        live.publish(&mut st);
        drop(st);
        self.shared.linker.after_change(live);
        inner
            .after_append()
            .map_err(|e| Error::CommittedNotDurable {
                operations: report.committed(),
                source: Box::new(e),
            })?;
        drop(inner);
        self.auto.after_commit(&self.shared);
        Ok(report)
    }

    /// Inserts `ids` with the row-major `vectors` (one row of `dim` per
    /// id) as one atomic batch ([`Writer::apply_batch`]). An id repeated
    /// in `ids` is refused ([`Error::DuplicateId`], positions as rows).
    pub fn insert_batch(
        &self,
        ids: &[u64],
        vectors: &[f32],
        options: BatchOptions,
    ) -> Result<BatchReport> {
        self.rows_batch(ids, vectors, &[], options, false)
    }

    /// [`Writer::insert_batch`] with the labels of each row (`labels[i]`
    /// for `ids[i]`; as many entries as ids).
    pub fn insert_batch_with_labels(
        &self,
        ids: &[u64],
        vectors: &[f32],
        labels: &[Vec<u32>],
        options: BatchOptions,
    ) -> Result<BatchReport> {
        Self::check_label_rows(ids, labels)?;
        self.rows_batch(ids, vectors, labels, options, false)
    }

    /// Upserts `ids` with the row-major `vectors` as one atomic batch.
    pub fn upsert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<BatchReport> {
        self.rows_batch(ids, vectors, &[], BatchOptions::default(), true)
    }

    /// [`Writer::upsert_batch`] with the labels of each row.
    pub fn upsert_batch_with_labels(
        &self,
        ids: &[u64],
        vectors: &[f32],
        labels: &[Vec<u32>],
    ) -> Result<BatchReport> {
        Self::check_label_rows(ids, labels)?;
        self.rows_batch(ids, vectors, labels, BatchOptions::default(), true)
    }

    fn check_label_rows(ids: &[u64], labels: &[Vec<u32>]) -> Result<()> {
        if labels.len() != ids.len() {
            return Err(Error::InvalidParameter {
                name: "labels",
                reason: format!("{} label rows for {} ids", labels.len(), ids.len()),
            });
        }
        Ok(())
    }

    /// A batch of inserts or upserts of `ids`, with `labels` per row (or
    /// none if empty).
    fn rows_batch(
        &self,
        ids: &[u64],
        vectors: &[f32],
        labels: &[Vec<u32>],
        options: BatchOptions,
        upsert: bool,
    ) -> Result<BatchReport> {
        let dim = self.shared.live.dim();
        if vectors.len() != ids.len() * dim {
            return Err(Error::InvalidParameter {
                name: "vectors",
                reason: format!(
                    "{} floats for {} ids of dimension {dim} (expected {})",
                    vectors.len(),
                    ids.len(),
                    ids.len() * dim
                ),
            });
        }
        check_unique(ids)?;
        let ops: Vec<Op> = ids
            .iter()
            .zip(vectors.chunks_exact(dim.max(1)))
            .enumerate()
            .map(|(row, (&id, v))| {
                let labels = labels.get(row).cloned().unwrap_or_default();
                let vector = v.to_vec();
                if upsert {
                    Op::Upsert { id, vector, labels }
                } else {
                    Op::Insert { id, vector, labels }
                }
            })
            .collect();
        self.apply_batch(&ops, options)
    }

    /// Deletes `ids` as one atomic batch ([`Writer::apply_batch`]). An id
    /// repeated in `ids` is refused ([`Error::DuplicateId`]).
    pub fn delete_batch(&self, ids: &[u64], options: BatchOptions) -> Result<BatchReport> {
        check_unique(ids)?;
        let ops: Vec<Op> = ids.iter().map(|&id| Op::Delete { id }).collect();
        self.apply_batch(&ops, options)
    }

    /// Makes every earlier operation durable and records in the MANIFEST
    /// that the log holds at least what it holds now, so that a log cut
    /// below this point (or deleted) is an error at open instead of a
    /// silent loss. Costs one fsync of the log and one MANIFEST
    /// replacement (nothing if nothing changed since the last one). Done
    /// by `Writer::open`, every compaction, and when the writer is dropped.
    pub fn checkpoint(&self) -> Result<()> {
        let mut inner = lock(&self.shared.inner);
        inner.sync()?;
        let bound = Manifest {
            log: Some(LogBound {
                len: inner.log.len(),
                records: inner.log.records(),
            }),
            ..inner.manifest
        };
        if bound != inner.manifest {
            write_manifest(&self.shared.live.dir, &bound)?;
            inner.manifest = bound;
        }
        Ok(())
    }

    /// Returns once every earlier operation is durable.
    pub fn flush(&self) -> Result<()> {
        lock(&self.shared.inner).sync()
    }

    /// The smallest id above every id the index has ever held in its
    /// current generation or log (for callers that let strata pick ids).
    pub fn next_free_id(&self) -> u64 {
        let st = self.shared.live.state();
        let base = st.gen().index.max_id().map_or(0, |m| m.saturating_add(1));
        let logged = st.slot_of.keys().max().map_or(0, |m| m.saturating_add(1));
        base.max(logged)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(w) = &lock(&self.shared.inner).wake {
            w.notify_one();
        }
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        // A background compaction finishes first (its result is in the
        // directory either way: switched, or removed before the switch).
        self.auto.wait();
        if self.checkpoint().is_err() {
            let _ = lock(&self.shared.inner).sync();
        }
    }
}

/// Refuses an id repeated in a batch of ids.
fn check_unique(ids: &[u64]) -> Result<()> {
    let mut first: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
    for (row, &id) in ids.iter().enumerate() {
        if let Some(&first_row) = first.get(&id) {
            return Err(Error::DuplicateId { id, first_row, row });
        }
        first.insert(id, row);
    }
    Ok(())
}

/// Policies of [`Writer::apply_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOptions {
    /// Skip an insert of an id that is live with the same vector (an
    /// idempotent retry); one with another vector still fails.
    pub skip_existing: bool,
    /// Skip a delete of an id that is not live.
    pub ignore_missing: bool,
}

/// What a batch committed: exactly these, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Inserts committed.
    pub inserted: usize,
    /// Upserts committed.
    pub upserted: usize,
    /// Deletes committed.
    pub deleted: usize,
    /// Inserts skipped: the id was live with the same vector.
    pub skipped_existing: Vec<u64>,
    /// Deletes skipped: the id was not live.
    pub skipped_missing: Vec<u64>,
    /// Log records written (0 if everything was skipped; one for a single
    /// operation; operations + 2 for a begin/commit framed batch).
    pub log_records: u64,
}

impl BatchReport {
    /// Operations committed.
    pub fn committed(&self) -> usize {
        self.inserted + self.upserted + self.deleted
    }
}

/// Whether `labels` ascend without duplicates (as logged).
fn labels_normalized(labels: &[u32]) -> bool {
    labels.windows(2).all(|w| w[0] < w[1])
}

/// `op` with its labels sorted and deduplicated.
fn normalize_labels(mut op: Op) -> Op {
    if let Op::Insert { labels, .. } | Op::Upsert { labels, .. } = &mut op {
        labels.sort_unstable();
        labels.dedup();
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dataset, BuildParams, IndexBuilder};

    fn index_dir(n: usize) -> (tempfile::TempDir, dataset::Vectors) {
        let data = dataset::clustered(n, 8, 4, 0.05, 9);
        let mut b = IndexBuilder::new(
            8,
            BuildParams {
                seed: Some(9),
                ..Default::default()
            },
        )
        .unwrap();
        b.add_rows(&data.data).unwrap();
        let dir = tempfile::tempdir().unwrap();
        b.build().unwrap().write(dir.path()).unwrap();
        (dir, data)
    }

    fn pending(w: &Writer) -> usize {
        lock(&w.shared.inner).pending
    }

    /// In group mode the flusher, not the writer, syncs: by age (one
    /// operation, far below `max_ops`) and by count (woken at `max_ops`,
    /// long before `max_delay`), while the writer never synced itself.
    #[test]
    fn the_group_flusher_syncs_by_age_and_by_count() {
        let (dir, data) = index_dir(300);
        let open = |max_ops, max_delay| {
            Writer::open_with(
                dir.path(),
                &WriterOptions {
                    durability: Durability::Group { max_ops, max_delay },
                    auto_compact: None,
                },
            )
            .unwrap()
        };
        let settle = |w: &Writer| {
            let t = Instant::now();
            while pending(w) != 0 && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
            pending(w)
        };
        let w = open(1_000, Duration::from_millis(30));
        w.insert(1_000, data.row(0)).unwrap();
        assert_eq!(pending(&w), 1, "the writer did not sync");
        assert_eq!(settle(&w), 0, "synced by age");
        drop(w);
        let w = open(50, Duration::from_secs(3_600));
        let epoch = lock(&w.shared.inner).sync_epoch;
        for i in 0..49 {
            w.insert(2_000 + i, data.row(i as usize)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pending(&w), 49, "below max_ops and max_delay: not synced");
        w.insert(3_000, data.row(60)).unwrap();
        assert_eq!(settle(&w), 0, "synced by count");
        // Only the flusher synced: the writer's own syncs change the epoch.
        assert_eq!(lock(&w.shared.inner).sync_epoch, epoch);
        w.flush().unwrap();
        assert_eq!(pending(&w), 0);
    }
}
