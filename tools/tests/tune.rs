//! `strata tune` end to end on generated data: the points it stores have
//! recall estimates within 0.01 of the recall measured, by brute force in
//! this test, on queries tune never saw; `search --recall` and `inspect`
//! use and show them; without them `--recall` is an error naming `tune`.

mod common;

use common::{json, stderr, stdout, strata};
use std::collections::HashSet;
use std::path::Path;
use strata::dataset::{clustered, write_fvecs, Vectors};
use strata::{Index, SearchParams};

const N: usize = 8_000;
const DIM: usize = 32;
const K: usize = 10;
/// Queries tune sees (half choose, half check), and as many it never sees.
const Q: usize = 3_000;

fn rows(v: &Vectors, from: usize, to: usize) -> Vectors {
    Vectors {
        dim: v.dim,
        data: v.data[from * v.dim..to * v.dim].to_vec(),
    }
}

/// Recall@K of `params` on `queries` against brute force (cosine) over `base`.
fn measured_recall(index: &Index, base: &Vectors, queries: &Vectors, params: &SearchParams) -> f64 {
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        1.0 - dot / (na * nb)
    };
    let (mut hits, mut wanted) = (0usize, 0usize);
    for q in queries.rows() {
        let mut all: Vec<(f64, u64)> = base
            .rows()
            .enumerate()
            .map(|(i, x)| (cos(q, x), i as u64))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: HashSet<u64> = all[..K].iter().map(|p| p.1).collect();
        let got = index.search(q, K, params).unwrap();
        hits += got.iter().filter(|n| truth.contains(&n.id)).count();
        wanted += K;
    }
    hits as f64 / wanted as f64
}

fn setup(dir: &Path) -> (Vectors, Vectors, Vectors) {
    // One generator for the base and the queries: the queries are rows
    // of the same distribution that were never indexed.
    // Thousands of each: recall estimates on a few hundred queries differ
    // by about 0.01 from sampling alone.
    let all = clustered(N + 2 * Q, DIM, 24, 0.35, 17);
    let (base, tune_q, check_q) = (
        rows(&all, 0, N),
        rows(&all, N, N + Q),
        rows(&all, N + Q, N + 2 * Q),
    );
    write_fvecs(&dir.join("base.fvecs"), &base).unwrap();
    write_fvecs(&dir.join("tune.fvecs"), &tune_q).unwrap();
    let o = strata()
        .args(["build", "--input"])
        .arg(dir.join("base.fvecs"))
        .arg("--out")
        .arg(dir.join("idx"))
        .args([
            "--quantization",
            "int8",
            "--m",
            "8",
            "--ef-construction",
            "64",
            "--threads",
            "1",
            "--seed",
            "3",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "build: {}", stderr(&o));
    (base, tune_q, check_q)
}

#[test]
fn tuned_points_hold_on_queries_tune_never_saw() {
    let t = tempfile::tempdir().unwrap();
    let (base, _, check_q) = setup(t.path());
    let idx = t.path().join("idx");
    // Not tuned yet: --recall is an error that says what to run.
    let o = strata()
        .arg("search")
        .arg(&idx)
        .arg("--query")
        .arg(t.path().join("tune.fvecs"))
        .args(["--recall", "0.9"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("strata tune"), "{}", stderr(&o));

    let o = strata()
        .arg("tune")
        .arg(&idx)
        .arg("--queries")
        .arg(t.path().join("tune.fvecs"))
        .args([
            "--target",
            "0.8,0.9,0.95",
            "--ef",
            "8,10,12,16,20,24,32,48,64,96,128",
            "--json",
            "--budget",
            "120",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "tune: {}", stderr(&o));
    let report = json(&o);
    assert_eq!(report["stored"], true);
    let points = report["points"].as_array().unwrap().clone();
    assert_eq!(points.len(), 3, "{report}");
    let frontier = report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["frontier"] == true)
        .count();
    assert!(frontier >= 2, "{report}");

    let index = Index::open(&idx).unwrap();
    let stored = index.tuning().unwrap().expect("stored");
    assert_eq!(stored.points.len(), 3);
    assert_eq!((stored.k, stored.queries, stored.held_out), (K, Q, Q / 2));
    for p in &stored.points {
        let explicit = SearchParams {
            ef: p.ef,
            oversample: p.oversample,
            rescore: p.rescore,
            ..Default::default()
        };
        let on_new = measured_recall(&index, &base, &check_q, &explicit);
        eprintln!(
            "target {}: ef {} oversample {:?} rescore {}: tune {:.4} / held-out {:.4}, unseen queries {:.4}",
            p.target, p.ef, p.oversample, p.rescore, p.recall, p.held_out_recall, on_new
        );
        assert!(p.held_out_recall as f64 >= p.target as f64 && p.recall as f64 >= p.target as f64);
        assert!(
            (p.held_out_recall as f64 - on_new).abs() <= 0.01,
            "target {}: held-out estimate {} against {on_new} on unseen queries",
            p.target,
            p.held_out_recall
        );
        // for_recall searches with exactly this point.
        let tuned = measured_recall(
            &index,
            &base,
            &rows(&check_q, 0, 50),
            &SearchParams::for_recall(p.target),
        );
        assert_eq!(
            tuned,
            measured_recall(&index, &base, &rows(&check_q, 0, 50), &explicit)
        );
    }

    // search --recall uses the point; inspect shows the points.
    let o = strata()
        .arg("search")
        .arg(&idx)
        .arg("--query")
        .arg(t.path().join("tune.fvecs"))
        .args(["--recall", "0.9", "--k", "10"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), Q);
    let o = strata()
        .arg("inspect")
        .arg(&idx)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let info = json(&o);
    assert_eq!(
        info["tuning"]["points"].as_array().unwrap().len(),
        3,
        "{info}"
    );
    assert_eq!(info["tuning"]["stale"], false);
    let o = strata().arg("inspect").arg(&idx).output().unwrap();
    assert!(
        stdout(&o).contains("operating points (recall@10)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_dry_run_stores_nothing_and_bad_arguments_are_refused() {
    let t = tempfile::tempdir().unwrap();
    setup(t.path());
    let idx = t.path().join("idx");
    let o = strata()
        .arg("tune")
        .arg(&idx)
        .args(["--sample", "200", "--target", "0.9", "--dry-run", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Pareto frontier"), "{}", stdout(&o));
    assert_eq!(Index::open(&idx).unwrap().tuning().unwrap(), None);
    for bad in [
        &["--target", "1.5"][..],
        &["--target", "0"],
        &["--k", "0"],
        &["--ef", "0,8"],
        &["--budget", "0"],
        &["--sample", "1"],
        &["--oversample", "0.5"],
    ] {
        let o = strata().arg("tune").arg(&idx).args(bad).output().unwrap();
        assert!(!o.status.success(), "{bad:?} accepted");
        assert!(stderr(&o).contains("error"), "{bad:?}: {}", stderr(&o));
    }
}
