//! The generation's deleted ordinals as a copy-on-write bitset: a snapshot
//! is a clone (one `Arc`), and a delete copies only the list of block
//! pointers (one per 4,096 ordinals) and the block it changes, if a
//! snapshot still holds them.

use std::sync::Arc;

/// Words per block: 4,096 ordinals.
const BLOCK_WORDS: usize = 64;
const BLOCK_BITS: usize = BLOCK_WORDS * 64;

type Block = [u64; BLOCK_WORDS];

/// A set of ordinals, blocks allocated on the first delete in them.
#[derive(Clone, Default)]
pub(super) struct DeletedBits {
    blocks: Arc<Vec<Option<Arc<Block>>>>,
}

impl DeletedBits {
    #[inline]
    pub(super) fn contains(&self, ord: u32) -> bool {
        let ord = ord as usize;
        match self.blocks.get(ord / BLOCK_BITS) {
            Some(Some(b)) => b[ord % BLOCK_BITS / 64] >> (ord % 64) & 1 == 1,
            _ => false,
        }
    }

    /// Adds `ord`; whether it was not there.
    pub(super) fn insert(&mut self, ord: u32) -> bool {
        let ord = ord as usize;
        let blocks = Arc::make_mut(&mut self.blocks);
        let at = ord / BLOCK_BITS;
        if blocks.len() <= at {
            blocks.resize(at + 1, None);
        }
        let block = Arc::make_mut(blocks[at].get_or_insert_with(|| Arc::new([0; BLOCK_WORDS])));
        let (word, bit) = (ord % BLOCK_BITS / 64, ord % 64);
        let fresh = block[word] >> bit & 1 == 0;
        block[word] |= 1 << bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_does_not_see_later_inserts() {
        let mut bits = DeletedBits::default();
        assert!(bits.insert(5) && bits.insert(70_000) && !bits.insert(5));
        let snap = bits.clone();
        assert!(bits.insert(6) && bits.insert(10_000));
        assert!(snap.contains(5) && snap.contains(70_000));
        assert!(!snap.contains(6) && !snap.contains(10_000));
        assert!(bits.contains(6) && bits.contains(10_000) && bits.contains(5));
        assert!(!bits.contains(7) && !bits.contains(u32::MAX));
    }
}
