//! The tuning file's bytes (`gNNNNNNNN.tuning`, version
//! [`TUNING_VERSION`]): a generation's stored operating points. Encoding
//! and validation only; reading and writing the file is the directory
//! layer's (`dir/tuning.rs`). Layout: `format-spec/tuning-file.md`.

use super::{rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64};
use crate::error::{Error, FileKind, Result};
use crate::tuning::{Tuning, TuningPoint, TuningSource, MAX_TUNING_POINTS};

/// Magic bytes at offset 0 of a tuning file.
pub const TUNING_MAGIC: [u8; 8] = *b"STRATATF";
/// The version of the tuning file this build reads and writes.
pub const TUNING_VERSION: u32 = 1;

const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_BUILD_ID: usize = 16;
const OFF_MEASURED_BUILD_ID: usize = 32;
const OFF_MEASURED_AT: usize = 48;
const OFF_LIVE_COUNT: usize = 56;
const OFF_K: usize = 64;
const OFF_QUERIES: usize = 68;
const OFF_HELD_OUT: usize = 72;
const OFF_SOURCE: usize = 76;
const OFF_POINT_COUNT: usize = 80;
const OFF_RESERVED: usize = 84;
/// The header's length: points start here.
const HEADER: usize = 88;
/// Bytes per point.
const POINT: usize = 32;
/// Flag bit 0 of the header: carried through a compaction.
const FLAG_STALE: u32 = 1;
/// Flag bit 0 of a point: rescored.
const POINT_RESCORE: u32 = 1;
/// The largest beam width a point may store.
const MAX_EF: u32 = 1 << 20;

/// The length of a tuning file with `n` points (header, points, CRC).
pub(crate) fn tuning_len(n: usize) -> usize {
    HEADER + POINT * n + 4
}

fn bad(
    what: impl Into<String>,
    expected: impl std::fmt::Display,
    found: impl std::fmt::Display,
) -> Error {
    Error::corrupt(FileKind::Tuning, what, expected, found)
}

/// The bytes of `t` as the tuning file of the generation of build
/// `build_id`. Errors: [`Error::InvalidParameter`] if `t` breaks a rule
/// of the format (so that what is written always reads back).
pub(crate) fn encode(t: &Tuning, build_id: u128) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidParameter {
        name: "tuning",
        reason,
    };
    if t.points.len() > MAX_TUNING_POINTS {
        return Err(invalid(format!(
            "{} points, at most {MAX_TUNING_POINTS} are stored",
            t.points.len()
        )));
    }
    let n32 = |name: &str, v: usize| {
        u32::try_from(v).map_err(|_| invalid(format!("{name} {v} is above u32::MAX")))
    };
    let mut b = vec![0u8; tuning_len(t.points.len())];
    b[..8].copy_from_slice(&TUNING_MAGIC);
    wr_u32(&mut b, OFF_VERSION, TUNING_VERSION);
    wr_u32(&mut b, OFF_FLAGS, if t.stale { FLAG_STALE } else { 0 });
    wr_u128(&mut b, OFF_BUILD_ID, build_id);
    wr_u128(&mut b, OFF_MEASURED_BUILD_ID, t.measured_build_id);
    wr_u64(&mut b, OFF_MEASURED_AT, t.measured_at);
    wr_u64(&mut b, OFF_LIVE_COUNT, t.live_count);
    wr_u32(&mut b, OFF_K, n32("k", t.k)?);
    wr_u32(&mut b, OFF_QUERIES, n32("queries", t.queries)?);
    wr_u32(&mut b, OFF_HELD_OUT, n32("held_out", t.held_out)?);
    let source = match t.source {
        TuningSource::SampledRows => 0,
        TuningSource::QueryFile => 1,
    };
    wr_u32(&mut b, OFF_SOURCE, source);
    wr_u32(&mut b, OFF_POINT_COUNT, t.points.len() as u32);
    for (i, p) in t.points.iter().enumerate() {
        let o = HEADER + POINT * i;
        wr_f32(&mut b, o, p.target);
        wr_u32(&mut b, o + 4, n32("ef", p.ef)?);
        wr_f32(&mut b, o + 8, p.oversample.unwrap_or(0.0));
        wr_u32(&mut b, o + 12, if p.rescore { POINT_RESCORE } else { 0 });
        wr_f32(&mut b, o + 16, p.recall);
        wr_f32(&mut b, o + 20, p.held_out_recall);
        wr_f32(&mut b, o + 24, p.qps);
    }
    let crc_at = b.len() - 4;
    let crc = crc32fast::hash(&b[..crc_at]);
    wr_u32(&mut b, crc_at, crc);
    // Whatever the caller gave, never write a file that does not read back.
    decode(&b, build_id).map_err(|e| invalid(e.to_string()))?;
    Ok(b)
}

fn wr_f32(b: &mut [u8], off: usize, v: f32) {
    wr_u32(b, off, v.to_bits());
}

fn rd_f32(b: &[u8], off: usize) -> f32 {
    f32::from_bits(rd_u32(b, off))
}

/// Parses and fully validates a tuning file that must belong to the
/// generation of build `build_id` (the graph file's): magic, version,
/// length, CRC, reserved bytes and flags zero, every field in range,
/// targets strictly ascending.
pub(crate) fn decode(b: &[u8], build_id: u128) -> Result<Tuning> {
    if b.len() < 8 || b[..8] != TUNING_MAGIC {
        let mut found = [0u8; 8];
        let n = b.len().min(8);
        found[..n].copy_from_slice(&b[..n]);
        return Err(Error::BadMagic {
            file: FileKind::Tuning,
            found,
        });
    }
    if b.len() < HEADER + 4 {
        return Err(bad(
            "length",
            format!("at least {} bytes", HEADER + 4),
            b.len(),
        ));
    }
    let version = rd_u32(b, OFF_VERSION);
    if version != TUNING_VERSION {
        return Err(Error::UnsupportedVersion {
            file: FileKind::Tuning,
            found: version,
            oldest: TUNING_VERSION,
            newest: TUNING_VERSION,
        });
    }
    let count = rd_u32(b, OFF_POINT_COUNT) as usize;
    if count > MAX_TUNING_POINTS {
        return Err(bad(
            "point_count",
            format!("at most {MAX_TUNING_POINTS}"),
            count,
        ));
    }
    if b.len() != tuning_len(count) {
        return Err(bad(
            "length",
            format!("{} bytes for {count} points", tuning_len(count)),
            b.len(),
        ));
    }
    let crc_at = b.len() - 4;
    let (stored, computed) = (rd_u32(b, crc_at), crc32fast::hash(&b[..crc_at]));
    if stored != computed {
        return Err(Error::ChecksumMismatch {
            file: FileKind::Tuning,
            what: "file".into(),
            stored,
            computed,
        });
    }
    let file_build = rd_u128(b, OFF_BUILD_ID);
    if file_build != build_id {
        return Err(bad(
            "build id",
            format!("{build_id:032x} (this generation's: the points were measured on another build; run `strata tune` again)"),
            format!("{file_build:032x}"),
        ));
    }
    let flags = rd_u32(b, OFF_FLAGS);
    if flags & !FLAG_STALE != 0 {
        return Err(bad(
            "flags",
            "only bit 0 (stale) defined",
            format!("{flags:#x}"),
        ));
    }
    if rd_u32(b, OFF_RESERVED) != 0 {
        return Err(bad("reserved word", 0, rd_u32(b, OFF_RESERVED)));
    }
    let stale = flags & FLAG_STALE != 0;
    let measured_build_id = rd_u128(b, OFF_MEASURED_BUILD_ID);
    if !stale && measured_build_id != build_id {
        return Err(bad(
            "measured build id",
            format!("{build_id:032x} (points not marked stale were measured on this build)"),
            format!("{measured_build_id:032x}"),
        ));
    }
    let k = rd_u32(b, OFF_K) as usize;
    if k == 0 {
        return Err(bad("k", "at least 1", 0));
    }
    let queries = rd_u32(b, OFF_QUERIES) as usize;
    let held_out = rd_u32(b, OFF_HELD_OUT) as usize;
    if held_out > queries {
        return Err(bad(
            "held_out",
            format!("at most queries ({queries})"),
            held_out,
        ));
    }
    let source = match rd_u32(b, OFF_SOURCE) {
        0 => TuningSource::SampledRows,
        1 => TuningSource::QueryFile,
        s => return Err(bad("source", "0 (sampled rows) or 1 (query file)", s)),
    };
    let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
    let mut points = Vec::with_capacity(count);
    for i in 0..count {
        let o = HEADER + POINT * i;
        let what = |field: &str| format!("point {i} {field}");
        let target = rd_f32(b, o);
        if !(unit(target) && target > 0.0) {
            return Err(bad(what("target"), "a recall in (0, 1]", target));
        }
        if let Some(prev) = points.last().map(|p: &TuningPoint| p.target) {
            if target <= prev {
                return Err(bad(
                    what("target"),
                    format!("above the previous point's {prev}"),
                    target,
                ));
            }
        }
        let ef = rd_u32(b, o + 4);
        if ef == 0 || ef > MAX_EF {
            return Err(bad(what("ef"), format!("1..={MAX_EF}"), ef));
        }
        let over = rd_f32(b, o + 8);
        let oversample = if over.to_bits() == 0 {
            None
        } else if over.is_finite() && over >= 1.0 {
            Some(over)
        } else {
            return Err(bad(
                what("oversample"),
                "0 (none) or a finite factor of at least 1",
                over,
            ));
        };
        let pflags = rd_u32(b, o + 12);
        if pflags & !POINT_RESCORE != 0 {
            return Err(bad(
                what("flags"),
                "only bit 0 (rescore) defined",
                format!("{pflags:#x}"),
            ));
        }
        let (recall, held_out_recall, qps) =
            (rd_f32(b, o + 16), rd_f32(b, o + 20), rd_f32(b, o + 24));
        if !unit(recall) {
            return Err(bad(what("recall"), "a recall in [0, 1]", recall));
        }
        if !unit(held_out_recall) {
            return Err(bad(
                what("held_out_recall"),
                "a recall in [0, 1]",
                held_out_recall,
            ));
        }
        if !(qps.is_finite() && qps >= 0.0) {
            return Err(bad(what("qps"), "a finite rate of at least 0", qps));
        }
        if rd_u32(b, o + 28) != 0 {
            return Err(bad(what("reserved word"), 0, rd_u32(b, o + 28)));
        }
        points.push(TuningPoint {
            target,
            ef: ef as usize,
            oversample,
            rescore: pflags & POINT_RESCORE != 0,
            recall,
            held_out_recall,
            qps,
        });
    }
    Ok(Tuning {
        measured_at: rd_u64(b, OFF_MEASURED_AT),
        k,
        queries,
        held_out,
        source,
        live_count: rd_u64(b, OFF_LIVE_COUNT),
        stale,
        measured_build_id,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tuning {
        Tuning {
            measured_at: 1_764_000_000,
            k: 10,
            queries: 400,
            held_out: 200,
            source: TuningSource::SampledRows,
            live_count: 50_000,
            stale: false,
            measured_build_id: 7,
            points: vec![
                TuningPoint {
                    target: 0.9,
                    ef: 16,
                    oversample: Some(2.0),
                    rescore: true,
                    recall: 0.91,
                    held_out_recall: 0.905,
                    qps: 30_000.0,
                },
                TuningPoint {
                    target: 0.99,
                    ef: 128,
                    oversample: None,
                    rescore: false,
                    recall: 0.992,
                    held_out_recall: 0.991,
                    qps: 8_000.0,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_checks_its_build() {
        let t = sample();
        let b = encode(&t, 7).unwrap();
        assert_eq!(b.len(), tuning_len(2));
        assert_eq!(decode(&b, 7).unwrap(), t);
        assert!(
            matches!(decode(&b, 8), Err(Error::Corrupt { ref what, .. }) if what == "build id")
        );
        let stale = Tuning {
            stale: true,
            ..t.clone()
        };
        let c = encode(&stale, 9).unwrap();
        let back = decode(&c, 9).unwrap();
        assert!(back.stale && back.measured_build_id == 7 && back.points == t.points);
    }

    #[test]
    fn every_damaged_byte_is_caught() {
        let b = encode(&sample(), 7).unwrap();
        for i in 0..b.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = b.clone();
                d[i] ^= bit;
                assert!(decode(&d, 7).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        for len in 0..b.len() {
            assert!(decode(&b[..len], 7).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn resealed_bad_fields_are_named() {
        let b = encode(&sample(), 7).unwrap();
        let reseal = |d: &mut Vec<u8>| {
            let at = d.len() - 4;
            let crc = crc32fast::hash(&d[..at]);
            wr_u32(d, at, crc);
        };
        type Mutate = fn(&mut Vec<u8>);
        let cases: [(&str, Mutate); 7] = [
            ("flags", |d| wr_u32(d, OFF_FLAGS, 2)),
            ("k", |d| wr_u32(d, OFF_K, 0)),
            ("source", |d| wr_u32(d, OFF_SOURCE, 5)),
            ("point 1 target", |d| wr_f32(d, HEADER + POINT, 0.5)),
            ("point 0 ef", |d| wr_u32(d, HEADER + 4, 0)),
            ("point 0 oversample", |d| wr_f32(d, HEADER + 8, 0.5)),
            ("measured build id", |d| {
                wr_u128(d, OFF_MEASURED_BUILD_ID, 3)
            }),
        ];
        for (what, f) in cases {
            let mut d = b.clone();
            f(&mut d);
            reseal(&mut d);
            match decode(&d, 7) {
                Err(Error::Corrupt { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut d = b.clone();
        wr_u32(&mut d, OFF_VERSION, 2);
        reseal(&mut d);
        assert!(matches!(
            decode(&d, 7),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn encode_refuses_what_would_not_read_back() {
        let mut t = sample();
        t.points.swap(0, 1);
        assert!(matches!(encode(&t, 7), Err(Error::InvalidParameter { .. })));
        let mut t = sample();
        t.points[0].recall = f32::NAN;
        assert!(encode(&t, 7).is_err());
    }
}
