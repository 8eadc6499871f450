//! Range (radius) search against brute force: recall of the returned set
//! against the exact set within the radius for balls of about 10, 100 and
//! 1,000 vectors (L2 and cosine, several code kinds), the result cap, a
//! live index with logged inserts and deletions, filters, and bad input.

mod common;

use common::{build, exact_fn, in_memory, params, perturbed_queries};
use std::collections::HashSet;
use strata::dataset::{clustered, Vectors};
use strata::{Durability, Error, Filter, IndexBuilder, Metric, Quantization, SearchParams, Writer};

const N: usize = 6_000;
const DIM: usize = 16;

/// The exact distances from `q` to every row of `data`, ascending, as
/// (distance, id).
fn all_distances(data: &Vectors, q: &[f32], metric: Metric) -> Vec<(f32, u64)> {
    let d = exact_fn(metric);
    let mut all: Vec<(f32, u64)> = data
        .rows()
        .enumerate()
        .map(|(i, r)| (d(q, r), i as u64))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

#[test]
fn range_recall_against_brute_force_for_balls_of_10_100_1000() {
    let data = clustered(N, DIM, 12, 0.25, 21);
    let queries = perturbed_queries(&data, 12, 0.05, 22);
    for metric in [Metric::L2, Metric::Cosine] {
        for quant in [Quantization::Int8, Quantization::Lvq4x8, Quantization::None] {
            let index = in_memory(build(&data, params(metric, quant, 5)));
            for size in [10usize, 100, 1_000] {
                let (mut hits, mut wanted, mut returned) = (0usize, 0usize, 0usize);
                for q in queries.rows() {
                    let all = all_distances(&data, q, metric);
                    let radius = all[size - 1].0;
                    // Rounding at the boundary: the truth is what lies
                    // clearly inside; a hit may lie on the boundary.
                    let truth: HashSet<u64> = all
                        .iter()
                        .take_while(|(d, _)| *d <= radius - 1e-5 * radius.abs().max(1e-3))
                        .map(|(_, id)| *id)
                        .collect();
                    let got = index
                        .search_range(q, radius, &SearchParams::default())
                        .unwrap();
                    assert!(!got.truncated, "{metric:?} {quant:?} size {size}");
                    let d = exact_fn(metric);
                    for n in &got.neighbors {
                        let exact = d(q, data.row(n.id as usize));
                        assert!(
                            exact <= radius + 1e-4 * radius.abs().max(1.0),
                            "{metric:?} {quant:?}: {} at {exact} outside {radius}",
                            n.id
                        );
                    }
                    assert!(got
                        .neighbors
                        .windows(2)
                        .all(|w| w[0].distance <= w[1].distance));
                    let ids: HashSet<u64> = got.neighbors.iter().map(|n| n.id).collect();
                    assert_eq!(ids.len(), got.neighbors.len(), "repeated ids");
                    hits += truth.iter().filter(|id| ids.contains(id)).count();
                    wanted += truth.len();
                    returned += got.neighbors.len();
                }
                let recall = hits as f64 / wanted as f64;
                eprintln!(
                    "{metric:?} {quant:?} ball ~{size}: recall {recall:.4}, {:.1} returned per query",
                    returned as f64 / queries.len() as f64
                );
                assert!(
                    recall >= 0.95,
                    "{metric:?} {quant:?} ball ~{size}: recall {recall:.4}"
                );
            }
        }
    }
}

#[test]
fn the_cap_is_honoured_and_keeps_the_nearest() {
    let data = clustered(N, DIM, 12, 0.25, 23);
    let index = in_memory(build(&data, params(Metric::L2, Quantization::Int8, 6)));
    let q = data.row(17);
    let all = all_distances(&data, q, Metric::L2);
    let radius = all[999].0;
    for cap in [1usize, 50, 500] {
        let sp = SearchParams {
            max_results: cap,
            ..Default::default()
        };
        let got = index.search_range(q, radius, &sp).unwrap();
        assert_eq!(got.neighbors.len(), cap, "cap {cap}");
        assert!(got.truncated, "cap {cap}");
        let nearest: HashSet<u64> = all[..cap].iter().map(|(_, id)| *id).collect();
        let found = got
            .neighbors
            .iter()
            .filter(|n| nearest.contains(&n.id))
            .count();
        assert!(
            found * 100 >= cap * 95,
            "cap {cap}: {found} of the {cap} nearest"
        );
    }
    // A cap above the ball: not truncated.
    let sp = SearchParams {
        max_results: 5_000,
        ..Default::default()
    };
    let got = index.search_range(q, radius, &sp).unwrap();
    assert!(!got.truncated && got.neighbors.len() <= 1_000);
}

#[test]
fn a_live_index_returns_logged_rows_in_range_never_deleted_ones() {
    let data = clustered(N + 800, DIM, 12, 0.25, 25);
    let dir = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::new(DIM, params(Metric::Cosine, Quantization::Int8, 7)).unwrap();
    for i in 0..N {
        b.add_with_labels(i as u64, data.row(i), &[(i % 3) as u32])
            .unwrap();
    }
    b.build().unwrap().write(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    let mut live: Vec<bool> = vec![true; N + 800];
    for i in (0..N).step_by(7) {
        w.delete(i as u64).unwrap();
        live[i] = false;
    }
    for i in N..N + 800 {
        w.insert_with_labels(i as u64, data.row(i), &[(i % 3) as u32])
            .unwrap();
    }
    let index = w.live();
    let d = exact_fn(Metric::Cosine);
    let two = Filter::labels("label = 2").unwrap();
    let (mut hits, mut wanted) = (0, 0);
    for qi in 0..10 {
        let q = data.row(N + qi * 50);
        let mut all: Vec<(f32, u64)> = (0..N + 800)
            .filter(|&i| live[i])
            .map(|i| (d(q, data.row(i)), i as u64))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let radius = all[199].0;
        for (filter, allow) in [
            (None, &(|_: u64| true) as &dyn Fn(u64) -> bool),
            (Some(&two), &|id| id % 3 == 2),
        ] {
            let sp = SearchParams {
                filter,
                ..Default::default()
            };
            let got = index.search_range(q, radius, &sp).unwrap();
            let truth: HashSet<u64> = all
                .iter()
                .filter(|(dd, id)| *dd <= radius - 1e-5 && allow(*id))
                .map(|(_, id)| *id)
                .collect();
            for n in &got.neighbors {
                assert!(live[n.id as usize], "query {qi}: deleted {} returned", n.id);
                assert!(allow(n.id), "query {qi}: {} rejected by the filter", n.id);
                assert!(n.distance <= radius);
            }
            assert!(
                got.neighbors.iter().any(|n| n.id >= N as u64),
                "query {qi}: no logged row in range"
            );
            let ids: HashSet<u64> = got.neighbors.iter().map(|n| n.id).collect();
            hits += truth.iter().filter(|id| ids.contains(id)).count();
            wanted += truth.len();
        }
    }
    let recall = hits as f64 / wanted as f64;
    eprintln!("live range recall {recall:.4}");
    assert!(recall >= 0.95, "live range recall {recall:.4}");
}

#[test]
fn bad_range_input_is_a_typed_error() {
    let data = clustered(500, DIM, 4, 0.2, 3);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let index = in_memory(build(&data, params(metric, Quantization::Int8, 1)));
        let q = data.row(0);
        let sp = SearchParams::default();
        for radius in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(
                matches!(
                    index.search_range(q, radius, &sp),
                    Err(Error::InvalidParameter { name: "radius", .. })
                ),
                "{metric:?} radius {radius}"
            );
        }
        let negative = index.search_range(q, -0.5, &sp);
        if metric == Metric::InnerProduct {
            negative.unwrap();
        } else {
            assert!(
                matches!(
                    negative,
                    Err(Error::InvalidParameter { name: "radius", .. })
                ),
                "{metric:?}"
            );
        }
        let zero = SearchParams {
            max_results: 0,
            ..Default::default()
        };
        assert!(matches!(
            index.search_range(q, 0.1, &zero),
            Err(Error::InvalidParameter {
                name: "max_results",
                ..
            })
        ));
        assert!(index.search_range(&[0.5; DIM + 1], 0.1, &sp).is_err());
        assert!(index.search_range(&[f32::NAN; DIM], 0.1, &sp).is_err());
        // Radius 0 finds the query's own row (L2, cosine).
        if metric != Metric::InnerProduct {
            let own = index.search_range(q, 0.0, &sp).unwrap();
            assert!(
                own.neighbors.iter().any(|n| n.id == 0),
                "{metric:?}: {own:?}"
            );
        }
    }
}
