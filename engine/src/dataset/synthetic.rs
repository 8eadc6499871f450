//! Seeded synthetic data and exact brute-force ground truth.
//!
//! [`clustered`] is bit-for-bit reproducible on every platform: it draws only
//! raw `u64`s from ChaCha8 (which is portable) and turns them into floats with
//! basic IEEE arithmetic, `sqrt`, and its own series for `ln`, `sin` and
//! `cos` rather than the platform's math library.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::f64::consts::{FRAC_PI_2, LN_2, SQRT_2};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::Vectors;

/// Generates `n` points of dimension `dim` around `clusters` centres.
///
/// The centres are drawn uniformly in `[-1, 1]^dim` from a ChaCha8 generator
/// seeded with `seed`; each point is then a uniformly chosen centre plus
/// independent `N(0, spread²)` noise per component (Box-Muller transform).
/// The output depends only on the arguments, identically on every platform.
///
/// `clusters` of zero is treated as one. If `dim` is zero the result is empty.
///
/// # Panics
///
/// If `n * dim` or `clusters * dim` overflows `usize`, or the allocation fails.
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vectors {
    let clusters = clusters.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if n == 0 || dim == 0 {
        return Vectors {
            dim,
            data: Vec::new(),
        };
    }
    let centre_len = clusters
        .checked_mul(dim)
        .expect("clusters * dim overflows usize");
    let total = n.checked_mul(dim).expect("n * dim overflows usize");

    let centres: Vec<f32> = (0..centre_len)
        .map(|_| (unit(&mut rng) * 2.0 - 1.0) as f32)
        .collect();
    let mut normal = Normal::default();
    let spread = f64::from(spread);
    let mut data = Vec::with_capacity(total);
    for _ in 0..n {
        let c = below(&mut rng, clusters);
        for &x in &centres[c * dim..(c + 1) * dim] {
            data.push((f64::from(x) + spread * normal.sample(&mut rng)) as f32);
        }
    }
    Vectors { dim, data }
}

/// A uniform sample in `[0, 1)` with 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform index in `0..n` (multiply-shift; the bias is below `n / 2^64`).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Standard normal samples by Box-Muller, keeping the second of each pair.
#[derive(Default)]
struct Normal {
    spare: Option<f64>,
}

impl Normal {
    fn sample(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - unit(rng); // (0, 1], so ln is finite
        let u2 = unit(rng);
        let r = (-2.0 * ln(u1)).sqrt();
        let (s, c) = sin_cos_turns(u2);
        self.spare = Some(r * s);
        r * c
    }
}

/// Natural logarithm of a positive normal `x`, using only basic arithmetic.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)); // [1, 2)
    if m > SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    // ln m = 2 atanh(s) = 2 (s + s³/3 + s⁵/5 + ...), |s| ≤ 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..12 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    exponent as f64 * LN_2 + 2.0 * sum
}

/// `(sin 2πu, cos 2πu)` for `u` in `[0, 1)`, using only basic arithmetic.
fn sin_cos_turns(u: f64) -> (f64, f64) {
    let t = u * 4.0;
    let quadrant = t as u32; // 0..=3
    let theta = (t - f64::from(quadrant)) * FRAC_PI_2; // [0, π/2)
    let t2 = theta * theta;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (theta, 1.0);
    for k in 0..14 {
        s += ts;
        c += tc;
        let k = f64::from(k);
        ts *= -t2 / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        tc *= -t2 / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    match quadrant % 4 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// A neighbour candidate ordered by distance, then row index.
#[derive(Clone, Copy, PartialEq)]
struct Candidate {
    distance: f32,
    id: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Exact k-nearest neighbours of each query among `base`, by brute force.
///
/// Returns, per query, the row indices of the `min(k, base.len())` base
/// vectors with the smallest `distance`, nearest first, ties broken by the
/// smaller row index. A NaN distance ranks after every number, and `-0.0`
/// equals `0.0`. Queries are processed in parallel; the result does not
/// depend on the thread count.
///
/// The ranking is only as accurate as `distance`: for ground truth, pass a
/// function that accumulates in `f64` and rounds the total to `f32` once.
///
/// # Panics
///
/// If both inputs are non-empty and their dimensions differ, or `base` has
/// more than `2^32` rows.
pub fn brute_force_knn(
    base: &Vectors,
    queries: &Vectors,
    k: usize,
    distance: fn(&[f32], &[f32]) -> f32,
) -> Vec<Vec<u32>> {
    assert!(
        base.is_empty() || queries.is_empty() || base.dim == queries.dim,
        "dimension mismatch: base has dimension {}, queries have dimension {}",
        base.dim,
        queries.dim
    );
    assert!(
        u32::try_from(base.len().saturating_sub(1)).is_ok(),
        "brute_force_knn supports at most 2^32 base rows"
    );
    let k = k.min(base.len());
    let query_rows = &queries.data[..queries.len() * queries.dim];
    query_rows
        .par_chunks_exact(queries.dim.max(1))
        .map(|query| {
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for (id, row) in base.rows().enumerate() {
                let d = distance(query, row);
                let candidate = Candidate {
                    // NaN ranks last; `+ 0.0` turns -0.0 into 0.0.
                    distance: if d.is_nan() { f32::INFINITY } else { d + 0.0 },
                    id: id as u32,
                };
                if heap.len() < k {
                    heap.push(candidate);
                } else if let Some(mut worst) = heap.peek_mut() {
                    if candidate < *worst {
                        *worst = candidate;
                    }
                }
            }
            heap.into_sorted_vec().into_iter().map(|c| c.id).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>() as f32
    }

    fn vectors(dim: usize, data: &[f32]) -> Vectors {
        Vectors {
            dim,
            data: data.to_vec(),
        }
    }

    #[test]
    fn clustered_is_deterministic() {
        let a = clustered(500, 16, 8, 0.05, 7);
        let b = clustered(500, 16, 8, 0.05, 7);
        assert_eq!((a.dim, a.len()), (16, 500));
        assert_eq!(a, b);
        assert!(a.data.iter().all(|x| x.is_finite()));
        let c = clustered(500, 16, 8, 0.05, 8);
        assert_ne!(a, c);
    }

    #[test]
    fn clustered_golden_values() {
        // Pins the exact output so any change in the generator, the draw
        // order or the float arithmetic is caught on every platform.
        let v = clustered(3, 2, 2, 0.5, 42);
        let bits: Vec<u32> = v.data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, GOLDEN);
    }

    const GOLDEN: [u32; 6] = [
        1048983375, 1066752650, 3182090956, 1066287089, 1063560607, 3171324145,
    ];

    #[test]
    fn clustered_points_sit_near_centres_with_requested_spread() {
        let spread = 0.1f32;
        let v = clustered(4000, 4, 1, spread, 3);
        // One cluster: the sample mean estimates the centre, which is in [-1, 1].
        let mut mean = [0f64; 4];
        for row in v.rows() {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += f64::from(*x) / 4000.0;
            }
        }
        assert!(mean.iter().all(|m| m.abs() <= 1.0 + 0.01));
        let var: f64 = v
            .rows()
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .map(|(x, m)| (f64::from(*x) - m).powi(2))
            })
            .sum::<f64>()
            / 16000.0;
        let sd = var.sqrt();
        assert!((sd - 0.1).abs() < 0.005, "sd {sd}");
    }

    #[test]
    fn clustered_edge_cases() {
        assert!(clustered(0, 8, 4, 0.1, 1).is_empty());
        assert!(clustered(10, 0, 4, 0.1, 1).is_empty());
        assert_eq!(clustered(10, 3, 0, 0.1, 1).len(), 10);
        // Zero spread puts every point exactly on one of the centres.
        let v = clustered(50, 3, 2, 0.0, 1);
        let mut distinct: Vec<&[f32]> = v.rows().collect();
        distinct.sort_by(|a, b| a.partial_cmp(b).unwrap());
        distinct.dedup();
        assert_eq!(distinct.len(), 2);
    }

    #[test]
    fn series_match_std_math() {
        for i in 1..=1000 {
            let x = f64::from(i) / 1000.0;
            assert!((ln(x) - x.ln()).abs() < 1e-14, "ln {x}");
            let u = f64::from(i - 1) / 1000.0;
            let (s, c) = sin_cos_turns(u);
            let a = u * std::f64::consts::TAU;
            assert!((s - a.sin()).abs() < 1e-14, "sin {u}");
            assert!((c - a.cos()).abs() < 1e-14, "cos {u}");
        }
        assert!((ln(1.0 / (1u64 << 53) as f64) - (2f64).powi(-53).ln()).abs() < 1e-13);
    }

    #[test]
    fn knn_hand_computed() {
        // Points on a line: 0, 1, 3, 4, 10 (row order 3, 0, 4, 1, 2 values).
        let base = vectors(1, &[3.0, 10.0, 0.0, 4.0, 1.0]);
        let queries = vectors(1, &[2.0, 11.0, 3.5]);
        let got = brute_force_knn(&base, &queries, 3, l2);
        // q=2: dists 1,64,4,4,1 -> rows 0 (1), 4 (1), then 2 and 3 tie at 4 -> 2.
        // q=11: dists 64,1,121,49,100 -> 1, 3, 0.
        // q=3.5: dists .25,42.25,12.25,.25,6.25 -> 0, 3 (tie by index), 4.
        assert_eq!(got, vec![vec![0, 4, 2], vec![1, 3, 0], vec![0, 3, 4]]);
    }

    #[test]
    fn knn_two_dims_and_large_k() {
        let base = vectors(2, &[0.0, 0.0, 1.0, 1.0, -1.0, 0.5]);
        let queries = vectors(2, &[0.9, 0.9]);
        // dists: 1.62, 0.02, 3.77
        assert_eq!(
            brute_force_knn(&base, &queries, 10, l2),
            vec![vec![1, 0, 2]]
        );
        assert_eq!(
            brute_force_knn(&base, &queries, 0, l2),
            vec![Vec::<u32>::new()]
        );
    }

    #[test]
    fn knn_nan_ranks_last() {
        fn weird(a: &[f32], b: &[f32]) -> f32 {
            if b[0] == 0.0 {
                f32::NAN
            } else if b[0] == 1.0 {
                -0.0
            } else {
                (a[0] - b[0]).abs()
            }
        }
        let base = vectors(1, &[0.0, 2.0, 1.0, 5.0]);
        let queries = vectors(1, &[2.0]);
        assert_eq!(
            brute_force_knn(&base, &queries, 4, weird),
            vec![vec![1, 2, 3, 0]]
        );
    }

    #[test]
    fn knn_empty_inputs() {
        let base = vectors(2, &[1.0, 2.0]);
        assert!(brute_force_knn(&base, &Vectors::default(), 3, l2).is_empty());
        let got = brute_force_knn(&Vectors::default(), &base, 3, l2);
        assert_eq!(got, vec![Vec::<u32>::new()]);
    }

    #[test]
    fn knn_matches_sorting_on_random_data() {
        let base = clustered(300, 5, 6, 0.2, 11);
        let queries = clustered(20, 5, 6, 0.2, 12);
        let got = brute_force_knn(&base, &queries, 10, l2);
        for (q, ids) in queries.rows().zip(&got) {
            let mut all: Vec<(f32, u32)> = base
                .rows()
                .enumerate()
                .map(|(i, r)| (l2(q, r), i as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = all[..10].iter().map(|p| p.1).collect();
            assert_eq!(ids, &want);
        }
    }
}
