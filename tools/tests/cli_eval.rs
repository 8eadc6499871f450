//! Issue 14 at the command line: `eval`'s work counters, thread list,
//! `--format csv|json` and `--plot`.

use std::path::Path;
use std::process::{Command, Output};
use strata::dataset::{clustered, write_fvecs};

const BIN: &str = env!("CARGO_BIN_EXE_strata");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn succeeds(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    out
}

fn fails(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A temp dir with an index `idx` of 400 vectors (dim 16) built with
/// `quantization`, and 20 queries `q.fvecs`.
fn fixture(quantization: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    write_fvecs(
        &tmp.path().join("base.fvecs"),
        &clustered(400, 16, 4, 0.2, 5),
    )
    .unwrap();
    write_fvecs(&tmp.path().join("q.fvecs"), &clustered(20, 16, 4, 0.2, 6)).unwrap();
    succeeds(&run(&[
        "build",
        "--input",
        &p("base.fvecs"),
        "--out",
        &p("idx"),
        "--seed",
        "1",
        "--threads",
        "1",
        "--ef-construction",
        "32",
        "--quantization",
        quantization,
        "--quiet",
    ]));
    tmp
}

fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn csv_has_a_header_and_one_row_per_setting() {
    let t = fixture("int8");
    let (idx, q) = (arg(t.path(), "idx"), arg(t.path(), "q.fvecs"));
    let out = succeeds(&run(&[
        "eval",
        &idx,
        "--query",
        &q,
        "--ef",
        "16,32,64",
        "--oversample",
        "1,2",
        "--threads",
        "1,2",
        "--format",
        "csv",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 2, "{out}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in [
        "quantization",
        "ef",
        "oversample",
        "recall",
        "qps_1t",
        "qps_batch_1t",
        "qps_batch_2t",
        "p50_us",
        "p99_us",
        "p999_us",
        "visited",
        "code_dists",
        "full_dists",
        "rescored",
    ] {
        assert!(header.contains(&col), "no column {col} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        assert_eq!(cells[col("quantization")], "int8");
        let recall: f64 = cells[col("recall")].parse().unwrap();
        assert!((0.0..=1.0).contains(&recall), "{line}");
        let num = |name: &str| cells[col(name)].parse::<f64>().unwrap();
        assert!(
            num("qps_batch_2t") > 0.0 && num("p999_us") >= num("p50_us"),
            "{line}"
        );
        // Oversampling k = 10 by 1 or 2: 10 or 20 rows rescored per query.
        let rescored = num("rescored");
        assert!(rescored == 10.0 || rescored == 20.0, "{line}");
        assert_eq!(num("full_dists"), rescored, "{line}");
        assert!(num("code_dists") > 0.0 && num("visited") > 0.0, "{line}");
    }
    // --json and --format csv contradict each other.
    fails(
        &run(&["eval", &idx, "--query", &q, "--json", "--format", "csv"]),
        "--json",
    );
}

#[test]
fn json_keeps_old_fields_and_adds_counters_and_thread_list() {
    let t = fixture("none");
    let (idx, q) = (arg(t.path(), "idx"), arg(t.path(), "q.fvecs"));
    for flags in [&["--json"][..], &["--format", "json"][..]] {
        let mut args = vec![
            "eval",
            &idx,
            "--query",
            &q,
            "--ef",
            "32",
            "--threads",
            "2,1",
        ];
        args.extend_from_slice(flags);
        let out = succeeds(&run(&args));
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        for f in [
            "recall",
            "qps_1t",
            "qps_batch_1t",
            "qps_mt",
            "threads_mt",
            "p50_us",
            "p99_us",
            "p999_us",
            "hops_per_query",
            "distances_per_query",
        ] {
            assert!(v[f].is_number(), "no {f} in {v}");
        }
        // The last thread count given is the "mt" one.
        assert_eq!(v["threads_mt"], 1, "{v}");
        let threads: Vec<u64> = v["qps_threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["threads"].as_u64().unwrap())
            .collect();
        assert_eq!(threads, [2, 1]);
        // A float32 index: no codes, nothing rescored, every distance full.
        assert_eq!(v["code_distances_per_query"], 0.0, "{v}");
        assert_eq!(v["rescored_per_query"], 0.0, "{v}");
        assert_eq!(
            v["full_distances_per_query"], v["distances_per_query"],
            "{v}"
        );
        assert!(v["visited_per_query"].as_f64().unwrap() > 0.0, "{v}");
    }
    // One number still works, as before.
    succeeds(&run(&["eval", &idx, "--query", &q, "--threads", "1"]));
}

#[test]
fn plot_writes_an_svg_with_one_curve_per_oversample() {
    let t = fixture("int8");
    let (idx, q, svg) = (
        arg(t.path(), "idx"),
        arg(t.path(), "q.fvecs"),
        arg(t.path(), "p.svg"),
    );
    let table = succeeds(&run(&[
        "eval",
        &idx,
        "--query",
        &q,
        "--ef",
        "16,32",
        "--oversample",
        "1,3",
        "--threads",
        "1",
        "--plot",
        &svg,
        "--target",
        "0.9,0.99",
    ]));
    assert!(
        table.contains("p999_us") && table.contains("full_dists"),
        "{table}"
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    for s in [
        "<svg",
        "Recall@10",
        "Queries per second (1 thread, log)",
        "int8, oversample 1",
        "int8, oversample 3",
        "Pareto frontier",
        "idx: 400 vectors",
        "0.99",
    ] {
        assert!(text.contains(s), "no {s:?} in the plot");
    }
    fails(
        &run(&[
            "eval", &idx, "--query", &q, "--plot", &svg, "--target", "1.5",
        ]),
        "--target 1.5",
    );
    fails(
        &run(&[
            "eval",
            &idx,
            "--query",
            &q,
            "--plot",
            &arg(t.path(), "p.png"),
        ]),
        ".svg",
    );
    fails(
        &run(&[
            "eval",
            &idx,
            "--query",
            &q,
            "--plot",
            &arg(t.path(), "missing/dir/p.svg"),
        ]),
        "cannot write plot",
    );
}
