//! Compaction by policy: a writer compacts on its own once the log passes
//! its threshold, in the background, while inserts, deletes and searches go
//! on; nothing is lost, no deleted id comes back, recall against exact
//! brute-force ground truth holds, and `auto_compact: None` never compacts.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use strata::dataset::{clustered, Vectors};
use strata::{
    AutoCompact, BuildParams, Durability, Index, IndexBuilder, Metric, Quantization, SearchParams,
    Writer, WriterOptions,
};

const DIM: usize = 16;
const BASE: usize = 2_000;
const LOGGED: usize = 1_500;

fn build(dir: &Path, data: &Vectors) {
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: 8,
        ef_construction: 48,
        seed: Some(4),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    b.add_rows(&data.data[..BASE * DIM]).unwrap();
    b.build().unwrap().write(dir).unwrap();
}

fn options(auto: Option<AutoCompact>) -> WriterOptions {
    WriterOptions {
        durability: Durability::None,
        auto_compact: auto,
    }
}

/// Recall@10 of `live` at ef 64 against exact brute force over `ids`.
fn recall(live: &Index, data: &Vectors, ids: &[u64]) -> f64 {
    let mut hits = 0;
    let queries: Vec<usize> = (0..200).map(|i| (i * 7919) % (BASE + LOGGED)).collect();
    for &qi in &queries {
        let q = data.row(qi);
        let want: HashSet<u64> = common::exact_topk_l2(data, ids, q, 10)
            .into_iter()
            .collect();
        let got = live.search(q, 10, &SearchParams::with_ef(64)).unwrap();
        hits += got.iter().filter(|h| want.contains(&h.id)).count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

#[test]
fn a_writer_compacts_in_the_background_past_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let data = clustered(BASE + LOGGED, DIM, 8, 0.2, 5);
    build(dir.path(), &data);
    let policy = AutoCompact {
        log_fraction: 0.25,
        min_ops: 100,
        ..Default::default()
    };
    let w = Arc::new(Writer::open_with(dir.path(), &options(Some(policy))).unwrap());
    let live = w.live();
    assert_eq!(live.stats().generation, 1);
    // Deleted ids, published once each delete has returned.
    let deleted = Arc::new(std::sync::Mutex::new(HashSet::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (live, data, deleted, stop) = (w.live(), data.clone(), deleted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut searches = 0u64;
            while !stop.load(Ordering::Acquire) {
                let gone: HashSet<u64> = deleted.lock().unwrap().clone();
                let q = data.row((searches as usize * 31) % BASE);
                let hits = live
                    .search(q, 10, &SearchParams::with_ef(32))
                    .expect("search");
                for h in &hits {
                    assert!(!gone.contains(&h.id), "deleted id {} returned", h.id);
                }
                searches += 1;
            }
            searches
        })
    };
    for i in BASE..BASE + LOGGED {
        w.insert(i as u64, data.row(i)).unwrap();
        if i % 10 == 0 {
            // Delete a base row, then publish it as deleted.
            let id = ((i - BASE) / 10 * 13 % BASE) as u64;
            w.delete(id).unwrap();
            deleted.lock().unwrap().insert(id);
        }
    }
    w.wait_for_auto_compact();
    stop.store(true, Ordering::Release);
    let searches = searcher.join().expect("no search failed");
    assert!(searches > 0);
    let stats = w.auto_compact_stats();
    assert!(stats.completed >= 1, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    let now = live.stats();
    assert!(now.generation > 1, "{now:?}");
    // Nothing lost: every live id is there, no deleted one.
    let gone = deleted.lock().unwrap().clone();
    let ids: Vec<u64> = (0..(BASE + LOGGED) as u64)
        .filter(|id| !gone.contains(id))
        .collect();
    assert_eq!(now.live, ids.len());
    for &id in ids.iter().step_by(37) {
        assert!(live.contains(id), "id {id} lost");
    }
    for &id in &gone {
        assert!(!live.contains(id), "deleted id {id} is back");
    }
    let r = recall(&live, &data, &ids);
    assert!(r >= 0.95, "recall@10 {r:.4} after background compaction");
    // The log was folded: what is left is at most what came after the
    // last compaction started, below the threshold again.
    assert!(
        (now.log_records as f64) < 0.25 * now.base_count as f64 + 2.0 * policy.min_ops as f64,
        "{now:?}"
    );
    drop(live);
    drop(Arc::try_unwrap(w).ok().expect("the only writer handle"));
    let reopened = Index::open(dir.path()).unwrap();
    assert_eq!(reopened.len(), ids.len());
}

#[test]
fn no_policy_never_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let data = clustered(BASE + LOGGED, DIM, 8, 0.2, 6);
    build(dir.path(), &data);
    let w = Writer::open_with(dir.path(), &options(None)).unwrap();
    for i in BASE..BASE + LOGGED {
        w.insert(i as u64, data.row(i)).unwrap();
    }
    w.wait_for_auto_compact();
    assert_eq!(w.auto_compact_stats(), Default::default());
    let st = w.live().stats();
    assert_eq!(st.generation, 1);
    assert_eq!(st.inserted, LOGGED);
}

#[test]
fn below_min_ops_nothing_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let data = clustered(BASE + LOGGED, DIM, 8, 0.2, 7);
    build(dir.path(), &data);
    // The default policy: 1,500 operations are 75 % of the generation but
    // below its 10,000-operation floor.
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    for i in BASE..BASE + LOGGED {
        w.insert(i as u64, data.row(i)).unwrap();
    }
    w.wait_for_auto_compact();
    assert_eq!(w.auto_compact_stats().completed, 0);
    assert_eq!(w.live().stats().generation, 1);
}
