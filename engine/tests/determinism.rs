//! Pins reproducibility: a seeded single-threaded build produces
//! byte-identical graph and vectors files run to run (for every metric and
//! quantization: none, int8, product quantization, binary), a different
//! seed produces different files (and different PQ codebooks), the trained
//! quantizer parameters depend only on the data and the seed (not on the
//! thread count), an unseeded build gets a fresh build id, and a
//! multi-threaded build (not byte-reproducible) still reaches the recall
//! threshold.

mod common;

use common::*;
use strata::dataset::clustered;
use strata::{
    BuildParams, BuiltIndex, Generation, IndexBuilder, Metric, Quantization, SearchParams,
};

/// Every quantization, PQ with m = 5 (16 dimensions split 4/3/3/3/3) and a
/// small training sample so debug builds stay quick.
const QUANTS: [Quantization; 6] = [
    Quantization::None,
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];

fn seeded(metric: Metric, quant: Quantization, seed: u64) -> BuildParams {
    BuildParams {
        pq_m: Some(5),
        pq_train_size: 500,
        ..params(metric, quant, seed)
    }
}

/// The bytes of a graph section, by name.
fn section_bytes<'a>(built: &'a BuiltIndex, name: &str) -> &'a [u8] {
    let info = Generation::from_bytes(built.graph_bytes(), built.vectors_bytes())
        .unwrap()
        .info();
    let (_, off, len, _) = info
        .sections
        .iter()
        .find(|s| s.0 == name)
        .copied()
        .unwrap_or_else(|| panic!("no section {name}"));
    &built.graph_bytes()[off as usize..(off + len) as usize]
}

#[test]
fn seeded_single_thread_builds_are_byte_identical() {
    let data = clustered(2_000, 16, 10, 0.15, 41);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for quant in QUANTS {
            let p = seeded(metric, quant, 1234);
            assert_eq!(p.threads, 1);
            let a = build(&data, p.clone());
            let b = build(&data, p);
            assert!(
                a.graph_bytes() == b.graph_bytes(),
                "{metric:?}/{quant:?}: graph bytes differ between identical seeded builds"
            );
            assert!(
                a.vectors_bytes() == b.vectors_bytes(),
                "{metric:?}/{quant:?}: vectors bytes differ between identical seeded builds"
            );
            // Written files equal the in-memory bytes too.
            let dir = tempfile::tempdir().unwrap();
            a.write(dir.path()).unwrap();
            let g = std::fs::read(dir.path().join("g00000001.graph")).unwrap();
            assert!(g == b.graph_bytes());
        }
    }
}

/// `build_into` streams both files to disk section by section; they are
/// byte-identical to the in-memory build's (same seeded single-thread
/// inputs), for every metric and quantization, and the report matches.
/// Also pins `add_rows_vec` (rows prepared in place) against `add_rows`,
/// with a dimension that needs padding (13 -> 16).
#[test]
fn streamed_build_equals_in_memory_build() {
    for dim in [16, 13] {
        let data = clustered(1_500, dim, 10, 0.15, 46);
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for quant in QUANTS {
                let p = seeded(metric, quant, 99);
                let mem = build(&data, p.clone());
                let mut b = IndexBuilder::new(data.dim, p).unwrap();
                b.add_rows_vec(data.data.clone()).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let report = b.build_into(dir.path(), &|_| {}).unwrap();
                let g = std::fs::read(dir.path().join("g00000001.graph")).unwrap();
                let v = std::fs::read(dir.path().join("g00000001.vectors")).unwrap();
                assert!(
                    g == mem.graph_bytes(),
                    "{dim}/{metric:?}/{quant:?}: graph file"
                );
                assert!(
                    v == mem.vectors_bytes(),
                    "{dim}/{metric:?}/{quant:?}: vectors file"
                );
                assert_eq!(report.build_id, mem.build_id());
                assert_eq!(report.repaired, mem.repaired());
                // Only the index's files are left in the directory.
                let mut names: Vec<String> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                assert_eq!(
                    names,
                    ["LOCK", "MANIFEST", "g00000001.graph", "g00000001.vectors"]
                );
                Generation::open(dir.path()).unwrap();
            }
        }
    }
}

/// `add_rows_vec` validates like `add_rows`: a bad row is refused with its
/// row number and leaves the builder empty.
#[test]
fn add_rows_vec_refuses_bad_rows() {
    let p = params(Metric::Cosine, Quantization::Int8, 1);
    let mut b = IndexBuilder::new(3, p).unwrap();
    let e = b
        .add_rows_vec(vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        .unwrap_err();
    assert!(
        matches!(e, strata::Error::ZeroVector { row: Some(1) }),
        "{e:?}"
    );
    assert!(b.is_empty());
    let e = b.add_rows_vec(vec![1.0, f32::NAN, 0.0]).unwrap_err();
    assert!(
        matches!(
            e,
            strata::Error::NonFinite {
                row: Some(0),
                component: 1
            }
        ),
        "{e:?}"
    );
    assert!(b.is_empty());
    b.add_rows_vec(vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0]).unwrap();
    assert_eq!(b.len(), 2);
    // A second call appends (by copy), ids continuing.
    b.add_rows_vec(vec![0.0, 0.0, 3.0]).unwrap();
    assert_eq!(b.len(), 3);
}

#[test]
fn different_seed_gives_different_files() {
    let data = clustered(2_000, 16, 10, 0.15, 42);
    for quant in QUANTS {
        let a = build(&data, seeded(Metric::L2, quant, 1));
        let b = build(&data, seeded(Metric::L2, quant, 2));
        if quant == Quantization::Pq {
            // k-means seeding depends on the seed.
            assert!(
                section_bytes(&a, "quant_params") != section_bytes(&b, "quant_params"),
                "PQ codebooks do not depend on the seed"
            );
        }
        assert!(a.graph_bytes() != b.graph_bytes(), "{quant:?}: graph bytes");
        assert!(
            a.vectors_bytes() != b.vectors_bytes(),
            "{quant:?}: vectors bytes"
        );
        let (ia, ib) = (in_memory(a), in_memory(b));
        assert_ne!(ia.info().build_id, ib.info().build_id);
        assert_eq!(ia.info().seed, 1);
        assert_eq!(ib.info().seed, 2);
    }
}

/// Training sees the rows in insertion order with the build's seed, and
/// k-means assignment is a pure function of the centroids, so the
/// quantizer parameters (int8 ranges, PQ codebooks, the binary centre) are
/// the same whatever the thread count, even though the graph is not.
#[test]
fn quantizer_parameters_do_not_depend_on_the_thread_count() {
    let data = clustered(1_500, 16, 10, 0.15, 45);
    for quant in [
        Quantization::Int8,
        Quantization::Pq,
        Quantization::Binary,
        Quantization::Lvq8,
        Quantization::Lvq4x8,
    ] {
        let one = build(&data, seeded(Metric::Cosine, quant, 7));
        let mut p = seeded(Metric::Cosine, quant, 7);
        p.threads = 2;
        let two = build(&data, p);
        assert!(
            section_bytes(&one, "quant_params") == section_bytes(&two, "quant_params"),
            "{quant:?}: quantizer parameters differ between 1 and 2 threads"
        );
    }
}

#[test]
fn unseeded_builds_get_distinct_build_ids() {
    let data = clustered(300, 8, 3, 0.15, 43);
    let mut p = params(Metric::L2, Quantization::Int8, 0);
    p.seed = None;
    let a = in_memory(build(&data, p.clone()));
    let b = in_memory(build(&data, p));
    assert_ne!(a.info().build_id, b.info().build_id);
}

#[test]
fn different_input_same_seed_gives_different_build_id() {
    // The build id is derived from the input when seeded, so vectors files
    // of two different seeded builds cannot be mixed up.
    let a = clustered(500, 8, 3, 0.15, 44);
    let mut b = a.clone();
    b.data[17] += 0.5;
    let ia = build(&a, params(Metric::L2, Quantization::None, 9));
    let ib = build(&b, params(Metric::L2, Quantization::None, 9));
    assert!(ia.vectors_bytes()[..4096] != ib.vectors_bytes()[..4096]);
    assert_ne!(in_memory(ia).info().build_id, in_memory(ib).info().build_id);
}

#[test]
fn multi_threaded_build_reaches_recall_threshold() {
    let data = clustered(4_000, 32, 20, 0.15, 11);
    let queries = perturbed_queries(&data, 200, 0.1, 12);
    for (metric, min) in [(Metric::L2, 0.985), (Metric::Cosine, 0.985)] {
        let truth = truth(&data, &queries, 10, metric);
        let mut p = params(metric, Quantization::Int8, 5);
        p.threads = 2;
        let index = in_memory(build(&data, p));
        let r = recall(
            &search_all(&index, &queries, 10, &SearchParams::with_ef(64)),
            &truth,
            10,
        );
        eprintln!("threads=2 {metric:?}/Int8 recall@10 ef=64: {r:.4}");
        assert!(r >= min, "{metric:?}: threads=2 recall {r:.4} < {min}");
        index.verify().unwrap();
        let stats = index.degree_stats();
        assert_eq!(stats.isolated, 0, "no isolated node after a parallel build");
        assert!(stats.max <= 32);
    }
}
