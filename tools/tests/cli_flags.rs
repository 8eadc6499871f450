//! Flags of issue 14's finished CLI: `search --threads`, `--json` reports of
//! `build` and `compact`, and `-` (stdin) for id, label and filter files.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use strata::Index;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the binary with `input` on its stdin.
fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = strata()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let bytes = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    o
}

#[test]
fn search_threads_do_not_change_the_results() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let q = t.path().join("q.fvecs");
    write_vectors(&q, &(2000..2064).collect::<Vec<_>>());
    let search = |threads: &str| {
        let o = run(&[
            "search",
            p(&idx),
            "--query",
            p(&q),
            "--k",
            "5",
            "--ef",
            "16",
            "--threads",
            threads,
        ]);
        assert!(o.status.success(), "--threads {threads}: {}", stderr(&o));
        stdout(&o)
    };
    let one = search("1");
    assert_eq!(one.lines().count(), 64);
    let first: serde_json::Value = serde_json::from_str(one.lines().next().unwrap()).unwrap();
    assert_eq!(first["ids"].as_array().unwrap().len(), 5);
    assert_eq!(search("2"), one, "--threads 2 answered differently");
    assert_eq!(search("0"), one, "--threads 0 answered differently");
    // Range search too.
    let ranged = |threads: &str| {
        let o = run(&[
            "search",
            p(&idx),
            "--query",
            p(&q),
            "--radius",
            "0.3",
            "--threads",
            threads,
        ]);
        assert!(
            o.status.success(),
            "--radius --threads {threads}: {}",
            stderr(&o)
        );
        stdout(&o)
    };
    let one = ranged("1");
    assert_eq!(one.lines().count(), 64);
    assert!(one.contains("\"truncated\""), "{one}");
    assert!(
        one.lines().any(|l| !l.contains("\"ids\":[]")),
        "no query has a hit within the radius: the comparison would be vacuous"
    );
    assert_eq!(
        ranged("2"),
        one,
        "--radius --threads 2 answered differently"
    );
    let o = run(&["search", p(&idx), "--query", p(&q), "--threads", "100000"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("threads"), "{}", stderr(&o));
}

#[test]
fn build_json_is_one_object_with_the_report() {
    let t = tempfile::tempdir().unwrap();
    let (input, idx) = (t.path().join("base.fvecs"), t.path().join("idx"));
    write_vectors(&input, &(0..BASE).collect::<Vec<_>>());
    let o = run(&[
        "build",
        "--input",
        p(&input),
        "--out",
        p(&idx),
        "--metric",
        "l2",
        "--quantization",
        "int8",
        "--m",
        "8",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    let r = json(&o);
    assert_eq!(r["vectors"], BASE);
    assert_eq!(r["dim"], DIM);
    assert_eq!(r["metric"], "l2");
    assert_eq!(r["quantization"], "int8");
    assert_eq!(r["m"], 8);
    assert_eq!(r["out"], p(&idx));
    assert_eq!(
        r["generation"],
        Index::open(&idx).unwrap().stats().generation
    );
    assert!(r["build_seconds"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(r["graph_file_bytes"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["build_id"].as_str().unwrap().len(), 32, "{r}");
}

#[test]
fn compact_json_reports_what_was_folded() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let before = Index::open(&idx).unwrap().stats().generation;
    let o = run(&["compact", p(&idx), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["compacted"], false, "{r}");
    assert_eq!(r["generation"], before);
    let v = t.path().join("v.fvecs");
    write_vectors(&v, &[700, 701, 702]);
    let o = run(&["insert", p(&idx), "--input", p(&v), "--ids", "700-702"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["delete", p(&idx), "--ids", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["compact", p(&idx), "--json", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    let r = json(&o);
    assert_eq!(r["compacted"], true, "{r}");
    assert_eq!(r["generation_before"], before);
    assert_eq!(r["generation"], before + 1);
    assert_eq!(r["vectors"], BASE + 3 - 1);
    assert_eq!(r["inserted"], 3);
    assert_eq!(r["deleted"], 1);
    assert!(r["folded_records"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["dir"], p(&idx));
    assert!(r["seconds"].as_f64().is_some(), "{r}");
    let live = Index::open(&idx).unwrap();
    assert_eq!(live.stats().generation, before + 1);
    assert_eq!(live.stats().log_records, 0);
    // An error is a JSON object too.
    let o = run(&["compact", p(&t.path().join("nope")), "--json"]);
    assert!(!o.status.success());
    let r = json(&o);
    assert_eq!(r["compacted"], false);
    assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
}

#[test]
fn ids_labels_and_filter_ids_read_stdin_for_a_dash() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let v = t.path().join("v.fvecs");
    write_vectors(&v, &[800, 801, 802]);
    let o = run_stdin(
        &["insert", p(&idx), "--input", p(&v), "--ids", "-", "--json"],
        b"800\n801 802\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["inserted"], 3);
    let live = Index::open(&idx).unwrap();
    assert!((800..803).all(|id| live.contains(id)));
    // Labels from stdin.
    let w = t.path().join("w.fvecs");
    write_vectors(&w, &[900, 901]);
    let o = run_stdin(
        &[
            "insert",
            p(&idx),
            "--input",
            p(&w),
            "--ids",
            "900,901",
            "--labels",
            "-",
        ],
        b"7\n7 8\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let live = Index::open(&idx).unwrap();
    assert_eq!(live.labels(901).unwrap(), vec![7, 8]);
    // Two arguments cannot both read stdin.
    let o = run_stdin(&["insert", p(&idx), "--input", "-", "--ids", "-"], b"");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only one of them"), "{}", stderr(&o));
    // --filter-ids - : only those ids come back.
    let q = t.path().join("q.fvecs");
    write_vectors(&q, &[800]);
    let o = run_stdin(
        &[
            "search",
            p(&idx),
            "--query",
            p(&q),
            "--k",
            "3",
            "--filter-ids",
            "-",
        ],
        b"5, 6\n7\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    let mut ids: Vec<u64> = r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![5, 6, 7]);
    let o = run_stdin(
        &["search", p(&idx), "--query", "-", "--filter-ids", "-"],
        b"",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--query and --filter-ids"),
        "{}",
        stderr(&o)
    );
    // delete --ids - .
    let o = run_stdin(&["delete", p(&idx), "--ids", "-"], b"800-802");
    assert!(o.status.success(), "{}", stderr(&o));
    let live = Index::open(&idx).unwrap();
    assert!((800..803).all(|id| !live.contains(id)));
}
