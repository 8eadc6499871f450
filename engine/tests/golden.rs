//! Pins format compatibility: a small index written by format version 1
//! (`tests/fixtures/golden-v1/`: 300 × 8 vectors from
//! `clustered(300, 8, 4, 0.1, 42)`, L2, int8, M = 8, ef_construction = 50,
//! seed 42, one thread) must keep opening and answering its 20 recorded
//! queries (ef = 32, k = 5) with the same ids and bit-identical distances,
//! and a fresh build with the same inputs must reproduce the checked-in
//! files byte for byte. A change that breaks either is a format or
//! determinism change: bump the format version instead of regenerating.
//!
//! Regenerate (only for a deliberate change) with
//! `STRATA_REGENERATE_GOLDEN=1 cargo test -p strata --test golden`.
//!
//! `expected.txt` holds one line per query:
//! `<query f32 bits, comma-separated hex> => <id>:<distance f32 bits hex> ...`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use strata::dataset::clustered;
use strata::{
    BuildParams, BuiltIndex, Index, IndexBuilder, Metric, OpenOptions, Quantization, SearchParams,
};

const K: usize = 5;
const EF: usize = 32;
const FILES: [&str; 3] = ["MANIFEST", "g00000001.graph", "g00000001.vectors"];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1")
}

fn golden_build() -> BuiltIndex {
    let data = clustered(300, 8, 4, 0.1, 42);
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: 8,
        ef_construction: 50,
        seed: Some(42),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(8, params).unwrap();
    b.add_rows(&data.data).unwrap();
    b.build().unwrap()
}

/// 20 fixed queries: data rows 0, 15, 30, ... nudged by a fixed pattern.
fn golden_queries() -> Vec<Vec<f32>> {
    let data = clustered(300, 8, 4, 0.1, 42);
    (0..20)
        .map(|i| {
            data.row(i * 15)
                .iter()
                .enumerate()
                .map(|(j, x)| x + 0.02 * (((i * 7 + j * 3) % 5) as f32 - 2.0))
                .collect()
        })
        .collect()
}

struct Expected {
    query: Vec<f32>,
    hits: Vec<(u64, u32)>,
}

fn format_line(query: &[f32], hits: &[strata::Neighbor]) -> String {
    let q: Vec<String> = query
        .iter()
        .map(|x| format!("{:08x}", x.to_bits()))
        .collect();
    let h: Vec<String> = hits
        .iter()
        .map(|n| format!("{}:{:08x}", n.id, n.distance.to_bits()))
        .collect();
    format!("{} => {}", q.join(","), h.join(" "))
}

fn parse_expected(text: &str) -> Vec<Expected> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (q, h) = line.split_once(" => ").expect("`query => hits`");
            let query = q
                .split(',')
                .map(|x| f32::from_bits(u32::from_str_radix(x, 16).expect("hex f32 bits")))
                .collect();
            let hits = h
                .split_whitespace()
                .map(|pair| {
                    let (id, d) = pair.split_once(':').expect("id:bits");
                    (id.parse().unwrap(), u32::from_str_radix(d, 16).unwrap())
                })
                .collect();
            Expected { query, hits }
        })
        .collect()
}

/// Regenerates the fixture when `STRATA_REGENERATE_GOLDEN=1` (once per run).
fn maybe_regenerate() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("STRATA_REGENERATE_GOLDEN").as_deref() != Ok("1") {
            return;
        }
        let dir = fixture_dir();
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        let built = golden_build();
        built.write(&dir).unwrap();
        let index = built.into_index().unwrap();
        let mut text = String::from(
            "# strata golden-v1: clustered(300, 8, 4, 0.1, 42), L2, int8, M=8, ef_construction=50, seed 42, threads 1\n\
             # search ef=32 k=5; <query f32 bits> => <id>:<distance f32 bits>\n",
        );
        for q in golden_queries() {
            let hits = index.search(&q, K, &SearchParams::with_ef(EF)).unwrap();
            text.push_str(&format_line(&q, &hits));
            text.push('\n');
        }
        fs::write(dir.join("expected.txt"), text).unwrap();
        eprintln!("regenerated {}", dir.display());
    });
}

fn expected() -> Vec<Expected> {
    maybe_regenerate();
    let text = fs::read_to_string(fixture_dir().join("expected.txt")).expect(
        "tests/fixtures/golden-v1/expected.txt (regenerate with STRATA_REGENERATE_GOLDEN=1)",
    );
    let e = parse_expected(&text);
    assert_eq!(e.len(), 20);
    e
}

/// A private copy of the checked-in index, so no test can touch the fixture.
fn copy_fixture() -> tempfile::TempDir {
    maybe_regenerate();
    let tmp = tempfile::tempdir().unwrap();
    for name in FILES {
        fs::copy(fixture_dir().join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

fn check(index: &Index, expected: &[Expected], how: &str) {
    for (i, e) in expected.iter().enumerate() {
        let hits = index
            .search(&e.query, K, &SearchParams::with_ef(EF))
            .unwrap();
        let got: Vec<(u64, u32)> = hits.iter().map(|n| (n.id, n.distance.to_bits())).collect();
        assert_eq!(got, e.hits, "{how}: query {i} differs from expected.txt");
    }
}

#[test]
fn checked_in_index_answers_as_recorded() {
    let expected = expected();
    let dir = copy_fixture();
    let mapped = Index::open(dir.path()).unwrap();
    check(&mapped, &expected, "mmap open");
    let verified = Index::open_with(dir.path(), &OpenOptions { verify: true }).unwrap();
    verified.verify().unwrap();
    check(&verified, &expected, "verified open");
    let g = fs::read(dir.path().join(FILES[1])).unwrap();
    let v = fs::read(dir.path().join(FILES[2])).unwrap();
    check(&Index::from_bytes(&g, &v).unwrap(), &expected, "from_bytes");
}

#[test]
fn checked_in_header_is_read_as_written() {
    let dir = copy_fixture();
    let info = Index::open(dir.path()).unwrap().info();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.metric, Metric::L2);
    assert_eq!(info.quantization, Quantization::Int8);
    assert_eq!((info.dim, info.count), (8, 300));
    assert_eq!((info.m, info.m0, info.ef_construction), (8, 16, 50));
    assert_eq!(info.seed, 42);
    assert_eq!(info.level_counts[0], 300);
    assert_eq!(info.sections.len(), 8);
}

#[test]
fn fresh_build_reproduces_checked_in_files() {
    maybe_regenerate();
    let built = golden_build();
    let fixture = fixture_dir();
    let g = fs::read(fixture.join(FILES[1])).unwrap();
    let v = fs::read(fixture.join(FILES[2])).unwrap();
    assert!(
        built.graph_bytes() == g.as_slice(),
        "graph file differs from the checked-in golden-v1 graph"
    );
    assert!(
        built.vectors_bytes() == v.as_slice(),
        "vectors file differs from the checked-in golden-v1 vectors"
    );
    let tmp = tempfile::tempdir().unwrap();
    built.write(tmp.path()).unwrap();
    for name in FILES {
        assert!(
            fs::read(tmp.path().join(name)).unwrap() == fs::read(fixture.join(name)).unwrap(),
            "{name} differs from the checked-in one"
        );
    }
    // And the fresh in-memory index answers as recorded.
    check(&built.into_index().unwrap(), &expected(), "fresh build");
}

#[test]
fn recorded_queries_are_the_generated_ones() {
    let expected = expected();
    for (e, q) in expected.iter().zip(golden_queries()) {
        assert_eq!(
            e.query.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            q.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(e.hits.len(), K);
    }
}

#[test]
fn fixture_stays_small() {
    maybe_regenerate();
    let total: u64 = fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 100 * 1024, "golden fixture is {total} bytes");
}
