//! Builds that group rows by locality (`InsertOrder::Locality`): the rows
//! move inside the build, so these pin what must not move with them. Ids
//! stay with their vectors, recall against exact brute-force ground truth
//! matches an input-order build, a seeded one-thread build is
//! byte-identical run to run, and `Auto` below its threshold is exactly
//! the input-order build.

mod common;

use common::*;
use strata::dataset::clustered;
use strata::{BuildParams, InsertOrder, Metric, Quantization, SearchParams};

const N: usize = 6_000;
const DIM: usize = 32;
const K: usize = 10;

fn with_order(metric: Metric, order: InsertOrder, threads: usize) -> BuildParams {
    BuildParams {
        insert_order: order,
        threads,
        ..params(metric, Quantization::Int8, 7)
    }
}

#[test]
fn locality_order_keeps_ids_and_recall() {
    let data = clustered(N, DIM, 24, 0.15, 21);
    let queries = perturbed_queries(&data, 200, 0.1, 22);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let truth = truth(&data, &queries, K, metric);
        // A narrow beam, so that recall is below 1 and a worse graph shows.
        let sp = SearchParams::with_ef(16);
        // Recall on one thread, where builds are deterministic: on two, the
        // L2 locality build here lands at 0.974 or 0.988 from run to run
        // (input order, one thread: 0.991), which a fixed margin cannot
        // tell from a defect in CI. The rows and ids are checked on two.
        let input = in_memory(build(&data, with_order(metric, InsertOrder::Input, 1)));
        let grouped1 = in_memory(build(&data, with_order(metric, InsertOrder::Locality, 1)));
        let grouped = in_memory(build(&data, with_order(metric, InsertOrder::Locality, 2)));
        let r_input = recall(&search_all(&input, &queries, K, &sp), &truth, K);
        let r_grouped = recall(&search_all(&grouped1, &queries, K, &sp), &truth, K);
        eprintln!("{metric:?}: recall@{K} input order {r_input:.4}, locality order {r_grouped:.4}");
        assert!(
            r_grouped >= r_input - 0.02 && r_grouped >= 0.9,
            "{metric:?}: locality order recall {r_grouped:.4} against {r_input:.4} in input order"
        );
        // Every row is found under its own id with its own vector: the
        // rows moved inside the build, the ids moved with them.
        for row in (0..N).step_by(97) {
            if metric == Metric::InnerProduct {
                // (A row need not be its own nearest under inner product.)
                break;
            }
            let hits = grouped.search(data.row(row), 1, &sp).expect("valid query");
            assert_eq!(hits[0].id, row as u64, "{metric:?}: row {row}");
            if metric != Metric::Cosine {
                // (Cosine stores rows normalised.)
                assert_eq!(grouped.get(row as u64).expect("stored"), data.row(row));
            }
        }
    }
}

#[test]
fn seeded_single_thread_locality_build_is_byte_identical() {
    let data = clustered(3_000, DIM, 12, 0.1, 5);
    let a = build(&data, with_order(Metric::Cosine, InsertOrder::Locality, 1));
    let b = build(&data, with_order(Metric::Cosine, InsertOrder::Locality, 1));
    assert!(a.graph_bytes() == b.graph_bytes(), "graph files differ");
    assert!(
        a.vectors_bytes() == b.vectors_bytes(),
        "vectors files differ"
    );
    let input = build(&data, with_order(Metric::Cosine, InsertOrder::Input, 1));
    assert!(
        a.vectors_bytes() != input.vectors_bytes(),
        "a locality build must lay the rows out differently"
    );
}

#[test]
fn auto_below_threshold_is_the_input_order_build() {
    let data = clustered(2_000, DIM, 12, 0.1, 6);
    const { assert!(2_000 < InsertOrder::AUTO_MIN_ROWS) };
    let auto = build(&data, with_order(Metric::L2, InsertOrder::Auto, 1));
    let input = build(&data, with_order(Metric::L2, InsertOrder::Input, 1));
    assert!(auto.graph_bytes() == input.graph_bytes());
    assert!(auto.vectors_bytes() == input.vectors_bytes());
}
