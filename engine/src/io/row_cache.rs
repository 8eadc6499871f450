//! A bounded cache of full-precision rows read directly from disk.
//!
//! Direct (`O_DIRECT`) reads bypass the page cache, so that rows read once
//! for rescoring never push links and codes out of it; but then no row is
//! ever served from memory, however much RAM the process may use. A
//! [`RowCache`] gives direct reads a memory budget of their own: rows read
//! from disk are kept (CLOCK replacement: a row used again since the hand
//! last passed survives one more round), and a later query that rescores a
//! kept row copies it instead of reading it. The budget is explicit
//! ([`OpenOptions::row_cache_bytes`](crate::OpenOptions::row_cache_bytes)),
//! so the graph's share of RAM is never at the kernel's discretion.
//!
//! The cache is split into shards by ordinal, each behind its own mutex, so
//! that threads rarely contend; a hit costs one lock and one row copy.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Shards of a cache (a power of two).
const SHARDS: usize = 16;
/// Bytes a cached row costs beyond its floats (hash entry, owner, bit).
const ENTRY_OVERHEAD: usize = 24;

struct Shard {
    /// Ordinal → slot.
    map: HashMap<u32, u32>,
    /// Slot → ordinal.
    owners: Vec<u32>,
    /// Slot → used since the hand last passed.
    referenced: Vec<bool>,
    /// Slot `s`'s row at `s * row_floats`.
    rows: Vec<f32>,
    hand: usize,
    capacity: usize,
}

/// A sharded CLOCK cache of rows of `row_floats` floats.
pub(crate) struct RowCache {
    shards: Box<[Mutex<Shard>]>,
    row_floats: usize,
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache")
            .field("row_floats", &self.row_floats)
            .field("capacity_rows", &self.capacity_rows())
            .finish()
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RowCache {
    /// A cache holding as many rows of `row_floats` floats as fit in
    /// `budget` bytes (`None` if not even one row per shard fits).
    pub(crate) fn new(budget: usize, row_floats: usize) -> Option<RowCache> {
        let per_row = row_floats * 4 + ENTRY_OVERHEAD;
        let rows = budget / per_row.max(1);
        let per_shard = rows / SHARDS;
        if per_shard == 0 || row_floats == 0 {
            return None;
        }
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    owners: Vec::new(),
                    referenced: Vec::new(),
                    rows: Vec::new(),
                    hand: 0,
                    capacity: per_shard,
                })
            })
            .collect();
        Some(RowCache { shards, row_floats })
    }

    fn shard(&self, ord: u32) -> &Mutex<Shard> {
        // Fibonacci hashing: neighbouring ordinals land in different shards.
        let h = ord.wrapping_mul(0x9E37_79B9) >> (32 - SHARDS.trailing_zeros());
        &self.shards[h as usize]
    }

    /// Rows the cache can hold.
    pub(crate) fn capacity_rows(&self) -> usize {
        self.shards.iter().map(|s| lock(s).capacity).sum()
    }

    /// Bytes of rows held now.
    pub(crate) fn resident_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).owners.len())
            .sum::<usize>()
            * self.row_floats
            * 4
    }

    /// Copies the row of `ord` into `out` if cached (`out.len()` must be
    /// the row length); whether it was.
    pub(crate) fn get(&self, ord: u32, out: &mut [f32]) -> bool {
        let mut s = lock(self.shard(ord));
        let Some(&slot) = s.map.get(&ord) else {
            return false;
        };
        let slot = slot as usize;
        let at = slot * self.row_floats;
        match s.rows.get(at..at + self.row_floats) {
            Some(row) if row.len() == out.len() => out.copy_from_slice(row),
            _ => return false,
        }
        s.referenced[slot] = true;
        true
    }

    /// Keeps `row` as the row of `ord`, evicting by CLOCK when full.
    pub(crate) fn put(&self, ord: u32, row: &[f32]) {
        if row.len() != self.row_floats {
            return;
        }
        let mut guard = lock(self.shard(ord));
        let s = &mut *guard;
        if let Some(&slot) = s.map.get(&ord) {
            s.referenced[slot as usize] = true;
            return;
        }
        let slot = if s.owners.len() < s.capacity {
            if s.owners.is_empty() {
                // Exactly the budget, allocated once (no doubling overshoot).
                s.rows.reserve_exact(s.capacity * self.row_floats);
                s.owners.reserve_exact(s.capacity);
                s.referenced.reserve_exact(s.capacity);
                s.map.reserve(s.capacity);
            }
            s.owners.push(ord);
            s.referenced.push(false);
            s.rows.extend_from_slice(row);
            s.owners.len() - 1
        } else {
            // Advance the hand past recently used rows (clearing their bit).
            while s.referenced[s.hand] {
                s.referenced[s.hand] = false;
                s.hand = (s.hand + 1) % s.capacity;
            }
            let slot = s.hand;
            s.hand = (s.hand + 1) % s.capacity;
            s.map.remove(&s.owners[slot]);
            s.owners[slot] = ord;
            let at = slot * self.row_floats;
            s.rows[at..at + self.row_floats].copy_from_slice(row);
            slot
        };
        s.map.insert(ord, slot as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: u32) -> Vec<f32> {
        vec![v as f32; 4]
    }

    #[test]
    fn too_small_a_budget_is_no_cache() {
        assert!(RowCache::new(100, 4).is_none());
        assert!(RowCache::new(1 << 20, 0).is_none());
    }

    #[test]
    fn rows_come_back_as_stored_and_capacity_holds() {
        let c = RowCache::new(SHARDS * 4 * (16 + ENTRY_OVERHEAD), 4).unwrap();
        assert_eq!(c.capacity_rows(), SHARDS * 4);
        let mut out = [0f32; 4];
        assert!(!c.get(7, &mut out));
        for o in 0..1_000 {
            c.put(o, &row(o));
        }
        let mut hits = 0;
        for o in 0..1_000 {
            if c.get(o, &mut out) {
                assert_eq!(out.to_vec(), row(o), "ord {o}");
                hits += 1;
            }
        }
        assert!(hits <= c.capacity_rows(), "{hits}");
        assert!(hits > 0);
        assert!(c.resident_bytes() <= c.capacity_rows() * 16);
    }

    #[test]
    fn clock_keeps_rows_used_again() {
        // One shard's worth of ordinals: find ones that share shard 0.
        let c = RowCache::new(SHARDS * 2 * (16 + ENTRY_OVERHEAD), 4).unwrap();
        let same: Vec<u32> = (0..10_000u32)
            .filter(|&o| std::ptr::eq(c.shard(o), &c.shards[0]))
            .take(3)
            .collect();
        let (a, b, x) = (same[0], same[1], same[2]);
        let mut out = [0f32; 4];
        c.put(a, &row(a));
        c.put(b, &row(b));
        assert!(c.get(a, &mut out)); // a is referenced, b is not
        c.put(x, &row(x)); // evicts b
        assert!(c.get(a, &mut out));
        assert!(!c.get(b, &mut out));
        assert!(c.get(x, &mut out));
        assert_eq!(out.to_vec(), row(x));
    }
}
