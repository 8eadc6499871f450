//! A prebuilt index plus its append log: inserts, deletes and upserts that
//! searches see at once, and compaction into a new generation.
//!
//! [`LiveIndex`] is what searches use: the memory-mapped generation, a
//! bitset of its deleted ordinals, and the vectors inserted through the log
//! (searched exactly, by brute force). [`Writer`] is the one process that may
//! change a directory (a lock file enforces it): it appends every operation
//! to the log before applying it, syncs by its [`Durability`], and folds the
//! log into a new generation with [`Writer::compact`].

use crate::builder::IndexBuilder;
use crate::distance::{padded_dim, Kernels};
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::{lock_dir, write_manifest, Manifest, MANIFEST_NAME};
use crate::graph::search::Cand;
use crate::index::{Index, OpenOptions};
use crate::log::file::{replay, LogHeader, LogWriter, ReplayReport, LOG_HEADER};
use crate::log::record::{decode, Decoded};
use crate::log::Op;
use crate::metric::prepare_vector;
use crate::params::{Neighbor, SearchParams};
use std::collections::{BinaryHeap, HashMap};
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
            let m = Manifest {
                generation: self.number,
                build_id: 0,
            };
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
    /// Logged inserts: prepared (padded, normalised) rows and their ids.
    rows: Vec<f32>,
    ids: Vec<u64>,
    slot_of: HashMap<u64, usize>,
    /// How much of the log this state reflects.
    log: ReplayReport,
}

impl State {
    fn new(gen: Arc<Generation>) -> State {
        State {
            gen,
            // Grown by `remove` as ordinals are deleted: a file's claimed
            // count is not trusted to size anything at open.
            deleted: Vec::new(),
            deleted_count: 0,
            rows: Vec::new(),
            ids: Vec::new(),
            slot_of: HashMap::new(),
            log: ReplayReport::default(),
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
        self.gen.index.len() - self.deleted_count + self.ids.len()
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

    /// Applies a checked operation.
    fn apply(&mut self, op: &Op, prepared: Option<Vec<f32>>) {
        let id = op.id();
        if matches!(op, Op::Delete { .. } | Op::Upsert { .. }) {
            self.remove(id);
        }
        if let Some(row) = prepared {
            self.slot_of.insert(id, self.ids.len());
            self.ids.push(id);
            self.rows.extend_from_slice(&row);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slot_of.remove(&id) {
            let p = self.padded();
            let last = self.ids.len() - 1;
            self.ids.swap_remove(slot);
            if slot != last {
                self.rows.copy_within(last * p..(last + 1) * p, slot * p);
                self.slot_of.insert(self.ids[slot], slot);
            }
            self.rows.truncate(last * p);
        } else if let Some(o) = self.live_ordinal(id) {
            let word = o as usize / 64;
            if self.deleted.len() <= word {
                self.deleted.resize(word + 1, 0);
            }
            self.deleted[word] |= 1 << (o % 64);
            self.deleted_count += 1;
        }
    }

    /// Replays log bytes (header included) onto this state.
    fn replay(&mut self, bytes: &[u8], header: &LogHeader) -> Result<ReplayReport> {
        let report = replay(bytes, header, |_, op, offset| {
            let prepared = self.check(&op).map_err(|e| {
                Error::corrupt(
                    FileKind::Log,
                    format!("record at offset {offset}"),
                    "an operation valid at its point in the log",
                    e,
                )
            })?;
            self.apply(&op, prepared);
            Ok(())
        })?;
        self.log = report;
        Ok(report)
    }

    /// The `k` nearest logged inserts by exact distance.
    fn search_rows(&self, q: &[f32], k: usize) -> Vec<Cand> {
        let p = self.padded();
        let (metric, kernels) = (self.gen.index.metric(), Kernels::detect());
        let mut top: BinaryHeap<Cand> = BinaryHeap::with_capacity(k.min(self.ids.len()) + 1);
        for (slot, row) in self.rows.chunks_exact(p).enumerate() {
            let c = Cand {
                d: metric.distance(kernels, q, row),
                id: slot as u32,
            };
            if top.len() < k {
                top.push(c);
            } else if top.peek().is_some_and(|t| c < *t) {
                top.pop();
                top.push(c);
            }
        }
        top.into_sorted_vec()
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
        let mut base = match (exact, self.deleted_count) {
            (false, 0) => index.search(query, k, params)?,
            (false, _) => index.search_accepting(query, k, params, accept)?,
            (true, 0) => index.exact_search(query, k)?,
            (true, _) => index.exact_search_accepting(query, k, accept)?,
        };
        if self.ids.is_empty() {
            return Ok(base);
        }
        let mut q = vec![0f32; self.padded()];
        prepare_vector(index.metric(), index.dim(), query, None, &mut q)?;
        base.extend(self.search_rows(&q, k).into_iter().map(|c| Neighbor {
            id: self.ids[c.id as usize],
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

fn open_generation(dir: &Path) -> Result<(Arc<Generation>, Manifest)> {
    let index = Index::open_with(
        dir,
        &OpenOptions {
            verify: false,
            allow_log: true,
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
fn read_from(path: &Path, from: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::regular::open_regular(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
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
        let dir = dir.as_ref().to_path_buf();
        let state = Self::load(&dir)?;
        Ok(LiveIndex {
            dir,
            state: Arc::new(RwLock::new(state)),
        })
    }

    fn load(dir: &Path) -> Result<State> {
        let mut attempts = 0;
        loop {
            let (gen, manifest) = match open_generation(dir) {
                Err(Error::Io { .. }) if attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                other => other?,
            };
            let mut state = State::new(gen);
            let path = dir.join(manifest.log_name());
            match crate::regular::read_regular(&path) {
                Ok(bytes) => {
                    state.replay(&bytes, &log_header(&state.gen))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
            // A compaction may have switched generations (and removed this
            // log) while we read: then load the new one.
            if attempts < 3
                && Manifest::read(dir)?.map(|m| m.generation) != Some(manifest.generation)
            {
                attempts += 1;
                continue;
            }
            return Ok(state);
        }
    }

    /// Picks up what a writer in another process did since this index was
    /// opened or last refreshed: new log records, or a new generation after
    /// a compaction.
    pub fn refresh(&self) -> Result<()> {
        let current = Manifest::read(&self.dir)?.map(|m| m.generation);
        let (same_gen, header, from) = {
            let st = read_lock(&self.state);
            (
                current == Some(st.gen.number),
                log_header(&st.gen),
                st.log.valid_len,
            )
        };
        if !same_gen {
            let fresh = Self::load(&self.dir)?;
            *write_lock(&self.state) = fresh;
            return Ok(());
        }
        let path = self.dir.join(
            Manifest {
                generation: header.generation,
                build_id: 0,
            }
            .log_name(),
        );
        // Read only what follows the records this state has seen (the whole
        // file if the log was created since: its header is checked first).
        let mut st = write_lock(&self.state);
        let from = st.log.valid_len.max(from);
        let base = if from < LOG_HEADER as u64 { 0 } else { from };
        let bytes = match read_from(&path, base) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let mut at = if base == 0 {
            header.check(&bytes)?;
            st.log.valid_len = LOG_HEADER as u64;
            LOG_HEADER
        } else {
            0
        };
        let dim = header.dim as usize;
        while at < bytes.len() {
            match decode(&bytes[at..], dim) {
                Decoded::Record { seq, op, len } => {
                    if seq != st.log.records + 1 {
                        return Err(Error::corrupt(
                            FileKind::Log,
                            format!("record at offset {} sequence number", base + at as u64),
                            st.log.records + 1,
                            seq,
                        ));
                    }
                    let prepared = st.check(&op).map_err(|e| {
                        Error::corrupt(
                            FileKind::Log,
                            format!("record at offset {}", base + at as u64),
                            "an operation valid at its point in the log",
                            e,
                        )
                    })?;
                    st.apply(&op, prepared);
                    st.log.records += 1;
                    at += len;
                    st.log.valid_len = base + at as u64;
                }
                Decoded::Torn => break,
                Decoded::Corrupt(why) => {
                    return Err(Error::corrupt(
                        FileKind::Log,
                        format!("record at offset {}", base + at as u64),
                        "a valid record",
                        why,
                    ));
                }
            }
        }
        st.log.torn_bytes = (bytes.len() - at) as u64;
        Ok(())
    }

    /// The `k` nearest live vectors: the generation's graph (deleted
    /// ordinals traversed but never returned) merged with an exact scan of
    /// the logged inserts.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        read_lock(&self.state).search(query, k, params, false)
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
        use rayon::prelude::*;
        let dim = self.dim();
        let queries = queries.into();
        queries.check(dim)?;
        queries
            .data()
            .par_chunks_exact(dim)
            .map(|q| self.search(q, k, params))
            .collect()
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
            inserted: st.ids.len(),
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
        let log = match crate::regular::read_regular(&path) {
            Ok(bytes) => {
                let report = state.replay(&bytes, &header)?;
                LogWriter::resume(path, &report)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Rewrite the MANIFEST at this build's directory version
                // first, so readers that cannot replay logs refuse the
                // directory before it has one.
                write_manifest(&dir, &manifest)?;
                LogWriter::create(&dir, &manifest.log_name(), &header, &[], 1)?
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        state.log.torn_bytes = 0;
        let inner = Arc::new(Mutex::new(WriterInner {
            log,
            durability,
            pending: 0,
            oldest_pending: None,
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
            st.apply(&op, prepared);
            st.log.records += 1;
            st.log.valid_len = inner.log.len();
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
        let logged = st.ids.iter().max().map_or(0, |m| m.saturating_add(1));
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
            let (dim, p) = (st.gen.index.dim(), st.padded());
            for (slot, id) in st.ids.iter().enumerate() {
                ids.push(*id);
                rows.extend_from_slice(&st.rows[slot * p..slot * p + dim]);
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
        let next = Manifest {
            generation,
            build_id: staged.build_id,
        };
        // 3. Under the writer lock: carry the tail of the log over, switch.
        let mut inner = lock(&self.inner);
        inner.sync()?;
        let old_log = fs::read(inner.log.path()).map_err(|e| Error::io(inner.log.path(), e))?;
        let tail = old_log.get(mark_len as usize..).unwrap_or(&[]);
        let mut carried = Vec::new();
        let mut carried_records = 0u64;
        let mut at = 0;
        while at < tail.len() {
            match decode(&tail[at..], index.dim()) {
                Decoded::Record { op, len, .. } => {
                    carried_records += 1;
                    op.encode(carried_records, &mut carried);
                    at += len;
                }
                _ => break,
            }
        }
        let cleanup = |dir: &Path| {
            for name in [next.graph_name(), next.vectors_name(), next.log_name()] {
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
            state.replay(&log_bytes, &log_header(&state.gen))?;
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
        let _ = lock(&self.inner).sync();
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
