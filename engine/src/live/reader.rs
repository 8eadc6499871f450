//! The index users search: a generation plus its log, reloaded on
//! [`Index::refresh`].

use super::linker::link_pending;
use super::state::{State, View};
use super::{check_bound, lock, missing_log};
use crate::dir::manifest::read as read_manifest;
use crate::dir::open::{open_current, paths};
use crate::error::Result;
use crate::generation::{Generation, OpenOptions};
use crate::log::replay::Replayed;
use crate::params::{Neighbor, RangeHits, SearchParams};
use crate::tuning::Tuning;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Statistics about an index and its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
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
/// (clones share state); `Send + Sync`. A `Index` from
/// [`Writer::live`](crate::Writer::live) sees every operation as soon as it returns; one opened
/// with [`Index::open`] sees the log as of opening and of each
/// [`Index::refresh`].
///
/// Searches never lock: each takes the current snapshot (an `Arc` swapped
/// atomically after every change) and runs on it while writes, linking,
/// refreshes and compactions go on. The few calls that need the writer's
/// own map of logged ids ([`Index::contains`]) take a mutex that
/// changes hold for microseconds, never for a search or a link.
#[derive(Clone)]
pub struct Index {
    pub(super) dir: PathBuf,
    pub(super) shared: Arc<LiveShared>,
}

/// What the clones of a [`Index`] share.
pub(super) struct LiveShared {
    /// The copy that operations change.
    pub(super) state: Mutex<State>,
    /// The snapshot searches use, replaced after every change.
    pub(super) current: ArcSwap<View>,
}

impl Index {
    /// Opens the current generation of `dir` and replays its log (if any)
    /// read-only. A torn tail is ignored (and reported in
    /// [`Index::stats`]); a corrupt record in the middle is an error
    /// naming its offset.
    pub fn open(dir: impl AsRef<Path>) -> Result<Index> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// [`Index::open`] with read options: [`OpenOptions::io`],
    /// [`OpenOptions::lock_graph`] apply to this and every later generation
    /// [`Index::refresh`] opens; `verify` and `allow_log` are ignored
    /// (verify with [`Generation::verify`] through [`Index::with_generation`]).
    ///
    /// ```
    /// use strata::{dataset, BuildParams, IndexBuilder, IoMode, Index, OpenOptions, SearchParams};
    /// let data = dataset::clustered(500, 8, 4, 0.05, 3);
    /// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(3), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let live = Index::open_with(dir.path(), &OpenOptions { io: IoMode::Pread, ..Default::default() })?;
    /// assert_eq!(live.search(data.row(7), 1, &SearchParams::default())?[0].id, 7);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Index> {
        let dir = dir.as_ref().to_path_buf();
        let state = Self::load(&dir, options)?;
        Ok(Index::new(dir, state))
    }

    pub(super) fn new(dir: PathBuf, mut state: State) -> Index {
        let current = ArcSwap::new(state.publish());
        Index {
            dir,
            shared: Arc::new(LiveShared {
                state: Mutex::new(state),
                current,
            }),
        }
    }

    /// The snapshot searches use now.
    pub(super) fn view(&self) -> Arc<View> {
        self.shared.current.load_full()
    }

    /// Makes what `state` holds now the snapshot searches use.
    pub(super) fn publish(&self, state: &mut State) {
        self.shared.current.store(state.publish());
    }

    /// The state operations change (held briefly: never across a search or
    /// a link).
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// The state of the current generation and its log, following a
    /// generation switch that happens meanwhile.
    pub(super) fn load(dir: &Path, options: &OpenOptions) -> Result<State> {
        open_current(dir, |m| State::load(dir, m, options, true)).map(|(state, _)| state)
    }

    /// Picks up what a writer in another process did since this index was
    /// opened or last refreshed: new log records, or a new generation after
    /// a compaction, and returns once every logged row is linked into the
    /// overlay's graph (also those of a writer opened on a log, which links
    /// them in the background, searches scanning them meanwhile). A batch whose commit record is not written yet is not
    /// applied (it is, whole, by a later refresh).
    pub fn refresh(&self) -> Result<()> {
        let current = read_manifest(&self.dir)?;
        let mut st = self.state();
        let same_gen = current.map(|m| m.generation) == Some(st.gen().number()) && !st.needs_reload;
        if !same_gen {
            let options = st.gen().index.open_options().clone();
            drop(st);
            let mut fresh = Self::load(&self.dir, &options)?;
            let mut st = self.state();
            self.shared.current.store(fresh.publish());
            *st = fresh;
            return Ok(());
        }
        let manifest = current.expect("same generation");
        let path = paths(&self.dir, &manifest).log;
        // Only what follows the records this state has seen is read.
        match st.replay_more(&path) {
            Ok(Replayed::Applied(report)) => {
                self.publish(&mut st);
                drop(st);
                link_pending(self, true, true);
                check_bound(&manifest, &path, &report)
            }
            Ok(Replayed::Missing) => missing_log(&manifest, &path),
            Ok(Replayed::Rewritten) => {
                // A writer rewrote a version-3 log as version 4 (atomically,
                // same generation): read it from the start.
                let options = st.gen().index.open_options().clone();
                drop(st);
                let mut fresh = Self::load(&self.dir, &options)?;
                let mut st = self.state();
                self.shared.current.store(fresh.publish());
                *st = fresh;
                Ok(())
            }
            Err(e) => {
                // Operations before the failure may be applied (not
                // published): start over next time.
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
        self.shared.current.load().search(query, k, params, false)
    }

    /// [`Index::search`] over many queries, in parallel
    /// ([`Error::DimensionMismatch`](crate::Error::DimensionMismatch) naming both dimensions if theirs is
    /// not the index's).
    pub fn search_batch<'q>(
        &self,
        queries: impl Into<crate::Queries<'q>>,
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let queries = queries.into();
        queries.check(self.dim())?;
        self.shared
            .current
            .load()
            .search_batch(queries.data(), k, params)
    }

    /// Every live vector within `radius` of `query`, nearest first, at
    /// most [`SearchParams::max_results`] ([`RangeHits::truncated`] if
    /// there were more): the generation's range search
    /// ([`Generation::search_range`], which describes the algorithm and
    /// the errors; deleted and superseded ordinals traversed, never
    /// returned) merged with the logged inserts within the radius (a scan
    /// of their in-memory rows, exact), by exact distance.
    /// [`SearchParams::filter`] applies to both.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, Durability, IndexBuilder, SearchParams, Writer};
    /// let data = dataset::clustered(1_000, 8, 4, 0.05, 3);
    /// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(3), ..Default::default() })?;
    /// b.add_rows(&data.data[..900 * 8])?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let w = Writer::open(dir.path(), Durability::None)?;
    /// w.insert(950, data.row(950))?;
    /// w.delete(7)?;
    /// let live = w.live();
    /// let hits = live.search_range(data.row(950), 0.01, &SearchParams::default())?;
    /// assert_eq!(hits.neighbors[0].id, 950);
    /// let hits = live.search_range(data.row(7), 0.01, &SearchParams::default())?;
    /// assert!(hits.neighbors.iter().all(|n| n.id != 7));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn search_range(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
    ) -> Result<RangeHits> {
        self.shared
            .current
            .load()
            .search_range(query, radius, params)
    }

    /// Every live vector within `radius`, by brute force (at most
    /// `max_results`, the nearest; see [`Generation::exact_search_range`]).
    pub fn exact_search_range(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
    ) -> Result<RangeHits> {
        self.shared
            .current
            .load()
            .exact_search_range(query, radius, max_results)
    }

    /// The exact `k` nearest live vectors, by brute force.
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>> {
        self.shared
            .current
            .load()
            .search(query, k, &SearchParams::default(), true)
    }

    /// Whether `id` is live (after every operation applied so far).
    pub fn contains(&self, id: u64) -> bool {
        self.state().contains(id)
    }

    /// The labels of the live vector `id`, ascending (empty if it has
    /// none; [`Error::UnknownId`](crate::Error::UnknownId) if it is not live).
    pub fn labels(&self, id: u64) -> Result<Vec<u32>> {
        let st = self.state();
        if let Some(&node) = st.slot_of.get(&id) {
            return Ok(st.view.overlay.labels(node).to_vec());
        }
        match st.view.live_ordinal(id) {
            Some(_) => st.view.gen.index.labels(id),
            None => Err(crate::Error::UnknownId(id)),
        }
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.shared.current.load().len()
    }

    /// Whether no vector is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.shared.current.load().gen.index.dim()
    }

    /// Counts of the generation and its log.
    pub fn stats(&self) -> IndexStats {
        let st = self.view();
        IndexStats {
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

    /// The operating points stored with the current generation
    /// ([`Generation::tuning`]; after a compaction, carried marked
    /// [`Tuning::stale`](crate::Tuning::stale)).
    pub fn tuning(&self) -> Result<Option<Tuning>> {
        self.with_generation(|g| g.tuning())
    }

    /// Stores operating points with the current generation
    /// ([`Generation::store_tuning`]). Should a compaction make a new
    /// generation current meanwhile, they stay with the one they were
    /// measured on (compare [`Index::stats`]'s generation before and
    /// after, and tune again).
    pub fn store_tuning(&self, tuning: &Tuning) -> Result<()> {
        self.with_generation(|g| g.store_tuning(tuning))
    }

    /// Runs `f` with the current generation's [`Generation`] (for tools: info,
    /// degree statistics). The generation stays valid while `f` runs.
    pub fn with_generation<R>(&self, f: impl FnOnce(&Generation) -> R) -> R {
        let gen = self.view().gen.clone();
        f(&gen.index)
    }
}

#[cfg(test)]
mod tests {
    use crate::{dataset, BuildParams, Durability, IndexBuilder, SearchParams, Writer};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Searches take no lock that a change holds: with the writer's lock
    /// and the state's mutex both held (a change in progress), searches of
    /// every kind still answer, from the snapshot before the change; after
    /// it is published, they see it. With a read lock (as before
    /// snapshots) the searching thread would wait until the timeout.
    #[test]
    fn searches_answer_while_a_change_holds_every_writer_lock() {
        let data = dataset::clustered(1_000, 8, 4, 0.05, 5);
        let mut b = IndexBuilder::new(
            8,
            BuildParams {
                seed: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        b.add_rows(&data.data[..500 * 8]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        b.build().unwrap().write(dir.path()).unwrap();
        let w = Writer::open(dir.path(), Durability::None).unwrap();
        for i in 500..800 {
            w.insert(i as u64, data.row(i)).unwrap();
        }
        let live = w.live();
        let inner = super::lock(&w.shared.inner);
        let mut st = live.state();
        // A change in progress: applied to the state, not published.
        st.remove(3);
        let (tx, rx) = mpsc::channel();
        let (reader, queries) = (live.clone(), data.clone());
        std::thread::spawn(move || {
            let p = SearchParams::with_ef(32);
            let one = reader.search(queries.row(3), 1, &p).unwrap();
            let logged = reader.search(queries.row(700), 1, &p).unwrap();
            let q16 = crate::Queries::new(&queries.data[..16 * 8], 8).unwrap();
            let batch = reader.search_batch(q16, 1, &p).unwrap();
            let exact = reader.exact_search(queries.row(3), 1).unwrap();
            let _ = tx.send((
                one[0].id,
                logged[0].id,
                batch.len(),
                exact[0].id,
                reader.len(),
            ));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("searches waited for the writer's locks");
        assert_eq!(got, (3, 700, 16, 3, 800));
        live.publish(&mut st);
        drop(st);
        drop(inner);
        let p = SearchParams::with_ef(32);
        assert_ne!(live.search(data.row(3), 1, &p).unwrap()[0].id, 3);
        assert_eq!(live.len(), 799);
    }
}
