//! The row reader of an open index: chooses the backend per call, reads
//! rows into aligned per-thread buffers, checks every read.

use super::row_cache::RowCache;
use super::{IoMode, IoStats, ReadFault};
use crate::error::{Error, Result};
use crate::format::bytes::Bytes;
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// Alignment of the per-thread buffers (a page: enough for any O_DIRECT
/// logical block size).
const BUF_ALIGN: usize = 4096;
/// First guess of the device's logical block size; raised to 4096 when a
/// direct read at 512-byte granularity is refused with `EINVAL`.
const FIRST_BLOCK: usize = 512;

static DIRECT_ROWS: AtomicU64 = AtomicU64::new(0);
static DIRECT_BYTES: AtomicU64 = AtomicU64::new(0);
static MAPPED_ROWS: AtomicU64 = AtomicU64::new(0);
static CACHED_ROWS: AtomicU64 = AtomicU64::new(0);

pub(super) fn stats() -> IoStats {
    IoStats {
        direct_rows: DIRECT_ROWS.load(Relaxed),
        direct_bytes: DIRECT_BYTES.load(Relaxed),
        mapped_rows: MAPPED_ROWS.load(Relaxed),
        cached_rows: CACHED_ROWS.load(Relaxed),
    }
}

/// One read of a batch: `len` bytes at file offset `off` into the buffer at
/// `buf_off`. Offsets and lengths are multiples of the block size.
#[derive(Debug, Clone, Copy)]
pub(super) struct Req {
    pub off: u64,
    pub len: usize,
    pub buf_off: usize,
}

/// An owned, zero-initialised, page-aligned byte buffer (O_DIRECT needs
/// aligned memory; `Vec<u8>` gives no alignment guarantee).
pub(super) struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: the buffer is uniquely owned heap memory, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub(super) const fn new() -> AlignedBuf {
        AlignedBuf {
            ptr: NonNull::dangling(),
            cap: 0,
        }
    }

    /// Makes room for `len` bytes (contents are not kept).
    pub(super) fn reserve(&mut self, len: usize) -> io::Result<()> {
        if len <= self.cap {
            return Ok(());
        }
        let cap = len
            .checked_next_power_of_two()
            .unwrap_or(len)
            .max(BUF_ALIGN);
        let layout = std::alloc::Layout::from_size_align(cap, BUF_ALIGN)
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: `layout` has a nonzero size (at least BUF_ALIGN).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let p = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.free();
        self.ptr = p;
        self.cap = cap;
        Ok(())
    }

    fn free(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `reserve` with exactly this layout.
            unsafe {
                std::alloc::dealloc(
                    self.ptr.as_ptr(),
                    std::alloc::Layout::from_size_align_unchecked(self.cap, BUF_ALIGN),
                )
            };
            self.cap = 0;
            self.ptr = NonNull::dangling();
        }
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn bytes(&self) -> &[u8] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: `cap` bytes were allocated zeroed (so initialised) and
        // are owned by `self`; no write is in flight while `&self` is lent
        // (batches complete before their rows are handed out).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    /// The buffer's bytes, writable (for rows copied from the row cache).
    fn bytes_mut(&mut self) -> &mut [u8] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`; `&mut self` is exclusive, and callers plan
        // (and so write) only buffers with no read in flight.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// Gives up the memory without freeing it: for a buffer into which a
    /// read may still land after its batch failed.
    pub(super) fn leak(&mut self) {
        self.cap = 0;
        self.ptr = NonNull::dangling();
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.free();
    }
}

/// Running per-row costs of the two ways to read, for [`IoMode::Auto`].
#[derive(Clone, Copy)]
pub(super) struct Auto {
    mapped_ns: f64,
    direct_ns: f64,
    direct: bool,
    until_explore: u32,
    interval: u32,
}

impl Auto {
    const MIN_INTERVAL: u32 = 64;
    const MAX_INTERVAL: u32 = 1024;
    pub(super) const fn new() -> Auto {
        Auto {
            mapped_ns: f64::NAN,
            direct_ns: f64::NAN,
            direct: false,
            until_explore: 8,
            interval: Self::MIN_INTERVAL,
        }
    }

    /// Whether this call reads directly (and whether it explores).
    pub(super) fn choose(&mut self) -> (bool, bool) {
        let explore = self.until_explore == 0;
        self.until_explore = self.until_explore.saturating_sub(1);
        (self.direct ^ explore, explore)
    }

    pub(super) fn record(&mut self, direct: bool, explore: bool, ns_per_row: f64) {
        let (cost, alpha) = match (direct, explore) {
            (true, _) => (&mut self.direct_ns, if explore { 0.5 } else { 0.125 }),
            (false, _) => (&mut self.mapped_ns, if explore { 0.5 } else { 0.125 }),
        };
        // One sample moves the running cost up by at most a factor of
        // 1 + 3·alpha: a query descheduled by a busy machine must not flip
        // the choice, a file gone cold (a 100-fold cost) still does within
        // a dozen queries. An exploring sample lower than the running cost
        // replaces it: the other way's cost is stale by then (one measured
        // while the caches were cold, at open, once kept a warm index on
        // direct reads for thousands of queries, each halving it only).
        let sample = ns_per_row.min(4.0 * *cost);
        *cost = if cost.is_nan() {
            ns_per_row
        } else if explore && sample < *cost {
            sample
        } else {
            *cost + alpha * (sample - *cost)
        };
        if explore {
            let before = self.direct;
            self.direct = self.direct_ns < self.mapped_ns;
            self.interval = if self.direct == before {
                (self.interval * 2).min(Self::MAX_INTERVAL)
            } else {
                Self::MIN_INTERVAL
            };
            self.until_explore = self.interval;
        } else if !self.direct_ns.is_nan() && self.direct != (self.direct_ns < self.mapped_ns) {
            // The current way became dearer than the other's last cost.
            self.direct = !self.direct;
            self.interval = Self::MIN_INTERVAL;
            self.until_explore = self.interval;
        }
    }
}

/// Per-thread buffers of direct reads.
struct Local {
    buf: AlignedBuf,
    plan: Plan,
    results: Vec<i32>,
    auto: Auto,
}

/// Where the rows of one batch are: read requests for the rows the row
/// cache did not have, and each row's byte offset in the batch's buffer.
#[derive(Default)]
pub(super) struct Plan {
    pub reqs: Vec<Req>,
    /// Byte offset of row `i` in the buffer.
    pub at: Vec<usize>,
    /// Row index of each request (rows to keep in the cache once read).
    pub missed: Vec<usize>,
}

impl Plan {
    const fn new() -> Plan {
        Plan {
            reqs: Vec::new(),
            at: Vec::new(),
            missed: Vec::new(),
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local {
            buf: AlignedBuf::new(),
            plan: Plan::new(),
            results: Vec::new(),
            auto: Auto::new(),
        })
    };
}

/// This thread's [`IoMode::Auto`] state (a copy: hand it back with
/// [`store_auto`]).
pub(super) fn load_auto() -> Auto {
    LOCAL.with(|l| l.try_borrow().map_or(Auto::new(), |l| l.auto))
}

/// Stores this thread's [`IoMode::Auto`] state.
pub(super) fn store_auto(auto: Auto) {
    LOCAL.with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.auto = auto;
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    #[cfg(all(target_os = "linux", not(miri)))]
    Uring,
    Pool,
}

/// The vectors file opened for direct reads.
#[derive(Debug)]
pub(super) struct Direct {
    pub(super) file: File,
    pub(super) backend: Backend,
    pub(super) block: AtomicUsize,
}

/// Reads rows of one vectors file for rescoring, with the backend chosen
/// at open (see [`IoMode`]).
#[derive(Debug)]
pub(crate) struct RowReader {
    mode: IoMode,
    path: PathBuf,
    data_offset: u64,
    row_bytes: usize,
    direct: Option<Direct>,
    cache: Option<RowCache>,
    fault: Option<ReadFault>,
}

/// Opens `path` with `O_DIRECT` where the filesystem allows it (tmpfs and
/// some others refuse it: then buffered).
fn open_direct(path: &Path) -> io::Result<File> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    File::open(path)
}

/// Opens `path` for buffered reads without readahead (rows are read at
/// random: a readahead window would only evict useful pages).
fn open_buffered(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; only a hint.
        let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    }
    Ok(f)
}

impl RowReader {
    /// A reader of the rows of the vectors file at `path` (`None`: an
    /// in-memory index, read through its bytes whatever the mode).
    pub(crate) fn open(
        mode: IoMode,
        path: Option<&Path>,
        data_offset: usize,
        row_bytes: usize,
        cache_bytes: usize,
        fault: Option<ReadFault>,
    ) -> Result<RowReader> {
        let backend = match mode {
            IoMode::Mmap | IoMode::Willneed => None,
            #[cfg(all(target_os = "linux", not(miri)))]
            IoMode::Uring => {
                if !super::uring_available() {
                    return Err(Error::InvalidParameter {
                        name: "io",
                        reason: "io_uring is not available to this process (kernel or seccomp refuses it): use pread or auto".into(),
                    });
                }
                Some(Backend::Uring)
            }
            #[cfg(any(not(target_os = "linux"), miri))]
            IoMode::Uring => {
                return Err(Error::InvalidParameter {
                    name: "io",
                    reason: "io_uring exists only on Linux: use pread or auto".into(),
                })
            }
            IoMode::Pread => Some(Backend::Pool),
            IoMode::Auto => {
                #[cfg(all(target_os = "linux", not(miri)))]
                let b = if super::uring_available() {
                    Backend::Uring
                } else {
                    Backend::Pool
                };
                #[cfg(any(not(target_os = "linux"), miri))]
                let b = Backend::Pool;
                Some(b)
            }
        };
        // Miri can run neither io_uring nor O_DIRECT preads: mapped reads.
        let direct = match (backend, path) {
            _ if cfg!(miri) => None,
            (Some(backend), Some(p)) => Some(Direct {
                // Auto reads through the page cache (buffered), so that
                // rows it reads directly still warm the cache for the
                // mapped reads it switches back to when RAM allows.
                file: if mode == IoMode::Auto {
                    open_buffered(p)
                } else {
                    open_direct(p)
                }
                .map_err(|e| Error::io(p, e))?,
                backend,
                block: AtomicUsize::new(FIRST_BLOCK),
            }),
            _ => None,
        };
        // The cache serves direct reads only: mapped reads have the page cache.
        let cache = match &direct {
            Some(_) => RowCache::new(cache_bytes, row_bytes / 4),
            None => None,
        };
        Ok(RowReader {
            mode,
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            data_offset: data_offset as u64,
            row_bytes,
            direct,
            cache,
            fault,
        })
    }

    /// Calls `f(i, row)` with the stored (padded) row of `ord(i)` for every
    /// `i < count`, in order. `mapped(o)` gives the row through the mapping.
    pub(crate) fn for_rows<'a>(
        &self,
        vectors: &Bytes,
        count: usize,
        ord: impl Fn(usize) -> u32,
        mapped: impl Fn(u32) -> &'a [f32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let Some(d) = &self.direct else {
            self.advise(vectors, count, &ord);
            self.read_mapped(count, &ord, &mapped, &mut f);
            return Ok(());
        };
        LOCAL.with(|l| {
            let Ok(mut l) = l.try_borrow_mut() else {
                // Re-entered from `f` (never done by strata): mapped reads.
                self.read_mapped(count, &ord, &mapped, &mut f);
                return Ok(());
            };
            if self.mode != IoMode::Auto {
                return self.read_direct(d, &mut l, count, &ord, &mut f);
            }
            let (direct, explore) = l.auto.choose();
            let t = Instant::now();
            if direct {
                self.read_direct(d, &mut l, count, &ord, &mut f)?;
            } else {
                self.read_mapped(count, &ord, &mapped, &mut f);
            }
            let ns = t.elapsed().as_nanos() as f64 / count as f64;
            l.auto.record(direct, explore, ns);
            Ok(())
        })
    }

    /// The direct-read file, unless this reader maps rows only.
    pub(super) fn direct(&self) -> Option<&Direct> {
        self.direct.as_ref()
    }

    /// The mode chosen at open.
    pub(super) fn mode(&self) -> IoMode {
        self.mode
    }

    /// `madvise(MADV_WILLNEED)` over the rows, in [`IoMode::Willneed`].
    pub(super) fn advise(&self, vectors: &Bytes, count: usize, ord: &impl Fn(usize) -> u32) {
        if self.mode == IoMode::Willneed {
            for i in 0..count {
                let off = ord(i) as usize * self.row_bytes + self.data_offset as usize;
                vectors.will_need(off, self.row_bytes);
            }
        }
    }

    /// Reads the rows through the mapping (prefetched first).
    pub(super) fn read_mapped<'a>(
        &self,
        count: usize,
        ord: &impl Fn(usize) -> u32,
        mapped: &impl Fn(u32) -> &'a [f32],
        f: &mut impl FnMut(usize, &[f32]),
    ) {
        MAPPED_ROWS.fetch_add(count as u64, Relaxed);
        for i in 0..count {
            crate::distance::prefetch(mapped(ord(i)));
        }
        for i in 0..count {
            f(i, mapped(ord(i)));
        }
    }

    /// The vectors file's path, for errors.
    pub(super) fn err(&self, e: io::Error) -> Error {
        Error::io(&self.path, e)
    }

    /// Plans block-aligned reads of the rows `ord(i)`, `i < count`, into
    /// consecutive slots of `buf` (grown to fit; it must have no read in
    /// flight); rows the row cache holds are copied into their slots now.
    pub(super) fn plan(
        &self,
        block: usize,
        count: usize,
        ord: &impl Fn(usize) -> u32,
        buf: &mut AlignedBuf,
        plan: &mut Plan,
    ) -> Result<()> {
        let slot = self.row_bytes.div_ceil(block) * block + block;
        let total = count
            .checked_mul(slot)
            .ok_or_else(|| self.err(io::ErrorKind::OutOfMemory.into()))?;
        buf.reserve(total).map_err(|e| self.err(e))?;
        plan.reqs.clear();
        plan.at.clear();
        plan.missed.clear();
        for i in 0..count {
            let o = ord(i);
            if let Some(cache) = &self.cache {
                let at = i * slot;
                let hit = buf
                    .bytes_mut()
                    .get_mut(at..at + self.row_bytes)
                    .and_then(|b| bytemuck::try_cast_slice_mut::<u8, f32>(b).ok())
                    .is_some_and(|row| cache.get(o, row));
                if hit {
                    plan.at.push(at);
                    continue;
                }
            }
            let off = self.data_offset + o as u64 * self.row_bytes as u64;
            let start = off / block as u64 * block as u64;
            let end = (off + self.row_bytes as u64).div_ceil(block as u64) * block as u64;
            plan.reqs.push(Req {
                off: start,
                len: (end - start) as usize,
                buf_off: i * slot,
            });
            plan.at.push(i * slot + (off - start) as usize);
            plan.missed.push(i);
        }
        Ok(())
    }

    /// Checks every read's result (re-reading short ones synchronously).
    /// `Ok(true)`: the device refused reads at `block`-byte granularity
    /// (EINVAL) and the block size has been raised: plan and read again.
    pub(super) fn check(
        &self,
        d: &Direct,
        block: usize,
        reqs: &[Req],
        results: &mut [i32],
        buf: &mut AlignedBuf,
    ) -> Result<bool> {
        for (i, r) in results.iter_mut().enumerate() {
            let req = reqs[i];
            let mut res = *r;
            match self.fault {
                Some(ReadFault::Eio) => res = -libc::EIO,
                Some(ReadFault::Short) if res > 0 => res = (req.len / 2) as i32,
                _ => {}
            }
            if res == -libc::EINVAL && block < BUF_ALIGN {
                d.block.store(BUF_ALIGN, Relaxed);
                return Ok(true);
            }
            if res < 0 {
                return Err(self.err(io::Error::from_raw_os_error(-res)));
            }
            if (res as usize) < req.len {
                // A short read (the file shrank underneath, or a signal):
                // read the whole range again synchronously.
                self.read_exact(d, req, buf).map_err(|e| self.err(e))?;
            }
            *r = req.len as i32;
        }
        Ok(false)
    }

    /// Passes each row of the batch in `buf` to `f`, in order, and keeps
    /// the rows read from disk in the row cache.
    pub(super) fn deliver(
        &self,
        buf: &AlignedBuf,
        plan: &Plan,
        ord: &impl Fn(usize) -> u32,
        f: &mut impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let bytes: u64 = plan.reqs.iter().map(|r| r.len as u64).sum();
        DIRECT_ROWS.fetch_add(plan.reqs.len() as u64, Relaxed);
        DIRECT_BYTES.fetch_add(bytes, Relaxed);
        CACHED_ROWS.fetch_add((plan.at.len() - plan.reqs.len()) as u64, Relaxed);
        let buf = buf.bytes();
        let row = |i: usize| {
            let at = plan.at[i];
            buf.get(at..at + self.row_bytes)
                .and_then(|b| bytemuck::try_cast_slice::<u8, f32>(b).ok())
                .ok_or_else(|| self.err(io::Error::other("misaligned row buffer")))
        };
        for i in 0..plan.at.len() {
            f(i, row(i)?);
        }
        if let Some(cache) = &self.cache {
            for &i in &plan.missed {
                cache.put(ord(i), row(i)?);
            }
        }
        Ok(())
    }

    /// The row cache's capacity and resident bytes (zeros without one).
    pub(crate) fn cache_bytes(&self) -> (usize, usize) {
        self.cache.as_ref().map_or((0, 0), |c| {
            (c.capacity_rows() * self.row_bytes, c.resident_bytes())
        })
    }

    fn read_direct(
        &self,
        d: &Direct,
        l: &mut Local,
        count: usize,
        ord: &impl Fn(usize) -> u32,
        f: &mut impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let mut retried_block = false;
        loop {
            let block = d.block.load(Relaxed);
            self.plan(block, count, ord, &mut l.buf, &mut l.plan)?;
            l.results.clear();
            l.results.resize(l.plan.reqs.len(), 0);
            let base = l.buf.as_mut_ptr();
            let submitted = self.submit(d, &l.plan.reqs, base, &mut l.results);
            if let Err(e) = submitted {
                // Reads of the batch may still be in flight: never reuse
                // (or free) this buffer.
                l.buf.leak();
                return Err(self.err(e));
            }
            // An EINVAL at 512-byte granularity means a larger logical
            // block: retry the batch once at 4096.
            let retry = self.check(d, block, &l.plan.reqs, &mut l.results, &mut l.buf)?;
            if retry && !retried_block {
                retried_block = true;
                continue;
            }
            if retry {
                return Err(self.err(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            return self.deliver(&l.buf, &l.plan, ord, f);
        }
    }

    /// Reads `reqs` synchronously (every request in flight together), on
    /// this thread's ring or the pool.
    pub(super) fn submit(
        &self,
        d: &Direct,
        reqs: &[Req],
        base: *mut u8,
        results: &mut [i32],
    ) -> io::Result<()> {
        match d.backend {
            #[cfg(all(target_os = "linux", not(miri)))]
            Backend::Uring => super::uring::read_batch(&d.file, reqs, base, results),
            Backend::Pool => super::pool::read_batch(&d.file, reqs, base, results),
        }
    }

    /// One synchronous read of the whole of `req`, to its slot.
    fn read_exact(&self, d: &Direct, req: Req, buf: &mut AlignedBuf) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.fault == Some(ReadFault::Short) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read of {} bytes at offset {}", req.len, req.off),
            ));
        }
        // SAFETY: `buf` holds at least `buf_off + len` initialised bytes
        // (reserved for the batch), and no other read is in flight.
        let slot =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().add(req.buf_off), req.len) };
        d.file.read_exact_at(slot, req.off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_grow_aligned_and_zeroed() {
        let mut b = AlignedBuf::new();
        assert!(b.bytes().is_empty());
        for len in [1, 4096, 5000, 70_000] {
            b.reserve(len).unwrap();
            assert!(b.bytes().len() >= len);
            assert_eq!(b.as_mut_ptr() as usize % BUF_ALIGN, 0);
            assert!(b.bytes().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn auto_prefers_the_cheaper_way_and_explores() {
        let mut a = Auto::new();
        let mut direct_calls = 0;
        for _ in 0..2_000 {
            let (direct, explore) = a.choose();
            direct_calls += direct as usize;
            // Mapped rows cost 100 ns, direct ones 5 µs (a warm file).
            a.record(direct, explore, if direct { 5_000.0 } else { 100.0 });
        }
        assert!(!a.direct);
        assert!(direct_calls < 20, "{direct_calls}");
        let mut mapped_calls = 0;
        for _ in 0..2_000 {
            let (direct, explore) = a.choose();
            mapped_calls += !direct as usize;
            // Now mapped rows fault (80 µs) and direct ones cost 8 µs.
            a.record(direct, explore, if direct { 8_000.0 } else { 80_000.0 });
        }
        assert!(a.direct);
        assert!(mapped_calls < 40, "{mapped_calls}");
    }

    /// A cold start (the first mapped rows fault: 50 µs each) makes mapped
    /// reads look dear and moves a warm file to direct reads; the first
    /// exploring mapped sample (100 ns) brings it back, and then it stays.
    #[test]
    fn auto_recovers_from_a_cold_start_at_the_first_exploration() {
        let mut a = Auto::new();
        let mut direct_calls = 0;
        for q in 0..2_000 {
            let (direct, explore) = a.choose();
            direct_calls += direct as usize;
            let mapped = if q < 8 { 50_000.0 } else { 100.0 };
            a.record(direct, explore, if direct { 1_500.0 } else { mapped });
        }
        assert!(!a.direct);
        assert!(direct_calls <= 70, "{direct_calls}");
    }
}
