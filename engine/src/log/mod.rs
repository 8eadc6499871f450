//! The append log: inserts, deletes and upserts made after a build, as
//! self-delimiting checksummed records in `gNNNNNNNN.log` beside the
//! generation they apply to. Layout and recovery rules:
//! `format-spec/log-file.md`.

pub(crate) mod file;
pub(crate) mod record;
pub(crate) mod replay;

pub use file::{parse_log, LogInfo};
pub use record::Op;
pub use replay::ReplayReport;
