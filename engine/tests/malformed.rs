//! Pins validation of untrusted files: starting from a valid index's graph
//! and vectors bytes (and its MANIFEST), each field of the format is mutated
//! — re-sealing the header CRC where the point is to reach the field's own
//! check — and opening must fail with the specific typed error (variant,
//! file, and the `what` that names the field or section), never panic and
//! never allocate in proportion to what a header claims. Base indexes exist
//! for every code kind (none, int8, product quantization, binary), so the
//! version-2 rules are pinned too: the quantizer parameter at header offset
//! 104 (PQ's m in `1..=dim`, zero otherwise), each kind's code stride, the
//! sections each kind requires or forbids (`code_norms` for int8 only,
//! `binary_factors` for binary only), each kind's `quant_params` length and
//! finiteness, and that a version-1 header may only declare none or int8.
//! Also pins that section CRCs are checked by `from_bytes` and `verify()`
//! (but not by a plain mmap `open` for large sections), that optional
//! unknown sections are skipped, and that a hostile but checksum-consistent
//! graph (out-of-range, self and duplicate links, over-long link counts,
//! garbage id maps, non-finite code parameters) is searched without
//! panicking, returning only ids the index holds.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;
use strata::dataset::clustered;
use strata::{
    BuildParams, Error, FileKind, Generation, Metric, OpenOptions, Quantization, SearchParams,
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

/// Runs `f` and returns the largest single allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|m| m.set(0));
    let r = f();
    (r, LARGEST.with(|m| m.get()))
}

// ---------------------------------------------------------------------------
// Byte layout (format-spec/graph-file.md, vectors-file.md, manifest.md).

const PAGE: usize = 4096;
const G_VERSION: usize = 8;
const G_FLAGS: usize = 12;
const G_DIM: usize = 16;
const G_PADDED: usize = 20;
const G_METRIC: usize = 24;
const G_ELEMENT: usize = 28;
const G_COUNT: usize = 32;
const G_M: usize = 40;
const G_M0: usize = 44;
const G_EFC: usize = 48;
const G_MAX_LEVEL: usize = 52;
const G_ENTRY: usize = 56;
const G_QUANT: usize = 60;
const G_CODE_STRIDE: usize = 64;
const G_SECTION_COUNT: usize = 68;
const G_BUILD_ID: usize = 80;
const G_FILE_LEN: usize = 96;
/// Version 2: PQ's m, else 0.
const G_QUANT_PARAM: usize = 104;
/// Reserved header bytes `[108, 252)`.
const G_RESERVED: usize = 108;
const G_CRC: usize = 252;
const TABLE: usize = 256;
const ENTRY: usize = 32;

const V_VERSION: usize = 8;
const V_FLAGS: usize = 12;
const V_DIM: usize = 16;
const V_PADDED: usize = 20;
const V_ELEMENT: usize = 24;
const V_COUNT: usize = 32;
const V_DATA_OFFSET: usize = 40;
const V_DATA_LEN: usize = 48;
const V_DATA_CRC: usize = 56;
const V_BUILD_ID: usize = 64;
const V_CRC: usize = 124;

const QUANT_PARAMS: u32 = 1;
const CODES: u32 = 2;
const CODE_NORMS: u32 = 3;
const LEVEL_COUNTS: u32 = 4;
const LINKS_L0: u32 = 5;
const LINKS_UPPER: u32 = 6;
const ORD_TO_ID: u32 = 7;
const ID_TO_ORD: u32 = 8;
const BINARY_FACTORS: u32 = 9;
const RESIDUAL_CODES: u32 = 10;
const ALL_KINDS: [(u32, &str); 10] = [
    (QUANT_PARAMS, "quant_params"),
    (CODES, "codes"),
    (CODE_NORMS, "code_norms"),
    (LEVEL_COUNTS, "level_counts"),
    (LINKS_L0, "links_level0"),
    (LINKS_UPPER, "links_upper"),
    (ORD_TO_ID, "ordinal_to_id"),
    (ID_TO_ORD, "id_to_ordinal"),
    (BINARY_FACTORS, "binary_factors"),
    (RESIDUAL_CODES, "residual_codes"),
];

fn wr64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn wrf32(b: &mut [u8], off: usize, v: f32) {
    wr32(b, off, v.to_bits());
}

/// Recomputes the graph header CRC: CRC32 of `[0, 252)` followed by the
/// first `section_count` (at most 120) table entries, stored LE at 252.
fn reseal(g: &mut [u8]) {
    let sc = (rd32(g, G_SECTION_COUNT) as usize).min((PAGE - TABLE) / ENTRY);
    let mut h = crc32fast::Hasher::new();
    h.update(&g[..G_CRC]);
    h.update(&g[TABLE..TABLE + ENTRY * sc]);
    let crc = h.finalize();
    wr32(g, G_CRC, crc);
}

/// Recomputes the vectors header CRC (CRC32 of `[0, 124)`, stored at 124).
fn reseal_vectors(v: &mut [u8]) {
    let crc = crc32fast::hash(&v[..V_CRC]);
    wr32(v, V_CRC, crc);
}

fn section_count(g: &[u8]) -> usize {
    rd32(g, G_SECTION_COUNT) as usize
}

/// The known sections present in `g`, in `ALL_KINDS` order.
fn present_kinds(g: &[u8]) -> Vec<(u32, &'static str)> {
    ALL_KINDS
        .into_iter()
        .filter(|(kind, _)| (0..section_count(g)).any(|i| rd32(g, TABLE + i * ENTRY) == *kind))
        .collect()
}

/// Byte offset of the section table entry of `kind`.
fn entry_of(g: &[u8], kind: u32) -> usize {
    (0..section_count(g))
        .map(|i| TABLE + i * ENTRY)
        .find(|&e| rd32(g, e) == kind)
        .unwrap_or_else(|| panic!("no section of kind {kind}"))
}

/// `(offset, len)` of the section of `kind`.
fn section(g: &[u8], kind: u32) -> (usize, usize) {
    let e = entry_of(g, kind);
    (rd64(g, e + 8) as usize, rd64(g, e + 16) as usize)
}

/// Recomputes the CRC of the section of `kind` in the table, then reseals.
fn fix_section_crc(g: &mut [u8], kind: u32) {
    let e = entry_of(g, kind);
    let (off, len) = section(g, kind);
    let crc = crc32fast::hash(&g[off..off + len]);
    wr32(g, e + 24, crc);
    reseal(g);
}

fn open(g: &[u8], v: &[u8]) -> Result<Generation, Error> {
    Generation::from_bytes(g, v)
}

fn open_err(g: &[u8], v: &[u8], case: &str) -> Error {
    match Generation::from_bytes(g, v) {
        Ok(_) => panic!("{case}: malformed files were accepted"),
        Err(e) => e,
    }
}

/// Asserts `Corrupt { file, what ⊇ what_sub }`.
fn assert_corrupt(e: &Error, file: FileKind, what_sub: &str, case: &str) {
    match e {
        Error::Corrupt { file: f, what, .. } if *f == file && what.contains(what_sub) => {}
        other => {
            panic!("{case}: expected Corrupt {{ {file:?}, what ⊇ {what_sub:?} }}, got {other:?}")
        }
    }
}

/// Asserts `Corrupt { file: Graph, what == what, expected == expected }`.
fn assert_corrupt_exact(e: &Error, what: &str, expected: &str, case: &str) {
    match e {
        Error::Corrupt {
            file: FileKind::Graph,
            what: w,
            expected: x,
            ..
        } if w == what && x == expected => {}
        other => panic!(
            "{case}: expected Corrupt {{ Graph, what: {what:?}, expected: {expected:?} }}, got {other:?}"
        ),
    }
}

/// Mutates a copy of a graph, reseals the header, and returns the error.
fn graph_err(b: &Base, case: &str, mutate: impl FnOnce(&mut Vec<u8>)) -> Error {
    let mut g = b.g.clone();
    mutate(&mut g);
    reseal(&mut g);
    open_err(&g, &b.v, case)
}

fn assert_checksum(e: &Error, file: FileKind, what_sub: &str, case: &str) {
    match e {
        Error::ChecksumMismatch {
            file: f,
            what,
            stored,
            computed,
        } if *f == file && what.contains(what_sub) => assert_ne!(stored, computed),
        other => panic!(
            "{case}: expected ChecksumMismatch {{ {file:?}, what ⊇ {what_sub:?} }}, got {other:?}"
        ),
    }
}

/// Mutates a copy of the base graph, reseals the header, expects `Corrupt`.
fn expect_graph_corrupt(
    base: &Base,
    what_sub: &str,
    case: &str,
    mutate: impl FnOnce(&mut Vec<u8>),
) {
    let mut g = base.g.clone();
    mutate(&mut g);
    reseal(&mut g);
    let e = open_err(&g, &base.v, case);
    assert_corrupt(&e, FileKind::Graph, what_sub, case);
}

/// Mutates a copy of the base vectors file, reseals it, expects `Corrupt`.
fn expect_vectors_corrupt(
    base: &Base,
    what_sub: &str,
    case: &str,
    mutate: impl FnOnce(&mut Vec<u8>),
) {
    let mut v = base.v.clone();
    mutate(&mut v);
    reseal_vectors(&mut v);
    let e = open_err(&base.g, &v, case);
    assert_corrupt(&e, FileKind::Vectors, what_sub, case);
}

// ---------------------------------------------------------------------------
// Base indexes.

struct Base {
    g: Vec<u8>,
    v: Vec<u8>,
    data: strata::dataset::Vectors,
    quant: Quantization,
    dim: usize,
    n: usize,
    padded: usize,
    m: usize,
    max_level: usize,
    level_counts: Vec<u32>,
}

/// 400 × 8 vectors, L2, M = 4 (so the graph has upper levels); PQ with
/// m = 3 (sub-vectors of 3, 3 and 2 components).
fn make_base(quant: Quantization) -> Base {
    let data = clustered(400, 8, 4, 0.15, 71);
    let p = BuildParams {
        m: 4,
        ef_construction: 32,
        pq_m: Some(3),
        pq_train_size: 400,
        ..params(Metric::L2, quant, 3)
    };
    let base = from_build(data, p);
    assert!(base.max_level >= 2, "base index needs upper levels");
    base
}

fn from_build(data: strata::dataset::Vectors, p: BuildParams) -> Base {
    let quant = p.quantization;
    let built = build(&data, p);
    let (g, v) = (built.graph_bytes().to_vec(), built.vectors_bytes().to_vec());
    let info = in_memory(built).info();
    assert_eq!(info.quantization, quant);
    Base {
        quant,
        dim: info.dim,
        n: info.count,
        padded: info.dim.div_ceil(16) * 16,
        m: info.m,
        max_level: info.max_level,
        level_counts: info.level_counts,
        data,
        g,
        v,
    }
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::Int8))
}

fn base_none() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::None))
}

fn base_pq() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::Pq))
}

fn base_binary() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::Binary))
}

fn base_lvq8() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::Lvq8))
}

fn base_lvq4x8() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| make_base(Quantization::Lvq4x8))
}

/// Every base index: none, int8, pq, binary, lvq8.
fn all_bases() -> [&'static Base; 6] {
    [
        base_none(),
        base(),
        base_pq(),
        base_binary(),
        base_lvq8(),
        base_lvq4x8(),
    ]
}

/// 60 × 40 vectors, PQ with m = 20: code stride 32 (m rounded up to 16).
fn wide_pq() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let p = BuildParams {
            pq_m: Some(20),
            pq_train_size: 60,
            ..params(Metric::L2, Quantization::Pq, 4)
        };
        from_build(clustered(60, 40, 3, 0.2, 72), p)
    })
}

/// 60 × 140 vectors (padded 144), binary: code stride 32 (144 bits = 18
/// bytes, rounded up to 16).
fn wide_binary() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let p = params(Metric::L2, Quantization::Binary, 4);
        from_build(clustered(60, 140, 3, 0.2, 73), p)
    })
}

/// Searches a few queries at several settings; every returned id must be
/// held by the index, results sorted and distinct.
fn exercise(index: &Generation, queries: &strata::dataset::Vectors) {
    for (k, ef) in [(1, 1), (10, 32), (50, 100)] {
        for q in queries.rows() {
            let hits = index.search(q, k, &SearchParams::with_ef(ef)).unwrap();
            assert!(!hits.is_empty() && hits.len() <= k);
            for h in &hits {
                assert!(
                    index.contains(h.id),
                    "returned id {} not in the index",
                    h.id
                );
            }
            assert!(hits
                .windows(2)
                .all(|w| w[0].distance.total_cmp(&w[1].distance).is_le()));
            let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), hits.len(), "duplicate ids in results");
        }
    }
}

// ---------------------------------------------------------------------------
// Sanity of the helpers.

#[test]
fn base_is_valid_and_helpers_reproduce_its_checksums() {
    for b in all_bases().into_iter().chain([wide_pq(), wide_binary()]) {
        let mut g = b.g.clone();
        reseal(&mut g);
        assert!(g == b.g, "reseal reproduces the stored header CRC");
        for (kind, _) in present_kinds(&g) {
            fix_section_crc(&mut g, kind);
        }
        assert!(
            g == b.g,
            "fix_section_crc reproduces the stored section CRCs"
        );
        let mut v = b.v.clone();
        reseal_vectors(&mut v);
        assert!(v == b.v);
        let index = open(&b.g, &b.v).unwrap();
        index.verify().unwrap();
        assert_eq!(index.quantization(), b.quant);
        assert_eq!(rd64(&b.g, G_FILE_LEN) as usize, b.g.len());
        // The oldest version that holds the codes.
        let version = b.quant.format_version(Metric::L2); // every base is l2
        assert_eq!(rd32(&b.g, G_VERSION), version, "{:?}", b.quant);
        assert_eq!(rd32(&b.v, V_VERSION), version, "{:?}", b.quant);
        assert_eq!(rd32(&b.g, G_QUANT), b.quant.code());
        assert!(b.g[G_RESERVED..G_CRC].iter().all(|x| *x == 0));
    }
    let names = |b: &Base| -> Vec<&str> { present_kinds(&b.g).iter().map(|k| k.1).collect() };
    assert_eq!(section_count(&base().g), 8);
    assert_eq!(section_count(&base_none().g), 5);
    assert_eq!(section_count(&base_pq().g), 7);
    assert_eq!(section_count(&base_binary().g), 8);
    assert!(names(base()).contains(&"code_norms"));
    assert!(!names(base_pq()).contains(&"code_norms"));
    assert!(!names(base_pq()).contains(&"binary_factors"));
    assert!(names(base_binary()).contains(&"binary_factors"));
    assert!(!names(base_binary()).contains(&"code_norms"));
    // LVQ-8 under L2: `(lo, step)` per vector and `‖x̂‖²`.
    assert_eq!(section_count(&base_lvq8().g), 9);
    assert!(names(base_lvq8()).contains(&"binary_factors"));
    assert!(names(base_lvq8()).contains(&"code_norms"));
    assert!(!names(base_lvq8()).contains(&"residual_codes"));
    // LVQ-4x8 under L2: the same, and the residual codes.
    assert_eq!(section_count(&base_lvq4x8().g), 10);
    assert!(names(base_lvq4x8()).contains(&"residual_codes"));
    // The quantizer parameter and the code strides.
    for (b, param, stride) in [
        (base_none(), 0, 0),
        (base(), 0, 16),
        (base_pq(), 3, 16),
        (base_binary(), 0, 16),
        (base_lvq8(), 0, 16),
        (base_lvq4x8(), 0, 8),
        (wide_pq(), 20, 32),
        (wide_binary(), 0, 32),
    ] {
        assert_eq!(rd32(&b.g, G_QUANT_PARAM), param, "{:?}", b.quant);
        assert_eq!(rd32(&b.g, G_CODE_STRIDE), stride, "{:?}", b.quant);
    }
}

// ---------------------------------------------------------------------------
// Magic, version, header CRC.

#[test]
fn bad_magic() {
    let b = base();
    let mut g = b.g.clone();
    g[0] ^= 0x20;
    match open_err(&g, &b.v, "graph magic") {
        Error::BadMagic { file, found } => {
            assert_eq!(file, FileKind::Graph);
            assert_eq!(&found, b"sTRATAGF");
        }
        e => panic!("expected BadMagic, got {e:?}"),
    }
    // The two files swapped.
    match open_err(&b.v, &b.g, "swapped") {
        Error::BadMagic { file, found } => {
            assert_eq!(file, FileKind::Graph);
            assert_eq!(&found, b"STRATAVF");
        }
        e => panic!("expected BadMagic, got {e:?}"),
    }
    let mut v = b.v.clone();
    v[7] = b'X';
    match open_err(&b.g, &v, "vectors magic") {
        Error::BadMagic { file, found } => {
            assert_eq!(file, FileKind::Vectors);
            assert_eq!(&found, b"STRATAVX");
        }
        e => panic!("expected BadMagic, got {e:?}"),
    }
    // Random bytes and all-zero pages.
    assert!(matches!(
        open_err(&vec![0u8; 3 * PAGE], &b.v, "zeros"),
        Error::BadMagic { .. }
    ));
}

/// LVQ-8 codes first appeared in version 5: a file that claims an older
/// version with them is refused, naming the field, never read as another
/// layout.
#[test]
fn lvq8_codes_in_an_older_version_are_refused() {
    for b in [base_lvq8(), base_lvq4x8()] {
        for version in [1, 2, 3, 4] {
            let mut g = b.g.clone();
            wr32(&mut g, G_VERSION, version);
            reseal(&mut g);
            match open_err(&g, &b.v, "lvq8 in an older version") {
                Error::Corrupt { what, .. } => {
                    assert!(what.contains("quantization"), "version {version}: {what}")
                }
                e => panic!("version {version}: expected Corrupt, got {e:?}"),
            }
        }
    }
}

#[test]
fn unsupported_version() {
    // Versions 1..=6 are read (1 and 2 for compatibility, 3 and 4 as
    // version 2: they were directory versions, see format-spec/versions.md;
    // 5 for LVQ, 6 is current); every other version is refused before
    // anything else is looked at.
    for b in [base(), base_pq(), base_binary()] {
        for version in [0, 7, 8, 1000, u32::MAX] {
            for seal in [false, true] {
                let mut g = b.g.clone();
                wr32(&mut g, G_VERSION, version);
                if seal {
                    reseal(&mut g);
                }
                match open_err(&g, &b.v, "graph version") {
                    Error::UnsupportedVersion {
                        file,
                        found,
                        oldest,
                        newest,
                    } => assert_eq!(
                        (file, found, oldest, newest),
                        (FileKind::Graph, version, 1, 6)
                    ),
                    e => panic!("graph version {version}: expected UnsupportedVersion, got {e:?}"),
                }
                let mut v = b.v.clone();
                wr32(&mut v, V_VERSION, version);
                if seal {
                    reseal_vectors(&mut v);
                }
                match open_err(&b.g, &v, "vectors version") {
                    Error::UnsupportedVersion {
                        file,
                        found,
                        oldest,
                        newest,
                    } => assert_eq!(
                        (file, found, oldest, newest),
                        (FileKind::Vectors, version, 1, 6)
                    ),
                    e => {
                        panic!("vectors version {version}: expected UnsupportedVersion, got {e:?}")
                    }
                }
            }
        }
    }
}

/// An int8 or unquantized file relabelled as version 1 is a valid version-1
/// file (version 2 changed nothing for them): it opens and answers
/// bit-identically, whichever version the vectors file carries.
#[test]
fn version_1_none_and_int8_files_are_read() {
    for b in [base_none(), base()] {
        let mut g1 = b.g.clone();
        wr32(&mut g1, G_VERSION, 1);
        reseal(&mut g1);
        let mut v1 = b.v.clone();
        wr32(&mut v1, V_VERSION, 1);
        reseal_vectors(&mut v1);
        let reference = open(&b.g, &b.v).unwrap();
        let queries = perturbed_queries(&b.data, 20, 0.05, 4);
        let sp = SearchParams::with_ef(32);
        let want = bits(&search_all(&reference, &queries, 5, &sp));
        for (g, v) in [(&g1, &v1), (&g1, &b.v), (&b.g, &v1)] {
            let index = open(g, v).unwrap();
            assert_eq!(index.quantization(), b.quant);
            assert_eq!(index.info().format_version, rd32(g, G_VERSION));
            assert_eq!(index.info().pq_m, 0);
            assert_eq!(bits(&search_all(&index, &queries, 5, &sp)), want);
        }
    }
}

/// Version 1 knew only none and int8: a version-1 header declaring product
/// quantization (2) or binary codes (3) is rejected, even though the same
/// bytes labelled version 2 are valid.
#[test]
fn version_1_header_declaring_pq_or_binary_is_rejected() {
    for b in [base_pq(), base_binary(), wide_pq(), wide_binary()] {
        let quant = rd32(&b.g, G_QUANT);
        assert!(quant == 2 || quant == 3);
        let case = format!("version 1 with quantization {quant}");
        let e = graph_err(b, &case, |g| wr32(g, G_VERSION, 1));
        assert_corrupt_exact(
            &e,
            "header field quantization",
            "0 (none) or 1 (int8) in a version 1 file",
            &case,
        );
        match e {
            Error::Corrupt { found, .. } => assert_eq!(found, quant.to_string(), "{case}"),
            _ => unreachable!(),
        }
    }
    // The same for the other unknown-to-v1 codes written into a v1 int8 file.
    for quant in [2u32, 3] {
        let case = format!("v1 int8 file relabelled {quant}");
        let e = graph_err(base(), &case, |g| {
            wr32(g, G_VERSION, 1);
            wr32(g, G_QUANT, quant);
        });
        assert_corrupt_exact(
            &e,
            "header field quantization",
            "0 (none) or 1 (int8) in a version 1 file",
            &case,
        );
    }
}

#[test]
fn header_crc_covers_header_and_section_table() {
    let b = base();
    let covered_end = TABLE + ENTRY * section_count(&b.g);
    // Every covered byte but magic (checked first), version (checked before
    // the CRC) and section_count (whose own range check comes first).
    let skip = |o: usize| o < 12 || (G_SECTION_COUNT..G_SECTION_COUNT + 4).contains(&o);
    for off in (0..covered_end).filter(|o| !skip(*o)) {
        let mut g = b.g.clone();
        g[off] ^= 0x10;
        let e = open_err(&g, &b.v, &format!("flip at {off}"));
        assert_checksum(&e, FileKind::Graph, "header", &format!("flip at {off}"));
    }
    // Lowering section_count shrinks the covered table: CRC no longer matches.
    let mut g = b.g.clone();
    wr32(&mut g, G_SECTION_COUNT, 7);
    assert_checksum(&open_err(&g, &b.v, "sc"), FileKind::Graph, "header", "sc");

    // Vectors header: every byte after magic and version, the stored CRC included.
    for off in 12..128 {
        let mut v = b.v.clone();
        v[off] ^= 0x01;
        let e = open_err(&b.g, &v, &format!("vectors flip at {off}"));
        assert_checksum(
            &e,
            FileKind::Vectors,
            "header",
            &format!("vectors flip at {off}"),
        );
    }
}

// ---------------------------------------------------------------------------
// File length and truncation.

#[test]
fn file_len_field_must_match() {
    let b = base();
    let len = b.g.len() as u64;
    for claimed in [
        0,
        len - 1,
        len + 1,
        len - PAGE as u64,
        len + PAGE as u64,
        u64::MAX,
    ] {
        expect_graph_corrupt(b, "file length", &format!("file_len {claimed}"), |g| {
            wr64(g, G_FILE_LEN, claimed)
        });
    }
    // Appending bytes without updating the header.
    for extra in [1, PAGE] {
        let mut g = b.g.clone();
        g.resize(g.len() + extra, 0);
        assert_corrupt(
            &open_err(&g, &b.v, "extended"),
            FileKind::Graph,
            "file length",
            "extended",
        );
        let mut v = b.v.clone();
        v.resize(v.len() + extra, 0);
        assert_corrupt(
            &open_err(&b.g, &v, "extended v"),
            FileKind::Vectors,
            "file length",
            "extended v",
        );
    }
}

fn truncation_points(file_len: usize, sections: &[(usize, usize)]) -> Vec<usize> {
    let mut at: Vec<usize> = (0..=PAGE).collect();
    for &(off, len) in sections {
        let end = off + len;
        at.extend([off - 1, off, off + 1, end.saturating_sub(1), end, end + 1]);
        at.push(end.div_ceil(PAGE) * PAGE - 1);
    }
    at.extend([file_len - 1, file_len - PAGE]);
    at.retain(|&t| t < file_len);
    at.sort_unstable();
    at.dedup();
    at
}

#[test]
fn truncated_graph_file_is_an_error_at_every_point() {
    for b in all_bases() {
        let sections: Vec<(usize, usize)> = (0..section_count(&b.g))
            .map(|i| {
                let e = TABLE + i * ENTRY;
                (rd64(&b.g, e + 8) as usize, rd64(&b.g, e + 16) as usize)
            })
            .collect();
        for t in truncation_points(b.g.len(), &sections) {
            let case = format!("graph truncated to {t}");
            let r = catch_unwind(AssertUnwindSafe(|| open(&b.g[..t], &b.v).err()));
            match r {
                Ok(Some(e)) => assert_corrupt(&e, FileKind::Graph, "file length", &case),
                Ok(None) => panic!("{case}: accepted"),
                Err(_) => panic!("{case}: panicked"),
            }
        }
    }
}

#[test]
fn truncated_vectors_file_is_an_error_at_every_point() {
    let b = base();
    let data_len = rd64(&b.v, V_DATA_LEN) as usize;
    for t in truncation_points(b.v.len(), &[(PAGE, data_len)]) {
        let case = format!("vectors truncated to {t}");
        let r = catch_unwind(AssertUnwindSafe(|| open(&b.g, &b.v[..t]).err()));
        match r {
            Ok(Some(e)) => assert_corrupt(&e, FileKind::Vectors, "file length", &case),
            Ok(None) => panic!("{case}: accepted"),
            Err(_) => panic!("{case}: panicked"),
        }
    }
}

// ---------------------------------------------------------------------------
// Header fields.

#[test]
fn header_field_values_out_of_range() {
    let b = base();
    let n = b.n as u64;
    let m = b.m as u32;
    let cases: Vec<(&str, usize, u64, bool)> = vec![
        // (what, offset, value, is_u64)
        ("header field flags", G_FLAGS, 1, false),
        ("header field flags", G_FLAGS, 0x8000_0000, false),
        ("header field metric", G_METRIC, 3, false),
        ("header field metric", G_METRIC, u32::MAX as u64, false),
        ("header field quantization", G_QUANT, 4, false),
        ("header field quantization", G_QUANT, u32::MAX as u64, false),
        // An int8 file relabelled as PQ has no m (quant_param 0).
        ("header field quant_param (pq m)", G_QUANT, 2, false),
        // Relabelled as binary (same stride for dim 8): it carries code_norms.
        ("section code_norms", G_QUANT, 3, false),
        ("header field element_type", G_ELEMENT, 1, false),
        ("header field dim", G_DIM, 0, false),
        ("header field dim", G_DIM, 65_537, false),
        ("header field dim", G_DIM, u32::MAX as u64, false),
        ("header field padded_dim", G_DIM, 17, false), // dim 17 needs padded 32
        ("header field padded_dim", G_PADDED, 0, false),
        ("header field padded_dim", G_PADDED, 8, false),
        ("header field padded_dim", G_PADDED, 32, false),
        ("header field count", G_COUNT, 0, true),
        ("header field count", G_COUNT, u32::MAX as u64, true),
        ("header field count", G_COUNT, u64::MAX, true),
        ("level_counts[0]", G_COUNT, n - 1, true),
        ("level_counts[0]", G_COUNT, n + 1, true),
        ("level_counts[0]", G_COUNT, 1_000_000_000, true),
        ("header field m0", G_M0, (2 * m + 1) as u64, false),
        ("header field m0", G_M0, m as u64, false),
        ("header field m0", G_M0, 0, false),
        ("header field ef_construction", G_EFC, 0, false),
        ("header field max_level", G_MAX_LEVEL, 32, false),
        (
            "header field max_level",
            G_MAX_LEVEL,
            u32::MAX as u64,
            false,
        ),
        (
            "section level_counts length",
            G_MAX_LEVEL,
            b.max_level as u64 + 1,
            false,
        ),
        ("section level_counts length", G_MAX_LEVEL, 0, false),
        ("header field code_stride", G_CODE_STRIDE, 0, false),
        ("header field code_stride", G_CODE_STRIDE, 17, false),
        (
            "header field code_stride",
            G_CODE_STRIDE,
            u32::MAX as u64,
            false,
        ),
        (
            "header field entry_point",
            G_ENTRY,
            *b.level_counts.last().unwrap() as u64,
            false,
        ),
        ("header field entry_point", G_ENTRY, u32::MAX as u64, false),
    ];
    for (what, off, value, wide) in cases {
        let case = format!("{what}: offset {off} = {value}");
        expect_graph_corrupt(b, what, &case, |g| {
            if wide {
                wr64(g, off, value)
            } else {
                wr32(g, off, value as u32)
            }
        });
    }
    // A header claiming codes when there are none (and vice versa).
    expect_graph_corrupt(
        base_none(),
        "header field code_stride",
        "none + stride",
        |g| wr32(g, G_CODE_STRIDE, 16),
    );
}

#[test]
fn m_out_of_range() {
    let b = base();
    for m in [0u32, 1, 2049, u32::MAX / 2] {
        let mut g = b.g.clone();
        wr32(&mut g, G_M, m);
        wr32(&mut g, G_M0, m.wrapping_mul(2));
        reseal(&mut g);
        match open_err(&g, &b.v, "m") {
            Error::Corrupt { file, what, .. } => {
                assert_eq!(file, FileKind::Graph);
                assert_eq!(what, "header field m", "m = {m}");
            }
            e => panic!("m = {m}: expected Corrupt, got {e:?}"),
        }
    }
    // A consistent m/m0 pair that disagrees with the link sections' sizes.
    expect_graph_corrupt(b, "section links_level0 length", "m + 1", |g| {
        wr32(g, G_M, b.m as u32 + 1);
        wr32(g, G_M0, 2 * (b.m as u32 + 1));
    });
}

#[test]
fn quantization_disagreeing_with_sections() {
    // An int8 file relabelled as unquantized still carries the code sections.
    expect_graph_corrupt(base(), "section quant_params", "int8 as none", |g| {
        wr32(g, G_QUANT, 0);
        wr32(g, G_CODE_STRIDE, 0);
    });
    // An unquantized file relabelled as int8 lacks them.
    expect_graph_corrupt(base_none(), "section quant_params", "none as int8", |g| {
        wr32(g, G_QUANT, 1);
        wr32(g, G_CODE_STRIDE, 16);
    });
    // Every relabelling between the coded kinds that passes the header
    // checks (consistent quant_param and stride) is caught by the sections
    // each kind requires or forbids: `(base, new quant, new quant_param,
    // section, expected, found)`.
    let cases: [(&Base, u32, u32, &str, &str, &str); 7] = [
        (base(), 3, 0, "code_norms", "absent", "present"),
        (base_pq(), 1, 0, "code_norms", "present", "missing"),
        (base_pq(), 3, 0, "binary_factors", "present", "missing"),
        (base_binary(), 1, 0, "code_norms", "present", "missing"),
        (base_binary(), 2, 3, "binary_factors", "absent", "present"),
        (base_none(), 2, 3, "quant_params", "present", "missing"),
        (base_none(), 3, 0, "quant_params", "present", "missing"),
    ];
    for (b, quant, param, name, expected, found) in cases {
        let case = format!("{:?} relabelled {quant}", b.quant);
        let e = graph_err(b, &case, |g| {
            wr32(g, G_QUANT, quant);
            wr32(g, G_QUANT_PARAM, param);
            wr32(g, G_CODE_STRIDE, 16);
        });
        match e {
            Error::Corrupt {
                file: FileKind::Graph,
                what,
                expected: x,
                found: f,
            } => assert_eq!(
                (what.as_str(), x.as_str(), f.as_str()),
                (format!("section {name}").as_str(), expected, found),
                "{case}"
            ),
            e => panic!("{case}: expected Corrupt, got {e:?}"),
        }
    }
}

/// The header word at offset 104 is PQ's m; every other kind stores 0 there.
#[test]
fn quant_param_must_be_zero_unless_pq() {
    for b in [base_none(), base(), base_binary(), wide_binary()] {
        for value in [1u32, 3, 8, 0x100, u32::MAX] {
            let case = format!("{:?} quant_param {value}", b.quant);
            let e = graph_err(b, &case, |g| wr32(g, G_QUANT_PARAM, value));
            assert_corrupt_exact(
                &e,
                "header field quant_param",
                "0 for this quantization",
                &case,
            );
        }
    }
}

#[test]
fn pq_m_must_be_between_1_and_dim() {
    for (b, dim) in [(base_pq(), 8u32), (wide_pq(), 40)] {
        assert_eq!(b.dim as u32, dim);
        for m in [0, dim + 1, dim + 16, 0x1_0000, u32::MAX] {
            let case = format!("pq dim {dim} m {m}");
            let e = graph_err(b, &case, |g| wr32(g, G_QUANT_PARAM, m));
            assert_corrupt_exact(
                &e,
                "header field quant_param (pq m)",
                &format!("1..={dim}"),
                &case,
            );
        }
    }
}

/// PQ codes are `m` bytes rounded up to 16; binary codes are one bit per
/// padded component, `ceil(padded / 8)` bytes rounded up to 16.
#[test]
fn code_stride_must_match_the_quantizer() {
    // (base, wrong strides, the right one)
    let cases: [(&Base, &[u32], u32); 4] = [
        (base_pq(), &[0, 1, 3, 8, 15, 17, 32, u32::MAX], 16),
        (wide_pq(), &[0, 16, 20, 31, 33, 48, 160], 32),
        (base_binary(), &[0, 1, 2, 8, 15, 17, 32, 128], 16),
        (wide_binary(), &[0, 16, 18, 31, 33, 48, 144], 32),
    ];
    for (b, wrong, right) in cases {
        assert_eq!(rd32(&b.g, G_CODE_STRIDE), right);
        for &stride in wrong {
            let case = format!("{:?} dim {} stride {stride}", b.quant, b.dim);
            let e = graph_err(b, &case, |g| wr32(g, G_CODE_STRIDE, stride));
            assert_corrupt_exact(&e, "header field code_stride", &right.to_string(), &case);
        }
    }
    // PQ's stride follows m: with m = 16 a 40-dimensional file needs 16-byte
    // codes, with m = 33 48-byte codes, so the 32-byte stride is wrong...
    for (m, want) in [(16u32, 16), (1, 16), (33, 48), (40, 48)] {
        let case = format!("wide pq m {m}");
        let e = graph_err(wide_pq(), &case, |g| wr32(g, G_QUANT_PARAM, m));
        assert_corrupt_exact(&e, "header field code_stride", &want.to_string(), &case);
    }
    // ... while any m in 17..=32 fits the stored stride (and codebooks do
    // not depend on m): such a file opens (it is checksum-consistent; only
    // the header CRC guards m itself) and searches without panicking.
    for m in [17u32, 32] {
        let mut g = wide_pq().g.clone();
        wr32(&mut g, G_QUANT_PARAM, m);
        reseal(&mut g);
        let index = open(&g, &wide_pq().v).expect("m within the stride's range");
        assert_eq!(index.info().pq_m, m as usize);
        exercise(&index, &perturbed_queries(&wide_pq().data, 5, 0.05, 3));
    }
}

#[test]
fn section_count_out_of_range() {
    let b = base();
    for sc in [121u32, 200, u32::MAX] {
        for seal in [false, true] {
            let mut g = b.g.clone();
            wr32(&mut g, G_SECTION_COUNT, sc);
            if seal {
                reseal(&mut g);
            }
            let e = open_err(&g, &b.v, "section_count");
            assert_corrupt(
                &e,
                FileKind::Graph,
                "header field section_count",
                &format!("sc {sc}"),
            );
        }
    }
    // 120 entries fit in page 0: the extra all-zero entries are unknown kind 0.
    expect_graph_corrupt(b, "table entry 8 (kind 0)", "sc 120", |g| {
        wr32(g, G_SECTION_COUNT, 120)
    });
    // One entry fewer: the last section (id_to_ordinal) is missing.
    expect_graph_corrupt(b, "section id_to_ordinal", "sc 7", |g| {
        wr32(g, G_SECTION_COUNT, 7)
    });
    expect_graph_corrupt(b, "section", "sc 0", |g| wr32(g, G_SECTION_COUNT, 0));
}

// ---------------------------------------------------------------------------
// Section table.

#[test]
fn section_offsets_must_be_page_aligned_after_the_header() {
    for b in all_bases() {
        for (kind, name) in present_kinds(&b.g) {
            let e = entry_of(&b.g, kind);
            let off = rd64(&b.g, e + 8);
            for bad in [off + 1, off + 8, off - 4, 0, 1] {
                expect_graph_corrupt(
                    b,
                    &format!("section {name} offset"),
                    &format!("{:?}: {name} @ {bad}", b.quant),
                    |g| wr64(g, e + 8, bad),
                );
            }
        }
    }
}

#[test]
fn sections_must_lie_inside_the_file() {
    for b in all_bases() {
        let len = b.g.len() as u64;
        for (kind, name) in present_kinds(&b.g) {
            let e = entry_of(&b.g, kind);
            let off = rd64(&b.g, e + 8);
            let what = format!("section {name} extent");
            for (o, l) in [
                (off, len),
                (off, u64::MAX),
                (len, 1),
                (len + PAGE as u64, 0),
                (u64::MAX - PAGE as u64 + 1, 1), // aligned, overflows
                (1 << 62, 64),
            ] {
                let case = format!("{:?}: {name} @ {o} + {l}", b.quant);
                expect_graph_corrupt(b, &what, &case, |g| {
                    wr64(g, e + 8, o);
                    wr64(g, e + 16, l);
                });
            }
        }
    }
}

#[test]
fn overlapping_sections() {
    let b = base();
    // Two sections at the same offset.
    let codes = entry_of(&b.g, CODES);
    let l0 = entry_of(&b.g, LINKS_L0);
    expect_graph_corrupt(b, "section table", "same offset", |g| {
        let o = rd64(g, codes + 8);
        wr64(g, l0 + 8, o);
    });
    // A section running into the next one.
    let (co, cl) = section(&b.g, CODES);
    let (lo, _) = section(&b.g, LINKS_L0);
    assert!(lo > co + cl);
    expect_graph_corrupt(b, "section table", "runs into next", |g| {
        wr64(g, codes + 16, (lo - co + 4) as u64)
    });
}

#[test]
fn duplicate_section() {
    let b = base();
    let upper = entry_of(&b.g, LINKS_UPPER);
    assert!(
        upper > entry_of(&b.g, LEVEL_COUNTS),
        "level_counts comes first"
    );
    let mut g = b.g.clone();
    wr32(&mut g, upper, LEVEL_COUNTS);
    reseal(&mut g);
    match open_err(&g, &b.v, "duplicate") {
        Error::Corrupt {
            file,
            what,
            expected,
            ..
        } => {
            assert_eq!(file, FileKind::Graph);
            assert_eq!(what, "section level_counts");
            assert!(expected.contains("once"), "{expected}");
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }
    // An exact copy of an entry appended to the table.
    let mut g = b.g.clone();
    let sc = section_count(&g);
    let (src, dst) = (entry_of(&g, ORD_TO_ID), TABLE + sc * ENTRY);
    g.copy_within(src..src + ENTRY, dst);
    wr32(&mut g, G_SECTION_COUNT, sc as u32 + 1);
    reseal(&mut g);
    // Either "appears twice" or "overlap", but an error naming the table.
    match open_err(&g, &b.v, "copied entry") {
        Error::Corrupt { file, what, .. } => {
            assert_eq!(file, FileKind::Graph);
            assert!(what.contains("section"), "{what}");
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }
}

#[test]
fn missing_required_section() {
    // Every section a writer emits is required for its kind (without codes,
    // the code sections are not written, and not required).
    for b in all_bases() {
        for (kind, name) in present_kinds(&b.g) {
            // Turn the entry into an optional unknown section: the table stays
            // well formed, but the known section is gone.
            let e = entry_of(&b.g, kind);
            let mut g = b.g.clone();
            wr32(&mut g, e, 1000);
            wr32(&mut g, e + 4, 1);
            reseal(&mut g);
            match open_err(&g, &b.v, name) {
                Error::Corrupt {
                    file,
                    what,
                    expected,
                    found,
                } => {
                    assert_eq!(file, FileKind::Graph);
                    assert_eq!(what, format!("section {name}"));
                    assert_eq!((expected.as_str(), found.as_str()), ("present", "missing"));
                }
                err => panic!("{:?} {name}: expected Corrupt, got {err:?}", b.quant),
            }
        }
    }
}

/// Appends one page holding `payload` as a section of `kind`/`flags`.
fn with_extra_section(g: &[u8], kind: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut g = g.to_vec();
    let off = g.len();
    g.resize(off + PAGE, 0);
    g[off..off + payload.len()].copy_from_slice(payload);
    let sc = section_count(&g);
    let e = TABLE + sc * ENTRY;
    wr32(&mut g, e, kind);
    wr32(&mut g, e + 4, flags);
    wr64(&mut g, e + 8, off as u64);
    wr64(&mut g, e + 16, payload.len() as u64);
    wr32(&mut g, e + 24, crc32fast::hash(payload));
    wr32(&mut g, e + 28, 0);
    wr32(&mut g, G_SECTION_COUNT, sc as u32 + 1);
    let file_len = g.len() as u64;
    wr64(&mut g, G_FILE_LEN, file_len);
    reseal(&mut g);
    g
}

#[test]
fn unknown_sections_need_the_optional_flag() {
    let b = base();
    let payload: Vec<u8> = (0..100u8).collect();
    // Not optional: rejected (kind 9, binary_factors, is known since
    // version 2, kind 10, residual_codes, since version 5, kind 11,
    // labels, since version 6; see `binary_factors_exactly_for_binary_codes`
    // and `labels_section_is_validated`).
    for kind in [0, 12, 99, u32::MAX] {
        let g = with_extra_section(&b.g, kind, 0, &payload);
        let e = open_err(&g, &b.v, "unknown kind");
        assert_corrupt(
            &e,
            FileKind::Graph,
            "section table entry 8 kind",
            &format!("kind {kind}"),
        );
    }
    // Optional: skipped, everything else works.
    let g = with_extra_section(&b.g, 99, 1, &payload);
    let index = open(&g, &b.v).unwrap();
    index.verify().unwrap();
    let reference = open(&b.g, &b.v).unwrap();
    let queries = perturbed_queries(&b.data, 20, 0.05, 5);
    let sp = SearchParams::with_ef(32);
    assert_eq!(
        bits(&search_all(&index, &queries, 5, &sp)),
        bits(&search_all(&reference, &queries, 5, &sp))
    );
    assert_eq!(index.info().sections.len(), 9);
    // An optional section is still covered by full verification.
    let mut bad = g.clone();
    let last = bad.len() - PAGE;
    bad[last + 3] ^= 1;
    assert_checksum(
        &open_err(&bad, &b.v, "optional crc"),
        FileKind::Graph,
        "section",
        "optional crc",
    );
    // And it may not overlap a known section.
    let mut overlapping = g.clone();
    let e = TABLE + 8 * ENTRY;
    let codes_off = section(&g, CODES).0;
    wr64(&mut overlapping, e + 8, codes_off as u64);
    reseal(&mut overlapping);
    assert_corrupt(
        &open_err(&overlapping, &b.v, "optional overlap"),
        FileKind::Graph,
        "section table",
        "optional overlap",
    );
}

/// `binary_factors` (kind 9) is required for binary codes and forbidden
/// for every other kind, with or without the optional flag.
/// From version 5 int8 under inner product or cosine leaves out
/// `code_norms` (only L2 reads it): such a file is version 5, and the same
/// bytes labelled version 2 (which requires the section) are refused, so a
/// version-2 reader never sees a version-2 file without it.
#[test]
fn int8_code_norms_only_under_l2_from_version_5() {
    for metric in [Metric::Cosine, Metric::InnerProduct] {
        let b = from_build(
            clustered(200, 8, 4, 0.15, 72),
            params(metric, Quantization::Int8, 3),
        );
        assert_eq!(rd32(&b.g, G_VERSION), 5, "{metric:?}");
        assert!(
            !present_kinds(&b.g).iter().any(|k| k.1 == "code_norms"),
            "{metric:?}"
        );
        open(&b.g, &b.v).unwrap().verify().unwrap();
        let mut g = b.g.clone();
        wr32(&mut g, G_VERSION, 2);
        reseal(&mut g);
        let e = open_err(&g, &b.v, "int8 without code_norms as version 2");
        assert_corrupt_exact(&e, "section code_norms", "present", "version 2");
    }
    // L2 keeps it, and stays version 2.
    assert_eq!(rd32(&base().g, G_VERSION), 2);
    assert!(present_kinds(&base().g).iter().any(|k| k.1 == "code_norms"));
}

/// I10 for kind 10: LVQ-4x8 needs its residual codes (`padded` bytes per
/// vector), and every other kind must not have them.
#[test]
fn residual_codes_exactly_for_lvq4x8() {
    let b = base_lvq4x8();
    let (_, len) = section(&b.g, RESIDUAL_CODES);
    assert_eq!(
        len,
        b.n * 16,
        "residual_codes: one byte per padded dimension"
    );
    let e = entry_of(&b.g, RESIDUAL_CODES);
    let err = graph_err(b, "residual_codes relabelled", |g| {
        wr32(g, e, 1000);
        wr32(g, e + 4, 1);
    });
    assert_corrupt_exact(&err, "section residual_codes", "present", "relabelled");
    for b in [base(), base_lvq8(), base_binary()] {
        // Presence is checked before length (I10 before I12).
        let payload: Vec<u8> = (0..64).map(|i| (i % 5) as u8).collect();
        let case = format!("{:?} with residual_codes", b.quant);
        let g = with_extra_section(&b.g, RESIDUAL_CODES, 0, &payload);
        assert_corrupt(
            &open_err(&g, &b.v, &case),
            FileKind::Graph,
            "section residual_codes",
            &case,
        );
    }
}

#[test]
fn binary_factors_exactly_for_binary_codes() {
    // Missing from a binary index.
    let b = base_binary();
    let (_, len) = section(&b.g, BINARY_FACTORS);
    assert_eq!(len, b.n * 8, "binary_factors: (alpha, |x|^2) per vector");
    let e = entry_of(&b.g, BINARY_FACTORS);
    for (kind, flags) in [(1000, 1), (77, 1)] {
        let case = format!("binary_factors relabelled {kind}");
        let err = graph_err(b, &case, |g| {
            wr32(g, e, kind);
            wr32(g, e + 4, flags);
        });
        assert_corrupt_exact(&err, "section binary_factors", "present", &case);
    }
    // Present on the other kinds: a well-formed section of the right size.
    for b in [base(), base_pq(), base_none()] {
        let payload: Vec<u8> = (0..b.n * 8).map(|i| (i % 7) as u8).collect();
        for flags in [0, 1] {
            let case = format!("{:?} with binary_factors, flags {flags}", b.quant);
            let g = with_extra_section(&b.g, BINARY_FACTORS, flags, &payload);
            let err = open_err(&g, &b.v, &case);
            match err {
                Error::Corrupt {
                    file: FileKind::Graph,
                    what,
                    expected,
                    found,
                } => assert_eq!(
                    (what.as_str(), expected.as_str(), found.as_str()),
                    ("section binary_factors", "absent", "present"),
                    "{case}"
                ),
                e => panic!("{case}: expected Corrupt, got {e:?}"),
            }
        }
    }
}

#[test]

fn optional_unknown_section_past_end_of_file_is_an_error() {
    let b = base();
    let payload = [7u8; 16];
    for (off, len) in [
        (b.g.len() as u64 + PAGE as u64, 16u64), // past EOF
        (b.g.len() as u64, 2 * PAGE as u64),     // runs past EOF
        (u64::MAX - 8, 16),                      // offset + len overflows
    ] {
        let mut g = with_extra_section(&b.g, 99, 1, &payload);
        let e = TABLE + 8 * ENTRY;
        wr64(&mut g, e + 8, off);
        wr64(&mut g, e + 16, len);
        reseal(&mut g);
        let r = catch_unwind(AssertUnwindSafe(|| open(&g, &b.v).err()));
        match r {
            Ok(Some(e)) => assert_corrupt(&e, FileKind::Graph, "section", "optional past EOF"),
            Ok(None) => panic!("optional section at {off}+{len} past EOF accepted"),
            Err(_) => panic!("optional section at {off}+{len}: from_bytes panicked"),
        }
    }
}

#[test]
fn section_lengths_must_match_the_header() {
    for b in all_bases() {
        for (kind, name) in present_kinds(&b.g) {
            let e = entry_of(&b.g, kind);
            let (off, len) = section(&b.g, kind);
            let room = off + len < (off + len).div_ceil(PAGE) * PAGE;
            let mut deltas = vec![-4i64, -1, -(len as i64)];
            if room {
                deltas.extend([1, 4]);
            }
            for d in deltas {
                let new = (len as i64 + d) as u64;
                expect_graph_corrupt(
                    b,
                    &format!("section {name} length"),
                    &format!("{name} len {new}"),
                    |g| wr64(g, e + 16, new),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Level counts.

fn with_level_counts(b: &Base, counts: &[u32]) -> Vec<u8> {
    let mut g = b.g.clone();
    let (off, len) = section(&g, LEVEL_COUNTS);
    assert_eq!(len, counts.len() * 4);
    for (i, c) in counts.iter().enumerate() {
        wr32(&mut g, off + 4 * i, *c);
    }
    fix_section_crc(&mut g, LEVEL_COUNTS);
    g
}

#[test]
fn level_counts_are_validated() {
    let b = base();
    let lc = &b.level_counts;
    assert_eq!(lc[0] as usize, b.n);
    let top = b.max_level;

    let mut c = lc.clone();
    c[0] -= 1;
    let e = open_err(&with_level_counts(b, &c), &b.v, "lc0");
    assert_corrupt(&e, FileKind::Graph, "level_counts[0]", "lc0 = n - 1");

    let mut c = lc.clone();
    c[1] = c[0] + 1;
    let e = open_err(&with_level_counts(b, &c), &b.v, "lc1");
    assert_corrupt(&e, FileKind::Graph, "level_counts[1]", "increasing");

    let mut c = lc.clone();
    c[top] = c[top - 1] + 1;
    let e = open_err(&with_level_counts(b, &c), &b.v, "top");
    assert_corrupt(
        &e,
        FileKind::Graph,
        &format!("level_counts[{top}]"),
        "increasing at top",
    );

    let mut c = lc.clone();
    c[top] = 0;
    let e = open_err(&with_level_counts(b, &c), &b.v, "empty top");
    assert_corrupt(
        &e,
        FileKind::Graph,
        &format!("level_counts[{top}]"),
        "empty level",
    );

    // Consistent counts but a different upper-level total: links_upper size.
    let mut c = lc.clone();
    c[1] -= 1;
    let e = open_err(&with_level_counts(b, &c), &b.v, "upper size");
    assert_corrupt(
        &e,
        FileKind::Graph,
        "section links_upper length",
        "upper size",
    );

    // Level counts are always checksummed, even by a plain open.
    let mut g = b.g.clone();
    let (off, _) = section(&g, LEVEL_COUNTS);
    g[off + 4] ^= 1;
    assert_checksum(
        &open_err(&g, &b.v, "lc crc"),
        FileKind::Graph,
        "section level_counts",
        "lc crc",
    );
}

// ---------------------------------------------------------------------------
// Section checksums.

#[test]
fn from_bytes_checks_every_section_crc() {
    for b in all_bases() {
        for (kind, name) in present_kinds(&b.g) {
            let (off, len) = section(&b.g, kind);
            for at in [off, off + len / 2, off + len - 1] {
                let mut g = b.g.clone();
                g[at] ^= 0x04;
                let e = open_err(&g, &b.v, name);
                assert_checksum(&e, FileKind::Graph, &format!("section {name}"), name);
            }
        }
    }
    // Vector data.
    let b = base();
    let mut v = b.v.clone();
    v[PAGE + 100] ^= 0x04;
    assert_checksum(
        &open_err(&b.g, &v, "data"),
        FileKind::Vectors,
        "vector data",
        "data",
    );
    // The data CRC field itself (header resealed).
    let mut v = b.v.clone();
    let crc = rd32(&v, V_DATA_CRC);
    wr32(&mut v, V_DATA_CRC, crc ^ 1);
    reseal_vectors(&mut v);
    assert_checksum(
        &open_err(&b.g, &v, "data crc"),
        FileKind::Vectors,
        "vector data",
        "data crc",
    );
}

fn write_dir(b: &Base) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("g00000001.graph"), &b.g).unwrap();
    fs::write(dir.path().join("g00000001.vectors"), &b.v).unwrap();
    let build_id = u128::from_le_bytes(b.g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    fs::write(
        dir.path().join("MANIFEST"),
        manifest_bytes(1, build_id, 1, 0),
    )
    .unwrap();
    Generation::open(dir.path()).expect("hand-written directory opens");
    dir
}

fn manifest_bytes(generation: u64, build_id: u128, version: u32, flags: u32) -> Vec<u8> {
    let mut m = vec![0u8; 48];
    m[..8].copy_from_slice(b"STRATAMF");
    wr32(&mut m, 8, version);
    wr32(&mut m, 12, flags);
    wr64(&mut m, 16, generation);
    m[24..40].copy_from_slice(&build_id.to_le_bytes());
    let crc = crc32fast::hash(&m[..40]);
    wr32(&mut m, 40, crc);
    m
}

fn corrupt_file(dir: &Path, name: &str, at: usize) {
    let p = dir.join(name);
    let mut bytes = fs::read(&p).unwrap();
    bytes[at] ^= 0x08;
    fs::write(&p, bytes).unwrap();
}

#[test]
fn mmap_open_defers_large_section_crcs_to_verify() {
    // Sections that grow with the count are checked by verify() only:
    // links, codes, code norms, binary factors and the id maps.
    for b in all_bases() {
        let deferred: Vec<(u32, &str)> = present_kinds(&b.g)
            .into_iter()
            .filter(|(k, _)| *k != LEVEL_COUNTS && *k != QUANT_PARAMS)
            .collect();
        let names: Vec<&str> = deferred.iter().map(|k| k.1).collect();
        match b.quant {
            Quantization::Binary => assert!(names.contains(&"binary_factors")),
            Quantization::Int8 => assert!(names.contains(&"code_norms")),
            _ => {}
        }
        for (kind, name) in deferred {
            let dir = write_dir(b);
            let (off, len) = section(&b.g, kind);
            corrupt_file(dir.path(), "g00000001.graph", off + len / 2);
            let index = Generation::open(dir.path()).unwrap_or_else(|e| {
                panic!(
                    "{:?} {name}: plain open should not read large sections: {e}",
                    b.quant
                )
            });
            assert_checksum(
                &index.verify().unwrap_err(),
                FileKind::Graph,
                &format!("section {name}"),
                name,
            );
            match Generation::open_with(
                dir.path(),
                &OpenOptions {
                    verify: true,
                    ..Default::default()
                },
            ) {
                Ok(_) => panic!("{name}: verified open accepted a bad section"),
                Err(e) => assert_checksum(&e, FileKind::Graph, &format!("section {name}"), name),
            }
        }
        // Level counts and quantizer parameters (int8 ranges, PQ codebooks,
        // the binary centre) are checksummed by every open.
        for (kind, name) in present_kinds(&b.g)
            .into_iter()
            .filter(|(k, _)| *k == LEVEL_COUNTS || *k == QUANT_PARAMS)
        {
            let (off, len) = section(&b.g, kind);
            for at in [off + 2, off + len - 1] {
                let dir = write_dir(b);
                corrupt_file(dir.path(), "g00000001.graph", at);
                match Generation::open(dir.path()) {
                    Ok(_) => panic!(
                        "{:?} {name}: plain open accepted a bad small section",
                        b.quant
                    ),
                    Err(e) => {
                        assert_checksum(&e, FileKind::Graph, &format!("section {name}"), name)
                    }
                }
            }
        }
    }
    // Vector data.
    let b = base();
    let dir = write_dir(b);
    corrupt_file(dir.path(), "g00000001.vectors", PAGE + 40);
    let index = Generation::open(dir.path()).unwrap();
    assert_checksum(
        &index.verify().unwrap_err(),
        FileKind::Vectors,
        "vector data",
        "mmap data",
    );
    assert!(Generation::open_with(
        dir.path(),
        &OpenOptions {
            verify: true,
            ..Default::default()
        }
    )
    .is_err());
}

// ---------------------------------------------------------------------------
// Quantizer parameters.

#[test]
fn quant_params_must_be_finite_with_non_negative_scales() {
    let b = base();
    let (off, len) = section(&b.g, QUANT_PARAMS);
    assert_eq!(len, 2 * b.padded * 4);
    let lo = |j: usize| off + 4 * j;
    let scale = |j: usize| off + 4 * (b.padded + j);
    for (at, value) in [
        (lo(0), f32::NAN),
        (lo(3), f32::INFINITY),
        (lo(7), f32::NEG_INFINITY),
        (scale(0), f32::NAN),
        (scale(5), f32::INFINITY),
        (scale(2), -1.0),
        (scale(15), -0.5), // padding component
    ] {
        let mut g = b.g.clone();
        wrf32(&mut g, at, value);
        fix_section_crc(&mut g, QUANT_PARAMS);
        let e = open_err(&g, &b.v, "quant params");
        assert_corrupt(
            &e,
            FileKind::Graph,
            "section quant_params",
            &format!("{value} at {at}"),
        );
    }
}

/// PQ codebooks (`256 · dim` f32) and the binary centre (`padded_dim` f32)
/// must be finite (their CRC fixed and the header resealed, so the value
/// check itself is reached); negative values are fine (no scales).
#[test]
fn pq_codebooks_and_binary_centre_must_be_finite() {
    for b in [base_pq(), base_binary(), wide_pq(), wide_binary()] {
        let (off, len) = section(&b.g, QUANT_PARAMS);
        let floats = len / 4;
        for (i, value) in [
            (0, f32::NAN),
            (1, f32::INFINITY),
            (floats / 2, f32::NEG_INFINITY),
            (floats - 1, f32::NAN),
        ] {
            let case = format!("{:?} dim {}: {value} at float {i}", b.quant, b.dim);
            let mut g = b.g.clone();
            wrf32(&mut g, off + 4 * i, value);
            fix_section_crc(&mut g, QUANT_PARAMS);
            let e = open_err(&g, &b.v, &case);
            match &e {
                Error::Corrupt {
                    file: FileKind::Graph,
                    what,
                    found,
                    ..
                } if what == "section quant_params" => {
                    assert!(found.contains(&format!("index {i}")), "{case}: {found}")
                }
                other => panic!("{case}: expected Corrupt quant_params, got {other:?}"),
            }
        }
        // Negative and huge finite values are accepted (and searched safely).
        let mut g = b.g.clone();
        for i in (0..floats).step_by(5) {
            wrf32(&mut g, off + 4 * i, if i % 2 == 0 { -1000.0 } else { -0.0 });
        }
        fix_section_crc(&mut g, QUANT_PARAMS);
        let index = open(&g, &b.v).expect("negative codebook values are valid");
        exercise(&index, &perturbed_queries(&b.data, 5, 0.05, 13));
    }
}

/// `quant_params` holds `256 · dim` f32 for PQ (whatever m is) and
/// `padded_dim` f32 for binary codes; other lengths (including int8's
/// `2 · padded_dim`) are rejected with the expected length.
#[test]
fn quant_params_length_depends_on_the_quantizer() {
    let cases: [(&Base, usize, &[usize]); 4] = [
        (
            base_pq(),
            256 * 8 * 4,
            &[256 * 7 * 4, 256 * 3 * 4, 2 * 16 * 4, 16 * 4, 0],
        ),
        (
            wide_pq(),
            256 * 40 * 4,
            &[256 * 20 * 4, 256 * 39 * 4, 256 * 40 * 4 - 1],
        ),
        (
            base_binary(),
            16 * 4,
            &[8 * 4, 2 * 16 * 4, 16 * 4 - 4, 16 * 4 + 4, 0],
        ),
        (
            wide_binary(),
            144 * 4,
            &[140 * 4, 2 * 144 * 4, 18 * 4, 144 * 4 + 1],
        ),
    ];
    for (b, right, wrong) in cases {
        let (_, len) = section(&b.g, QUANT_PARAMS);
        assert_eq!(len, right, "{:?} dim {}", b.quant, b.dim);
        let e = entry_of(&b.g, QUANT_PARAMS);
        for &l in wrong {
            let case = format!("{:?} dim {}: quant_params length {l}", b.quant, b.dim);
            let err = graph_err(b, &case, |g| wr64(g, e + 16, l as u64));
            assert_corrupt_exact(
                &err,
                "section quant_params length",
                &right.to_string(),
                &case,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Vectors file against the graph.

#[test]
fn vectors_file_must_match_the_graph() {
    let b = base();
    let n = b.n as u64;
    let data_len = rd64(&b.v, V_DATA_LEN);
    expect_vectors_corrupt(b, "header field flags", "flags", |v| wr32(v, V_FLAGS, 1));
    for (off, value) in [(V_DIM, 9u32), (V_DIM, 7), (V_PADDED, 32), (V_ELEMENT, 1)] {
        expect_vectors_corrupt(
            b,
            "dim/padded_dim/element_type",
            &format!("{off}={value}"),
            |v| wr32(v, off, value),
        );
    }
    for count in [0, n - 1, n + 1, 1_000_000_000, u64::MAX] {
        expect_vectors_corrupt(b, "header field count", &format!("count {count}"), |v| {
            wr64(v, V_COUNT, count)
        });
    }
    for offset in [0, 128, 2 * PAGE as u64] {
        expect_vectors_corrupt(
            b,
            "header field data_offset",
            &format!("offset {offset}"),
            |v| wr64(v, V_DATA_OFFSET, offset),
        );
    }
    for len in [0, data_len - 4, data_len + 4, u64::MAX] {
        expect_vectors_corrupt(
            b,
            "header field data_len",
            &format!("data_len {len}"),
            |v| wr64(v, V_DATA_LEN, len),
        );
    }
    // The graph's dimension changed within the same padding: vectors disagree.
    let mut g = b.g.clone();
    wr32(&mut g, G_DIM, 9);
    reseal(&mut g);
    assert_corrupt(
        &open_err(&g, &b.v, "graph dim 9"),
        FileKind::Vectors,
        "dim/padded_dim",
        "graph dim 9",
    );
}

#[test]
fn build_id_mismatch() {
    let b = base();
    let graph_id = u128::from_le_bytes(b.g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    let mut v = b.v.clone();
    v[V_BUILD_ID] ^= 1;
    reseal_vectors(&mut v);
    match open_err(&b.g, &v, "build id") {
        Error::BuildIdMismatch { graph, vectors } => {
            assert_eq!(graph, graph_id);
            assert_eq!(vectors, graph_id ^ 1);
        }
        e => panic!("expected BuildIdMismatch, got {e:?}"),
    }
    // The vectors file of another build of the same data.
    let other = build(
        &b.data,
        BuildParams {
            m: 4,
            ef_construction: 32,
            ..params(Metric::L2, Quantization::Int8, 4)
        },
    );
    assert!(matches!(
        open_err(&b.g, other.vectors_bytes(), "other build"),
        Error::BuildIdMismatch { .. }
    ));
    assert!(matches!(
        open_err(other.graph_bytes(), &b.v, "other build"),
        Error::BuildIdMismatch { .. }
    ));
}

// ---------------------------------------------------------------------------
// Manifest.

#[test]
fn corrupt_manifest_is_a_typed_error() {
    let b = base();
    let build_id = u128::from_le_bytes(b.g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    let good = manifest_bytes(1, build_id, 1, 0);
    let dir = write_dir(b);
    let mpath = dir.path().join("MANIFEST");
    let open_with = |bytes: &[u8]| -> Error {
        fs::write(&mpath, bytes).unwrap();
        match Generation::open(dir.path()) {
            Ok(_) => panic!("corrupt manifest accepted"),
            Err(e) => e,
        }
    };

    let mut m = good.clone();
    m[2] = b'x';
    assert!(matches!(
        open_with(&m),
        Error::BadMagic {
            file: FileKind::Manifest,
            ..
        }
    ));
    for len in [0, 8, 47, 49, 4096] {
        let mut m = good.clone();
        m.resize(len, 0);
        assert_corrupt(
            &open_with(&m),
            FileKind::Manifest,
            "length",
            &format!("len {len}"),
        );
    }
    for version in [0, 7, u32::MAX] {
        assert!(matches!(
            open_with(&manifest_bytes(1, build_id, version, 0)),
            Error::UnsupportedVersion {
                file: FileKind::Manifest,
                found,
                ..
            } if found == version
        ));
    }
    // Versions 1 to 3 are read (48 bytes); version 4 is 64 bytes.
    for version in [1, 2, 3] {
        fs::write(&mpath, manifest_bytes(1, build_id, version, 0)).unwrap();
        Generation::open(dir.path()).unwrap_or_else(|e| panic!("manifest version {version}: {e}"));
    }
    assert_corrupt(
        &open_with(&manifest_bytes(1, build_id, 4, 0)),
        FileKind::Manifest,
        "length of a version-4 manifest",
        "48-byte version 4",
    );
    let v4 = |flags: u32, len: u64, records: u64, reserved: u32| {
        let mut m = vec![0u8; 64];
        m[..40].copy_from_slice(&manifest_bytes(1, build_id, 4, flags)[..40]);
        wr64(&mut m, 40, len);
        wr64(&mut m, 48, records);
        wr32(&mut m, 56, reserved);
        let crc = crc32fast::hash(&m[..60]);
        wr32(&mut m, 60, crc);
        m
    };
    for ok in [v4(0, 0, 0, 0), v4(1, 64, 0, 0)] {
        fs::write(&mpath, &ok).unwrap();
        Generation::open(dir.path()).unwrap_or_else(|e| panic!("manifest version 4: {e}"));
        // Version 6 (labelled log records) has version 4's layout; 5 was
        // never written and reads the same way.
        for version in [5, 6] {
            let mut m = ok.clone();
            wr32(&mut m, 8, version);
            let crc = crc32fast::hash(&m[..60]);
            wr32(&mut m, 60, crc);
            fs::write(&mpath, &m).unwrap();
            Generation::open(dir.path())
                .unwrap_or_else(|e| panic!("manifest version {version}: {e}"));
        }
    }
    for (bad, what) in [
        (v4(2, 0, 0, 0), "flags"),
        (v4(0, 64, 1, 0), "log bound of a generation without a log"),
        (v4(1, 63, 0, 0), "log length bound"),
        (v4(0, 0, 0, 1), "reserved bytes 56..60"),
    ] {
        assert_corrupt(&open_with(&bad), FileKind::Manifest, what, what);
    }
    for at in 12..60 {
        let mut m = v4(1, 100, 1, 0);
        m[at] ^= 0x40;
        assert_checksum(
            &open_with(&m),
            FileKind::Manifest,
            "manifest",
            &format!("v4 byte {at}"),
        );
    }
    for at in 12..44 {
        let mut m = good.clone();
        m[at] ^= 0x40;
        assert_checksum(
            &open_with(&m),
            FileKind::Manifest,
            "manifest",
            &format!("byte {at}"),
        );
    }
    assert_corrupt(
        &open_with(&manifest_bytes(1, build_id, 1, 1)),
        FileKind::Manifest,
        "flags",
        "flags",
    );
    assert_corrupt(
        &open_with(&manifest_bytes(1, build_id ^ 1, 1, 0)),
        FileKind::Manifest,
        "build id",
        "build id",
    );
    // A valid manifest naming a generation whose files do not exist.
    match open_with(&manifest_bytes(7, build_id, 1, 0)) {
        Error::Io { path, source } => {
            assert_eq!(path, dir.path().join("g00000007.graph"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        e => panic!("expected Io, got {e:?}"),
    }
    // MANIFEST that is a directory.
    fs::remove_file(&mpath).unwrap();
    fs::create_dir(&mpath).unwrap();
    assert!(matches!(
        Generation::open(dir.path()),
        Err(Error::Io { .. })
    ));
    fs::remove_dir(&mpath).unwrap();
    // And the good one still opens.
    fs::write(&mpath, &good).unwrap();
    Generation::open(dir.path()).unwrap();
}

#[test]

fn write_over_manifest_with_maximal_generation_does_not_panic() {
    let b = base();
    let build_id = u128::from_le_bytes(b.g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("MANIFEST"),
        manifest_bytes(u64::MAX, build_id, 1, 0),
    )
    .unwrap();
    let built = build(&b.data, params(Metric::L2, Quantization::Int8, 1));
    let r = catch_unwind(AssertUnwindSafe(|| built.write(dir.path())));
    match r {
        Err(_) => panic!("write panicked on a manifest with generation u64::MAX"),
        Ok(Err(_)) => {}
        Ok(Ok(())) => {
            // If it succeeds, the directory must hold a newer generation than before.
            let m = fs::read(dir.path().join("MANIFEST")).unwrap();
            let generation = rd64(&m, 16);
            assert!(generation > 0, "generation wrapped around to {generation}");
        }
    }
}

// ---------------------------------------------------------------------------
// Claims larger than the file.

#[test]
fn huge_claims_fail_fast_without_huge_allocations() {
    let b = base();
    // A header page alone claiming a billion vectors.
    let mut page = b.g[..PAGE].to_vec();
    wr64(&mut page, G_COUNT, 1_000_000_000);
    wr64(&mut page, G_FILE_LEN, PAGE as u64);
    reseal(&mut page);
    let (r, largest) = largest_allocation(|| open(&page, &b.v).err());
    let e = r.expect("a billion vectors in 4096 bytes was accepted");
    assert!(
        matches!(
            e,
            Error::Corrupt {
                file: FileKind::Graph,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        largest < 1 << 20,
        "allocated {largest} bytes for a 4096-byte file"
    );

    // The biggest consistent-looking header: count just below u32::MAX,
    // m = 2048, 31 levels, with level counts claiming all of it.
    let mut g = b.g.clone();
    wr64(&mut g, G_COUNT, u32::MAX as u64 - 1);
    wr32(&mut g, G_M, 2048);
    wr32(&mut g, G_M0, 4096);
    let (r, largest) = largest_allocation(|| {
        let mut g = g.clone();
        reseal(&mut g);
        open(&g, &b.v).err()
    });
    assert!(r.is_some());
    assert!(largest < 4 * b.g.len(), "allocated {largest} bytes");

    // Same in the vectors file: count and data_len claiming terabytes.
    let mut v = b.v[..PAGE].to_vec();
    wr64(&mut v, V_COUNT, 1 << 40);
    wr64(&mut v, V_DATA_LEN, 1 << 46);
    reseal_vectors(&mut v);
    let (r, largest) = largest_allocation(|| open(&b.g, &v).err());
    assert!(matches!(
        r,
        Some(Error::Corrupt {
            file: FileKind::Vectors,
            ..
        })
    ));
    assert!(largest < 4 * b.g.len(), "allocated {largest} bytes");
}

// ---------------------------------------------------------------------------
// Hostile but checksum-consistent contents.

#[test]
fn hostile_links_are_searched_safely() {
    for b in all_bases() {
        let n = b.n as u32;
        let m0 = 2 * b.m;
        let mut g = b.g.clone();
        let (off, len) = section(&g, LINKS_L0);
        assert_eq!(len, b.n * (1 + m0) * 4);
        let mut rng = SplitMix(99);
        for node in 0..n {
            let block = off + node as usize * (1 + m0) * 4;
            let count = match node % 4 {
                0 => m0 as u32 + 5,
                1 => u32::MAX,
                2 => m0 as u32,
                _ => 3,
            };
            wr32(&mut g, block, count);
            for slot in 0..m0 {
                let id = match (node as usize + slot) % 6 {
                    0 => node,                               // self loop
                    1 => n + (rng.next_u64() % 1000) as u32, // out of range
                    2 => u32::MAX,
                    3 => (node + 1) % n, // valid, duplicated below
                    4 => (node + 1) % n,
                    _ => (rng.next_u64() % n as u64) as u32,
                };
                wr32(&mut g, block + 4 * (1 + slot), id);
            }
        }
        fix_section_crc(&mut g, LINKS_L0);
        // Upper levels: ids that exist on level 0 but not on the level.
        let (uoff, ulen) = section(&g, LINKS_UPPER);
        for w in 0..ulen / 4 {
            let v = rd32(&g, uoff + 4 * w);
            let hostile = match w % 3 {
                0 => v,
                1 => n - 1,
                _ => v.wrapping_add(1),
            };
            wr32(&mut g, uoff + 4 * w, hostile);
        }
        fix_section_crc(&mut g, LINKS_UPPER);
        let index = open(&g, &b.v).expect("consistent hostile links open");
        let queries = perturbed_queries(&b.data, 30, 0.05, 7);
        exercise(&index, &queries);
        let stats = index.degree_stats();
        assert!(stats.max <= m0, "degree clamped to m0, got {}", stats.max);

        // Every node isolated: search still returns the entry point at least.
        let mut g = b.g.clone();
        for node in 0..b.n {
            wr32(&mut g, off + node * (1 + m0) * 4, 0);
        }
        fix_section_crc(&mut g, LINKS_L0);
        let index = open(&g, &b.v).unwrap();
        exercise(&index, &queries);
        assert_eq!(index.degree_stats().isolated, b.n);
    }
}

#[test]
fn hostile_id_maps_do_not_panic() {
    let b = base();
    let queries = perturbed_queries(&b.data, 10, 0.05, 8);
    // id_to_ordinal pairs pointing at ordinals out of range, and unsorted.
    let mut g = b.g.clone();
    let (off, len) = section(&g, ID_TO_ORD);
    for p in 0..len / 16 {
        let at = off + 16 * p + 8;
        let ord = match p % 3 {
            0 => u64::MAX,
            1 => b.n as u64 + p as u64,
            _ => rd64(&g, at),
        };
        wr64(&mut g, at, ord);
        if p % 5 == 0 {
            wr64(&mut g, off + 16 * p, u64::MAX - p as u64); // break the sort
        }
    }
    fix_section_crc(&mut g, ID_TO_ORD);
    // Full verification (from_bytes always verifies) cross-checks the maps.
    assert_corrupt(
        &open_err(&g, &b.v, "hostile id_to_ordinal"),
        FileKind::Graph,
        "section id_to_ordinal pair",
        "hostile id_to_ordinal",
    );
    // A plain mmap open does not read them; lookups and searches stay safe.
    let (_dir, index) = open_unverified(&g, &b.v);
    for id in 0..b.n as u64 + 10 {
        match index.get(id) {
            Ok(v) => assert_eq!(v.len(), 8),
            Err(Error::UnknownId(x)) => assert_eq!(x, id),
            Err(e) => panic!("get({id}): {e:?}"),
        }
        let _ = index.contains(id);
    }
    for q in queries.rows() {
        let hits = index.search(q, 10, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), 10);
    }
    // ordinal_to_id all equal: searches return that id, without panicking.
    let mut g = b.g.clone();
    let (off, len) = section(&g, ORD_TO_ID);
    for o in 0..len / 8 {
        wr64(&mut g, off + 8 * o, 5);
    }
    fix_section_crc(&mut g, ORD_TO_ID);
    assert_corrupt(
        &open_err(&g, &b.v, "hostile ordinal_to_id"),
        FileKind::Graph,
        "section id_to_ordinal pair",
        "hostile ordinal_to_id",
    );
    let (_dir, index) = open_unverified(&g, &b.v);
    for q in queries.rows() {
        let hits = index.search(q, 10, &SearchParams::default()).unwrap();
        assert!(hits.iter().all(|h| h.id == 5));
    }
}

/// Writes `g` and `v` as generation 1 of a directory and opens it without
/// full verification (the mmap path serving files as they are).
fn open_unverified(g: &[u8], v: &[u8]) -> (tempfile::TempDir, Generation) {
    let dir = write_dir(base());
    fs::write(dir.path().join("g00000001.graph"), g).unwrap();
    fs::write(dir.path().join("g00000001.vectors"), v).unwrap();
    let index = Generation::open(dir.path()).expect("plain open accepts the file");
    (dir, index)
}

#[test]
fn hostile_numbers_do_not_panic() {
    let b = base();
    let queries = perturbed_queries(&b.data, 10, 0.05, 9);
    let run = |g: &[u8], v: &[u8]| {
        let index = open(g, v).expect("checksum-consistent file opens");
        for q in queries.rows() {
            for sp in [
                SearchParams::with_ef(16),
                SearchParams {
                    ef: 16,
                    oversample: Some(1.0),
                    ..Default::default()
                },
            ] {
                let hits = index.search(q, 10, &sp).unwrap();
                assert!(hits.len() <= 10);
            }
            let _ = index.exact_search(q, 3).unwrap();
        }
    };
    // Huge but finite quantizer scales: quantized distances overflow.
    let mut g = b.g.clone();
    let (off, _) = section(&g, QUANT_PARAMS);
    for j in 0..b.padded {
        wrf32(&mut g, off + 4 * (b.padded + j), f32::MAX);
    }
    fix_section_crc(&mut g, QUANT_PARAMS);
    run(&g, &b.v);
    // NaN and infinite code norms.
    let mut g = b.g.clone();
    let (off, len) = section(&g, CODE_NORMS);
    for i in 0..len / 4 {
        wrf32(
            &mut g,
            off + 4 * i,
            if i % 2 == 0 {
                f32::NAN
            } else {
                f32::NEG_INFINITY
            },
        );
    }
    fix_section_crc(&mut g, CODE_NORMS);
    run(&g, &b.v);
    // NaN and infinite stored vectors (data CRC updated).
    let mut v = b.v.clone();
    let data_len = rd64(&v, V_DATA_LEN) as usize;
    for i in (0..data_len / 4).step_by(7) {
        wrf32(
            &mut v,
            PAGE + 4 * i,
            if i % 2 == 0 { f32::NAN } else { f32::INFINITY },
        );
    }
    let crc = crc32fast::hash(&v[PAGE..PAGE + data_len]);
    wr32(&mut v, V_DATA_CRC, crc);
    reseal_vectors(&mut v);
    run(&b.g, &v);
}

/// Checksum-consistent but hostile PQ and binary contents: huge codebook
/// and centre values (distances overflow to infinities and NaN), NaN,
/// infinite and negative binary factors, and arbitrary code bytes (PQ
/// padding bytes past m, binary bits past dim). Searching must not panic,
/// and must still return k distinct ids the index holds.
#[test]
fn hostile_pq_and_binary_numbers_do_not_panic() {
    let run = |b: &Base, g: &[u8], case: &str| {
        let index = open(g, &b.v).unwrap_or_else(|e| panic!("{case}: {e}"));
        let queries = perturbed_queries(&b.data, 8, 0.05, 14);
        for q in queries.rows() {
            for sp in [
                SearchParams::with_ef(16),
                SearchParams {
                    ef: 16,
                    oversample: Some(1.0),
                    ..Default::default()
                },
                SearchParams {
                    ef: 64,
                    oversample: Some(3.0),
                    ..Default::default()
                },
            ] {
                let r = catch_unwind(AssertUnwindSafe(|| index.search(q, 10, &sp)));
                let hits = match r {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => panic!("{case}: search failed: {e}"),
                    Err(_) => panic!("{case}: search panicked ({sp:?})"),
                };
                assert!(!hits.is_empty() && hits.len() <= 10, "{case}");
                let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                assert!(ids.iter().all(|id| index.contains(*id)), "{case}");
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), hits.len(), "{case}: duplicate ids");
            }
        }
    };
    let mut rng = SplitMix(15);
    for b in [base_pq(), base_binary()] {
        let (qoff, qlen) = section(&b.g, QUANT_PARAMS);
        // Huge finite parameters of both signs.
        let mut g = b.g.clone();
        for i in 0..qlen / 4 {
            let v = if i % 3 == 0 { f32::MAX } else { -f32::MAX };
            wrf32(&mut g, qoff + 4 * i, v);
        }
        fix_section_crc(&mut g, QUANT_PARAMS);
        run(b, &g, &format!("{:?}: huge quant_params", b.quant));
        // Arbitrary code bytes, padding included.
        let (coff, clen) = section(&b.g, CODES);
        let mut g = b.g.clone();
        for byte in &mut g[coff..coff + clen] {
            *byte = rng.next_u64() as u8;
        }
        fix_section_crc(&mut g, CODES);
        run(b, &g, &format!("{:?}: random codes", b.quant));
        // All-ones codes.
        let mut g = b.g.clone();
        g[coff..coff + clen].fill(0xFF);
        fix_section_crc(&mut g, CODES);
        run(b, &g, &format!("{:?}: all-ones codes", b.quant));
    }
    // Binary factors: NaN, infinities, negative and huge.
    let b = base_binary();
    let (foff, flen) = section(&b.g, BINARY_FACTORS);
    for pattern in 0..3 {
        let mut g = b.g.clone();
        for i in 0..flen / 4 {
            let v = match (pattern, i % 5) {
                (0, 0) => f32::NAN,
                (0, 1) => f32::INFINITY,
                (0, 2) => f32::NEG_INFINITY,
                (0, _) => -1.0,
                (1, _) => f32::NAN,
                (_, k) => [f32::MAX, -f32::MAX, 0.0, f32::MIN_POSITIVE, -0.0][k],
            };
            wrf32(&mut g, foff + 4 * i, v);
        }
        fix_section_crc(&mut g, BINARY_FACTORS);
        run(b, &g, &format!("binary factors pattern {pattern}"));
    }
}

#[test]
fn resealed_byte_mutations_of_page_zero_never_panic() {
    // Offsets whose change may leave a valid index: metric (to another known
    // metric), ef_construction, entry point (to another top-level node), seed,
    // PQ's m (the low byte: another m with the same code stride), and each
    // table entry's flags and reserved word. Every other byte of the header
    // and table is load-bearing; in particular the other quant_param bytes
    // and the reserved tail 108..252 must be rejected whatever the kind.
    // A version 2 file relabelled as version 3, 4, 5 or 6 is still valid
    // (version 5 added a code kind and changed no byte of the others,
    // version 6 an optional section), and so is a version 5 file as 6.
    let may_be_accepted = |b: &Base, off: usize, value: u8| {
        (off == G_VERSION && (3..=6).contains(&value))
            || (G_METRIC..G_METRIC + 4).contains(&off)
            || (G_EFC..G_EFC + 4).contains(&off)
            || (G_ENTRY..G_ENTRY + 4).contains(&off)
            || (72..80).contains(&off)
            || (b.quant == Quantization::Pq && off == G_QUANT_PARAM)
            || (off >= TABLE && matches!((off - TABLE) % ENTRY, 4..=7 | 28..=31))
    };
    for b in all_bases() {
        let queries = perturbed_queries(&b.data, 3, 0.05, 10);
        let end = TABLE + ENTRY * section_count(&b.g);
        let mut panics = Vec::new();
        let mut wrongly_accepted = Vec::new();
        for off in (8..end).filter(|o| !(G_CRC..G_CRC + 4).contains(o)) {
            for value in [0x00u8, 0xFF, b.g[off] ^ 0x80, b.g[off].wrapping_add(1)] {
                if value == b.g[off] {
                    continue;
                }
                let mut g = b.g.clone();
                g[off] = value;
                reseal(&mut g);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    if let Ok(index) = open(&g, &b.v) {
                        for q in queries.rows() {
                            let _ = index.search(q, 5, &SearchParams::with_ef(16));
                        }
                        let _ = index.get(3);
                        let _ = index.degree_stats();
                        let _ = index.info();
                        true
                    } else {
                        false
                    }
                }));
                match r {
                    Ok(true) if !may_be_accepted(b, off, value) => {
                        wrongly_accepted.push((off, value))
                    }
                    Ok(_) => {}
                    Err(_) => panics.push((off, value)),
                }
            }
        }
        assert!(
            panics.is_empty(),
            "{:?}: panicked on (offset, byte) {panics:?}",
            b.quant
        );
        assert!(
            wrongly_accepted.is_empty(),
            "{:?}: accepted a changed load-bearing byte (offset, byte) {wrongly_accepted:?}",
            b.quant
        );
    }
}

#[test]
fn resealed_random_mutations_of_sections_never_panic() {
    for b in all_bases() {
        let queries = perturbed_queries(&b.data, 3, 0.05, 11);
        let kinds = present_kinds(&b.g);
        let mut rng = SplitMix(12);
        let mut panics = Vec::new();
        for _ in 0..300 {
            let mut g = b.g.clone();
            let (kind, _) = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
            let (off, len) = section(&g, kind);
            for _ in 0..1 + rng.next_u64() % 8 {
                let at = off + (rng.next_u64() % len as u64) as usize;
                g[at] = rng.next_u64() as u8;
            }
            fix_section_crc(&mut g, kind);
            let r = catch_unwind(AssertUnwindSafe(|| {
                if let Ok(index) = open(&g, &b.v) {
                    for q in queries.rows() {
                        for k in [1, 10, 400] {
                            let _ = index.search(q, k, &SearchParams::with_ef(32));
                            let _ = index.search(
                                q,
                                k,
                                &SearchParams {
                                    ef: 32,
                                    oversample: Some(1.0),
                                    ..Default::default()
                                },
                            );
                        }
                    }
                    for id in [0, 1, 399, 400] {
                        let _ = index.get(id);
                    }
                    let _ = index.degree_stats();
                }
            }));
            if r.is_err() {
                panics.push(kind);
            }
        }
        assert!(
            panics.is_empty(),
            "{:?}: panicked after mutating sections {panics:?}",
            b.quant
        );
    }
}

/// Reserved bytes are written as zero and must read as zero, so a later
/// version can give them meaning without an older reader misreading them.
#[test]
fn reserved_bytes_must_be_zero() {
    // Graph header: [108, 252) since version 2 (104..108 is quant_param,
    // see `quant_param_must_be_zero_unless_pq`), for every kind.
    for b in all_bases() {
        for at in [G_RESERVED, G_RESERVED + 1, 180, 251] {
            let case = format!("{:?}: graph byte {at}", b.quant);
            match graph_err(b, &case, |g| g[at] = 1) {
                Error::Corrupt {
                    file: FileKind::Graph,
                    what,
                    expected,
                    found,
                } => {
                    assert_eq!(what, "header reserved bytes 108..252", "{case}");
                    assert_eq!(expected, "zero", "{case}");
                    assert_eq!(found, format!("byte {at} = 0x01"), "{case}");
                }
                e => panic!("{case}: expected Corrupt, got {e:?}"),
            }
        }
    }
    let b = base();
    for at in [28usize, 60, 80, 123] {
        expect_vectors_corrupt(
            b,
            &format!("header reserved byte {at}"),
            &format!("vectors byte {at}"),
            |v| v[at] = 1,
        );
    }
    // Section table entries: flag bits other than `optional`, and the reserved word.
    let first = TABLE;
    expect_graph_corrupt(b, "flags/reserved", "entry flags bit 1", |g| {
        wr32(g, first + 4, 2)
    });
    expect_graph_corrupt(b, "flags/reserved", "entry reserved word", |g| {
        wr32(g, first + 28, 7)
    });
    // The manifest's reserved word.
    let dir = write_dir(b);
    let build_id = u128::from_le_bytes(b.g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    let mut m = manifest_bytes(1, build_id, 1, 0);
    wr32(&mut m, 44, 9);
    fs::write(dir.path().join("MANIFEST"), &m).unwrap();
    match Generation::open(dir.path()) {
        Err(Error::Corrupt {
            file: FileKind::Manifest,
            what,
            ..
        }) => {
            assert!(what.contains("reserved bytes 44..48"), "{what}")
        }
        other => panic!(
            "manifest reserved word: expected Corrupt, got {:?}",
            other.err()
        ),
    }
}

/// The unknown-kind error lists the kinds this version knows (1..=11 since
/// labels).
#[test]
fn unknown_kind_error_lists_the_known_kinds() {
    let b = base();
    let g = with_extra_section(&b.g, 12, 0, &[1, 2, 3]);
    match open_err(&g, &b.v, "kind 12") {
        Error::Corrupt { expected, .. } => {
            assert!(expected.contains("1..=11"), "{expected}")
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }
}

/// A zero-length section sharing its offset with the next section is not an
/// overlap, whichever order the table lists them in.
#[test]
fn zero_length_section_at_a_shared_offset_is_not_an_overlap() {
    let b = base();
    // An optional empty section placed at the codes' offset.
    let (codes_off, _) = section(&b.g, CODES);
    let mut g = with_extra_section(&b.g, 77, 1, &[]);
    let sc = section_count(&g);
    let extra = TABLE + (sc - 1) * ENTRY;
    wr64(&mut g, extra + 8, codes_off as u64);
    reseal(&mut g);
    open(&g, &b.v).expect("empty section at a shared offset is accepted");
    // Swap it to the front of the table: still accepted.
    let mut swapped = g.clone();
    let (a, z) = (TABLE, extra);
    let first: Vec<u8> = g[a..a + ENTRY].to_vec();
    let last: Vec<u8> = g[z..z + ENTRY].to_vec();
    swapped[a..a + ENTRY].copy_from_slice(&last);
    swapped[z..z + ENTRY].copy_from_slice(&first);
    reseal(&mut swapped);
    open(&swapped, &b.v).expect("table order does not matter");
}

/// A labelled build's `labels` section (kind 11): its length and reserved
/// word are checked at open (I16), a list out of bounds at lookup, the
/// rest (order, bounds, ordinals) by full verification, every case with
/// recomputed CRCs so only the structure check can catch it; and the
/// section is refused in a file older than version 6 (I10).
#[test]
fn labels_section_is_validated() {
    const LABELS: u32 = 11;
    let data = clustered(300, 8, 4, 0.15, 5);
    let mut b = strata::IndexBuilder::new(8, params(Metric::L2, Quantization::Int8, 3)).unwrap();
    for i in 0..300 {
        b.add_with_labels(i as u64, data.row(i), &[(i % 3) as u32, 10])
            .unwrap();
    }
    let built = b.build().unwrap();
    let (g0, v) = (built.graph_bytes().to_vec(), built.vectors_bytes().to_vec());
    assert_eq!(rd32(&g0, G_VERSION), 6);
    Generation::from_bytes(&g0, &v).unwrap();
    let (off, len) = section(&g0, LABELS);
    // 4 labels (0, 1, 2, 10), 600 postings: starts at 16, labels at 56,
    // postings at 72.
    assert_eq!(len, 16 + 8 * 5 + 4 * 4 + 4 * 600);
    // (what it does, mutation, caught at open?)
    type Mutate = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Mutate, bool, &str); 7] = [
        (
            "reserved word",
            |g, o| wr32(g, o + 4, 1),
            true,
            "section labels reserved word",
        ),
        (
            "label count",
            |g, o| wr32(g, o, 5),
            true,
            "section labels length",
        ),
        (
            "posting count",
            |g, o| wr64(g, o + 8, 601),
            true,
            "section labels length",
        ),
        (
            "labels out of order",
            |g, o| wr32(g, o + 56, 3),
            false,
            "section labels label",
        ),
        (
            "ordinal past the count",
            |g, o| wr32(g, o + 72, 300),
            false,
            "section labels list 0",
        ),
        (
            "postings out of order",
            |g, o| wr32(g, o + 76, 0),
            false,
            "section labels list 0",
        ),
        (
            "list bound past the postings",
            |g, o| wr64(g, o + 24, 700),
            false,
            "section labels list 0",
        ),
    ];
    for (case, mutate, at_open, what) in cases {
        let mut g = g0.clone();
        mutate(&mut g, off);
        fix_section_crc(&mut g, LABELS);
        let e = open_err(&g, &v, case);
        assert_corrupt(&e, FileKind::Graph, what, case);
        // The same bytes through a plain (mapped, unverified) open.
        let dir = files_dir(&g, &v);
        let plain = Generation::open(dir.path());
        assert_eq!(plain.is_err(), at_open, "{case}: plain open");
        if let Ok(index) = plain {
            let e = index.verify().unwrap_err();
            assert_corrupt(&e, FileKind::Graph, what, case);
        }
    }
    // A list out of bounds is an error at search too, not a panic.
    let mut g = g0.clone();
    wr64(&mut g, off + 24, 700);
    fix_section_crc(&mut g, LABELS);
    let dir = files_dir(&g, &v);
    let index = Generation::open(dir.path()).unwrap();
    let f = strata::Filter::labels("label = 0").unwrap();
    let sp = strata::SearchParams {
        filter: Some(&f),
        ..Default::default()
    };
    assert_corrupt(
        &index.search(data.row(0), 5, &sp).unwrap_err(),
        FileKind::Graph,
        "section labels list 0",
        "search",
    );
    // Version 5 has no labels section.
    let mut g = g0.clone();
    wr32(&mut g, G_VERSION, 5);
    reseal(&mut g);
    let mut v5 = v.clone();
    wr32(&mut v5, V_VERSION, 5);
    reseal_vectors(&mut v5);
    assert_corrupt(
        &open_err(&g, &v5, "v5"),
        FileKind::Graph,
        "section labels",
        "v5 with labels",
    );
}

/// A directory holding `g` and `v` as generation 1, with a MANIFEST.
fn files_dir(g: &[u8], v: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("g00000001.graph"), g).unwrap();
    fs::write(dir.path().join("g00000001.vectors"), v).unwrap();
    let build_id = u128::from_le_bytes(g[G_BUILD_ID..G_BUILD_ID + 16].try_into().unwrap());
    fs::write(
        dir.path().join("MANIFEST"),
        manifest_bytes(1, build_id, 1, 0),
    )
    .unwrap();
    dir
}
