//! The group-commit flusher: a background thread that makes appended
//! operations durable once `max_ops` are pending or the oldest is
//! `max_delay` old, so that the writer never waits for an fsync in group
//! mode. It syncs a duplicate of the log's file handle without holding the
//! writer lock (appends go on meanwhile) and then counts as durable only
//! the operations that were pending when the sync began.

use super::lock;
use super::writer::WriterInner;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Wakes the flusher: notified by the writer when `max_ops` operations
/// are pending and on stop.
pub(super) type Wake = Arc<Condvar>;

pub(super) fn spawn_flusher(
    inner: Arc<Mutex<WriterInner>>,
    wake: Wake,
    stop: Arc<AtomicBool>,
    max_ops: usize,
    max_delay: Duration,
) -> std::thread::JoinHandle<()> {
    let tick = (max_delay / 2).max(Duration::from_millis(1));
    std::thread::spawn(move || {
        let mut g = lock(&inner);
        while !stop.load(Ordering::Acquire) {
            let due = g.pending >= max_ops.max(1)
                || g.oldest_pending.is_some_and(|t| t.elapsed() >= max_delay);
            if !due {
                g = wake
                    .wait_timeout(g, tick)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let (epoch, synced) = (g.sync_epoch, g.pending);
            let handle = g.log.sync_handle();
            drop(g);
            let result = handle.and_then(|h| h.sync());
            g = lock(&inner);
            // A sync by the writer itself, or a new log (compaction),
            // meanwhile: its count is already right.
            if g.sync_epoch != epoch {
                continue;
            }
            match result {
                Ok(()) => {
                    g.pending -= synced.min(g.pending);
                    g.oldest_pending = (g.pending > 0).then(Instant::now);
                }
                Err(e) => {
                    // Reported by the next operation (and retried).
                    g.flush_error = Some(e);
                    g.oldest_pending = Some(Instant::now());
                }
            }
        }
    })
}
