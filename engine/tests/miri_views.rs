//! Drives every path where bytes become typed views, on inputs small enough
//! for Miri: `.ci/miri` runs this file under `cargo +nightly miri test`
//! (where `Bytes::map` reads the file instead of mapping it, since Miri
//! cannot execute mmap(2), so every cast and bounds check downstream is
//! checked against its allocation), and `cargo test` runs it natively.
//!
//! Miri runs about 10⁵ times slower than native code, and building an index
//! is all safe code, so the indexes come from the checked-in fixtures
//! (`tests/fixtures/golden-v1`: int8 L2 written by format version 1;
//! `golden-v2/{int8,pq,binary}`: L2, cosine, inner product), plus one tiny
//! float32 build for the code-less path. What it covers: opening through
//! the file path (`Generation::open`, as a server does) and through
//! `Generation::from_bytes` at an unaligned start, with full verification once;
//! approximate searches (graph traversal with prefetch, quantized scoring,
//! rescoring against the vectors file) and exact searches answering
//! identically on both paths; `get` through the vectors file's typed view;
//! hostile variants of a graph file with a valid header CRC (neighbour ids
//! out of range, self-loops, one node in every slot, link counts beyond
//! capacity, one long cycle, no links at all, an out-of-range entry point)
//! failing with a typed error or answering; and an append log replayed with
//! inserts, deletes and a torn tail.

mod common;

use common::{rd32, rd64, wr32};
use std::fs;
use std::path::{Path, PathBuf};
use strata::{
    BuildParams, Durability, Error, Generation, Index, IndexBuilder, Metric, Quantization,
    SearchParams, Writer,
};

const K: usize = 4;
const FILES: [&str; 3] = ["MANIFEST", "g00000001.graph", "g00000001.vectors"];
const GRAPH_FILE: &str = FILES[1];
const VECTORS_FILE: &str = FILES[2];

fn fixture_dirs() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    vec![
        ("golden-v1", root.join("golden-v1")),
        ("golden-v2/int8", root.join("golden-v2/int8")),
        ("golden-v2/pq", root.join("golden-v2/pq")),
        ("golden-v2/binary", root.join("golden-v2/binary")),
    ]
}

/// A writable copy of a fixture (tests never touch the checked-in files).
fn copy_fixture(dir: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in FILES {
        // read + write, not fs::copy: Miri has no copy_file_range(2).
        fs::write(tmp.path().join(name), fs::read(dir.join(name)).unwrap()).unwrap();
    }
    tmp
}

/// A float32 (code-less) index of 12 × 8 vectors, written to a new
/// directory: the one kind the fixtures lack.
fn tiny_float_index() -> tempfile::TempDir {
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::None,
        m: 4,
        ef_construction: 8,
        seed: Some(5),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(8, params).unwrap();
    for i in 0..12u64 {
        let row: Vec<f32> = (0..8)
            .map(|j| ((i * 7 + j * 3) % 13) as f32 - 6.0)
            .collect();
        b.add(i, &row).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    b.build().unwrap().write(dir.path()).unwrap();
    dir
}

/// Stored rows `ids`, shifted a little: queries with a known nearest row.
fn queries(index: &Generation, ids: &[u64]) -> Vec<(u64, Vec<f32>)> {
    ids.iter()
        .map(|&id| {
            let row = index.get(id).expect("stored id");
            let q = row
                .iter()
                .enumerate()
                .map(|(j, x)| x + 0.001 * (j % 3) as f32)
                .collect();
            (id, q)
        })
        .collect()
}

/// `(id, distance bits)` of approximate (and, with `exact`, exact) results
/// per query. Exact search scores every row: Miri affords it only on the
/// small float32 index.
fn answers(index: &Generation, queries: &[(u64, Vec<f32>)], exact: bool) -> Answers {
    let p = SearchParams::with_ef(8);
    let mut out = Vec::new();
    for (_, q) in queries {
        out.push(index.search(q, K, &p).expect("search"));
        if exact {
            out.push(index.exact_search(q, K).expect("exact search"));
        }
    }
    out.iter()
        .map(|r| r.iter().map(|n| (n.id, n.distance.to_bits())).collect())
        .collect()
}

/// `(id, distance bits)` of each result list.
type Answers = Vec<Vec<(u64, u32)>>;

/// Opens `dir` through the file path (as a server does: no full
/// verification), searches for shifted copies of rows `ids` and checks each
/// finds its row; returns the index, the queries and the answers.
fn check_open(
    name: &str,
    dir: &Path,
    ids: &[u64],
    exact: bool,
) -> (Generation, Vec<(u64, Vec<f32>)>, Answers) {
    let opened = Generation::open(dir).expect(name);
    let qs = queries(&opened, ids);
    let got = answers(&opened, &qs, exact);
    let per_query = 1 + exact as usize;
    for (i, (id, _)) in qs.iter().enumerate() {
        for r in &got[per_query * i..per_query * (i + 1)] {
            assert_eq!(r.len(), K, "{name}");
            // Under inner product a longer row may beat the shifted one.
            if opened.metric() != Metric::InnerProduct {
                assert_eq!(r[0].0, *id, "{name}: nearest of query {i}");
            }
        }
    }
    assert!(matches!(opened.get(1 << 40), Err(Error::UnknownId(_))));
    (opened, qs, got)
}

#[test]
fn fixtures_of_every_code_kind_open_and_answer() {
    for (name, dir) in fixture_dirs() {
        let tmp = copy_fixture(&dir);
        check_open(name, tmp.path(), &[5], false);
    }
}

/// Full verification and `from_bytes` at unaligned starts, on the smallest
/// index (a CRC over every byte is the slowest thing Miri runs here: about
/// a minute per 50 KB).
#[test]
fn unaligned_bytes_verify_and_answer_like_the_file() {
    let dir = tiny_float_index();
    let (opened, qs, want) = check_open("float32", dir.path(), &[0, 5, 11], true);
    opened.verify().expect("verify");
    // from_bytes must not assume the caller's slices are aligned; it copies
    // into aligned storage and verifies everything before answering.
    let g = fs::read(dir.path().join(GRAPH_FILE)).unwrap();
    let v = fs::read(dir.path().join(VECTORS_FILE)).unwrap();
    let mut buf = vec![0u8; g.len() + v.len() + 4];
    buf[1..1 + g.len()].copy_from_slice(&g);
    buf[3 + g.len()..3 + g.len() + v.len()].copy_from_slice(&v);
    let (gs, vs) = (&buf[1..1 + g.len()], &buf[3 + g.len()..][..v.len()]);
    let owned = Generation::from_bytes(gs, vs).expect("from_bytes");
    assert_eq!(want, answers(&owned, &qs, true), "from_bytes");
    // A flipped bit anywhere is caught by that verification.
    let mut bad = gs.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(Generation::from_bytes(&bad, vs).is_err());
}

// --- hostile graph files ----------------------------------------------------
//
// Offsets from format-spec/graph-file.md.

const SECTION_TABLE: usize = 256;
const SECTION_ENTRY: usize = 32;
const SECTION_COUNT_AT: usize = 68;
const ENTRY_POINT_AT: usize = 56;
const M0_AT: usize = 44;
const HEADER_CRC_AT: usize = 252;
const LINKS_LEVEL0: u32 = 5;
const LINKS_UPPER: u32 = 6;

/// Byte range of section `kind` (empty if absent).
fn section(g: &[u8], kind: u32) -> std::ops::Range<usize> {
    (0..rd32(g, SECTION_COUNT_AT) as usize)
        .map(|i| SECTION_TABLE + i * SECTION_ENTRY)
        .find(|&e| rd32(g, e) == kind)
        .map(|e| {
            let off = rd64(g, e + 8) as usize;
            off..off + rd64(g, e + 16) as usize
        })
        .unwrap_or(0..0)
}

/// Recomputes the header CRC (over `[0, 252)` and the section table), the
/// only checksum a plain open checks. Section CRCs are left stale on
/// purpose: full verification rejects these files (I15), and what is under
/// test is the unverified path a server takes. (Recomputing them would also
/// cost Miri about a minute per file.)
fn reseal_header(g: &mut [u8]) {
    let count = rd32(g, SECTION_COUNT_AT) as usize;
    let mut h = crc32fast::Hasher::new();
    h.update(&g[..HEADER_CRC_AT]);
    h.update(&g[SECTION_TABLE..SECTION_TABLE + count * SECTION_ENTRY]);
    wr32(g, HEADER_CRC_AT, h.finalize());
}

/// Rewrites every adjacency block of both link sections with `f(block
/// index, slot count) -> (count word, neighbour ids)`.
fn rewrite_links(g: &mut [u8], f: impl Fn(usize, usize) -> (u32, Vec<u32>)) {
    let m0 = rd32(g, M0_AT) as usize;
    let m = m0 / 2;
    for (kind, slots) in [(LINKS_LEVEL0, m0), (LINKS_UPPER, m)] {
        let r = section(g, kind);
        let words = 1 + slots;
        for (b, block) in g[r].chunks_exact_mut(4 * words).enumerate() {
            let (count, ids) = f(b, slots);
            block[..4].copy_from_slice(&count.to_le_bytes());
            for (s, id) in ids.iter().take(slots).enumerate() {
                block[4 + 4 * s..8 + 4 * s].copy_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Graph files a hostile writer could produce: every one keeps a valid
/// header, so on a plain open only the traversal's own checks stand between
/// it and an out-of-bounds read or an endless loop.
fn hostile_graphs(good: &[u8], n: u32) -> Vec<(&'static str, Vec<u8>)> {
    type Rewrite = Box<dyn Fn(usize, usize) -> (u32, Vec<u32>)>;
    let rewrites: Vec<(&'static str, Rewrite)> = vec![
        (
            "ids out of range",
            Box::new(move |_, s| (s as u32, vec![n, u32::MAX, n + 1, 1 << 31])),
        ),
        ("self loops", Box::new(|b, s| (s as u32, vec![b as u32; s]))),
        (
            "every slot the same node",
            Box::new(|_, s| (s as u32, vec![0; s])),
        ),
        (
            "count beyond capacity",
            Box::new(move |b, _| (u32::MAX, vec![(b as u32 + 1) % n])),
        ),
        (
            "one cycle",
            Box::new(move |b, _| (1, vec![(b as u32 + 1) % n])),
        ),
        (
            "no links: all but the entry unreachable",
            Box::new(|_, _| (0, vec![])),
        ),
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> = rewrites
        .into_iter()
        .map(|(name, f)| {
            let mut g = good.to_vec();
            rewrite_links(&mut g, f);
            reseal_header(&mut g);
            (name, g)
        })
        .collect();
    // Entry point out of range (a header field: open must reject it).
    let mut g = good.to_vec();
    wr32(&mut g, ENTRY_POINT_AT, n + 3);
    reseal_header(&mut g);
    out.push(("entry point out of range", g));
    out
}

#[test]
fn hostile_graphs_fail_typed_or_answer_without_reading_out_of_bounds() {
    // Traversal is the same code for every kind: under Miri, where each
    // case costs tens of seconds, one fixture and the float32 index do.
    let fixtures = fixture_dirs().into_iter();
    let fixtures = fixtures.filter(|(name, _)| !cfg!(miri) || *name == "golden-v2/int8");
    let mut dirs: Vec<(String, tempfile::TempDir)> = fixtures
        .map(|(name, dir)| (name.to_string(), copy_fixture(&dir)))
        .collect();
    dirs.push(("float32".into(), tiny_float_index()));
    for (fixture, dir) in &dirs {
        let good_index = Generation::open(dir.path()).unwrap();
        let (n, m0) = (good_index.len(), good_index.info().m0);
        let qs = queries(&good_index, &[5]);
        drop(good_index);
        let good = fs::read(dir.path().join(GRAPH_FILE)).unwrap();
        for (name, g) in hostile_graphs(&good, n as u32) {
            let case = format!("{fixture}: {name}");
            fs::write(dir.path().join(GRAPH_FILE), &g).unwrap();
            // Open as a server would: no full verification (which would
            // not object anyway: link contents are checked at traversal).
            let opened = Generation::open(dir.path());
            if name.starts_with("entry point") {
                assert!(
                    matches!(opened, Err(Error::Corrupt { .. })),
                    "{case}: {:?}",
                    opened.err()
                );
                continue;
            }
            let index = opened.expect(&case);
            for (_, q) in &qs {
                let r = index.search(q, K, &SearchParams::with_ef(8)).expect(&case);
                assert!(!r.is_empty() && r.len() <= K, "{case}: {r:?}");
                assert!(r.iter().all(|x| index.contains(x.id)), "{case}: {r:?}");
                assert!(
                    r.windows(2).all(|w| w[0].distance <= w[1].distance),
                    "{case}"
                );
            }
            let stats = index.degree_stats();
            assert!(stats.max <= m0, "{case}: {stats:?}");
            if !cfg!(miri) {
                assert!(index.verify().is_err(), "{case}: verification missed it");
            }
        }
    }
}

// --- append log ---------------------------------------------------------------

#[test]
fn log_replay_with_inserts_deletes_and_a_torn_tail() {
    let (_, fixture) = &fixture_dirs()[1];
    let dir = copy_fixture(fixture);
    let (probe, dim) = {
        let index = Generation::open(dir.path()).unwrap();
        (queries(&index, &[5]).swap_remove(0).1, index.dim())
    };
    let extra: Vec<f32> = probe.iter().map(|x| x + 0.0005).collect();
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        w.insert(1000, &extra).unwrap();
        w.delete(5).unwrap();
        assert!(matches!(
            w.insert(1001, &extra[..dim - 1]),
            Err(Error::DimensionMismatch { .. })
        ));
    }
    let log = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a log file");
    let check = |live: &Index, exact: bool| {
        assert!(live.contains(1000) && !live.contains(5));
        let r = live.search(&probe, K, &SearchParams::with_ef(8)).unwrap();
        assert_eq!(r[0].id, 1000, "{r:?}");
        assert!(r.iter().all(|x| x.id != 5), "{r:?}");
        if exact {
            let e = live.exact_search(&probe, K).unwrap();
            assert_eq!(e[0].id, 1000, "{e:?}");
            assert!(e.iter().all(|x| x.id != 5), "{e:?}");
        }
    };
    check(&Index::open(dir.path()).unwrap(), true);
    // A torn record at the tail (a crash mid-append) is ignored by readers.
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0x44, 0, 0, 0, 1, 2, 3]);
    fs::write(&log, &bytes).unwrap();
    check(&Index::open(dir.path()).unwrap(), false);
}
