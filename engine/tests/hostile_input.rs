//! Issue 9 (defects 2, 5, 6) at the library level: batch searches check the
//! queries' dimension; a crafted sparse index claiming 400M vectors costs
//! little memory per search and per open; FIFOs in place of index or input
//! files are refused instead of blocking; thread counts are bounded; input
//! readers fail on a bad record without reading the whole file; builds
//! whose graphs may differ get different build ids; failed publishes and
//! compactions leave no temporary files.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::path::Path;
use std::time::Duration;
use strata::dataset::{self, clustered};
use strata::{
    BuildParams, CompactOptions, Durability, Error, Generation, Index, IndexBuilder, Metric,
    Quantization, Queries, SearchParams, Writer,
};

// ---------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by this thread.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only records sizes in a
// thread-local `Cell` (const-initialised, no destructor, never allocates).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|m| m.set(0));
    let r = f();
    (r, LARGEST.with(|m| m.get()))
}

const DIM: usize = 8;

fn written(dir: &Path, n: usize, quant: Quantization) -> dataset::Vectors {
    let data = clustered(n, DIM, 4, 0.2, 91);
    build(&data, params(Metric::L2, quant, 1))
        .write(dir)
        .unwrap();
    data
}

// ---------------------------------------------------------------------------
// Defect 2: queries of the wrong dimension.

#[test]
fn batch_queries_of_another_dimension_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 200, Quantization::Int8);
    let index = Generation::open(dir.path()).unwrap();
    let live = Index::open(dir.path()).unwrap();
    // Two 4-d queries are as many floats as one 8-d query: only the
    // queries' own dimension can tell them apart.
    let flat = vec![0.5f32; 2 * 4];
    let q = Queries::new(&flat, 4).unwrap();
    let sp = SearchParams::default();
    let check = |r: strata::Result<Vec<Vec<strata::Neighbor>>>, what: &str| match r {
        Err(e @ Error::DimensionMismatch { .. }) => {
            let Error::DimensionMismatch {
                expected,
                found,
                row,
            } = e
            else {
                unreachable!()
            };
            assert_eq!((expected, found, row), (DIM, 4, None), "{what}");
            let msg = e.to_string();
            assert!(
                msg.contains("expected 8") && msg.contains("found 4"),
                "{what}: {msg}"
            );
        }
        other => panic!("{what}: expected DimensionMismatch, got {other:?}"),
    };
    check(index.search_batch(q, 10, &sp), "Generation::search_batch");
    check(
        index.exact_search_batch(q, 10),
        "Generation::exact_search_batch",
    );
    check(live.search_batch(q, 10, &sp), "Index::search_batch");
    // The right dimension works, from a slice or from `Vectors`.
    let ok = Queries::new(&flat, DIM).unwrap();
    assert_eq!(index.search_batch(ok, 3, &sp).unwrap().len(), 1);
    let v = dataset::Vectors {
        dim: DIM,
        data: flat.clone(),
    };
    assert_eq!(live.search_batch(&v, 3, &sp).unwrap().len(), 1);
    // Partial rows and a zero dimension are refused when the batch is made.
    assert!(matches!(
        Queries::new(&flat[..7], 4),
        Err(Error::DimensionMismatch {
            expected: 4,
            found: 3,
            row: Some(1)
        })
    ));
    assert!(matches!(
        Queries::new(&flat, 0),
        Err(Error::InvalidParameter { name: "dim", .. })
    ));
}

// ---------------------------------------------------------------------------
// Defect 5: a crafted sparse index claiming 400M vectors.

const CLAIMED: u64 = 400_000_000;

fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn page_align(x: u64) -> u64 {
    x.div_ceil(4096) * 4096
}

/// Rewrites a freshly written 2-vector index (no codes, M = 2, max level 0)
/// into one whose headers claim `CLAIMED` vectors: every section has the
/// size the claim implies, the few checksums checked at open are right,
/// and the files are sparse (a few KiB on disk, holes elsewhere).
pub fn craft_sparse_index(dir: &Path) {
    let data = clustered(2, 4, 1, 0.1, 3);
    let p = BuildParams {
        m: 2,
        quantization: Quantization::None,
        ..params(Metric::L2, Quantization::None, 1)
    };
    build(&data, p).write(dir).unwrap();
    let (gpath, vpath) = (dir.join("g00000001.graph"), dir.join("g00000001.vectors"));
    let g = std::fs::read(&gpath).unwrap();
    let v = std::fs::read(&vpath).unwrap();
    let n = CLAIMED;
    let m0 = rd32(&g, 44) as u64;
    let padded = rd32(&v, 20) as u64;
    // Graph file: header page, level counts page, then holes.
    let mut page = g[..4096].to_vec();
    page[256..].fill(0);
    put64(&mut page, 32, n);
    put32(&mut page, 52, 0); // max_level
    put32(&mut page, 56, 0); // entry point
    let l0 = 8192u64;
    let l0_len = n * (1 + m0) * 4;
    let o2i = page_align(l0 + l0_len);
    let i2o = page_align(o2i + n * 8);
    let end = page_align(i2o + n * 16);
    let level_counts = (n as u32).to_le_bytes();
    let sections: [(u32, u64, u64, u32); 5] = [
        (4, 4096, 4, crc32fast::hash(&level_counts)),
        (5, l0, l0_len, 0),
        (6, o2i, 0, crc32fast::hash(&[])),
        (7, o2i, n * 8, 0),
        (8, i2o, n * 16, 0),
    ];
    for (i, (kind, off, len, crc)) in sections.iter().enumerate() {
        let e = 256 + 32 * i;
        put32(&mut page, e, *kind);
        put32(&mut page, e + 4, 0);
        put64(&mut page, e + 8, *off);
        put64(&mut page, e + 16, *len);
        put32(&mut page, e + 24, *crc);
        put32(&mut page, e + 28, 0);
    }
    put32(&mut page, 68, sections.len() as u32);
    put64(&mut page, 96, end);
    let mut h = crc32fast::Hasher::new();
    h.update(&page[..252]);
    h.update(&page[256..256 + 32 * sections.len()]);
    let crc = h.finalize();
    put32(&mut page, 252, crc);
    let mut lc_page = vec![0u8; 4096];
    lc_page[..4].copy_from_slice(&level_counts);
    let mut file = page;
    file.extend_from_slice(&lc_page);
    std::fs::write(&gpath, &file).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&gpath)
        .unwrap()
        .set_len(end)
        .unwrap();
    // Vectors file: header page, then holes.
    let mut vpage = v[..4096].to_vec();
    put64(&mut vpage, 32, n);
    put64(&mut vpage, 48, n * padded * 4);
    let crc = crc32fast::hash(&vpage[..124]);
    put32(&mut vpage, 124, crc);
    std::fs::write(&vpath, &vpage).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&vpath)
        .unwrap()
        .set_len(page_align(4096 + n * padded * 4))
        .unwrap();
}

#[test]
fn a_sparse_file_claiming_400m_vectors_costs_little_per_search() {
    let dir = tempfile::tempdir().unwrap();
    craft_sparse_index(dir.path());
    if let Ok(keep) = std::env::var("STRATA_KEEP_CRAFTED") {
        // For measuring the CLI by hand (`/usr/bin/time -v strata search ...`).
        craft_sparse_index(Path::new(&keep));
    }
    let q = [1.0f32, 0.0, 0.0, 0.0];
    let (hits, largest) = largest_allocation(|| {
        let index = Generation::open(dir.path()).unwrap();
        assert_eq!(index.len(), CLAIMED as usize);
        index.search(&q, 10, &SearchParams::with_ef(64)).unwrap()
    });
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(largest < 4 << 20, "one search allocated {largest} bytes");
    // Again on a thread whose scratch buffers are warm, and through the
    // live index (whose deleted-ordinal set must not be sized by the claim).
    let (hits, largest) = largest_allocation(|| {
        let live = Index::open(dir.path()).unwrap();
        assert_eq!(live.len(), CLAIMED as usize);
        live.search(&q, 10, &SearchParams::with_ef(200)).unwrap()
    });
    assert_eq!(hits.len(), 1);
    assert!(
        largest < 4 << 20,
        "live open + search allocated {largest} bytes"
    );
}

// ---------------------------------------------------------------------------
// Defect 5: FIFOs and other non-regular files.

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let ok = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", p.display());
}

/// Runs `f` on another thread; panics if it has not returned in 20 s (a
/// FIFO open blocks until a writer appears).
fn within_time<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what}: blocked for 20 s"))
}

fn assert_not_regular(e: &Error, name: &str) {
    match e {
        Error::Io { path, source } => {
            assert!(path.ends_with(name), "{e}");
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        other => panic!("{name}: expected Io(InvalidInput), got {other:?}"),
    }
}

#[test]
fn fifos_in_place_of_index_files_are_refused_not_blocking() {
    for name in ["MANIFEST", "g00000001.graph", "g00000001.vectors"] {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 100, Quantization::Int8);
        mkfifo(&dir.path().join(name));
        let d = dir.path().to_path_buf();
        let e = within_time(name, move || Generation::open(&d).err()).expect("opened");
        assert_not_regular(&e, name);
        let d = dir.path().to_path_buf();
        let e = within_time(name, move || Index::open(&d).err()).expect("opened");
        assert_not_regular(&e, name);
    }
    // The append log.
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 100, Quantization::Int8);
    mkfifo(&dir.path().join("g00000001.log"));
    let d = dir.path().to_path_buf();
    let e = within_time("log", move || Index::open(&d).err()).expect("opened");
    assert_not_regular(&e, "g00000001.log");
    // Input files, and a directory named like one.
    let dir = tempfile::tempdir().unwrap();
    for name in ["q.fvecs", "q.bvecs", "q.npy", "gt.ivecs"] {
        let p = dir.path().join(name);
        mkfifo(&p);
        let p2 = p.clone();
        let e = within_time(name, move || {
            if name.ends_with("ivecs") {
                dataset::read_ivecs(&p2).err()
            } else {
                dataset::read_vectors(&p2).err()
            }
        })
        .expect("read a FIFO");
        assert_not_regular(&e, name);
    }
    let sub = dir.path().join("d.fvecs");
    std::fs::create_dir(&sub).unwrap();
    let e = dataset::read_vectors(&sub).unwrap_err();
    assert!(e.to_string().contains("a directory"), "{e}");
}

// ---------------------------------------------------------------------------
// Defect 5: thread counts.

#[test]
fn thread_counts_above_the_limit_are_refused() {
    let max = strata::max_threads();
    assert!(max >= 64);
    for threads in [max + 1, 100_000, usize::MAX] {
        let p = BuildParams {
            threads,
            ..Default::default()
        };
        match IndexBuilder::new(DIM, p) {
            Err(Error::InvalidParameter { name, reason }) => {
                assert_eq!(name, "threads");
                assert!(reason.contains(&threads.to_string()), "{reason}");
            }
            Ok(_) => panic!("accepted {threads} threads"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(IndexBuilder::new(
        DIM,
        BuildParams {
            threads: max,
            ..Default::default()
        }
    )
    .is_ok());
    // Compaction builds with the same check.
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 50, Quantization::Int8);
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.delete(3).unwrap();
    let e = w
        .compact(CompactOptions {
            threads: 100_000,
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                name: "threads",
                ..
            }
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// Defect 5: readers validate as they stream.

#[test]
fn a_bad_record_at_byte_8_of_a_huge_file_fails_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let size = 256u64 << 20;
    // .fvecs: record 0 is one float; record 1 (byte 8) claims dimension 2.
    let p = dir.path().join("big.fvecs");
    let mut head = 1i32.to_le_bytes().to_vec();
    head.extend(1.0f32.to_le_bytes());
    head.extend(2i32.to_le_bytes());
    std::fs::write(&p, &head).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(size)
        .unwrap();
    let (r, largest) = largest_allocation(|| dataset::read_vectors(&p));
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("record 1 at byte offset 8 has dimension 2"),
        "{msg}"
    );
    assert!(largest < 1 << 20, "allocated {largest} bytes to find it");
    // .ivecs alike.
    let p = dir.path().join("big.ivecs");
    std::fs::write(&p, &head).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(size)
        .unwrap();
    let (r, largest) = largest_allocation(|| dataset::read_ivecs(&p));
    assert!(r.is_err());
    assert!(largest < 1 << 20, "allocated {largest} bytes");
    // .npy whose shape does not match its length: refused from the header.
    let p = dir.path().join("big.npy");
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    std::fs::write(&p, &npy).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(size)
        .unwrap();
    let (r, largest) = largest_allocation(|| dataset::read_vectors(&p));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("needs 48"), "{msg}");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
    // A pipe-like reader (no length, no seek) reads and validates too.
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.extend(2i32.to_le_bytes());
        ok.extend(1.5f32.to_le_bytes());
        ok.extend(2.5f32.to_le_bytes());
    }
    let v = dataset::read_fvecs_from(std::io::Cursor::new(ok), Path::new("<stdin>")).unwrap();
    assert_eq!((v.dim, v.len()), (2, 3));
}

// ---------------------------------------------------------------------------
// Defect 6: build ids.

#[test]
fn builds_whose_graphs_may_differ_get_different_build_ids() {
    let data = clustered(600, DIM, 4, 0.2, 17);
    let with = |threads| {
        build(
            &data,
            BuildParams {
                threads,
                ..params(Metric::L2, Quantization::Int8, 5)
            },
        )
        .build_id()
    };
    // Seeded single-thread builds stay identical...
    assert_eq!(with(1), with(1));
    // ...but other thread counts are other builds, and so are repeated
    // multi-thread builds (their graphs depend on scheduling).
    let (one, two, three) = (with(1), with(2), with(3));
    assert_ne!(one, two);
    assert_ne!(two, three);
    assert_ne!(with(2), with(2));
    assert_ne!(with(0), with(0));
}

// ---------------------------------------------------------------------------
// Defect 6: temporary files on failed publishes and compactions.

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_build_publish_leaves_no_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the vectors file must go: its rename fails after
    // the graph file and the vectors temp file were written.
    std::fs::create_dir(dir.path().join("g00000001.vectors")).unwrap();
    let data = clustered(100, DIM, 4, 0.2, 5);
    let e = build(&data, params(Metric::L2, Quantization::Int8, 1))
        .write(dir.path())
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_eq!(names(dir.path()), vec!["LOCK", "g00000001.vectors"]);
}

#[test]
fn a_failed_compaction_leaves_no_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 100, Quantization::Int8);
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.delete(7).unwrap();
    let before = names(dir.path());
    std::fs::create_dir(dir.path().join("g00000002.vectors")).unwrap();
    let e = w.compact(CompactOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    std::fs::remove_dir(dir.path().join("g00000002.vectors")).unwrap();
    assert_eq!(names(dir.path()), before);
    // The writer still works, and a retry succeeds.
    w.delete(8).unwrap();
    assert_eq!(w.compact(CompactOptions::default()).unwrap().generation, 2);
}
