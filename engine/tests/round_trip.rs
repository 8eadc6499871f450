//! Pins persistence: an index written to a directory and reopened through
//! the memory map (`Index::open`, with and without full verification) gives
//! exactly the answers of the in-memory index (same ids, bit-identical
//! distances) for both quantizations; `get`/`contains` return the stored
//! vectors (normalised under cosine) and `UnknownId` for absent ids; custom
//! u64 ids survive the round trip; and rewriting an index directory swaps
//! generations atomically (new files, old files removed, MANIFEST updated,
//! readers of the old generation unaffected).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use strata::dataset::clustered;
use strata::{Error, Index, IndexBuilder, Metric, OpenOptions, Quantization, SearchParams};

const DIM: usize = 24;

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// `(generation, build id)` decoded from a MANIFEST by hand (format-spec/manifest.md).
fn manifest(dir: &Path) -> (u64, u128) {
    let b = fs::read(dir.join("MANIFEST")).unwrap();
    assert_eq!(b.len(), 48);
    assert_eq!(&b[..8], b"STRATAMF");
    let stored = u32::from_le_bytes(b[40..44].try_into().unwrap());
    assert_eq!(stored, crc32fast::hash(&b[..40]), "MANIFEST CRC");
    (
        u64::from_le_bytes(b[16..24].try_into().unwrap()),
        u128::from_le_bytes(b[24..40].try_into().unwrap()),
    )
}

#[test]
fn mmap_reopen_gives_bit_identical_results() {
    let data = clustered(2_000, DIM, 12, 0.15, 21);
    let queries = perturbed_queries(&data, 200, 0.1, 22);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for quant in [Quantization::None, Quantization::Int8] {
            let built = build(&data, params(metric, quant, 3));
            let dir = tempfile::tempdir().unwrap();
            built.write(dir.path()).unwrap();
            let memory = in_memory(built);
            let mapped = Index::open(dir.path()).unwrap();
            let verified = Index::open_with(dir.path(), &OpenOptions { verify: true }).unwrap();
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
            }
            for sp in [
                SearchParams::with_ef(16),
                SearchParams::with_ef(64),
                SearchParams {
                    ef: 32,
                    oversample: Some(2.0),
                },
            ] {
                let want = bits(&search_all(&memory, &queries, 10, &sp));
                assert!(want.iter().all(|r| r.len() == 10));
                assert_eq!(
                    want,
                    bits(&search_all(&mapped, &queries, 10, &sp)),
                    "{metric:?}/{quant:?} {sp:?}: mmap differs from in-memory"
                );
                assert_eq!(
                    want,
                    bits(&search_all(&verified, &queries, 10, &sp)),
                    "{metric:?}/{quant:?} {sp:?}: verified open differs"
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
    let a = Index::from_bytes(&g, &v).unwrap();
    let b = in_memory(built);
    let queries = perturbed_queries(&data, 50, 0.1, 24);
    let sp = SearchParams::with_ef(40);
    assert_eq!(
        bits(&search_all(&a, &queries, 5, &sp)),
        bits(&search_all(&b, &queries, 5, &sp))
    );
}

#[test]
fn get_returns_stored_vectors_and_unknown_id_for_absent_ones() {
    let data = clustered(500, DIM, 5, 0.2, 25);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let built = build(&data, params(metric, Quantization::Int8, 6));
        let dir = tempfile::tempdir().unwrap();
        built.write(dir.path()).unwrap();
        let memory = in_memory(built);
        let mapped = Index::open(dir.path()).unwrap();
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
        let idx = Index::open(dir.path()).unwrap();
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
        ["MANIFEST", "g00000001.graph", "g00000001.vectors"]
            .map(String::from)
            .into()
    );
    let old = Index::open(dir.path()).unwrap();
    assert_eq!(old.info().build_id, id_a);
    let old_hits = search_all(&old, &a, 3, &SearchParams::default());

    let built_b = build(&b, params(Metric::L2, Quantization::None, 2));
    built_b.write(dir.path()).unwrap();
    let (gen_b, id_b) = manifest(dir.path());
    assert_eq!(gen_b, 2, "a rewrite publishes the next generation");
    assert_ne!(id_a, id_b);
    assert_eq!(
        file_names(dir.path()),
        ["MANIFEST", "g00000002.graph", "g00000002.vectors"]
            .map(String::from)
            .into(),
        "old generation removed, no temporary files left"
    );
    let new = Index::open(dir.path()).unwrap();
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
        ["MANIFEST", "g00000003.graph", "g00000003.vectors"]
            .map(String::from)
            .into()
    );
    let again = Index::open_with(dir.path(), &OpenOptions { verify: true }).unwrap();
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
    let idx = Index::open(&dir).unwrap();
    assert_eq!(idx.len(), 100);
}
