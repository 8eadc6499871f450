//! Pins persistence: an index written to a directory and reopened through
//! the memory map (`Generation::open`, with and without full verification) gives
//! exactly the answers of the in-memory index (same ids, bit-identical
//! distances) for every code kind (none, int8, product quantization,
//! binary); `Generation::info()` (what `inspect` shows) reports each kind's
//! quantization, PQ m and code bytes, the same before and after the round
//! trip; `get`/`contains` return the stored vectors (normalised under
//! cosine) and `UnknownId` for absent ids; custom u64 ids survive the round
//! trip; and rewriting an index directory swaps generations atomically (new
//! files, old files removed, MANIFEST updated, readers of the old
//! generation unaffected).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use strata::dataset::clustered;
use strata::{
    BuildParams, Error, Generation, IndexBuilder, IndexInfo, Metric, OpenOptions, Quantization,
    SearchParams,
};

const DIM: usize = 24;

/// Every code kind: `(quantization, pq_m)`; PQ with m = 5, which does not
/// divide 24 (sub-vectors of 5, 5, 5, 5 and 4 components; the default m is
/// covered by `info_reports_each_kind`).
const KINDS: [(Quantization, Option<usize>); 6] = [
    (Quantization::None, None),
    (Quantization::Int8, None),
    (Quantization::Pq, Some(5)),
    (Quantization::Binary, None),
    (Quantization::Lvq8, None),
    (Quantization::Lvq4x8, None),
];

/// Seeded single-thread parameters; PQ trains on 500 rows (quick in debug).
fn kind_params(metric: Metric, quant: Quantization, pq_m: Option<usize>, seed: u64) -> BuildParams {
    BuildParams {
        pq_m,
        pq_train_size: 500,
        ..params(metric, quant, seed)
    }
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// `(generation, build id)` decoded from a MANIFEST by hand (format-spec/manifest.md).
fn manifest(dir: &Path) -> (u64, u128) {
    let b = fs::read(dir.join("MANIFEST")).unwrap();
    // Directory version 6 (version 4's layout): 64 bytes, CRC of [0, 60)
    // at 60; a publish writes no log flag and a zero log bound.
    assert_eq!(b.len(), 64);
    assert_eq!(&b[..8], b"STRATAMF");
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 6);
    assert!(
        b[12..16].iter().chain(&b[40..60]).all(|x| *x == 0),
        "no log flag or bound"
    );
    let stored = u32::from_le_bytes(b[60..64].try_into().unwrap());
    assert_eq!(stored, crc32fast::hash(&b[..60]), "MANIFEST CRC");
    (
        u64::from_le_bytes(b[16..24].try_into().unwrap()),
        u128::from_le_bytes(b[24..40].try_into().unwrap()),
    )
}

#[test]
fn mmap_reopen_gives_bit_identical_results() {
    let data = clustered(2_000, DIM, 12, 0.15, 21);
    let queries = perturbed_queries(&data, 200, 0.1, 22);
    let half = perturbed_queries(&data, 100, 0.1, 22);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for (quant, pq_m) in KINDS {
            let built = build(&data, kind_params(metric, quant, pq_m, 3));
            let dir = tempfile::tempdir().unwrap();
            built.write(dir.path()).unwrap();
            let memory = in_memory(built);
            let mapped = Generation::open(dir.path()).unwrap();
            let verified = Generation::open_with(
                dir.path(),
                &OpenOptions {
                    verify: true,
                    ..Default::default()
                },
            )
            .unwrap();
            mapped.verify().unwrap();
            verified.verify().unwrap();
            memory.verify().unwrap();
            assert_eq!(mapped.dir(), Some(dir.path()));
            assert_eq!(memory.dir(), None);
            for idx in [&memory, &mapped, &verified] {
                assert_eq!(idx.len(), 2_000);
                assert_eq!(idx.dim(), DIM);
                assert_eq!(idx.metric(), metric);
                assert_eq!(idx.quantization(), quant);
                let want_m = match quant {
                    Quantization::Pq => pq_m.unwrap_or(DIM / 4),
                    _ => 0,
                };
                assert_eq!(idx.info().pq_m, want_m, "{quant:?} m={pq_m:?}");
            }
            // The two oversampled settings on half the queries (debug time).
            for (sp, queries) in [
                (SearchParams::with_ef(16), &queries),
                (SearchParams::with_ef(64), &queries),
                (
                    SearchParams {
                        ef: 32,
                        oversample: Some(2.0),
                        ..Default::default()
                    },
                    &queries,
                ),
                (
                    SearchParams {
                        ef: 64,
                        oversample: Some(1.0),
                        ..Default::default()
                    },
                    &half,
                ),
                (
                    SearchParams {
                        ef: 64,
                        oversample: Some(8.0),
                        ..Default::default()
                    },
                    &half,
                ),
            ] {
                let want = bits(&search_all(&memory, queries, 10, &sp));
                assert!(want.iter().all(|r| r.len() == 10));
                assert_eq!(
                    want,
                    bits(&search_all(&mapped, queries, 10, &sp)),
                    "{metric:?}/{quant:?} m={pq_m:?} {sp:?}: mmap differs from in-memory"
                );
                assert_eq!(
                    want,
                    bits(&search_all(&verified, queries, 10, &sp)),
                    "{metric:?}/{quant:?} m={pq_m:?} {sp:?}: verified open differs"
                );
            }
        }
    }
}

#[test]
fn from_bytes_of_written_files_equals_in_memory() {
    let data = clustered(1_000, DIM, 8, 0.15, 23);
    let built = build(&data, params(Metric::L2, Quantization::Int8, 4));
    let dir = tempfile::tempdir().unwrap();
    built.write(dir.path()).unwrap();
    let (generation, _) = manifest(dir.path());
    let g = fs::read(dir.path().join(format!("g{generation:08}.graph"))).unwrap();
    let v = fs::read(dir.path().join(format!("g{generation:08}.vectors"))).unwrap();
    assert_eq!(g, built.graph_bytes(), "written graph file = graph_bytes()");
    assert_eq!(
        v,
        built.vectors_bytes(),
        "written vectors file = vectors_bytes()"
    );
    let a = Generation::from_bytes(&g, &v).unwrap();
    let b = in_memory(built);
    let queries = perturbed_queries(&data, 50, 0.1, 24);
    let sp = SearchParams::with_ef(40);
    assert_eq!(
        bits(&search_all(&a, &queries, 5, &sp)),
        bits(&search_all(&b, &queries, 5, &sp))
    );
}

/// The fields `inspect` shows, for one index.
fn summary(info: &IndexInfo) -> (u32, Quantization, usize, usize, usize, usize, Vec<&str>) {
    (
        info.format_version,
        info.quantization,
        info.pq_m,
        info.code_bytes,
        info.dim,
        info.count,
        info.sections.iter().map(|s| s.0).collect(),
    )
}

/// `Generation::info()` per kind: quantization, PQ's m (0 for other kinds), code
/// bytes (int8: padded dim; PQ: m rounded up to 16; binary: one bit per
/// padded component rounded up to 16 bytes), the sections, and the same
/// answer from the in-memory index and the reopened files.
#[test]
fn info_reports_each_kind() {
    // (dim, quantization, pq_m param, pq_m reported, code bytes, sections)
    type Case = (
        usize,
        Quantization,
        Option<usize>,
        usize,
        usize,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (24, Quantization::None, None, 0, 0, &[]),
        (
            24,
            Quantization::Int8,
            None,
            0,
            32,
            &["quant_params", "code_norms", "codes"],
        ),
        (
            24,
            Quantization::Pq,
            None,
            6,
            16,
            &["quant_params", "codes"],
        ),
        (
            24,
            Quantization::Pq,
            Some(1),
            1,
            16,
            &["quant_params", "codes"],
        ),
        (
            24,
            Quantization::Pq,
            Some(5),
            5,
            16,
            &["quant_params", "codes"],
        ),
        (
            24,
            Quantization::Pq,
            Some(24),
            24,
            32,
            &["quant_params", "codes"],
        ),
        (
            24,
            Quantization::Binary,
            None,
            0,
            16,
            &["quant_params", "binary_factors", "codes"],
        ),
        (
            300,
            Quantization::Int8,
            None,
            0,
            304,
            &["quant_params", "code_norms", "codes"],
        ),
        (
            300,
            Quantization::Pq,
            None,
            75,
            80,
            &["quant_params", "codes"],
        ),
        (
            300,
            Quantization::Pq,
            Some(33),
            33,
            48,
            &["quant_params", "codes"],
        ),
        // 304 bits = 38 bytes, rounded up to 48.
        (
            300,
            Quantization::Binary,
            None,
            0,
            48,
            &["quant_params", "binary_factors", "codes"],
        ),
        (
            1000,
            Quantization::Binary,
            None,
            0,
            128,
            &["quant_params", "binary_factors", "codes"],
        ),
        // LVQ-8 under L2: a byte per padded dimension, `(lo, step)` per
        // vector in the factors section, `‖x̂‖²` in code_norms.
        (
            24,
            Quantization::Lvq8,
            None,
            0,
            32,
            &["quant_params", "code_norms", "binary_factors", "codes"],
        ),
        (
            300,
            Quantization::Lvq8,
            None,
            0,
            304,
            &["quant_params", "code_norms", "binary_factors", "codes"],
        ),
        // LVQ-4x8: half a byte per padded dimension, and the residuals.
        (
            24,
            Quantization::Lvq4x8,
            None,
            0,
            16,
            &[
                "quant_params",
                "code_norms",
                "binary_factors",
                "codes",
                "residual_codes",
            ],
        ),
        (
            300,
            Quantization::Lvq4x8,
            None,
            0,
            152,
            &[
                "quant_params",
                "code_norms",
                "binary_factors",
                "codes",
                "residual_codes",
            ],
        ),
    ];
    for (dim, quant, pq_m, want_m, want_bytes, coded) in cases {
        let case = format!("dim {dim} {quant:?} pq_m {pq_m:?}");
        let data = clustered(40, dim, 2, 0.2, 28);
        let p = BuildParams {
            pq_train_size: 40,
            ..kind_params(Metric::L2, quant, pq_m, 2)
        };
        let built = build(&data, p);
        let dir = tempfile::tempdir().unwrap();
        built.write(dir.path()).unwrap();
        let memory = in_memory(built);
        let mapped = Generation::open(dir.path()).unwrap();
        let info = memory.info();
        assert_eq!(summary(&info), summary(&mapped.info()), "{case}");
        // The oldest version that holds the codes: 5 for LVQ-8, else 2.
        let version = quant.format_version(Metric::L2);
        assert_eq!(info.format_version, version, "{case}");
        assert_eq!(info.quantization, quant, "{case}");
        assert_eq!(info.pq_m, want_m, "{case}");
        assert_eq!(info.code_bytes, want_bytes, "{case}");
        assert_eq!((info.dim, info.count), (dim, 40), "{case}");
        let names: Vec<&str> = info.sections.iter().map(|s| s.0).collect();
        for name in [
            "quant_params",
            "code_norms",
            "binary_factors",
            "codes",
            "residual_codes",
        ] {
            assert_eq!(
                names.contains(&name),
                coded.contains(&name),
                "{case}: section {name} in {names:?}"
            );
        }
        let len_of = |name: &str| info.sections.iter().find(|s| s.0 == name).map(|s| s.2);
        if quant != Quantization::None {
            assert_eq!(len_of("codes"), Some(40 * want_bytes as u64), "{case}");
        }
        let padded = dim.div_ceil(16) * 16;
        let params_len = match quant {
            Quantization::None => None,
            Quantization::Int8 => Some(2 * padded * 4),
            Quantization::Pq => Some(256 * dim * 4),
            Quantization::Binary | Quantization::Lvq8 | Quantization::Lvq4x8 => Some(padded * 4),
        };
        assert_eq!(
            len_of("quant_params"),
            params_len.map(|l| l as u64),
            "{case}"
        );
        if matches!(
            quant,
            Quantization::Binary | Quantization::Lvq8 | Quantization::Lvq4x8
        ) {
            assert_eq!(len_of("binary_factors"), Some(40 * 8), "{case}");
        }
        if quant == Quantization::Lvq4x8 {
            assert_eq!(len_of("residual_codes"), Some(40 * padded as u64), "{case}");
        }
        // The traversal working set is the graph file once there are codes.
        let resident = match quant {
            Quantization::None => info.graph_file_bytes + info.vectors_file_bytes,
            _ => info.graph_file_bytes,
        };
        assert_eq!(info.resident_bytes, resident, "{case}");
        // And the index works: every row finds itself among its neighbours.
        let sp = SearchParams {
            ef: 40,
            oversample: None,
            ..Default::default()
        };
        for i in (0..40).step_by(9) {
            let hits = mapped.search(data.row(i), 3, &sp).unwrap();
            assert_eq!(hits[0].id, i as u64, "{case}: row {i}");
        }
    }
}

#[test]
fn get_returns_stored_vectors_and_unknown_id_for_absent_ones() {
    let data = clustered(500, DIM, 5, 0.2, 25);
    for (metric, quant) in [Metric::L2, Metric::InnerProduct, Metric::Cosine]
        .into_iter()
        .flat_map(|m| [Quantization::Int8, Quantization::Pq, Quantization::Binary].map(|q| (m, q)))
    {
        let built = build(&data, kind_params(metric, quant, None, 6));
        let dir = tempfile::tempdir().unwrap();
        built.write(dir.path()).unwrap();
        let memory = in_memory(built);
        let mapped = Generation::open(dir.path()).unwrap();
        for idx in [&memory, &mapped] {
            for (i, row) in data.rows().enumerate() {
                let got = idx.get(i as u64).unwrap();
                assert_eq!(got.len(), DIM);
                assert!(idx.contains(i as u64));
                if metric == Metric::Cosine {
                    let norm = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                    for (g, x) in got.iter().zip(row) {
                        assert!((*g as f64 - *x as f64 / norm).abs() < 1e-6);
                    }
                    let n2: f64 = got.iter().map(|x| (*x as f64).powi(2)).sum();
                    assert!(
                        (n2 - 1.0).abs() < 1e-5,
                        "stored cosine vector is unit length"
                    );
                } else {
                    assert_eq!(
                        got, row,
                        "{metric:?}: get({i}) returns the input bit for bit"
                    );
                }
            }
            for absent in [500, 501, 10_000, u64::MAX] {
                assert!(!idx.contains(absent));
                match idx.get(absent) {
                    Err(Error::UnknownId(id)) => assert_eq!(id, absent),
                    other => panic!("get({absent}): expected UnknownId, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn custom_ids_round_trip() {
    let data = clustered(1_500, DIM, 10, 0.15, 26);
    let id_of = |i: usize| i as u64 * 1000 + 7;
    for quant in [Quantization::None, Quantization::Int8] {
        let mut b = IndexBuilder::new(DIM, params(Metric::L2, quant, 8)).unwrap();
        // Added in a scrambled order so ids are neither sorted nor dense.
        let order: Vec<usize> = (0..data.len()).map(|i| (i * 7 + 3) % data.len()).collect();
        for &i in &order {
            b.add(id_of(i), data.row(i)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        b.build().unwrap().write(dir.path()).unwrap();
        let idx = Generation::open(dir.path()).unwrap();
        let queries = perturbed_queries(&data, 100, 0.1, 27);
        let truth = truth(&data, &queries, 10, Metric::L2);
        let mut results = search_all(&idx, &queries, 10, &SearchParams::with_ef(64));
        for r in &mut results {
            for n in r.iter_mut() {
                assert_eq!(n.id % 1000, 7, "{quant:?}: id {} was never added", n.id);
                n.id /= 1000; // back to row numbers for recall
            }
        }
        let r = recall(&results, &truth, 10);
        assert!(r >= 0.97, "{quant:?}: recall with custom ids {r}");
        for i in (0..data.len()).step_by(37) {
            let hits = idx
                .search(data.row(i), 3, &SearchParams::with_ef(32))
                .unwrap();
            assert_eq!(hits[0].id, id_of(i));
            assert_eq!(idx.get(id_of(i)).unwrap(), data.row(i));
            assert!(matches!(
                idx.get(i as u64 * 1000 + 8),
                Err(Error::UnknownId(_))
            ));
        }
        assert!(matches!(idx.get(8), Err(Error::UnknownId(8))));
    }
}

#[test]
fn extreme_ids_round_trip() {
    let ids = [u64::MAX, 0, u64::MAX - 1, 1 << 63, 42];
    let mut b = IndexBuilder::new(4, params(Metric::L2, Quantization::Int8, 1)).unwrap();
    for (i, id) in ids.iter().enumerate() {
        b.add(*id, &[i as f32, 0.0, 1.0, -(i as f32)]).unwrap();
    }
    let idx = in_memory(b.build().unwrap());
    for (i, id) in ids.iter().enumerate() {
        assert!(idx.contains(*id));
        assert_eq!(idx.get(*id).unwrap(), vec![i as f32, 0.0, 1.0, -(i as f32)]);
        let hits = idx
            .search(
                &[i as f32, 0.0, 1.0, -(i as f32)],
                1,
                &SearchParams::default(),
            )
            .unwrap();
        assert_eq!(hits[0].id, *id);
    }
}

#[test]
fn rewriting_a_directory_swaps_generations_atomically() {
    let a = clustered(800, DIM, 6, 0.15, 30);
    let b = clustered(600, DIM, 6, 0.15, 31);
    let dir = tempfile::tempdir().unwrap();
    let built_a = build(&a, params(Metric::L2, Quantization::Int8, 1));
    built_a.write(dir.path()).unwrap();
    let (gen_a, id_a) = manifest(dir.path());
    assert_eq!(gen_a, 1);
    assert_eq!(
        file_names(dir.path()),
        ["LOCK", "MANIFEST", "g00000001.graph", "g00000001.vectors"]
            .map(String::from)
            .into()
    );
    let old = Generation::open(dir.path()).unwrap();
    assert_eq!(old.info().build_id, id_a);
    let old_hits = search_all(&old, &a, 3, &SearchParams::default());

    let built_b = build(&b, params(Metric::L2, Quantization::None, 2));
    built_b.write(dir.path()).unwrap();
    let (gen_b, id_b) = manifest(dir.path());
    assert_eq!(gen_b, 2, "a rewrite publishes the next generation");
    assert_ne!(id_a, id_b);
    assert_eq!(
        file_names(dir.path()),
        ["LOCK", "MANIFEST", "g00000002.graph", "g00000002.vectors"]
            .map(String::from)
            .into(),
        "old generation removed, no temporary files left"
    );
    let new = Generation::open(dir.path()).unwrap();
    assert_eq!(new.len(), 600);
    assert_eq!(new.quantization(), Quantization::None);
    assert_eq!(new.info().build_id, id_b);
    let hits = new.search(b.row(5), 1, &SearchParams::default()).unwrap();
    assert_eq!(hits[0].id, 5);
    assert_eq!(new.get(5).unwrap(), b.row(5));

    // The reader opened on generation 1 keeps its (unlinked) mapping.
    assert_eq!(old.len(), 800);
    assert_eq!(
        bits(&old_hits),
        bits(&search_all(&old, &a, 3, &SearchParams::default()))
    );
    old.verify().unwrap();

    // A third write, from the same in-memory build again.
    built_a.write(dir.path()).unwrap();
    assert_eq!(manifest(dir.path()), (3, id_a));
    assert_eq!(
        file_names(dir.path()),
        ["LOCK", "MANIFEST", "g00000003.graph", "g00000003.vectors"]
            .map(String::from)
            .into()
    );
    let again = Generation::open_with(
        dir.path(),
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(again.len(), 800);
}

#[test]
fn write_creates_missing_directories() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    let data = clustered(100, 4, 2, 0.2, 1);
    build(&data, params(Metric::Cosine, Quantization::Int8, 1))
        .write(&dir)
        .unwrap();
    let idx = Generation::open(&dir).unwrap();
    assert_eq!(idx.len(), 100);
}
