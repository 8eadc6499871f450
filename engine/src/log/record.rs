//! One log record: framing, encoding and decoding.
//!
//! ```text
//! offset  size  field
//!      0     4  body_len u32   bytes after the 8-byte frame
//!      4     4  body_crc u32   CRC32 of the body
//!      8     8  seq      u64   1 for the first record of a log, then +1
//!     16     4  kind     u32   1 insert, 2 delete, 3 upsert
//!     20     8  id       u64   external id
//!     28  4·dim vector   f32   insert and upsert only, as given by the caller
//! ```

use crate::format::{rd_u32, rd_u64};

/// Bytes before the body: `body_len` and `body_crc`.
pub(crate) const FRAME: usize = 8;
/// Body bytes without a vector.
pub(crate) const BODY_FIXED: usize = 20;

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds a new id.
    Insert {
        /// External id.
        id: u64,
        /// The vector as given.
        vector: Vec<f32>,
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
    },
}

impl Op {
    fn kind(&self) -> u32 {
        match self {
            Op::Insert { .. } => 1,
            Op::Delete { .. } => 2,
            Op::Upsert { .. } => 3,
        }
    }

    /// The external id the operation is about.
    pub fn id(&self) -> u64 {
        match self {
            Op::Insert { id, .. } | Op::Delete { id } | Op::Upsert { id, .. } => *id,
        }
    }

    /// Appends the framed record for sequence number `seq` to `out`.
    pub(crate) fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&self.kind().to_le_bytes());
        out.extend_from_slice(&self.id().to_le_bytes());
        if let Op::Insert { vector, .. } | Op::Upsert { vector, .. } = self {
            for x in vector {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let body_len = (out.len() - start - FRAME) as u32;
        let crc = crc32fast::hash(&out[start + FRAME..]);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What a decode attempt at some offset found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// A valid record of `len` bytes (frame included).
    Record { seq: u64, op: Op, len: usize },
    /// The bytes end inside a record, or its checksum fails and it is the
    /// last thing in the file: a torn append.
    Torn,
    /// A damaged record followed by more bytes: corruption, not a crash.
    Corrupt(String),
}

/// Decodes the record at the start of `bytes` (the rest of the log from
/// some offset) for vectors of `dim` components. Never reads past `bytes`
/// and allocates only after the length is checked against the bytes present.
pub(crate) fn decode(bytes: &[u8], dim: usize) -> Decoded {
    if bytes.len() < FRAME {
        return Decoded::Torn;
    }
    let body_len = rd_u32(bytes, 0) as usize;
    let crc = rd_u32(bytes, 4);
    let with_vector = BODY_FIXED + 4 * dim;
    // An append writes whole records in one call, so a crash leaves a prefix
    // of one record (its length field intact once 4 bytes landed), possibly
    // followed by zeros where the file system extended the file but the
    // data never reached the disk. Anything else after the last whole
    // record is damage, not a crash.
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
    if bytes.len() < FRAME + body_len {
        return Decoded::Torn;
    }
    let body = &bytes[FRAME..FRAME + body_len];
    let computed = crc32fast::hash(body);
    if computed != crc {
        return if zeros_from(FRAME + body_len) {
            Decoded::Torn
        } else {
            Decoded::Corrupt(format!(
                "record checksum {crc:#010x}, computed {computed:#010x}"
            ))
        };
    }
    let seq = rd_u64(body, 0);
    let kind = rd_u32(body, 8);
    let id = rd_u64(body, 12);
    let vector = || -> Vec<f32> {
        body[BODY_FIXED..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    let op = match (kind, body_len == with_vector) {
        (1, true) => Op::Insert {
            id,
            vector: vector(),
        },
        (2, false) => Op::Delete { id },
        (3, true) => Op::Upsert {
            id,
            vector: vector(),
        },
        _ => {
            return Decoded::Corrupt(format!(
                "record kind {kind} with a body of {body_len} bytes"
            ))
        }
    };
    Decoded::Record {
        seq,
        op,
        len: FRAME + body_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Insert {
                id: 7,
                vector: vec![1.0, -2.0, 3.5],
            },
            Op::Delete { id: 9 },
            Op::Upsert {
                id: u64::MAX,
                vector: vec![0.0, 0.5, f32::MIN_POSITIVE],
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        for (i, op) in ops().iter().enumerate() {
            op.encode(i as u64 + 1, &mut buf);
        }
        let mut at = 0;
        for (i, want) in ops().into_iter().enumerate() {
            match decode(&buf[at..], 3) {
                Decoded::Record { seq, op, len } => {
                    assert_eq!((seq, op), (i as u64 + 1, want));
                    at += len;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_truncation_of_the_last_record_is_torn() {
        let mut buf = Vec::new();
        ops()[0].encode(1, &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], 3), Decoded::Torn, "cut at {cut}");
        }
    }

    #[test]
    fn zero_filled_tails_are_torn_and_other_damage_is_not() {
        let mut buf = Vec::new();
        ops()[0].encode(1, &mut buf);
        // A record cut short, then zeros (a power cut after the file grew).
        let mut torn = buf[..FRAME + 10].to_vec();
        torn.extend_from_slice(&[0u8; 500]);
        assert_eq!(decode(&torn, 3), Decoded::Torn);
        assert_eq!(decode(&[0u8; 1000], 3), Decoded::Torn);
        // A whole record with a bad checksum, then zeros: torn.
        let mut bad = buf.clone();
        bad[FRAME + 2] ^= 1;
        bad.extend_from_slice(&[0u8; 64]);
        assert_eq!(decode(&bad, 3), Decoded::Torn);
        // A bad length followed by non-zero bytes is corruption, even when a
        // whole maximal record would not fit after it.
        let mut garbage = vec![0xEEu8; 20];
        garbage[..4].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(decode(&garbage, 3), Decoded::Corrupt(_)));
    }

    #[test]
    fn a_bad_record_before_others_is_corrupt() {
        let mut buf = Vec::new();
        ops()[0].encode(1, &mut buf);
        ops()[2].encode(2, &mut buf);
        buf[FRAME + 13] ^= 1;
        assert!(matches!(decode(&buf, 3), Decoded::Corrupt(_)));
        // The same damage in the last record is a torn append.
        assert_eq!(decode(&buf[..FRAME + BODY_FIXED + 12], 3), Decoded::Torn);
    }
}
