//! Pins the rescoring I/O backends (`strata::IoMode`): every mode returns
//! exactly what mapped reads return (same ids, bit-identical distances) for
//! every code kind and metric, for `search`, `search_batch` and the live
//! (logged) index, including dimensions whose rows are not aligned to the
//! 512-byte blocks of direct reads and beams larger than one io_uring
//! submission queue; the portable pread pool is always tested (io_uring
//! only where the kernel offers it); and an injected failed read (EIO, a
//! short read) is an `Error::Io` naming the vectors file, never a panic or
//! a wrong result.

mod common;

use common::*;
use strata::dataset::clustered;
use strata::io::ReadFault;
use strata::{
    Durability, Error, Generation, Index, IoMode, Metric, OpenOptions, Quantization, SearchParams,
    Writer,
};

const KINDS: [Quantization; 6] = [
    Quantization::None,
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];

/// The direct modes this machine can run (io_uring only if available).
fn modes() -> Vec<IoMode> {
    let mut m = vec![IoMode::Auto, IoMode::Willneed, IoMode::Pread];
    if strata::io::uring_available() {
        m.push(IoMode::Uring);
    } else {
        eprintln!("io_uring unavailable here: IoMode::Uring not tested");
    }
    m
}

fn open(dir: &std::path::Path, io: IoMode) -> Generation {
    Generation::open_with(
        dir,
        &OpenOptions {
            io,
            ..Default::default()
        },
    )
    .expect("open")
}

fn check_equal(dim: usize, metric: Metric, quant: Quantization, ef: usize) {
    let data = clustered(1_200, dim, 12, 0.1, 11);
    let queries = perturbed_queries(&data, 40, 0.05, 5);
    let mut p = params(metric, quant, 3);
    if quant == Quantization::Pq {
        p.pq_train_size = 500;
    }
    let dir = tempfile::tempdir().unwrap();
    build(&data, p).write(dir.path()).unwrap();
    let sp = SearchParams::with_ef(ef);
    let mapped = open(dir.path(), IoMode::Mmap);
    let want = mapped.search_batch(&queries, 10, &sp).unwrap();
    for io in modes() {
        let index = open(dir.path(), io);
        assert_eq!(index.open_options().io, io);
        let batch = index.search_batch(&queries, 10, &sp).unwrap();
        assert_eq!(
            batch, want,
            "{io} {metric:?} {quant:?} dim {dim}: search_batch"
        );
        // Several passes one query at a time: auto switches ways between them.
        for _ in 0..3 {
            for (q, w) in queries.data.chunks_exact(dim).zip(&want) {
                assert_eq!(
                    &index.search(q, 10, &sp).unwrap(),
                    w,
                    "{io} {metric:?} {quant:?}"
                );
            }
        }
    }
}

#[test]
fn every_mode_matches_mapped_reads_bit_for_bit() {
    for quant in KINDS {
        for metric in [Metric::Cosine, Metric::L2, Metric::InnerProduct] {
            // dim 24: 128-byte rows, never 512-aligned; dim 128: 512-byte rows.
            check_equal(24, metric, quant, 32);
        }
        check_equal(128, Metric::Cosine, quant, 32);
    }
}

#[test]
fn beams_wider_than_a_submission_queue_match() {
    // 300 rows rescored per query: three rounds of the 128-entry ring.
    check_equal(40, Metric::L2, Quantization::Int8, 300);
}

#[test]
fn the_pread_fallback_is_always_available() {
    let data = clustered(300, 16, 4, 0.1, 2);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::Cosine, Quantization::Int8, 1))
        .write(dir.path())
        .unwrap();
    let before = strata::io::io_stats();
    let index = open(dir.path(), IoMode::Pread);
    let hits = index
        .search(data.row(5), 3, &SearchParams::with_ef(16))
        .unwrap();
    assert_eq!(hits[0].id, 5);
    let after = strata::io::io_stats();
    assert!(
        after.direct_rows >= before.direct_rows + 16,
        "{before:?} {after:?}"
    );
}

#[test]
fn failed_reads_are_typed_errors() {
    let data = clustered(400, 16, 4, 0.1, 4);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::L2, Quantization::Int8, 2))
        .write(dir.path())
        .unwrap();
    let queries = perturbed_queries(&data, 8, 0.05, 1);
    let mut direct = vec![IoMode::Pread];
    if strata::io::uring_available() {
        direct.push(IoMode::Uring);
    }
    for io in direct {
        for fault in [ReadFault::Eio, ReadFault::Short] {
            let options = OpenOptions {
                io,
                read_fault: Some(fault),
                ..Default::default()
            };
            let index = Generation::open_with(dir.path(), &options).unwrap();
            let sp = SearchParams::with_ef(16);
            for r in [
                index.search(data.row(1), 5, &sp).map(|_| ()),
                index.search_batch(&queries, 5, &sp).map(|_| ()),
            ] {
                match r {
                    Err(Error::Io { path, source }) => {
                        assert!(
                            path.extension().is_some_and(|e| e == "vectors"),
                            "{io} {fault:?}: {}",
                            path.display()
                        );
                        match fault {
                            ReadFault::Eio => assert_eq!(source.raw_os_error(), Some(libc_eio())),
                            ReadFault::Short => {
                                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
                            }
                        }
                    }
                    other => panic!("{io} {fault:?}: expected Error::Io, got {other:?}"),
                }
            }
            let live = Index::open_with(dir.path(), &options).unwrap();
            assert!(matches!(
                live.search(data.row(2), 5, &sp),
                Err(Error::Io { .. })
            ));
        }
    }
}

/// EIO's errno on Linux and the BSDs.
fn libc_eio() -> i32 {
    5
}

#[test]
fn the_live_index_reads_through_the_chosen_mode() {
    let data = clustered(800, 16, 8, 0.1, 6);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::Cosine, Quantization::Int8, 5))
        .write(dir.path())
        .unwrap();
    {
        let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
        for i in 0..50u64 {
            w.insert(10_000 + i, data.row(i as usize * 3)).unwrap();
        }
        w.delete(7).unwrap();
        w.flush().unwrap();
    }
    let queries = perturbed_queries(&data, 30, 0.05, 9);
    let sp = SearchParams::with_ef(24);
    let want = Index::open_with(
        dir.path(),
        &OpenOptions {
            io: IoMode::Mmap,
            ..Default::default()
        },
    )
    .unwrap()
    .search_batch(&queries, 10, &sp)
    .unwrap();
    for io in modes() {
        let live = Index::open_with(
            dir.path(),
            &OpenOptions {
                io,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(live.search_batch(&queries, 10, &sp).unwrap(), want, "{io}");
        live.refresh().unwrap();
        assert_eq!(live.with_generation(|i| i.open_options().io), io);
    }
}

#[test]
fn modes_parse_and_print() {
    for m in IoMode::ALL {
        assert_eq!(m.name().parse::<IoMode>(), Ok(m));
        assert_eq!(m.to_string(), m.name());
    }
    assert!("direct".parse::<IoMode>().is_err());
    assert_eq!(IoMode::default(), IoMode::Auto);
}

#[test]
fn the_rescoring_bound_at_z_1_equals_full_rescoring_without_clipping() {
    for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
        let data = clustered(1_500, 32, 10, 0.2, 21);
        let queries = perturbed_queries(&data, 60, 0.1, 8);
        let mut p = params(metric, Quantization::Int8, 9);
        p.int8_clip = 0.0;
        let dir = tempfile::tempdir().unwrap();
        build(&data, p).write(dir.path()).unwrap();
        let with = |cut| {
            Generation::open_with(
                dir.path(),
                &OpenOptions {
                    rescore_cut: cut,
                    io: IoMode::Pread,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let full = with(None);
        let bounded = with(Some(1.0));
        let loose = with(Some(0.05));
        for ef in [10, 32, 100] {
            let sp = SearchParams::with_ef(ef);
            let want = full.search_batch(&queries, 10, &sp).unwrap();
            assert_eq!(
                bounded.search_batch(&queries, 10, &sp).unwrap(),
                want,
                "{metric:?} ef {ef}"
            );
            // A tighter cut still returns k results, closest first.
            for r in loose.search_batch(&queries, 10, &sp).unwrap() {
                assert_eq!(r.len(), 10);
                assert!(r.windows(2).all(|w| w[0].distance <= w[1].distance));
            }
        }
    }
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let data = clustered(100, 8, 2, 0.1, 1);
        let dir = tempfile::tempdir().unwrap();
        build(&data, params(Metric::Cosine, Quantization::Int8, 1))
            .write(dir.path())
            .unwrap();
        let r = Generation::open_with(
            dir.path(),
            &OpenOptions {
                rescore_cut: Some(bad),
                ..Default::default()
            },
        );
        assert!(
            matches!(
                r,
                Err(Error::InvalidParameter {
                    name: "rescore_cut",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_one_thread_pipeline_over_many_queries_matches_single_searches() {
    // 150 queries on one thread: the pipeline fills, cycles its slots many
    // times and drains; each answer equals that query's own search.
    let data = clustered(1_500, 32, 10, 0.1, 21);
    let queries = perturbed_queries(&data, 150, 0.05, 4);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::Cosine, Quantization::Int8, 2))
        .write(dir.path())
        .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for ef in [16, 200] {
        let sp = SearchParams::with_ef(ef);
        let mapped = open(dir.path(), IoMode::Mmap);
        let want: Vec<_> = queries
            .data
            .chunks_exact(32)
            .map(|q| mapped.search(q, 10, &sp).unwrap())
            .collect();
        for io in modes() {
            let index = open(dir.path(), io);
            let got = pool
                .install(|| index.search_batch(&queries, 10, &sp))
                .unwrap();
            assert_eq!(got, want, "{io} ef {ef}");
        }
    }
}

#[test]
fn the_row_cache_serves_repeated_rows_with_identical_answers() {
    let data = clustered(1_000, 24, 8, 0.1, 17);
    let queries = perturbed_queries(&data, 60, 0.05, 8);
    let dir = tempfile::tempdir().unwrap();
    build(&data, params(Metric::L2, Quantization::Int8, 4))
        .write(dir.path())
        .unwrap();
    let sp = SearchParams::with_ef(32);
    let want = open(dir.path(), IoMode::Mmap)
        .search_batch(&queries, 10, &sp)
        .unwrap();
    // 24 KiB holds ~200 of the 1,000 rows (96 B each): hits and evictions.
    for (io, budget) in [(IoMode::Pread, 24 << 10), (IoMode::Pread, 8 << 20)]
        .into_iter()
        .chain(strata::io::uring_available().then_some((IoMode::Uring, 24 << 10)))
    {
        let index = Generation::open_with(
            dir.path(),
            &OpenOptions {
                io,
                row_cache_bytes: budget,
                ..Default::default()
            },
        )
        .unwrap();
        let (capacity, _) = index.row_cache_bytes();
        assert!(capacity > 0 && capacity <= budget, "{capacity} of {budget}");
        let before = strata::io::io_stats().cached_rows;
        for pass in 0..3 {
            assert_eq!(
                index.search_batch(&queries, 10, &sp).unwrap(),
                want,
                "{io} {budget} batch pass {pass}"
            );
            for (q, w) in queries.data.chunks_exact(24).zip(&want) {
                assert_eq!(&index.search(q, 10, &sp).unwrap(), w, "{io} {budget}");
            }
        }
        assert!(
            strata::io::io_stats().cached_rows > before,
            "{io} {budget}: no hits"
        );
        let (_, resident) = index.row_cache_bytes();
        assert!(
            resident > 0 && resident <= capacity,
            "{resident} of {capacity}"
        );
    }
    // Mapped reads have the page cache: no row cache is made.
    let mapped = Generation::open_with(
        dir.path(),
        &OpenOptions {
            io: IoMode::Mmap,
            row_cache_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(mapped.row_cache_bytes(), (0, 0));
}
