//! The index directory: the names of its files ([`names`]), the writer
//! lock ([`lock`]), the MANIFEST on disk ([`manifest`]), publishing a
//! generation ([`publish`]), opening the current one ([`open`]), its
//! stored operating points ([`tuning`]) and removing obsolete files
//! ([`gc`]).
//!
//! Above `format` (which turns bytes into typed views and knows no file)
//! and `log`'s record codec; below the index, the reader and the writer,
//! which know no file name.

pub(crate) mod gc;
pub(crate) mod lock;
pub(crate) mod manifest;
pub(crate) mod names;
pub(crate) mod open;
pub(crate) mod publish;
pub(crate) mod tuning;
