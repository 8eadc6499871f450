//! Filtered search against brute force: for random filters (ids, bitmap,
//! predicate) of every selectivity, over a live index with deletions,
//! upserts (superseded rows) and logged inserts, a search returns exactly
//! `min(k, matches)` results, never a rejected, deleted or superseded id,
//! sorted, with recall against the exact filtered top k; and each of the
//! planner's three paths (exact scan, graph, graph finished exactly) runs.

use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use strata::dataset::clustered;
use strata::{
    BuildParams, Durability, Filter, IndexBuilder, Metric, Quantization, SearchCounts,
    SearchParams, Writer,
};

const DIM: usize = 16;
const BASE: usize = 3_000;
const K: usize = 10;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    1.0 - dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// The exact filtered top `k` of `live` (id → row) by brute force here.
fn truth(live: &HashMap<u64, Vec<f32>>, allow: &dyn Fn(u64) -> bool, q: &[f32]) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = live
        .iter()
        .filter(|(id, _)| allow(**id))
        .map(|(id, r)| (cosine(r, q), *id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(K).map(|(_, id)| id).collect()
}

#[test]
fn filtered_search_returns_min_k_matches_never_a_rejected_dead_or_superseded_id() {
    let data = clustered(BASE + 1_200, DIM, 12, 0.2, 5);
    let dir = tempfile::tempdir().unwrap();
    for quantization in [Quantization::Int8, Quantization::None] {
        let params = BuildParams {
            metric: Metric::Cosine,
            quantization,
            seed: Some(5),
            threads: 1,
            ..Default::default()
        };
        let path = dir.path().join(quantization.name());
        let mut b = IndexBuilder::new(DIM, params).unwrap();
        b.add_rows(&data.data[..BASE * DIM]).unwrap();
        b.build().unwrap().write(&path).unwrap();
        let w = Writer::open(&path, Durability::None).unwrap();
        let mut live: HashMap<u64, Vec<f32>> = (0..BASE)
            .map(|i| (i as u64, data.row(i).to_vec()))
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // Deletions, upserts of built ids (their generation rows are
        // superseded) and logged inserts (enough to be searched as a
        // graph, and some scanned).
        for _ in 0..300 {
            let id = rng.gen_range(0..BASE as u64);
            if live.remove(&id).is_some() {
                w.delete(id).unwrap();
            }
        }
        for j in 0..200 {
            let id = rng.gen_range(0..BASE as u64);
            let row = data.row(BASE + j);
            w.upsert(id, row).unwrap();
            live.insert(id, row.to_vec());
        }
        for j in 200..1_200 {
            let id = (BASE + j) as u64;
            w.insert(id, data.row(BASE + j)).unwrap();
            live.insert(id, data.row(BASE + j).to_vec());
        }
        let index = w.live();
        strata::take_search_counts();
        let (mut hits, mut wanted) = (0usize, 0usize);
        // Selectivities from one in a thousand to all.
        for (fi, &p) in [0.001, 0.003, 0.01, 0.05, 0.2, 0.5, 1.0].iter().enumerate() {
            let salt = rng.gen::<u64>();
            let allow = move |id: u64| {
                (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt) % 10_000 < (p * 10_000.0) as u64
            };
            let allowed_ids: Vec<u64> =
                (0..(BASE + 1_200) as u64).filter(|&id| allow(id)).collect();
            let mut words = vec![0u64; (BASE + 1_200) / 64 + 1];
            for &id in &allowed_ids {
                words[id as usize / 64] |= 1 << (id % 64);
            }
            let filters = [
                ("predicate", Filter::predicate(allow)),
                (
                    "ids",
                    Filter::ids(allowed_ids.iter().copied().chain([u64::MAX])),
                ),
                ("bitmap", Filter::id_bitmap(words)),
            ];
            let matches = live.keys().filter(|&&id| allow(id)).count();
            for (name, filter) in &filters {
                for exact_below in [None, Some(0)] {
                    let sp = SearchParams {
                        filter: Some(filter),
                        exact_below,
                        ..SearchParams::with_ef(64)
                    };
                    for qi in 0..6 {
                        let q = data.row(rng.gen_range(0..BASE + 1_200));
                        let case = format!(
                            "{quantization:?} filter {fi} (p {p}, {matches} match) {name} \
                             exact_below {exact_below:?} query {qi}"
                        );
                        let got = index.search(q, K, &sp).unwrap();
                        assert_eq!(got.len(), K.min(matches), "{case}: {got:?}");
                        let ids: HashSet<u64> = got.iter().map(|n| n.id).collect();
                        assert_eq!(ids.len(), got.len(), "{case}: repeated id");
                        for n in &got {
                            assert!(allow(n.id), "{case}: {} not allowed", n.id);
                            let row = live.get(&n.id);
                            assert!(row.is_some(), "{case}: {} deleted", n.id);
                            // A superseded row would carry its old distance.
                            let d = cosine(row.unwrap(), q);
                            assert!((d - n.distance).abs() < 1e-4, "{case}: stale row {}", n.id);
                        }
                        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
                        let t = truth(&live, &allow, q);
                        hits += got.iter().filter(|n| t.contains(&n.id)).count();
                        wanted += t.len();
                    }
                }
            }
        }
        let recall = hits as f64 / wanted as f64;
        let c: SearchCounts = strata::take_search_counts();
        eprintln!("{quantization:?}: filtered recall@{K} {recall:.4}, paths {c:?}");
        assert!(
            recall >= 0.97,
            "{quantization:?}: filtered recall {recall:.4}"
        );
        assert!(c.filtered_exact > 0, "{c:?}");
        assert!(c.filtered_graph > 0, "{c:?}");
        assert!(c.filtered_fallback > 0, "{c:?}");
        // A batch resolves the filter once and answers as one at a time.
        let f = Filter::predicate(|id| id % 3 == 0);
        let sp = SearchParams {
            filter: Some(&f),
            ..SearchParams::with_ef(64)
        };
        let qs = &data.data[..20 * DIM];
        let batch = index
            .search_batch(strata::Queries::new(qs, DIM).unwrap(), K, &sp)
            .unwrap();
        for (i, b) in batch.iter().enumerate() {
            assert_eq!(b, &index.search(data.row(i), K, &sp).unwrap(), "query {i}");
        }
        // A filter kept across writes resolves again for each new
        // snapshot: the deleted hit is gone, a new matching row appears.
        let first = index.search(data.row(0), K, &sp).unwrap();
        let gone = first[0].id;
        w.delete(gone).unwrap();
        let new_id = 3 * 1_000_000;
        w.insert(new_id, data.row(0)).unwrap();
        let after = index.search(data.row(0), K, &sp).unwrap();
        assert!(after.iter().all(|n| n.id != gone), "{after:?}");
        assert_eq!(after[0].id, new_id, "{after:?}");
        // A filter that matches nothing answers nothing, and bad input is
        // still an error.
        let none = Filter::ids([]);
        let sp = SearchParams {
            filter: Some(&none),
            ..Default::default()
        };
        assert!(index.search(data.row(0), K, &sp).unwrap().is_empty());
        assert!(index.search(data.row(0), 0, &sp).is_err());
        assert!(index.search(&[f32::NAN; DIM], K, &sp).is_err());
        assert!(index.search(&[1.0; DIM + 1], K, &sp).is_err());
    }
}
