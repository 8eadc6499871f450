//! Compaction: folding the log into a new generation, in steps (snapshot
//! the live set, build, carry the log's tail over, switch, reload).

use super::state::State;
use super::writer::{Shared, Writer};
use super::{lock, log_header, OpenGeneration};
use crate::builder::{IndexBuilder, Staged};
use crate::dir::gc::remove_generation;
use crate::dir::names;
use crate::dir::publish::{next_generation, switch};
use crate::error::{Error, Result};
use crate::format::manifest::{LogBound, Manifest};
use crate::format::DIRECTORY_VERSION;
use crate::generation::OpenOptions;
use crate::log::file::{LogHeader, LogWriter};
use crate::log::replay::{replay_file_after, ReplayReport, Replayed};
use crate::log::Op;
use std::path::Path;
use std::sync::Arc;

/// Options of [`Writer::compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactOptions {
    /// Train a new quantizer on the live vectors instead of reusing the
    /// current generation's.
    pub retrain: bool,
    /// Build threads (0 = all cores).
    pub threads: usize,
    /// Build the new generation with [`BuildParams::refine`](crate::BuildParams::refine)
    /// (the generation's files do not record whether it was refined, so
    /// a compaction applies it only when asked).
    pub refine: bool,
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

/// Step 1's result: the generation compacted, its live set, and where the
/// log stood (what the live set holds of it).
struct Snapshot {
    gen: Arc<OpenGeneration>,
    ids: Vec<u64>,
    /// The live vectors at the padded stride, in `ids` order (moved into
    /// the builder).
    rows: Vec<f32>,
    /// The labels of each of `ids` (empty if no vector has any).
    labels: Vec<Box<[u32]>>,
    /// The log up to here is folded into the new graph; what follows is
    /// carried into the new log.
    mark: ReplayReport,
}

impl Writer {
    /// Folds the log into a new generation: a graph built from every live
    /// vector (inserted ones become nodes with proper neighbour selection;
    /// deleted ones disappear, and the graph is rebuilt around them rather
    /// than having links dropped), written beside the current one. Searches
    /// keep using the current generation, and operations keep being
    /// accepted, until the switch; operations that arrive meanwhile are
    /// carried into the new generation's log. The switch is the manifest's
    /// atomic replacement; the old files are removed once no search in this
    /// process uses them. Waits for a background compaction that is running.
    pub fn compact(&self, options: CompactOptions) -> Result<CompactReport> {
        self.shared.compact_with(options, || {})
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
        self.shared.compact_with(options, during_build)
    }
}

impl Shared {
    /// See [`Writer::compact_with`].
    pub(super) fn compact_with(
        &self,
        options: CompactOptions,
        during_build: impl FnOnce(),
    ) -> Result<CompactReport> {
        let _one_at_a_time = lock(&self.compacting);
        let dir = self.live.dir.clone();
        // 1. The live set and the log's mark, from the searches' snapshot.
        let mut snap = self.snapshot()?;
        during_build();
        // 2. The next generation's files, staged, without holding any lock.
        let vectors = snap.ids.len();
        let staged = build_next(&dir, &mut snap, options)?;
        // 3. The next generation's files in place and its log holding what
        // was appended meanwhile, replayed into its state, still without
        // the writer lock (searches and operations go on: nothing names
        // these files until the MANIFEST switch; a crash leaves them to the
        // next writer's cleanup).
        let mut next = Manifest::new(next_generation(snap.gen.number())?, staged.build_id);
        let (mut state, mut new_log, carried_before) = or_remove(
            &dir,
            next.generation,
            prepare_next(&dir, &snap, staged, &mut next),
        )?;
        // 4. Under the writer lock: carry what arrived since step 3, switch.
        let mut inner = lock(&self.inner);
        let switched = (|| -> Result<u64> {
            inner.sync()?;
            let carried = carry_rest(
                inner.log.path(),
                &snap,
                &carried_before,
                &mut state,
                &mut new_log,
            )?;
            new_log.sync()?;
            next.log = Some(LogBound {
                len: new_log.len(),
                records: new_log.records(),
            });
            switch(&dir, &next)?;
            Ok(carried)
        })();
        let carried_late = or_remove(&dir, next.generation, switched)?;
        // 5. Switched: searches move to the new generation; its logged rows
        // are linked by the linker after the lock is released.
        {
            let mut st = self.live.state();
            st.gen().files.retire();
            self.live.publish(&mut state);
            *st = state;
        }
        self.linker.rebase(&self.live);
        inner.log = new_log;
        inner.manifest = next;
        inner.pending = 0;
        inner.oldest_pending = None;
        inner.sync_epoch += 1;
        Ok(CompactReport {
            generation: next.generation,
            vectors,
            folded_records: snap.mark.records,
            carried_records: carried_before.records + carried_late,
        })
    }

    /// Step 1: every live vector (the generation's not deleted, then the
    /// logged inserts) and where the log stands, from the snapshot
    /// searches use: it was published with the log position it reflects,
    /// so the two agree without any lock.
    fn snapshot(&self) -> Result<Snapshot> {
        let st = self.live.view();
        let logged = st.overlay.live_nodes().count();
        let (mut ids, mut rows) = st.gen.index.rows_accepting(|o| !st.is_deleted(o), logged);
        let (dim, p) = (st.gen.index.dim(), st.padded());
        // Labels, in the same order, if any vector has one.
        let mut labels: Vec<Box<[u32]>> = Vec::new();
        let logged_labels = st
            .overlay
            .live_nodes()
            .any(|(n, _)| !st.overlay.labels(n).is_empty());
        if st.gen.index.has_labels() || logged_labels {
            labels.reserve(ids.len() + logged);
            if st.gen.index.has_labels() {
                let (starts, values) = st.gen.index.labels_per_ordinal()?;
                let n = st.gen.index.len() as u32;
                labels.extend(
                    (0..n)
                        .filter(|&o| !st.is_deleted(o))
                        .map(|o| values[starts[o as usize]..starts[o as usize + 1]].into()),
                );
            } else {
                labels.resize(ids.len(), Box::default());
            }
        }
        for (node, id) in st.overlay.live_nodes() {
            ids.push(id);
            rows.extend_from_slice(&st.overlay.row(node)[..dim]);
            rows.resize(rows.len() + p - dim, 0.0);
            if !labels.is_empty() {
                labels.push(st.overlay.labels(node).into());
            }
        }
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        Ok(Snapshot {
            gen: st.gen.clone(),
            ids,
            rows,
            labels,
            mark: ReplayReport {
                records: st.log.records,
                valid_len: st.log.valid_len,
                version: DIRECTORY_VERSION,
                ..ReplayReport::default()
            },
        })
    }
}

/// Step 2: builds the live set with the generation's parameters (and its
/// quantizer unless `retrain`), streamed to temporary files in `dir`:
/// memory holds the live rows and the new graph, never the new files.
fn build_next(dir: &Path, snap: &mut Snapshot, options: CompactOptions) -> Result<Staged> {
    let index = &snap.gen.index;
    let mut params = index.build_params();
    params.threads = options.threads;
    params.refine = options.refine;
    let mut builder = IndexBuilder::new(index.dim(), params)?;
    if !options.retrain {
        builder.reuse_quantizer(index.trained_quantizer());
    }
    // The snapshot's rows become the builder's, without a copy: the
    // compaction holds one copy of the live vectors, as a build does.
    builder.take_padded_rows(
        std::mem::take(&mut snap.rows),
        std::mem::take(&mut snap.ids),
    )?;
    for (row, labels) in std::mem::take(&mut snap.labels).into_iter().enumerate() {
        builder.set_labels(row, &labels)?;
    }
    builder.build_staged(dir, &|_| {})
}

/// What step 3 carried: up to where in the current log, and how many
/// records.
struct Carried {
    end: ReplayReport,
    records: u64,
}

/// The records of the log at `path` after `after`, read by the same
/// replayer as every reader (a damaged record is the error an open gives;
/// a torn tail, never committed, is not carried, as a writer's open cuts
/// it), each passed to `f` with its offset there; returns where they end.
fn carry(
    path: &Path,
    gen: &OpenGeneration,
    after: &ReplayReport,
    mut f: impl FnMut(Op, u64) -> Result<()>,
) -> Result<ReplayReport> {
    match replay_file_after(path, &log_header(gen), after, |_, op, offset| f(op, offset))? {
        Replayed::Applied(end) => Ok(end),
        Replayed::Missing | Replayed::Rewritten => Err(Error::io(
            path,
            std::io::Error::other("the writer's log was removed or replaced"),
        )),
    }
}

/// Step 3: puts the staged files in place under `next`'s names, creates
/// its log holding the records appended to the current log since the
/// snapshot's mark (renumbered from 1), and opens the new generation's
/// state with them replayed (not linked). Batches committed meanwhile are
/// carried as plain records: the new log becomes visible whole, at the
/// switch, so they stay all-or-nothing.
fn prepare_next(
    dir: &Path,
    snap: &Snapshot,
    staged: Staged,
    next: &mut Manifest,
) -> Result<(State, LogWriter, Carried)> {
    let path = dir.join(names::log(snap.gen.number()));
    let (mut bytes, mut records) = (Vec::new(), 0u64);
    let end = carry(&path, &snap.gen, &snap.mark, |op, _| {
        records += 1;
        op.encode(records, &mut bytes);
        Ok(())
    })?;
    staged.publish_files(dir, next)?;
    snap.gen
        .index
        .carry_tuning(next.generation, next.build_id)?;
    let header = LogHeader {
        generation: next.generation,
        build_id: next.build_id,
        dim: snap.gen.index.dim() as u32,
    };
    let log = LogWriter::create(
        dir,
        &names::log(next.generation),
        &header,
        &bytes,
        records + 1,
    )?;
    next.log = Some(LogBound {
        len: log.len(),
        records: log.records(),
    });
    let state = State::load(dir, next, &OpenOptions::default(), false)?;
    Ok((state, log, Carried { end, records }))
}

/// Step 4a (under the writer lock): the records appended since step 3,
/// appended to the new log and applied to its state; returns how many.
fn carry_rest(
    path: &Path,
    snap: &Snapshot,
    before: &Carried,
    state: &mut State,
    log: &mut LogWriter,
) -> Result<u64> {
    let mut n = 0u64;
    carry(path, &snap.gen, &before.end, |op, offset| {
        log.append(&op)?;
        state.replay_op(&op, offset)?;
        n += 1;
        Ok(())
    })?;
    state.view.log.records = log.records();
    state.view.log.valid_len = log.len();
    state.view.log.ops += n;
    Ok(n)
}

/// `result`, after removing the next generation's files if it is an
/// error: before the switch nothing names them.
fn or_remove<T>(dir: &Path, generation: u64, result: Result<T>) -> Result<T> {
    result.inspect_err(|_| remove_generation(dir, generation))
}
