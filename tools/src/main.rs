//! `strata`: build, search, evaluate and inspect strata indexes.

mod cmd;
mod ids;
mod input;
mod measure;
mod plot;
mod progress;
mod time;
mod version;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    disable_version_flag = true,
    arg_required_else_help = true,
    about = "Memory-mapped HNSW vector index with int8, LVQ-8, product or binary codes and float32 rescoring"
)]
struct Cli {
    /// Print the version (with --verbose: also the format versions read and
    /// written, and the distance kernels chosen for this CPU).
    #[arg(short = 'V', long = "version")]
    show_version: bool,
    /// With --version: also the format versions and the distance kernels.
    #[arg(long, requires = "show_version")]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Exact top k of each query by brute force, written as .ivecs.
    Groundtruth(cmd::groundtruth::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Args),
    /// Print the manual page (roff), or write every page into a directory.
    Man(cmd::man::Args),
    /// Sweep ef and oversampling, print the Pareto frontier, store an operating point per recall target.
    Tune(cmd::tune::Args),
}

fn main() {
    let cli = Cli::parse();
    if cli.show_version {
        print!("{}", version::text(cli.verbose));
        return;
    }
    let Some(command) = cli.command else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "a subcommand is required (see --help)",
            )
            .exit()
    };
    let result = match command {
        Command::Build(a) => cmd::build::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Insert(a) => cmd::insert::run(a),
        Command::Delete(a) => cmd::delete::run(a),
        Command::Compact(a) => cmd::compact::run(a),
        Command::Groundtruth(a) => cmd::groundtruth::run(a),
        Command::Completions(a) => cmd::completions::run(a, Cli::command()),
        Command::Man(a) => cmd::man::run(a, Cli::command()),
        Command::Tune(a) => cmd::tune::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// The derive's own consistency checks (duplicate flags, bad defaults).
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
