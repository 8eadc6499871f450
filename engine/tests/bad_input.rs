//! Pins user-error handling: every bad input to the builder (including the
//! product-quantization parameters `pq_m` and `pq_train_size`), the search
//! calls (for every code kind) and `Generation::open` is rejected with its typed
//! error and the fields that locate it (row, component, ids, parameter
//! name), a rejected call leaves the builder unchanged, and the documented
//! leniencies hold (`ef < k` is raised to `k`).

mod common;

use common::*;
use std::io::ErrorKind;
use strata::dataset::clustered;
use strata::{BuildParams, Error, Generation, IndexBuilder, Metric, Quantization, SearchParams};

const DIM: usize = 8;

/// Every code kind.
const QUANTS: [Quantization; 6] = [
    Quantization::None,
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];

fn builder(metric: Metric) -> IndexBuilder {
    IndexBuilder::new(DIM, params(metric, Quantization::Int8, 1)).unwrap()
}

fn row(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| (i * DIM + j) as f32 * 0.01 + 0.5)
        .collect()
}

/// A builder holding rows 0..3 (ids 0..3).
fn three_rows(metric: Metric) -> IndexBuilder {
    let mut b = builder(metric);
    for i in 0..3 {
        b.add(i as u64, &row(i)).unwrap();
    }
    b
}

fn small_index(metric: Metric, quant: Quantization) -> Generation {
    let data = clustered(300, DIM, 4, 0.2, 61);
    in_memory(build(&data, params(metric, quant, 1)))
}

#[test]
fn wrong_dimension_at_add_reports_the_row() {
    for len in [0, DIM - 1, DIM + 1, 3 * DIM] {
        let mut b = three_rows(Metric::L2);
        match b.add(10, &vec![1.0; len]) {
            Err(Error::DimensionMismatch {
                expected,
                found,
                row,
            }) => assert_eq!((expected, found, row), (DIM, len, Some(3))),
            other => panic!("len {len}: expected DimensionMismatch, got {other:?}"),
        }
        assert_eq!(b.len(), 3);
    }
}

#[test]
fn add_rows_with_a_partial_trailing_row() {
    let mut b = three_rows(Metric::L2);
    let rows: Vec<f32> = (0..2).flat_map(row).chain([1.0, 2.0, 3.0]).collect();
    match b.add_rows(&rows) {
        Err(Error::DimensionMismatch {
            expected,
            found,
            row,
        }) => assert_eq!((expected, found, row), (DIM, 3, Some(5))),
        other => panic!("expected DimensionMismatch, got {other:?}"),
    }
    assert_eq!(b.len(), 3);
}

#[test]
fn non_finite_components_report_row_and_component() {
    for (bad, component) in [
        (f32::NAN, 0),
        (f32::INFINITY, 4),
        (f32::NEG_INFINITY, DIM - 1),
    ] {
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let mut b = three_rows(metric);
            let mut v = row(3);
            v[component] = bad;
            if component > 0 {
                v[component - 1] = f32::MAX; // finite, must not be reported
            }
            match b.add(3, &v) {
                Err(Error::NonFinite { row, component: c }) => {
                    assert_eq!((row, c), (Some(3), component), "{metric:?} {bad}")
                }
                other => panic!("{metric:?} {bad}: expected NonFinite, got {other:?}"),
            }
            assert_eq!(b.len(), 3);
            // The rejected id is still free.
            b.add(3, &row(3)).unwrap();
            assert_eq!(b.len(), 4);
        }
    }
}

#[test]
fn zero_vector_under_cosine_reports_the_row() {
    let mut b = three_rows(Metric::Cosine);
    match b.add(7, &[0.0; DIM]) {
        Err(Error::ZeroVector { row }) => assert_eq!(row, Some(3)),
        other => panic!("expected ZeroVector, got {other:?}"),
    }
    let mut neg_zero = [0.0f32; DIM];
    neg_zero[2] = -0.0;
    assert!(matches!(
        b.add(7, &neg_zero),
        Err(Error::ZeroVector { row: Some(3) })
    ));
    assert_eq!(b.len(), 3);
    // Zero vectors are fine under L2 and inner product.
    for metric in [Metric::L2, Metric::InnerProduct] {
        let mut b = three_rows(metric);
        b.add(7, &[0.0; DIM]).unwrap();
        let idx = b.build().unwrap().into_index().unwrap();
        let hits = idx
            .search(&[0.0; DIM], 1, &SearchParams::default())
            .unwrap();
        if metric == Metric::L2 {
            assert_eq!(hits[0].id, 7);
        }
    }
}

#[test]
fn overflowing_components_are_rejected() {
    // Finite components whose squares overflow f32 would make every distance inf.
    for metric in [Metric::L2, Metric::InnerProduct] {
        let mut b = three_rows(metric);
        match b.add(3, &[1e20; DIM]) {
            Err(Error::InvalidParameter { name, reason }) => {
                assert_eq!(name, "vector");
                assert!(reason.contains("row 3"), "{reason}");
            }
            other => panic!("{metric:?}: expected InvalidParameter, got {other:?}"),
        }
        assert_eq!(b.len(), 3);
    }
}

#[test]
fn duplicate_id_reports_both_rows() {
    let mut b = three_rows(Metric::L2);
    b.add(100, &row(3)).unwrap();
    match b.add(1, &row(4)) {
        Err(Error::DuplicateId { id, first_row, row }) => {
            assert_eq!((id, first_row, row), (1, 1, 4))
        }
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    match b.add(100, &row(4)) {
        Err(Error::DuplicateId { id, first_row, row }) => {
            assert_eq!((id, first_row, row), (100, 3, 4))
        }
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    assert_eq!(b.len(), 4);
}

#[test]
fn empty_builder_is_empty_input() {
    for quant in QUANTS {
        let b = IndexBuilder::new(DIM, params(Metric::L2, quant, 1)).unwrap();
        assert!(b.is_empty());
        assert!(matches!(b.build(), Err(Error::EmptyInput)));
    }
    // Also after only rejected adds.
    let mut b = builder(Metric::Cosine);
    assert!(b.add(0, &[0.0; DIM]).is_err());
    assert!(b.add_rows(&[f32::NAN; DIM]).is_err());
    assert!(b.is_empty());
    assert!(matches!(b.build(), Err(Error::EmptyInput)));
}

#[test]
fn invalid_build_parameters_are_named() {
    let base = params(Metric::L2, Quantization::Int8, 1);
    let cases: Vec<(usize, BuildParams, &str)> = vec![
        (0, base.clone(), "dim"),
        (65_537, base.clone(), "dim"),
        (
            DIM,
            BuildParams {
                m: 0,
                ..base.clone()
            },
            "m",
        ),
        (
            DIM,
            BuildParams {
                m: 1,
                ..base.clone()
            },
            "m",
        ),
        (
            DIM,
            BuildParams {
                m: 2049,
                ..base.clone()
            },
            "m",
        ),
        (
            DIM,
            BuildParams {
                ef_construction: 0,
                ..base.clone()
            },
            "ef_construction",
        ),
        (
            DIM,
            BuildParams {
                int8_clip: 0.5,
                ..base.clone()
            },
            "int8_clip",
        ),
        (
            DIM,
            BuildParams {
                int8_clip: -0.1,
                ..base.clone()
            },
            "int8_clip",
        ),
        (
            DIM,
            BuildParams {
                int8_clip: f32::NAN,
                ..base.clone()
            },
            "int8_clip",
        ),
    ];
    // Product quantization: m must be 1..=dim, and training needs rows.
    let pq = params(Metric::L2, Quantization::Pq, 1);
    let pq_cases: Vec<(usize, BuildParams, &str)> = [
        (DIM, Some(0), 1),
        (DIM, Some(DIM + 1), 1),
        (DIM, Some(usize::MAX), 1),
        (1, Some(2), 1),
        (300, Some(301), 1),
    ]
    .into_iter()
    .map(|(dim, pq_m, _)| (dim, BuildParams { pq_m, ..pq.clone() }, "pq_m"))
    .chain([
        (
            DIM,
            BuildParams {
                pq_train_size: 0,
                ..pq.clone()
            },
            "pq_train_size",
        ),
        (
            DIM,
            BuildParams {
                pq_m: Some(4),
                pq_train_size: 0,
                ..pq.clone()
            },
            "pq_train_size",
        ),
    ])
    .collect();
    for (dim, p, want) in cases.into_iter().chain(pq_cases) {
        match IndexBuilder::new(dim, p.clone()) {
            Err(Error::InvalidParameter { name, reason }) => {
                assert_eq!(name, want, "dim {dim} {p:?}");
                assert!(!reason.is_empty());
            }
            Ok(_) => panic!("dim {dim} {p:?}: accepted"),
            Err(e) => panic!("dim {dim} {p:?}: wrong error {e:?}"),
        }
    }
    // The boundaries themselves are accepted.
    IndexBuilder::new(
        1,
        BuildParams {
            m: 2,
            ..base.clone()
        },
    )
    .unwrap();
    IndexBuilder::new(65_536, base.clone()).unwrap();
    for (dim, pq_m) in [
        (DIM, Some(1)),
        (DIM, Some(DIM)),
        (DIM, None),
        (1, Some(1)),
        (1, None),
    ] {
        IndexBuilder::new(
            dim,
            BuildParams {
                pq_m,
                pq_train_size: 1,
                ..pq.clone()
            },
        )
        .unwrap_or_else(|e| panic!("dim {dim} pq_m {pq_m:?}: {e}"));
    }
    IndexBuilder::new(
        DIM,
        BuildParams {
            ef_construction: 1,
            ..base
        },
    )
    .unwrap();
}

#[test]
fn add_rows_is_all_or_nothing() {
    let data = clustered(40, DIM, 2, 0.2, 62);
    let mut b = builder(Metric::Cosine);
    b.add_rows(&data.data[..2 * DIM]).unwrap();
    assert_eq!(b.len(), 2);

    // A NaN in the middle of the batch: row numbers count from the builder's start.
    let mut bad = data.data[2 * DIM..12 * DIM].to_vec();
    bad[4 * DIM + 5] = f32::NAN;
    match b.add_rows(&bad) {
        Err(Error::NonFinite { row, component }) => assert_eq!((row, component), (Some(6), 5)),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(b.len(), 2, "a rejected batch adds nothing");

    // A zero vector in the middle.
    let mut bad = data.data[2 * DIM..12 * DIM].to_vec();
    bad[7 * DIM..8 * DIM].fill(0.0);
    assert!(matches!(
        b.add_rows(&bad),
        Err(Error::ZeroVector { row: Some(9) })
    ));
    assert_eq!(b.len(), 2);

    // A batch whose implicit ids collide with an explicit id added earlier.
    b.add(5, data.row(39)).unwrap();
    assert_eq!(b.len(), 3);
    match b.add_rows(&data.data[2 * DIM..12 * DIM]) {
        Err(Error::DuplicateId { id, first_row, row }) => {
            assert_eq!((id, first_row, row), (5, 2, 5))
        }
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    assert_eq!(b.len(), 3);
    // The rolled-back ids (3, 4) are free again, the earlier id 5 is not.
    b.add(3, data.row(3)).unwrap();
    b.add(4, data.row(4)).unwrap();
    assert!(matches!(
        b.add(5, data.row(5)),
        Err(Error::DuplicateId {
            id: 5,
            first_row: 2,
            row: 5
        })
    ));
    assert_eq!(b.len(), 5);

    // The builder still builds, holding exactly the accepted vectors.
    let idx = b.build().unwrap().into_index().unwrap();
    assert_eq!(idx.len(), 5);
    for (id, r) in [(0u64, 0usize), (1, 1), (5, 39), (3, 3), (4, 4)] {
        assert!(idx.contains(id));
        let hits = idx
            .search(data.row(r), 1, &SearchParams::default())
            .unwrap();
        assert_eq!(hits[0].id, id);
    }
    assert!(!idx.contains(2) && !idx.contains(6));
}

#[test]
fn search_rejects_k_zero() {
    for quant in QUANTS {
        let idx = small_index(Metric::L2, quant);
        let q = vec![0.1; DIM];
        match idx.search(&q, 0, &SearchParams::default()) {
            Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "k"),
            other => panic!("{quant:?}: expected InvalidParameter k, got {other:?}"),
        }
        assert!(matches!(
            idx.exact_search(&q, 0),
            Err(Error::InvalidParameter { name: "k", .. })
        ));
    }
}

#[test]
fn search_rejects_wrong_query_dimension() {
    let idx = small_index(Metric::L2, Quantization::Int8);
    for len in [0, 1, DIM - 1, DIM + 1, 16] {
        match idx.search(&vec![0.5; len], 5, &SearchParams::default()) {
            Err(Error::DimensionMismatch {
                expected,
                found,
                row,
            }) => assert_eq!((expected, found, row), (DIM, len, None)),
            other => panic!("len {len}: expected DimensionMismatch, got {other:?}"),
        }
        assert!(matches!(
            idx.exact_search(&vec![0.5; len], 5),
            Err(Error::DimensionMismatch { .. })
        ));
    }
}

#[test]
fn search_rejects_non_finite_queries() {
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for quant in QUANTS {
            let idx = small_index(metric, quant);
            for (bad, at) in [(f32::NAN, 3), (f32::INFINITY, 0), (f32::NEG_INFINITY, 7)] {
                let mut q = vec![0.5; DIM];
                q[at] = bad;
                match idx.search(&q, 5, &SearchParams::default()) {
                    Err(Error::NonFinite { row, component }) => {
                        assert_eq!((row, component), (None, at))
                    }
                    other => {
                        panic!("{metric:?}/{quant:?} {bad}: expected NonFinite, got {other:?}")
                    }
                }
            }
            // A good query right after a rejected one still works (scratch intact).
            assert_eq!(
                idx.search(&[0.5; DIM], 5, &SearchParams::default())
                    .unwrap()
                    .len(),
                5
            );
        }
    }
}

#[test]
fn search_rejects_zero_query_under_cosine() {
    for quant in QUANTS {
        let idx = small_index(Metric::Cosine, quant);
        match idx.search(&[0.0; DIM], 5, &SearchParams::default()) {
            Err(Error::ZeroVector { row }) => assert_eq!(row, None),
            other => panic!("{quant:?}: expected ZeroVector, got {other:?}"),
        }
        assert!(matches!(
            idx.exact_search(&[0.0; DIM], 5),
            Err(Error::ZeroVector { row: None })
        ));
    }
    // A zero query is fine under L2.
    let idx = small_index(Metric::L2, Quantization::Int8);
    assert_eq!(
        idx.search(&[0.0; DIM], 5, &SearchParams::default())
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn search_rejects_overflowing_query() {
    let idx = small_index(Metric::L2, Quantization::Int8);
    assert!(matches!(
        idx.search(&[1e30; DIM], 5, &SearchParams::default()),
        Err(Error::InvalidParameter { name: "vector", .. })
    ));
}

#[test]
fn ef_below_k_is_raised_to_k() {
    for metric in [Metric::L2, Metric::Cosine] {
        for quant in QUANTS {
            let idx = small_index(metric, quant);
            let q = idx.get(17).unwrap();
            for ef in [0, 1, 5] {
                let hits = idx.search(&q, 10, &SearchParams::with_ef(ef)).unwrap();
                assert_eq!(hits.len(), 10, "{metric:?}/{quant:?} ef={ef} k=10");
                // With 8 dimensions, PQ and one-bit codes may rank other
                // vectors' codes above a stored vector's own among the k
                // rescored: only the exact and int8 indexes are sure to find it.
                if matches!(quant, Quantization::None | Quantization::Int8) {
                    assert_eq!(hits[0].id, 17);
                }
                assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
            }
            let wide = idx.search(&q, 10, &SearchParams::with_ef(10)).unwrap();
            let narrow = idx.search(&q, 10, &SearchParams::with_ef(1)).unwrap();
            assert_eq!(bits(&[wide]), bits(&[narrow]), "ef=1 behaves as ef=k");
        }
    }
}

#[test]
fn open_without_manifest_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    match Generation::open(dir.path()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, dir.path().join("MANIFEST"));
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        Ok(_) => panic!("opened an empty directory"),
        Err(e) => panic!("expected Io, got {e:?}"),
    }
    let missing = dir.path().join("does-not-exist");
    assert!(matches!(Generation::open(&missing), Err(Error::Io { .. })));
    // Stray files are not an index either.
    std::fs::write(dir.path().join("g00000001.graph"), b"junk").unwrap();
    assert!(matches!(
        Generation::open(dir.path()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn open_with_missing_data_file_is_io_error_naming_it() {
    let data = clustered(100, DIM, 2, 0.2, 63);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::L2, Quantization::Int8, 1))
        .write(dir.path())
        .unwrap();
    for name in ["g00000001.vectors", "g00000001.graph"] {
        let p = dir.path().join(name);
        let saved = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        match Generation::open(dir.path()) {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, p);
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            Ok(_) => panic!("opened without {name}"),
            Err(e) => panic!("{name}: expected Io, got {e:?}"),
        }
        std::fs::write(&p, saved).unwrap();
        Generation::open(dir.path()).unwrap();
    }
}

#[test]
fn empty_data_files_are_errors_not_panics() {
    let data = clustered(100, DIM, 2, 0.2, 64);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::L2, Quantization::Int8, 1))
        .write(dir.path())
        .unwrap();
    for name in ["g00000001.graph", "g00000001.vectors"] {
        let p = dir.path().join(name);
        let saved = std::fs::read(&p).unwrap();
        std::fs::write(&p, b"").unwrap();
        match Generation::open(dir.path()) {
            Err(Error::Corrupt { what, .. }) => assert!(what.contains("file length"), "{what}"),
            Ok(_) => panic!("opened with empty {name}"),
            Err(e) => panic!("{name}: expected Corrupt, got {e:?}"),
        }
        std::fs::write(&p, saved).unwrap();
    }
}

#[test]
fn get_unknown_id() {
    let idx = small_index(Metric::L2, Quantization::None);
    assert!(matches!(idx.get(300), Err(Error::UnknownId(300))));
    assert!(matches!(idx.get(u64::MAX), Err(Error::UnknownId(u64::MAX))));
    assert!(idx.get(299).is_ok());
}

#[test]
fn errors_render_actionable_messages() {
    let mut b = three_rows(Metric::Cosine);
    let e = b.add(9, &[0.0; DIM]).unwrap_err().to_string();
    assert!(e.contains("row 3") && e.contains("cosine"), "{e}");
    let e = b.add(1, &row(1)).unwrap_err().to_string();
    assert!(
        e.contains("duplicate id 1") && e.contains("rows 1 and 3"),
        "{e}"
    );
    let e = b.add(9, &[1.0; 3]).unwrap_err().to_string();
    assert!(
        e.contains("expected 8, found 3") && e.contains("row 3"),
        "{e}"
    );
}

/// A huge `k` (found by the fuzz corpus: `exact_search` sized its heap by
/// `k` and asked for terabytes) returns every vector, without allocating
/// in proportion to `k`.
#[test]
fn huge_k_returns_everything_without_huge_allocations() {
    let data = strata::dataset::clustered(50, 4, 2, 0.1, 1);
    let mut b = strata::IndexBuilder::new(
        4,
        strata::BuildParams {
            seed: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    b.add_rows(&data.data).unwrap();
    let index = b.build().unwrap().into_index().unwrap();
    for k in [51, 1 << 40, usize::MAX] {
        assert_eq!(index.exact_search(data.row(0), k).unwrap().len(), 50);
        assert_eq!(
            index
                .search(data.row(0), k, &strata::SearchParams::with_ef(8))
                .unwrap()
                .len(),
            50
        );
    }
}
