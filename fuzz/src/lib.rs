//! Fuzz targets for strata's readers of untrusted bytes.
//!
//! The logic lives in [`targets`] (`src/targets.rs`), plain functions over
//! byte slices that depend only on `strata`, `crc32fast` and `std`, so that
//! `engine/tests/fuzz_corpus.rs` can include the same file and replay the
//! checked-in corpus under `cargo test`. The binaries in `fuzz_targets/`
//! are one-line libFuzzer wrappers around them.

pub mod targets;
