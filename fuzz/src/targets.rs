//! The logic of every fuzz target, as plain functions over byte slices.
//!
//! This file is compiled twice: as the `targets` module of the `strata-fuzz`
//! crate (what the libFuzzer binaries in `fuzz/fuzz_targets/` call), and by
//! `engine/tests/fuzz_corpus.rs` through `#[path]`, which replays every file
//! of the checked-in corpus through the same functions under `cargo test`.
//! It therefore depends on `strata`, `crc32fast` and `std` only.
//!
//! Every target returns normally on any input: a typed error from strata is
//! an accepted outcome. A panic (strata's or one of the assertions below,
//! which check properties every successfully opened index must have) is a
//! finding.
//!
//! Structure-aware mutation: `Generation::from_bytes` verifies every CRC, so
//! random bytes almost never get past the checksums. The `graph_file`,
//! `vectors_file` and `log_file` targets therefore run each input twice: as
//! given, and *resealed* (every checksum recomputed over the mutated bytes,
//! see [`reseal_graph`], [`reseal_vectors`], [`reseal_log`]), so mutations
//! of a real file reach the field validators. `index_search` goes further:
//! its input is a [`SearchCase`] (a fixture index, a list of [`Edit`]s
//! addressed by section and field, and queries), decoded by a small
//! hand-written decoder so that `cargo test` replays exactly what the fuzzer
//! ran without the `arbitrary` crate.

#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;
use strata::dataset::{self, Vectors};
use strata::{
    BuildParams, Error, Generation, IndexBuilder, LabelExpr, Metric, Quantization, SearchParams,
};

/// Dimension of the fixture indexes (padded to 32: exercises the padding).
pub const DIM: usize = 20;
/// Vectors in each fixture index.
pub const N: usize = 40;
/// PQ sub-vectors of the pq fixtures (4 components each).
pub const PQ_M: usize = 5;
/// `m` of the fixtures (`m0 = 8`): small, so several levels exist.
pub const M: usize = 4;

const PAGE: usize = 4096;
const GRAPH_HEADER_CRC: usize = 252;
const GRAPH_SECTION_COUNT: usize = 68;
const SECTION_TABLE: usize = 256;
const SECTION_ENTRY: usize = 32;
const MAX_SECTIONS: usize = (PAGE - SECTION_TABLE) / SECTION_ENTRY;
const GRAPH_BUILD_ID: usize = 80;
const VECTORS_HEADER_CRC: usize = 124;
const VECTORS_BUILD_ID: usize = 64;
const LOG_HEADER: usize = 64;
const LOG_HEADER_CRC: usize = 60;

/// Every quantizer kind, in code order.
pub const QUANTS: [Quantization; 6] = [
    Quantization::None,
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];
/// Every metric, in code order.
pub const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn wr_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------
// Fixtures: small real indexes of every quantizer × metric.
// ---------------------------------------------------------------------------

/// A small real index, built in memory from a fixed seed.
pub struct Fixture {
    /// `"<quantizer>-<metric>"`, e.g. `"pq-l2"`.
    pub name: String,
    /// Its quantizer.
    pub quant: Quantization,
    /// Its metric.
    pub metric: Metric,
    /// The rows it was built from (row `i` has id `1000 + 10·i`).
    pub data: Vectors,
    /// The graph file.
    pub graph: Vec<u8>,
    /// The vectors file.
    pub vectors: Vec<u8>,
}

impl Fixture {
    /// External id of row `i`.
    pub fn id(i: usize) -> u64 {
        1000 + 10 * i as u64
    }
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::L2 => "l2",
        Metric::InnerProduct => "ip",
        Metric::Cosine => "cosine",
    }
}

/// Builds one fixture (deterministic: seeded, single-threaded).
pub fn build_fixture(quant: Quantization, metric: Metric) -> Fixture {
    let data = dataset::clustered(N, DIM, 4, 0.2, 7);
    let params = BuildParams {
        metric,
        quantization: quant,
        m: M,
        ef_construction: 16,
        seed: Some(42),
        threads: 1,
        pq_m: Some(PQ_M),
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).expect("fixture parameters are valid");
    for (i, row) in data.rows().enumerate() {
        // The cosine fixtures carry labels (a `labels` section, version 6).
        let labels: &[u32] = match (metric, i % 4) {
            (Metric::Cosine, 0) => &[0],
            (Metric::Cosine, 1) => &[1, 2],
            (Metric::Cosine, 2) => &[2, 1000],
            _ => &[],
        };
        b.add_with_labels(Fixture::id(i), row, labels)
            .expect("fixture rows are valid");
    }
    let built = b.build().expect("fixture builds");
    Fixture {
        name: format!("{}-{}", quant.name(), metric_name(metric)),
        quant,
        metric,
        graph: built.graph_bytes().to_vec(),
        vectors: built.vectors_bytes().to_vec(),
        data,
    }
}

/// The 18 fixtures, quantizer-major (`QUANTS × METRICS`), built once per process.
pub fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        QUANTS
            .iter()
            .flat_map(|&q| METRICS.iter().map(move |&m| build_fixture(q, m)))
            .collect()
    })
}

/// The fixture whose build id is `id`, if any.
fn fixture_by_build_id(id: Option<&[u8]>) -> Option<&'static Fixture> {
    let id = id?;
    fixtures()
        .iter()
        .find(|f| &f.graph[GRAPH_BUILD_ID..GRAPH_BUILD_ID + 16] == id)
}

/// A copy of `graph` declaring format version 1 (valid for none, and int8
/// under l2).
pub fn as_version_1(graph: &[u8]) -> Vec<u8> {
    let mut g = graph.to_vec();
    wr_u32(&mut g, 8, 1);
    reseal_graph(&mut g);
    g
}

// ---------------------------------------------------------------------------
// Resealing: recompute every checksum over (mutated) bytes.
// ---------------------------------------------------------------------------

/// Recomputes the CRC of every in-bounds section in the table, then the
/// header CRC (`crc32(bytes[0..252] ++ table)`, stored at 252), as in
/// `format-spec/graph-file.md`. Leaves files shorter than a page, or whose
/// `section_count` exceeds 120, unchanged; returns whether it resealed.
pub fn reseal_graph(g: &mut [u8]) -> bool {
    if g.len() < PAGE {
        return false;
    }
    let count = rd_u32(g, GRAPH_SECTION_COUNT) as usize;
    if count > MAX_SECTIONS {
        return false;
    }
    for i in 0..count {
        let e = SECTION_TABLE + SECTION_ENTRY * i;
        let (off, len) = (rd_u64(g, e + 8), rd_u64(g, e + 16));
        if let Some(end) = off.checked_add(len).filter(|end| *end <= g.len() as u64) {
            let crc = crc32fast::hash(&g[off as usize..end as usize]);
            wr_u32(g, e + 24, crc);
        }
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&g[..GRAPH_HEADER_CRC]);
    h.update(&g[SECTION_TABLE..SECTION_TABLE + SECTION_ENTRY * count]);
    wr_u32(g, GRAPH_HEADER_CRC, h.finalize());
    true
}

/// Recomputes the vector data CRC (when `data_offset + data_len` is in
/// bounds) and the header CRC (`crc32(bytes[0..124])`, stored at 124).
pub fn reseal_vectors(v: &mut [u8]) -> bool {
    if v.len() < 128 {
        return false;
    }
    let (off, len) = (rd_u64(v, 40), rd_u64(v, 48));
    if let Some(end) = off.checked_add(len).filter(|end| *end <= v.len() as u64) {
        let crc = crc32fast::hash(&v[off as usize..end as usize]);
        wr_u32(v, 56, crc);
    }
    let crc = crc32fast::hash(&v[..VECTORS_HEADER_CRC]);
    wr_u32(v, VECTORS_HEADER_CRC, crc);
    true
}

/// Recomputes the log header CRC, then walks the record frames and
/// recomputes each whole record's checksums, stopping at the first frame
/// that does not fit. Version 3 frames are `body_len u32, body_crc u32`;
/// version 4 (and later) frames are `body_len u32, len_crc u32, body_crc u32`.
pub fn reseal_log(l: &mut [u8]) -> bool {
    if l.len() < LOG_HEADER {
        return false;
    }
    let crc = crc32fast::hash(&l[..LOG_HEADER_CRC]);
    wr_u32(l, LOG_HEADER_CRC, crc);
    let v4 = rd_u32(l, 8) >= 4;
    let frame = if v4 { 12 } else { 8 };
    let mut at = LOG_HEADER;
    while at + frame <= l.len() {
        let body = rd_u32(l, at) as usize;
        let Some(end) = (at + frame).checked_add(body).filter(|e| *e <= l.len()) else {
            break;
        };
        let crc = crc32fast::hash(&l[at + frame..end]);
        if v4 {
            let len_crc = crc32fast::hash(&l[at..at + 4]);
            wr_u32(l, at + 4, len_crc);
        }
        wr_u32(l, at + frame - 4, crc);
        at = end;
    }
    true
}

// ---------------------------------------------------------------------------
// What a run reached (for the corpus tests: did the harness get deep?).
// ---------------------------------------------------------------------------

/// How deep one target run got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Indexes (or logs, or input files) that opened / parsed successfully.
    pub opened: usize,
    /// Searches, exact searches and filtered searches that returned results.
    pub searches: usize,
}

impl Reached {
    fn add(&mut self, o: Reached) {
        self.opened += o.opened;
        self.searches += o.searches;
    }
}

// ---------------------------------------------------------------------------
// Exercising an opened index: searches, exact searches, lookups, with the
// properties every index that passed `from_bytes` must have.
// ---------------------------------------------------------------------------

/// One query of a [`SearchCase`].
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Where the query vector comes from.
    pub source: QuerySource,
    /// `k` (0 is a user error the index must reject; `usize::MAX` and
    /// 2⁴⁰ are valid requests for everything).
    pub k: usize,
    /// Beam width (`usize::MAX` included).
    pub ef: usize,
    /// Rescoring factor (values below 1 or non-finite must be rejected).
    pub oversample: Option<f32>,
    /// Re-rank by the vectors file (false: answer from the codes alone).
    pub rescore: bool,
}

/// The vector of a [`Query`].
#[derive(Debug, Clone, PartialEq)]
pub enum QuerySource {
    /// Fixture row `row % N`, each component `j` shifted by
    /// `noise · 0.01 · (j + 1)`; cycled or cut to the opened index's dimension.
    Row {
        /// Row of the fixture's data.
        row: usize,
        /// Signed noise amplitude.
        noise: i8,
    },
    /// Raw components (zero-filled or cut to the opened index's dimension).
    Raw(Vec<f32>),
}

fn query_vector(src: &QuerySource, fx: &Fixture, dim: usize) -> Vec<f32> {
    match src {
        QuerySource::Row { row, noise } => {
            let r = fx.data.row(row % fx.data.len());
            (0..dim)
                .map(|j| r[j % r.len()] + *noise as f32 * 0.01 * (j + 1) as f32)
                .collect()
        }
        QuerySource::Raw(v) => (0..dim).map(|j| v.get(j).copied().unwrap_or(0.0)).collect(),
    }
}

/// The queries the `graph_file` and `vectors_file` targets run on any file
/// that opens: exact and perturbed fixture rows, with and without
/// rescoring, from the codes alone, and `k` above the index size.
pub fn default_queries() -> Vec<Query> {
    let q = |row, noise, k, ef, oversample, rescore| Query {
        source: QuerySource::Row { row, noise },
        k,
        ef,
        oversample,
        rescore,
    };
    vec![
        q(0, 0, 5, 16, None, true),
        q(7, 20, 3, 0, Some(2.0), true),
        q(13, -50, N + 3, 64, Some(1.0), true),
        q(21, 5, 4, 24, None, false),
    ]
}

/// Checks a result list: at most `k` entries, no repeated id, every id held
/// by the index, sorted by distance (total order, as the engine sorts).
fn check_results(index: &Generation, hits: &[strata::Neighbor], k: usize, what: &str) {
    assert!(
        hits.len() <= k,
        "{what}: {} results for k = {k}",
        hits.len()
    );
    let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hits.len(), "{what}: repeated id in {hits:?}");
    for h in hits {
        assert!(
            index.contains(h.id),
            "{what}: returned id {} that the index does not hold",
            h.id
        );
    }
    for w in hits.windows(2) {
        assert!(
            w[0].distance.total_cmp(&w[1].distance).is_le(),
            "{what}: results not sorted by distance: {hits:?}"
        );
    }
}

/// Runs every read-side operation on an opened index and asserts what any
/// index that passed full verification must satisfy.
pub fn exercise(index: &Generation, fx: &Fixture, queries: &[Query], probe_ids: &[u64]) -> Reached {
    let mut reached = Reached {
        opened: 1,
        searches: 0,
    };
    let (n, dim) = (index.len(), index.dim());
    assert!(n >= 1, "an opened index holds at least one vector");
    let info = index.info();
    assert_eq!((info.count, info.dim), (n, dim));
    assert_eq!(info.level_counts.len(), info.max_level + 1);
    assert_eq!(info.level_counts[0] as usize, n);
    let stats = index.degree_stats();
    assert!(stats.min <= stats.max && stats.max <= info.m0, "{stats:?}");
    assert!(stats.isolated <= n);

    for (qi, query) in queries.iter().enumerate() {
        let v = query_vector(&query.source, fx, dim);
        let params = SearchParams {
            ef: query.ef,
            oversample: query.oversample,
            rescore: query.rescore,
            ..Default::default()
        };
        // The same query filtered to odd ids: every hit allowed, and as
        // many as match (up to k), whichever path the planner takes.
        let odd = strata::Filter::predicate(|id| id % 2 == 1);
        for exact_below in [Some(0), None] {
            let filtered = SearchParams {
                filter: Some(&odd),
                exact_below,
                ..params
            };
            if let (Ok(hits), Ok(all)) = (
                index.search(&v, query.k, &filtered),
                index.exact_search(&v, n),
            ) {
                let what = format!("filtered search {qi}");
                check_results(index, &hits, query.k, &what);
                assert!(hits.iter().all(|h| h.id % 2 == 1), "{what}: {hits:?}");
                let matches = all.iter().filter(|h| h.id % 2 == 1).count();
                assert_eq!(hits.len(), query.k.min(matches), "{what}: result count");
                reached.searches += 1;
            }
        }
        // A label filter: resolved from the (possibly hostile) labels
        // section's inverted lists; an error or an answer, never a panic.
        let labelled =
            strata::Filter::labels("label = 1 or not label in (0, 2)").expect("a valid expression");
        let by_label = SearchParams {
            filter: Some(&labelled),
            ..params
        };
        if let Ok(hits) = index.search(&v, query.k, &by_label) {
            check_results(
                index,
                &hits,
                query.k,
                &format!("label-filtered search {qi}"),
            );
            for h in &hits {
                // Labels of a hit read back (their lists may be damaged,
                // so whether they match is only checked when verified).
                let _ = index.labels(h.id);
            }
        }
        if let Ok(hits) = index.search(&v, query.k, &params) {
            check_results(index, &hits, query.k, &format!("search {qi}"));
            // The entry point is always reachable.
            assert!(!hits.is_empty(), "search {qi}: no result");
            reached.searches += 1;
        }
        if let Ok(hits) = index.exact_search(&v, query.k) {
            check_results(index, &hits, query.k, &format!("exact search {qi}"));
            assert_eq!(
                hits.len(),
                query.k.min(n),
                "exact search {qi}: result count"
            );
            reached.searches += 1;
        }
    }

    let fixture_ids = (0..3).map(Fixture::id);
    for id in probe_ids.iter().copied().chain(fixture_ids) {
        match index.get(id) {
            Ok(v) => {
                assert!(
                    index.contains(id),
                    "get({id}) succeeded but contains is false"
                );
                assert_eq!(v.len(), dim, "get({id}): wrong length");
            }
            Err(_) => assert!(!index.contains(id), "contains({id}) but get failed"),
        }
    }
    reached
}

// ---------------------------------------------------------------------------
// Target: graph_file.
// ---------------------------------------------------------------------------

fn open_and_exercise(graph: &[u8], vectors: &[u8], fx: &Fixture) -> Reached {
    match Generation::from_bytes(graph, vectors) {
        Ok(index) => exercise(&index, fx, &default_queries(), &[0, u64::MAX]),
        Err(_) => Reached::default(),
    }
}

/// `graph_file`: `data` is a whole graph file. It is paired with the
/// fixture vectors file whose build id matches bytes `[80, 96)` (else an
/// empty vectors file), opened as given, then opened again resealed.
pub fn graph_file(data: &[u8]) -> Reached {
    let fx = fixture_by_build_id(data.get(GRAPH_BUILD_ID..GRAPH_BUILD_ID + 16));
    let (vectors, fx) = match fx {
        Some(f) => (&f.vectors[..], f),
        None => (&[][..], &fixtures()[0]),
    };
    let mut reached = open_and_exercise(data, vectors, fx);
    let mut sealed = data.to_vec();
    if reseal_graph(&mut sealed) && sealed != data {
        reached.add(open_and_exercise(&sealed, vectors, fx));
    }
    reached
}

// ---------------------------------------------------------------------------
// Target: vectors_file.
// ---------------------------------------------------------------------------

/// `vectors_file`: `data` is a whole vectors file, paired with the fixture
/// graph file whose build id matches bytes `[64, 80)` (else the first
/// fixture's), opened as given, then opened again resealed.
pub fn vectors_file(data: &[u8]) -> Reached {
    let fx = fixture_by_build_id(data.get(VECTORS_BUILD_ID..VECTORS_BUILD_ID + 16))
        .unwrap_or(&fixtures()[0]);
    let mut reached = open_and_exercise(&fx.graph, data, fx);
    let mut sealed = data.to_vec();
    if reseal_vectors(&mut sealed) && sealed != data {
        reached.add(open_and_exercise(&fx.graph, &sealed, fx));
    }
    reached
}

// ---------------------------------------------------------------------------
// Target: log_file.
// ---------------------------------------------------------------------------

fn parse_and_check_log(bytes: &[u8]) -> Reached {
    let Ok((info, ops, report)) = strata::log::parse_log(bytes) else {
        return Reached::default();
    };
    assert_eq!(
        ops.len() as u64,
        report.ops,
        "one op per committed operation"
    );
    assert!(
        report.records >= report.ops + 2 * report.batches,
        "batch records are counted: {report:?}"
    );
    assert_eq!(
        report.valid_len + report.torn_bytes,
        bytes.len() as u64,
        "valid bytes and torn tail cover the log: {report:?}"
    );
    assert!(report.valid_len >= LOG_HEADER as u64);
    for op in &ops {
        if let strata::log::Op::Insert { vector, .. } | strata::log::Op::Upsert { vector, .. } = op
        {
            assert_eq!(vector.len(), info.dim as usize, "logged vector length");
        }
    }
    Reached {
        opened: 1,
        searches: 0,
    }
}

/// `log_file`: `data` is a whole log file, parsed as given, then resealed.
pub fn log_file(data: &[u8]) -> Reached {
    let mut reached = parse_and_check_log(data);
    let mut sealed = data.to_vec();
    if reseal_log(&mut sealed) && sealed != data {
        reached.add(parse_and_check_log(&sealed));
    }
    reached
}

// ---------------------------------------------------------------------------
// Target: input_readers.
// ---------------------------------------------------------------------------

/// Parser selectors of `input_readers` (first byte, modulo 4).
pub const READER_FVECS: u8 = 0;
/// `.bvecs`.
pub const READER_BVECS: u8 = 1;
/// `.ivecs`.
pub const READER_IVECS: u8 = 2;
/// `.npy`.
pub const READER_NPY: u8 = 3;

fn check_vectors(v: &Vectors) {
    assert!(v.dim >= 1, "a parsed file has a dimension");
    assert!(!v.data.is_empty(), "a parsed file has rows");
    assert_eq!(v.data.len() % v.dim, 0, "whole rows");
}

/// `input_readers`: the first byte (mod 4) picks `.fvecs`, `.bvecs`,
/// `.ivecs` or `.npy`; the rest is the file.
pub fn input_readers(data: &[u8]) -> Reached {
    let Some((&sel, bytes)) = data.split_first() else {
        return Reached::default();
    };
    let ok = match sel % 4 {
        READER_FVECS => dataset::parse_fvecs(bytes, Path::new("fuzz.fvecs"))
            .map(|v| check_vectors(&v))
            .is_ok(),
        READER_BVECS => dataset::parse_bvecs(bytes, Path::new("fuzz.bvecs"))
            .map(|v| check_vectors(&v))
            .is_ok(),
        READER_IVECS => dataset::parse_ivecs(bytes, Path::new("fuzz.ivecs"))
            .map(|rows| {
                assert!(!rows.is_empty());
                let d = rows[0].len();
                assert!(d >= 1 && rows.iter().all(|r| r.len() == d), "equal rows");
            })
            .is_ok(),
        _ => dataset::parse_npy(bytes, Path::new("fuzz.npy"))
            .map(|v| check_vectors(&v))
            .is_ok(),
    };
    Reached {
        opened: ok as usize,
        searches: 0,
    }
}

// ---------------------------------------------------------------------------
// Target: tuning_file.

/// The build id a tuning file claims (bytes 16..32), so that a mutated
/// file gets past the build check to the other validators.
fn tuning_build_id(b: &[u8]) -> u128 {
    b.get(16..32)
        .map_or(0, |s| u128::from_le_bytes(s.try_into().expect("16 bytes")))
}

/// `tuning_file`: `data` is a tuning file (`gNNNNNNNN.tuning`), decoded
/// as given and resealed (its trailing CRC recomputed, so mutations reach
/// the field validators), for the build id it claims. An error must be
/// one of the tuning file's; a decoded file must encode back to exactly
/// its bytes, hold at most `MAX_TUNING_POINTS` strictly ascending targets,
/// and choose each of its own points for its target; and another build's
/// id must be refused.
pub fn tuning_file(data: &[u8]) -> Reached {
    let mut r = Reached::default();
    let mut resealed = data.to_vec();
    if resealed.len() >= 4 {
        let at = resealed.len() - 4;
        let crc = crc32fast::hash(&resealed[..at]);
        resealed[at..].copy_from_slice(&crc.to_le_bytes());
    }
    for bytes in [data, &resealed[..]] {
        let build = tuning_build_id(bytes);
        match strata::format::decode_tuning(bytes, build) {
            Ok(t) => {
                r.opened += 1;
                let back = strata::format::encode_tuning(&t, build)
                    .unwrap_or_else(|e| panic!("a decoded file does not encode: {e}"));
                assert_eq!(back, bytes, "decode then encode is not the identity");
                assert!(t.points.len() <= strata::MAX_TUNING_POINTS);
                assert!(t.points.windows(2).all(|w| w[0].target < w[1].target));
                for p in &t.points {
                    let chosen = t.point_for(p.target, t.k).expect("its own target");
                    assert_eq!(chosen, p, "target {} chose another point", p.target);
                }
                assert!(strata::format::decode_tuning(bytes, build ^ 1).is_err());
            }
            Err(
                Error::BadMagic { file, .. }
                | Error::UnsupportedVersion { file, .. }
                | Error::Corrupt { file, .. }
                | Error::ChecksumMismatch { file, .. },
            ) => assert_eq!(file, strata::FileKind::Tuning),
            Err(e) => panic!("not a tuning file error: {e}"),
        }
    }
    r
}

/// Seed tuning files: none, one and three points, stale, the most points.
pub fn tuning_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use strata::{Tuning, TuningPoint, TuningSource};
    let point = |target: f32, ef: usize, oversample: Option<f32>, rescore: bool| TuningPoint {
        target,
        ef,
        oversample,
        rescore,
        recall: target,
        held_out_recall: target,
        qps: 1e4,
    };
    let base = Tuning {
        measured_at: 1_796_400_000,
        k: 10,
        queries: 1000,
        held_out: 500,
        source: TuningSource::SampledRows,
        live_count: 50_000,
        stale: false,
        measured_build_id: 0x1234_5678_9abc_def0_1122_3344_5566_7788,
        points: vec![
            point(0.9, 16, Some(2.0), true),
            point(0.95, 32, None, true),
            point(0.99, 96, None, false),
        ],
    };
    let id = base.measured_build_id;
    let enc = |t: &Tuning, b: u128| strata::format::encode_tuning(t, b).expect("seed encodes");
    let one = Tuning {
        points: vec![point(0.95, 24, Some(1.5), true)],
        source: TuningSource::QueryFile,
        ..base.clone()
    };
    let none = Tuning {
        points: Vec::new(),
        ..base.clone()
    };
    let stale = Tuning {
        stale: true,
        ..base.clone()
    };
    let most = Tuning {
        points: (0..strata::MAX_TUNING_POINTS)
            .map(|i| point(0.5 + i as f32 / 200.0, 8 + i, None, i % 2 == 0))
            .collect(),
        ..base.clone()
    };
    vec![
        ("three-points", enc(&base, id)),
        ("one-point-query-file", enc(&one, id)),
        ("no-points", enc(&none, id)),
        ("stale", enc(&stale, id ^ 0xff)),
        ("most-points", enc(&most, id)),
    ]
}

// ---------------------------------------------------------------------------
// Target: filter_expr.
// ---------------------------------------------------------------------------

/// A splitmix64 step: the label sets `filter_expr` evaluates on are drawn
/// from it, seeded by the input's bytes (no `rand` here: see the top).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `filter_expr`: `data`, as UTF-8 (invalid sequences replaced), is a
/// label filter expression. A parse error must point inside the text; a
/// parsed expression must print to text that parses back to it, and its
/// bitmap evaluation must agree with `matches` on up to 130 label sets
/// drawn (from the labels it mentions, their successors, 0 and
/// `u32::MAX`) by a generator seeded with the input, and report a failing
/// inverted list.
pub fn filter_expr(data: &[u8]) -> Reached {
    let text = String::from_utf8_lossy(data);
    let expr = match LabelExpr::parse(&text) {
        Ok(e) => e,
        Err(Error::FilterExpression { position, what }) => {
            assert!(
                position <= text.len(),
                "error at byte {position} of {}: {what}",
                text.len()
            );
            assert!(!what.is_empty());
            return Reached::default();
        }
        Err(e) => panic!("not a filter expression error: {e}"),
    };
    let printed = expr.to_string();
    let back = LabelExpr::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(back, expr, "{printed:?} parses to another expression");
    assert_eq!(back.to_string(), printed, "printing is not canonical");

    let labels = expr.labels();
    assert!(
        labels.windows(2).all(|w| w[0] < w[1]),
        "labels sorted, distinct"
    );
    let mut pool = labels.clone();
    pool.extend(labels.iter().map(|l| l.wrapping_add(1)));
    pool.extend([0, u32::MAX]);
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let n = 1 + (splitmix(&mut state) % 130) as usize;
    let sets: Vec<Vec<u32>> = (0..n)
        .map(|_| {
            let len = splitmix(&mut state) % 5;
            (0..len)
                .map(|_| pool[(splitmix(&mut state) % pool.len() as u64) as usize])
                .collect()
        })
        .collect();
    let mut postings = |label: u32, words: &mut [u64]| -> strata::Result<()> {
        for (o, s) in sets.iter().enumerate() {
            if s.contains(&label) {
                words[o / 64] |= 1 << (o % 64);
            }
        }
        Ok(())
    };
    let bitmap = expr
        .eval_bitmap(n, &mut postings)
        .expect("postings never fail");
    assert_eq!(bitmap.len(), n.div_ceil(64));
    for (o, s) in sets.iter().enumerate() {
        let bit = bitmap[o / 64] >> (o % 64) & 1 == 1;
        assert_eq!(
            bit,
            expr.matches(s),
            "{printed:?}: ordinal {o}, labels {s:?}"
        );
    }
    if let r @ 1.. = n % 64 {
        assert_eq!(bitmap[n / 64] >> r, 0, "{printed:?}: bits past n");
    }
    assert!(expr.eval_bitmap(0, &mut |_, _| Ok(())).unwrap().is_empty());

    // A corrupt inverted list of any mentioned label is reported.
    let bad = labels[(splitmix(&mut state) % labels.len() as u64) as usize];
    let r = expr.eval_bitmap(n, &mut |label, _| {
        if label == bad {
            Err(Error::InvalidParameter {
                name: "postings",
                reason: format!("corrupt list {label}"),
            })
        } else {
            Ok(())
        }
    });
    assert!(
        matches!(&r, Err(Error::InvalidParameter { reason, .. }) if *reason == format!("corrupt list {bad}")),
        "{printed:?}: the failing list of {bad} was not reported: {r:?}"
    );
    Reached {
        opened: 1,
        searches: 0,
    }
}

// ---------------------------------------------------------------------------
// Target: index_search (structure-aware).
// ---------------------------------------------------------------------------

/// One structured mutation of a fixture's files. Entry numbers and offsets
/// are reduced modulo what exists; writes are clipped to their region.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Overwrite header bytes at `offset % 252`.
    Header { offset: usize, bytes: Vec<u8> },
    /// Set the aligned header word at `(offset % 252) & !3` to `value`.
    HeaderWord { offset: usize, value: Value },
    /// Overwrite bytes of section table entry `entry` at `offset % 32`
    /// (kind +0, flags +4, offset +8, len +16, crc +24, reserved +28).
    TableEntry {
        entry: usize,
        offset: usize,
        bytes: Vec<u8>,
    },
    /// Copy table entry `from` over entry `to` (duplicates, overlaps).
    CopyEntry { from: usize, to: usize },
    /// Overwrite bytes inside the section of table entry `entry`.
    Section {
        entry: usize,
        offset: usize,
        bytes: Vec<u8>,
    },
    /// Set u32 word `word` of the section of entry `entry` to `value`
    /// (link counts and neighbour ids, level counts, id-map halves).
    SectionWord {
        entry: usize,
        word: usize,
        value: Value,
    },
    /// Overwrite bytes of the vectors file at `offset % len`.
    Vectors { offset: usize, bytes: Vec<u8> },
    /// Set the aligned vectors-header word at `(offset % 124) & !3`.
    VectorsWord { offset: usize, value: Value },
    /// Cut or zero-extend the graph (`vectors: false`) or vectors file to
    /// `len % (old_len + 8192)` bytes, optionally fixing the graph's `file_len`.
    Resize {
        vectors: bool,
        len: usize,
        fix_len_field: bool,
    },
}

/// A u32 to write: a raw value or one chosen relative to the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// This exact value.
    Raw(u32),
    /// One of 15 boundary values (0, 1, 2, n−1, n, n+1, u32::MAX, …).
    Special(u8),
}

impl Value {
    fn resolve(self, n: u32, m: u32) -> u32 {
        match self {
            Value::Raw(v) => v,
            Value::Special(s) => match s % 15 {
                0 => 0,
                1 => 1,
                2 => 2,
                3 => n - 1,
                4 => n,
                5 => n + 1,
                6 => u32::MAX,
                7 => u32::MAX - 1,
                8 => 0x8000_0000,
                9 => m,
                10 => 2 * m,
                11 => 2 * m + 1,
                12 => PAGE as u32,
                13 => 32,
                _ => 65_537,
            },
        }
    }
}

/// A decoded `index_search` input.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCase {
    /// Generation into [`fixtures`] (modulo their number).
    pub fixture: usize,
    /// Mutations, applied in order; then every checksum is recomputed.
    pub edits: Vec<Edit>,
    /// Searches and exact searches to run if the result opens.
    pub queries: Vec<Query>,
    /// Ids passed to `get` and `contains` (plus three fixture ids).
    pub probe_ids: Vec<u64>,
}

/// Bytes per encoded edit and per encoded query.
const EDIT_BYTES: usize = 16;
const QUERY_BYTES: usize = 8;
const MAX_EDITS: usize = 16;
const MAX_QUERIES: usize = 8;
const OVERSAMPLE: [Option<f32>; 8] = [
    None,
    Some(1.0),
    Some(1.5),
    Some(2.0),
    Some(8.0),
    Some(1000.0),
    Some(0.5),
    Some(f32::NAN),
];

/// Reads fixed-size fields; past the end everything reads as zero.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn fixed<const K: usize>(&mut self) -> [u8; K] {
        let mut out = [0u8; K];
        let src = self.take(K);
        out[..src.len()].copy_from_slice(src);
        out
    }
}

impl SearchCase {
    /// Decodes fuzzer bytes. Layout: `fixture u8, edits u8, queries u8`,
    /// then `edits % 17` edits of 16 bytes, `queries % 9` queries of
    /// 8 bytes, then a pool of raw f32 query components (raw queries take
    /// `DIM` each, in order), and finally the probe ids (u64 each) from the
    /// remaining bytes. Every byte string decodes to some case.
    pub fn decode(data: &[u8]) -> SearchCase {
        let mut c = Cursor(data);
        let [fixture, ne, nq] = c.fixed::<3>();
        let edits: Vec<Edit> = (0..ne as usize % (MAX_EDITS + 1))
            .map(|_| decode_edit(c.fixed::<EDIT_BYTES>()))
            .collect();
        let raw_specs: Vec<[u8; QUERY_BYTES]> = (0..nq as usize % (MAX_QUERIES + 1))
            .map(|_| c.fixed::<QUERY_BYTES>())
            .collect();
        let mut queries = Vec::new();
        for q in raw_specs {
            let source = if q[0] % 4 == 3 {
                let floats = c.take(4 * DIM);
                QuerySource::Raw(
                    floats
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                        .collect(),
                )
            } else {
                QuerySource::Row {
                    row: q[1] as usize,
                    noise: q[2] as i8,
                }
            };
            queries.push(Query {
                source,
                k: decode_k(q[3]),
                ef: if q[4] == 255 {
                    usize::MAX
                } else {
                    q[4] as usize
                },
                oversample: OVERSAMPLE[q[5] as usize % OVERSAMPLE.len()],
                rescore: q[5] & 0x80 == 0,
            });
        }
        let probe_ids =
            c.0.chunks_exact(8)
                .take(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect();
        SearchCase {
            fixture: fixture as usize,
            edits,
            queries,
            probe_ids,
        }
    }

    /// Encodes a case so that [`SearchCase::decode`] returns it (used to
    /// write the seed corpus). Raw queries must have `DIM` components, edit
    /// byte strings 1..=8 bytes, and values in range of their fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.fixture as u8,
            self.edits.len() as u8,
            self.queries.len() as u8,
        ];
        for e in &self.edits {
            out.extend_from_slice(&encode_edit(e));
        }
        for q in &self.queries {
            let mut b = [0u8; QUERY_BYTES];
            match &q.source {
                QuerySource::Row { row, noise } => {
                    b[1] = *row as u8;
                    b[2] = *noise as u8;
                }
                QuerySource::Raw(_) => b[0] = 3,
            }
            b[3] = encode_k(q.k);
            b[4] = if q.ef == usize::MAX { 255 } else { q.ef as u8 };
            b[5] = OVERSAMPLE
                .iter()
                .position(|o| match (o, q.oversample) {
                    (Some(a), Some(b)) => a.to_bits() == b.to_bits(),
                    (None, None) => true,
                    _ => false,
                })
                .expect("an oversample value of the table") as u8
                | if q.rescore { 0 } else { 0x80 };
            out.extend_from_slice(&b);
        }
        for q in &self.queries {
            if let QuerySource::Raw(v) = &q.source {
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        for id in &self.probe_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }
}

/// `k` of a query byte: 255 → 0 (rejected), 254 → `usize::MAX`, 253 →
/// 2⁴⁰ (both far above any index size), else `1 + b % 64`.
fn decode_k(b: u8) -> usize {
    match b {
        255 => 0,
        254 => usize::MAX,
        253 => 1 << 40,
        _ => 1 + b as usize % 64,
    }
}

fn encode_k(k: usize) -> u8 {
    match k {
        0 => 255,
        usize::MAX => 254,
        k if k == 1 << 40 => 253,
        k => (k - 1) as u8,
    }
}

/// Edit layout: `op, a, c, len, b u32, data [u8; 8]`.
fn decode_edit(e: [u8; EDIT_BYTES]) -> Edit {
    let (op, a, c, len) = (e[0], e[1] as usize, e[2], 1 + e[3] as usize % 8);
    let b = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes")) as usize;
    let data = e[8..8 + len].to_vec();
    let value = if c & 0x80 != 0 {
        Value::Special(c & 0x7f)
    } else {
        Value::Raw(u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")))
    };
    match op % 9 {
        0 => Edit::Header {
            offset: b,
            bytes: data,
        },
        1 => Edit::HeaderWord { offset: b, value },
        2 => Edit::TableEntry {
            entry: a,
            offset: b,
            bytes: data,
        },
        3 => Edit::CopyEntry {
            from: a,
            to: c as usize,
        },
        4 => Edit::Section {
            entry: a,
            offset: b,
            bytes: data,
        },
        5 => Edit::SectionWord {
            entry: a,
            word: b,
            value,
        },
        6 => Edit::Vectors {
            offset: b,
            bytes: data,
        },
        7 => Edit::VectorsWord { offset: b, value },
        _ => Edit::Resize {
            vectors: a & 1 == 1,
            len: b,
            fix_len_field: c & 1 == 1,
        },
    }
}

fn encode_edit(e: &Edit) -> [u8; EDIT_BYTES] {
    let mut out = [0u8; EDIT_BYTES];
    let mut put = |op: u8, a: usize, c: u8, b: usize, data: &[u8]| {
        assert!(!data.is_empty() && data.len() <= 8, "1..=8 edit bytes");
        out[0] = op;
        out[1] = a as u8;
        out[2] = c;
        out[3] = (data.len() - 1) as u8;
        out[4..8].copy_from_slice(&(b as u32).to_le_bytes());
        out[8..8 + data.len()].copy_from_slice(data);
    };
    let value = |v: &Value| match *v {
        Value::Raw(x) => (0u8, x.to_le_bytes()),
        Value::Special(s) => (0x80 | (s & 0x7f), [0; 4]),
    };
    match e {
        Edit::Header { offset, bytes } => put(0, 0, 0, *offset, bytes),
        Edit::HeaderWord { offset, value: v } => {
            let (c, d) = value(v);
            put(1, 0, c, *offset, &d)
        }
        Edit::TableEntry {
            entry,
            offset,
            bytes,
        } => put(2, *entry, 0, *offset, bytes),
        Edit::CopyEntry { from, to } => put(3, *from, *to as u8, 0, &[0]),
        Edit::Section {
            entry,
            offset,
            bytes,
        } => put(4, *entry, 0, *offset, bytes),
        Edit::SectionWord {
            entry,
            word,
            value: v,
        } => {
            let (c, d) = value(v);
            put(5, *entry, c, *word, &d)
        }
        Edit::Vectors { offset, bytes } => put(6, 0, 0, *offset, bytes),
        Edit::VectorsWord { offset, value: v } => {
            let (c, d) = value(v);
            put(7, 0, c, *offset, &d)
        }
        Edit::Resize {
            vectors,
            len,
            fix_len_field,
        } => put(8, *vectors as usize, *fix_len_field as u8, *len, &[0]),
    }
    out
}

fn write_clipped(dst: &mut [u8], at: usize, end: usize, bytes: &[u8]) {
    let end = end.min(dst.len());
    if at < end {
        let n = bytes.len().min(end - at);
        dst[at..at + n].copy_from_slice(&bytes[..n]);
    }
}

/// The in-bounds byte range of the section of table entry `entry % count`.
fn section_range(g: &[u8], entry: usize) -> Option<(usize, usize)> {
    if g.len() < PAGE {
        return None;
    }
    let count = (rd_u32(g, GRAPH_SECTION_COUNT) as usize).min(MAX_SECTIONS);
    if count == 0 {
        return None;
    }
    let e = SECTION_TABLE + SECTION_ENTRY * (entry % count);
    let (off, len) = (rd_u64(g, e + 8), rd_u64(g, e + 16));
    let end = off.checked_add(len).filter(|end| *end <= g.len() as u64)?;
    (len > 0).then_some((off as usize, end as usize))
}

/// Applies one edit to a fixture's files (`n`, `m`: the fixture's).
pub fn apply_edit(g: &mut Vec<u8>, v: &mut Vec<u8>, edit: &Edit, n: u32, m: u32) {
    let table_count = || -> usize {
        if g.len() < PAGE {
            0
        } else {
            (rd_u32(g, GRAPH_SECTION_COUNT) as usize).min(MAX_SECTIONS)
        }
    };
    match edit {
        Edit::Header { offset, bytes } => {
            if g.len() >= PAGE {
                let at = offset % GRAPH_HEADER_CRC;
                write_clipped(g, at, GRAPH_HEADER_CRC, bytes);
            }
        }
        Edit::HeaderWord { offset, value } => {
            if g.len() >= PAGE {
                let at = (offset % GRAPH_HEADER_CRC) & !3;
                wr_u32(g, at, value.resolve(n, m));
            }
        }
        Edit::TableEntry {
            entry,
            offset,
            bytes,
        } => {
            let count = table_count();
            if count > 0 {
                let e = SECTION_TABLE + SECTION_ENTRY * (entry % count);
                write_clipped(g, e + offset % SECTION_ENTRY, e + SECTION_ENTRY, bytes);
            }
        }
        Edit::CopyEntry { from, to } => {
            let count = table_count();
            if count > 0 {
                let (f, t) = (
                    SECTION_TABLE + SECTION_ENTRY * (from % count),
                    SECTION_TABLE + SECTION_ENTRY * (to % count),
                );
                g.copy_within(f..f + SECTION_ENTRY, t);
            }
        }
        Edit::Section {
            entry,
            offset,
            bytes,
        } => {
            if let Some((start, end)) = section_range(g, *entry) {
                write_clipped(g, start + offset % (end - start), end, bytes);
            }
        }
        Edit::SectionWord { entry, word, value } => {
            if let Some((start, end)) = section_range(g, *entry) {
                let words = (end - start) / 4;
                if words > 0 {
                    wr_u32(g, start + 4 * (word % words), value.resolve(n, m));
                }
            }
        }
        Edit::Vectors { offset, bytes } => {
            if !v.is_empty() {
                let at = offset % v.len();
                let len = v.len();
                write_clipped(v, at, len, bytes);
            }
        }
        Edit::VectorsWord { offset, value } => {
            if v.len() >= VECTORS_HEADER_CRC {
                let at = (offset % VECTORS_HEADER_CRC) & !3;
                wr_u32(v, at, value.resolve(n, m));
            }
        }
        Edit::Resize {
            vectors,
            len,
            fix_len_field,
        } => {
            let file = if *vectors { &mut *v } else { &mut *g };
            let new_len = len % (file.len() + 2 * PAGE);
            file.resize(new_len, 0);
            if !*vectors && *fix_len_field && g.len() >= PAGE {
                let l = g.len() as u64;
                g[96..104].copy_from_slice(&l.to_le_bytes());
            }
        }
    }
}

/// Runs one decoded case: applies the edits to a copy of the fixture's
/// files, reseals both, opens with full verification and, if that
/// succeeds, runs every query and lookup through [`exercise`].
pub fn run_search_case(case: &SearchCase) -> Reached {
    let all = fixtures();
    let fx = &all[case.fixture % all.len()];
    let (mut g, mut v) = (fx.graph.clone(), fx.vectors.clone());
    for e in &case.edits {
        apply_edit(&mut g, &mut v, e, N as u32, M as u32);
    }
    reseal_graph(&mut g);
    reseal_vectors(&mut v);
    match Generation::from_bytes(&g, &v) {
        Ok(index) => exercise(&index, fx, &case.queries, &case.probe_ids),
        Err(_) => Reached::default(),
    }
}

/// `index_search`: decodes a [`SearchCase`] and runs it.
pub fn index_search(data: &[u8]) -> Reached {
    run_search_case(&SearchCase::decode(data))
}

// ---------------------------------------------------------------------------
// The seed corpus generator.
// ---------------------------------------------------------------------------

/// The fixtures whose files seed `graph_file` and `vectors_file` (one per
/// quantizer, metrics varied), by name.
pub const SEED_FIXTURES: [&str; 6] = [
    "none-l2",
    "int8-cosine",
    "pq-l2",
    "binary-ip",
    "lvq8-l2",
    "lvq4x8-cosine",
];

fn fixture_named(name: &str) -> &'static Fixture {
    fixtures()
        .iter()
        .find(|f| f.name == name)
        .expect("a fixture of that name")
}

/// A `.npy` file of `rows × cols` with dtype `descr` (`<f4`/`<f8`) and
/// format version `major`.0.
pub fn npy_bytes(descr: &str, rows: usize, cols: usize, major: u8, values: &[f64]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let pre = if major == 1 { 10 } else { 12 };
    while (pre + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for x in values.iter().take(rows * cols) {
        if descr == "<f8" {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(&(*x as f32).to_le_bytes());
        }
    }
    out
}

/// TEXMEX bytes: `rows` records of `dim` components of `width` bytes each,
/// produced by `component(row, j)`.
fn texmex_bytes(rows: usize, dim: usize, component: impl Fn(usize, usize) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..rows {
        out.extend_from_slice(&(dim as i32).to_le_bytes());
        for j in 0..dim {
            out.extend_from_slice(&component(r, j));
        }
    }
    out
}

/// A log of the `int8-l2` fixture with insert, delete and upsert records,
/// written by `strata::Writer` in a scratch directory under `scratch`.
pub fn log_seed(scratch: &Path) -> std::io::Result<Vec<u8>> {
    let dir = scratch.join("log-seed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let err = |e: strata::Error| std::io::Error::other(e.to_string());
    let data = dataset::clustered(N, DIM, 4, 0.2, 7);
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: M,
        ef_construction: 16,
        seed: Some(42),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).map_err(err)?;
    for (i, row) in data.rows().enumerate() {
        b.add(Fixture::id(i), row).map_err(err)?;
    }
    b.build().map_err(err)?.write(&dir).map_err(err)?;
    {
        let w = strata::Writer::open(&dir, strata::Durability::None).map_err(err)?;
        let v = |i: usize| -> Vec<f32> { data.row(i).iter().map(|x| x + 0.5).collect() };
        w.insert(5000, &v(1)).map_err(err)?;
        w.insert(5010, &v(2)).map_err(err)?;
        w.delete(Fixture::id(3)).map_err(err)?;
        w.upsert(Fixture::id(4), &v(4)).map_err(err)?;
        w.upsert(5020, &v(5)).map_err(err)?;
        w.delete(5000).map_err(err)?;
        // Labelled records (version 6).
        w.insert_with_labels(5040, &v(8), &[3, 1]).map_err(err)?;
        w.upsert_with_labels(Fixture::id(5), &v(9), &[u32::MAX])
            .map_err(err)?;
        // A begin/commit framed batch of three operations (version 4),
        // one labelled.
        let mut ops = vec![
            strata::log::Op::Insert {
                id: 5030,
                vector: v(6),
                labels: vec![7],
            },
            strata::log::Op::Delete { id: 5010 },
        ];
        ops.push(strata::log::Op::Upsert {
            id: 5030,
            vector: v(7),
            labels: vec![],
        });
        w.apply_batch(&ops, strata::BatchOptions::default())
            .map_err(err)?;
        w.flush().map_err(err)?;
    }
    let mut log = None;
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "log") {
            log = Some(std::fs::read(&p)?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    log.ok_or_else(|| std::io::Error::other("the writer left no .log file"))
}

/// The seed `index_search` cases: every fixture untouched, plus hostile
/// graphs (self-loops, out-of-range links, a damaged entry point, level
/// counts, id maps, oversized claims).
pub fn search_seed_cases() -> Vec<(String, SearchCase)> {
    let queries = vec![
        Query {
            source: QuerySource::Row { row: 3, noise: 0 },
            k: 5,
            ef: 16,
            oversample: None,
            rescore: true,
        },
        Query {
            source: QuerySource::Row { row: 11, noise: 40 },
            k: 10,
            ef: 4,
            oversample: Some(2.0),
            rescore: false,
        },
        Query {
            source: QuerySource::Raw((0..DIM).map(|j| j as f32 * 0.1 - 1.0).collect()),
            k: 50,
            ef: 64,
            oversample: Some(1.5),
            rescore: true,
        },
    ];
    let probe_ids = vec![Fixture::id(5), 7, u64::MAX];
    let mut out = Vec::new();
    for (i, f) in fixtures().iter().enumerate() {
        out.push((
            format!("{}-clean", f.name),
            SearchCase {
                fixture: i,
                edits: vec![],
                queries: queries.clone(),
                probe_ids: probe_ids.clone(),
            },
        ));
    }
    let sp = Value::Special;
    // Table order of the int8 fixture: quant_params 0, code_norms 1,
    // level_counts 2, links_upper 3, codes 4, links_level0 5, ordinal_to_id
    // 6, id_to_ordinal 7.
    let hostile: Vec<(&str, usize, Vec<Edit>)> = vec![
        (
            "level0-self-loop",
            3,
            vec![
                Edit::SectionWord {
                    entry: 5,
                    word: 1,
                    value: Value::Raw(0),
                },
                Edit::SectionWord {
                    entry: 5,
                    word: 0,
                    value: sp(11),
                },
            ],
        ),
        (
            "level0-link-out-of-range",
            3,
            vec![Edit::SectionWord {
                entry: 5,
                word: 2,
                value: sp(6),
            }],
        ),
        (
            "upper-link-to-n",
            3,
            vec![Edit::SectionWord {
                entry: 3,
                word: 1,
                value: sp(4),
            }],
        ),
        (
            "entry-point-max",
            3,
            vec![Edit::HeaderWord {
                offset: 56,
                value: sp(6),
            }],
        ),
        (
            "level-count-zero",
            3,
            vec![Edit::SectionWord {
                entry: 2,
                word: 1,
                value: sp(0),
            }],
        ),
        (
            "count-huge",
            3,
            vec![
                Edit::HeaderWord {
                    offset: 32,
                    value: sp(7),
                },
                Edit::VectorsWord {
                    offset: 32,
                    value: sp(7),
                },
            ],
        ),
        (
            "duplicate-section",
            3,
            vec![Edit::CopyEntry { from: 5, to: 6 }],
        ),
        (
            "id-map-swap",
            3,
            vec![Edit::Section {
                entry: 7,
                offset: 0,
                bytes: vec![0xff; 8],
            }],
        ),
        (
            "vector-nan",
            0,
            vec![Edit::Vectors {
                offset: PAGE + 8,
                bytes: vec![0, 0, 0xc0, 0x7f],
            }],
        ),
        (
            "truncated-graph",
            6,
            vec![Edit::Resize {
                vectors: false,
                len: 5 * PAGE,
                fix_len_field: true,
            }],
        ),
    ];
    for (name, fixture, edits) in hostile {
        out.push((
            name.to_string(),
            SearchCase {
                fixture,
                edits,
                queries: queries.clone(),
                probe_ids: probe_ids.clone(),
            },
        ));
    }
    out
}

/// Writes the whole seed corpus under `root` (`root/<target>/<name>`),
/// replacing files of the same names; leaves other files (regression
/// inputs) alone. `scratch` is a writable directory for the log's index.
pub fn write_seed_corpus(root: &Path, scratch: &Path) -> std::io::Result<()> {
    let put = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    for name in SEED_FIXTURES {
        let f = fixture_named(name);
        put("graph_file", &format!("{name}.graph"), &f.graph)?;
        put("vectors_file", &format!("{name}.vectors"), &f.vectors)?;
    }
    // l2: version 1 requires code_norms, which int8 under ip and cosine
    // leaves out from version 5.
    let v1 = as_version_1(&fixture_named("int8-l2").graph);
    put("graph_file", "int8-l2-v1.graph", &v1)?;

    // `insert-delete-upsert.log` and `torn-tail.log` are version-3 logs
    // written before directory version 4, `v4-batch.log` and
    // `v4-torn-batch.log` version-4 logs written before version 6; they
    // stay checked in as they are.
    let log = log_seed(scratch)?;
    put("log_file", "v6-labels-batch.log", &log)?;
    // Cut inside the batch's commit record: the whole batch is torn.
    put("log_file", "v6-torn-batch.log", &log[..log.len() - 13])?;

    for (name, case) in search_seed_cases() {
        put("index_search", &name, &case.encode())?;
    }

    let with = |sel: u8, bytes: Vec<u8>| [vec![sel], bytes].concat();
    let fvecs = texmex_bytes(3, 4, |r, j| {
        ((r * 4 + j) as f32 * 0.5 - 1.0).to_le_bytes().to_vec()
    });
    put("input_readers", "fvecs-3x4", &with(READER_FVECS, fvecs))?;
    let bvecs = texmex_bytes(3, 5, |r, j| vec![(r * 40 + j * 7) as u8]);
    put("input_readers", "bvecs-3x5", &with(READER_BVECS, bvecs))?;
    let ivecs = texmex_bytes(2, 3, |r, j| ((r * 3 + j) as i32).to_le_bytes().to_vec());
    put("input_readers", "ivecs-2x3", &with(READER_IVECS, ivecs))?;
    let vals: Vec<f64> = (0..12).map(|i| i as f64 * 0.25 - 1.0).collect();
    put(
        "input_readers",
        "npy-f4-v1",
        &with(READER_NPY, npy_bytes("<f4", 3, 4, 1, &vals)),
    )?;
    put(
        "input_readers",
        "npy-f8-v2",
        &with(READER_NPY, npy_bytes("<f8", 4, 3, 2, &vals)),
    )?;
    put(
        "input_readers",
        "npy-f4-v3",
        &with(READER_NPY, npy_bytes("<f4", 2, 6, 3, &vals)),
    )?;
    for (name, bytes) in tuning_seeds() {
        put("tuning_file", name, &bytes)?;
    }
    Ok(())
}
