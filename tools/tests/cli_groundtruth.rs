//! `strata groundtruth`: exact top k by brute force, as .ivecs, from a
//! base file or from an index's live vectors.

mod common;

use common::*;
use std::path::Path;
use strata::dataset::read_ivecs;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The exact top k of `query` among `vector(0..BASE)`, computed here in
/// f64 (nothing from the engine), ties by the smaller id.
fn brute_force(query: &[f32], k: usize, cosine: bool, skip: &[u64]) -> Vec<u32> {
    let mut d: Vec<(f64, u32)> = (0..BASE)
        .filter(|id| !skip.contains(id))
        .map(|id| {
            let v = vector(id);
            let dist = if cosine {
                let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
                for (x, y) in query.iter().zip(&v) {
                    dot += f64::from(*x) * f64::from(*y);
                    na += f64::from(*x).powi(2);
                    nb += f64::from(*y).powi(2);
                }
                1.0 - dot / (na.sqrt() * nb.sqrt())
            } else {
                query
                    .iter()
                    .zip(&v)
                    .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                    .sum()
            };
            (dist, id as u32)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|(_, id)| id).collect()
}

const QUERIES: [u64; 6] = [1000, 1001, 1002, 1003, 1004, 1005];

fn expected(k: usize, cosine: bool, skip: &[u64]) -> Vec<Vec<u32>> {
    QUERIES
        .iter()
        .map(|&s| brute_force(&vector(s), k, cosine, skip))
        .collect()
}

#[test]
fn groundtruth_of_a_base_file_equals_brute_force() {
    let t = tempfile::tempdir().unwrap();
    let (base, q) = (t.path().join("base.fvecs"), t.path().join("q.fvecs"));
    write_vectors(&base, &(0..BASE).collect::<Vec<_>>());
    write_vectors(&q, &QUERIES);
    for (metric, cosine) in [("l2", false), ("cosine", true)] {
        let gt = t.path().join(format!("gt-{metric}.ivecs"));
        let o = run(&[
            "groundtruth",
            "--base",
            p(&base),
            "--query",
            p(&q),
            "--k",
            "7",
            "--metric",
            metric,
            "--threads",
            "2",
            "--output",
            p(&gt),
        ]);
        assert!(o.status.success(), "{metric}: {}", stderr(&o));
        assert_eq!(
            read_ivecs(&gt).unwrap(),
            expected(7, cosine, &[]),
            "{metric}"
        );
    }
    // More neighbours than vectors: every row holds them all, with a warning.
    let all = t.path().join("gt-all.ivecs");
    let o = run(&[
        "groundtruth",
        "--base",
        p(&base),
        "--query",
        p(&q),
        "--k",
        "100000000000",
        "--metric",
        "l2",
        "--output",
        p(&all),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(
        read_ivecs(&all).unwrap(),
        expected(BASE as usize, false, &[])
    );
    // cosine is the default, as for build.
    let o = run(&[
        "groundtruth",
        "--base",
        p(&base),
        "--query",
        p(&q),
        "--k",
        "7",
        "--output",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        o.stdout,
        std::fs::read(t.path().join("gt-cosine.ivecs")).unwrap(),
        "--output - writes the same bytes to stdout"
    );
}

#[test]
fn groundtruth_of_an_index_is_over_its_live_vectors() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let q = t.path().join("q.fvecs");
    write_vectors(&q, &QUERIES);
    let gt = t.path().join("gt.ivecs");
    let args = [
        "groundtruth",
        "--index",
        p(&idx),
        "--query",
        p(&q),
        "--k",
        "5",
        "--output",
        p(&gt),
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_ivecs(&gt).unwrap(), expected(5, false, &[]));
    // Deleted ids (in the log, not compacted) are not ground truth.
    let nearest: Vec<String> = expected(5, false, &[])
        .iter()
        .map(|r| r[0].to_string())
        .collect();
    let o = run(&["delete", p(&idx), "--ids", &nearest.join(",")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let gone: Vec<u64> = nearest.iter().map(|s| s.parse().unwrap()).collect();
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_ivecs(&gt).unwrap(), expected(5, false, &gone));
}

#[test]
fn groundtruth_refuses_bad_input_with_a_message() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let q = t.path().join("q.fvecs");
    write_vectors(&q, &QUERIES);
    let gt = t.path().join("gt.ivecs");
    let fails = |args: &[&str], needle: &str| {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    };
    // Neither source.
    fails(
        &["groundtruth", "--query", p(&q), "--output", p(&gt)],
        "--base",
    );
    // The index is l2: another metric is refused.
    fails(
        &[
            "groundtruth",
            "--index",
            p(&idx),
            "--query",
            p(&q),
            "--metric",
            "ip",
            "--output",
            p(&gt),
        ],
        "built with l2",
    );
    // Queries of another dimension.
    let q3 = t.path().join("q3.fvecs");
    strata::dataset::write_fvecs(
        &q3,
        &strata::dataset::Vectors {
            dim: 3,
            data: vec![0.5; 6],
        },
    )
    .unwrap();
    fails(
        &[
            "groundtruth",
            "--index",
            p(&idx),
            "--query",
            p(&q3),
            "--output",
            p(&gt),
        ],
        "dimension mismatch",
    );
    fails(
        &[
            "groundtruth",
            "--index",
            p(&idx),
            "--query",
            p(&q),
            "--k",
            "0",
            "--output",
            p(&gt),
        ],
        "--k must be at least 1",
    );
    // An index whose every vector is deleted has no ground truth.
    let o = run(&["delete", p(&idx), "--ids", &format!("0-{}", BASE - 1)]);
    assert!(o.status.success(), "{}", stderr(&o));
    fails(
        &[
            "groundtruth",
            "--index",
            p(&idx),
            "--query",
            p(&q),
            "--output",
            p(&gt),
        ],
        "no live vectors",
    );
    assert!(!gt.exists(), "nothing is written on a refusal");
}
