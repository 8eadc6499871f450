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
use crate::distance::padded_dim;
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::{lock_dir, write_manifest, LogBound, Manifest, MANIFEST_NAME};
use crate::format::DIRECTORY_VERSION;
use crate::graph::overlay::Overlay;
use crate::index::{Index, OpenOptions};
use crate::log::file::{replay, replay_records, LogHeader, LogWriter, ReplayReport, LOG_HEADER};
use crate::log::Op;
use crate::metric::prepare_vector;
use crate::params::{Neighbor, SearchParams};
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The name of the lock file a writer holds.
pub const LOCK_NAME: &str = "LOCK";

/// One generation's files, removed when the generation is obsolete and no
/// reader in this process holds it any more.
struct Generation {
    index: Index,
    number: u64,
    dir: PathBuf,
    obsolete: AtomicBool,
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            let m = Manifest::new(self.number, 0);
            for name in [m.graph_name(), m.vectors_name(), m.log_name()] {
                let _ = fs::remove_file(self.dir.join(name));
            }
        }
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
    /// overlay (searches scan it) but not linked: [`link_pending`] links it,
    /// under the read lock, after the operation or batch, or the replay.
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

    /// Replays log bytes (header included) onto this state.
    fn replay(&mut self, bytes: &[u8], header: &LogHeader) -> Result<ReplayReport> {
        let report = replay(bytes, header, |_, op, offset| self.replay_op(&op, offset))?;
        self.log = report;
        Ok(report)
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

// --- issue 11: linking the overlay off the search path (begin) ---
/// Links the overlay's pending nodes in parallel, a chunk at a time under
/// the read lock (searches go on; a waiting write waits one chunk at most).
/// If another thread is linking (it links them all), returns at once, or
/// with `wait` once it is done.
fn link_pending(state: &RwLock<State>, parallel: bool, wait: bool) {
    use crate::graph::overlay::{Linking, LINK_CHUNK};
    loop {
        let st = read_lock(state);
        match st.overlay.link_some(LINK_CHUNK, parallel) {
            Linking::More => {}
            Linking::Done => return,
            Linking::Busy if wait => {
                st.overlay.wait_linking();
                if !st.overlay.has_pending() {
                    return;
                }
            }
            Linking::Busy => return,
        }
    }
}

/// Links what a writer's replay left pending on a background thread, so
/// that a short writer (`strata insert` into a logged index) costs what it
/// writes, not what the log holds; the writer's own rows wait behind that
/// backlog (see `Writer::run`), searches scan them meanwhile. Opened from a
/// rayon pool's thread, it links sequentially (deterministic on one).
fn spawn_linker(state: &Arc<RwLock<State>>) {
    if read_lock(state).overlay.has_pending() {
        let parallel = rayon::current_thread_index().is_none();
        let state = state.clone();
        std::thread::spawn(move || link_pending(&state, parallel, false));
    }
}
// --- issue 11 (end) ---

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_generation(dir: &Path) -> Result<(Arc<Generation>, Manifest)> {
    open_generation_with(dir, &OpenOptions::default())
}

/// [`open_generation`] with the caller's read options (`verify` and
/// `allow_log` are overridden: no full check, the log is replayed).
fn open_generation_with(dir: &Path, options: &OpenOptions) -> Result<(Arc<Generation>, Manifest)> {
    let index = Index::open_with(
        dir,
        &OpenOptions {
            verify: false,
            allow_log: true,
            ..options.clone()
        },
    )?;
    let manifest = Manifest::read(dir)?
        .ok_or_else(|| Error::io(dir.join(MANIFEST_NAME), std::io::ErrorKind::NotFound.into()))?;
    // `open_with` validated the files the manifest named when it read it; if
    // a publish raced us, the build ids tell, and the caller retries.
    if manifest.build_id != index.build_id() {
        return Err(Error::io(
            dir.join(MANIFEST_NAME),
            std::io::Error::other("generation changed while opening; retry"),
        ));
    }
    let gen = Generation {
        index,
        number: manifest.generation,
        dir: dir.to_path_buf(),
        obsolete: AtomicBool::new(false),
    };
    Ok((Arc::new(gen), manifest))
}

/// The bytes of `path` from offset `from` to its end.
/// The bytes of `path` from offset `from` to its end, and its length.
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
        generation: gen.number,
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

    fn load(dir: &Path, options: &OpenOptions) -> Result<State> {
        let mut attempts = 0;
        loop {
            let (gen, manifest) = match open_generation_with(dir, options) {
                Err(Error::Io { .. }) if attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                other => other?,
            };
            let mut state = State::new(gen);
            let path = dir.join(manifest.log_name());
            let result = match crate::regular::read_regular(&path) {
                Ok(bytes) => state
                    .replay(&bytes, &log_header(&state.gen))
                    .and_then(|report| check_bound(&manifest, &path, &report)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing_log(&manifest, &path),
                Err(e) => Err(Error::io(path, e)),
            };
            // A compaction may have switched generations (and removed this
            // log) while we read: then load the new one.
            if attempts < 3
                && Manifest::read(dir)?.map(|m| m.generation) != Some(manifest.generation)
            {
                attempts += 1;
                continue;
            }
            result?;
            state.overlay.link_all();
            return Ok(state);
        }
    }

    /// Picks up what a writer in another process did since this index was
    /// opened or last refreshed: new log records, or a new generation after
    /// a compaction, and returns once every logged row is linked into the
    /// overlay's graph (also those of a writer opened on a log, which links
    /// them in the background, searches scanning them meanwhile). A batch whose commit record is not written yet is not
    /// applied (it is, whole, by a later refresh).
    pub fn refresh(&self) -> Result<()> {
        let current = Manifest::read(&self.dir)?;
        let (same_gen, header, from) = {
            let st = read_lock(&self.state);
            (
                current.map(|m| m.generation) == Some(st.gen.number) && !st.needs_reload,
                log_header(&st.gen),
                st.log.valid_len,
            )
        };
        if !same_gen {
            let options = read_lock(&self.state).gen.index.open_options().clone();
            let fresh = Self::load(&self.dir, &options)?;
            *write_lock(&self.state) = fresh;
            return Ok(());
        }
        let manifest = current.expect("same generation");
        let path = self.dir.join(manifest.log_name());
        // Read only what follows the records this state has seen (the whole
        // file if the log was created since: its header is checked first).
        let mut st = write_lock(&self.state);
        let from = st.log.valid_len.max(from);
        let base = if from < LOG_HEADER as u64 { 0 } else { from };
        let (bytes, file_len, file_version) = match read_from(&path, base) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return missing_log(&manifest, &path);
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        if base > 0 && file_version != st.log.version {
            // A writer rewrote a version-3 log as version 4 (atomically,
            // same generation): offsets into the old file mean nothing in
            // the new one, so read it from the start.
            let options = st.gen.index.open_options().clone();
            drop(st);
            let fresh = Self::load(&self.dir, &options)?;
            *write_lock(&self.state) = fresh;
            return Ok(());
        }
        if file_len < base {
            return Err(Error::corrupt(
                FileKind::Log,
                format!("length of {}", path.display()),
                format!("at least {base} bytes (the committed records already read)"),
                format!("{file_len} bytes: the log was cut"),
            ));
        }
        if bytes.is_empty() {
            drop(st);
            link_pending(&self.state, true, true);
            return Ok(());
        }
        let (at, version) = if base == 0 {
            (LOG_HEADER, header.check(&bytes)?)
        } else {
            (0, st.log.version)
        };
        let before = st.log;
        let state = &mut *st;
        let result = replay_records(
            &bytes[at..],
            base + at as u64,
            version,
            header.dim as usize,
            before.records,
            |_, op, offset| state.replay_op(&op, offset),
        );
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                // Operations before the failure are applied: start over next time.
                st.needs_reload = true;
                return Err(e);
            }
        };
        st.log = ReplayReport {
            ops: before.ops + report.ops,
            batches: before.batches + report.batches,
            ..report
        };
        let bound = check_bound(&manifest, &path, &st.log);
        drop(st);
        link_pending(&self.state, true, true);
        bound
    }

    /// The `k` nearest live vectors: the generation's graph (deleted
    /// ordinals traversed but never returned) merged with the graph of the
    /// logged inserts, searched with the same `ef` (dead nodes likewise
    /// traversed, never returned), by exact float32 distance.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.linked().search(query, k, params, false)
    }

    /// The state to search: rows still being linked are scanned, so a
    /// search never waits for linking.
    fn linked(&self) -> RwLockReadGuard<'_, State> {
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
            generation: st.gen.number,
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
    _lock: File,
}

impl Writer {
    /// Opens `dir` for writing: takes the lock file (failing with
    /// [`Error::WriterLocked`] if another writer holds it), replays the log,
    /// truncates a torn tail, and removes files of other generations left
    /// by an interrupted compaction.
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<Writer> {
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        let (gen, manifest) = open_generation(&dir)?;
        remove_other_generations(&dir, manifest.generation);
        let mut state = State::new(gen);
        let header = log_header(&state.gen);
        let path = dir.join(manifest.log_name());
        let mut log = match crate::regular::read_regular(&path) {
            Ok(bytes) => {
                let report = state.replay(&bytes, &header)?;
                check_bound(&manifest, &path, &report)?;
                if report.version < DIRECTORY_VERSION {
                    // An older log: rewrite its committed operations as
                    // current records (atomically: temp file, rename), so
                    // that appends never mix two framings in one file.
                    let mut records = Vec::new();
                    let mut n = 0u64;
                    replay(&bytes, &header, |_, op, _| {
                        n += 1;
                        op.encode(n, &mut records);
                        Ok(())
                    })?;
                    let log =
                        LogWriter::create(&dir, &manifest.log_name(), &header, &records, n + 1)?;
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing_log(&manifest, &path)?;
                // The log is created (header only) before the MANIFEST
                // names it: a crash between the two leaves an empty log
                // that no reader needs.
                let log = LogWriter::create(&dir, &manifest.log_name(), &header, &[], 1)?;
                state.log = ReplayReport {
                    valid_len: log.len(),
                    version: DIRECTORY_VERSION,
                    ..ReplayReport::default()
                };
                log
            }
            Err(e) => return Err(Error::io(path, e)),
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
        let state = Arc::new(RwLock::new(state));
        spawn_linker(&state);
        Ok(Writer {
            live: LiveIndex { dir, state },
            compacting: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            inner,
            stop,
            flusher,
            _lock: lock,
        })
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
        let backlog = {
            let mut st = write_lock(&self.live.state);
            let prepared = st.check(&op)?;
            inner.log.append(&op)?;
            let backlog = st.overlay.has_pending();
            st.apply(&op, prepared);
            st.log.records = inner.log.records();
            st.log.valid_len = inner.log.len();
            st.log.ops += 1;
            backlog
        };
        // A backlog is being linked by `spawn_linker`'s thread, which
        // links this row after it.
        if !backlog {
            link_pending(&self.live.state, true, false);
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
        st.log.records = inner.log.records();
        st.log.valid_len = inner.log.len();
        st.log.ops += keep.len() as u64;
        if keep.len() > 1 {
            st.log.batches += 1;
        }
        report.log_records = inner.log.records() - before;
        drop(st);
        if !backlog {
            link_pending(&self.live.state, true, false);
        }
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
        let generation = gen.number.checked_add(1).ok_or_else(|| {
            Error::corrupt(
                FileKind::Manifest,
                "generation",
                "below u64::MAX",
                gen.number,
            )
        })?;
        let mut next = Manifest::new(generation, staged.build_id);
        // 3. Under the writer lock: carry the tail of the log over, switch.
        let mut inner = lock(&self.inner);
        inner.sync()?;
        let old_log = fs::read(inner.log.path()).map_err(|e| Error::io(inner.log.path(), e))?;
        let tail = old_log.get(mark_len as usize..).unwrap_or(&[]);
        let mut carried = Vec::new();
        let mut carried_records = 0u64;
        // The same decoder as every reader. Batches committed during the
        // build are carried as plain records: the new log appears whole
        // (it is created atomically), so they stay all-or-nothing.
        let tail_report = replay_records(
            tail,
            mark_len,
            DIRECTORY_VERSION,
            index.dim(),
            mark_records,
            |_, op, _| {
                carried_records += 1;
                op.encode(carried_records, &mut carried);
                Ok(())
            },
        )?;
        if tail_report.torn_bytes > 0 {
            // This writer appends whole units and cuts back failed ones.
            return Err(Error::corrupt(
                FileKind::Log,
                format!(
                    "record at offset {} of the log being compacted",
                    tail_report.valid_len
                ),
                "nothing after the last committed record (written by this writer)",
                format!("{} bytes", tail_report.torn_bytes),
            ));
        }
        let names = [next.graph_name(), next.vectors_name(), next.log_name()];
        let cleanup = |dir: &Path| {
            for name in &names {
                let _ = fs::remove_file(dir.join(name));
            }
        };
        let prepared = (|| -> Result<LogWriter> {
            staged.publish_files(&dir, &next)?;
            let header = LogHeader {
                generation: next.generation,
                build_id: next.build_id,
                dim: index.dim() as u32,
            };
            LogWriter::create(
                &dir,
                &next.log_name(),
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
        if let Err(e) = write_manifest(&dir, &next) {
            // Whether the switch happened is what the MANIFEST says now.
            if Manifest::read(&dir).ok().flatten() != Some(next) {
                cleanup(&dir);
                return Err(e);
            }
        }
        // Switched: from here a failure leaves the in-memory state behind
        // the directory, so the writer refuses further work until reopened.
        let loaded = (|| -> Result<State> {
            let (new_gen, _) = open_generation(&dir)?;
            let mut state = State::new(new_gen);
            let log_bytes = fs::read(new_log.path()).map_err(|e| Error::io(new_log.path(), e))?;
            let report = state.replay(&log_bytes, &log_header(&state.gen))?;
            check_bound(&next, new_log.path(), &report)?;
            state.overlay.link_all();
            Ok(state)
        })();
        let state = match loaded {
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
            st.gen.obsolete.store(true, Ordering::Release);
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

/// Removes data files, logs and temporary files of generations other than
/// `current` (left by a compaction interrupted before or after its switch).
fn remove_other_generations(dir: &Path, current: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match Manifest::generation_of(name) {
            Some(g) => g != current,
            None => name.starts_with('.') && name.contains(".tmp-"),
        };
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}
