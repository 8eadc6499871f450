//! Labels stored with vectors, filtered by expressions, against brute
//! force: labels given at build and with logged inserts and upserts,
//! random expressions of every selectivity, deletions; the answers hold
//! `min(k, matches)` results that all match, none deleted or superseded,
//! with recall against the exact filtered top k; and labels survive a
//! reopen (replayed log) and a compaction (carried into the new
//! generation's `labels` section).

use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use strata::dataset::clustered;
use strata::{
    BuildParams, CompactOptions, Durability, Filter, Index, IndexBuilder, Metric, Quantization,
    SearchParams, Writer,
};

const DIM: usize = 16;
const BASE: usize = 2_500;
const LOGGED: usize = 700;
const K: usize = 10;
const LABELS: u32 = 40;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    1.0 - dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// An expression, evaluated here independently of the engine.
enum Expr {
    Is(u32),
    In(Vec<u32>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn random(rng: &mut impl Rng, depth: usize) -> Expr {
        // Low labels are frequent (Zipf-like assignment below).
        let label = |rng: &mut dyn rand::RngCore| {
            (rng.gen_range(0.0f64..1.0).powi(2) * LABELS as f64) as u32
        };
        match if depth == 0 {
            rng.gen_range(0..2)
        } else {
            rng.gen_range(0..5)
        } {
            0 => Expr::Is(label(rng)),
            1 => Expr::In((0..rng.gen_range(1..4)).map(|_| label(rng)).collect()),
            2 => Expr::Not(Box::new(Expr::random(rng, depth - 1))),
            3 => Expr::And(
                Box::new(Expr::random(rng, depth - 1)),
                Box::new(Expr::random(rng, depth - 1)),
            ),
            _ => Expr::Or(
                Box::new(Expr::random(rng, depth - 1)),
                Box::new(Expr::random(rng, depth - 1)),
            ),
        }
    }

    fn text(&self) -> String {
        match self {
            Expr::Is(l) => format!("label = {l}"),
            Expr::In(ls) => format!(
                "label in ({})",
                ls.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Expr::Not(e) => format!("not ({})", e.text()),
            Expr::And(a, b) => format!("({}) and ({})", a.text(), b.text()),
            Expr::Or(a, b) => format!("({}) or ({})", a.text(), b.text()),
        }
    }

    fn eval(&self, labels: &[u32]) -> bool {
        match self {
            Expr::Is(l) => labels.contains(l),
            Expr::In(ls) => ls.iter().any(|l| labels.contains(l)),
            Expr::Not(e) => !e.eval(labels),
            Expr::And(a, b) => a.eval(labels) && b.eval(labels),
            Expr::Or(a, b) => a.eval(labels) || b.eval(labels),
        }
    }
}

/// One to three labels, low ones more often.
fn random_labels(rng: &mut impl Rng) -> Vec<u32> {
    let mut l: Vec<u32> = (0..rng.gen_range(0..4))
        .map(|_| (rng.gen_range(0.0f64..1.0).powi(2) * LABELS as f64) as u32)
        .collect();
    l.sort_unstable();
    l.dedup();
    l
}

struct Live {
    rows: HashMap<u64, (Vec<f32>, Vec<u32>)>,
}

impl Live {
    fn truth(&self, e: &Expr, q: &[f32]) -> (Vec<u64>, usize) {
        let mut all: Vec<(f32, u64)> = self
            .rows
            .iter()
            .filter(|(_, (_, l))| e.eval(l))
            .map(|(id, (r, _))| (cosine(r, q), *id))
            .collect();
        let matches = all.len();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        (all.into_iter().take(K).map(|(_, id)| id).collect(), matches)
    }

    /// Checks `index` against brute force for `exprs`; returns (hits, wanted).
    fn check(
        &self,
        index: &Index,
        exprs: &[Expr],
        queries: &[&[f32]],
        what: &str,
    ) -> (usize, usize) {
        let (mut hits, mut wanted) = (0, 0);
        for (ei, e) in exprs.iter().enumerate() {
            let filter = Filter::labels(&e.text()).unwrap();
            // The default plan (exact below 3,000 matches: all of these)
            // and the graph from 100 matches on.
            for (qi, (q, exact_below)) in queries
                .iter()
                .flat_map(|q| [(q, None), (q, Some(100))])
                .enumerate()
            {
                let sp = SearchParams {
                    filter: Some(&filter),
                    exact_below,
                    ..SearchParams::with_ef(64)
                };
                let (t, matches) = self.truth(e, q);
                let got = index.search(q, K, &sp).unwrap();
                let case = format!(
                    "{what}: expr {ei} {:?} ({matches} match), query {qi}",
                    e.text()
                );
                assert_eq!(got.len(), K.min(matches), "{case}: {got:?}");
                let ids: HashSet<u64> = got.iter().map(|n| n.id).collect();
                assert_eq!(ids.len(), got.len(), "{case}: repeated id");
                for n in &got {
                    let (row, labels) = self
                        .rows
                        .get(&n.id)
                        .unwrap_or_else(|| panic!("{case}: {} is not live", n.id));
                    assert!(e.eval(labels), "{case}: {} has labels {labels:?}", n.id);
                    assert!(
                        (cosine(row, q) - n.distance).abs() < 1e-4,
                        "{case}: stale row {}",
                        n.id
                    );
                }
                hits += got.iter().filter(|n| t.contains(&n.id)).count();
                wanted += t.len();
            }
        }
        (hits, wanted)
    }
}

#[test]
fn label_filters_match_brute_force_through_log_reopen_and_compaction() {
    let data = clustered(BASE + LOGGED, DIM, 10, 0.2, 7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let params = BuildParams {
        metric: Metric::Cosine,
        quantization: Quantization::Int8,
        seed: Some(3),
        threads: 1,
        ..Default::default()
    };
    let mut live = Live {
        rows: HashMap::new(),
    };
    let mut b = IndexBuilder::new(DIM, params.clone()).unwrap();
    for i in 0..BASE {
        let labels = random_labels(&mut rng);
        // Unsorted and repeated on the way in: stored sorted and distinct.
        let given: Vec<u32> = labels.iter().rev().chain(labels.first()).copied().collect();
        b.add_with_labels(i as u64, data.row(i), &given).unwrap();
        live.rows.insert(i as u64, (data.row(i).to_vec(), labels));
    }
    b.build().unwrap().write(&path).unwrap();
    let gen = strata::Generation::open(&path).unwrap();
    let info = gen.info();
    assert_eq!(info.format_version, 6, "a labelled build is version 6");
    assert!(info.labels > 0 && info.label_postings > 0);
    gen.verify().unwrap();
    for id in [0u64, 17, 2_499] {
        assert_eq!(gen.labels(id).unwrap(), live.rows[&id].1, "labels of {id}");
    }
    assert!(gen.labels(1 << 40).is_err());
    drop(gen);

    let w = Writer::open(&path, Durability::None).unwrap();
    for _ in 0..250 {
        let id = rng.gen_range(0..BASE as u64);
        if live.rows.remove(&id).is_some() {
            w.delete(id).unwrap();
        }
    }
    // Upserts change a built vector's labels (its row is superseded).
    for j in 0..150 {
        let id = rng.gen_range(0..BASE as u64);
        let labels = random_labels(&mut rng);
        w.upsert_with_labels(id, data.row(BASE + j), &labels)
            .unwrap();
        live.rows.insert(id, (data.row(BASE + j).to_vec(), labels));
    }
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    let mut label_rows = Vec::new();
    for j in 150..LOGGED {
        let id = (BASE + j) as u64;
        let labels = random_labels(&mut rng);
        ids.push(id);
        rows.extend_from_slice(data.row(BASE + j));
        label_rows.push(labels.clone());
        live.rows.insert(id, (data.row(BASE + j).to_vec(), labels));
    }
    w.insert_batch_with_labels(&ids, &rows, &label_rows, Default::default())
        .unwrap();
    let index = w.live();
    assert_eq!(index.labels(ids[3]).unwrap(), label_rows[3]);

    let exprs: Vec<Expr> = (0..24).map(|i| Expr::random(&mut rng, i % 4)).collect();
    let queries: Vec<&[f32]> = (0..5)
        .map(|_| data.row(rng.gen_range(0..BASE + LOGGED)))
        .collect();
    // Every selectivity from a few matches to nearly all.
    let counts: Vec<usize> = exprs
        .iter()
        .map(|e| live.rows.values().filter(|(_, l)| e.eval(l)).count())
        .collect();
    assert!(counts.iter().any(|&c| c < 50), "{counts:?}");
    assert!(counts.iter().any(|&c| c > 2_000), "{counts:?}");

    strata::take_search_counts();
    let (h1, w1) = live.check(&index, &exprs, &queries, "writer");
    let c = strata::take_search_counts();
    assert!(c.filtered_exact > 0 && c.filtered_graph > 0, "{c:?}");
    drop(index);
    drop(w);
    let reopened = Index::open(&path).unwrap();
    let (h2, w2) = live.check(&reopened, &exprs, &queries, "reopened");
    drop(reopened);
    let w = Writer::open(&path, Durability::None).unwrap();
    w.compact(CompactOptions::default()).unwrap();
    let compacted = w.live();
    assert_eq!(compacted.stats().inserted, 0, "the log was folded in");
    let (h3, w3) = live.check(&compacted, &exprs, &queries, "compacted");
    for id in [ids[0], ids[100], 5] {
        if let Some((_, labels)) = live.rows.get(&id) {
            assert_eq!(
                &compacted.labels(id).unwrap(),
                labels,
                "labels of {id} after compaction"
            );
        }
    }
    compacted.with_generation(|g| g.verify()).unwrap();
    let recall = (h1 + h2 + h3) as f64 / (w1 + w2 + w3) as f64;
    eprintln!("label-filtered recall@{K}: {recall:.4}");
    assert!(recall >= 0.97, "label-filtered recall {recall:.4}");

    // A malformed expression is a typed error naming the position.
    match Filter::labels("label in (1, 2") {
        Err(strata::Error::FilterExpression { position, .. }) => assert_eq!(position, 14),
        other => panic!("{other:?}"),
    }
}

/// A build without labels keeps its version (no labels section), and a
/// label filter over it matches the expressions true of no labels.
#[test]
fn unlabelled_builds_keep_their_version_and_match_as_empty_sets() {
    let data = clustered(600, DIM, 4, 0.2, 2);
    let params = BuildParams {
        metric: Metric::L2,
        seed: Some(1),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    b.add_rows(&data.data).unwrap();
    let index = b.build().unwrap().into_index().unwrap();
    assert_eq!(index.info().format_version, 2);
    assert_eq!(index.info().labels, 0);
    assert!(index.labels(3).unwrap().is_empty());
    let none = Filter::labels("label = 1").unwrap();
    let all = Filter::labels("not label = 1").unwrap();
    let q = data.row(0);
    let sp = |f| SearchParams {
        filter: Some(f),
        ..Default::default()
    };
    assert!(index.search(q, K, &sp(&none)).unwrap().is_empty());
    assert_eq!(index.search(q, K, &sp(&all)).unwrap().len(), K);
}
