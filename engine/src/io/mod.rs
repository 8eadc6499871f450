//! How rescoring reads the full-precision rows of the vectors file.
//!
//! Traversal runs on the codes in the graph file; only the final candidates'
//! rows are read, to rescore them. Through the memory map each row that is
//! not in the page cache costs one synchronous page fault, taken one after
//! the other: beyond RAM a query then waits for `ef` disk reads in series.
//! The *direct* backends instead read all of a query's rows at once (every
//! request in flight together) with `O_DIRECT` into aligned per-thread
//! buffers, so the disk serves them in parallel and rows read once for
//! rescoring do not push links and codes out of the page cache:
//!
//! * [`IoMode::Uring`]: one io_uring per thread (Linux);
//! * [`IoMode::Pread`]: a small process-wide pool of `pread` threads, the
//!   portable fallback;
//! * [`IoMode::Willneed`]: `madvise(MADV_WILLNEED)` over the candidate rows
//!   of the mapping, then mapped reads (batched, but through the page cache);
//! * [`IoMode::Mmap`]: mapped reads only (fastest while the file is cached);
//! * [`IoMode::Auto`] (the default): batched buffered reads (io_uring if the
//!   kernel offers it, else the pread pool) while they are cheaper than
//!   mapped reads, mapped reads otherwise (see [`IoMode::Auto`]).
//!
//! Which to choose (`benches/beyond_ram.py`, npm-minilm int8, ef 32, one
//! thread, 2 shared cores): with the index in the page cache, mapped reads
//! (and `Auto`, which stays on them) are 4–6× faster than any batched read.
//! Under a memory cap of the graph plus a quarter of the vectors file,
//! `Uring` served 2.5–3× the QPS of `Mmap` and kept the whole graph
//! mapping resident, while `Auto`'s buffered reads served 2× `Mmap` but
//! let the page cache evict part of the graph. For an index known to
//! exceed RAM, choose `Uring` (with [`OpenOptions::rescore_cut`](crate::OpenOptions::rescore_cut)
//! for int8); `Auto` is the default because it is never much slower than
//! mapped reads when the file is cached.
//!
//! Two more things make direct reads fast beyond RAM:
//!
//! * [`Generation::search_batch`](crate::Generation::search_batch) *pipelines* its
//!   queries on each thread (`pipeline.rs`): the reads of up to
//!   [`PIPELINE_DEPTH`](crate::PIPELINE_DEPTH) queries are in flight while
//!   the next query traverses, so one thread keeps the disk's queue full;
//! * a *row cache* (`row_cache.rs`, [`OpenOptions::row_cache_bytes`](crate::OpenOptions::row_cache_bytes))
//!   keeps rows read directly in a RAM budget of their own (CLOCK
//!   replacement) and serves them when rescored again: direct reads bypass
//!   the page cache, so without it RAM beyond the graph is never used for
//!   rows.
//!
//! Every backend computes the same distances from the same bytes: results
//! are identical bit for bit. A failed read is an [`Error::Io`](crate::Error::Io)
//! naming the vectors file.

mod direct;
mod pipeline;
mod pool;
mod row_cache;
#[cfg(all(target_os = "linux", not(miri)))]
mod uring;

pub(crate) use direct::RowReader;
pub(crate) use pipeline::RowPipeline;

/// How rescoring reads full-precision rows (see the [module docs](self)).
///
/// ```
/// use strata::{dataset, BuildParams, Generation, IndexBuilder, IoMode, OpenOptions, SearchParams};
/// let data = dataset::clustered(1_000, 16, 8, 0.05, 1);
/// let mut b = IndexBuilder::new(16, BuildParams { seed: Some(1), ..Default::default() })?;
/// b.add_rows(&data.data)?;
/// let dir = tempfile::tempdir().unwrap();
/// b.build()?.write(dir.path())?;
/// let params = SearchParams::with_ef(32);
/// let mapped = Generation::open_with(dir.path(), &OpenOptions { io: IoMode::Mmap, ..Default::default() })?;
/// let direct = Generation::open_with(dir.path(), &OpenOptions { io: IoMode::Pread, ..Default::default() })?;
/// assert_eq!(mapped.search(data.row(3), 10, &params)?, direct.search(data.row(3), 10, &params)?);
/// assert_eq!("uring".parse::<IoMode>(), Ok(IoMode::Uring));
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// Batched reads (io_uring where available, else the pread pool) or
    /// mapped reads, whichever is currently cheaper. Unlike
    /// [`IoMode::Uring`] and [`IoMode::Pread`], the batched reads are
    /// buffered (not `O_DIRECT`): they hit the page cache when it holds the
    /// rows and fill it otherwise, so an index opened cold on a machine with
    /// RAM to spare warms up and returns to mapped reads. Each thread keeps a
    /// running cost per row of both and uses the cheaper, trying the other
    /// one now and then (every 64th query, backing off to every 1,024th
    /// while the choice is confirmed). A warm index stays on mapped reads;
    /// one whose rows miss the page cache moves to direct reads.
    #[default]
    Auto,
    /// Mapped reads only: one page fault per uncached row.
    Mmap,
    /// `madvise(MADV_WILLNEED)` over all candidate rows, then mapped reads.
    Willneed,
    /// `O_DIRECT` reads through one io_uring per thread (Linux; an error at
    /// open where the kernel refuses io_uring).
    Uring,
    /// `O_DIRECT` reads through a pool of `pread` threads (any Unix).
    Pread,
}

impl IoMode {
    /// The mode's name, as [`str::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Mmap => "mmap",
            IoMode::Willneed => "willneed",
            IoMode::Uring => "uring",
            IoMode::Pread => "pread",
        }
    }

    /// Every mode, in declaration order.
    pub const ALL: [IoMode; 5] = [
        IoMode::Auto,
        IoMode::Mmap,
        IoMode::Willneed,
        IoMode::Uring,
        IoMode::Pread,
    ];
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<IoMode, String> {
        IoMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown I/O mode {s:?}: expected auto, mmap, willneed, uring or pread")
            })
    }
}

/// Whether this process can use io_uring (probed once: a ring is created
/// and dropped; seccomp filters or old kernels refuse it).
pub fn uring_available() -> bool {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        uring::available()
    }
    #[cfg(any(not(target_os = "linux"), miri))]
    {
        false
    }
}

/// A fault injected into direct row reads, for tests of the error paths
/// (not a stable API).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    /// Every read fails with `EIO`.
    Eio,
    /// Every read returns half the bytes asked for (retries too).
    Short,
}

/// Counters of the direct reads this process has made (all indexes, all
/// threads): for benchmarks and `eval`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Rows read by direct reads.
    pub direct_rows: u64,
    /// Bytes those reads transferred.
    pub direct_bytes: u64,
    /// Rows read through the mapping (mmap and willneed modes, and auto
    /// while it prefers the mapping).
    pub mapped_rows: u64,
    /// Rows of direct-read batches served by the row cache
    /// ([`OpenOptions::row_cache_bytes`](crate::OpenOptions::row_cache_bytes)).
    pub cached_rows: u64,
}

/// The process's [`IoStats`] so far.
pub fn io_stats() -> IoStats {
    direct::stats()
}
