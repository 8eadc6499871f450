//! The NumPy `.npy` format, restricted to 2-D C-order little-endian
//! `float32` (`'<f4'`) and `float64` (`'<f8'`) arrays.
//!
//! Layout: the magic `\x93NUMPY`, a major and minor version byte (1.0, 2.0 or
//! 3.0), the header length (`u16` in version 1, `u32` otherwise), then the
//! header, a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (50000, 384), }`,
//! and finally the raw array data.

use std::path::Path;

use super::{input_error, open_input, Vectors};
use crate::error::Result;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element type of the array data.
#[derive(Debug, Clone, Copy)]
enum Dtype {
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// Parses `.npy` bytes into vectors; `name` is the path reported in errors.
///
/// `float64` components are rounded to `f32` (values beyond the `f32` range
/// become infinite). Component values are not otherwise checked.
pub fn parse_npy(bytes: &[u8], name: &Path) -> Result<Vectors> {
    let (dim, dtype, data_start) = check(bytes, bytes.len() as u64, name)?;
    Ok(Vectors {
        dim,
        data: convert(dtype, &bytes[data_start..]),
    })
}

fn convert(dtype: Dtype, data_bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    extend_converted(dtype, data_bytes, &mut out);
    out
}

fn extend_converted(dtype: Dtype, data_bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        Dtype::F32 => out.extend(
            data_bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F64 => {
            out.extend(data_bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
}

/// Validates the preamble and header in `bytes` (which hold at least the
/// whole header when the file does) against a file of `total` bytes;
/// returns the dimension, dtype and where the data starts.
fn check(bytes: &[u8], total: u64, name: &Path) -> Result<(usize, Dtype, usize)> {
    let err = |reason: String| input_error(name, reason);

    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        let found = &bytes[..bytes.len().min(MAGIC.len())];
        return Err(err(format!(
            "not a .npy file: expected magic bytes \\x93NUMPY, found {found:02x?}"
        )));
    }
    if bytes.len() < 8 {
        return Err(err(
            "truncated: the file ends inside the version bytes".into()
        ));
    }
    let len_size = match (bytes[6], bytes[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => {
            return Err(err(format!(
                "unsupported .npy format version {major}.{minor}; supported versions are 1.0, 2.0 and 3.0"
            )))
        }
    };
    let header_start = 8 + len_size;
    if bytes.len() < header_start {
        return Err(err(
            "truncated: the file ends inside the header length".into()
        ));
    }
    let header_len = if len_size == 2 {
        u64::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u64::from(u32::from_le_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11],
        ]))
    };
    let after_preamble = bytes.len() - header_start;
    let data_start = match usize::try_from(header_len) {
        Ok(h) if h <= after_preamble => header_start + h,
        _ => {
            return Err(err(format!(
                "truncated: the header length is {header_len} bytes but only {after_preamble} \
                 bytes follow the preamble"
            )))
        }
    };
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|e| err(format!("the header is not valid UTF-8: {e}")))?;
    let header = parse_header(header).map_err(|r| err(format!("malformed header: {r}")))?;

    let dtype = match header.descr.as_str() {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        other => {
            return Err(err(format!(
                "unsupported dtype '{}': only little-endian float32 ('<f4') and float64 \
                 ('<f8') arrays are supported",
                clip(other)
            )))
        }
    };
    if header.fortran_order {
        return Err(err(
            "the array is in Fortran (column-major) order; only C-order arrays are supported \
             (save with numpy.ascontiguousarray)"
                .into(),
        ));
    }
    let shape_text = format_shape(&header.shape);
    let (rows, cols) = match header.shape[..] {
        [rows, cols] => (rows, cols),
        _ => {
            return Err(err(format!(
                "shape {shape_text} is {}-D; expected a 2-D array of shape (rows, dim)",
                header.shape.len()
            )))
        }
    };
    if cols == 0 {
        return Err(err(format!(
            "shape {shape_text} has dimension 0; the dimension must be at least 1"
        )));
    }
    if rows == 0 {
        return Err(err(format!("no vectors: shape {shape_text} has zero rows")));
    }
    let data_len = total - data_start as u64;
    let needed = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(dtype.size()));
    if needed != Some(data_len) {
        let needed = needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        return Err(err(format!(
            "the data section holds {data_len} bytes but shape {shape_text} of '{}' needs {needed}",
            clip(&header.descr)
        )));
    }

    // The data length matched exactly, so it fits in memory's address space.
    Ok((cols as usize, dtype, data_start))
}

/// Reads a `.npy` file: a 2-D C-order little-endian `float32` array, or
/// `float64` converted to `f32`. The preamble and header are read and
/// checked against the file's length first, so a bad header never costs a
/// read of the data.
pub fn read_npy(path: &Path) -> Result<Vectors> {
    use std::io::Read;
    let (f, total) = open_input(path)?;
    let io = |e| crate::error::Error::io(path, e);
    let mut r = std::io::BufReader::new(f);
    let mut head = Vec::new();
    (&mut r).take(12).read_to_end(&mut head).map_err(io)?;
    // The header's end, if the preamble says where it is and the file holds it.
    let header_end = match head.get(6..8) {
        Some([1, 0]) if head.len() >= 10 => {
            Some(10 + u64::from(u16::from_le_bytes([head[8], head[9]])))
        }
        Some([2 | 3, 0]) if head.len() >= 12 => {
            Some(12 + u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])))
        }
        _ => None,
    };
    if let Some(end) = header_end.filter(|&e| e <= total) {
        let more = end.saturating_sub(head.len() as u64);
        (&mut r).take(more).read_to_end(&mut head).map_err(io)?;
    }
    let (dim, dtype, data_start) = check(&head, total, path)?;
    // Converted chunk by chunk: holding the raw bytes and the floats at
    // once would double the peak memory of reading a large input.
    let data_len = total - data_start as u64;
    let elem = match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    };
    let mut data = Vec::with_capacity((data_len / elem as u64) as usize);
    let mut pending = head.split_off(data_start.min(head.len()));
    let mut read = pending.len() as u64;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let k = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        read += k as u64;
        if read > data_len {
            break;
        }
        pending.extend_from_slice(&chunk[..k]);
        let whole = pending.len() / elem * elem;
        extend_converted(dtype, &pending[..whole], &mut data);
        pending.drain(..whole);
    }
    if read != data_len {
        return Err(input_error(path, "the file changed size while it was read"));
    }
    Ok(Vectors { dim, data })
}

/// Shortens header text quoted in an error message.
fn clip(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push_str("...");
    short
}

fn format_shape(shape: &[u64]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The fields of a `.npy` header.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A value in the header dict.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// Parses the header dict literal; errors are reasons without the path.
fn parse_header(text: &str) -> Result<Header, String> {
    let mut c = Cursor {
        s: text.as_bytes(),
        pos: 0,
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;

    c.skip_ws();
    c.expect(b'{')?;
    loop {
        c.skip_ws();
        if c.eat(b'}') {
            break;
        }
        let key = c.string()?;
        c.skip_ws();
        c.expect(b':')?;
        c.skip_ws();
        let at = c.pos;
        let value = c.value()?;
        let (slot_filled, wrong_type) = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => (descr.replace(s).is_some(), false),
            ("fortran_order", Value::Bool(b)) => (fortran_order.replace(b).is_some(), false),
            ("shape", Value::Tuple(t)) => (shape.replace(t).is_some(), false),
            ("descr" | "fortran_order" | "shape", _) => (false, true),
            (other, _) => return Err(format!("unexpected key '{}'", clip(other))),
        };
        if wrong_type {
            let expected = match key.as_str() {
                "descr" => "a string (structured dtypes are not supported)",
                "fortran_order" => "True or False",
                _ => "a tuple of integers",
            };
            return Err(format!("'{key}' at byte {at} must be {expected}"));
        }
        if slot_filled {
            return Err(format!("duplicate key '{key}'"));
        }
        c.skip_ws();
        if c.eat(b',') {
            continue;
        }
        c.expect(b'}')?;
        break;
    }
    c.skip_ws();
    if c.pos != c.s.len() {
        return Err(format!(
            "unexpected characters after the dict at byte {}",
            c.pos
        ));
    }
    Ok(Header {
        descr: descr.ok_or("missing key 'descr'")?,
        fortran_order: fortran_order.ok_or("missing key 'fortran_order'")?,
        shape: shape.ok_or("missing key 'shape'")?,
    })
}

/// A position in the header text.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, ch: u8) -> bool {
        let hit = self.peek() == Some(ch);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, ch: u8) -> Result<(), String> {
        if self.eat(ch) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(found) => format!(
                "expected '{}' at byte {}, found '{}'",
                ch as char,
                self.pos,
                found.escape_ascii()
            ),
            None => format!(
                "expected '{}' at byte {}, found the end",
                ch as char, self.pos
            ),
        })
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {start}")),
        };
        self.pos += 1;
        let body = self.pos;
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string starting at byte {start}")),
                Some(b'\\') => {
                    return Err(format!("escape sequence in string at byte {}", self.pos))
                }
                Some(q) if q == quote => break,
                Some(_) => self.pos += 1,
            }
        }
        let text = String::from_utf8_lossy(&self.s[body..self.pos]).into_owned();
        self.pos += 1;
        Ok(text)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => self.tuple().map(Value::Tuple),
            Some(b'T' | b'F') => {
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    _ => Err(format!("unsupported value at byte {start}")),
                }
            }
            Some(b'[' | b'{') => Err(format!(
                "unsupported value at byte {}: lists and dicts (structured dtypes) are not supported",
                self.pos
            )),
            _ => Err(format!("unsupported value at byte {}", self.pos)),
        }
    }

    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Ok(items);
            }
            items.push(self.int()?);
            self.skip_ws();
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(items);
            }
        }
    }

    fn int(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| format!("integer at byte {start} is too large"))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(format!("expected a non-negative integer at byte {start}"));
        }
        // Python 2 wrote long integers with an `L` suffix.
        self.eat(b'L');
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn name() -> &'static Path {
        Path::new("test.npy")
    }

    /// Builds a `.npy` file the way NumPy does (padded to 64 bytes).
    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let len_size = if version == 1 { 2 } else { 4 };
        let mut header = header.to_string();
        while !(8 + len_size + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn dict(descr: &str, fortran: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
    }

    fn reason(err: Error) -> String {
        match err {
            Error::InputFormat { reason, .. } => reason,
            other => panic!("expected InputFormat, got {other:?}"),
        }
    }

    fn parse_err(bytes: &[u8]) -> String {
        reason(parse_npy(bytes, name()).unwrap_err())
    }

    #[test]
    fn parses_float32_all_versions() {
        let values = [1.0f32, 2.0, 3.0, -4.0, 5.5, 6.0];
        for version in [1, 2, 3] {
            let bytes = npy(
                version,
                &dict("<f4", "False", "(2, 3)"),
                &f32_bytes(&values),
            );
            let v = parse_npy(&bytes, name()).unwrap();
            assert_eq!(v.dim, 3);
            assert_eq!(v.data, values);
        }
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let values = [0.25f32, -1.0, 8.0, 9.0];
        std::fs::write(
            &p,
            npy(1, &dict("<f4", "False", "(4, 1)"), &f32_bytes(&values)),
        )
        .unwrap();
        let v = read_npy(&p).unwrap();
        assert_eq!((v.dim, v.len()), (1, 4));
        assert_eq!(v.data, values);
        assert_eq!(super::super::read_vectors(&p).unwrap(), v);
    }

    #[test]
    fn converts_float64() {
        let data: Vec<u8> = [1.5f64, -2.0, 1e300]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let v = parse_npy(&npy(1, &dict("<f8", "False", "(3, 1)"), &data), name()).unwrap();
        assert_eq!(v.data, vec![1.5, -2.0, f32::INFINITY]);
    }

    #[test]
    fn tolerant_header_syntax() {
        let data = f32_bytes(&[1.0, 2.0]);
        for header in [
            "{'descr':'<f4','fortran_order':False,'shape':(1,2)}",
            "{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<f4\"}",
            " { 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 1 , 2 , ) , } ",
        ] {
            let v = parse_npy(&npy(1, header, &data), name()).unwrap();
            assert_eq!(v.data, vec![1.0, 2.0], "{header}");
        }
    }

    #[test]
    fn wrong_magic() {
        let mut bytes = npy(1, &dict("<f4", "False", "(1, 1)"), &f32_bytes(&[1.0]));
        bytes[1] = b'X';
        assert!(parse_err(&bytes).contains("magic"));
        assert!(parse_err(b"").contains("magic"));
        assert!(parse_err(b"\x93NUM").contains("magic"));
    }

    #[test]
    fn unsupported_version() {
        let mut bytes = npy(1, &dict("<f4", "False", "(1, 1)"), &f32_bytes(&[1.0]));
        bytes[6] = 4;
        assert!(parse_err(&bytes).contains("version 4.0"));
    }

    #[test]
    fn fortran_order_rejected() {
        let bytes = npy(1, &dict("<f4", "True", "(1, 1)"), &f32_bytes(&[1.0]));
        assert!(parse_err(&bytes).contains("Fortran"));
    }

    #[test]
    fn one_d_and_three_d_shapes_rejected() {
        let bytes = npy(1, &dict("<f4", "False", "(3,)"), &f32_bytes(&[1.0; 3]));
        assert!(parse_err(&bytes).contains("shape (3,) is 1-D"));
        let bytes = npy(1, &dict("<f4", "False", "(1, 1, 3)"), &f32_bytes(&[1.0; 3]));
        assert!(parse_err(&bytes).contains("3-D"));
        let bytes = npy(1, &dict("<f4", "False", "()"), &f32_bytes(&[1.0]));
        assert!(parse_err(&bytes).contains("0-D"));
    }

    #[test]
    fn wrong_dtypes_rejected() {
        for descr in [">f4", "<f2", "<i4", "|u1", "<c8"] {
            let bytes = npy(1, &dict(descr, "False", "(1, 1)"), &[0; 8]);
            let r = parse_err(&bytes);
            assert!(r.contains(&format!("unsupported dtype '{descr}'")), "{r}");
        }
        let header = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1), }";
        let r = parse_err(&npy(1, header, &[0; 4]));
        assert!(r.contains("structured"), "{r}");
    }

    #[test]
    fn length_mismatch_rejected() {
        let header = dict("<f4", "False", "(2, 3)");
        let short = npy(1, &header, &f32_bytes(&[1.0; 5]));
        assert!(parse_err(&short).contains("holds 20 bytes but shape (2, 3) of '<f4' needs 24"));
        let long = npy(1, &header, &f32_bytes(&[1.0; 7]));
        assert!(parse_err(&long).contains("holds 28 bytes"));
    }

    #[test]
    fn empty_shapes_rejected() {
        let r = parse_err(&npy(1, &dict("<f4", "False", "(0, 3)"), &[]));
        assert!(r.contains("no vectors"), "{r}");
        let r = parse_err(&npy(1, &dict("<f4", "False", "(3, 0)"), &[]));
        assert!(r.contains("dimension 0"), "{r}");
    }

    #[test]
    fn huge_shape_in_tiny_file_does_not_allocate() {
        for shape in [
            "(18446744073709551615, 18446744073709551615)",
            "(4611686018427387904, 1)",
            "(1000000000, 1000000000)",
        ] {
            let r = parse_err(&npy(1, &dict("<f4", "False", shape), &[0; 8]));
            assert!(r.contains("holds 8 bytes"), "{r}");
        }
        let r = parse_err(&npy(
            1,
            &dict("<f4", "False", "(99999999999999999999, 1)"),
            &[],
        ));
        assert!(r.contains("too large"), "{r}");
    }

    #[test]
    fn header_length_beyond_file() {
        let mut bytes = npy(2, &dict("<f4", "False", "(1, 1)"), &f32_bytes(&[1.0]));
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_err(&bytes).contains("header length is 4294967295"));
        assert!(parse_err(&bytes[..9]).contains("truncated"));
        assert!(parse_err(&bytes[..7]).contains("truncated"));
    }

    #[test]
    fn malformed_headers_rejected() {
        for header in [
            "",
            "{",
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 1)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'extra': 1}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, -1)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1 1)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': 7}",
            "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1, 1)}",
            "{'descr': '<f4, 'fortran_order': False, 'shape': (1, 1)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} x",
        ] {
            let r = parse_err(&npy(1, header, &[0; 4]));
            assert!(r.contains("malformed header"), "{header}: {r}");
        }
        let mut bytes = npy(1, &dict("<f4", "False", "(1, 1)"), &[0; 4]);
        bytes[12] = 0xff;
        assert!(parse_err(&bytes).contains("UTF-8"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = npy(1, &dict("<f4", "False", "(2, 2)"), &f32_bytes(&[1.0; 4]));
        // Every prefix, and every single-byte corruption of the preamble and header.
        for cut in 0..good.len() {
            let _ = parse_npy(&good[..cut], name());
        }
        for i in 0..good.len() - 16 {
            for b in [0u8, b'(', b')', b',', b'\'', b'9', 0xff] {
                let mut bytes = good.clone();
                bytes[i] = b;
                let _ = parse_npy(&bytes, name());
            }
        }
    }
}
