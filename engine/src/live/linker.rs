//! Linking logged rows into the overlay's graph, off the writer's path.
//!
//! Rows become linkable a sealed chunk at a time (`graph/overlay.rs`). A
//! writer hands sealed chunks to its [`Linker`], a thread that links them
//! in parallel on the link pool while the writer goes on appending and
//! applying the next operations (before, the writer linked each chunk
//! itself and the link threads stood idle while it applied the next 64
//! operations). Searches find rows not linked yet by an exact scan, so the
//! linker may lag; it may lag by at most [`MAX_BACKLOG`] rows, past which
//! the writer links too before it returns (back-pressure: the scan stays
//! short, and a writer's throughput counts its graph insertion).

use super::reader::Index;
use crate::graph::overlay::{Linking, CHUNK, LINK_CHUNK};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Sealed rows the linker may leave unlinked when an operation returns:
/// four chunks, a scan of about 8 µs per search at dimension 384.
pub(super) const MAX_BACKLOG: usize = 4 * CHUNK;

/// Links the overlay's sealed pending rows in parallel, a part at a time,
/// on the view searches use (they go on meanwhile; nothing a writer needs
/// is held). If another thread is linking, returns at once (it links what
/// is pending, and what is sealed before it lets go), or with `wait` once
/// nothing is pending.
pub(super) fn link_pending(live: &Index, parallel: bool, wait: bool) {
    link_until(live, parallel, wait, || false)
}

/// [`link_pending`], also returning between parts once `stop` says so.
fn link_until(live: &Index, parallel: bool, wait: bool, stop: impl Fn() -> bool) {
    while !stop() {
        let view = live.view();
        match view
            .gen
            .index
            .link_overlay(&view.overlay, LINK_CHUNK, parallel)
        {
            Linking::More => {}
            Linking::Done => {
                // Rows sealed while this thread linked, by a writer whose
                // own call found it busy, are this thread's to link.
                if !live.view().overlay.has_pending() {
                    return;
                }
            }
            Linking::Busy if wait => {
                view.overlay.wait_linking();
                if !live.view().overlay.has_pending() {
                    return;
                }
            }
            Linking::Busy => return,
        }
    }
}

#[derive(Default)]
struct Signal {
    /// (work to do, stop)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

/// A writer's linking thread.
pub(super) struct Linker {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
    /// Sealed rows when the writer opened (its replay's) or when a
    /// compaction switched (the records it carried): the writer does not
    /// wait for those, only for its own past [`MAX_BACKLOG`], so that a
    /// short writer into a logged index costs what it writes and a switch
    /// costs what it switches.
    replayed: AtomicUsize,
}

impl Linker {
    /// Starts the thread for `live`, and has it link what a replay left
    /// pending. Opened from a rayon pool's thread, the thread links
    /// sequentially (deterministic on a one-thread pool, as the writer's
    /// own linking there).
    pub(super) fn spawn(live: &Index) -> Linker {
        let signal = Arc::new(Signal::default());
        let parallel = rayon::current_thread_index().is_none();
        let replayed = live.view().overlay.sealed();
        let (s, live) = (signal.clone(), live.clone());
        let thread = std::thread::Builder::new()
            .name("strata-linker".into())
            .spawn(move || loop {
                let mut g = super::lock(&s.state);
                while !g.0 && !g.1 {
                    g = s.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                if g.1 {
                    return;
                }
                g.0 = false;
                drop(g);
                // Stopping between parts: a writer dropped while a replay's
                // backlog is linked returns after one part, not after the
                // backlog. Busy: another thread links (the writer, under
                // back-pressure), and it links everything pending.
                link_until(&live, parallel, false, || super::lock(&s.state).1);
            })
            .ok();
        let linker = Linker {
            signal,
            thread,
            replayed: AtomicUsize::new(replayed),
        };
        linker.wake();
        linker
    }

    fn wake(&self) {
        super::lock(&self.signal.state).0 = true;
        self.signal.cv.notify_one();
    }

    /// After an operation or batch was applied and published: hands what
    /// it sealed to the thread, or links here, waiting for the thread if
    /// it is busy, when the writer's own backlog is past [`MAX_BACKLOG`]
    /// or there is no thread. Called from a rayon pool's thread it links
    /// here, sequentially (so that a one-thread pool stays deterministic),
    /// unless the thread is busy with the replay's rows.
    pub(super) fn after_change(&self, live: &Index) {
        let view = live.view();
        if !view.overlay.has_pending() {
            return;
        }
        // Rows link in node order, so the writer's own wait behind the
        // replay's: no back-pressure until those are linked (the writer's
        // rows are scanned meanwhile), or the writer would wait for the
        // replay's backlog after all.
        let (linked, replayed) = (view.overlay.linked(), self.replayed.load(Ordering::Acquire));
        let own_backlog = linked >= replayed && view.overlay.sealed() - linked > MAX_BACKLOG;
        if own_backlog || self.thread.is_none() {
            link_pending(live, true, true);
        } else if rayon::current_thread_index().is_some() {
            link_pending(live, true, false);
        } else {
            self.wake();
        }
    }

    /// After a compaction switched `live` to a new generation (and
    /// overlay): its replayed rows are the thread's, not the writer's.
    pub(super) fn rebase(&self, live: &Index) {
        let sealed = live.view().overlay.sealed();
        self.replayed.store(sealed, Ordering::Release);
        self.wake();
    }

    /// Returns once every sealed row is linked.
    pub(super) fn wait(&self, live: &Index) {
        link_pending(live, true, true);
    }
}

impl Drop for Linker {
    fn drop(&mut self) {
        super::lock(&self.signal.state).1 = true;
        self.signal.cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
