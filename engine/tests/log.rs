//! The append log: operations are visible to searches at once and survive
//! reopening; a torn tail (a crash mid-append) is cut at every possible
//! byte; a corrupt record in the middle is an error naming its offset; one
//! writer per directory; compaction keeps every live vector and never
//! returns a deleted one; searches running during writes and compactions
//! never fail and never return an id after its delete was acknowledged.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use strata::dataset::clustered;
use strata::{
    BatchOptions, BuildParams, CompactOptions, Durability, Error, FileKind, Index, IndexBuilder,
    Metric, Quantization, SearchParams, Writer,
};

const DIM: usize = 16;

mod common;

use common::exact_topk_l2 as exact_topk;

fn recall_at(hits: &[strata::Neighbor], truth: &[u64], k: usize) -> f64 {
    let want: HashSet<u64> = truth.iter().take(k).copied().collect();
    hits.iter().take(k).filter(|h| want.contains(&h.id)).count() as f64 / k as f64
}

fn build(dir: &Path, n: usize, quantization: Quantization) -> strata::dataset::Vectors {
    let data = clustered(n, DIM, 8, 0.2, 3);
    let params = BuildParams {
        metric: Metric::L2,
        quantization,
        m: 8,
        ef_construction: 48,
        seed: Some(3),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    b.add_rows(&data.data).unwrap();
    b.build().unwrap().write(dir).unwrap();
    data
}

fn log_path(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a log file")
}

#[test]
fn operations_are_visible_at_once_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let data = build(dir.path(), 300, Quantization::Int8);
    let extra = clustered(50, DIM, 4, 0.2, 99);
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        let live = w.live();
        for (i, v) in extra.rows().enumerate() {
            w.insert(1000 + i as u64, v).unwrap();
            // Visible at once: the new vector is its own nearest neighbour.
            assert_eq!(
                live.search(v, 1, &SearchParams::with_ef(32)).unwrap()[0].id,
                1000 + i as u64
            );
        }
        w.delete(5).unwrap();
        w.delete(1003).unwrap();
        w.upsert(7, extra.row(10)).unwrap();
        assert!(!live.contains(5) && !live.contains(1003) && live.contains(7));
        assert_eq!(live.len(), 300 + 50 - 2);
        let hits = live
            .search(data.row(5), 10, &SearchParams::with_ef(64))
            .unwrap();
        assert!(hits.iter().all(|h| h.id != 5 && h.id != 1003));
        // The upserted id answers with its new vector.
        let hit = live.exact_search(extra.row(10), 2).unwrap();
        assert!(hit.iter().any(|h| h.id == 7 && h.distance == 0.0));
        assert!(matches!(w.insert(7, extra.row(0)), Err(Error::IdExists(7))));
        assert!(matches!(w.delete(5), Err(Error::UnknownId(5))));
        assert!(matches!(
            w.insert(2000, &[1.0; 3]),
            Err(Error::DimensionMismatch { .. })
        ));
    }
    let live = Index::open(dir.path()).unwrap();
    assert_eq!(live.len(), 348);
    assert!(!live.contains(5) && !live.contains(1003) && live.contains(7) && live.contains(1049));
    let s = live.stats();
    // 50 inserted, one of them deleted again, plus the upsert of base id 7;
    // base ids 5 and 7 are deleted (7 superseded by its logged vector).
    assert_eq!(
        (s.log_records, s.inserted, s.deleted, s.torn_bytes),
        (53, 50, 2, 0)
    );
}

#[test]
fn one_writer_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::None);
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    assert!(matches!(
        Writer::open(dir.path(), Durability::None),
        Err(Error::WriterLocked(_))
    ));
    drop(w);
    Writer::open(dir.path(), Durability::None).unwrap();
}

/// Truncating the log at every byte offset inside its last records leaves
/// an index that opens with exactly the whole records before the cut, and
/// a writer that truncates the torn part and keeps appending.
#[test]
fn torn_tail_is_cut_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::Int8);
    let extra = clustered(6, DIM, 2, 0.2, 5);
    let mut ends = Vec::new();
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        // The MANIFEST as a writer killed before its checkpoint leaves it:
        // the log bounded by its header only, so any cut is a crash's.
        let manifest = fs::read(dir.path().join("MANIFEST")).unwrap();
        for (i, v) in extra.rows().enumerate() {
            w.insert(500 + i as u64, v).unwrap();
            ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
        }
        w.delete(500).unwrap();
        ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
        drop(w);
        fs::write(dir.path().join("MANIFEST"), manifest).unwrap();
    }
    let log = log_path(dir.path());
    let full = fs::read(&log).unwrap();
    let first_checked = ends[ends.len() - 4] as usize; // the last three records
    for cut in first_checked..=full.len() {
        let copy = tempfile::tempdir().unwrap();
        for e in fs::read_dir(dir.path()).unwrap().flatten() {
            if e.file_name() != "LOCK" {
                fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
            }
        }
        let copied_log = copy.path().join(log.file_name().unwrap());
        fs::write(&copied_log, &full[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e as usize <= cut).count() as u64;
        let live = Index::open(copy.path()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let s = live.stats();
        assert_eq!(s.log_records, whole, "cut {cut}");
        let valid_end = if whole == 0 {
            64
        } else {
            ends[whole as usize - 1]
        };
        assert_eq!(s.torn_bytes, cut as u64 - valid_end, "cut {cut}");
        // A writer cuts the torn bytes off and appends after the last whole record.
        let w = Writer::open(copy.path(), Durability::EveryOp).unwrap();
        assert_eq!(
            fs::metadata(&copied_log).unwrap().len(),
            valid_end,
            "cut {cut}"
        );
        w.insert(9999, extra.row(0)).unwrap();
        drop(w);
        let again = Index::open(copy.path()).unwrap();
        assert_eq!(again.stats().log_records, whole + 1);
        assert!(again.contains(9999));
    }
}

#[test]
fn corrupt_record_in_the_middle_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::None);
    let extra = clustered(4, DIM, 2, 0.2, 5);
    let mut ends = vec![64u64];
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        for (i, v) in extra.rows().enumerate() {
            w.insert(500 + i as u64, v).unwrap();
            ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
        }
    }
    let log = log_path(dir.path());
    let mut bytes = fs::read(&log).unwrap();
    let second = ends[1] as usize;
    bytes[second + 30] ^= 0x40; // inside the vector of the second record
    fs::write(&log, &bytes).unwrap();
    for result in [
        Index::open(dir.path()).err(),
        Writer::open(dir.path(), Durability::EveryOp).err(),
    ] {
        match result {
            Some(Error::Corrupt {
                file: FileKind::Log,
                what,
                ..
            }) => {
                assert!(what.contains(&format!("offset {second}")), "{what}");
                assert!(what.contains("after 1 valid records"), "{what}");
            }
            other => panic!("expected a corrupt-log error, got {other:?}"),
        }
    }
    // Nothing was truncated or rewritten: the earlier record is still there.
    assert_eq!(fs::read(&log).unwrap(), bytes);
}

/// Half built, half inserted through the log, 10% deleted: recall against
/// exact ground truth before and after compaction, and a fresh build.
#[test]
fn recall_before_and_after_compaction() {
    let all = clustered(3000, DIM, 30, 0.6, 8);
    // Queries: data rows nudged off their points.
    let q: Vec<Vec<f32>> = (0..100)
        .map(|i| {
            all.row(i * 29)
                .iter()
                .enumerate()
                .map(|(j, x)| x + 0.2 * ((i + j) % 3) as f32 - 0.2)
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: 12,
        ef_construction: 64,
        seed: Some(1),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params.clone()).unwrap();
    b.add_rows(&all.data[..1500 * DIM]).unwrap();
    b.build().unwrap().write(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    for i in 1500..3000 {
        w.insert(i as u64, all.row(i)).unwrap();
    }
    let deleted: HashSet<u64> = (0..3000u64).filter(|i| i * 7919 % 10 == 3).collect();
    for id in &deleted {
        w.delete(*id).unwrap();
    }
    let alive: Vec<u64> = (0..3000u64).filter(|i| !deleted.contains(i)).collect();
    let truth: Vec<Vec<u64>> = q
        .iter()
        .map(|qv| exact_topk(&all, &alive, qv, 10))
        .collect();
    let measure = |live: &Index| {
        let mut r = 0.0;
        for (qv, t) in q.iter().zip(&truth) {
            let hits = live.search(qv, 10, &SearchParams::with_ef(16)).unwrap();
            assert!(
                hits.iter().all(|h| !deleted.contains(&h.id)),
                "a deleted id was returned"
            );
            r += recall_at(&hits, t, 10);
        }
        r / q.len() as f64
    };
    let before = measure(&w.live());
    let report = w.compact(CompactOptions::default()).unwrap();
    assert_eq!(report.vectors, alive.len());
    let after = measure(&w.live());
    assert_eq!(w.live().stats().log_records, 0);
    drop(w);
    let reopened = Index::open(dir.path()).unwrap();
    assert_eq!(measure(&reopened), after);
    // A fresh build of the same final set.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    for id in &alive {
        b.add(*id, all.row(*id as usize)).unwrap();
    }
    b.build().unwrap().write(fresh_dir.path()).unwrap();
    let fresh = measure(&Index::open(fresh_dir.path()).unwrap());
    eprintln!("recall@10 before compaction {before:.4}, after {after:.4}, fresh build {fresh:.4}");
    assert!(after >= fresh - 0.01, "after {after} vs fresh {fresh}");
    assert!(before >= fresh - 0.02, "before {before} vs fresh {fresh}");
    // The old generation's files are gone; only the new one remains.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("g00000001")),
        "{names:?}"
    );
}

/// Searching threads run while one thread inserts, deletes and compacts: no
/// search fails, and no search started after a delete was acknowledged
/// returns that id.
#[test]
fn searches_during_writes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let data = build(dir.path(), 1500, Quantization::Int8);
    let w = Arc::new(Writer::open(dir.path(), Durability::None).unwrap());
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let searchers: Vec<_> = (0..4)
        .map(|t| {
            let (live, acked, stop, data) = (w.live(), acked.clone(), stop.clone(), data.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let deleted_before: HashSet<u64> = acked.lock().unwrap().clone();
                    let q = data.row((n * 37 + t * 101) % 1500);
                    let hits = live
                        .search(q, 10, &SearchParams::with_ef(48))
                        .expect("search failed");
                    for h in &hits {
                        assert!(
                            !deleted_before.contains(&h.id),
                            "id {} returned after its delete was acknowledged",
                            h.id
                        );
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let extra = clustered(400, DIM, 8, 0.2, 77);
    for round in 0..3u64 {
        for i in 0..100u64 {
            let id = 10_000 + round * 100 + i;
            w.insert(id, extra.row((round * 100 + i) as usize)).unwrap();
            let victim = round * 400 + i * 3;
            w.delete(victim).unwrap();
            acked.lock().unwrap().insert(victim);
        }
        w.compact(CompactOptions::default()).unwrap();
    }
    stop.store(true, Ordering::Release);
    let total: usize = searchers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 50, "searchers ran: {total}");
    let live = w.live();
    assert_eq!(live.len(), 1500 + 300 - 300);
    assert!(acked.lock().unwrap().iter().all(|id| !live.contains(*id)));
}

#[test]
fn refresh_sees_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = build(dir.path(), 200, Quantization::Binary);
    let reader = Index::open(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.insert(777, data.row(3)).unwrap();
    w.delete(3).unwrap();
    assert!(!reader.contains(777));
    reader.refresh().unwrap();
    assert!(reader.contains(777) && !reader.contains(3));
    w.compact(CompactOptions {
        retrain: true,
        threads: 1,
        ..Default::default()
    })
    .unwrap();
    w.insert(778, data.row(4)).unwrap();
    reader.refresh().unwrap();
    assert_eq!(reader.stats().generation, 2);
    assert!(reader.contains(777) && reader.contains(778) && !reader.contains(3));
    assert_eq!(reader.len(), 201);
}

#[test]
fn plain_index_open_refuses_a_directory_with_logged_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = build(dir.path(), 100, Quantization::Int8);
    // An empty log (a writer that wrote nothing) is no obstacle.
    drop(Writer::open(dir.path(), Durability::EveryOp).unwrap());
    strata::Generation::open(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.delete(3).unwrap();
    assert!(matches!(
        strata::Generation::open(dir.path()),
        Err(Error::HasLog { .. })
    ));
    let raw = strata::Generation::open_with(
        dir.path(),
        &strata::OpenOptions {
            allow_log: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(raw.contains(3), "a raw open sees the generation as written");
    // Publishing a new build over a directory with a live writer is refused.
    let mut b = IndexBuilder::new(
        DIM,
        BuildParams {
            metric: Metric::L2,
            seed: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    b.add_rows(&data.data).unwrap();
    assert!(matches!(
        b.build().unwrap().write(dir.path()),
        Err(Error::WriterLocked(_))
    ));
}

#[test]
fn the_first_log_makes_the_manifest_current_version() {
    // A version-1 directory (golden-v1) gains a log only after its MANIFEST
    // is rewritten at the directory version that readers of logs require.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1");
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(&fixture).unwrap().flatten() {
        fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let version = |p: &Path| {
        u32::from_le_bytes(
            fs::read(p.join("MANIFEST")).unwrap()[8..12]
                .try_into()
                .unwrap(),
        )
    };
    assert_eq!(version(dir.path()), 1);
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    assert_eq!(version(dir.path()), strata::format::DIRECTORY_VERSION);
    w.delete(0).unwrap();
    drop(w);
    assert!(!Index::open(dir.path()).unwrap().contains(0));
}

/// Operations that arrive while a compaction runs are carried into the new
/// generation's log; with group commit, `flush` makes them durable.
#[test]
fn writes_during_a_compaction_are_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2000, Quantization::Pq);
    let w = Arc::new(
        Writer::open(
            dir.path(),
            Durability::Group {
                max_ops: 64,
                max_delay: std::time::Duration::from_millis(5),
            },
        )
        .unwrap(),
    );
    let extra = clustered(3000, DIM, 8, 0.2, 41);
    let inserter = {
        let (w, extra) = (w.clone(), extra.clone());
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                w.insert(50_000 + i, extra.row(i as usize)).unwrap();
            }
            w.flush().unwrap();
        })
    };
    let mut carried = 0;
    while !inserter.is_finished() {
        carried += w
            .compact(CompactOptions {
                retrain: false,
                threads: 1,
                ..Default::default()
            })
            .unwrap()
            .carried_records;
    }
    inserter.join().unwrap();
    let stats = w.live().stats();
    assert_eq!(stats.live, 5000);
    drop(w);
    let live = Index::open(dir.path()).unwrap();
    assert_eq!(live.len(), 5000);
    assert!((50_000..53_000u64).all(|id| live.contains(id)));
    eprintln!("records carried across compactions: {carried}");
    assert!(carried > 0, "some inserts arrived during a compaction");
}

// ---------------------------------------------------------------------------
// Directory version 4: atomic batches, the MANIFEST's log bound, torn versus
// corrupt records.
// ---------------------------------------------------------------------------

/// Writer opened on a fresh 100-vector build; returns the MANIFEST bytes as
/// a writer killed before its checkpoint would leave them.
fn open_fresh(dir: &Path) -> (Writer, Vec<u8>) {
    build(dir, 100, Quantization::None);
    let w = Writer::open(dir, Durability::EveryOp).unwrap();
    let manifest = fs::read(dir.join("MANIFEST")).unwrap();
    (w, manifest)
}

fn rows(n: usize, seed: u64) -> Vec<f32> {
    clustered(n, DIM, 2, 0.2, seed).data
}

fn rejected_at(e: Error) -> (usize, u64, Error) {
    match e {
        Error::BatchRejected {
            position,
            id,
            source,
        } => (position, id, *source),
        other => panic!("expected BatchRejected, got {other:?}"),
    }
}

#[test]
fn a_batch_whose_sixth_id_exists_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open_fresh(dir.path());
    let log_len = fs::metadata(log_path(dir.path())).unwrap().len();
    let ids = [500, 501, 502, 503, 504, 5, 506];
    let e = w
        .insert_batch(&ids, &rows(7, 1), BatchOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("nothing of the batch was committed"),
        "{e}"
    );
    let (position, id, source) = rejected_at(e);
    assert_eq!((position, id), (5, 5));
    assert!(matches!(source, Error::IdExists(5)), "{source:?}");
    assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), log_len);
    for id in [500, 501, 502, 503, 504, 506] {
        assert!(!w.live().contains(id), "{id}");
    }
    drop(w);
    let live = Index::open(dir.path()).unwrap();
    assert_eq!(live.len(), 100);
    // A vector that cannot be inserted refuses the batch the same way.
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    let mut bad = rows(3, 2);
    bad[DIM + 1] = f32::NAN;
    let (position, _, source) = rejected_at(
        w.insert_batch(&[600, 601, 602], &bad, BatchOptions::default())
            .unwrap_err(),
    );
    assert_eq!(position, 1);
    assert!(matches!(source, Error::NonFinite { .. }), "{source:?}");
    assert!(!w.live().contains(600));
    // An id twice in one batch.
    assert!(matches!(
        w.insert_batch(&[700, 701, 700], &rows(3, 3), BatchOptions::default()),
        Err(Error::DuplicateId {
            id: 700,
            first_row: 0,
            row: 2
        })
    ));
}

#[test]
fn a_delete_batch_with_an_unknown_id_in_the_middle_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open_fresh(dir.path());
    let (position, id, source) = rejected_at(
        w.delete_batch(&[1, 2, 999_999, 3], BatchOptions::default())
            .unwrap_err(),
    );
    assert_eq!((position, id), (2, 999_999));
    assert!(matches!(source, Error::UnknownId(999_999)));
    for id in [1, 2, 3] {
        assert!(w.live().contains(id));
    }
    // With ignore_missing the unknown id is skipped and the rest committed.
    let r = w
        .delete_batch(
            &[1, 2, 999_999, 3],
            BatchOptions {
                ignore_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((r.deleted, r.skipped_missing.clone()), (3, vec![999_999]));
    assert_eq!(r.log_records, 5, "begin, 3 deletes, commit");
    drop(w);
    let live = Index::open(dir.path()).unwrap();
    assert_eq!(live.len(), 97);
    assert_eq!(live.stats().log_records, 5);
}

#[test]
fn a_retried_batch_skips_exactly_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = open_fresh(dir.path());
    let ids: Vec<u64> = (500..510).collect();
    let data = rows(10, 4);
    // As if a crash had committed a prefix (a single-record write, say).
    w.insert_batch(&ids[..4], &data[..4 * DIM], BatchOptions::default())
        .unwrap();
    let skip = BatchOptions {
        skip_existing: true,
        ..Default::default()
    };
    // Without the option the retry is refused, naming the first present id.
    let (position, id, _) = rejected_at(
        w.insert_batch(&ids, &data, BatchOptions::default())
            .unwrap_err(),
    );
    assert_eq!((position, id), (0, 500));
    let r = w.insert_batch(&ids, &data, skip).unwrap();
    assert_eq!(r.inserted, 6);
    assert_eq!(r.skipped_existing, ids[..4].to_vec());
    // The identical retry again: a no-op that writes nothing.
    let len = fs::metadata(log_path(dir.path())).unwrap().len();
    let r = w.insert_batch(&ids, &data, skip).unwrap();
    assert_eq!(
        (r.committed(), r.skipped_existing.len(), r.log_records),
        (0, 10, 0)
    );
    assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), len);
    // A present id with another vector is not "the same batch".
    let mut other = data.clone();
    other[3 * DIM] += 1.0;
    let (position, _, source) = rejected_at(w.insert_batch(&ids, &other, skip).unwrap_err());
    assert_eq!(position, 3);
    assert!(matches!(source, Error::IdExistsWithOtherVector(503)));
    // Generation ids compare with their stored vectors too.
    let base = clustered(100, DIM, 8, 0.2, 3);
    let r = w.insert_batch(&[7], base.row(7), skip).unwrap();
    assert_eq!(r.skipped_existing, vec![7]);
}

#[test]
fn a_torn_batch_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (w, manifest) = open_fresh(dir.path());
    w.insert(400, &rows(1, 5)).unwrap();
    let begin = fs::metadata(log_path(dir.path())).unwrap().len() as usize;
    let ids: Vec<u64> = (500..505).collect();
    w.insert_batch(&ids, &rows(5, 6), BatchOptions::default())
        .unwrap();
    drop(w);
    fs::write(dir.path().join("MANIFEST"), &manifest).unwrap();
    let log = log_path(dir.path());
    let full = fs::read(&log).unwrap();
    for cut in (begin..full.len()).step_by(7).chain([full.len() - 1]) {
        let copy = tempfile::tempdir().unwrap();
        for e in fs::read_dir(dir.path()).unwrap().flatten() {
            if e.file_name() != "LOCK" {
                fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
            }
        }
        let copied = copy.path().join(log.file_name().unwrap());
        fs::write(&copied, &full[..cut]).unwrap();
        let live = Index::open(copy.path()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert!(live.contains(400));
        assert!(ids.iter().all(|&id| !live.contains(id)), "cut {cut}");
        assert_eq!(live.stats().torn_bytes, (cut - begin) as u64, "cut {cut}");
        let w = Writer::open(copy.path(), Durability::EveryOp).unwrap();
        assert_eq!(fs::metadata(&copied).unwrap().len(), begin as u64);
        assert!(ids.iter().all(|&id| !w.live().contains(id)));
    }
    let live = Index::open(dir.path()).unwrap();
    assert!(ids.iter().all(|&id| live.contains(id)));
    assert_eq!(live.stats().log_records, 1 + 7);
}

#[test]
fn a_missing_log_is_an_error_not_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::None);
    // A fresh build has no log and needs none.
    assert_eq!(Index::open(dir.path()).unwrap().len(), 100);
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        w.delete(3).unwrap();
    }
    let log = log_path(dir.path());
    fs::remove_file(&log).unwrap();
    for e in [
        Index::open(dir.path()).err(),
        Writer::open(dir.path(), Durability::EveryOp).err(),
    ] {
        match e {
            Some(Error::LogMissing {
                path,
                min_records: 1,
                ..
            }) => assert_eq!(path, log),
            other => panic!("expected LogMissing, got {other:?}"),
        }
    }
    // Nothing was created in its place.
    assert!(!log.exists());
}

#[test]
fn a_log_cut_below_the_manifest_bound_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::None);
    let mut ends = vec![];
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        for id in [1, 2, 3] {
            w.delete(id).unwrap();
            ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
        }
    }
    let log = log_path(dir.path());
    let full = fs::read(&log).unwrap();
    // Cut at a record boundary (a clean end) and inside a record.
    for cut in [ends[1] as usize, ends[1] as usize + 5, 64] {
        fs::write(&log, &full[..cut]).unwrap();
        let reader = Index::open(dir.path()).err();
        let writer = Writer::open(dir.path(), Durability::EveryOp).err();
        for e in [reader, writer] {
            match e {
                Some(Error::Corrupt {
                    file: FileKind::Log,
                    ref what,
                    ref expected,
                    ..
                }) => {
                    assert!(what.contains("length of"), "{what}");
                    assert!(expected.contains("3 committed records"), "{expected}");
                }
                other => panic!("cut {cut}: expected a short-log error, got {other:?}"),
            }
        }
        // Nothing was truncated further.
        assert_eq!(fs::metadata(&log).unwrap().len(), cut as u64);
    }
    fs::write(&log, &full).unwrap();
    assert_eq!(Index::open(dir.path()).unwrap().len(), 97);
}

#[test]
fn a_bit_flip_in_the_last_record_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (w, manifest) = open_fresh(dir.path());
    let extra = rows(3, 7);
    let mut ends = vec![64u64];
    for i in 0..3 {
        w.insert(500 + i as u64, &extra[i * DIM..(i + 1) * DIM])
            .unwrap();
        ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
    }
    w.delete(7).unwrap();
    ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
    drop(w);
    // Undo the checkpoint: the bound must not be what catches the damage.
    fs::write(dir.path().join("MANIFEST"), &manifest).unwrap();
    let log = log_path(dir.path());
    let good = fs::read(&log).unwrap();
    // A reader that has seen the first three records, for refresh.
    fs::write(&log, &good[..ends[3] as usize]).unwrap();
    let early = Index::open(dir.path()).unwrap();
    assert_eq!(early.stats().log_records, 3);
    let last = ends[3] as usize;
    // The last record is a delete (12-byte frame, 20-byte body): flip a bit
    // of its length, of its length check, of its checksum, of its id.
    for at in [last, last + 5, last + 9, last + 12 + 12] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        fs::write(&log, &bytes).unwrap();
        let refreshed = {
            let r = Index::open(dir.path());
            // A fresh reader of the log up to the last record, then refresh.
            fs::write(&log, &good[..last]).unwrap();
            let reader = Index::open(dir.path()).unwrap();
            fs::write(&log, &bytes).unwrap();
            [r.err(), reader.refresh().err(), early.refresh().err()]
        };
        let writer = Writer::open(dir.path(), Durability::EveryOp).err();
        for (who, e) in ["open", "refresh", "earlier refresh", "writer"]
            .iter()
            .zip(refreshed.into_iter().chain([writer]))
        {
            match e {
                Some(Error::Corrupt {
                    file: FileKind::Log,
                    what,
                    ..
                }) => assert!(
                    what.contains(&format!("record at offset {last} (after 3 valid records)")),
                    "{who}, flip at {at}: {what}"
                ),
                other => panic!("{who}, flip at {at}: expected corruption, got {other:?}"),
            }
        }
        // Never repaired: the file is as damaged as it was.
        assert_eq!(fs::read(&log).unwrap(), bytes);
    }
    // The same record cut short is torn: dropped, and cut by a writer.
    for cut in [last + 3, last + 12, ends[4] as usize - 1] {
        fs::write(&log, &good[..cut]).unwrap();
        let live = Index::open(dir.path()).unwrap();
        assert_eq!(
            (live.stats().log_records, live.stats().torn_bytes),
            (3, (cut - last) as u64)
        );
        assert!(live.contains(7));
    }
}

/// A version-3 directory (48-byte MANIFEST, log with 8-byte frames and no
/// batches) opens as before, and a writer upgrades both to version 4.
#[test]
fn a_version_3_log_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, Quantization::None);
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        w.delete(1).unwrap();
        w.insert(500, &rows(1, 8)).unwrap();
        w.upsert(2, &rows(1, 9)).unwrap();
    }
    let log = log_path(dir.path());
    let v4 = fs::read(&log).unwrap();
    // Rewrite as version 3: header version and CRC, 8-byte frames.
    let mut v3 = v4[..64].to_vec();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&v3[..60]);
    v3[60..64].copy_from_slice(&crc.to_le_bytes());
    let mut at = 64;
    while at < v4.len() {
        let len = u32::from_le_bytes(v4[at..at + 4].try_into().unwrap()) as usize;
        let body = &v4[at + 12..at + 12 + len];
        v3.extend_from_slice(&(len as u32).to_le_bytes());
        v3.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        v3.extend_from_slice(body);
        at += 12 + len;
    }
    fs::write(&log, &v3).unwrap();
    let m = fs::read(dir.path().join("MANIFEST")).unwrap();
    let mut m3 = m[..40].to_vec();
    m3[8..12].copy_from_slice(&3u32.to_le_bytes());
    m3[12..16].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&m3);
    m3.extend_from_slice(&crc.to_le_bytes());
    m3.extend_from_slice(&[0; 4]);
    fs::write(dir.path().join("MANIFEST"), &m3).unwrap();
    let check = |live: &Index| {
        assert!(!live.contains(1) && live.contains(500) && live.contains(2));
        assert_eq!(live.len(), 100);
    };
    let live = Index::open(dir.path()).unwrap();
    check(&live);
    assert_eq!(live.stats().log_records, 3);
    // A crash tail of a version-3 log keeps its version-3 rule.
    fs::write(&log, &v3[..v3.len() - 3]).unwrap();
    assert_eq!(Index::open(dir.path()).unwrap().stats().log_records, 2);
    fs::write(&log, &v3).unwrap();
    // A reader of the version-3 log, refreshed after the upgrade.
    let reader = Index::open(dir.path()).unwrap();
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        check(&w.live());
        w.delete_batch(&[3, 4], BatchOptions::default()).unwrap();
    }
    reader.refresh().unwrap();
    assert!(!reader.contains(3) && !reader.contains(4) && reader.contains(500));
    assert_eq!(reader.stats().log_records, 3 + 4);
    assert_eq!(fs::read(&log).unwrap()[8], 6, "log upgraded");
    let m = fs::read(dir.path().join("MANIFEST")).unwrap();
    assert_eq!((m.len(), m[8]), (64, 6), "MANIFEST upgraded");
    let live = Index::open(dir.path()).unwrap();
    assert!(!live.contains(3) && !live.contains(4) && live.contains(500));
    assert_eq!(live.stats().log_records, 3 + 4);
}

/// Compaction decodes the records appended during its build with the same
/// decoder as every reader: a damaged one fails the compaction (nothing
/// switched) with the error `Index::open` gives for the same file.
#[test]
fn compaction_reports_a_corrupt_record_as_open_does() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 500, Quantization::None);
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    let at = fs::metadata(log_path(dir.path())).unwrap().len();
    let log = log_path(dir.path());
    let result = w.compact_with(
        CompactOptions {
            retrain: false,
            threads: 1,
            ..Default::default()
        },
        || {
            // During the build (C2): append a record, then damage it on disk.
            w.insert(90_000, &rows(1, 11)).unwrap();
            let mut bytes = fs::read(&log).unwrap();
            assert_eq!(bytes.len() as u64, at + 12 + 20 + 4 * DIM as u64);
            bytes[at as usize + 40] ^= 1;
            fs::write(&log, &bytes).unwrap();
        },
    );
    let what_of = |e: Error| match e {
        Error::Corrupt {
            file: FileKind::Log,
            what,
            ..
        } => what,
        other => panic!("expected a corrupt-log error, got {other:?}"),
    };
    let from_compaction = what_of(result.unwrap_err());
    assert!(
        from_compaction.contains(&format!("record at offset {at} (after 0 valid records)")),
        "{from_compaction}"
    );
    assert!(
        !dir.path().join("g00000002.graph").exists(),
        "nothing switched"
    );
    drop(w);
    let from_open = what_of(Index::open(dir.path()).err().unwrap());
    assert_eq!(from_open, from_compaction);
}
