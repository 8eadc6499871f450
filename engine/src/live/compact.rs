//! Compaction: folding the log into a new generation, in steps (snapshot
//! the live set, build, carry the log's tail over, switch, reload).

use super::state::State;
use super::writer::Writer;
use super::{lock, log_header, read_lock, write_lock};
use crate::builder::IndexBuilder;
use crate::dir::gc::remove_generation;
use crate::dir::names;
use crate::dir::publish::{next_generation, switch};
use crate::error::{Error, Result};
use crate::format::manifest::{LogBound, Manifest};
use crate::format::DIRECTORY_VERSION;
use crate::index::OpenOptions;
use crate::log::file::{LogHeader, LogWriter};
use crate::log::replay::{replay_file_after, ReplayReport, Replayed};
use crate::log::Op;
use std::path::Path;
use std::sync::atomic::Ordering;

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

impl Writer {
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
