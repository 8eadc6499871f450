//! Compaction by policy: a writer folds its log into a new generation on a
//! background thread once the log has grown past a threshold.
//!
//! The threshold is relative to the generation: logged rows are searched
//! through the overlay's graph, which costs more per row than the
//! generation's (float32 links in RAM, a second beam, a merge), and a
//! compaction rebuilds every live row. With `log_fraction = f` each
//! compaction folds `f · n` operations at the cost of a build of
//! `(1 + f) · n` rows, so every logged operation costs about `(1 + f) / f`
//! row insertions later: 5 at the default 0.25, against 3 at 0.5 and 11 at
//! 0.1, while the overlay stays at most a fifth of the index.
//! `min_ops` keeps small indexes from compacting every few operations.

use super::compact::{CompactOptions, CompactReport};
use super::lock;
use super::writer::Shared;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// When a [`Writer`](crate::Writer) compacts on its own (see
/// [`WriterOptions`](crate::WriterOptions)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoCompact {
    /// Compact once the log holds this many operations per vector of the
    /// current generation...
    pub log_fraction: f64,
    /// ...and at least this many operations.
    pub min_ops: u64,
    /// How the background compaction builds (threads, retraining).
    pub options: CompactOptions,
}

impl Default for AutoCompact {
    fn default() -> Self {
        AutoCompact {
            log_fraction: 0.25,
            min_ops: 10_000,
            options: CompactOptions::default(),
        }
    }
}

/// What a writer's automatic compactions did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoCompactStats {
    /// Whether one is running now.
    pub running: bool,
    /// Compactions that switched to a new generation.
    pub completed: u64,
    /// Compactions that failed (the index stayed as it was: every step
    /// that can fail comes before the switch).
    pub failed: u64,
    /// The last successful one.
    pub last: Option<CompactReport>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// A writer's policy and its background compaction.
pub(super) struct AutoCompactor {
    policy: Option<AutoCompact>,
    running: Arc<AtomicBool>,
    /// After a failure, no new attempt before the log holds this many
    /// operations (so a full disk is not retried on every insert).
    retry_at: Arc<AtomicU64>,
    stats: Arc<Mutex<AutoCompactStats>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AutoCompactor {
    pub(super) fn new(policy: Option<AutoCompact>) -> Self {
        AutoCompactor {
            policy,
            running: Arc::new(AtomicBool::new(false)),
            retry_at: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(Mutex::new(AutoCompactStats::default())),
            thread: Mutex::new(None),
        }
    }

    /// Called after each committed operation or batch, with no writer lock
    /// held: starts a background compaction if the log is past the
    /// threshold and none is running.
    pub(super) fn after_commit(&self, shared: &Arc<Shared>) {
        let Some(policy) = self.policy else {
            return;
        };
        if !due(&policy, shared, self.retry_at.load(Ordering::Acquire)) {
            return;
        }
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut thread = lock(&self.thread);
        if let Some(done) = thread.take() {
            let _ = done.join();
        }
        let (shared, running, retry_at, stats) = (
            shared.clone(),
            self.running.clone(),
            self.retry_at.clone(),
            self.stats.clone(),
        );
        lock(&stats).running = true;
        *thread = Some(std::thread::spawn(move || {
            // Operations keep arriving during a compaction (they are
            // carried into the new log): if they alone pass the threshold,
            // compact again rather than wait for the next operation.
            loop {
                let ops = shared.live.view().log.ops;
                let result = shared.compact_with(policy.options, || {});
                let mut s = lock(&stats);
                let again = match result {
                    Ok(report) => {
                        retry_at.store(0, Ordering::Release);
                        s.completed += 1;
                        s.last = Some(report);
                        true
                    }
                    Err(e) => {
                        s.failed += 1;
                        s.last_error = Some(e.to_string());
                        retry_at.store(ops + policy.min_ops.max(1), Ordering::Release);
                        false
                    }
                };
                drop(s);
                if !again || !due(&policy, &shared, 0) {
                    break;
                }
            }
            lock(&stats).running = false;
            running.store(false, Ordering::Release);
        }));
    }

    /// Waits for the running compaction, if any.
    pub(super) fn wait(&self) {
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    pub(super) fn stats(&self) -> AutoCompactStats {
        lock(&self.stats).clone()
    }
}

/// Whether the log is past `policy`'s threshold (and `retry_at`).
fn due(policy: &AutoCompact, shared: &Shared, retry_at: u64) -> bool {
    let (ops, base) = {
        let st = shared.live.view();
        (st.log.ops, st.gen.index.len() as u64)
    };
    ops >= policy.min_ops.max(1).max(retry_at) && ops as f64 >= policy.log_fraction * base as f64
}
