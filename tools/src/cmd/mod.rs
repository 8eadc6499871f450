//! One module per subcommand; each exposes `Args` and `run`.

pub mod args;
pub mod build;
pub mod compact;
pub mod completions;
pub mod delete;
pub mod demo;
pub mod eval;
pub mod groundtruth;
pub mod insert;
pub mod inspect;
pub mod man;
pub mod search;
pub mod tune;
pub mod write_common;

use std::path::PathBuf;

/// Errors of the command line: the library's, or a usage problem.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Human-readable byte count.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Which vectors `search` and `eval` may return (shared by both).
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Return only these ids: a file of decimal ids separated by
    /// whitespace or commas (see `strata::Filter`); `-` reads them from stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "filter")]
    pub filter_ids: Option<PathBuf>,
    /// Return only vectors whose labels match this expression, e.g.
    /// 'label in (3, 4) and not label = 9' (`label = N`, `label != N`,
    /// `label in (..)`, `label not in (..)`, not, and, or, parentheses).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// With a filter, scan the matches exactly when at most N match
    /// (default: `strata::filter::DEFAULT_EXACT_BELOW`).
    #[arg(long, value_name = "N")]
    pub exact_below: Option<usize>,
}

impl FilterArgs {
    /// The filter these flags name, if any.
    pub fn filter(&self) -> Result<Option<strata::Filter>, String> {
        if let Some(expr) = &self.filter {
            return strata::Filter::labels(expr)
                .map(Some)
                .map_err(|e| format!("--filter {expr:?}: {e}"));
        }
        let Some(path) = &self.filter_ids else {
            return Ok(None);
        };
        let text = if crate::input::is_stdio(path) {
            crate::input::read_stdin_text()
        } else {
            std::fs::read_to_string(path).map_err(|e| e.to_string())
        }
        .map_err(|e| format!("--filter-ids {}: {e}", path.display()))?;
        let mut ids = Vec::new();
        for (line, l) in text.lines().enumerate() {
            for tok in l
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
            {
                ids.push(tok.parse::<u64>().map_err(|_| {
                    format!(
                        "--filter-ids {} line {}: {tok:?} is not an id (a non-negative integer)",
                        path.display(),
                        line + 1
                    )
                })?);
            }
        }
        Ok(Some(strata::Filter::ids(ids)))
    }
}

/// How `search` and `eval` read rows for rescoring (shared by both).
#[derive(clap::Args)]
pub struct IoArgs {
    /// How rescoring reads full-precision rows: auto, mmap, willneed, uring or pread.
    #[arg(long, default_value = "auto")]
    pub io: strata::IoMode,
    /// Lock the graph file in RAM at open (mlock; reads it once).
    #[arg(long)]
    pub lock_graph: bool,
    /// Int8: skip rescoring candidates beyond the k-th quantized distance
    /// plus Z times the worst-case error bound (1 = exact without clipping).
    #[arg(long, value_name = "Z")]
    pub rescore_cut: Option<f32>,
    /// MiB of RAM for a cache of rows read directly (uring, pread, auto):
    /// rows read from disk are kept and served from memory when rescored
    /// again (0 = none).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub row_cache_mib: usize,
}

impl IoArgs {
    /// These flags as open options (other options at their defaults).
    pub fn open_options(&self) -> Result<strata::OpenOptions, String> {
        let row_cache_bytes = self
            .row_cache_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| format!("--row-cache-mib {} is too large", self.row_cache_mib))?;
        Ok(strata::OpenOptions {
            io: self.io,
            lock_graph: self.lock_graph,
            rescore_cut: self.rescore_cut,
            row_cache_bytes,
            ..Default::default()
        })
    }
}
