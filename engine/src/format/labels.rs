//! The `labels` section (kind 11, version 6): every vector's labels, as
//! one inverted list per label, so that a label resolves to a set of
//! ordinals by reading its list rather than by scanning the index.
//! Layout: `format-spec/graph-file.md`, "labels".
//!
//! ```text
//! offset        size     field
//!      0           4     label_count L   u32
//!      4           4     reserved        u32, zero
//!      8           8     posting_count T u64
//!     16     8·(L+1)     starts          u64: list i is postings[starts[i]..starts[i+1]]
//!  16+8(L+1)     4·L     labels          u32, strictly ascending
//!   ...          4·T     postings        u32 ordinals, strictly ascending within a list, < count
//! ```
//!
//! Open checks the length formula and the reserved word (O(1)); a lookup
//! checks the bounds of the one list it reads; full verification checks
//! everything else (O(L + T)), as for the id maps.

use super::layout::bad;
use crate::error::Result;
use crate::limits::MAX_LABELS_PER_VECTOR;

/// Bytes before `starts`.
pub(crate) const HEADER: usize = 16;

/// The section's bytes for `n` ordinals whose labels `labels_of(o)` gives
/// (each sorted and without duplicates, at most
/// [`MAX_LABELS_PER_VECTOR`]).
pub(crate) fn encode<'a>(n: usize, labels_of: impl Fn(usize) -> &'a [u32]) -> Vec<u8> {
    let mut pairs: Vec<(u32, u32)> = (0..n)
        .flat_map(|o| labels_of(o).iter().map(move |&l| (l, o as u32)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut labels: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    labels.dedup();
    let mut starts = Vec::with_capacity(labels.len() + 1);
    for (i, p) in pairs.iter().enumerate() {
        if i == 0 || pairs[i - 1].0 != p.0 {
            starts.push(i as u64);
        }
    }
    starts.push(pairs.len() as u64);
    let mut out = Vec::with_capacity(HEADER + 8 * starts.len() + 4 * (labels.len() + pairs.len()));
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    starts
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
    labels
        .iter()
        .for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
    pairs
        .iter()
        .for_each(|p| out.extend_from_slice(&p.1.to_le_bytes()));
    out
}

/// A zero-copy view of a `labels` section (empty without one).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LabelsView<'a> {
    starts: &'a [u64],
    labels: &'a [u32],
    postings: &'a [u32],
}

impl<'a> LabelsView<'a> {
    /// Checks the section's length against its counts and the reserved
    /// word (I16), and returns the view. `bytes` starts 8-byte aligned.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<LabelsView<'a>> {
        if bytes.len() < HEADER {
            return Err(bad(
                "section labels length",
                format!("at least {HEADER} bytes"),
                bytes.len(),
            ));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let l = word(0) as u64;
        if word(4) != 0 {
            return Err(bad("section labels reserved word", 0, word(4)));
        }
        let t = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let want = (l + 1)
            .checked_mul(8)
            .and_then(|s| s.checked_add(l.checked_mul(4)?))
            .and_then(|s| s.checked_add(t.checked_mul(4)?))
            .and_then(|s| s.checked_add(HEADER as u64));
        if want != Some(bytes.len() as u64) {
            return Err(bad(
                "section labels length",
                format!("16 + 8·({l} + 1) + 4·{l} + 4·{t} bytes (its label and posting counts)"),
                bytes.len(),
            ));
        }
        let (l, t) = (l as usize, t as usize);
        let labels_at = HEADER + 8 * (l + 1);
        let postings_at = labels_at + 4 * l;
        let view = (|| {
            Some(LabelsView {
                starts: bytemuck::try_cast_slice(&bytes[HEADER..labels_at]).ok()?,
                labels: bytemuck::try_cast_slice(&bytes[labels_at..postings_at]).ok()?,
                postings: bytemuck::try_cast_slice(&bytes[postings_at..postings_at + 4 * t])
                    .ok()?,
            })
        })();
        view.ok_or_else(|| bad("section labels alignment", "8-byte aligned", "unaligned"))
    }

    /// How many distinct labels the section lists.
    pub(crate) fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// How many (label, vector) pairs it holds.
    pub(crate) fn posting_count(&self) -> usize {
        self.postings.len()
    }

    /// The ordinals carrying `label`, ascending (empty if none does). A
    /// list whose bounds are out of order or past the postings is
    /// corruption.
    pub(crate) fn postings(&self, label: u32) -> Result<&'a [u32]> {
        let Ok(i) = self.labels.binary_search(&label) else {
            return Ok(&[]);
        };
        self.list(i)
    }

    /// The `i`-th label (ascending) and its list.
    pub(crate) fn list_at(&self, i: usize) -> Result<(u32, &'a [u32])> {
        Ok((self.labels[i], self.list(i)?))
    }

    fn list(&self, i: usize) -> Result<&'a [u32]> {
        let (s, e) = (self.starts[i], self.starts[i + 1]);
        usize::try_from(s)
            .ok()
            .zip(usize::try_from(e).ok())
            .and_then(|(s, e)| self.postings.get(s..e))
            .ok_or_else(|| {
                bad(
                    format!("section labels list {i}"),
                    format!(
                        "bounds ascending within the {} postings",
                        self.postings.len()
                    ),
                    format!("{s}..{e}"),
                )
            })
    }

    /// The labels of every ordinal `0..n`, as `(starts, labels)`: those of
    /// ordinal `o` are `labels[starts[o]..starts[o + 1]]`, ascending.
    pub(crate) fn per_ordinal(&self, n: usize) -> Result<(Vec<usize>, Vec<u32>)> {
        let mut count = vec![0usize; n + 1];
        for i in 0..self.labels.len() {
            for &o in self.list(i)? {
                if let Some(c) = count.get_mut(o as usize + 1) {
                    *c += 1;
                }
            }
        }
        for o in 0..n {
            count[o + 1] += count[o];
        }
        let mut fill = count.clone();
        let mut values = vec![0u32; count[n]];
        // Lists in ascending label order: each ordinal's labels ascend.
        for (i, &label) in self.labels.iter().enumerate() {
            for &o in self.list(i)? {
                if let Some(at) = fill.get_mut(o as usize) {
                    values[*at] = label;
                    *at += 1;
                }
            }
        }
        Ok((count, values))
    }

    /// Full verification (part of I15): labels strictly ascending, list
    /// bounds from 0 to the posting count, every list non-empty with
    /// strictly ascending ordinals below `n`, and at most
    /// [`MAX_LABELS_PER_VECTOR`] labels per vector.
    pub(crate) fn verify(&self, n: usize) -> Result<()> {
        if let Some(i) = (1..self.labels.len()).find(|&i| self.labels[i - 1] >= self.labels[i]) {
            return Err(bad(
                format!("section labels label {i}"),
                "labels strictly ascending",
                format!("{} after {}", self.labels[i], self.labels[i - 1]),
            ));
        }
        let last = self.starts.last().copied().unwrap_or(0);
        if self.starts.first() != Some(&0) || last != self.postings.len() as u64 {
            return Err(bad(
                "section labels starts",
                format!("0 first and {} last", self.postings.len()),
                format!("{:?} first, {last} last", self.starts.first()),
            ));
        }
        let mut per_vector = vec![0u32; n];
        for i in 0..self.labels.len() {
            let list = self.list(i)?;
            let ascending = list.windows(2).all(|w| w[0] < w[1]);
            if list.is_empty() || !ascending || list.last().is_some_and(|&o| o as usize >= n) {
                return Err(bad(
                    format!("section labels list {i} (label {})", self.labels[i]),
                    format!("a non-empty list of ordinals ascending below {n}"),
                    format!("{} ordinals, ascending: {ascending}", list.len()),
                ));
            }
            for &o in list {
                per_vector[o as usize] += 1;
                if per_vector[o as usize] as usize > MAX_LABELS_PER_VECTOR {
                    return Err(bad(
                        format!("section labels, ordinal {o}"),
                        format!("at most {MAX_LABELS_PER_VECTOR} labels per vector"),
                        "more",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        words
    }

    #[test]
    fn encodes_inverted_lists_and_reads_them_back() {
        let rows: Vec<Vec<u32>> = vec![vec![3, 9], vec![], vec![9], vec![0, 3, u32::MAX], vec![3]];
        let bytes = encode(rows.len(), |o| &rows[o]);
        let words = aligned(&bytes);
        let view_bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
        let v = LabelsView::parse(view_bytes).unwrap();
        v.verify(rows.len()).unwrap();
        assert_eq!((v.label_count(), v.posting_count()), (4, 7));
        assert_eq!(v.postings(3).unwrap(), [0, 3, 4]);
        assert_eq!(v.postings(9).unwrap(), [0, 2]);
        assert_eq!(v.postings(u32::MAX).unwrap(), [3]);
        assert!(v.postings(4).unwrap().is_empty());
        let (starts, values) = v.per_ordinal(rows.len()).unwrap();
        for (o, want) in rows.iter().enumerate() {
            assert_eq!(&values[starts[o]..starts[o + 1]], &want[..], "ordinal {o}");
        }
        // One ordinal too many for the verified count.
        assert!(v.verify(3).is_err());
        // Every truncation, and a length off by one word, is refused at parse.
        for cut in 0..bytes.len() {
            assert!(LabelsView::parse(&view_bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut reserved = bytes.clone();
        reserved[5] = 1;
        assert!(LabelsView::parse(&reserved).is_err());
    }

    #[test]
    fn verification_catches_disorder_and_bad_bounds() {
        let rows: Vec<Vec<u32>> = vec![vec![1], vec![1, 2], vec![2]];
        let good = encode(rows.len(), |o| &rows[o]);
        // starts at 16: [0, 2, 4]; labels at 40: [1, 2]; postings at 48: [0, 1, 1, 2].
        let cases: [(&str, usize, u32); 5] = [
            ("labels out of order", 40, 3),
            ("postings out of order", 48, 1),
            ("ordinal past count", 60, 7),
            ("list bound past the postings", 24, 9),
            ("empty list", 24, 0),
        ];
        for (name, at, value) in cases {
            let mut b = good.clone();
            if at == 24 {
                b[at..at + 8].copy_from_slice(&(value as u64).to_le_bytes());
            } else {
                b[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            let words = aligned(&b);
            let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..b.len()];
            let v = LabelsView::parse(bytes).unwrap();
            assert!(v.verify(rows.len()).is_err(), "{name}");
        }
        // An out-of-bounds list is an error at lookup too, not a panic.
        let mut b = good.clone();
        b[24..32].copy_from_slice(&99u64.to_le_bytes());
        let words = aligned(&b);
        let v = LabelsView::parse(&bytemuck::cast_slice::<u64, u8>(&words)[..b.len()]).unwrap();
        assert!(v.postings(1).is_err());
        assert!(v.per_ordinal(3).is_err());
    }
}
