//! `strata man`: manual pages (roff), generated from the command line's
//! own definition so that they cannot fall behind it.

use super::CliResult;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Write `strata.1` and one page per subcommand (`strata-build.1`, ...)
    /// into this directory (created if missing) instead of printing the
    /// top page to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the page of `command` (the whole `strata` command line), or
/// writes every page into `--out`.
pub fn run(a: Args, command: clap::Command) -> CliResult {
    let Some(dir) = a.out.filter(|d| !crate::input::is_stdio(d)) else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command).render(&mut out)?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
    clap_mangen::generate_to(command, &dir)
        .map_err(|e| format!("writing manual pages into {}: {e}", dir.display()))?;
    eprintln!("manual pages written to {}", dir.display());
    Ok(())
}
