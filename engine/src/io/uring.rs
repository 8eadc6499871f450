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
