//! Rescoring reads of several queries in flight at once.
//!
//! A batch of queries alternates traversal (CPU, on the resident codes) and
//! rescoring (waiting for rows from disk). Run one after the other, the disk
//! idles while a query traverses and the CPU idles while it waits. A
//! [`RowPipeline`] holds up to `depth` batches of row reads: the caller
//! *begins* the reads of query `i`, traverses the next queries (beginning
//! theirs), and *finishes* query `i` (waits for its rows, rescores) only
//! when the pipeline is full. With io_uring every begun read is in flight
//! on one ring owned by the pipeline; with the pread pool each batch is
//! queued on the pool. Mapped reads (and [`IoMode::Auto`] while it prefers
//! them) read at finish; [`IoMode::Willneed`] advises at begin, so the
//! kernel's readahead works while the next query traverses.
//!
//! Results are the same bytes as [`RowReader::for_rows`] reads: the same
//! distances bit for bit.

use super::direct::{load_auto, store_auto, AlignedBuf, Auto, Backend, Plan, RowReader};
use super::pool;
#[cfg(all(target_os = "linux", not(miri)))]
use super::uring::Ring;
use super::IoMode;
use crate::error::{Error, Result};
use crate::format::bytes::Bytes;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Where a slot's reads are.
enum State {
    /// No reads begun.
    Idle,
    /// Rows are read through the mapping at finish.
    Mapped,
    /// Direct reads on the pipeline's ring, `pending` not yet completed.
    #[cfg(all(target_os = "linux", not(miri)))]
    Ring { pending: usize },
    /// Direct reads queued on the pread pool.
    Pool(pool::InFlight),
    /// Direct reads already completed (read at begin).
    Done,
}

/// One batch of row reads: its aligned buffer and requests.
struct Slot {
    buf: AlignedBuf,
    plan: Plan,
    results: Vec<i32>,
    block: usize,
    count: usize,
    state: State,
    /// Whether [`IoMode::Auto`] chose direct reads, and explored.
    direct: bool,
    explore: bool,
    /// Nanoseconds spent beginning the reads (for Auto's cost per row).
    begin_ns: u64,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            buf: AlignedBuf::new(),
            plan: Plan::default(),
            results: Vec::new(),
            block: 0,
            count: 0,
            state: State::Idle,
            direct: false,
            explore: false,
            begin_ns: 0,
        }
    }
}

/// Up to `depth` batches of row reads in flight (see the module docs).
/// Owned by one thread; dropping it waits for reads still in flight.
pub(crate) struct RowPipeline<'a> {
    reader: &'a RowReader,
    vectors: &'a Bytes,
    #[cfg(all(target_os = "linux", not(miri)))]
    ring: Option<Ring>,
    slots: Vec<Slot>,
    auto: Auto,
    /// A ring call failed with reads possibly in flight: their buffers are
    /// leaked at drop, never reused.
    broken: bool,
}

impl RowReader {
    /// Whether a batch of queries gains from a [`RowPipeline`]: rows can be
    /// read directly, or are advised ahead of use.
    pub(crate) fn pipelines(&self) -> bool {
        self.direct().is_some() || self.mode() == IoMode::Willneed
    }

    /// A pipeline of `depth` slots over this reader's rows in `vectors`.
    pub(crate) fn pipeline<'a>(&'a self, vectors: &'a Bytes, depth: usize) -> RowPipeline<'a> {
        RowPipeline {
            reader: self,
            vectors,
            #[cfg(all(target_os = "linux", not(miri)))]
            ring: take_spare_ring(),
            slots: {
                let mut slots = SPARE_SLOTS.with(|c| c.take());
                slots.resize_with(depth.max(1), Slot::new);
                slots
            },
            auto: if self.mode() == IoMode::Auto {
                load_auto()
            } else {
                Auto::new()
            },
            broken: false,
        }
    }
}

thread_local! {
    /// The slots (with their grown buffers) of this thread's last pipeline:
    /// a batch search makes one pipeline per chunk of queries.
    static SPARE_SLOTS: std::cell::Cell<Vec<Slot>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(all(target_os = "linux", not(miri)))]
thread_local! {
    /// The ring of this thread's last pipeline, idle.
    static SPARE_RING: std::cell::Cell<Option<Ring>> = const { std::cell::Cell::new(None) };
}

#[cfg(all(target_os = "linux", not(miri)))]
fn take_spare_ring() -> Option<Ring> {
    SPARE_RING.with(|c| c.take())
}

/// Passes a completion to its slot.
fn route(slots: &mut [Slot], tag: u32, index: u32, result: i32) {
    let Some(s) = slots.get_mut(tag as usize) else {
        return;
    };
    if let Some(r) = s.results.get_mut(index as usize) {
        *r = result;
    }
    #[cfg(all(target_os = "linux", not(miri)))]
    if let State::Ring { pending } = &mut s.state {
        *pending = pending.saturating_sub(1);
    }
}

fn busy() -> Error {
    Error::InvalidParameter {
        name: "slot",
        reason: "a pipeline slot was begun twice or finished before it began".into(),
    }
}

impl RowPipeline<'_> {
    /// Number of slots.
    pub(crate) fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Begins reading the rows `ord(i)`, `i < count`, into `slot` (which
    /// must be idle) without waiting for them; returns how many disk reads
    /// that put in flight (0 for mapped reads and rows the row cache held).
    pub(crate) fn begin(
        &mut self,
        slot: usize,
        count: usize,
        ord: impl Fn(usize) -> u32,
    ) -> Result<usize> {
        let t = Instant::now();
        let reader = self.reader;
        let s = self.slots.get_mut(slot).ok_or_else(busy)?;
        if !matches!(s.state, State::Idle) {
            return Err(busy());
        }
        s.count = count;
        let (direct, explore) = match reader.direct() {
            Some(_) if reader.mode() == IoMode::Auto => self.auto.choose(),
            Some(_) => (true, false),
            None => (false, false),
        };
        (s.direct, s.explore) = (direct, explore);
        let d = match reader.direct() {
            Some(d) if direct && count > 0 => d,
            _ => {
                reader.advise(self.vectors, count, &ord);
                s.state = State::Mapped;
                s.begin_ns = t.elapsed().as_nanos() as u64;
                return Ok(0);
            }
        };
        s.block = d.block.load(Relaxed);
        reader.plan(s.block, count, &ord, &mut s.buf, &mut s.plan)?;
        s.results.clear();
        s.results.resize(s.plan.reqs.len(), 0);
        let base = s.buf.as_mut_ptr();
        match d.backend {
            #[cfg(all(target_os = "linux", not(miri)))]
            Backend::Uring => {
                if self.ring.is_none() {
                    self.ring = Some(Ring::new().map_err(|e| reader.err(e))?);
                }
                let reqs = std::mem::take(&mut s.plan.reqs);
                s.state = State::Ring {
                    pending: reqs.len(),
                };
                let (slots, ring) = (&mut self.slots, self.ring.as_mut());
                let submitted = match ring {
                    // SAFETY: the slot's buffer holds `total` bytes for the
                    // requests; it is neither reused nor freed until every
                    // completion of this slot is routed (`finish`, `Drop`),
                    // or it is leaked when the ring fails (`broken`). The
                    // file belongs to the reader this pipeline borrows.
                    Some(ring) => unsafe {
                        ring.submit(&d.file, slot as u32, &reqs, base, &mut |t, i, r| {
                            route(slots, t, i, r)
                        })
                    },
                    None => Err(io::Error::other("io_uring ring missing")),
                };
                self.slots[slot].plan.reqs = reqs;
                if let Err(e) = submitted {
                    self.broken = true;
                    return Err(reader.err(e));
                }
            }
            Backend::Pool => match pool::submit(&d.file, &s.plan.reqs, base) {
                Some(batch) => s.state = State::Pool(batch),
                None => {
                    pool::read_here(&d.file, &s.plan.reqs, base, &mut s.results);
                    s.state = State::Done;
                }
            },
        }
        let s = &mut self.slots[slot];
        s.begin_ns = t.elapsed().as_nanos() as u64;
        Ok(s.plan.reqs.len())
    }

    /// Waits for the rows begun in `slot` and calls `f(i, row)` for each,
    /// in order (`ord` and `mapped` as given to [`RowReader::for_rows`]);
    /// the slot is idle again afterwards.
    pub(crate) fn finish<'v>(
        &mut self,
        slot: usize,
        ord: impl Fn(usize) -> u32,
        mapped: impl Fn(u32) -> &'v [f32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let t = Instant::now();
        let reader = self.reader;
        let s = self.slots.get_mut(slot).ok_or_else(busy)?;
        let state = std::mem::replace(&mut s.state, State::Idle);
        let count = s.count;
        match state {
            State::Idle => return Err(busy()),
            State::Mapped => reader.read_mapped(count, &ord, &mapped, &mut f),
            #[cfg(all(target_os = "linux", not(miri)))]
            State::Ring { mut pending } => {
                s.state = State::Ring { pending };
                while pending > 0 {
                    let Some(ring) = self.ring.as_mut() else {
                        self.broken = true;
                        return Err(reader.err(io::Error::other("io_uring ring missing")));
                    };
                    let slots = &mut self.slots;
                    if let Err(e) = ring.wait(pending, &mut |t, i, r| route(slots, t, i, r)) {
                        self.broken = true;
                        return Err(reader.err(e));
                    }
                    pending = match self.slots[slot].state {
                        State::Ring { pending } => pending,
                        _ => 0,
                    };
                }
                self.slots[slot].state = State::Idle;
                self.read_back(slot, &ord, &mut f)?;
            }
            State::Pool(batch) => {
                batch.wait(&mut s.results);
                self.read_back(slot, &ord, &mut f)?;
            }
            State::Done => self.read_back(slot, &ord, &mut f)?,
        }
        let s = &self.slots[slot];
        if reader.mode() == IoMode::Auto && count > 0 {
            let ns = (s.begin_ns + t.elapsed().as_nanos() as u64) as f64 / count as f64;
            self.auto.record(s.direct, s.explore, ns);
        }
        Ok(())
    }

    /// Checks the completed direct reads of `slot` and delivers its rows
    /// (reading the batch again, synchronously, if the device asked for a
    /// larger block size).
    fn read_back(
        &mut self,
        slot: usize,
        ord: &impl Fn(usize) -> u32,
        f: &mut impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let reader = self.reader;
        let Some(d) = reader.direct() else {
            return Err(busy());
        };
        let s = &mut self.slots[slot];
        if reader.check(d, s.block, &s.plan.reqs, &mut s.results, &mut s.buf)? {
            s.block = d.block.load(Relaxed);
            reader.plan(s.block, s.count, ord, &mut s.buf, &mut s.plan)?;
            s.results.clear();
            s.results.resize(s.plan.reqs.len(), 0);
            let base = s.buf.as_mut_ptr();
            if let Err(e) = reader.submit(d, &s.plan.reqs, base, &mut s.results) {
                s.buf.leak();
                return Err(reader.err(e));
            }
            if reader.check(d, s.block, &s.plan.reqs, &mut s.results, &mut s.buf)? {
                return Err(reader.err(io::Error::from_raw_os_error(libc::EINVAL)));
            }
        }
        reader.deliver(&s.buf, &s.plan, ord, f)
    }
}

impl Drop for RowPipeline<'_> {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(ring) = self.ring.as_mut() {
            let slots = &mut self.slots;
            while !self.broken && ring.in_flight() > 0 {
                let n = ring.in_flight();
                if ring.wait(n, &mut |t, i, r| route(slots, t, i, r)).is_err() {
                    self.broken = true;
                }
            }
        }
        for s in &mut self.slots {
            match std::mem::replace(&mut s.state, State::Idle) {
                State::Pool(batch) => batch.wait(&mut s.results),
                #[cfg(all(target_os = "linux", not(miri)))]
                State::Ring { pending } if pending > 0 && self.broken => s.buf.leak(),
                _ => {}
            }
        }
        if self.reader.mode() == IoMode::Auto {
            store_auto(self.auto);
        }
        if !self.broken {
            // Every read has completed: slots and ring are idle, reusable.
            SPARE_SLOTS.with(|c| c.set(std::mem::take(&mut self.slots)));
            #[cfg(all(target_os = "linux", not(miri)))]
            SPARE_RING.with(|c| c.set(self.ring.take()));
        }
    }
}
