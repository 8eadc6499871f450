//! Pins `SearchParams::rescore = false`, answers from the codes alone:
//! the vectors file is never read (an index whose every row read fails
//! still answers, through `search`, `search_batch` and the live index),
//! recall against exact brute-force ground truth stays within a measured
//! margin of rescoring, and the distances returned are estimates of the
//! metric's distance in its units (product quantization under cosine
//! ranks by `‖q − x̂‖²`, which must be halved to be one).

mod common;

use common::*;
use strata::dataset::{clustered, Vectors};
use strata::io::ReadFault;
use strata::{Error, Generation, Index, IoMode, Metric, OpenOptions, Quantization, SearchParams};

const METRICS: [Metric; 3] = [Metric::L2, Metric::Cosine, Metric::InnerProduct];
const CODES: [Quantization; 5] = [
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];
const K: usize = 10;

fn codes_only(ef: usize) -> SearchParams<'static> {
    SearchParams {
        ef,
        rescore: false,
        ..Default::default()
    }
}

fn built(metric: Metric, quant: Quantization, data: &Vectors) -> tempfile::TempDir {
    let mut p = params(metric, quant, 5);
    p.pq_train_size = 600;
    let dir = tempfile::tempdir().unwrap();
    build(data, p).write(dir.path()).unwrap();
    dir
}

/// Every direct row read fails with EIO.
fn failing_reads() -> OpenOptions {
    OpenOptions {
        io: IoMode::Pread,
        read_fault: Some(ReadFault::Eio),
        ..Default::default()
    }
}

#[test]
fn codes_only_never_reads_the_vectors_file() {
    let data = clustered(1_000, 24, 8, 0.1, 3);
    let queries = perturbed_queries(&data, 20, 0.05, 2);
    for metric in METRICS {
        for quant in CODES {
            let what = format!("{metric:?} {quant:?}");
            let dir = built(metric, quant, &data);
            let options = failing_reads();
            let index = Generation::open_with(dir.path(), &options).unwrap();
            // The fault is live: rescoring reads rows and fails.
            assert!(
                matches!(
                    index.search(data.row(1), K, &SearchParams::with_ef(32)),
                    Err(Error::Io { .. })
                ),
                "{what}: rescoring should have failed its reads"
            );
            let one: Vec<_> = queries
                .rows()
                .map(|q| index.search(q, K, &codes_only(32)).expect(&what))
                .collect();
            let batch = index
                .search_batch(&queries, K, &codes_only(32))
                .expect(&what);
            assert_eq!(
                bits(&one),
                bits(&batch),
                "{what}: batch differs from one by one"
            );
            for hits in &one {
                assert_eq!(hits.len(), K, "{what}");
            }
            let live = Index::open_with(dir.path(), &options).unwrap();
            let hits = live.search(data.row(7), K, &codes_only(32)).expect(&what);
            assert_eq!(hits.len(), K, "{what}");
        }
    }
}

#[test]
fn codes_only_recall_and_distances_against_brute_force() {
    let data = clustered(3_000, 32, 16, 0.15, 9);
    let queries = perturbed_queries(&data, 100, 0.05, 4);
    for metric in METRICS {
        let truth = truth(&data, &queries, K, metric);
        let exact = exact_fn(metric);
        for quant in CODES {
            let what = format!("{metric:?} {quant:?}");
            let dir = built(metric, quant, &data);
            let index = Generation::open(dir.path()).unwrap();
            let rescored = search_all(&index, &queries, K, &SearchParams::with_ef(64));
            let from_codes = search_all(&index, &queries, K, &codes_only(64));
            let (r_full, r_codes) = (recall(&rescored, &truth, K), recall(&from_codes, &truth, K));
            eprintln!("{what}: recall@{K} rescored {r_full:.4}, codes only {r_codes:.4}");
            // Floors measured on this data (int8 0.93-0.98, PQ 0.47-0.49,
            // one-bit 0.10-0.43), with a margin: int8 codes rank almost as
            // well as the vectors, PQ and one-bit codes of 32 dimensions far
            // worse (what rescoring is for); random ids would get 0.003.
            let floor = match quant {
                Quantization::Int8 => 0.9,
                Quantization::Pq => 0.4,
                _ => 0.08,
            };
            assert!(r_codes >= floor, "{what}: codes only {r_codes} < {floor}");
            for hits in &from_codes {
                for w in hits.windows(2) {
                    assert!(w[0].distance <= w[1].distance, "{what}: not sorted");
                }
            }
            // The distances estimate the metric's own: their mean error is
            // small against the mean distance (measured: int8 0.04-0.05 of
            // it, PQ 0.02-0.26; PQ cosine's ‖q − x̂‖² left unhalved would be
            // about 1). One-bit estimates are too coarse to bound usefully.
            let tolerance = match quant {
                Quantization::Int8 => 0.1,
                Quantization::Pq => 0.35,
                _ => continue,
            };
            let (mut err, mut spread, mut count) = (0f64, 0f64, 0usize);
            for (q, hits) in queries.rows().zip(&from_codes) {
                for h in hits {
                    let d = exact(q, data.row(h.id as usize));
                    err += (h.distance - d).abs() as f64;
                    spread += d.abs() as f64;
                    count += 1;
                }
            }
            let (err, spread) = (err / count as f64, spread / count as f64);
            eprintln!("{what}: mean |error| {err:.5}, mean |distance| {spread:.5}");
            assert!(
                err <= tolerance * spread,
                "{what}: mean distance error {err} against mean distance {spread}"
            );
        }
    }
}
