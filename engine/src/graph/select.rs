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
    out.clear();
    for c in sorted {
        if out.len() >= max {
            break;
        }
        if out.iter().all(|&r| between(c.id, r) >= c.d) {
            out.push(c.id);
        }
    }
}
