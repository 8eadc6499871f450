//! The io_uring backend: one ring per thread; a batch's reads are pushed
//! as submission entries, submitted with one `io_uring_enter`, and reaped
//! once all have completed.

use super::direct::Req;
use io_uring::{opcode, types, IoUring};
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Submission queue entries per ring: larger batches go in several rounds.
const ENTRIES: u32 = 128;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Whether io_uring can be set up here (probed once per process).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("STRATA_NO_URING").is_some() {
            return false;
        }
        IoUring::new(4).is_ok()
    })
}

/// Reads every request into `base + buf_off`; the result of each is the
/// CQE's (bytes read, or minus the errno). On an `Err` some reads may still
/// be in flight: the caller must never reuse the buffer.
pub(super) fn read_batch(
    file: &File,
    reqs: &[Req],
    base: *mut u8,
    results: &mut [i32],
) -> io::Result<()> {
    RING.with(|cell| {
        let mut cell = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("io_uring ring busy"))?;
        if cell.is_none() {
            *cell = Some(IoUring::new(ENTRIES)?);
        }
        let Some(ring) = cell.as_mut() else {
            return Err(io::Error::other("io_uring ring missing"));
        };
        let fd = types::Fd(file.as_raw_fd());
        let (mut next, mut done) = (0usize, 0usize);
        let outcome = (|| {
            while done < reqs.len() {
                {
                    let mut sq = ring.submission();
                    while next < reqs.len() && !sq.is_full() {
                        let r = reqs[next];
                        // SAFETY: `buf_off + len` is inside the caller's
                        // buffer (sized for the batch).
                        let dest = unsafe { base.add(r.buf_off) };
                        let entry = opcode::Read::new(fd, dest, r.len as u32)
                            .offset(r.off)
                            .build()
                            .user_data(next as u64);
                        // SAFETY: the buffer and the file outlive the read:
                        // this function returns only after every pushed
                        // entry completed, or with an error after which the
                        // caller leaks the buffer; `file` is borrowed for
                        // the whole call.
                        if unsafe { sq.push(&entry) }.is_err() {
                            break;
                        }
                        next += 1;
                    }
                }
                loop {
                    match ring.submit_and_wait(next - done) {
                        Ok(_) => break,
                        Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                        Err(e) => return Err(e),
                    }
                }
                for cqe in ring.completion() {
                    if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                        *r = cqe.result();
                        done += 1;
                    }
                }
            }
            Ok(())
        })();
        if outcome.is_err() {
            // Entries may remain in flight: this ring is dropped (and the
            // caller leaks the buffer).
            *cell = None;
        }
        outcome
    })
}

/// A ring owned by one [`RowPipeline`](super::pipeline::RowPipeline): the
/// reads of several batches are in flight on it at once, each completion
/// tagged with its batch (`tag`) and its index in the batch.
pub(super) struct Ring {
    ring: IoUring,
    in_flight: usize,
}

impl Ring {
    /// Completions the ring can hold: never more reads in flight than this.
    const CAPACITY: usize = 2 * PIPELINE_ENTRIES as usize;

    pub(super) fn new() -> io::Result<Ring> {
        Ok(Ring {
            ring: IoUring::new(PIPELINE_ENTRIES)?,
            in_flight: 0,
        })
    }

    /// Reads still in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues and submits every request of batch `tag` (destinations
    /// `base + buf_off`) without waiting for them. When the ring is full,
    /// waits for earlier reads and passes their results to
    /// `route(tag, index, result)`. On an `Err` reads may still be in
    /// flight: their buffers must never be reused (leak them).
    ///
    /// # Safety
    /// `base + buf_off + len` must be writable memory that stays allocated
    /// and untouched until the read's completion has been routed (or is
    /// leaked), and `file` must stay open that long.
    pub(super) unsafe fn submit(
        &mut self,
        file: &File,
        tag: u32,
        reqs: &[Req],
        base: *mut u8,
        route: &mut impl FnMut(u32, u32, i32),
    ) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        let mut next = 0usize;
        while next < reqs.len() {
            let mut pushed = 0;
            {
                let mut sq = self.ring.submission();
                while next < reqs.len() && !sq.is_full() && self.in_flight + pushed < Self::CAPACITY
                {
                    let r = reqs[next];
                    // SAFETY: inside the caller's buffer (this function's
                    // contract).
                    let dest = unsafe { base.add(r.buf_off) };
                    let entry = opcode::Read::new(fd, dest, r.len as u32)
                        .offset(r.off)
                        .build()
                        .user_data((u64::from(tag) << 32) | next as u64);
                    // SAFETY: buffer and file outlive the read (contract).
                    if unsafe { sq.push(&entry) }.is_err() {
                        break;
                    }
                    next += 1;
                    pushed += 1;
                }
            }
            self.in_flight += pushed;
            if next < reqs.len() {
                // Full: submit what is queued and make room.
                self.wait(1, route)?;
            } else {
                loop {
                    match self.ring.submit() {
                        Ok(_) => break,
                        Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Submits anything queued, waits until at least `want` reads have
    /// completed (fewer if fewer are in flight) and routes every
    /// completion available.
    pub(super) fn wait(
        &mut self,
        want: usize,
        route: &mut impl FnMut(u32, u32, i32),
    ) -> io::Result<()> {
        let want = want.min(self.in_flight);
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        for cqe in self.ring.completion() {
            self.in_flight = self.in_flight.saturating_sub(1);
            let data = cqe.user_data();
            route((data >> 32) as u32, data as u32, cqe.result());
        }
        Ok(())
    }
}

/// Submission entries of a pipeline's ring.
const PIPELINE_ENTRIES: u32 = 256;
