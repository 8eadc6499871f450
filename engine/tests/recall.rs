//! Pins search quality: recall@10 at ef = 64 against exact brute-force
//! ground truth (f64 distances, never the engine's own `exact_search`) for
//! every metric × code kind (none, int8, product quantization with
//! m = dim/4 and dim/8, binary), int8 rescoring staying within 0.01 of the
//! unquantized index, PQ and binary recall after rescoring and that
//! rescoring only `k` candidates (oversample 1) never does better,
//! returned distances equal to the documented metric convention (L2
//! squared, IP `1 − dot`, cosine `1 − cos`) whatever the codes, ascending
//! order, `k > n`, and the oversampling parameter (effect and validation).

mod common;

use common::*;
use std::sync::OnceLock;
use strata::dataset::{clustered, Vectors};
use strata::{BuildParams, Error, Generation, Metric, Quantization, SearchParams};

const N: usize = 4_000;
const DIM: usize = 32;
const NQ: usize = 200;
const K: usize = 10;
const EF: usize = 64;
/// PQ training rows: enough for 256 centroids per sub-vector, small enough
/// that training stays quick in debug builds.
const PQ_TRAIN: usize = 1_000;

/// The codes an index traverses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Codes {
    None,
    Int8,
    /// Product quantization with this m.
    Pq(usize),
    Binary,
    Lvq8,
    Lvq4x8,
}

impl Codes {
    fn quantization(self) -> Quantization {
        match self {
            Codes::None => Quantization::None,
            Codes::Int8 => Quantization::Int8,
            Codes::Pq(_) => Quantization::Pq,
            Codes::Binary => Quantization::Binary,
            Codes::Lvq8 => Quantization::Lvq8,
            Codes::Lvq4x8 => Quantization::Lvq4x8,
        }
    }

    fn params(self, metric: Metric, seed: u64) -> BuildParams {
        let mut p = params(metric, self.quantization(), seed);
        if let Codes::Pq(m) = self {
            p.pq_m = Some(m);
            p.pq_train_size = PQ_TRAIN;
        }
        p
    }

    /// The rescoring these codes need for good recall: `ceil(k · factor)`
    /// candidates (4k for PQ, 8k for one-bit codes).
    fn rescoring(self) -> SearchParams<'static> {
        SearchParams {
            ef: EF,
            oversample: match self {
                Codes::Pq(_) => Some(4.0),
                Codes::Binary => Some(8.0),
                _ => None,
            },
            ..Default::default()
        }
    }
}

/// Lowest recall@10 accepted at ef = 64 (default rescoring) for the
/// unquantized and int8 indexes. Builds are seeded and single-threaded, so
/// recall is the same on every run (measured values are in the comments);
/// each threshold sits a little below its measurement.
fn min_recall(metric: Metric) -> f64 {
    match metric {
        Metric::L2 => 0.985, // measured 1.000 (none), 1.000 (int8), 1.000 (lvq8)
        Metric::InnerProduct => 0.98, // measured 0.9915 (none, int8, lvq8); 0.9785 before the reachability repair
        Metric::Cosine => 0.985,      // measured 1.000 (none), 1.000 (int8), 1.000 (lvq8)
    }
}

/// Lowest recall@10 accepted for PQ and binary codes at ef = 64 with their
/// rescoring ([`Codes::rescoring`]). Measured values in the comments; each
/// threshold sits a little below. These codes are far coarser than int8 on
/// 32 dimensions: PQ with m = 8 keeps 8 bytes of 128, m = 4 keeps 4, and
/// binary keeps 4 bytes (one bit per dimension, centred on the global mean,
/// which with 20 clusters says mostly which cluster a vector is in). Under
/// cosine, PQ ranks by `1 − ⟨q, x̂⟩`, a noisier estimate on unit vectors
/// than the `‖q − x̂‖²` L2 uses, hence its lower recall.
fn min_recall_rescored(metric: Metric, codes: Codes) -> f64 {
    match (metric, codes) {
        (Metric::L2, Codes::Pq(8)) => 0.83,  // measured 0.8535
        (Metric::L2, Codes::Pq(4)) => 0.66,  // measured 0.6810
        (Metric::L2, Codes::Binary) => 0.59, // measured 0.6100
        // Inner product: before the build's reachability repair 1,570 of
        // these 4,000 vectors had no in-link (the heuristic never keeps a
        // short vector under inner product) and no search could return
        // them; float32 and int8 recall rose from 0.9785 to 0.9915 when they
        // became reachable, while coarse codes, which now also rank those
        // vectors for the rescoring shortlist, fell (pq 8: 0.9200, pq 4:
        // 0.8020, binary 0.9800 before).
        (Metric::InnerProduct, Codes::Pq(8)) => 0.87, // measured 0.8905
        (Metric::InnerProduct, Codes::Pq(4)) => 0.69, // measured 0.7070
        (Metric::InnerProduct, Codes::Binary) => 0.95, // measured 0.9720
        (Metric::Cosine, Codes::Pq(8)) => 0.47,       // measured 0.4915
        (Metric::Cosine, Codes::Pq(4)) => 0.36,       // measured 0.3820
        (Metric::Cosine, Codes::Binary) => 0.59,      // measured 0.6120
        _ => min_recall(metric),
    }
}

struct Fixture {
    data: Vectors,
    queries: Vectors,
    truth: Vec<Vec<u32>>,
    index: Generation,
}

const METRICS: [Metric; 3] = [Metric::L2, Metric::InnerProduct, Metric::Cosine];
/// Every code kind: PQ with m = dim/4 and dim/8.
const CODES: [Codes; 7] = [
    Codes::None,
    Codes::Int8,
    Codes::Pq(DIM / 4),
    Codes::Pq(DIM / 8),
    Codes::Binary,
    Codes::Lvq8,
    Codes::Lvq4x8,
];

fn data() -> &'static (Vectors, Vectors) {
    static DATA: OnceLock<(Vectors, Vectors)> = OnceLock::new();
    DATA.get_or_init(|| {
        let data = clustered(N, DIM, 20, 0.15, 11);
        let queries = perturbed_queries(&data, NQ, 0.1, 12);
        (data, queries)
    })
}

fn fixture(metric: Metric, codes: Codes) -> &'static Fixture {
    static CACHE: [OnceLock<Fixture>; 21] = [const { OnceLock::new() }; 21];
    let mi = METRICS.iter().position(|m| *m == metric).unwrap();
    let ci = CODES.iter().position(|c| *c == codes).unwrap();
    CACHE[mi * CODES.len() + ci].get_or_init(|| {
        let (data, queries) = data();
        let index = in_memory(build(data, codes.params(metric, 5)));
        assert_eq!(index.quantization(), codes.quantization());
        if let Codes::Pq(m) = codes {
            assert_eq!(index.info().pq_m, m);
        }
        Fixture {
            data: data.clone(),
            queries: queries.clone(),
            truth: truth(data, queries, K, metric),
            index,
        }
    })
}

fn measured(metric: Metric, codes: Codes, sp: &SearchParams) -> f64 {
    let f = fixture(metric, codes);
    let results = search_all(&f.index, &f.queries, K, sp);
    recall(&results, &f.truth, K)
}

fn check_recall(metric: Metric, quant: Quantization) {
    let codes = match quant {
        Quantization::None => Codes::None,
        Quantization::Lvq8 => Codes::Lvq8,
        Quantization::Lvq4x8 => Codes::Lvq4x8,
        _ => Codes::Int8,
    };
    let r = measured(metric, codes, &SearchParams::with_ef(EF));
    eprintln!("recall@{K} ef={EF} {metric:?}/{quant:?}: {r:.4}");
    // LVQ-4x8 traverses on 4-bit codes: 16 levels over each vector's range
    // of 32 clustered dimensions are a coarse guide, and the beam misses
    // neighbours that rescoring would have ranked first (measured 0.9405
    // l2, 0.9915 ip, 0.9255 cosine; at 384 dimensions, npm-minilm, it ranks
    // like int8 or better, see the README).
    let min = match (quant, metric) {
        (Quantization::Lvq4x8, Metric::L2) => 0.92,
        (Quantization::Lvq4x8, Metric::Cosine) => 0.90,
        _ => min_recall(metric),
    };
    assert!(
        r >= min,
        "{metric:?}/{quant:?}: recall@{K} at ef={EF} is {r:.4}, below {min}"
    );
}

/// PQ and binary recall with their rescoring, and that rescoring only the
/// `k` best by code distance (oversample 1) does no better: rescoring more
/// candidates can only bring true neighbours in.
fn check_coarse_recall(metric: Metric, codes: Codes) {
    let sp = codes.rescoring();
    let r = measured(metric, codes, &sp);
    let narrow = measured(
        metric,
        codes,
        &SearchParams {
            ef: EF,
            oversample: Some(1.0),
            ..Default::default()
        },
    );
    eprintln!(
        "recall@{K} ef={EF} {metric:?}/{codes:?}: {r:.4} with oversample {:?}, {narrow:.4} with 1",
        sp.oversample
    );
    let min = min_recall_rescored(metric, codes);
    assert!(
        r >= min,
        "{metric:?}/{codes:?}: recall@{K} at {sp:?} is {r:.4}, below {min}"
    );
    assert!(
        narrow <= r,
        "{metric:?}/{codes:?}: recall without rescoring ({narrow:.4}) above recall with it ({r:.4})"
    );
}

#[test]
fn recall_l2_lvq8() {
    check_recall(Metric::L2, Quantization::Lvq8);
}

#[test]
fn recall_ip_lvq8() {
    check_recall(Metric::InnerProduct, Quantization::Lvq8);
}

#[test]
fn recall_cosine_lvq8() {
    check_recall(Metric::Cosine, Quantization::Lvq8);
}

#[test]
fn recall_l2_lvq4x8() {
    check_recall(Metric::L2, Quantization::Lvq4x8);
}

#[test]
fn recall_ip_lvq4x8() {
    check_recall(Metric::InnerProduct, Quantization::Lvq4x8);
}

#[test]
fn recall_cosine_lvq4x8() {
    check_recall(Metric::Cosine, Quantization::Lvq4x8);
}

#[test]
fn recall_l2_none() {
    check_recall(Metric::L2, Quantization::None);
}

#[test]
fn recall_l2_int8() {
    check_recall(Metric::L2, Quantization::Int8);
}

#[test]
fn recall_ip_none() {
    check_recall(Metric::InnerProduct, Quantization::None);
}

#[test]
fn recall_ip_int8() {
    check_recall(Metric::InnerProduct, Quantization::Int8);
}

#[test]
fn recall_cosine_none() {
    check_recall(Metric::Cosine, Quantization::None);
}

#[test]
fn recall_cosine_int8() {
    check_recall(Metric::Cosine, Quantization::Int8);
}

#[test]
fn recall_l2_pq_m_dim_over_4() {
    check_coarse_recall(Metric::L2, Codes::Pq(DIM / 4));
}

#[test]
fn recall_l2_pq_m_dim_over_8() {
    check_coarse_recall(Metric::L2, Codes::Pq(DIM / 8));
}

#[test]
fn recall_l2_binary() {
    check_coarse_recall(Metric::L2, Codes::Binary);
}

#[test]
fn recall_ip_pq_m_dim_over_4() {
    check_coarse_recall(Metric::InnerProduct, Codes::Pq(DIM / 4));
}

#[test]
fn recall_ip_pq_m_dim_over_8() {
    check_coarse_recall(Metric::InnerProduct, Codes::Pq(DIM / 8));
}

#[test]
fn recall_ip_binary() {
    check_coarse_recall(Metric::InnerProduct, Codes::Binary);
}

#[test]
fn recall_cosine_pq_m_dim_over_4() {
    check_coarse_recall(Metric::Cosine, Codes::Pq(DIM / 4));
}

#[test]
fn recall_cosine_pq_m_dim_over_8() {
    check_coarse_recall(Metric::Cosine, Codes::Pq(DIM / 8));
}

#[test]
fn recall_cosine_binary() {
    check_coarse_recall(Metric::Cosine, Codes::Binary);
}

/// PQ with more sub-vectors (m = dim/4) is at least as good as with fewer
/// (m = dim/8) at the same rescoring.
#[test]
fn more_pq_bytes_never_lower_recall() {
    for metric in METRICS {
        let sp = Codes::Pq(DIM / 4).rescoring();
        let fine = measured(metric, Codes::Pq(DIM / 4), &sp);
        let coarse = measured(metric, Codes::Pq(DIM / 8), &sp);
        assert!(
            fine >= coarse,
            "{metric:?}: pq m={} recall {fine:.4} below m={} recall {coarse:.4}",
            DIM / 4,
            DIM / 8
        );
    }
}

#[test]
fn int8_with_rescoring_is_within_a_hundredth_of_unquantized() {
    for metric in METRICS {
        let sp = SearchParams::with_ef(EF);
        let none = measured(metric, Codes::None, &sp);
        let int8 = measured(metric, Codes::Int8, &sp);
        assert!(
            int8 >= none - 0.01,
            "{metric:?}: int8 recall {int8:.4} is more than 0.01 below unquantized {none:.4}"
        );
    }
}

#[test]
fn distances_follow_the_documented_convention_exactly() {
    // Whatever the codes traversed, returned distances are the exact
    // (rescored) metric distances, with every rescoring setting.
    for metric in METRICS {
        let exact = exact_fn(metric);
        for codes in CODES {
            let f = fixture(metric, codes);
            for sp in [
                SearchParams::with_ef(EF),
                codes.rescoring(),
                SearchParams {
                    ef: EF,
                    oversample: Some(1.0),
                    ..Default::default()
                },
            ] {
                for q in f.queries.rows().step_by(2) {
                    let hits = f.index.search(q, K, &sp).unwrap();
                    assert_eq!(hits.len(), K);
                    for h in &hits {
                        let want = exact(q, f.data.row(h.id as usize));
                        assert!(
                            (h.distance - want).abs() <= 1e-4,
                            "{metric:?}/{codes:?} {sp:?}: id {} distance {} but exact {want}",
                            h.id,
                            h.distance
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn cosine_and_l2_distances_have_their_documented_ranges() {
    for codes in CODES {
        let f = fixture(Metric::Cosine, codes);
        // Far queries too: the negated data rows are maximally dissimilar.
        for q in f.queries.rows().take(20) {
            let neg: Vec<f32> = q.iter().map(|x| -x).collect();
            for hits in [
                f.index.search(q, 50, &SearchParams::with_ef(EF)).unwrap(),
                f.index
                    .search(&neg, 50, &SearchParams::with_ef(EF))
                    .unwrap(),
            ] {
                for h in hits {
                    assert!(
                        (-1e-5..=2.0 + 1e-5).contains(&h.distance),
                        "{codes:?}: cosine distance {} outside [0, 2]",
                        h.distance
                    );
                }
            }
        }
        let f = fixture(Metric::L2, codes);
        let hits = f
            .index
            .search(f.data.row(17), 5, &codes.rescoring())
            .unwrap();
        assert_eq!(
            hits[0].id, 17,
            "{codes:?}: a stored point is its own nearest neighbour"
        );
        assert_eq!(
            hits[0].distance, 0.0,
            "{codes:?}: squared L2 distance to itself is 0"
        );
    }
}

#[test]
fn results_are_sorted_ascending_and_distinct() {
    for metric in METRICS {
        for quant in CODES {
            let f = fixture(metric, quant);
            for q in f.queries.rows().step_by(4) {
                for k in [1, 10, 100] {
                    let hits = f.index.search(q, k, &SearchParams::with_ef(EF)).unwrap();
                    assert_eq!(hits.len(), k, "{metric:?}/{quant:?} k={k}");
                    assert!(
                        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
                        "{metric:?}/{quant:?}: not sorted: {hits:?}"
                    );
                    let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    assert_eq!(ids.len(), k, "{metric:?}/{quant:?}: duplicate ids");
                }
            }
        }
    }
}

#[test]
fn k_larger_than_n_returns_every_vector() {
    let data = clustered(50, 8, 3, 0.2, 3);
    for metric in METRICS {
        for quant in [
            Codes::None,
            Codes::Int8,
            Codes::Pq(2),
            Codes::Pq(3),
            Codes::Binary,
        ] {
            let index = in_memory(build(&data, quant.params(metric, 1)));
            for (i, q) in data.rows().enumerate().step_by(7) {
                for ef in [0, 10, 64] {
                    let hits = index.search(q, 100, &SearchParams::with_ef(ef)).unwrap();
                    let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                    ids.sort_unstable();
                    assert_eq!(
                        ids,
                        (0..50).collect::<Vec<u64>>(),
                        "{metric:?}/{quant:?} query {i} ef {ef}: k > n must return all n vectors once"
                    );
                    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                }
            }
        }
    }
}

#[test]
fn more_oversampling_never_lowers_recall() {
    for metric in METRICS {
        let f = fixture(metric, Codes::Int8);
        let at = |o: f32| {
            let sp = SearchParams {
                ef: EF,
                oversample: Some(o),
                ..Default::default()
            };
            recall(&search_all(&f.index, &f.queries, K, &sp), &f.truth, K)
        };
        let (r1, r4) = (at(1.0), at(4.0));
        eprintln!("{metric:?}/int8 oversample 1.0: {r1:.4}, 4.0: {r4:.4}");
        assert!(
            r4 >= r1,
            "{metric:?}: oversample 4.0 recall {r4:.4} < oversample 1.0 recall {r1:.4}"
        );
        assert!(
            r4 >= min_recall(metric),
            "{metric:?}: oversample 4.0 recall {r4:.4}"
        );
        // A factor wider than the beam widens the beam: still k sorted results.
        let sp = SearchParams {
            ef: 8,
            oversample: Some(20.0),
            ..Default::default()
        };
        let hits = f.index.search(f.queries.row(0), K, &sp).unwrap();
        assert_eq!(hits.len(), K);
    }
}

#[test]
fn oversample_one_rescores_only_k_candidates() {
    // With oversample = 1, only the k best by code distance are rescored, so
    // with the same beam (6.4 · k = ef) they are a subset of what the wider
    // rescoring picks from: with exact rescoring every rank can only get
    // closer. Per query, for every kind of codes and metric.
    for metric in METRICS {
        for codes in [
            Codes::Int8,
            Codes::Pq(DIM / 4),
            Codes::Pq(DIM / 8),
            Codes::Binary,
        ] {
            let f = fixture(metric, codes);
            let narrow = SearchParams {
                ef: EF,
                oversample: Some(1.0),
                ..Default::default()
            };
            let wide = SearchParams {
                ef: EF,
                oversample: Some(6.4),
                ..Default::default()
            };
            for q in f.queries.rows() {
                let a = f.index.search(q, K, &narrow).unwrap();
                let b = f.index.search(q, K, &wide).unwrap();
                assert_eq!(a.len(), K);
                assert_eq!(b.len(), K);
                for i in 0..K {
                    assert!(
                        b[i].distance <= a[i].distance,
                        "{metric:?}/{codes:?} rank {i}: wider rescoring got worse"
                    );
                }
            }
        }
    }
}

#[test]
fn invalid_oversample_is_an_error() {
    for quant in CODES {
        let f = fixture(Metric::L2, quant);
        for bad in [0.5, 0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let sp = SearchParams {
                ef: EF,
                oversample: Some(bad),
                ..Default::default()
            };
            match f.index.search(f.queries.row(0), K, &sp) {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "oversample"),
                other => {
                    panic!("{quant:?} oversample {bad}: expected InvalidParameter, got {other:?}")
                }
            }
        }
    }
}
