//! Stored operating points (`gNNNNNNNN.tuning`): they round-trip through
//! a reopen, drive `SearchParams::for_recall`, are carried through a
//! compaction marked stale and dropped by a new build, and a damaged or
//! foreign file, a missing one, or a target none reaches is a typed error,
//! never a search with made-up settings. Also the leave-one-out search
//! tune uses on sampled rows, against brute force.

mod common;

use common::{build, exact_fn, params};
use std::collections::HashSet;
use std::path::Path;
use strata::dataset::clustered;
use strata::{
    CompactOptions, Durability, Error, FileKind, Generation, Index, Metric, OpenOptions,
    Quantization, SearchParams, Tuning, TuningPoint, TuningSource, Writer,
};

const N: usize = 2_000;
const DIM: usize = 24;

fn point(target: f32, ef: usize, oversample: Option<f32>, rescore: bool) -> TuningPoint {
    TuningPoint {
        target,
        ef,
        oversample,
        rescore,
        recall: target + 0.004,
        held_out_recall: target + 0.002,
        qps: 12_345.0,
    }
}

fn tuning_for(index: &Generation) -> Tuning {
    Tuning {
        measured_at: 1_796_400_000,
        k: 10,
        queries: 400,
        held_out: 200,
        source: TuningSource::SampledRows,
        live_count: index.len() as u64,
        stale: false,
        measured_build_id: index.info().build_id,
        points: vec![
            point(0.9, 12, Some(2.0), true),
            point(0.95, 24, None, true),
            point(0.99, 80, None, false),
        ],
    }
}

fn written(dir: &Path, seed: u64) -> Generation {
    let data = clustered(N, DIM, 8, 0.3, seed);
    build(&data, params(Metric::Cosine, Quantization::Int8, seed))
        .write(dir)
        .unwrap();
    Generation::open(dir).unwrap()
}

fn tuning_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tuning"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[test]
fn points_round_trip_and_drive_for_recall() {
    let dir = tempfile::tempdir().unwrap();
    let g = written(dir.path(), 1);
    let t = tuning_for(&g);
    g.store_tuning(&t).unwrap();
    for reopened in [
        Generation::open(dir.path()).unwrap().tuning().unwrap(),
        Index::open(dir.path()).unwrap().tuning().unwrap(),
    ] {
        assert_eq!(reopened.as_ref(), Some(&t));
    }
    let data = clustered(N, DIM, 8, 0.3, 1);
    let index = Index::open(dir.path()).unwrap();
    for (target, p) in [
        (0.9, &t.points[0]),
        (0.93, &t.points[1]),
        (0.99, &t.points[2]),
    ] {
        let explicit = SearchParams {
            ef: p.ef,
            oversample: p.oversample,
            rescore: p.rescore,
            ..Default::default()
        };
        for q in (0..40).map(|i| data.row(i * 37)) {
            let tuned = index
                .search(q, 10, &SearchParams::for_recall(target))
                .unwrap();
            assert_eq!(
                tuned,
                index.search(q, 10, &explicit).unwrap(),
                "target {target}"
            );
        }
        // The same through the batch path, and at a smaller k.
        let rows = &data.data[..20 * DIM];
        let batch = index
            .search_batch(
                strata::Queries::new(rows, DIM).unwrap(),
                5,
                &SearchParams::for_recall(target),
            )
            .unwrap();
        let one = index
            .search_batch(strata::Queries::new(rows, DIM).unwrap(), 5, &explicit)
            .unwrap();
        assert_eq!(batch, one);
    }
}

#[test]
fn no_point_is_a_typed_error_that_names_tune() {
    let dir = tempfile::tempdir().unwrap();
    let g = written(dir.path(), 2);
    let q = vec![0.5f32; DIM];
    let e = g
        .search(&q, 10, &SearchParams::for_recall(0.95))
        .unwrap_err();
    assert!(matches!(e, Error::NotTuned { .. }), "{e:?}");
    assert!(e.to_string().contains("strata tune"), "{e}");
    g.store_tuning(&tuning_for(&g)).unwrap();
    let index = Index::open(dir.path()).unwrap();
    // Above every stored target, or above the tuned k.
    for (target, k) in [(0.995, 10), (0.9, 11)] {
        let e = index
            .search(&q, k, &SearchParams::for_recall(target))
            .unwrap_err();
        assert!(matches!(e, Error::NotTuned { .. }), "{target} {k}: {e:?}");
    }
    for bad in [0.0, -0.5, 1.5, f32::NAN, f32::INFINITY] {
        let e = index
            .search(&q, 10, &SearchParams::for_recall(bad))
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidParameter { name: "recall", .. }),
            "{bad}: {e:?}"
        );
    }
    let e = index
        .search_range(&q, 0.5, &SearchParams::for_recall(0.95))
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { name: "recall", .. }),
        "{e:?}"
    );
    // What cannot be stored is refused before anything is written.
    let mut t = tuning_for(&g);
    t.points.reverse();
    assert!(matches!(
        g.store_tuning(&t),
        Err(Error::InvalidParameter { .. })
    ));
    assert_eq!(index.tuning().unwrap(), Some(tuning_for(&g)));
}

#[test]
fn a_damaged_or_foreign_file_is_refused_at_use_and_by_verification() {
    let dir = tempfile::tempdir().unwrap();
    let g = written(dir.path(), 3);
    g.store_tuning(&tuning_for(&g)).unwrap();
    let path = tuning_file(dir.path());
    let good = std::fs::read(&path).unwrap();
    let q = vec![0.5f32; DIM];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", {
            let mut b = good.clone();
            b[40] ^= 1;
            b
        }),
        ("truncated", good[..good.len() - 7].to_vec()),
        ("empty", Vec::new()),
        ("overlong", [good.clone(), vec![0; 5_000]].concat()),
    ];
    for (case, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        // The index still opens and serves every other search.
        let index = Index::open(dir.path()).unwrap();
        assert_eq!(
            index
                .search(&q, 10, &SearchParams::default())
                .unwrap()
                .len(),
            10
        );
        let e = index.tuning().unwrap_err();
        assert!(is_tuning_error(&e), "{case}: {e:?}");
        let e = index
            .search(&q, 10, &SearchParams::for_recall(0.95))
            .unwrap_err();
        assert!(is_tuning_error(&e), "{case}: {e:?}");
        let e = Generation::open(dir.path()).unwrap().verify().unwrap_err();
        assert!(is_tuning_error(&e), "{case}: {e:?}");
        let verified = Generation::open_with(
            dir.path(),
            &OpenOptions {
                verify: true,
                ..Default::default()
            },
        );
        assert!(
            verified.is_err(),
            "{case}: full verification must refuse it"
        );
    }
    // Another index's points (same generation number, other build).
    let other = tempfile::tempdir().unwrap();
    let g2 = written(other.path(), 4);
    g2.store_tuning(&tuning_for(&g2)).unwrap();
    std::fs::copy(tuning_file(other.path()), &path).unwrap();
    let e = Index::open(dir.path()).unwrap().tuning().unwrap_err();
    match e {
        Error::Corrupt {
            file: FileKind::Tuning,
            ref what,
            ..
        } if what == "build id" => {}
        other => panic!("{other:?}"),
    }
    // Storing again repairs it.
    let index = Generation::open(dir.path()).unwrap();
    index.store_tuning(&tuning_for(&index)).unwrap();
    assert!(Generation::open(dir.path())
        .unwrap()
        .tuning()
        .unwrap()
        .is_some());
}

fn is_tuning_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt {
            file: FileKind::Tuning,
            ..
        } | Error::ChecksumMismatch {
            file: FileKind::Tuning,
            ..
        } | Error::BadMagic {
            file: FileKind::Tuning,
            ..
        }
    )
}

#[test]
fn compaction_carries_the_points_marked_stale_and_a_new_build_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let g = written(dir.path(), 5);
    let t = tuning_for(&g);
    drop(g);
    // Stored by another handle after the writer opened (as `strata tune`
    // in another process would).
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    Generation::open(dir.path())
        .unwrap()
        .store_tuning(&t)
        .unwrap();
    let more = clustered(200, DIM, 8, 0.3, 55);
    for i in 0..200 {
        w.insert((N + i) as u64, more.row(i)).unwrap();
    }
    w.compact(CompactOptions::default()).unwrap();
    let index = w.live();
    assert_eq!(index.stats().generation, 2);
    let carried = index.tuning().unwrap().expect("carried");
    assert!(carried.stale);
    assert_eq!(carried.measured_build_id, t.measured_build_id);
    assert_eq!(carried.points, t.points);
    assert_ne!(
        index.with_generation(|g| g.info().build_id),
        t.measured_build_id
    );
    // Stale points are still used.
    let q = more.row(3);
    assert!(!index
        .search(q, 10, &SearchParams::for_recall(0.95))
        .unwrap()
        .is_empty());
    drop(index);
    drop(w);
    // Only the current generation's file is left.
    assert!(tuning_file(dir.path()).ends_with("g00000002.tuning"));
    // A new build replaces the index: its points are not the old ones.
    let data = clustered(N, DIM, 8, 0.3, 6);
    build(&data, params(Metric::Cosine, Quantization::Int8, 6))
        .write(dir.path())
        .unwrap();
    assert_eq!(Index::open(dir.path()).unwrap().tuning().unwrap(), None);
}

#[test]
fn a_compaction_without_points_leaves_no_stale_file_under_the_next_number() {
    let dir = tempfile::tempdir().unwrap();
    let g = written(dir.path(), 7);
    // A file a failed compaction could have left under generation 2.
    let other = tempfile::tempdir().unwrap();
    let g2 = written(other.path(), 8);
    g2.store_tuning(&tuning_for(&g2)).unwrap();
    drop(g);
    let w = Writer::open(dir.path(), Durability::None).unwrap();
    std::fs::copy(
        tuning_file(other.path()),
        dir.path().join("g00000002.tuning"),
    )
    .unwrap();
    w.insert(N as u64, &[0.25; DIM]).unwrap();
    w.compact(CompactOptions::default()).unwrap();
    assert_eq!(w.live().tuning().unwrap(), None);
}

#[test]
fn leaving_a_row_out_searches_as_if_it_were_not_indexed() {
    let data = clustered(N, DIM, 8, 0.3, 9);
    let index = build(&data, params(Metric::Cosine, Quantization::Int8, 9))
        .into_index()
        .unwrap();
    let dist = exact_fn(Metric::Cosine);
    let (mut hits, mut wanted) = (0usize, 0usize);
    for i in (0..N).step_by(13) {
        let q = data.row(i);
        let got = index
            .search_leaving_out(q, 10, &SearchParams::with_ef(96), i as u64)
            .unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|n| n.id != i as u64), "row {i} returned");
        let mut all: Vec<(f32, u64)> = (0..N)
            .filter(|&j| j != i)
            .map(|j| (dist(q, data.row(j)), j as u64))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: HashSet<u64> = all[..10].iter().map(|p| p.1).collect();
        hits += got.iter().filter(|n| truth.contains(&n.id)).count();
        wanted += 10;
    }
    let recall = hits as f64 / wanted as f64;
    assert!(recall >= 0.95, "leave-one-out recall {recall}");
    // A normal search right after is not affected (the row comes back).
    let again = index
        .search(data.row(13), 10, &SearchParams::with_ef(96))
        .unwrap();
    assert_eq!(again[0].id, 13);
    assert!(matches!(
        index.search_leaving_out(data.row(0), 10, &SearchParams::default(), 99_999),
        Err(Error::UnknownId(99_999))
    ));
    let f = strata::Filter::ids([1, 2, 3]);
    let filtered = SearchParams {
        filter: Some(&f),
        ..Default::default()
    };
    assert!(matches!(
        index.search_leaving_out(data.row(0), 10, &filtered, 1),
        Err(Error::InvalidParameter { name: "filter", .. })
    ));
}
