//! `strata`: build, search, evaluate and inspect strata indexes.

mod cmd;
mod ids;
mod input;
mod measure;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Memory-mapped HNSW vector index with int8, LVQ-8, product or binary codes and float32 rescoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from .fvecs, .bvecs or .npy vectors.
    Build(cmd::build::Args),
    /// Search an index with queries from a file.
    Search(cmd::search::Args),
    /// Recall, QPS and latency swept over ef (and oversampling).
    Eval(cmd::eval::Args),
    /// Show header, sections, levels, degrees and memory of an index.
    Inspect(cmd::inspect::Args),
    /// Build, search and evaluate on generated data, end to end.
    Demo(cmd::demo::Args),
    /// Insert vectors through the append log.
    Insert(cmd::insert::Args),
    /// Delete ids through the append log.
    Delete(cmd::delete::Args),
    /// Fold the append log into a new generation.
    Compact(cmd::compact::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Insert(a) => cmd::insert::run(a),
        Command::Delete(a) => cmd::delete::run(a),
        Command::Compact(a) => cmd::compact::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
