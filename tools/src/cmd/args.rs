//! Arguments several subcommands take, defined once and flattened into
//! each (`#[command(flatten)]`), so that their name, help and parsing agree.

use std::path::PathBuf;

/// The index directory, the first positional argument of every command
/// that opens an existing index.
#[derive(clap::Args)]
pub struct IndexDir {
    /// Generation directory.
    pub dir: PathBuf,
}

/// `--query`: the file of query vectors.
#[derive(clap::Args)]
pub struct QueryFile {
    /// Queries (.fvecs, .bvecs or .npy; `-` reads .fvecs or .npy from stdin).
    #[arg(long)]
    pub query: PathBuf,
}
