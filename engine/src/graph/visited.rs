//! A visited set that resets in O(1) by bumping an epoch.

/// Marks nodes seen by one search; reused across searches.
#[derive(Default)]
pub(crate) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    /// Starts a new search over `n` nodes.
    pub(crate) fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; true if it was not yet marked in this search.
    /// Nodes beyond the size given to `reset` count as already visited, so a
    /// hostile neighbour id is never followed.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        match self.marks.get_mut(node as usize) {
            Some(m) if *m != self.epoch => {
                *m = self.epoch;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_once_per_epoch_and_rejects_out_of_range() {
        let mut v = Visited::default();
        v.reset(4);
        assert!(v.insert(2));
        assert!(!v.insert(2));
        assert!(!v.insert(9));
        v.reset(4);
        assert!(v.insert(2));
        for _ in 0..70_000 {
            v.reset(4);
        }
        assert!(v.insert(3));
    }
}
