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
    BuildParams, CompactOptions, Durability, Error, FileKind, IndexBuilder, LiveIndex, Metric,
    Quantization, SearchParams, Writer,
};

const DIM: usize = 16;

/// Exact top-k ids among `ids` (rows of `data`) by squared L2 in f64, ties by id.
fn exact_topk(data: &strata::dataset::Vectors, ids: &[u64], q: &[f32], k: usize) -> Vec<u64> {
    let mut scored: Vec<(f64, u64)> = ids
        .iter()
        .map(|&id| {
            let d = data
                .row(id as usize)
                .iter()
                .zip(q)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>();
            (d, id)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

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
    let live = LiveIndex::open(dir.path()).unwrap();
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
        for (i, v) in extra.rows().enumerate() {
            w.insert(500 + i as u64, v).unwrap();
            ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
        }
        w.delete(500).unwrap();
        ends.push(fs::metadata(log_path(dir.path())).unwrap().len());
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
        let live = LiveIndex::open(copy.path()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
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
        let again = LiveIndex::open(copy.path()).unwrap();
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
        LiveIndex::open(dir.path()).err(),
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
    let measure = |live: &LiveIndex| {
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
    let reopened = LiveIndex::open(dir.path()).unwrap();
    assert_eq!(measure(&reopened), after);
    // A fresh build of the same final set.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    for id in &alive {
        b.add(*id, all.row(*id as usize)).unwrap();
    }
    b.build().unwrap().write(fresh_dir.path()).unwrap();
    let fresh = measure(&LiveIndex::open(fresh_dir.path()).unwrap());
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
    let reader = LiveIndex::open(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.insert(777, data.row(3)).unwrap();
    w.delete(3).unwrap();
    assert!(!reader.contains(777));
    reader.refresh().unwrap();
    assert!(reader.contains(777) && !reader.contains(3));
    w.compact(CompactOptions {
        retrain: true,
        threads: 1,
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
    strata::Index::open(dir.path()).unwrap();
    let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    w.delete(3).unwrap();
    assert!(matches!(
        strata::Index::open(dir.path()),
        Err(Error::HasLog { .. })
    ));
    let raw = strata::Index::open_with(
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
    assert_eq!(version(dir.path()), 3);
    w.delete(0).unwrap();
    drop(w);
    assert!(!LiveIndex::open(dir.path()).unwrap().contains(0));
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
            })
            .unwrap()
            .carried_records;
    }
    inserter.join().unwrap();
    let stats = w.live().stats();
    assert_eq!(stats.live, 5000);
    drop(w);
    let live = LiveIndex::open(dir.path()).unwrap();
    assert_eq!(live.len(), 5000);
    assert!((50_000..53_000u64).all(|id| live.contains(id)));
    eprintln!("records carried across compactions: {carried}");
    assert!(carried > 0, "some inserts arrived during a compaction");
}
