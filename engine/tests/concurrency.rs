//! Pins thread safety: `Index` is `Send + Sync` (checked at compile time);
//! eight threads searching one memory-mapped index at once get exactly the
//! single-threaded answers (per-thread scratch buffers never leak state
//! between searches, even with different k and ef per thread); and
//! `search_batch` / `exact_search_batch` equal their per-query versions.

mod common;

use common::*;
use strata::dataset::clustered;
use strata::{Error, Index, Metric, Neighbor, Quantization, SearchParams};

const fn assert_send_sync<T: Send + Sync>() {}
const _: () = assert_send_sync::<Index>();
const _: () = assert_send_sync::<strata::Error>();

fn setup(quant: Quantization) -> (tempfile::TempDir, Index, strata::dataset::Vectors) {
    let data = clustered(3_000, 32, 15, 0.15, 51);
    let queries = perturbed_queries(&data, 200, 0.1, 52);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::Cosine, quant, 9))
        .write(dir.path())
        .unwrap();
    let index = Index::open(dir.path()).unwrap();
    (dir, index, queries)
}

fn per_thread_params(t: usize) -> (usize, SearchParams) {
    (
        1 + 3 * t,
        SearchParams {
            ef: 16 * (t + 1),
            oversample: [None, Some(1.5)][t % 2],
        },
    )
}

#[test]
fn eight_threads_get_single_thread_results() {
    for quant in [Quantization::None, Quantization::Int8] {
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
                },
            ),
        ] {
            let batch = index.search_batch(&queries.data, k, &sp).unwrap();
            assert_eq!(batch.len(), queries.len());
            assert_eq!(
                bits(&batch),
                bits(&search_all(&index, &queries, k, &sp)),
                "{quant:?} k={k} {sp:?}"
            );
        }
        let exact = index.exact_search_batch(&queries.data, 10).unwrap();
        let one_by_one: Vec<_> = queries
            .rows()
            .map(|q| index.exact_search(q, 10).unwrap())
            .collect();
        assert_eq!(bits(&exact), bits(&one_by_one));
        // Batch errors: a trailing partial query, a bad query inside, k = 0.
        match index.search_batch(
            &queries.data[..queries.dim * 3 + 5],
            10,
            &SearchParams::default(),
        ) {
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
            index.search_batch(&bad, 10, &SearchParams::default()),
            Err(Error::NonFinite {
                row: None,
                component: 1
            })
        ));
        assert!(matches!(
            index.search_batch(&queries.data, 0, &SearchParams::default()),
            Err(Error::InvalidParameter { name: "k", .. })
        ));
        assert!(index
            .search_batch(&[], 10, &SearchParams::default())
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
    let got = pool.install(|| index.search_batch(&queries.data, 10, &sp).unwrap());
    assert_eq!(bits(&got), want);
}
