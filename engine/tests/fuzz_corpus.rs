//! The fuzz targets' logic (`fuzz/src/targets.rs`) run over every file of
//! the checked-in corpus (`fuzz/corpus/<target>/`), so a regression shows
//! up in `cargo test` without cargo-fuzz or a nightly toolchain. Also checks
//! that the harness reaches deep: seeds open, resealing gets mutated files
//! past the checksums, and the structured input format round-trips.
//!
//! Regenerate the seed corpus (after a format change) with
//! `STRATA_FUZZ_REGEN=1 cargo test -p strata --test fuzz_corpus -- --ignored regenerate_seed_corpus`.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use strata::{Error, Generation};
use targets::Reached;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of `fuzz/corpus/<target>/`, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("directory entry").path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `f` over the corpus of `target`; a panic names the file.
fn replay(target: &str, f: fn(&[u8]) -> Reached) -> Vec<(String, Reached)> {
    corpus(target)
        .into_iter()
        .map(|(name, bytes)| {
            // Shown with --nocapture: names the input if one aborts the process.
            eprintln!("replaying fuzz/corpus/{target}/{name}");
            let r = std::panic::catch_unwind(|| f(&bytes)).unwrap_or_else(|e| {
                std::panic::resume_unwind(Box::new(format!(
                    "fuzz/corpus/{target}/{name}: {}",
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )))
            });
            (name, r)
        })
        .collect()
}

fn reached(results: &[(String, Reached)], name: &str) -> Reached {
    results
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("seed {name} is missing"))
        .1
}

#[test]
fn graph_file_corpus() {
    let results = replay("graph_file", targets::graph_file);
    for seed in targets::SEED_FIXTURES {
        let r = reached(&results, &format!("{seed}.graph"));
        assert!(r.opened >= 1 && r.searches >= 6, "{seed}: {r:?}");
    }
    assert!(reached(&results, "int8-l2-v1.graph").opened >= 1);
}

#[test]
fn vectors_file_corpus() {
    let results = replay("vectors_file", targets::vectors_file);
    for seed in targets::SEED_FIXTURES {
        let r = reached(&results, &format!("{seed}.vectors"));
        assert!(r.opened >= 1 && r.searches >= 6, "{seed}: {r:?}");
    }
}

#[test]
fn log_file_corpus() {
    let results = replay("log_file", targets::log_file);
    // Version-3 logs (written before batches) still parse.
    assert_eq!(reached(&results, "insert-delete-upsert.log").opened, 1);
    assert_eq!(reached(&results, "torn-tail.log").opened, 1);
    assert_eq!(reached(&results, "v4-batch.log").opened, 1);
    assert_eq!(reached(&results, "v4-torn-batch.log").opened, 1);
    // The batch is there whole, or not at all when its commit is torn.
    let bytes = |name: &str| std::fs::read(corpus_dir("log_file").join(name)).unwrap();
    let (_, ops, report) = strata::log::parse_log(&bytes("v4-batch.log")).unwrap();
    assert_eq!((ops.len(), report.batches, report.torn_bytes), (9, 1, 0));
    let (_, torn, report) = strata::log::parse_log(&bytes("v4-torn-batch.log")).unwrap();
    assert_eq!(torn[..], ops[..6]);
    assert_eq!((report.batches, report.torn_records), (0, 4));
    // Version 6: the same with labelled records (two plain, one in the batch).
    assert_eq!(reached(&results, "v6-labels-batch.log").opened, 1);
    assert_eq!(reached(&results, "v6-torn-batch.log").opened, 1);
    let (_, ops, report) = strata::log::parse_log(&bytes("v6-labels-batch.log")).unwrap();
    assert_eq!((ops.len(), report.batches, report.torn_bytes), (11, 1, 0));
    let labelled: Vec<&[u32]> = ops
        .iter()
        .map(|o| o.labels())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(labelled, [&[1, 3][..], &[u32::MAX], &[7]]);
    let (_, torn, _) = strata::log::parse_log(&bytes("v6-torn-batch.log")).unwrap();
    assert_eq!(torn[..], ops[..8]);
}

#[test]
fn index_search_corpus() {
    let results = replay("index_search", targets::index_search);
    for f in targets::fixtures() {
        let r = reached(&results, &format!("{}-clean", f.name));
        assert_eq!(r.opened, 1, "{}: {r:?}", f.name);
        // Three queries, each searched, searched exactly and searched
        // with a filter on both planner paths.
        assert_eq!(r.searches, 12, "{}: {r:?}", f.name);
    }
    // Hostile link contents pass verification (they are checked during
    // traversal, not at open) and must still search.
    for name in [
        "level0-self-loop",
        "level0-link-out-of-range",
        "upper-link-to-n",
    ] {
        assert_eq!(reached(&results, name).opened, 1, "{name}");
    }
}

#[test]
fn input_readers_corpus() {
    let results = replay("input_readers", targets::input_readers);
    for name in [
        "fvecs-3x4",
        "bvecs-3x5",
        "ivecs-2x3",
        "npy-f4-v1",
        "npy-f8-v2",
        "npy-f4-v3",
    ] {
        assert_eq!(reached(&results, name).opened, 1, "{name}");
    }
}

#[test]
fn filter_expr_corpus() {
    let results = replay("filter_expr", targets::filter_expr);
    for name in [
        "eq",
        "in",
        "not",
        "in-and-not",
        "or-and-ne",
        "not-in-case",
        "nested",
        "whitespace",
    ] {
        assert_eq!(reached(&results, name).opened, 1, "{name} should parse");
    }
    for name in [
        "err-empty-list",
        "err-overflow",
        "err-unclosed",
        "err-too-deep",
    ] {
        assert_eq!(reached(&results, name).opened, 0, "{name} should not parse");
    }
}

#[test]
fn tuning_file_corpus() {
    let results = replay("tuning_file", targets::tuning_file);
    for (name, bytes) in targets::tuning_seeds() {
        // Each seed decodes, as given and resealed, and is the one built now.
        assert_eq!(reached(&results, name).opened, 2, "{name}");
        let on_disk = std::fs::read(corpus_dir("tuning_file").join(name)).unwrap();
        assert!(
            on_disk == bytes,
            "seed {name} differs: regenerate the corpus (see fuzz/README.md)"
        );
    }
}

/// The checked-in seed indexes still open (a format change that invalidates
/// them would silently make the fuzzers start from rejected files).
#[test]
fn seed_indexes_open_and_match_the_fixtures() {
    for seed in targets::SEED_FIXTURES {
        let g = std::fs::read(corpus_dir("graph_file").join(format!("{seed}.graph"))).unwrap();
        let v = std::fs::read(corpus_dir("vectors_file").join(format!("{seed}.vectors"))).unwrap();
        Generation::from_bytes(&g, &v).unwrap_or_else(|e| {
            panic!("seed {seed} no longer opens ({e}): regenerate the corpus (see fuzz/README.md)")
        });
        let f = targets::fixtures().iter().find(|f| f.name == seed).unwrap();
        assert!(
            f.graph == g && f.vectors == v,
            "seed {seed} differs from the fixture built now: regenerate the corpus (see fuzz/README.md)"
        );
    }
}

/// Resealing an untouched file changes nothing (the CRC layout the harness
/// assumes is the format's), and a resealed mutation gets past every
/// checksum to the validators.
#[test]
fn resealing_reaches_the_validators() {
    for f in targets::fixtures() {
        let mut g = f.graph.clone();
        assert!(targets::reseal_graph(&mut g));
        assert!(g == f.graph, "{}: graph reseal is not the identity", f.name);
        let mut v = f.vectors.clone();
        assert!(targets::reseal_vectors(&mut v));
        assert!(
            v == f.vectors,
            "{}: vectors reseal is not the identity",
            f.name
        );
        Generation::from_bytes(&g, &v).unwrap();
    }
    let f = &targets::fixtures()[3]; // int8-l2
    assert_eq!(f.name, "int8-l2");
    // A bad m0 in the header: a checksum error as is, a field error resealed.
    let mut g = f.graph.clone();
    g[44] ^= 1;
    assert!(matches!(
        Generation::from_bytes(&g, &f.vectors),
        Err(Error::ChecksumMismatch { .. })
    ));
    targets::reseal_graph(&mut g);
    let e = Generation::from_bytes(&g, &f.vectors)
        .err()
        .expect("bad m0");
    assert!(
        matches!(&e, Error::Corrupt { .. }) && e.to_string().contains("m0"),
        "{e}"
    );
    // A vector data edit resealed opens (vector values are not validated).
    let mut v = f.vectors.clone();
    v[4096] ^= 0x40;
    assert!(Generation::from_bytes(&f.graph, &v).is_err());
    targets::reseal_vectors(&mut v);
    Generation::from_bytes(&f.graph, &v).unwrap();
    // A log record edit resealed parses.
    let log = std::fs::read(corpus_dir("log_file").join("insert-delete-upsert.log")).unwrap();
    let mut l = log.clone();
    let frame = if log[8] >= 4 { 12 } else { 8 };
    let id_at = 64 + frame + 12; // first record: frame, seq, kind, then the id
    l[id_at] ^= 1;
    assert!(strata::log::parse_log(&l).is_err());
    targets::reseal_log(&mut l);
    let (_, ops, _) = strata::log::parse_log(&l).unwrap();
    let (_, orig, _) = strata::log::parse_log(&log).unwrap();
    assert_eq!(ops[0].id(), orig[0].id() ^ 1);
}

/// `SearchCase::encode` is the inverse of `decode` on the seeds, and any
/// byte string (including the empty one) decodes.
#[test]
fn search_case_encoding_round_trips() {
    for (name, case) in targets::search_seed_cases() {
        assert_eq!(targets::SearchCase::decode(&case.encode()), case, "{name}");
    }
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        targets::run_search_case(&targets::SearchCase::decode(&bytes));
    }
}

/// Searches of the untouched fixtures answer correctly, so the fuzz
/// harness exercises real traversals (not only error paths).
#[test]
fn fixtures_answer_exact_row_queries() {
    for f in targets::fixtures() {
        let index = Generation::from_bytes(&f.graph, &f.vectors).unwrap();
        assert_eq!(index.len(), targets::N, "{}", f.name);
        let hits = index.exact_search(f.data.row(9), 1).unwrap();
        if f.metric != strata::Metric::InnerProduct {
            assert_eq!(hits[0].id, targets::Fixture::id(9), "{}", f.name);
        }
        let hits = index
            .search(f.data.row(9), 5, &strata::SearchParams::with_ef(32))
            .unwrap();
        assert_eq!(hits.len(), 5, "{}", f.name);
        let info = index.info();
        assert!(info.max_level >= 1, "{}: a single-level fixture", f.name);
    }
}

/// Rewrites the seed corpus. Ignored, and a no-op without
/// `STRATA_FUZZ_REGEN=1`, so it never rewrites checked-in files by accident.
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    if std::env::var_os("STRATA_FUZZ_REGEN").is_none() {
        eprintln!("set STRATA_FUZZ_REGEN=1 to rewrite fuzz/corpus");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let scratch = tempfile::tempdir().unwrap();
    targets::write_seed_corpus(&root, scratch.path()).unwrap();
    eprintln!("wrote the seed corpus under {}", root.display());
}
