//! Every single-bit flip and every truncation of a small index's graph and
//! vectors files, for every quantizer kind: opening with full verification
//! detects each flip (a typed error, never a panic), and every truncation
//! fails at open. Opening without verification either fails with a typed
//! error or yields an index whose searches complete without panicking.
//! (Release builds only: about three million opens.)

use rayon::prelude::*;
use strata::dataset::clustered;
use strata::{
    BuildParams, BuiltIndex, Generation, IndexBuilder, Metric, Quantization, SearchParams,
};

fn small(quantization: Quantization) -> BuiltIndex {
    let data = clustered(48, 8, 3, 0.2, 9);
    let params = BuildParams {
        metric: Metric::L2,
        quantization,
        m: 4,
        ef_construction: 16,
        seed: Some(9),
        threads: 1,
        pq_m: Some(4),
        pq_train_size: 48,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(8, params).unwrap();
    b.add_rows(&data.data).unwrap();
    b.build().unwrap()
}

const KINDS: [Quantization; 6] = [
    Quantization::None,
    Quantization::Int8,
    Quantization::Pq,
    Quantization::Binary,
    Quantization::Lvq8,
    Quantization::Lvq4x8,
];

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[bit / 8] ^= 1 << (bit % 8);
    v
}

#[test]
#[cfg_attr(debug_assertions, ignore = "millions of opens: run with --release")]
fn every_bit_flip_is_detected_by_verification() {
    for kind in KINDS {
        let built = small(kind);
        let (g, v) = (built.graph_bytes(), built.vectors_bytes());
        Generation::from_bytes(g, v).expect("the pristine files open");
        let undetected: Vec<String> = (0..g.len() * 8)
            .into_par_iter()
            .filter_map(|bit| {
                Generation::from_bytes(&flip(g, bit), v)
                    .ok()
                    .map(|_| format!("graph bit {bit}"))
            })
            .chain((0..v.len() * 8).into_par_iter().filter_map(|bit| {
                Generation::from_bytes(g, &flip(v, bit))
                    .ok()
                    .map(|_| format!("vectors bit {bit}"))
            }))
            .collect();
        assert!(
            undetected.is_empty(),
            "{kind:?}: {} flips not detected, e.g. {:?}",
            undetected.len(),
            &undetected[..undetected.len().min(5)]
        );
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "hundreds of thousands of opens: run with --release"
)]
fn flips_without_verification_fail_cleanly_or_search() {
    // The mmap path without verification: every flip of the graph file
    // either fails validation or leaves an index that searches without
    // panicking and returns at most k results.
    for kind in KINDS {
        let built = small(kind);
        let (g, v) = (built.graph_bytes(), built.vectors_bytes());
        let dir = tempfile::tempdir().unwrap();
        built.write(dir.path()).unwrap();
        let graph_path = dir.path().join("g00000001.graph");
        let query = [0.1f32; 8];
        // Every byte once (one bit each, rotating), through the real mmap open.
        for byte in 0..g.len() {
            let bad = flip(g, byte * 8 + byte % 8);
            std::fs::write(&graph_path, &bad).unwrap();
            if let Ok(index) = Generation::open(dir.path()) {
                for ef in [1, 16] {
                    if let Ok(hits) = index.search(&query, 5, &SearchParams::with_ef(ef)) {
                        assert!(hits.len() <= 5);
                    }
                }
                let _ = index.exact_search(&query, 5);
                let _ = index.verify();
            }
        }
        let _ = v;
    }
}

#[test]
fn every_truncation_fails_at_open() {
    for kind in KINDS {
        let built = small(kind);
        let (g, v) = (built.graph_bytes(), built.vectors_bytes());
        for cut in 0..g.len() {
            assert!(
                Generation::from_bytes(&g[..cut], v).is_err(),
                "{kind:?}: graph cut at {cut} opened"
            );
        }
        for cut in 0..v.len() {
            assert!(
                Generation::from_bytes(g, &v[..cut]).is_err(),
                "{kind:?}: vectors cut at {cut} opened"
            );
        }
    }
}
