//! A prebuilt index plus its append log: inserts, deletes and upserts that
//! searches see at once, and compaction into a new generation.
//!
//! [`LiveIndex`] is what searches use: the memory-mapped generation, a
//! bitset of its deleted ordinals, and the vectors inserted through the log
//! (an in-memory HNSW over their float32 rows, [`crate::graph::overlay`]). [`Writer`] is the one process that may
//! change a directory (a lock file enforces it): it appends every operation
//! to the log before applying it, syncs by its [`Durability`], and folds the
//! log into a new generation with [`Writer::compact`].

use crate::builder::IndexBuilder;
use crate::dir::gc::{remove_generation, remove_other_generations, GenerationFiles};
use crate::dir::lock::{lock as lock_dir, WriterLock};
use crate::dir::manifest::{read as read_manifest, read_current, write as write_manifest};
use crate::dir::names;
use crate::dir::open::{open_current, paths};
use crate::dir::publish::{next_generation, switch};
use crate::distance::padded_dim;
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::{LogBound, Manifest};
use crate::format::DIRECTORY_VERSION;
use crate::graph::overlay::Overlay;
use crate::index::{Index, OpenOptions};
use crate::log::file::{LogHeader, LogWriter};
use crate::log::replay::{replay_file, replay_file_after, ReplayReport, Replayed};
use crate::log::Op;
use crate::metric::prepare_vector;
use crate::params::{Neighbor, SearchParams};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// One open generation: its index, and its files, removed when the
/// generation is retired and no reader in this process holds it any more.
struct Generation {
    index: Index,
    files: GenerationFiles,
}

impl Generation {
    /// Opens the generation `manifest` names (once: callers that may race
    /// a switch go through [`open_current`]), with the caller's read
    /// options (`verify` and `allow_log` are overridden: no full check,
    /// the log is replayed).
    fn open(dir: &Path, manifest: &Manifest, options: &OpenOptions) -> Result<Arc<Generation>> {
        let options = OpenOptions {
            verify: false,
            allow_log: true,
            ..options.clone()
        };
        let index = Index::open_generation(dir, manifest, &options)?;
        Ok(Arc::new(Generation {
            index,
            files: GenerationFiles::new(dir, manifest.generation),
        }))
    }

    fn number(&self) -> u64 {
        self.files.number()
    }
}

/// The searchable state: a generation, its deletions, and logged inserts.
struct State {
    gen: Arc<Generation>,
    /// One bit per ordinal of the generation: deleted or superseded.
    deleted: Vec<u64>,
    deleted_count: usize,
    /// Logged inserts: a graph over their prepared (padded, normalised)
    /// rows, and the node of each live id.
    overlay: Overlay,
    slot_of: HashMap<u64, u32>,
    /// How much of the log this state reflects.
    log: ReplayReport,
    /// A refresh failed part-way: the next one reloads from scratch.
    needs_reload: bool,
}

impl State {
    fn new(gen: Arc<Generation>) -> State {
        let index = &gen.index;
        let params = index.build_params();
        let overlay = Overlay::new(
            padded_dim(index.dim()),
            index.metric(),
            params.m,
            params.ef_construction,
            params.seed.unwrap_or(0),
            match index.trained_quantizer() {
                crate::quant::trained::Trained::Int8(q) => Some(q),
                _ => None,
            },
        );
        State {
            gen,
            // Grown by `remove` as ordinals are deleted: a file's claimed
            // count is not trusted to size anything at open.
            deleted: Vec::new(),
            deleted_count: 0,
            overlay,
            slot_of: HashMap::new(),
            log: ReplayReport::default(),
            needs_reload: false,
        }
    }

    /// Opens the generation `manifest` names and replays its log (once:
    /// [`LiveIndex::load`] retries across a switch).
    fn load(dir: &Path, manifest: &Manifest, options: &OpenOptions) -> Result<State> {
        let mut state = State::new(Generation::open(dir, manifest, options)?);
        let path = paths(dir, manifest).log;
        match state.replay(&path)? {
            Some(report) => check_bound(manifest, &path, &report)?,
            None => missing_log(manifest, &path)?,
        }
        Ok(state)
    }

    fn padded(&self) -> usize {
        padded_dim(self.gen.index.dim())
    }

    fn is_deleted(&self, ord: u32) -> bool {
        self.deleted
            .get(ord as usize / 64)
            .is_some_and(|w| w >> (ord % 64) & 1 == 1)
    }

    fn live_ordinal(&self, id: u64) -> Option<u32> {
        self.gen.index.ordinal(id).filter(|&o| !self.is_deleted(o))
    }

    fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id) || self.live_ordinal(id).is_some()
    }

    fn len(&self) -> usize {
        self.gen.index.len() - self.deleted_count + self.overlay.live()
    }

    /// Checks that `op` can apply (ids exist or not, vector valid) and
    /// returns its prepared vector, without changing anything.
    fn check(&self, op: &Op) -> Result<Option<Vec<f32>>> {
        let prepare = |v: &[f32]| {
            let mut out = vec![0f32; self.padded()];
            prepare_vector(
                self.gen.index.metric(),
                self.gen.index.dim(),
                v,
                None,
                &mut out,
            )
            .map(|()| out)
        };
        match op {
            Op::Insert { id, vector } => {
                if self.contains(*id) {
                    return Err(Error::IdExists(*id));
                }
                prepare(vector).map(Some)
            }
            Op::Delete { id } => {
                if !self.contains(*id) {
                    return Err(Error::UnknownId(*id));
                }
                Ok(None)
            }
            Op::Upsert { vector, .. } => prepare(vector).map(Some),
        }
    }

    /// Applies a checked operation. An inserted row is pushed into the
    /// overlay but not linked: the writer links after each operation or
    /// batch ([`State::link_applied`]), a replay on the first search after
    /// it ([`State::link`]).
    fn apply(&mut self, op: &Op, prepared: Option<Vec<f32>>) {
        let id = op.id();
        if matches!(op, Op::Delete { .. } | Op::Upsert { .. }) {
            self.remove(id);
        }
        if let Some(row) = prepared {
            let node = self.overlay.push(id, &row);
            self.slot_of.insert(id, node);
        }
    }

    /// Links the overlay's pending nodes into its graph.
    fn link(&mut self) {
        self.overlay.link_pending();
    }

    /// Links what the writer just applied, unless a replay left nodes
    /// pending before it (a writer opened on a log): those come first, and
    /// linking a whole log is left to the first search, so that a short
    /// writer (`strata insert` into a logged index) costs what it writes,
    /// not what the log holds. Either way the graph is the same.
    fn link_applied(&mut self, backlog: bool) {
        if !backlog {
            self.link();
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(node) = self.slot_of.remove(&id) {
            self.overlay.kill(node);
        } else if let Some(o) = self.live_ordinal(id) {
            let word = o as usize / 64;
            if self.deleted.len() <= word {
                self.deleted.resize(word + 1, 0);
            }
            self.deleted[word] |= 1 << (o % 64);
            self.deleted_count += 1;
        }
    }

    /// Applies one replayed operation (the record at `offset`): one that
    /// is not valid at its point of the log is corruption (L10).
    fn replay_op(&mut self, op: &Op, offset: u64) -> Result<()> {
        let prepared = self.check(op).map_err(|e| {
            Error::corrupt(
                FileKind::Log,
                format!("record at offset {offset}"),
                "an operation valid at its point in the log",
                e,
            )
        })?;
        self.apply(op, prepared);
        Ok(())
    }

    /// Replays the generation's whole log at `path` onto this state
    /// (`None`: there is no log).
    fn replay(&mut self, path: &Path) -> Result<Option<ReplayReport>> {
        let header = log_header(&self.gen);
        let report = replay_file(path, &header, |_, op, offset| self.replay_op(&op, offset))?;
        if let Some(report) = report {
            self.log = report;
        }
        Ok(report)
    }

    /// Replays what follows the records this state has replayed so far.
    fn replay_more(&mut self, path: &Path) -> Result<Replayed> {
        let (header, after) = (log_header(&self.gen), self.log);
        let replayed = replay_file_after(path, &header, &after, |_, op, offset| {
            self.replay_op(&op, offset)
        })?;
        if let Replayed::Applied(report) = replayed {
            self.log = report;
        }
        Ok(replayed)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        exact: bool,
    ) -> Result<Vec<Neighbor>> {
        let index = &self.gen.index;
        let accept = |o: u32| !self.is_deleted(o);
        let base = match (exact, self.deleted_count) {
            (false, 0) => index.search(query, k, params)?,
            (false, _) => index.search_accepting(query, k, params, accept)?,
            (true, 0) => index.exact_search(query, k)?,
            (true, _) => index.exact_search_accepting(query, k, accept)?,
        };
        self.merge_logged(query, k, params.ef, exact, base)
    }

    /// [`State::search`] (approximate) of every row of `data`: the
    /// generation's pipelined batch search, each answer merged with the
    /// logged inserts.
    fn search_batch(
        &self,
        data: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>> {
        use rayon::prelude::*;
        let index = &self.gen.index;
        let accept = |o: u32| !self.is_deleted(o);
        let base = if self.deleted_count == 0 {
            index.search_batch_accepting(data, k, params, &|_| true)?
        } else {
            index.search_batch_accepting(data, k, params, &accept)?
        };
        if self.overlay.live() == 0 {
            return Ok(base);
        }
        data.par_chunks_exact(index.dim())
            .zip(base)
            .map(|(q, b)| self.merge_logged(q, k, params.ef, false, b))
            .collect()
    }

    /// `base` (answers from the generation) merged with the `k` nearest
    /// logged inserts to `query` (by the overlay's beam of width `ef`, or
    /// exactly), both by exact float32 distance.
    fn merge_logged(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        exact: bool,
        mut base: Vec<Neighbor>,
    ) -> Result<Vec<Neighbor>> {
        let index = &self.gen.index;
        if self.overlay.live() == 0 {
            return Ok(base);
        }
        let mut q = vec![0f32; self.padded()];
        prepare_vector(index.metric(), index.dim(), query, None, &mut q)?;
        let logged = self.overlay.search(&q, k, ef, exact);
        base.extend(logged.into_iter().map(|c| Neighbor {
            id: self.overlay.id(c.id),
            distance: c.d,
        }));
        base.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        base.truncate(k);
        Ok(base)
    }
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a replayed log against the MANIFEST's lower bound: a log that
/// holds fewer committed records than the MANIFEST recorded lost some.
fn check_bound(manifest: &Manifest, path: &Path, report: &ReplayReport) -> Result<()> {
    match manifest.log {
        Some(b) if report.valid_len < b.len || report.records < b.records => {
            Err(Error::corrupt(
                FileKind::Log,
                format!("length of {}", path.display()),
                format!(
                    "at least {} bytes holding {} committed records (recorded by the MANIFEST)",
                    b.len, b.records
                ),
                format!(
                    "{} bytes of committed records holding {} records, then {} bytes of torn tail: the log was cut or lost data",
                    report.valid_len, report.records, report.torn_bytes
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The error for a log the MANIFEST requires that is not there (`Ok` if
/// the MANIFEST requires none: a missing log then means no records).
fn missing_log(manifest: &Manifest, path: &Path) -> Result<()> {
    match manifest.log {
        Some(b) => Err(Error::LogMissing {
            path: path.to_path_buf(),
            min_records: b.records,
            min_len: b.len,
        }),
        None => Ok(()),
    }
}

fn log_header(gen: &Generation) -> LogHeader {
    LogHeader {
        generation: gen.number(),
        build_id: gen.index.build_id(),
        dim: gen.index.dim() as u32,
    }
}

/// Statistics about an index and its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveStats {
    /// The generation number (from the manifest).
    pub generation: u64,
    /// Vectors in the generation's files.
    pub base_count: usize,
    /// Of those, deleted or replaced through the log.
    pub deleted: usize,
    /// Vectors inserted through the log and not deleted since.
    pub inserted: usize,
    /// Live vectors: `base_count − deleted + inserted`.
    pub live: usize,
    /// Records in the log.
    pub log_records: u64,
    /// Bytes of the log file (header included; 0 if there is none).
    pub log_bytes: u64,
    /// Bytes of a torn record found after the last valid one (a crash
    /// during an append; a writer truncates them at open).
    pub torn_bytes: u64,
}

/// A searchable index directory including its append log. Cheap to clone
/// (clones share state); `Send + Sync`. A `LiveIndex` from
/// [`Writer::live`] sees every operation as soon as it returns; one opened
/// with [`LiveIndex::open`] sees the log as of opening and of each
/// [`LiveIndex::refresh`].
#[derive(Clone)]
pub struct LiveIndex {
    dir: PathBuf,
    state: Arc<RwLock<State>>,
}

impl LiveIndex {
    /// Opens the current generation of `dir` and replays its log (if any)
    /// read-only. A torn tail is ignored (and reported in
    /// [`LiveIndex::stats`]); a corrupt record in the middle is an error
    /// naming its offset.
    pub fn open(dir: impl AsRef<Path>) -> Result<LiveIndex> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// [`LiveIndex::open`] with read options: [`OpenOptions::io`],
    /// [`OpenOptions::lock_graph`] apply to this and every later generation
    /// [`LiveIndex::refresh`] opens; `verify` and `allow_log` are ignored
    /// (verify with [`Index::verify`] through [`LiveIndex::with_index`]).
    ///
    /// ```
    /// use strata::{dataset, BuildParams, IndexBuilder, IoMode, LiveIndex, OpenOptions, SearchParams};
    /// let data = dataset::clustered(500, 8, 4, 0.05, 3);
    /// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(3), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let live = LiveIndex::open_with(dir.path(), &OpenOptions { io: IoMode::Pread, ..Default::default() })?;
    /// assert_eq!(live.search(data.row(7), 1, &SearchParams::default())?[0].id, 7);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<LiveIndex> {
        let dir = dir.as_ref().to_path_buf();
        let state = Self::load(&dir, options)?;
        Ok(LiveIndex {
            dir,
            state: Arc::new(RwLock::new(state)),
        })
    }

    /// The state of the current generation and its log, following a
    /// generation switch that happens meanwhile.
    fn load(dir: &Path, options: &OpenOptions) -> Result<State> {
        open_current(dir, |m| State::load(dir, m, options)).map(|(state, _)| state)
    }

    /// Picks up what a writer in another process did since this index was
    /// opened or last refreshed: new log records, or a new generation after
    /// a compaction. A batch whose commit record is not written yet is not
    /// applied (it is, whole, by a later refresh).
    pub fn refresh(&self) -> Result<()> {
        let current = read_manifest(&self.dir)?;
        let same_gen = {
            let st = read_lock(&self.state);
            current.map(|m| m.generation) == Some(st.gen.number()) && !st.needs_reload
        };
        if !same_gen {
            let options = read_lock(&self.state).gen.index.open_options().clone();
            let fresh = Self::load(&self.dir, &options)?;
            *write_lock(&self.state) = fresh;
            return Ok(());
        }
        let manifest = current.expect("same generation");
        let path = paths(&self.dir, &manifest).log;
        // Only what follows the records this state has seen is read.
        let mut st = write_lock(&self.state);
        match st.replay_more(&path) {
            Ok(Replayed::Applied(report)) => check_bound(&manifest, &path, &report),
            Ok(Replayed::Missing) => missing_log(&manifest, &path),
            Ok(Replayed::Rewritten) => {
                // A writer rewrote a version-3 log as version 4 (atomically,
                // same generation): read it from the start.
                let options = st.gen.index.open_options().clone();
                drop(st);
                let fresh = Self::load(&self.dir, &options)?;
                *write_lock(&self.state) = fresh;
                Ok(())
            }
            Err(e) => {
                // Operations before the failure may be applied: start over
                // next time.
                st.needs_reload = true;
                Err(e)
            }
        }
    }

    /// The `k` nearest live vectors: the generation's graph (deleted
    /// ordinals traversed but never returned) merged with the graph of the
    /// logged inserts, searched with the same `ef` (dead nodes likewise
    /// traversed, never returned), by exact float32 distance.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.linked().search(query, k, params, false)
    }

    /// The state, after linking what a replay left pending in the overlay
    /// (once, under the write lock: the first search after an open or a
    /// refresh pays for it).
    fn linked(&self) -> RwLockReadGuard<'_, State> {
        let st = read_lock(&self.state);
        if !st.overlay.has_pending() {
            return st;
        }
        drop(st);
        write_lock(&self.state).link();
        // A refresh in between may leave more pending: those are scanned.
        read_lock(&self.state)
    }

    /// [`LiveIndex::search`] over many queries, in parallel
    /// ([`Error::DimensionMismatch`] naming both dimensions if theirs is
    /// not the index's).
    pub fn search_batch<'q>(
        &self,
        queries: impl Into<crate::Queries<'q>>,
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let queries = queries.into();
        queries.check(self.dim())?;
        self.linked().search_batch(queries.data(), k, params)
    }

    /// The exact `k` nearest live vectors, by brute force.
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>> {
        read_lock(&self.state).search(query, k, &SearchParams::default(), true)
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: u64) -> bool {
        read_lock(&self.state).contains(id)
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        read_lock(&self.state).len()
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        read_lock(&self.state).gen.index.dim()
    }

    /// Counts of the generation and its log.
    pub fn stats(&self) -> LiveStats {
        let st = read_lock(&self.state);
        LiveStats {
            generation: st.gen.number(),
            base_count: st.gen.index.len(),
            deleted: st.deleted_count,
            inserted: st.overlay.live(),
            live: st.len(),
            log_records: st.log.records,
            log_bytes: st.log.valid_len,
            torn_bytes: st.log.torn_bytes,
        }
    }

    /// Runs `f` with the current generation's [`Index`] (for tools: info,
    /// degree statistics). The generation stays valid while `f` runs.
    pub fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        let gen = read_lock(&self.state).gen.clone();
        f(&gen.index)
    }
}

/// When a writer makes appended operations durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync after every operation: each one is durable when it returns.
    EveryOp,
    /// fsync once `max_ops` operations are pending or the oldest pending one
    /// is `max_delay` old (checked by every operation and by a background
    /// flusher); [`Writer::flush`] makes everything durable at once.
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

/// Options of [`Writer::compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactOptions {
    /// Train a new quantizer on the live vectors instead of reusing the
    /// current generation's.
    pub retrain: bool,
    /// Build threads (0 = all cores).
    pub threads: usize,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    /// The new generation number.
    pub generation: u64,
    /// Live vectors in the new generation's graph.
    pub vectors: usize,
    /// Log records folded into the graph.
    pub folded_records: u64,
    /// Records that arrived during the compaction, carried into the new log.
    pub carried_records: u64,
}

struct WriterInner {
    log: LogWriter,
    durability: Durability,
    pending: usize,
    oldest_pending: Option<Instant>,
    /// The MANIFEST as this writer last wrote or read it.
    manifest: Manifest,
}

impl WriterInner {
    fn sync(&mut self) -> Result<()> {
        if self.pending > 0 {
            self.log.sync()?;
            self.pending = 0;
            self.oldest_pending = None;
        }
        Ok(())
    }

    fn after_append(&mut self) -> Result<()> {
        self.pending += 1;
        self.oldest_pending.get_or_insert_with(Instant::now);
        match self.durability {
            Durability::EveryOp => self.sync(),
            Durability::Group { max_ops, max_delay } => {
                if self.pending >= max_ops.max(1)
                    || self
                        .oldest_pending
                        .is_some_and(|t| t.elapsed() >= max_delay)
                {
                    self.sync()
                } else {
                    Ok(())
                }
            }
            Durability::None => Ok(()),
        }
    }
}

/// The single writer of an index directory: appends every operation to the
/// log before applying it; searches through [`Writer::live`] see it at once.
pub struct Writer {
    live: LiveIndex,
    /// Held for a whole compaction: one at a time.
    compacting: Mutex<()>,
    /// Set when a compaction failed after switching generations: the
    /// in-memory state no longer matches the directory.
    poisoned: AtomicBool,
    inner: Arc<Mutex<WriterInner>>,
    stop: Arc<AtomicBool>,
    flusher: Option<std::thread::JoinHandle<()>>,
    _lock: WriterLock,
}

impl Writer {
    /// Opens `dir` for writing: takes the lock file (failing with
    /// [`Error::WriterLocked`] if another writer holds it), replays the log,
    /// truncates a torn tail, and removes files of other generations left
    /// by an interrupted compaction.
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<Writer> {
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        // Under the lock nobody else switches generations: no retry.
        let manifest = read_current(&dir)?;
        let gen = Generation::open(&dir, &manifest, &OpenOptions::default())?;
        remove_other_generations(&dir, manifest.generation);
        let mut state = State::new(gen);
        let header = log_header(&state.gen);
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
                    state.log = ReplayReport {
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
                state.log = ReplayReport {
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
        state.log.torn_bytes = 0;
        let inner = Arc::new(Mutex::new(WriterInner {
            log,
            durability,
            pending: 0,
            oldest_pending: None,
            manifest: bound,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = match durability {
            Durability::Group { max_delay, .. } => {
                Some(spawn_flusher(inner.clone(), stop.clone(), max_delay))
            }
            _ => None,
        };
        Ok(Writer {
            live: LiveIndex {
                dir,
                state: Arc::new(RwLock::new(state)),
            },
            compacting: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            inner,
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

    /// A searchable view that sees every operation of this writer at once.
    pub fn live(&self) -> LiveIndex {
        self.live.clone()
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::WriterPoisoned(
                "a compaction failed after switching generations".into(),
            ));
        }
        Ok(())
    }

    fn run(&self, op: Op) -> Result<()> {
        let mut inner = lock(&self.inner);
        // Checked under the writer lock: a compaction that fails after its
        // switch holds this lock while it sets the flag.
        self.check_poisoned()?;
        {
            let mut st = write_lock(&self.live.state);
            let prepared = st.check(&op)?;
            inner.log.append(&op)?;
            let backlog = st.overlay.has_pending();
            st.apply(&op, prepared);
            st.link_applied(backlog);
            st.log.records = inner.log.records();
            st.log.valid_len = inner.log.len();
            st.log.ops += 1;
        }
        inner.after_append()
    }

    /// Inserts a new id ([`Error::IdExists`] if it is live).
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.run(Op::Insert {
            id,
            vector: vector.to_vec(),
        })
    }

    /// Deletes a live id ([`Error::UnknownId`] otherwise).
    pub fn delete(&self, id: u64) -> Result<()> {
        self.run(Op::Delete { id })
    }

    /// Inserts `id`, replacing its vector if it is live.
    pub fn upsert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.run(Op::Upsert {
            id,
            vector: vector.to_vec(),
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
        let mut inner = lock(&self.inner);
        self.check_poisoned()?;
        let mut report = BatchReport::default();
        // Validated under the read lock (searches go on): the state cannot
        // change meanwhile, since every change holds the writer lock.
        let st = read_lock(&self.live.state);
        let p = st.padded();
        let dim = st.gen.index.dim();
        // Ids the batch changed so far: Some(i) live with the i-th prepared
        // row of the batch, None removed.
        let mut overlay: HashMap<u64, Option<usize>> = HashMap::new();
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
                Op::Insert { vector, .. } | Op::Upsert { vector, .. } => {
                    let row = st
                        .check(&Op::Upsert {
                            id,
                            vector: vector.clone(),
                        })
                        .map_err(reject)?
                        .expect("a prepared row");
                    if live && matches!(op, Op::Insert { .. }) {
                        if !options.skip_existing {
                            return Err(reject(Error::IdExists(id)));
                        }
                        let same = match overlay.get(&id) {
                            Some(Some(i)) => prepared[i * p..i * p + dim] == row[..dim],
                            _ => match st.slot_of.get(&id) {
                                Some(&node) => st.overlay.row(node)[..dim] == row[..dim],
                                None => st.gen.index.get(id).is_ok_and(|v| v[..] == row[..dim]),
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
        let mut st = write_lock(&self.live.state);
        let backlog = st.overlay.has_pending();
        for &(position, row) in &keep {
            let row = row.map(|i| prepared[i * p..(i + 1) * p].to_vec());
            st.apply(&ops[position], row);
        }
        st.link_applied(backlog);
        st.log.records = inner.log.records();
        st.log.valid_len = inner.log.len();
        st.log.ops += keep.len() as u64;
        if keep.len() > 1 {
            st.log.batches += 1;
        }
        report.log_records = inner.log.records() - before;
        drop(st);
        inner
            .after_append()
            .map_err(|e| Error::CommittedNotDurable {
                operations: report.committed(),
                source: Box::new(e),
            })?;
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
        self.rows_batch(ids, vectors, options, false)
    }

    /// Upserts `ids` with the row-major `vectors` as one atomic batch.
    pub fn upsert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<BatchReport> {
        self.rows_batch(ids, vectors, BatchOptions::default(), true)
    }

    fn rows_batch(
        &self,
        ids: &[u64],
        vectors: &[f32],
        options: BatchOptions,
        upsert: bool,
    ) -> Result<BatchReport> {
        let dim = self.live.dim();
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
            .map(|(&id, v)| {
                let vector = v.to_vec();
                if upsert {
                    Op::Upsert { id, vector }
                } else {
                    Op::Insert { id, vector }
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
        let mut inner = lock(&self.inner);
        self.check_poisoned()?;
        inner.sync()?;
        let bound = Manifest {
            log: Some(LogBound {
                len: inner.log.len(),
                records: inner.log.records(),
            }),
            ..inner.manifest
        };
        if bound != inner.manifest {
            write_manifest(&self.live.dir, &bound)?;
            inner.manifest = bound;
        }
        Ok(())
    }

    /// Returns once every earlier operation is durable.
    pub fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        lock(&self.inner).sync()
    }

    /// The smallest id above every id the index has ever held in its
    /// current generation or log (for callers that let strata pick ids).
    pub fn next_free_id(&self) -> u64 {
        let st = read_lock(&self.live.state);
        let base = st.gen.index.max_id().map_or(0, |m| m.saturating_add(1));
        let logged = st.slot_of.keys().max().map_or(0, |m| m.saturating_add(1));
        base.max(logged)
    }

    /// Folds the log into a new generation: a graph built from every live
    /// vector (inserted ones become nodes with proper neighbour selection;
    /// deleted ones disappear, and the graph is rebuilt around them rather
    /// than having links dropped), written beside the current one. Searches
    /// keep using the current generation, and operations keep being
    /// accepted, until the switch; operations that arrive meanwhile are
    /// carried into the new generation's log. The switch is the manifest's
    /// atomic replacement; the old files are removed once no search in this
    /// process uses them.
    pub fn compact(&self, options: CompactOptions) -> Result<CompactReport> {
        self.compact_with(options, || {})
    }

    /// [`Writer::compact`] running `during_build` after the live set and
    /// the log's mark are taken and before the log's tail is carried over,
    /// with no lock held (so it may insert through this writer): lets tests
    /// place operations, or damage, inside a compaction deterministically.
    /// Not a stable API.
    #[doc(hidden)]
    pub fn compact_with(
        &self,
        options: CompactOptions,
        during_build: impl FnOnce(),
    ) -> Result<CompactReport> {
        let _one_at_a_time = lock(&self.compacting);
        self.check_poisoned()?;
        let dir = self.live.dir.clone();
        // 1. Snapshot the live set and where the log stands.
        let (gen, ids, rows, mark_len, mark_records) = {
            let inner = lock(&self.inner);
            let st = read_lock(&self.live.state);
            let (mut ids, mut rows) = st.gen.index.rows_accepting(|o| !st.is_deleted(o));
            let dim = st.gen.index.dim();
            for (node, id) in st.overlay.live_nodes() {
                ids.push(id);
                rows.extend_from_slice(&st.overlay.row(node)[..dim]);
            }
            (st.gen.clone(), ids, rows, inner.log.len(), st.log.records)
        };
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        during_build();
        // 2. Build the next generation without holding any lock.
        let index = &gen.index;
        let mut params = index.build_params();
        params.threads = options.threads;
        let mut builder = IndexBuilder::new(index.dim(), params)?;
        if !options.retrain {
            builder.reuse_quantizer(index.trained_quantizer());
        }
        for (id, v) in ids.iter().zip(rows.chunks_exact(index.dim())) {
            builder.add(*id, v)?;
        }
        drop(rows);
        // Streamed to temporary files in the directory: memory holds the
        // live rows and the new graph, never the new files.
        let staged = builder.build_staged(&dir, &|_| {})?;
        let mut next = Manifest::new(next_generation(gen.number())?, staged.build_id);
        // 3. Under the writer lock: carry the tail of the log over, switch.
        let mut inner = lock(&self.inner);
        inner.sync()?;
        let mut carried = Vec::new();
        let mut carried_records = 0u64;
        // The same replayer as every reader, from the mark: a damaged
        // record is the error an open gives; a torn tail (never committed)
        // is not carried, as a writer's open cuts it. Batches committed
        // during the build are carried as plain records: the new log
        // appears whole (it is created atomically), so they stay
        // all-or-nothing.
        let mark = ReplayReport {
            records: mark_records,
            valid_len: mark_len,
            version: DIRECTORY_VERSION,
            ..ReplayReport::default()
        };
        let old_log = inner.log.path().to_path_buf();
        let carry = |_, op: Op, _| {
            carried_records += 1;
            op.encode(carried_records, &mut carried);
            Ok(())
        };
        match replay_file_after(&old_log, &log_header(&gen), &mark, carry)? {
            Replayed::Applied(_) => {}
            Replayed::Missing | Replayed::Rewritten => {
                return Err(Error::io(
                    &old_log,
                    std::io::Error::other("the writer's log was removed or replaced"),
                ))
            }
        }
        let cleanup = |dir: &Path| remove_generation(dir, next.generation);
        let prepared = (|| -> Result<LogWriter> {
            staged.publish_files(&dir, &next)?;
            let header = LogHeader {
                generation: next.generation,
                build_id: next.build_id,
                dim: index.dim() as u32,
            };
            LogWriter::create(
                &dir,
                &names::log(next.generation),
                &header,
                &carried,
                carried_records + 1,
            )
        })();
        let new_log = match prepared {
            Ok(log) => log,
            Err(e) => {
                cleanup(&dir);
                return Err(e);
            }
        };
        next.log = Some(LogBound {
            len: new_log.len(),
            records: new_log.records(),
        });
        if let Err(e) = switch(&dir, &next) {
            cleanup(&dir);
            return Err(e);
        }
        // Switched: from here a failure leaves the in-memory state behind
        // the directory, so the writer refuses further work until reopened.
        let state = match State::load(&dir, &next, &OpenOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                self.poisoned.store(true, Ordering::Release);
                return Err(e);
            }
        };
        let vectors = ids.len();
        drop(gen);
        {
            let mut st = write_lock(&self.live.state);
            st.gen.files.retire();
            *st = state;
        }
        inner.log = new_log;
        inner.manifest = next;
        inner.pending = 0;
        inner.oldest_pending = None;
        Ok(CompactReport {
            generation: next.generation,
            vectors,
            folded_records: mark_records,
            carried_records,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        if self.checkpoint().is_err() {
            let _ = lock(&self.inner).sync();
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

fn spawn_flusher(
    inner: Arc<Mutex<WriterInner>>,
    stop: Arc<AtomicBool>,
    max_delay: Duration,
) -> std::thread::JoinHandle<()> {
    let tick = (max_delay / 2).max(Duration::from_millis(1));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            let mut g = lock(&inner);
            if g.oldest_pending.is_some_and(|t| t.elapsed() >= max_delay) {
                let _ = g.sync();
            }
        }
    })
}
