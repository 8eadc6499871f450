//! One log record: framing, encoding and decoding.
//!
//! Version 4 (written by this build):
//!
//! ```text
//! offset  size  field
//!      0     4  body_len u32   bytes after the 12-byte frame
//!      4     4  len_crc  u32   CRC32 of the 4 bytes of body_len
//!      8     4  body_crc u32   CRC32 of the body
//!     12     8  seq      u64   1 for the first record of a log, then +1
//!     20     4  kind     u32   1 insert, 2 delete, 3 upsert, 4 batch begin, 5 batch commit
//!     28     8  id       u64   external id (batch begin/commit: the batch's operation count)
//!     36  4·dim vector   f32   insert and upsert only, as given by the caller
//!      …     4  label_count u32  kinds 6 and 7 only (version 6): 1..=1024
//!      …  4·c   labels   u32   ascending, distinct
//! ```
//!
//! Kinds 6 and 7 (version 6) are insert and upsert of a vector with
//! labels; one without labels is written as kind 1 or 3, byte for byte as
//! in version 4. Version 4 (read only) is version 6 without kinds 6 and 7.
//!
//! Version 3 (read only): the same body after an 8-byte frame
//! `body_len u32, body_crc u32`, kinds 1–3 only.

use crate::format::{rd_u32, rd_u64};
use crate::limits::MAX_LABELS_PER_VECTOR;

/// Bytes before the body in a version-3 log: `body_len` and `body_crc`.
pub(crate) const FRAME_V3: usize = 8;
/// Bytes before the body in a version-4 log: `body_len`, `len_crc`, `body_crc`.
pub(crate) const FRAME: usize = 12;
/// Body bytes without a vector.
pub(crate) const BODY_FIXED: usize = 20;

/// Kind code of a batch-begin record.
const KIND_BEGIN: u32 = 4;
/// Kind code of a batch-commit record.
const KIND_COMMIT: u32 = 5;
/// Kind code of an insert with labels (version 6).
const KIND_INSERT_LABELLED: u32 = 6;
/// Kind code of an upsert with labels (version 6).
const KIND_UPSERT_LABELLED: u32 = 7;

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds a new id.
    Insert {
        /// External id.
        id: u64,
        /// The vector as given.
        vector: Vec<f32>,
        /// Its labels, ascending and distinct (empty: none).
        labels: Vec<u32>,
    },
    /// Removes an id.
    Delete {
        /// External id.
        id: u64,
    },
    /// Adds an id, replacing it if present.
    Upsert {
        /// External id.
        id: u64,
        /// The vector as given.
        vector: Vec<f32>,
        /// Its labels, ascending and distinct (empty: none).
        labels: Vec<u32>,
    },
}

impl Op {
    fn kind(&self) -> u32 {
        match self {
            Op::Insert { labels, .. } if !labels.is_empty() => KIND_INSERT_LABELLED,
            Op::Upsert { labels, .. } if !labels.is_empty() => KIND_UPSERT_LABELLED,
            Op::Insert { .. } => 1,
            Op::Delete { .. } => 2,
            Op::Upsert { .. } => 3,
        }
    }

    /// The labels an insert or upsert gives its vector (empty otherwise).
    pub fn labels(&self) -> &[u32] {
        match self {
            Op::Insert { labels, .. } | Op::Upsert { labels, .. } => labels,
            Op::Delete { .. } => &[],
        }
    }

    /// The external id the operation is about.
    pub fn id(&self) -> u64 {
        match self {
            Op::Insert { id, .. } | Op::Delete { id } | Op::Upsert { id, .. } => *id,
        }
    }

    /// Appends the framed version-4 record for sequence number `seq` to `out`.
    pub(crate) fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        let vector = match self {
            Op::Insert { vector, .. } | Op::Upsert { vector, .. } => Some(vector.as_slice()),
            Op::Delete { .. } => None,
        };
        encode_record(seq, self.kind(), self.id(), vector, self.labels(), out);
    }
}

/// Appends a framed version-4 record to `out` (version 6 with labels).
fn encode_record(
    seq: u64,
    kind: u32,
    id: u64,
    vector: Option<&[f32]>,
    labels: &[u32],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    for x in vector.unwrap_or(&[]) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    if !labels.is_empty() {
        out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        labels
            .iter()
            .for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
    }
    let body_len = ((out.len() - start - FRAME) as u32).to_le_bytes();
    let crc = crc32fast::hash(&out[start + FRAME..]);
    out[start..start + 4].copy_from_slice(&body_len);
    out[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&body_len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a batch-begin record announcing `count` operations.
pub(crate) fn encode_begin(seq: u64, count: u64, out: &mut Vec<u8>) {
    encode_record(seq, KIND_BEGIN, count, None, &[], out);
}

/// Appends the batch-commit record of a batch of `count` operations.
pub(crate) fn encode_commit(seq: u64, count: u64, out: &mut Vec<u8>) {
    encode_record(seq, KIND_COMMIT, count, None, &[], out);
}

/// What one record holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rec {
    /// An operation.
    Op(Op),
    /// The start of a batch of `count` operations (version 4).
    Begin { count: u64 },
    /// The end of a batch of `count` operations: the batch is committed.
    Commit { count: u64 },
}

/// What a decode attempt at some offset found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// A valid record of `len` bytes (frame included).
    Record { seq: u64, rec: Rec, len: usize },
    /// The bytes end before the record does: a torn append.
    Torn,
    /// A damaged record: corruption, not a crash.
    Corrupt(String),
}

/// Decodes the record at the start of `bytes` (the rest of the log from
/// some offset) of a log of `version` (3 or 4) for vectors of `dim`
/// components. Never reads past `bytes` and allocates only after the
/// length is checked against the bytes present. The torn/corrupt rule of
/// each version: `format-spec/log-file.md`, "Decoding a record".
pub(crate) fn decode(bytes: &[u8], dim: usize, version: u32) -> Decoded {
    if version <= 3 {
        return decode_v3(bytes, dim);
    }
    // 1. The frame itself is cut short: torn.
    if bytes.len() < FRAME {
        return Decoded::Torn;
    }
    let body_len = rd_u32(bytes, 0) as usize;
    let len_crc = rd_u32(bytes, 4);
    let crc = rd_u32(bytes, 8);
    // 2. The length has its own checksum, so a damaged length is never
    //    mistaken for a record that runs past the end of the file. A frame
    //    whose length check fails is torn only when everything after its
    //    first 8 bytes is zero (a prefix of a frame, then zeros where the
    //    file grew but the data never landed); any real record has a
    //    non-zero body there.
    let computed_len_crc = crc32fast::hash(&bytes[..4]);
    if computed_len_crc != len_crc {
        return if bytes[8..].iter().all(|b| *b == 0) {
            Decoded::Torn
        } else {
            Decoded::Corrupt(format!(
                "record length check {len_crc:#010x}, computed {computed_len_crc:#010x} (length field {body_len})"
            ))
        };
    }
    let with_vector = BODY_FIXED + 4 * dim;
    // Version 6: a vector, a label count and 1..=MAX labels.
    let labelled = |len: usize| {
        version >= 6
            && len >= with_vector + 8
            && (len - with_vector - 4).is_multiple_of(4)
            && (len - with_vector - 4) / 4 <= MAX_LABELS_PER_VECTOR
    };
    if body_len != BODY_FIXED && body_len != with_vector && !labelled(body_len) {
        let labels = if version >= 6 {
            format!(", or {with_vector} + 4 + 4·labels (1..={MAX_LABELS_PER_VECTOR} labels)")
        } else {
            String::new()
        };
        return Decoded::Corrupt(format!(
            "record length {body_len}, expected {BODY_FIXED} or {with_vector}{labels}"
        ));
    }
    // 3. The (checked) length runs past the end of the file: torn.
    if bytes.len() < FRAME + body_len {
        return Decoded::Torn;
    }
    // 4. A complete record whose checksum fails is corruption. The one
    //    exception is a body that is all zeros with nothing but zeros after
    //    it (the frame landed, the body did not): no valid body is zero.
    let body = &bytes[FRAME..FRAME + body_len];
    let computed = crc32fast::hash(body);
    if computed != crc {
        return if bytes[FRAME..].iter().all(|b| *b == 0) {
            Decoded::Torn
        } else {
            Decoded::Corrupt(format!(
                "record checksum {crc:#010x}, computed {computed:#010x}"
            ))
        };
    }
    let shape = match body_len {
        BODY_FIXED => Shape::Bare,
        l if l == with_vector => Shape::Vector,
        _ => Shape::Labelled,
    };
    body_record(body, dim, shape, FRAME, true)
}

/// What a body holds after its fixed part, by its length.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Bare,
    Vector,
    /// A vector, then a label count and labels (version 6).
    Labelled,
}

/// Interprets a body whose checksum passed.
fn body_record(body: &[u8], dim: usize, shape: Shape, frame: usize, batches: bool) -> Decoded {
    let seq = rd_u64(body, 0);
    let kind = rd_u32(body, 8);
    let id = rd_u64(body, 12);
    let vector_end = BODY_FIXED + 4 * dim;
    let vector = || -> Vec<f32> {
        body[BODY_FIXED..vector_end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    let labels = || -> Result<Vec<u32>, String> {
        let count = rd_u32(body, vector_end) as usize;
        let labels: Vec<u32> = body[vector_end + 4..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if count != labels.len() || !labels.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "record labels: count {count} for {} labels, which must ascend",
                labels.len()
            ));
        }
        Ok(labels)
    };
    let rec = match (kind, shape) {
        (1, Shape::Vector) => Rec::Op(Op::Insert {
            id,
            vector: vector(),
            labels: Vec::new(),
        }),
        (2, Shape::Bare) => Rec::Op(Op::Delete { id }),
        (3, Shape::Vector) => Rec::Op(Op::Upsert {
            id,
            vector: vector(),
            labels: Vec::new(),
        }),
        (KIND_INSERT_LABELLED | KIND_UPSERT_LABELLED, Shape::Labelled) => {
            let labels = match labels() {
                Ok(l) => l,
                Err(e) => return Decoded::Corrupt(e),
            };
            let vector = vector();
            Rec::Op(if kind == KIND_INSERT_LABELLED {
                Op::Insert { id, vector, labels }
            } else {
                Op::Upsert { id, vector, labels }
            })
        }
        (KIND_BEGIN, Shape::Bare) if batches => Rec::Begin { count: id },
        (KIND_COMMIT, Shape::Bare) if batches => Rec::Commit { count: id },
        _ => {
            return Decoded::Corrupt(format!(
                "record kind {kind} with a body of {} bytes",
                body.len()
            ))
        }
    };
    Decoded::Record {
        seq,
        rec,
        len: frame + body.len(),
    }
}

/// The version-3 rule (no length check, no batches), unchanged.
fn decode_v3(bytes: &[u8], dim: usize) -> Decoded {
    if bytes.len() < FRAME_V3 {
        return Decoded::Torn;
    }
    let body_len = rd_u32(bytes, 0) as usize;
    let crc = rd_u32(bytes, 4);
    let with_vector = BODY_FIXED + 4 * dim;
    let zeros_from = |at: usize| {
        bytes
            .get(at..)
            .is_none_or(|rest| rest.iter().all(|b| *b == 0))
    };
    if body_len != BODY_FIXED && body_len != with_vector {
        return if zeros_from(0) {
            Decoded::Torn
        } else {
            Decoded::Corrupt(format!(
                "record length {body_len}, expected {BODY_FIXED} or {with_vector}"
            ))
        };
    }
    if bytes.len() < FRAME_V3 + body_len {
        return Decoded::Torn;
    }
    let body = &bytes[FRAME_V3..FRAME_V3 + body_len];
    let computed = crc32fast::hash(body);
    if computed != crc {
        return if zeros_from(FRAME_V3 + body_len) {
            Decoded::Torn
        } else {
            Decoded::Corrupt(format!(
                "record checksum {crc:#010x}, computed {computed:#010x}"
            ))
        };
    }
    let shape = if body_len == with_vector {
        Shape::Vector
    } else {
        Shape::Bare
    };
    body_record(body, dim, shape, FRAME_V3, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Insert {
                id: 7,
                vector: vec![1.0, -2.0, 3.5],
                labels: vec![],
            },
            Op::Delete { id: 9 },
            Op::Upsert {
                id: u64::MAX,
                vector: vec![0.0, 0.5, f32::MIN_POSITIVE],
                labels: vec![],
            },
        ]
    }

    fn labelled_ops() -> Vec<Op> {
        vec![
            Op::Insert {
                id: 3,
                vector: vec![1.0, 2.0, 3.0],
                labels: vec![0, 5, u32::MAX],
            },
            Op::Upsert {
                id: 4,
                vector: vec![-1.0, 0.0, 1.0],
                labels: vec![2],
            },
        ]
    }

    /// Labelled records round-trip in version 6, are kinds 6 and 7, and a
    /// version-4 log refuses them; unlabelled ones are version 4's bytes.
    #[test]
    fn labelled_records_are_version_6() {
        let mut buf = Vec::new();
        for (i, op) in labelled_ops().iter().enumerate() {
            op.encode(i as u64 + 1, &mut buf);
        }
        let mut at = 0;
        for (i, want) in labelled_ops().into_iter().enumerate() {
            assert_eq!(rd_u32(&buf[at..], FRAME + 8), 6 + i as u32, "kind");
            let (seq, rec, len) = record(decode(&buf[at..], 3, 6));
            assert_eq!((seq, rec), (i as u64 + 1, Rec::Op(want)));
            assert!(matches!(decode(&buf[at..], 3, 4), Decoded::Corrupt(_)));
            at += len;
        }
        assert_eq!(at, buf.len());
        // Unlabelled operations decode the same in versions 4 and 6.
        let mut plain = Vec::new();
        ops()[0].encode(1, &mut plain);
        assert_eq!(decode(&plain, 3, 6), decode(&plain, 3, 4));
        // Every bit flip of a labelled record is corruption, every cut torn.
        let mut one = Vec::new();
        labelled_ops()[0].encode(1, &mut one);
        for bit in 0..one.len() * 8 {
            let mut bad = one.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode(&bad, 3, 6), Decoded::Corrupt(_)),
                "bit {bit}"
            );
        }
        for cut in 0..one.len() {
            assert_eq!(decode(&one[..cut], 3, 6), Decoded::Torn, "cut {cut}");
        }
        // Labels out of order, with a valid checksum: corruption.
        let mut disorder = Vec::new();
        encode_record(
            1,
            KIND_INSERT_LABELLED,
            3,
            Some(&[1.0, 2.0, 3.0]),
            &[5, 1],
            &mut disorder,
        );
        assert!(matches!(decode(&disorder, 3, 6), Decoded::Corrupt(_)));
    }

    /// A version-3 record (8-byte frame), as version 3 wrote it.
    fn encode_v3(op: &Op, seq: u64, out: &mut Vec<u8>) {
        let mut v4 = Vec::new();
        op.encode(seq, &mut v4);
        let body = &v4[FRAME..];
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(body);
    }

    fn record(d: Decoded) -> (u64, Rec, usize) {
        match d {
            Decoded::Record { seq, rec, len } => (seq, rec, len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_round_trip_in_both_versions() {
        for version in [3, 4] {
            let mut buf = Vec::new();
            for (i, op) in ops().iter().enumerate() {
                if version == 3 {
                    encode_v3(op, i as u64 + 1, &mut buf);
                } else {
                    op.encode(i as u64 + 1, &mut buf);
                }
            }
            let mut at = 0;
            for (i, want) in ops().into_iter().enumerate() {
                let (seq, rec, len) = record(decode(&buf[at..], 3, version));
                assert_eq!((seq, rec), (i as u64 + 1, Rec::Op(want)));
                at += len;
            }
            assert_eq!(at, buf.len());
        }
        let mut buf = Vec::new();
        encode_begin(1, 2, &mut buf);
        encode_commit(2, 2, &mut buf);
        let (_, rec, len) = record(decode(&buf, 3, 4));
        assert_eq!(rec, Rec::Begin { count: 2 });
        assert_eq!(
            record(decode(&buf[len..], 3, 4)).1,
            Rec::Commit { count: 2 }
        );
        // Batch kinds do not exist in version 3.
        let body = &buf[FRAME..len];
        let mut v3 = (body.len() as u32).to_le_bytes().to_vec();
        v3.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        v3.extend_from_slice(body);
        assert!(matches!(decode(&v3, 3, 3), Decoded::Corrupt(_)));
    }

    #[test]
    fn every_truncation_of_the_last_record_is_torn() {
        for op in ops() {
            let mut buf = Vec::new();
            op.encode(1, &mut buf);
            for cut in 0..buf.len() {
                assert_eq!(decode(&buf[..cut], 3, 4), Decoded::Torn, "cut at {cut}");
                // ... and so is every prefix followed by zeros standing in for
                // bytes that never reached the disk, as long as the zeros do not
                // complete the record (then its checksum fails: corruption).
                let mut padded = buf[..cut].to_vec();
                padded.resize(cut.max(FRAME) + 3, 0);
                if padded.len() < buf.len() {
                    assert_eq!(decode(&padded, 3, 4), Decoded::Torn, "cut at {cut} + zeros");
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_in_a_complete_record_is_corruption() {
        for op in ops() {
            let mut buf = Vec::new();
            op.encode(1, &mut buf);
            for bit in 0..buf.len() * 8 {
                let mut bad = buf.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let d = decode(&bad, 3, 4);
                assert!(matches!(d, Decoded::Corrupt(_)), "{op:?}: bit {bit}: {d:?}");
                // Also when zeros follow it (the last record of a file that grew).
                bad.extend_from_slice(&[0u8; 40]);
                let d = decode(&bad, 3, 4);
                assert!(
                    matches!(d, Decoded::Corrupt(_)),
                    "{op:?}: bit {bit} + zeros: {d:?}"
                );
            }
        }
    }

    #[test]
    fn zero_tails() {
        assert_eq!(decode(&[0u8; 1000], 3, 4), Decoded::Torn);
        // A frame that landed with no body, then zeros: torn.
        let mut buf = Vec::new();
        ops()[1].encode(1, &mut buf);
        let mut z = buf[..FRAME].to_vec();
        z.resize(200, 0);
        assert_eq!(decode(&z, 3, 4), Decoded::Torn);
        // A whole record with a bad checksum, then zeros: corruption (v4),
        // torn in version 3 (the rule it was written under).
        let mut bad = buf.clone();
        bad[FRAME + 2] ^= 1;
        bad.extend_from_slice(&[0u8; 64]);
        assert!(matches!(decode(&bad, 3, 4), Decoded::Corrupt(_)));
        let mut v3 = Vec::new();
        encode_v3(&ops()[1], 1, &mut v3);
        v3[FRAME_V3 + 2] ^= 1;
        assert_eq!(decode(&v3, 3, 3), Decoded::Torn);
        // Garbage that is not a frame: corruption.
        let garbage = vec![0xEEu8; 20];
        assert!(matches!(decode(&garbage, 3, 4), Decoded::Corrupt(_)));
    }
}
