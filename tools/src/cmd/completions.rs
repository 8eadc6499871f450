//! `strata completions SHELL`: a shell completion script on stdout.

use super::CliResult;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script of `command` (the whole `strata` command
/// line) for the shell to standard output.
pub fn run(a: Args, mut command: clap::Command) -> CliResult {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut command, "strata", &mut out);
    Ok(())
}
