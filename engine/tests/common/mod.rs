//! Shared helpers for the integration tests: exact f64-accumulating distance
//! functions (ground truth never comes from the engine), seeded query
//! generation, index construction and recall.
#![allow(dead_code)]

use strata::dataset::{brute_force_knn, Vectors};
use strata::{BuildParams, BuiltIndex, Generation, IndexBuilder, Metric, Neighbor, Quantization};

/// Squared Euclidean distance, accumulated in f64.
pub fn l2_f64(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>() as f32
}

/// `1 − ⟨a, b⟩`, accumulated in f64.
pub fn ip_f64(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>()) as f32
}

/// `1 − cos(a, b)`, accumulated in f64.
pub fn cos_f64(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (1.0 - dot / (na.sqrt() * nb.sqrt())) as f32
}

/// The documented distance convention of `metric`, computed exactly.
pub fn exact_fn(metric: Metric) -> fn(&[f32], &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2_f64,
        Metric::InnerProduct => ip_f64,
        Metric::Cosine => cos_f64,
    }
}

/// Exact top-`k` row numbers of every query.
pub fn truth(data: &Vectors, queries: &Vectors, k: usize, metric: Metric) -> Vec<Vec<u32>> {
    brute_force_knn(data, queries, k, exact_fn(metric))
}

/// SplitMix64: a tiny deterministic generator for test noise.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
}

/// `nq` queries: evenly spaced data rows plus uniform noise of amplitude `noise`.
pub fn perturbed_queries(data: &Vectors, nq: usize, noise: f32, seed: u64) -> Vectors {
    let mut rng = SplitMix(seed);
    let step = (data.len() / nq).max(1);
    let mut out = Vec::with_capacity(nq * data.dim);
    for i in 0..nq {
        let row = data.row((i * step + i % step) % data.len());
        out.extend(row.iter().map(|x| x + noise * rng.symmetric()));
    }
    Vectors {
        dim: data.dim,
        data: out,
    }
}

/// Build parameters with a fixed seed.
pub fn params(metric: Metric, quantization: Quantization, seed: u64) -> BuildParams {
    BuildParams {
        metric,
        quantization,
        m: 16,
        ef_construction: 64,
        seed: Some(seed),
        threads: 1,
        ..Default::default()
    }
}

/// Builds over all rows of `data` (ids = row numbers).
pub fn build(data: &Vectors, params: BuildParams) -> BuiltIndex {
    let mut b = IndexBuilder::new(data.dim, params).expect("valid params");
    b.add_rows(&data.data).expect("valid rows");
    b.build().expect("build")
}

/// Opens built bytes in memory.
pub fn in_memory(built: BuiltIndex) -> Generation {
    built.into_index().expect("a freshly built index opens")
}

/// Mean recall@k of `results` (ids are row numbers) against `truth`.
pub fn recall(results: &[Vec<Neighbor>], truth: &[Vec<u32>], k: usize) -> f64 {
    assert_eq!(results.len(), truth.len());
    let mut hits = 0usize;
    for (r, t) in results.iter().zip(truth) {
        let t = &t[..k.min(t.len())];
        hits += r
            .iter()
            .take(k)
            .filter(|n| t.contains(&(n.id as u32)))
            .count();
    }
    hits as f64 / (truth.len() * k) as f64
}

/// Searches every query of `queries` one by one.
pub fn search_all(
    index: &Generation,
    queries: &Vectors,
    k: usize,
    params: &strata::SearchParams,
) -> Vec<Vec<Neighbor>> {
    queries
        .rows()
        .map(|q| index.search(q, k, params).expect("valid query"))
        .collect()
}

/// `(id, distance bits)` pairs, for bit-exact comparisons.
pub fn bits(results: &[Vec<Neighbor>]) -> Vec<Vec<(u64, u32)>> {
    results
        .iter()
        .map(|r| r.iter().map(|n| (n.id, n.distance.to_bits())).collect())
        .collect()
}

/// Little-endian field readers/writers for hand-built and mutated files
/// (offsets from format-spec/).
pub fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub fn rd64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
pub fn wr32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Exact top-`k` ids among `ids` (rows of `data`, ids = row numbers) for
/// `q` by squared L2 in f64, ties by id: ground truth over a live subset.
pub fn exact_topk_l2(data: &Vectors, ids: &[u64], q: &[f32], k: usize) -> Vec<u64> {
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
