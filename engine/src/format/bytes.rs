//! Byte storage behind an open index: a read-only memory map, or an owned
//! 8-byte-aligned buffer (for in-memory indexes and fuzzing).

use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// Immutable bytes whose start is at least 8-byte aligned, so validated
/// sections at page-multiple offsets can be cast to `u32`/`u64`/`f32` slices.
pub(crate) enum Bytes {
    #[cfg_attr(miri, allow(dead_code))] // never constructed under Miri
    Mapped(Mmap),
    Owned {
        words: Vec<u64>,
        len: usize,
    },
}

impl Bytes {
    /// Copies `data` into an aligned owned buffer.
    pub(crate) fn copy_from(data: &[u8]) -> Bytes {
        let mut words = vec![0u64; data.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..data.len()].copy_from_slice(data);
        Bytes::Owned {
            words,
            len: data.len(),
        }
    }

    /// Maps `file` read-only.
    ///
    /// The mapping's contract (format-spec/README.md): published index files
    /// are never modified in place (a new generation is new files plus a
    /// manifest swap), so the bytes do not change while mapped. A file
    /// truncated or rewritten by another program while mapped is outside
    /// that contract and may fault the process, as with any mmap reader.
    pub(crate) fn map(file: &File, path: &Path) -> crate::Result<Bytes> {
        let len = file
            .metadata()
            .map_err(|e| crate::Error::io(path, e))?
            .len();
        if len == 0 {
            // Empty files cannot be mapped; validation reports them as truncated.
            return Ok(Bytes::copy_from(&[]));
        }
        Bytes::map_nonempty(file, path)
    }

    #[cfg(not(miri))]
    fn map_nonempty(file: &File, path: &Path) -> crate::Result<Bytes> {
        // SAFETY: the map is read-only and the file is one strata published
        // with temp-write + fsync + rename and never rewrites (contract above).
        // Every access goes through slices bounds-checked against `len()` and
        // validated in `format::layout`.
        let map = unsafe { Mmap::map(file) }.map_err(|e| crate::Error::io(path, e))?;
        Ok(Bytes::Mapped(map))
    }

    /// Miri cannot execute mmap(2): under Miri the file is read into an
    /// aligned owned buffer instead, so every byte-to-typed-view cast and
    /// every bounds check downstream still runs, and is checked against its
    /// allocation, exactly as on a mapping (`.ci/miri`). Only the
    /// `Mmap::map` call itself goes unchecked.
    #[cfg(miri)]
    fn map_nonempty(file: &File, path: &Path) -> crate::Result<Bytes> {
        use std::io::{Read, Seek, SeekFrom};
        let mut data = Vec::new();
        let mut file = file;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut data))
            .map_err(|e| crate::Error::io(path, e))?;
        Ok(Bytes::copy_from(&data))
    }

    /// Asks the kernel to start reading `len` bytes at `offset` into the
    /// page cache (`MADV_WILLNEED`; no-op for owned bytes, errors ignored:
    /// it is only a hint).
    pub(crate) fn will_need(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = self {
            let _ = m.advise_range(memmap2::Advice::WillNeed, offset, len);
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }

    /// Locks the mapping's pages in RAM (`mlock`: reads the whole file
    /// now). No-op for owned bytes.
    pub(crate) fn lock(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = self {
            return m.lock();
        }
        Ok(())
    }

    /// Hints the kernel about the access pattern (no-op for owned bytes).
    pub(crate) fn advise_random(&self) {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = self {
            let _ = m.advise(memmap2::Advice::Random);
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned { words, len } => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
        }
    }
}
