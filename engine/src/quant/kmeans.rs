//! k-means with k-means++ seeding: product-quantizer codebooks, and the
//! locality grouping of a build's rows (`locality.rs`).

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// k-means++ seeding looks at this many points per centroid at most.
const SEEDING_SAMPLE_PER_CENTROID: usize = 16;

/// Squared Euclidean distance, plain sum (training only; not a search kernel).
fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Generation and distance of the centroid closest to `p` (the test oracle).
#[cfg(test)]
fn nearest(p: &[f32], centroids: &[f32], width: usize) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, centre) in centroids.chunks_exact(width).enumerate() {
        let d = l2(p, centre);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// [`nearest`] over dimension-major centroids (`transposed[j * k + c]`):
/// all `k` distances are accumulated one component at a time, which
/// vectorises across centroids. `dist` is scratch of length `k`.
fn nearest_transposed(p: &[f32], transposed: &[f32], k: usize, dist: &mut [f32]) -> usize {
    dist.fill(0.0);
    for (j, x) in p.iter().enumerate() {
        for (d, c) in dist.iter_mut().zip(&transposed[j * k..(j + 1) * k]) {
            *d += (x - c) * (x - c);
        }
    }
    argmin(dist)
}

/// Generation of the smallest value (the first of equals); 0 for an empty or
/// all-NaN slice. The minimum is found first with a branch-free reduction
/// that vectorises, then located.
pub(crate) fn argmin(values: &[f32]) -> usize {
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    values.iter().position(|&v| v == min).unwrap_or(0)
}

/// The nearest of `k` centroids (`k × width`, row-major) for each of
/// `rows`, where `row(r)` gives a row's `width` floats; in parallel on the
/// current rayon pool, the same answer for any thread count.
pub(crate) fn assign_rows<'a>(
    rows: &[u32],
    row: impl Fn(u32) -> &'a [f32] + Sync,
    centroids: &[f32],
    width: usize,
) -> Vec<u32> {
    let k = centroids.len() / width.max(1);
    if k <= 1 {
        return vec![0; rows.len()];
    }
    let mut transposed = vec![0f32; k * width];
    for (c, centre) in centroids.chunks_exact(width).enumerate() {
        for (j, x) in centre.iter().enumerate() {
            transposed[j * k + c] = *x;
        }
    }
    rows.par_iter()
        .map_init(
            || vec![0f32; k],
            |dist, &r| nearest_transposed(row(r), &transposed, k, dist) as u32,
        )
        .collect()
}

/// Clusters `points` (row-major, `width` floats each) into `k` centroids
/// with k-means++ seeding and at most `iterations` Lloyd steps, seeded and
/// deterministic for a given thread count's results (assignment is a pure
/// function of the centroids, so any thread count gives the same answer).
/// With fewer distinct points than `k`, the extra centroids repeat points.
/// Returns `k × width` floats.
pub fn kmeans(points: &[f32], width: usize, k: usize, iterations: usize, seed: u64) -> Vec<f32> {
    let n = points.len() / width.max(1);
    let mut centroids = vec![0f32; k * width];
    if n == 0 || width == 0 || k == 0 {
        return centroids;
    }
    let row = |i: usize| &points[i * width..(i + 1) * width];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // k-means++ on a seeded subsample of at most SEEDING_SAMPLE_PER_CENTROID·k
    // points: each next centre drawn with probability proportional to the
    // squared distance to the nearest centre chosen so far. Seeding costs
    // O(sample·k), so the subsample keeps it small next to the Lloyd steps,
    // which use every point.
    let sample: Vec<usize> = {
        let cap = (SEEDING_SAMPLE_PER_CENTROID * k).max(1);
        if n <= cap {
            (0..n).collect()
        } else {
            rand::seq::index::sample(&mut rng, n, cap).into_vec()
        }
    };
    let m = sample.len();
    let srow = |i: usize| row(sample[i]);
    let first = rng.gen_range(0..m);
    centroids[..width].copy_from_slice(srow(first));
    let mut d2: Vec<f32> = (0..m).map(|i| l2(srow(i), &centroids[..width])).collect();
    for c in 1..k {
        let total: f64 = d2.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut target = rng.gen::<f64>() * total;
            let mut chosen = m - 1;
            for (i, &d) in d2.iter().enumerate() {
                target -= d as f64;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.gen_range(0..m)
        };
        let centre = srow(pick).to_vec();
        centroids[c * width..(c + 1) * width].copy_from_slice(&centre);
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(l2(srow(i), &centre));
        }
    }
    // Lloyd iterations.
    let mut assign = vec![0usize; n];
    let mut transposed = vec![0f32; k * width];
    for _ in 0..iterations {
        for (c, centre) in centroids.chunks_exact(width).enumerate() {
            for (j, x) in centre.iter().enumerate() {
                transposed[j * k + c] = *x;
            }
        }
        let changed: usize = assign
            .par_iter_mut()
            .enumerate()
            .map_init(
                || vec![0f32; k],
                |dist, (i, a)| {
                    let c = nearest_transposed(row(i), &transposed, k, dist);
                    let moved = (*a != c) as usize;
                    *a = c;
                    moved
                },
            )
            .sum();
        let mut sums = vec![0f64; k * width];
        let mut counts = vec![0usize; k];
        for (i, &c) in assign.iter().enumerate() {
            counts[c] += 1;
            for (s, x) in sums[c * width..(c + 1) * width].iter_mut().zip(row(i)) {
                *s += *x as f64;
            }
        }
        // Empty clusters take the points farthest from their centres, one
        // distinct point each (computed once, before any centre moves).
        let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<(f32, usize)> = (0..n)
                .map(|i| {
                    (
                        l2(
                            row(i),
                            &centroids[assign[i] * width..(assign[i] + 1) * width],
                        ),
                        i,
                    )
                })
                .collect();
            let take = empty.len().min(n);
            if take < n {
                far.select_nth_unstable_by(take, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            }
            far.truncate(take);
            far.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (&c, &(_, i)) in empty.iter().zip(&far) {
                let p = row(i).to_vec();
                centroids[c * width..(c + 1) * width].copy_from_slice(&p);
            }
        }
        for c in (0..k).filter(|&c| counts[c] > 0) {
            for (dst, s) in centroids[c * width..(c + 1) * width]
                .iter_mut()
                .zip(&sums[c * width..(c + 1) * width])
            {
                *dst = (*s / counts[c] as f64) as f32;
            }
        }
        if changed == 0 {
            break;
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_separable_clusters() {
        // Four tight clusters far apart in 3-D.
        let centres = [
            [0.0, 0.0, 0.0],
            [10.0, 0.0, 0.0],
            [0.0, 10.0, 0.0],
            [0.0, 0.0, 10.0],
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut points = Vec::new();
        let mut truth = Vec::new();
        for i in 0..400 {
            let c = i % 4;
            truth.push(c);
            for x in centres[c] {
                points.push(x + rng.gen_range(-0.3f32..0.3));
            }
        }
        let got = kmeans(&points, 3, 4, 25, 11);
        // Every true centre has a learned centroid within 0.2.
        for c in &centres {
            let (_, d) = nearest(c, &got, 3);
            assert!(d.sqrt() < 0.2, "centre {c:?} off by {}", d.sqrt());
        }
        // Points of one true cluster all map to one centroid, distinct per cluster.
        let mut label = [usize::MAX; 4];
        for (i, &t) in truth.iter().enumerate() {
            let (c, _) = nearest(&points[i * 3..i * 3 + 3], &got, 3);
            if label[t] == usize::MAX {
                label[t] = c;
            }
            assert_eq!(label[t], c);
        }
        let mut distinct = label.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn is_deterministic_and_handles_fewer_points_than_k() {
        let points: Vec<f32> = (0..30).map(|i| (i % 7) as f32).collect();
        assert_eq!(kmeans(&points, 2, 8, 10, 5), kmeans(&points, 2, 8, 10, 5));
        let few = kmeans(&points[..4], 2, 8, 10, 5);
        assert_eq!(few.len(), 16);
        assert!(few.iter().all(|x| x.is_finite()));
    }
}
