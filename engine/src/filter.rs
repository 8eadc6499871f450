//! Filtered search: which vectors a query may return.
//!
//! A [`Filter`] names the allowed external ids (a list, a bitmap over ids,
//! or a predicate). A search resolves it once (once per batch in
//! [`Index::search_batch`](crate::Index::search_batch)) to a set of the
//! generation's ordinals with the deleted ones removed, counts the
//! matches, and plans (see [`SearchParams::filter`](crate::SearchParams::filter)):
//!
//! - **few matches** (at most `k`, or at most
//!   [`SearchParams::exact_below`](crate::SearchParams::exact_below)
//!   rows, by default [`DEFAULT_EXACT_BELOW`]): an exact scan of just the
//!   matching rows;
//! - **otherwise** the graph, traversed through every node but returning
//!   only matching ones, with a visit limit of as many distances as
//!   there are matches (past it a scan of the matches is cheaper, as in
//!   Lucene); hitting the limit, or finding fewer than `min(k, matches)`,
//!   finishes with the exact scan.
//!
//! So a filtered search returns `min(k, matches)` results, never fewer, and
//! never a vector the filter rejects, a deleted or a superseded one.

use crate::error::Result;
use crate::label_expr::LabelExpr;
use std::sync::{Arc, Mutex};

/// With a filter and no [`SearchParams::exact_below`](crate::SearchParams::exact_below),
/// a search scans the matching rows exactly when at most this many match.
///
/// Measured on npm-minilm (50k × 384, int8, ef 32, one thread, a batch of
/// 300 queries, random allow-lists; QPS exact scan / graph with
/// [`VISIT_FACTOR`] 4): 2,000 matches 3,345 / 1,746; 3,000: 2,434 /
/// 2,522; 4,000: 1,929 / 2,565; 6,000: 1,181 / 4,084; 8,000: 815 / 3,724.
pub const DEFAULT_EXACT_BELOW: usize = 3_000;

/// A filtered graph search stops (and scans the matches exactly) after
/// this many times as many distances as there are matches. On the runs of
/// [`DEFAULT_EXACT_BELOW`], at 3,000 matches factor 1 fell back on 99 %
/// of queries (1,452 QPS), 2 on 49 % (1,565), 4 on none (2,522); at 4,000,
/// 1 on 67 % (1,474), 2 and 4 on none (3,112, 2,565). A code distance
/// costs a fraction of a float32 one, so the graph may spend more of them
/// than the scan would spend rows.
pub const VISIT_FACTOR: u64 = 4;

/// The stamp of a view that may still change (the writer's own state):
/// its resolutions are not cached.
pub(crate) const UNSTAMPED: u64 = u64::MAX;

/// A number no other call returns (generations and published views take
/// one, as the key of a resolved filter).
pub(crate) fn next_stamp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The ids a search may return.
///
/// ```
/// use strata::{dataset, BuildParams, Filter, IndexBuilder, SearchParams};
/// let data = dataset::clustered(2_000, 16, 8, 0.05, 1);
/// let mut b = IndexBuilder::new(16, BuildParams { seed: Some(1), ..Default::default() })?;
/// b.add_rows(&data.data)?;
/// let index = b.build()?.into_index()?;
/// let even = Filter::predicate(|id| id % 2 == 0);
/// let params = SearchParams { filter: Some(&even), ..SearchParams::with_ef(64) };
/// let hits = index.search(data.row(3), 10, &params)?;
/// assert_eq!(hits.len(), 10);
/// assert!(hits.iter().all(|h| h.id % 2 == 0));
/// let few = Filter::ids([5, 7, 9]);
/// let hits = index.search(data.row(3), 10, &SearchParams { filter: Some(&few), ..Default::default() })?;
/// let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
/// ids.sort();
/// assert_eq!(ids, [5, 7, 9]);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone)]
pub struct Filter {
    inner: Inner,
    /// The last resolution, with the (generation, snapshot) it was made
    /// for: a filter reused across searches of one snapshot resolves once.
    cache: Arc<Mutex<Option<Resolved>>>,
}

/// A resolution and the (generation, snapshot) it was made for.
type Resolved = ((u64, u64), Arc<OrdinalSet>);

#[derive(Clone)]
enum Inner {
    /// Sorted, without duplicates.
    Ids(Arc<Vec<u64>>),
    /// Bit `id % 64` of word `id / 64`; ids past the end are rejected.
    Bitmap {
        words: Arc<Vec<u64>>,
        ones: usize,
    },
    Predicate(Arc<dyn Fn(u64) -> bool + Send + Sync>),
    Labels(Arc<LabelExpr>),
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Ids(ids) => write!(f, "Filter::ids({} ids)", ids.len()),
            Inner::Bitmap { words, ones } => {
                write!(f, "Filter::id_bitmap({} words, {ones} set)", words.len())
            }
            Inner::Predicate(_) => write!(f, "Filter::predicate(..)"),
            Inner::Labels(e) => write!(f, "Filter::labels({e})"),
        }
    }
}

impl Filter {
    fn of(inner: Inner) -> Filter {
        Filter {
            inner,
            cache: Arc::default(),
        }
    }

    /// The resolution for `key`, reusing the last one if it was for the
    /// same key, else made by `make` (and kept).
    pub(crate) fn resolve_cached(
        &self,
        key: (u64, u64),
        make: impl FnOnce() -> Result<OrdinalSet>,
    ) -> Result<Arc<OrdinalSet>> {
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, set)) = lock().as_ref() {
            if *k == key {
                return Ok(set.clone());
            }
        }
        let set = Arc::new(make()?);
        *lock() = Some((key, set.clone()));
        Ok(set)
    }

    /// Allows exactly these ids (duplicates and ids not in the index are
    /// harmless).
    pub fn ids(ids: impl IntoIterator<Item = u64>) -> Filter {
        let mut ids: Vec<u64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Filter::of(Inner::Ids(Arc::new(ids)))
    }

    /// Allows id `i` when bit `i % 64` of `words[i / 64]` is set (ids past
    /// the bitmap are rejected).
    pub fn id_bitmap(words: Vec<u64>) -> Filter {
        let ones = words.iter().map(|w| w.count_ones() as usize).sum();
        Filter::of(Inner::Bitmap {
            words: Arc::new(words),
            ones,
        })
    }

    /// Allows the ids for which `f` is true. It must be a pure function of
    /// the id: it is called once per vector of the index when a search
    /// first uses the filter on an index snapshot, and the result is kept
    /// for later searches of the same snapshot (build a new filter to
    /// change it). It must not search the same index.
    pub fn predicate(f: impl Fn(u64) -> bool + Send + Sync + 'static) -> Filter {
        Filter::of(Inner::Predicate(Arc::new(f)))
    }

    /// Allows the vectors whose labels match `expression` (see
    /// [`LabelExpr`] for the syntax: `label = 3`, `label in (1, 2)`,
    /// `not`, `and`, `or`, parentheses); a malformed one is
    /// [`Error::FilterExpression`](crate::Error::FilterExpression), naming
    /// the byte where it goes wrong. A vector without labels matches
    /// exactly the expressions that hold for the empty set (such as
    /// `not label = 3`).
    ///
    /// The generation's vectors resolve by reading one inverted list per
    /// label named (the graph file's `labels` section), never by a scan;
    /// logged inserts by their own labels.
    pub fn labels(expression: &str) -> Result<Filter> {
        Ok(Filter::label_expr(LabelExpr::parse(expression)?))
    }

    /// [`Filter::labels`] from a parsed expression.
    pub fn label_expr(expression: LabelExpr) -> Filter {
        Filter::of(Inner::Labels(Arc::new(expression)))
    }

    /// Whether the filter allows the vector `id` carrying `labels` (id
    /// filters look at `id` only, label filters at `labels` only).
    pub fn allows(&self, id: u64, labels: &[u32]) -> bool {
        match &self.inner {
            Inner::Labels(e) => e.matches(labels),
            _ => self.allows_id(id),
        }
    }

    fn allows_id(&self, id: u64) -> bool {
        match &self.inner {
            Inner::Labels(_) => false,
            Inner::Ids(ids) => ids.binary_search(&id).is_ok(),
            Inner::Bitmap { words, .. } => usize::try_from(id / 64)
                .ok()
                .and_then(|w| words.get(w))
                .is_some_and(|w| w >> (id % 64) & 1 == 1),
            Inner::Predicate(f) => f(id),
        }
    }

    /// The allowed ordinals among `n`, given each ordinal's id (`id_of`),
    /// the ordinal of an id (`ordinal_of`), which are deleted, and the
    /// ordinals carrying a label (`postings(label, words)` sets their bits
    /// in `words`; it fails on a corrupt list).
    pub(crate) fn resolve(
        &self,
        n: usize,
        id_of: impl Fn(u32) -> u64,
        ordinal_of: impl Fn(u64) -> Option<u32>,
        deleted: impl Fn(u32) -> bool,
        postings: &mut dyn FnMut(u32, &mut [u64]) -> Result<()>,
    ) -> Result<OrdinalSet> {
        if let Inner::Labels(e) = &self.inner {
            let mut set = OrdinalSet::from_words(e.eval_bitmap(n, postings)?);
            set.remove_where(deleted);
            return Ok(set);
        }
        let mut set = OrdinalSet::new(n);
        let mut add = |o: u32| {
            if !deleted(o) {
                set.insert(o);
            }
        };
        // Looking each allowed id up costs about log2(n) probes; testing
        // every ordinal one against a bitmap, but log2(len) against a list,
        // so a list is never dearer to look up.
        let by_lookup = |allowed: usize| {
            allowed.saturating_mul(usize::BITS as usize - n.leading_zeros() as usize) < n
        };
        match &self.inner {
            Inner::Ids(ids) => ids
                .iter()
                .filter_map(|&id| ordinal_of(id))
                .for_each(&mut add),
            Inner::Bitmap { words, ones } if by_lookup(*ones) => {
                for (w, &word) in words.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let id = w as u64 * 64 + bits.trailing_zeros() as u64;
                        bits &= bits - 1;
                        if let Some(o) = ordinal_of(id) {
                            add(o);
                        }
                    }
                }
            }
            _ => (0..n as u32)
                .filter(|&o| self.allows_id(id_of(o)))
                .for_each(add),
        }
        Ok(set)
    }
}

/// A set of ordinals `0..n` as a bitset, with its size.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrdinalSet {
    words: Vec<u64>,
    len: usize,
}

impl OrdinalSet {
    pub(crate) fn new(n: usize) -> Self {
        OrdinalSet {
            words: vec![0; n.div_ceil(64)],
            len: 0,
        }
    }

    /// The set of the bits of `words` (bit `o % 64` of word `o / 64`).
    fn from_words(words: Vec<u64>) -> Self {
        let len = words.iter().map(|w| w.count_ones() as usize).sum();
        OrdinalSet { words, len }
    }

    /// Removes the ordinals for which `gone` is true.
    fn remove_where(&mut self, gone: impl Fn(u32) -> bool) {
        for (w, word) in self.words.iter_mut().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                if gone(w as u32 * 64 + b) {
                    *word &= !(1 << b);
                    self.len -= 1;
                }
            }
        }
    }

    fn insert(&mut self, o: u32) {
        let (w, b) = (o as usize / 64, o % 64);
        if let Some(word) = self.words.get_mut(w) {
            if *word >> b & 1 == 0 {
                *word |= 1 << b;
                self.len += 1;
            }
        }
    }

    #[inline]
    pub(crate) fn contains(&self, o: u32) -> bool {
        self.words
            .get(o as usize / 64)
            .is_some_and(|w| w >> (o % 64) & 1 == 1)
    }

    /// How many ordinals are in the set.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The ordinals in the set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let o = w as u32 * 64 + bits.trailing_zeros();
                    bits &= bits - 1;
                    o
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of filter resolves to the same set, by lookup and by
    /// scan, with deleted ordinals left out.
    #[test]
    fn every_kind_resolves_to_the_allowed_live_ordinals() {
        let n = 1_000usize;
        // Ordinal o holds id 3·o + 1: ids not in the index exist.
        let id_of = |o: u32| 3 * o as u64 + 1;
        let ordinal_of = |id: u64| (id % 3 == 1 && id / 3 < n as u64).then_some((id / 3) as u32);
        let deleted = |o: u32| o.is_multiple_of(7);
        let allowed = |id: u64| id.is_multiple_of(5) || id == 3_000_000;
        let expect: Vec<u32> = (0..n as u32)
            .filter(|&o| allowed(id_of(o)) && !deleted(o))
            .collect();
        let all_ids: Vec<u64> = (0..4 * n as u64).filter(|&id| allowed(id)).collect();
        let mut words = vec![0u64; 4 * n / 64 + 1];
        for &id in &all_ids {
            words[id as usize / 64] |= 1 << (id % 64);
        }
        let few: Vec<u64> = all_ids.iter().copied().take(20).collect();
        let few_expect: Vec<u32> = few
            .iter()
            .filter_map(|&id| ordinal_of(id))
            .filter(|&o| !deleted(o))
            .collect();
        let cases = [
            ("ids, many", Filter::ids(all_ids.clone()), &expect),
            (
                "ids, few (lookup)",
                Filter::ids(few.iter().copied().chain(few.clone())),
                &few_expect,
            ),
            ("bitmap", Filter::id_bitmap(words), &expect),
            ("predicate", Filter::predicate(allowed), &expect),
        ];
        for (name, f, want) in cases {
            let set = f
                .resolve(n, id_of, ordinal_of, deleted, &mut |_, _| Ok(()))
                .unwrap();
            let got: Vec<u32> = set.iter().collect();
            assert_eq!(&got, want, "{name}");
            assert_eq!(set.len(), want.len(), "{name}");
            assert!(want.iter().all(|&o| set.contains(o)), "{name}");
            assert!(!set.contains(n as u32 + 5), "{name}");
        }
        assert!(!Filter::id_bitmap(vec![u64::MAX]).allows(64, &[]));
        assert!(Filter::id_bitmap(vec![u64::MAX]).allows(63, &[]));
        assert!(!Filter::id_bitmap(Vec::new()).allows(u64::MAX, &[]));
    }
}
