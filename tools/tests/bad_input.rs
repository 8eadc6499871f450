//! Issue 9 (defects 2, 5, 6) at the command line: each bad input to the
//! built `strata` binary fails fast with a clear message (or, where the
//! issue asks for it, succeeds with the right answer or a warning).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata::dataset::{clustered, write_fvecs, write_ivecs, Vectors};

const BIN: &str = env!("CARGO_BIN_EXE_strata");

/// Runs the binary with `args` (and `stdin` bytes), killing it after 60 s.
fn run_with(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&bytes);
        });
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("strata {args:?} ran for over 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_with(args, None)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Expects failure (exit 1) with every one of `needles` in stderr.
fn fails(o: &Output, needles: &[&str]) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in stderr: {err}");
    }
}

fn succeeds(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    (out, err)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A temp dir with `base.fvecs` (n rows of `dim`) and its index in `idx`.
struct Fixture {
    tmp: tempfile::TempDir,
    data: Vectors,
}

impl Fixture {
    fn new(n: usize, dim: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let data = clustered(n, dim, 4, 0.2, 11);
        write_fvecs(&tmp.path().join("base.fvecs"), &data).unwrap();
        let f = Fixture { tmp, data };
        succeeds(&run(&[
            "build",
            "--input",
            s(&f.path("base.fvecs")),
            "--out",
            s(&f.path("idx")),
            "--seed",
            "1",
            "--threads",
            "1",
            "--ef-construction",
            "32",
            "--quiet",
        ]));
        f
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn idx(&self) -> String {
        s(&self.path("idx")).to_string()
    }
    /// Writes `rows` queries of `dim` to `name`.
    fn queries(&self, name: &str, rows: usize, dim: usize) -> String {
        let q = clustered(rows, dim, 2, 0.2, 12);
        let p = self.path(name);
        write_fvecs(&p, &q).unwrap();
        s(&p).to_string()
    }
}

// Defect 2 ------------------------------------------------------------------

#[test]
fn queries_of_another_dimension_are_refused_by_search_and_eval() {
    let f = Fixture::new(200, 12);
    // Three 4-d queries are 12 floats: one 12-d query if cut by the index.
    let q = f.queries("q4.fvecs", 3, 4);
    for cmd in ["search", "eval"] {
        let o = run(&[cmd, &f.idx(), "--query", &q, "--k", "5"]);
        fails(&o, &["dimension", "4", "12"]);
    }
}

// Defect 5 ------------------------------------------------------------------

#[test]
fn thread_counts_far_above_the_cores_are_refused() {
    let f = Fixture::new(100, 8);
    let q = f.queries("q.fvecs", 5, 8);
    let base = s(&f.path("base.fvecs")).to_string();
    let out = s(&f.path("other")).to_string();
    let idx = f.idx();
    for args in [
        vec![
            "build",
            "--input",
            &base,
            "--out",
            &out,
            "--threads",
            "100000",
        ],
        vec!["eval", &idx, "--query", &q, "--threads", "100000"],
        vec!["compact", &idx, "--force", "--threads", "100000"],
        vec![
            "demo",
            "--n",
            "100",
            "--dim",
            "8",
            "--queries",
            "5",
            "--threads",
            "100000",
        ],
    ] {
        fails(&run(&args), &["threads", "100000", "limit"]);
    }
}

#[test]
fn a_fifo_in_place_of_an_index_file_is_refused_not_waited_on() {
    let f = Fixture::new(100, 8);
    let q = f.queries("q.fvecs", 5, 8);
    let v = f.path("idx").join("g00000001.vectors");
    std::fs::remove_file(&v).unwrap();
    assert!(Command::new("mkfifo").arg(&v).status().unwrap().success());
    fails(
        &run(&["search", &f.idx(), "--query", &q]),
        &["g00000001.vectors", "FIFO", "not a regular file"],
    );
    // A FIFO as the query file, too.
    let fifo = f.path("fifo.fvecs");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fails(
        &run(&["build", "--input", s(&fifo), "--out", s(&f.path("x"))]),
        &["fifo.fvecs", "not a regular file"],
    );
}

#[test]
fn a_bad_record_at_byte_8_of_a_2_gib_input_fails_fast_in_little_memory() {
    let f = Fixture::new(50, 8);
    let p = f.path("big.fvecs");
    let mut head = 1i32.to_le_bytes().to_vec();
    head.extend(1.0f32.to_le_bytes());
    head.extend(7i32.to_le_bytes());
    std::fs::write(&p, &head).unwrap();
    let file = std::fs::File::options().write(true).open(&p).unwrap();
    file.set_len(2 << 30).unwrap(); // sparse: 2 GiB long, 4 KiB on disk
                                    // Under a 512 MiB address-space limit: reading the file whole cannot.
    let cmd = format!(
        "ulimit -v 524288; exec {BIN} build --input {} --out {} --quiet",
        s(&p),
        s(&f.path("big-idx"))
    );
    let start = Instant::now();
    let o = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    fails(&o, &["record 1 at byte offset 8 has dimension 7"]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn deleting_a_huge_range_does_not_materialise_it() {
    let f = Fixture::new(100, 8);
    let cmd = format!(
        "ulimit -v 524288; exec {BIN} delete {} --ids 0-100000000",
        f.idx()
    );
    let o = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    fails(
        &o,
        &["100000001 ids", "100 live vectors", "nothing was committed"],
    );
    // A range that fits still deletes.
    let (out, _) = succeeds(&run(&["delete", &f.idx(), "--ids", "10-19"]));
    assert!(
        out.contains("deleted 10 ids as one atomic batch; 90 live"),
        "{out}"
    );
}

// Defect 6 ------------------------------------------------------------------

#[test]
fn ids_naming_a_missing_file_is_an_error_about_the_path() {
    let f = Fixture::new(50, 8);
    let o = run(&["delete", &f.idx(), "--ids", "nosuchfile.txt"]);
    fails(&o, &["nosuchfile.txt", "No such file"]);
    assert!(!text(&o).1.contains("invalid digit"));
    let q = f.queries("q.fvecs", 2, 8);
    let o = run(&[
        "insert",
        &f.idx(),
        "--input",
        &q,
        "--ids",
        "missing-ids.txt",
    ]);
    fails(&o, &["missing-ids.txt", "No such file"]);
}

fn recall_of(json: &str) -> f64 {
    let first = json.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    v["recall"].as_f64().unwrap()
}

#[test]
fn eval_with_k_above_n_divides_by_n() {
    let f = Fixture::new(6, 8);
    let q = f.queries("q.fvecs", 4, 8);
    let (out, _) = succeeds(&run(&[
        "eval",
        &f.idx(),
        "--query",
        &q,
        "--k",
        "10",
        "--ef",
        "64",
        "--json",
    ]));
    assert_eq!(recall_of(&out), 1.0, "{out}");
}

#[test]
fn zero_queries_are_an_error_not_zero_qps() {
    let f = Fixture::new(50, 8);
    let q = f.queries("q.fvecs", 5, 8);
    fails(
        &run(&["eval", &f.idx(), "--query", &q, "--limit", "0"]),
        &["--limit"],
    );
    fails(
        &run(&["demo", "--n", "50", "--dim", "8", "--queries", "0"]),
        &["--queries"],
    );
}

#[test]
fn eval_warns_about_ground_truth_ids_not_in_the_index() {
    let f = Fixture::new(50, 8);
    let q = f.queries("q.fvecs", 3, 8);
    let gt = f.path("gt.ivecs");
    write_ivecs(&gt, &[vec![1, 2, 900], vec![3, 4, 5], vec![6, 7, 901]]).unwrap();
    let (_, err) = succeeds(&run(&[
        "eval",
        &f.idx(),
        "--query",
        &q,
        "--groundtruth",
        s(&gt),
        "--k",
        "3",
        "--ef",
        "16",
    ]));
    assert!(err.contains("warning: 2 of 9 ground-truth ids"), "{err}");
}

#[test]
fn build_out_refuses_a_foreign_directory_and_a_locked_index_before_building() {
    let f = Fixture::new(50, 8);
    let base = s(&f.path("base.fvecs")).to_string();
    let foreign = f.path("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("holiday.jpg"), b"not an index").unwrap();
    fails(
        &run(&["build", "--input", &base, "--out", s(&foreign), "--quiet"]),
        &["not empty", "holiday.jpg"],
    );
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    // A locked index: refused before the input is even read (a missing
    // input would otherwise be the error).
    let writer = strata::Writer::open(f.path("idx"), strata::Durability::EveryOp).unwrap();
    fails(
        &run(&[
            "build",
            "--input",
            s(&f.path("missing.fvecs")),
            "--out",
            &f.idx(),
        ]),
        &["locked"],
    );
    drop(writer);
    // Rebuilding over an unlocked index still replaces it.
    succeeds(&run(&[
        "build",
        "--input",
        &base,
        "--out",
        &f.idx(),
        "--quiet",
    ]));
}

#[test]
fn compact_with_an_empty_log_has_nothing_to_do_unless_forced() {
    let f = Fixture::new(50, 8);
    let manifest = std::fs::read(f.path("idx").join("MANIFEST")).unwrap();
    let (out, _) = succeeds(&run(&["compact", &f.idx()]));
    assert!(out.contains("nothing to compact"), "{out}");
    // MANIFEST unchanged apart from the writer's rewrite at open (same generation).
    let after = std::fs::read(f.path("idx").join("MANIFEST")).unwrap();
    assert_eq!(manifest[16..40], after[16..40]);
    let (out, _) = succeeds(&run(&["compact", &f.idx(), "--force"]));
    assert!(out.contains("into generation 2"), "{out}");
}

#[test]
fn query_from_stdin_and_results_to_stdout() {
    let f = Fixture::new(80, 8);
    let mut bytes = Vec::new();
    for row in f.data.rows().take(3) {
        bytes.extend(8i32.to_le_bytes());
        for x in row {
            bytes.extend(x.to_le_bytes());
        }
    }
    let (out, _) = succeeds(&run_with(
        &[
            "search",
            &f.idx(),
            "--query",
            "-",
            "--output",
            "-",
            "--k",
            "1",
        ],
        Some(&bytes),
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.contains(&format!("\"ids\":[{i}]")), "{l}");
    }
    assert!(!Path::new("-").exists());
    // A bad record on stdin is reported against <stdin>.
    bytes.extend(3i32.to_le_bytes());
    fails(
        &run_with(&["search", &f.idx(), "--query", "-"], Some(&bytes)),
        &["<stdin>", "record 3"],
    );
}
