//! Pins thread safety: `Generation` is `Send + Sync` (checked at compile time);
//! eight threads searching one memory-mapped index at once get exactly the
//! single-threaded answers, for every code kind (per-thread scratch buffers
//! never leak state between searches, even with different k and ef per
//! thread, or when one thread alternates between indexes whose query tables
//! differ in size: int8 weights, PQ and binary lookup tables); and
//! `search_batch` / `exact_search_batch` equal their per-query versions.

mod common;

use common::*;
use strata::dataset::clustered;
use strata::{
    BuildParams, Error, Generation, Metric, Neighbor, Quantization, Queries, SearchParams,
};

const fn assert_send_sync<T: Send + Sync>() {}
const _: () = assert_send_sync::<Generation>();
const _: () = assert_send_sync::<strata::Error>();

fn setup(quant: Quantization) -> (tempfile::TempDir, Generation, strata::dataset::Vectors) {
    let data = clustered(3_000, 32, 15, 0.15, 51);
    let queries = perturbed_queries(&data, 200, 0.1, 52);
    let dir = tempfile::tempdir().unwrap();
    let p = BuildParams {
        pq_train_size: 500,
        ..params(Metric::Cosine, quant, 9)
    };
    build(&data, p).write(dir.path()).unwrap();
    let index = Generation::open(dir.path()).unwrap();
    (dir, index, queries)
}

fn per_thread_params(t: usize) -> (usize, SearchParams<'static>) {
    (
        1 + 3 * t,
        SearchParams {
            ef: 16 * (t + 1),
            oversample: [None, Some(1.5)][t % 2],
            ..Default::default()
        },
    )
}

#[test]
fn eight_threads_get_single_thread_results() {
    for quant in [
        Quantization::None,
        Quantization::Int8,
        Quantization::Pq,
        Quantization::Binary,
        Quantization::Lvq8,
        Quantization::Lvq4x8,
    ] {
        let (_dir, index, queries) = setup(quant);
        let sp = SearchParams::with_ef(64);
        let want = bits(&search_all(&index, &queries, 10, &sp));
        let got: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (index, queries) = (&index, &queries);
                    s.spawn(move || {
                        // Each thread starts at a different query so that
                        // different searches overlap in time.
                        let n = queries.len();
                        let mut out = vec![Vec::new(); n];
                        for i in 0..n {
                            let j = (i + t * 25) % n;
                            out[j] = index.search(queries.row(j), 10, &sp).unwrap();
                        }
                        bits(&out)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, g) in got.iter().enumerate() {
            assert_eq!(
                g, &want,
                "{quant:?}: thread {t} differs from single-thread results"
            );
        }
    }
}

#[test]
fn threads_with_different_parameters_do_not_interfere() {
    let (_dir, index, queries) = setup(Quantization::Int8);
    let want: Vec<_> = (0..8)
        .map(|t| {
            let (k, sp) = per_thread_params(t);
            bits(&search_all(&index, &queries, k, &sp))
        })
        .collect();
    std::thread::scope(|s| {
        for (t, want) in want.iter().enumerate() {
            let (index, queries) = (&index, &queries);
            s.spawn(move || {
                let (k, sp) = per_thread_params(t);
                for _round in 0..2 {
                    let got = bits(&search_all(index, queries, k, &sp));
                    assert_eq!(&got, want, "thread {t} (k={k}, {sp:?})");
                }
            });
        }
    });
}

#[test]
fn one_thread_searching_two_indexes_alternately() {
    // Scratch buffers are per thread, not per index: alternating between a
    // large and a small index must not carry state across.
    let (_dir, big, queries) = setup(Quantization::Int8);
    let small_data = clustered(200, 32, 3, 0.15, 53);
    let small = in_memory(build(
        &small_data,
        params(Metric::Cosine, Quantization::Int8, 1),
    ));
    let sp = SearchParams::with_ef(32);
    let want_big = bits(&search_all(&big, &queries, 10, &sp));
    let want_small = bits(&search_all(&small, &queries, 10, &sp));
    for (i, q) in queries.rows().enumerate() {
        let b: Vec<Neighbor> = big.search(q, 10, &sp).unwrap();
        let s: Vec<Neighbor> = small.search(q, 10, &sp).unwrap();
        assert_eq!(bits(&[b])[0], want_big[i]);
        assert_eq!(bits(&[s])[0], want_small[i]);
    }
}

#[test]
fn one_thread_alternating_between_every_kind_of_index() {
    // One thread's scratch serves every index it searches: int8 weights of
    // the padded dimension, PQ tables of 256 floats per code byte, binary
    // tables of 256 floats per byte of bits, for different dimensions.
    // Interleaving them (with different k and ef) must give each index's
    // answers from a thread that searched it alone.
    let mut indexes = Vec::new();
    for (dim, metric, quant, pq_m) in [
        (32, Metric::L2, Quantization::Int8, None),
        (32, Metric::Cosine, Quantization::Pq, Some(8)),
        (100, Metric::InnerProduct, Quantization::Binary, None),
        (100, Metric::L2, Quantization::Pq, Some(50)),
        (20, Metric::Cosine, Quantization::None, None),
        (20, Metric::L2, Quantization::Binary, None),
        (24, Metric::Cosine, Quantization::Lvq8, None),
        (40, Metric::L2, Quantization::Lvq8, None),
        (48, Metric::L2, Quantization::Lvq4x8, None),
        (24, Metric::InnerProduct, Quantization::Lvq4x8, None),
    ] {
        let data = clustered(400, dim, 5, 0.15, 54);
        let queries = perturbed_queries(&data, 40, 0.1, 55);
        let p = BuildParams {
            pq_m,
            pq_train_size: 400,
            ..params(metric, quant, 2)
        };
        indexes.push((in_memory(build(&data, p)), queries));
    }
    let settings = |i: usize| -> (usize, SearchParams) {
        let k = [1, 10, 7][i % 3];
        let sp = SearchParams {
            ef: [16, 64, 40][i % 3],
            oversample: [None, Some(1.0), Some(3.0)][i % 3],
            ..Default::default()
        };
        (k, sp)
    };
    // Each index searched alone, on a fresh thread.
    let want: Vec<Vec<Vec<(u64, u32)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = indexes
            .iter()
            .map(|(index, queries)| {
                s.spawn(move || {
                    let hits: Vec<Vec<Neighbor>> = queries
                        .rows()
                        .enumerate()
                        .map(|(i, q)| {
                            let (k, sp) = settings(i);
                            index.search(q, k, &sp).unwrap()
                        })
                        .collect();
                    bits(&hits)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // All of them interleaved on this thread, twice.
    for _round in 0..2 {
        for i in 0..40 {
            for ((index, queries), want) in indexes.iter().zip(&want) {
                let (k, sp) = settings(i);
                let got = index.search(queries.row(i), k, &sp).unwrap();
                assert_eq!(
                    bits(&[got])[0],
                    want[i],
                    "{:?} index of dim {} query {i}",
                    index.quantization(),
                    index.dim()
                );
            }
        }
    }
}

#[test]
fn search_batch_equals_per_query_search() {
    for quant in [Quantization::None, Quantization::Int8] {
        let (_dir, index, queries) = setup(quant);
        for (k, sp) in [
            (10, SearchParams::with_ef(64)),
            (1, SearchParams::with_ef(8)),
            (
                25,
                SearchParams {
                    ef: 10,
                    oversample: Some(2.0),
                    ..Default::default()
                },
            ),
        ] {
            let batch = index.search_batch(&queries, k, &sp).unwrap();
            assert_eq!(batch.len(), queries.len());
            assert_eq!(
                bits(&batch),
                bits(&search_all(&index, &queries, k, &sp)),
                "{quant:?} k={k} {sp:?}"
            );
        }
        let exact = index.exact_search_batch(&queries, 10).unwrap();
        let one_by_one: Vec<_> = queries
            .rows()
            .map(|q| index.exact_search(q, 10).unwrap())
            .collect();
        assert_eq!(bits(&exact), bits(&one_by_one));
        // Batch errors: a trailing partial query, a bad query inside, k = 0.
        match Queries::new(&queries.data[..queries.dim * 3 + 5], queries.dim) {
            Err(Error::DimensionMismatch {
                expected,
                found,
                row,
            }) => {
                assert_eq!((expected, found, row), (32, 5, Some(3)));
            }
            other => panic!("expected DimensionMismatch, got {other:?}"),
        }
        let mut bad = queries.data[..queries.dim * 4].to_vec();
        bad[queries.dim * 2 + 1] = f32::NAN;
        assert!(matches!(
            index.search_batch(
                Queries::new(&bad, queries.dim).unwrap(),
                10,
                &SearchParams::default()
            ),
            Err(Error::NonFinite {
                row: None,
                component: 1
            })
        ));
        assert!(matches!(
            index.search_batch(&queries, 0, &SearchParams::default()),
            Err(Error::InvalidParameter { name: "k", .. })
        ));
        assert!(index
            .search_batch(Queries::new(&[], 32).unwrap(), 10, &SearchParams::default())
            .unwrap()
            .is_empty());
    }
}

#[test]
fn search_batch_inside_a_custom_pool() {
    let (_dir, index, queries) = setup(Quantization::Int8);
    let sp = SearchParams::with_ef(48);
    let want = bits(&search_all(&index, &queries, 10, &sp));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let got = pool.install(|| index.search_batch(&queries, 10, &sp).unwrap());
    assert_eq!(bits(&got), want);
}
