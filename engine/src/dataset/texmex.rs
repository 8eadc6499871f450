//! The TEXMEX `.fvecs`, `.bvecs` and `.ivecs` formats.
//!
//! Each record is an `i32` little-endian dimension `d` followed by `d`
//! components: `f32` little-endian (`.fvecs`), `u8` (`.bvecs`) or `i32`
//! little-endian (`.ivecs`). All records of a file share `d`.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::{input_error, open_input, write_atomic, Vectors};
use crate::error::{Error, Result};

/// The component type of a TEXMEX file.
#[derive(Debug, Clone, Copy)]
enum Component {
    F32,
    U8,
    I32,
}

impl Component {
    fn size(self) -> usize {
        match self {
            Component::F32 | Component::I32 => 4,
            Component::U8 => 1,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Component::F32 => "4-byte f32",
            Component::U8 => "1-byte u8",
            Component::I32 => "4-byte i32",
        }
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Streams the records of a TEXMEX input, checking each record's header as
/// it arrives (so a bad record near the start of a huge file fails without
/// reading the rest), and hands each record's components to `row`.
/// Allocates only as bytes actually arrive: a huge dimension in a tiny
/// input never reserves its claimed size.
fn stream(
    mut r: impl Read,
    name: &Path,
    component: Component,
    mut row: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<usize> {
    let io = |e: std::io::Error| Error::io(name, e);
    let mut header = [0u8; 4];
    let mut record_bytes = Vec::new();
    let mut dim = 0usize;
    let mut record = 0usize;
    let mut offset = 0usize;
    let mut index = 0usize;
    loop {
        let got = read_full(&mut r, &mut header).map_err(io)?;
        if got == 0 {
            break;
        }
        if got < 4 {
            let reason = if index == 0 {
                format!(
                    "truncated: the file is {got} bytes, shorter than the 4-byte dimension of record 0"
                )
            } else {
                format!(
                    "truncated: record {index} at byte offset {offset} has only {got} \
                     bytes, fewer than its 4-byte dimension"
                )
            };
            return Err(input_error(name, reason));
        }
        let d = i32::from_le_bytes(header);
        if index == 0 {
            if d < 1 {
                return Err(input_error(
                    name,
                    format!(
                        "record 0 at byte offset 0 has dimension {d}; the dimension must be at least 1"
                    ),
                ));
            }
            dim = d as usize;
            record = dim
                .checked_mul(component.size())
                .and_then(|b| b.checked_add(4))
                .ok_or_else(|| {
                    input_error(
                        name,
                        format!("record 0 has dimension {dim}, too large for this platform"),
                    )
                })?;
        } else if d as i64 != dim as i64 {
            return Err(input_error(
                name,
                format!(
                    "record {index} at byte offset {offset} has dimension {d}, but record 0 \
                     has dimension {dim}; all vectors must have the same dimension"
                ),
            ));
        }
        let payload = record - 4;
        record_bytes.clear();
        (&mut r)
            .take(payload as u64)
            .read_to_end(&mut record_bytes)
            .map_err(io)?;
        if record_bytes.len() < payload {
            return Err(input_error(
                name,
                format!(
                    "truncated: record {index} at byte offset {offset} needs {record} bytes \
                     (4-byte dimension + {dim} {} components) but only {} remain",
                    component.describe(),
                    4 + record_bytes.len()
                ),
            ));
        }
        row(index, &record_bytes)?;
        offset += record;
        index += 1;
    }
    if index == 0 {
        return Err(input_error(name, "no vectors: the file is empty"));
    }
    Ok(dim)
}

/// Streams `.fvecs` or `.bvecs` records into [`Vectors`].
fn stream_vectors(
    r: impl Read,
    name: &Path,
    component: Component,
    size_hint: Option<u64>,
) -> Result<Vectors> {
    // Once the first records have proved the framing, pre-size by the
    // input's length (never more components than it can hold), so a big
    // file is not copied while its vector grows.
    let cap = size_hint.map_or(0, |b| (b / component.size() as u64).min(1 << 30) as usize);
    let mut data: Vec<f32> = Vec::new();
    let dim = stream(r, name, component, |index, bytes| {
        if index == 64 {
            data.reserve(cap.saturating_sub(data.len()));
        }
        match component {
            Component::U8 => data.extend(bytes.iter().map(|&b| f32::from(b))),
            _ => data.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
        }
        Ok(())
    })?;
    Ok(Vectors { dim, data })
}

/// Streams `.ivecs` records into rows of ids.
fn stream_ivecs(r: impl Read, name: &Path) -> Result<Vec<Vec<u32>>> {
    let mut rows = Vec::new();
    let mut record = 0usize;
    stream(r, name, Component::I32, |index, bytes| {
        record = bytes.len() + 4;
        let mut row = Vec::with_capacity(bytes.len() / 4);
        for (position, c) in bytes.chunks_exact(4).enumerate() {
            let id = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let id = u32::try_from(id).map_err(|_| {
                input_error(
                    name,
                    format!(
                        "record {index} at byte offset {} holds negative id {id} at position \
                         {position}; ids must be non-negative",
                        index * record
                    ),
                )
            })?;
            row.push(id);
        }
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// Parses `.fvecs` bytes; `name` is the path reported in errors.
///
/// Component values are not checked (NaN and infinities are returned as is).
pub fn parse_fvecs(bytes: &[u8], name: &Path) -> Result<Vectors> {
    stream_vectors(bytes, name, Component::F32, Some(bytes.len() as u64))
}

/// Parses `.bvecs` bytes, converting each `u8` component to `f32`; `name` is
/// the path reported in errors.
pub fn parse_bvecs(bytes: &[u8], name: &Path) -> Result<Vectors> {
    stream_vectors(bytes, name, Component::U8, Some(bytes.len() as u64))
}

/// Parses `.ivecs` bytes (ground truth): one row of ids per record, all rows
/// of the same length (at least 1). A negative id is an error. `name` is the
/// path reported in errors.
pub fn parse_ivecs(bytes: &[u8], name: &Path) -> Result<Vec<Vec<u32>>> {
    stream_ivecs(bytes, name)
}

/// Reads `.fvecs` records from any reader (a pipe, stdin), validating each
/// record as it arrives; `name` is what errors report. Needs no seeking.
pub fn read_fvecs_from(r: impl Read, name: &Path) -> Result<Vectors> {
    stream_vectors(BufReader::new(r), name, Component::F32, None)
}

/// Reads a `.fvecs` file, streaming: a bad record fails as soon as it is read.
pub fn read_fvecs(path: &Path) -> Result<Vectors> {
    let (f, len) = open_input(path)?;
    stream_vectors(BufReader::new(f), path, Component::F32, Some(len))
}

/// Reads a `.bvecs` file, converting each `u8` component to `f32`.
pub fn read_bvecs(path: &Path) -> Result<Vectors> {
    let (f, len) = open_input(path)?;
    stream_vectors(BufReader::new(f), path, Component::U8, Some(len))
}

/// Reads a `.ivecs` file (ground truth): rows of ids, each prefixed by its
/// length; all rows must have the same length and no id may be negative.
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>> {
    let (f, _) = open_input(path)?;
    stream_ivecs(BufReader::new(f), path)
}

/// Checks that a row length fits the `i32` dimension field.
fn dim_field(len: usize, name: &'static str) -> Result<[u8; 4]> {
    i32::try_from(len)
        .map(i32::to_le_bytes)
        .map_err(|_| Error::InvalidParameter {
            name,
            reason: format!("length {len} does not fit the i32 dimension field"),
        })
}

/// Writes `v` as a `.fvecs` file, atomically (temporary file, then rename).
///
/// `v.dim` must be at least 1 and `v.data.len()` a multiple of it; zero rows
/// give an empty file (which the readers reject as holding no vectors).
pub fn write_fvecs(path: &Path, v: &Vectors) -> Result<()> {
    if v.dim == 0 {
        return Err(Error::InvalidParameter {
            name: "dim",
            reason: "must be at least 1".to_string(),
        });
    }
    if !v.data.len().is_multiple_of(v.dim) {
        return Err(Error::InvalidParameter {
            name: "data",
            reason: format!("length {} is not a multiple of dim {}", v.data.len(), v.dim),
        });
    }
    let header = dim_field(v.dim, "dim")?;
    write_atomic(path, |w| {
        for row in v.rows() {
            w.write_all(&header)?;
            for x in row {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Writes rows of ids as a `.ivecs` file, atomically (temporary file, then
/// rename).
///
/// Rows may differ in length here, but [`read_ivecs`] only accepts files
/// whose rows all have the same non-zero length. Every id must be at most
/// `i32::MAX`.
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> Result<()> {
    check_ivecs_rows(rows)?;
    write_atomic(path, |w| ivecs_bytes(w, rows))
}

/// Writes rows of ids in the `.ivecs` layout to `w` (e.g. standard output),
/// with the checks of [`write_ivecs`]; `name` labels I/O errors. Nothing is
/// written if a row is refused. `w` is written as is: wrap it in a
/// `BufWriter` for speed, and flush it after.
pub fn write_ivecs_to(mut w: impl Write, rows: &[Vec<u32>], name: &Path) -> Result<()> {
    check_ivecs_rows(rows)?;
    ivecs_bytes(&mut w, rows).map_err(|e| Error::io(name, e))
}

/// Refuses rows [`write_ivecs`] cannot represent.
fn check_ivecs_rows(rows: &[Vec<u32>]) -> Result<()> {
    for (i, row) in rows.iter().enumerate() {
        dim_field(row.len(), "rows")?;
        if let Some(&id) = row.iter().find(|&&id| i32::try_from(id).is_err()) {
            return Err(Error::InvalidParameter {
                name: "rows",
                reason: format!(
                    "row {i} holds id {id}, which does not fit the signed 32-bit .ivecs format \
                     (at most {})",
                    i32::MAX
                ),
            });
        }
    }
    Ok(())
}

/// The `.ivecs` bytes of checked rows.
fn ivecs_bytes(w: &mut dyn Write, rows: &[Vec<u32>]) -> std::io::Result<()> {
    for row in rows {
        w.write_all(&(row.len() as i32).to_le_bytes())?;
        for &id in row {
            w.write_all(&id.to_le_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> &'static Path {
        Path::new("test.fvecs")
    }

    fn fvecs_bytes(rows: &[&[f32]]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            out.extend((row.len() as i32).to_le_bytes());
            for x in *row {
                out.extend(x.to_le_bytes());
            }
        }
        out
    }

    fn reason(err: Error) -> String {
        match err {
            Error::InputFormat { reason, .. } => reason,
            other => panic!("expected InputFormat, got {other:?}"),
        }
    }

    #[test]
    fn parses_fvecs() {
        let bytes = fvecs_bytes(&[&[1.0, -2.5], &[0.0, 7.0]]);
        let v = parse_fvecs(&bytes, name()).unwrap();
        assert_eq!(v.dim, 2);
        assert_eq!(v.data, vec![1.0, -2.5, 0.0, 7.0]);
    }

    #[test]
    fn fvecs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.fvecs");
        let v = Vectors {
            dim: 3,
            data: vec![1.0, f32::MIN_POSITIVE, -0.0, 3.5, f32::MAX, 1e-30],
        };
        write_fvecs(&p, &v).unwrap();
        let back = read_fvecs(&p).unwrap();
        assert_eq!(back.dim, 3);
        let bits = |v: &Vectors| v.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&v));
    }

    #[test]
    fn bvecs_converts_to_f32() {
        let bytes = [3, 0, 0, 0, 0, 128, 255, 3, 0, 0, 0, 1, 2, 3];
        let v = parse_bvecs(&bytes, Path::new("b.bvecs")).unwrap();
        assert_eq!(v.dim, 3);
        assert_eq!(v.data, vec![0.0, 128.0, 255.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn empty_file_has_no_vectors() {
        for parse in [parse_fvecs, parse_bvecs] {
            assert!(reason(parse(&[], name()).unwrap_err()).contains("no vectors"));
        }
        assert!(reason(parse_ivecs(&[], name()).unwrap_err()).contains("no vectors"));
    }

    #[test]
    fn truncated_files_are_rejected() {
        let bytes = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0]]);
        // Every proper prefix except the record boundary is an error.
        for cut in (1..bytes.len()).filter(|&c| c != 12) {
            let r = reason(parse_fvecs(&bytes[..cut], name()).unwrap_err());
            assert!(r.contains("truncated"), "cut {cut}: {r}");
        }
        let r = reason(parse_fvecs(&bytes[..20], name()).unwrap_err());
        assert!(r.contains("record 1 at byte offset 12"), "{r}");
        assert_eq!(parse_fvecs(&bytes[..12], name()).unwrap().len(), 1);
    }

    #[test]
    fn wrong_dimension_mid_file() {
        let bytes = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0], &[6.0, 7.0]]);
        let r = reason(parse_fvecs(&bytes, name()).unwrap_err());
        assert!(
            r.contains("record 2 at byte offset 24 has dimension 1"),
            "{r}"
        );
    }

    #[test]
    fn non_positive_dimension() {
        for d in [0i32, -1, i32::MIN] {
            let r = reason(parse_fvecs(&d.to_le_bytes(), name()).unwrap_err());
            assert!(r.contains("at least 1"), "{r}");
        }
    }

    #[test]
    fn huge_dimension_in_tiny_file_does_not_allocate() {
        let mut bytes = i32::MAX.to_le_bytes().to_vec();
        bytes.extend([0; 8]);
        for parse in [parse_fvecs, parse_bvecs] {
            let r = reason(parse(&bytes, name()).unwrap_err());
            assert!(r.contains("truncated"), "{r}");
        }
        assert!(parse_ivecs(&bytes, name()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic pseudo-random sweep of short inputs.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..64 {
            for _ in 0..64 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 4) as u8 // small values make valid headers likely
                    })
                    .collect();
                let _ = parse_fvecs(&bytes, name());
                let _ = parse_bvecs(&bytes, name());
                let _ = parse_ivecs(&bytes, name());
            }
        }
    }

    #[test]
    fn ivecs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt.ivecs");
        let rows = vec![vec![0, 5, i32::MAX as u32], vec![9, 8, 7]];
        write_ivecs(&p, &rows).unwrap();
        assert_eq!(read_ivecs(&p).unwrap(), rows);
    }

    #[test]
    fn ivecs_ragged_rows_write_but_do_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ragged.ivecs");
        write_ivecs(&p, &[vec![1, 2], vec![3]]).unwrap();
        let r = reason(read_ivecs(&p).unwrap_err());
        assert!(
            r.contains("record 1 at byte offset 12 has dimension 1"),
            "{r}"
        );
    }

    #[test]
    fn ivecs_negative_id() {
        let mut bytes = Vec::new();
        for row in [[1i32, 2], [3, -4]] {
            bytes.extend(2i32.to_le_bytes());
            for id in row {
                bytes.extend(id.to_le_bytes());
            }
        }
        let r = reason(parse_ivecs(&bytes, name()).unwrap_err());
        assert!(
            r.contains("record 1 at byte offset 12 holds negative id -4 at position 1"),
            "{r}"
        );
    }

    #[test]
    fn writers_reject_bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ivecs");
        let too_big = vec![vec![1u32 << 31]];
        assert!(matches!(
            write_ivecs(&p, &too_big),
            Err(Error::InvalidParameter { .. })
        ));
        let bad = Vectors {
            dim: 2,
            data: vec![1.0; 3],
        };
        assert!(matches!(
            write_fvecs(&p, &bad),
            Err(Error::InvalidParameter { .. })
        ));
        let zero = Vectors {
            dim: 0,
            data: vec![],
        };
        assert!(matches!(
            write_fvecs(&p, &zero),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(!p.exists());
    }

    #[test]
    fn ivecs_to_a_writer_matches_the_file() {
        let rows = vec![vec![3, 1, 4], vec![1, 5, 9]];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.ivecs");
        write_ivecs(&path, &rows).unwrap();
        let mut bytes = Vec::new();
        write_ivecs_to(&mut bytes, &rows, name()).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        assert_eq!(parse_ivecs(&bytes, name()).unwrap(), rows);
        let mut out = Vec::new();
        let e = write_ivecs_to(&mut out, &[vec![1], vec![u32::MAX]], name()).unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        assert!(out.is_empty(), "nothing is written when a row is refused");
    }
}
