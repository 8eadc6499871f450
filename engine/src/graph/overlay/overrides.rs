//! Level-0 lists of generation nodes, replaced in memory once logged rows
//! link to them (the generation's file is immutable).
//!
//! A generation node that gets a back-link from a logged row gets a block
//! `[count, id × m0]` of its own here, initialised from its list in the
//! file and then updated like any other block under construction
//! (`links.rs`): searches read the block when it exists, the file's list
//! otherwise. Blocks are allocated [`SPAN`] nodes at a time, on first use
//! (an overlay of 25k rows over a 25k generation touches most spans: about
//! 130 bytes per generation node at m0 = 32, 3.3 MB). Their nodes' mutexes
//! are [`STRIPES`] striped locks: a linking thread holds one node lock at a
//! time (`LinkBlocks::write_own`, `link_back`), so sharing cannot deadlock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Generation nodes per allocation.
const SPAN: usize = 256;

/// Mutexes shared by the generation's nodes (node `o` uses `o % STRIPES`).
const STRIPES: usize = 1024;

/// [`SPAN`] nodes' blocks, and which of them are in use.
struct Span {
    /// Bit `i` set (with `Release`, after the block is initialised): node
    /// `i` of the span has its block.
    present: Box<[AtomicU32]>,
    blocks: Box<[AtomicU32]>,
}

/// The replaced level-0 lists of a generation's `n` nodes.
pub(super) struct Overrides {
    n: usize,
    /// `1 + m0` words per block.
    stride: usize,
    spans: Box<[OnceLock<Span>]>,
    locks: Box<[Mutex<()>]>,
}

impl Overrides {
    /// None yet, for `n` generation nodes of level-0 capacity `m0`.
    pub(super) fn new(n: usize, m0: usize) -> Overrides {
        Overrides {
            n,
            stride: 1 + m0,
            spans: (0..n.div_ceil(SPAN)).map(|_| OnceLock::new()).collect(),
            locks: (0..STRIPES.min(n.max(1))).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Generation nodes covered.
    pub(super) fn len(&self) -> usize {
        self.n
    }

    /// Node `o`'s block, if it has one (read without locking, as
    /// `links.rs` reads blocks).
    #[inline]
    pub(super) fn get(&self, o: u32) -> Option<&[AtomicU32]> {
        let (s, i) = (o as usize / SPAN, o as usize % SPAN);
        let span = self.spans.get(s)?.get()?;
        if span.present[i / 32].load(Ordering::Acquire) & (1 << (i % 32)) == 0 {
            return None;
        }
        Some(&span.blocks[i * self.stride..(i + 1) * self.stride])
    }

    /// Node `o`'s block, made from `file` (its list in the file) if it has
    /// none yet. The caller holds [`Overrides::lock`]`(o)`, so that no two
    /// threads initialise one block.
    pub(super) fn get_or_copy(
        &self,
        o: u32,
        file: impl FnOnce(&mut dyn FnMut(u32)),
    ) -> &[AtomicU32] {
        let (s, i) = (o as usize / SPAN, o as usize % SPAN);
        let stride = self.stride;
        let span = self.spans[s].get_or_init(|| Span {
            present: (0..SPAN.div_ceil(32)).map(|_| AtomicU32::new(0)).collect(),
            blocks: (0..SPAN * stride).map(|_| AtomicU32::new(0)).collect(),
        });
        let block = &span.blocks[i * stride..(i + 1) * stride];
        let bit = 1 << (i % 32);
        if span.present[i / 32].load(Ordering::Acquire) & bit == 0 {
            let mut count = 0;
            file(&mut |x| {
                if count + 1 < stride {
                    block[1 + count].store(x, Ordering::Relaxed);
                    count += 1;
                }
            });
            block[0].store(count as u32, Ordering::Release);
            span.present[i / 32].fetch_or(bit, Ordering::Release);
        }
        block
    }

    /// The mutex held to change node `o`'s block.
    pub(super) fn lock(&self, o: u32) -> &Mutex<()> {
        &self.locks[o as usize % self.locks.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_starts_as_the_file_list_and_is_seen_once_present() {
        let o = Overrides::new(600, 4);
        assert!(o.get(300).is_none());
        let b = o.get_or_copy(300, |f: &mut dyn FnMut(u32)| {
            for x in [7, 8, 9, 10, 11, 12] {
                f(x)
            }
        });
        // Capacity 4: the file's list is cut, never overflows the block.
        assert_eq!(b[0].load(Ordering::Relaxed), 4);
        let seen = o.get(300).expect("present");
        let ids: Vec<u32> = seen[1..5]
            .iter()
            .map(|x| x.load(Ordering::Relaxed))
            .collect();
        assert_eq!(ids, [7, 8, 9, 10]);
        // Its neighbours in the span are still the file's.
        assert!(o.get(299).is_none() && o.get(301).is_none());
        // A second copy keeps what the block holds.
        b[0].store(1, Ordering::Release);
        let again = o.get_or_copy(300, |f: &mut dyn FnMut(u32)| f(99));
        assert_eq!(again[0].load(Ordering::Relaxed), 1);
        assert!(o.get(600).is_none(), "out of range is none, not a panic");
    }
}
