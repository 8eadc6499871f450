//! The group-commit flusher: a background thread that syncs operations
//! pending longer than the writer's `max_delay`.

use super::lock;
use super::writer::WriterInner;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) fn spawn_flusher(
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
