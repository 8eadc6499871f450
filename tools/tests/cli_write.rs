//! `strata insert` and `strata delete`: each command is one atomic batch,
//! validated before anything is written; its report says exactly what was
//! committed; `--skip-existing` / `--ignore-missing` make retries no-ops.

mod common;

use common::*;
use std::path::Path;
use strata::Index;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn an_insert_whose_sixth_id_exists_commits_nothing() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let (vecs, ids) = (t.path().join("v.fvecs"), t.path().join("ids.txt"));
    write_vectors(&vecs, &[500, 501, 502, 503, 504, 5, 506]);
    write_ids(&ids, &[500, 501, 502, 503, 504, 5, 506]);
    let o = run(&["insert", p(&idx), "--input", p(&vecs), "--ids", p(&ids)]);
    assert!(!o.status.success());
    // Nothing of the batch is there (before atomic batches, 500..=504 were).
    let live = Index::open(&idx).unwrap();
    let present: Vec<u64> = (500..507).filter(|&id| live.contains(id)).collect();
    assert_eq!(
        present,
        Vec::<u64>::new(),
        "committed before the failing id"
    );
    assert_eq!(live.len(), BASE as usize);
    let err = stderr(&o);
    assert!(err.contains("operation 5 (id 5)"), "{err}");
    assert!(err.contains("nothing of the batch was committed"), "{err}");
    assert!(err.contains("--skip-existing"), "{err}");
    // The same with --json: a report that says nothing was committed.
    let o = run(&[
        "insert",
        p(&idx),
        "--input",
        p(&vecs),
        "--ids",
        p(&ids),
        "--json",
    ]);
    assert!(!o.status.success());
    assert_eq!(json(&o)["committed"], false);
}

#[test]
fn a_delete_with_an_unknown_id_in_the_middle_deletes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let o = run(&["delete", p(&idx), "--ids", "1,2,999999,3"]);
    assert!(!o.status.success());
    // Nothing was deleted (before atomic batches, 1 and 2 were).
    let live = Index::open(&idx).unwrap();
    let gone: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|&id| !live.contains(id))
        .collect();
    assert_eq!(gone, Vec::<u64>::new(), "deleted before the unknown id");
    let err = stderr(&o);
    assert!(err.contains("unknown id 999999"), "{err}");
    assert!(err.contains("nothing of the batch was committed"), "{err}");
    assert!(err.contains("--ignore-missing"), "{err}");
    let o = run(&[
        "delete",
        p(&idx),
        "--ids",
        "1,2,999999,3",
        "--ignore-missing",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(
        (r["committed"].as_bool(), r["deleted"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(r["skipped_ids"], serde_json::json!([999999]));
    // The retry of the same command: a no-op.
    let o = run(&[
        "delete",
        p(&idx),
        "--ids",
        "1,2,999999,3",
        "--ignore-missing",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("deleted 0 ids"), "{}", stdout(&o));
    assert!(stdout(&o).contains("skipped 4 ids that are not in the index: 1..=2, 999999, 3"));
    assert_eq!(Index::open(&idx).unwrap().len(), BASE as usize - 3);
}

#[test]
fn a_retried_insert_with_skip_existing_commits_exactly_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let all: Vec<u64> = (500..510).collect();
    let (vecs, ids) = (t.path().join("v.fvecs"), t.path().join("ids.txt"));
    // A first run that committed 4 of the 10 (as a crash of a version
    // without atomic batches could leave).
    write_vectors(&vecs, &all[..4]);
    write_ids(&ids, &all[..4]);
    assert!(
        run(&["insert", p(&idx), "--input", p(&vecs), "--ids", p(&ids)])
            .status
            .success()
    );
    write_vectors(&vecs, &all);
    write_ids(&ids, &all);
    let o = run(&["insert", p(&idx), "--input", p(&vecs), "--ids", p(&ids)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--skip-existing"));
    let args = [
        "insert",
        p(&idx),
        "--input",
        p(&vecs),
        "--ids",
        p(&ids),
        "--skip-existing",
    ];
    let o = run(&[&args[..], &["--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["inserted"], 6);
    assert_eq!(r["skipped_existing"], 4);
    assert_eq!(
        (r["first_id"].as_u64(), r["last_id"].as_u64()),
        (Some(504), Some(509))
    );
    // Again: nothing to do, nothing written.
    let o = run(&args);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("inserted 0 vectors (ids none)"), "{out}");
    assert!(
        out.contains("skipped 10 ids that exist with the same vector: 500..=509"),
        "{out}"
    );
    let live = Index::open(&idx).unwrap();
    assert_eq!(live.len(), BASE as usize + 10);
    // A present id with another vector is an error even with --skip-existing.
    write_vectors(&vecs, &[500, 501, 9999]);
    write_ids(&ids, &[500, 501, 502]);
    let o = run(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("id 502 already exists with a different vector"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_insert_without_ids_prints_the_assigned_range() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let vecs = t.path().join("v.fvecs");
    write_vectors(&vecs, &[900, 901, 902]);
    let o = run(&["insert", p(&idx), "--input", p(&vecs)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("inserted 3 vectors (ids 200..=202) as one atomic batch"),
        "{out}"
    );
    assert!(
        out.contains("a retry without --ids would insert the vectors again"),
        "{out}"
    );
    // --skip-existing needs --ids.
    let o = run(&["insert", p(&idx), "--input", p(&vecs), "--skip-existing"]);
    assert!(!o.status.success());
}
