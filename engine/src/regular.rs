//! Opening input and index files only when they are regular files.
//!
//! Opening a FIFO for reading blocks until a writer appears, and a device
//! or a directory is never what an index or data file should be: these are
//! refused before anything is read, with an I/O error of kind
//! [`InvalidInput`](std::io::ErrorKind::InvalidInput) saying what was found.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

fn describe(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

fn refuse(meta: &Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{}, not a regular file: strata reads only regular files here",
            describe(meta)
        ),
    )
}

/// Opens `path` for reading if it is a regular file (following symlinks).
/// Checked before opening, so a FIFO never blocks the open; on Linux the
/// open is also non-blocking and the opened file is checked again, which
/// closes the race of a file swapped in between.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refuse(&meta));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Miri supports no open flags beyond the access mode; under it the
    // checks before and after the open still refuse a non-regular file.
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        options.custom_flags(O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(&meta));
    }
    Ok(file)
}

/// Reads a whole regular file (like [`std::fs::read`], refusing others).
pub(crate) fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn directories_are_refused_and_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a directory"), "{e}");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(read_regular(&p).unwrap(), b"abc");
        let missing = read_regular(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
