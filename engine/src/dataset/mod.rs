//! Input data: reading and writing vector files, synthetic data and exact
//! ground truth.
//!
//! Supported formats:
//!
//! * `.fvecs` / `.bvecs` / `.ivecs`: the TEXMEX layout, each record an `i32`
//!   little-endian dimension followed by that many `f32`, `u8` or `i32`
//!   components ([`read_fvecs`], [`read_bvecs`], [`read_ivecs`]);
//! * `.npy`: a 2-D, C-order, little-endian `float32` or `float64` NumPy array
//!   ([`read_npy`]).
//!
//! Every parser works on a byte slice ([`parse_fvecs`], [`parse_bvecs`],
//! [`parse_ivecs`], [`parse_npy`]), never panics on any input, and checks
//! header fields against the file length before allocating.
//!
//! # Example
//!
//! ```
//! use strata::dataset::{brute_force_knn, clustered, read_vectors, write_fvecs};
//!
//! # fn main() -> strata::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("base.fvecs");
//!
//! let base = clustered(100, 8, 4, 0.1, 42);
//! write_fvecs(&path, &base)?;
//! let read = read_vectors(&path)?;
//! assert_eq!(read, base);
//! assert_eq!(read.len(), 100);
//!
//! fn l2(a: &[f32], b: &[f32]) -> f32 {
//!     a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>() as f32
//! }
//! let truth = brute_force_knn(&read, &read, 1, l2);
//! assert_eq!(truth[7], vec![7]); // every point is its own nearest neighbour
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

mod labels;
mod npy;
mod synthetic;
mod texmex;

pub use labels::{parse_labels, read_labels};
pub use npy::{parse_npy, read_npy};
pub use synthetic::{brute_force_knn, clustered};
pub use texmex::{
    parse_bvecs, parse_fvecs, parse_ivecs, read_bvecs, read_fvecs, read_fvecs_from, read_ivecs,
    write_fvecs, write_ivecs, write_ivecs_to,
};

/// A dense row-major matrix of `f32` vectors.
///
/// `data.len()` is `rows * dim`; row `i` is `data[i * dim..(i + 1) * dim]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vectors {
    /// The number of components of each vector.
    pub dim: usize,
    /// All components, row after row.
    pub data: Vec<f32>,
}

impl Vectors {
    /// The number of vectors (rows). Zero when `dim` is zero.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th vector.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(
            i < self.len(),
            "row {i} out of range for {} rows",
            self.len()
        );
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The vectors in order, each a slice of `dim` components.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + DoubleEndedIterator {
        let used = self.len() * self.dim;
        self.data[..used].chunks_exact(self.dim.max(1))
    }
}

/// Reads a vector file, choosing the format by its extension: `.fvecs`,
/// `.bvecs` (components converted to `f32`) or `.npy` (case-insensitive).
///
/// Any other extension is an [`Error::InputFormat`] naming the supported ones.
pub fn read_vectors(path: &Path) -> Result<Vectors> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("fvecs") => read_fvecs(path),
        Some("bvecs") => read_bvecs(path),
        Some("npy") => read_npy(path),
        other => Err(input_error(
            path,
            format!(
                "{}: supported vector formats are .fvecs, .bvecs and .npy",
                match other {
                    Some(e) => format!("unknown extension '.{e}'"),
                    None => "no file extension".to_string(),
                }
            ),
        )),
    }
}

/// An [`Error::InputFormat`] about `path`.
pub(crate) fn input_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::InputFormat {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Opens a regular input file (FIFOs, devices and directories are refused
/// before anything is read) and returns it with its length.
pub(crate) fn open_input(path: &Path) -> Result<(File, u64)> {
    let f = crate::regular::open_regular(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    Ok((f, len))
}

/// Writes a file atomically: `write` fills a temporary file in the same
/// directory, which is synced and then renamed over `path`. On failure the
/// temporary file is removed and `path` is left untouched.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let file_name = path.file_name().ok_or_else(|| Error::InvalidParameter {
        name: "path",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp: PathBuf = dir.join(tmp_name);

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let written = (|| {
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Best effort: make the rename itself durable.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vectors {
        Vectors {
            dim: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    }

    #[test]
    fn accessors() {
        let v = sample();
        assert_eq!(v.len(), 2);
        assert!(!v.is_empty());
        assert_eq!(v.row(1), &[4.0, 5.0, 6.0]);
        let rows: Vec<&[f32]> = v.rows().collect();
        assert_eq!(rows, vec![&[1.0, 2.0, 3.0][..], &[4.0, 5.0, 6.0][..]]);
        assert_eq!(v.rows().len(), 2);
    }

    #[test]
    fn zero_dim_is_empty_and_does_not_panic() {
        let v = Vectors {
            dim: 0,
            data: vec![1.0],
        };
        assert_eq!(v.len(), 0);
        assert!(v.is_empty());
        assert_eq!(v.rows().count(), 0);
        assert!(Vectors::default().is_empty());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn row_out_of_range_panics() {
        sample().row(2);
    }

    #[test]
    fn read_vectors_dispatches_on_extension() {
        let dir = tempfile::tempdir().unwrap();
        let v = sample();
        for name in ["a.fvecs", "b.FVECS"] {
            let p = dir.path().join(name);
            write_fvecs(&p, &v).unwrap();
            assert_eq!(read_vectors(&p).unwrap(), v);
        }
        let p = dir.path().join("c.bvecs");
        fs::write(&p, [2, 0, 0, 0, 7, 255]).unwrap();
        assert_eq!(read_vectors(&p).unwrap().data, vec![7.0, 255.0]);
    }

    #[test]
    fn unknown_extension_names_supported_ones() {
        for name in ["x.csv", "noext"] {
            let err = read_vectors(Path::new(name)).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::InputFormat { .. }), "{msg}");
            assert!(msg.contains(".fvecs, .bvecs and .npy"), "{msg}");
        }
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing.fvecs");
        assert!(matches!(read_vectors(&p), Err(Error::Io { path, .. }) if path == p));
    }

    #[test]
    fn atomic_write_overwrites_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.fvecs");
        fs::write(&p, b"old").unwrap();
        write_fvecs(&p, &sample()).unwrap();
        assert_eq!(read_fvecs(&p).unwrap(), sample());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_write_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        fs::write(&p, b"old").unwrap();
        let err = write_atomic(&p, |_| Err(io::Error::other("boom"))).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_into_missing_directory_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("out.fvecs");
        assert!(matches!(write_fvecs(&p, &sample()), Err(Error::Io { .. })));
    }
}
