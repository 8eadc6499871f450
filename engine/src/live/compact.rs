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
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

/// Step 1's result: the generation compacted, its live set, and where the
/// log stood (what the live set holds of it).
struct Snapshot {
    gen: Arc<OpenGeneration>,
    ids: Vec<u64>,
    /// The live vectors at the padded stride, in `ids` order (moved into
    /// the builder).
    rows: Vec<f32>,
    /// The log up to here is folded into the new graph; what follows is
    /// carried into the new log.
    mark: ReplayReport,
}

/// Step 3's carry-over: the records appended during the build, renumbered
/// from 1 for the new log.
struct Carried {
    bytes: Vec<u8>,
    records: u64,
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
        self.check_poisoned()?;
        let dir = self.live.dir.clone();
        // 1. The live set and the log's mark, briefly under the locks.
        let mut snap = self.snapshot()?;
        during_build();
        // 2. The next generation's files, staged, without holding any lock.
        let vectors = snap.ids.len();
        let staged = build_next(&dir, &mut snap, options)?;
        // 3. Under the writer lock: carry the log's tail over, switch.
        let mut inner = lock(&self.inner);
        inner.sync()?;
        let carried = carry_tail(inner.log.path(), &snap)?;
        let (next, new_log) = switch_to_next(&dir, &snap.gen, staged, &carried)?;
        // 4. Switched: searches move to the new generation. From here a
        // failure leaves the in-memory state behind the directory, so the
        // writer refuses further work until reopened.
        // The carried records are replayed, not linked, under the writer
        // lock: the linker links them after the switch (searches scan them
        // meanwhile), so that operations wait for the switch only.
        let mut state = match State::load(&dir, &next, &OpenOptions::default(), false) {
            Ok(s) => s,
            Err(e) => {
                self.poisoned.store(true, Ordering::Release);
                return Err(e);
            }
        };
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
            carried_records: carried.records,
        })
    }

    /// Step 1: every live vector (the generation's not deleted, then the
    /// logged inserts) and where the log stands, taken under the writer
    /// lock so that the two agree.
    fn snapshot(&self) -> Result<Snapshot> {
        let inner = lock(&self.inner);
        // The snapshot after the last operation: operations wait for the
        // writer lock held here.
        let st = self.live.view();
        let logged = st.overlay.live_nodes().count();
        let (mut ids, mut rows) = st.gen.index.rows_accepting(|o| !st.is_deleted(o), logged);
        let (dim, p) = (st.gen.index.dim(), st.padded());
        for (node, id) in st.overlay.live_nodes() {
            ids.push(id);
            rows.extend_from_slice(&st.overlay.row(node)[..dim]);
            rows.resize(rows.len() + p - dim, 0.0);
        }
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        Ok(Snapshot {
            gen: st.gen.clone(),
            ids,
            rows,
            mark: ReplayReport {
                records: st.log.records,
                valid_len: inner.log.len(),
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
    builder.build_staged(dir, &|_| {})
}

/// Step 3a: the records appended to the log at `path` since the mark, read
/// by the same replayer as every reader: a damaged record is the error an
/// open gives; a torn tail (never committed) is not carried, as a writer's
/// open cuts it. Batches committed during the build are carried as plain
/// records: the new log appears whole (it is created atomically), so they
/// stay all-or-nothing.
fn carry_tail(path: &Path, snap: &Snapshot) -> Result<Carried> {
    let mut carried = Carried {
        bytes: Vec::new(),
        records: 0,
    };
    let carry = |_, op: Op, _| {
        carried.records += 1;
        op.encode(carried.records, &mut carried.bytes);
        Ok(())
    };
    match replay_file_after(path, &log_header(&snap.gen), &snap.mark, carry)? {
        Replayed::Applied(_) => Ok(carried),
        Replayed::Missing | Replayed::Rewritten => Err(Error::io(
            path,
            std::io::Error::other("the writer's log was removed or replaced"),
        )),
    }
}

/// Step 3b: puts the staged files and a log holding `carried` in place
/// under the next generation's names, then switches the MANIFEST to it.
/// Before the switch a failure removes the new files and leaves the old
/// generation current.
fn switch_to_next(
    dir: &Path,
    gen: &OpenGeneration,
    staged: Staged,
    carried: &Carried,
) -> Result<(Manifest, LogWriter)> {
    let mut next = Manifest::new(next_generation(gen.number())?, staged.build_id);
    let put = || -> Result<LogWriter> {
        staged.publish_files(dir, &next)?;
        let header = LogHeader {
            generation: next.generation,
            build_id: next.build_id,
            dim: gen.index.dim() as u32,
        };
        let name = names::log(next.generation);
        LogWriter::create(dir, &name, &header, &carried.bytes, carried.records + 1)
    };
    let switched = put().and_then(|log| {
        next.log = Some(LogBound {
            len: log.len(),
            records: log.records(),
        });
        switch(dir, &next).map(|()| log)
    });
    match switched {
        Ok(log) => Ok((next, log)),
        Err(e) => {
            remove_generation(dir, next.generation);
            Err(e)
        }
    }
}
