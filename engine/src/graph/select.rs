//! The diverse-neighbour heuristic shared by the build and the log overlay.

use super::search::Cand;

/// The diverse-neighbour heuristic (HNSW paper, Algorithm 4, as hnswlib
/// applies it): take candidates closest first (`sorted` by distance to the
/// base), keep one only if it is closer to the base than to every
/// neighbour already kept. `between(a, b)` is the distance of two nodes.
pub(crate) fn select_diverse(
    sorted: &[Cand],
    max: usize,
    out: &mut Vec<u32>,
    between: impl Fn(u32, u32) -> f32,
) {
    select_robust(sorted, max, &[1.0], out, between);
}

/// Vamana's robust prune with one pass per factor of `alphas` (each at
/// least 1 keeps more than the one before): candidates closest first
/// (`sorted` by distance to the base), one is kept if for every neighbour
/// `r` already kept `alpha · between(c, r) ≥ d(c)`, until `max` are kept.
/// [`select_diverse`] is the one pass at factor 1; a later factor above 1
/// adds candidates the first pass pruned that are not much closer to a
/// kept neighbour than to the base (longer edges).
pub(crate) fn select_robust(
    sorted: &[Cand],
    max: usize,
    alphas: &[f32],
    out: &mut Vec<u32>,
    between: impl Fn(u32, u32) -> f32,
) {
    out.clear();
    // Per candidate, how many of the first kept neighbours it is known to
    // pass: passing at one factor passes at every larger one, and `out`
    // only grows, so a later pass resumes there instead of recomputing.
    // One pass needs no memory of it (no allocation on the build's hot
    // path, where `select_diverse` runs for every link list it writes).
    let mut passed = vec![0usize; if alphas.len() > 1 { sorted.len() } else { 0 }];
    for &alpha in alphas {
        for (i, c) in sorted.iter().enumerate() {
            if out.len() >= max {
                return;
            }
            let mut first_pass = 0;
            let done = passed.get_mut(i).unwrap_or(&mut first_pass);
            if *done == usize::MAX {
                continue;
            }
            while *done < out.len() && alpha * between(c.id, out[*done]) >= c.d {
                *done += 1;
            }
            if *done == out.len() {
                out.push(c.id);
                *done = usize::MAX;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line: the base at 0, candidates at 1, 2, 3, 10.
    fn line() -> (Vec<Cand>, impl Fn(u32, u32) -> f32) {
        let at = [1.0f32, 2.0, 3.0, 10.0];
        let sorted = (0..4u32)
            .map(|i| Cand {
                d: at[i as usize],
                id: i,
            })
            .collect();
        (sorted, move |a: u32, b: u32| {
            (at[a as usize] - at[b as usize]).abs()
        })
    }

    #[test]
    fn robust_prune_with_factor_one_is_the_diverse_heuristic() {
        let (sorted, between) = line();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        select_diverse(&sorted, 4, &mut a, &between);
        select_robust(&sorted, 4, &[1.0], &mut b, &between);
        assert_eq!(a, b);
        // Everything beyond the first is closer to it than to the base.
        assert_eq!(a, vec![0]);
    }

    #[test]
    fn a_larger_factor_keeps_longer_edges_in_order_and_up_to_max() {
        let (sorted, between) = line();
        let mut out = Vec::new();
        // 2 is kept at alpha 3 (3 · |2 - 1| = 3 ≥ 2), 3 at alpha 3 too
        // (3 · |3 - 2| = 3 ≥ 3), 10 (3 · 7 = 21 ≥ 10).
        select_robust(&sorted, 4, &[1.0, 3.0], &mut out, &between);
        assert_eq!(out, vec![0, 1, 2, 3]);
        select_robust(&sorted, 2, &[1.0, 3.0], &mut out, &between);
        assert_eq!(out, vec![0, 1]);
        // At 1.5: not 2 (1.5 · |2 - 1| < 2), 3 (1.5 · 2 ≥ 3), 10
        // (1.5 · 9 ≥ 10 and 1.5 · 7 ≥ 10).
        select_robust(&sorted, 4, &[1.0, 1.5], &mut out, &between);
        assert_eq!(out, vec![0, 2, 3]);
    }
}
