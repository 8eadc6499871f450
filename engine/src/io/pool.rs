//! The portable backend: a process-wide pool of threads that each run
//! `pread(2)`, so a batch's reads are in flight together without io_uring.

use super::direct::Req;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Threads of the pool: the queue depth it can keep at the disk.
const THREADS: usize = 16;

struct Batch {
    state: Mutex<(usize, Vec<i32>)>,
    done: Condvar,
}

/// A destination in a caller's buffer.
struct Dest(*mut u8);
// SAFETY: the pointer is only written by the one job it is given to, into
// a slot no other job touches, while the caller blocks on the batch.
unsafe impl Send for Dest {}

struct Job {
    fd: RawFd,
    req: Req,
    dest: Dest,
    index: usize,
    batch: Arc<Batch>,
}

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        let started = (0..THREADS)
            .filter(|i| {
                std::thread::Builder::new()
                    .name(format!("strata-pread-{i}"))
                    .stack_size(64 * 1024)
                    .spawn(move || worker(pool))
                    .is_ok()
            })
            .count();
        let _ = STARTED.set(started);
        pool
    })
}

static STARTED: OnceLock<usize> = OnceLock::new();

fn pread(fd: RawFd, req: Req, dest: *mut u8) -> i32 {
    // SAFETY: `dest` points to at least `req.len` writable bytes of the
    // caller's aligned buffer (see `Dest`), and `fd` is open while the
    // caller waits for the batch.
    let r = unsafe { libc::pread(fd, dest.cast(), req.len, req.off as libc::off_t) };
    if r < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        r as i32
    }
}

fn worker(pool: &'static Pool) {
    loop {
        let job = {
            let mut q = lock(&pool.queue);
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let r = pread(job.fd, job.req, job.dest.0);
        let mut s = lock(&job.batch.state);
        s.1[job.index] = r;
        s.0 -= 1;
        if s.0 == 0 {
            job.batch.done.notify_one();
        }
    }
}

/// Reads every request into `base + buf_off`, all queued at once; result
/// per request as a CQE gives it (bytes read, or minus the errno).
pub(super) fn read_batch(
    file: &File,
    reqs: &[Req],
    base: *mut u8,
    results: &mut [i32],
) -> io::Result<()> {
    match submit(file, reqs, base) {
        Some(batch) => batch.wait(results),
        // No thread could be started (or nothing to overlap): read here.
        None => read_here(file, reqs, base, results),
    }
    Ok(())
}

/// A batch of reads queued on the pool; [`InFlight::wait`] blocks until all
/// have completed. Until then the destination buffer must stay allocated
/// and untouched (dropping an `InFlight` does not wait).
pub(super) struct InFlight(Arc<Batch>);

impl InFlight {
    /// Waits for every read of the batch and copies their results.
    pub(super) fn wait(&self, results: &mut [i32]) {
        let mut s = lock(&self.0.state);
        while s.0 > 0 {
            s = self.0.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        results.copy_from_slice(&s.1);
    }
}

/// Queues every request on the pool without waiting (`None`: a batch of one
/// read, or a pool without threads; the caller reads synchronously).
pub(super) fn submit(file: &File, reqs: &[Req], base: *mut u8) -> Option<InFlight> {
    let fd = file.as_raw_fd();
    let p = pool();
    if STARTED.get().copied().unwrap_or(0) == 0 || reqs.len() <= 1 {
        return None;
    }
    let batch = Arc::new(Batch {
        state: Mutex::new((reqs.len(), vec![0; reqs.len()])),
        done: Condvar::new(),
    });
    {
        let mut q = lock(&p.queue);
        for (index, req) in reqs.iter().enumerate() {
            q.push_back(Job {
                fd,
                req: *req,
                // SAFETY: `buf_off + len` is inside the caller's buffer.
                dest: Dest(unsafe { base.add(req.buf_off) }),
                index,
                batch: Arc::clone(&batch),
            });
        }
    }
    p.ready.notify_all();
    Some(InFlight(batch))
}

/// One synchronous `pread` per request, here (for batches [`submit`]
/// declined).
pub(super) fn read_here(file: &File, reqs: &[Req], base: *mut u8, results: &mut [i32]) {
    let fd = file.as_raw_fd();
    for (r, req) in results.iter_mut().zip(reqs) {
        // SAFETY: `base + buf_off` is inside the caller's buffer.
        *r = pread(fd, *req, unsafe { base.add(req.buf_off) });
    }
}
