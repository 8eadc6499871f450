//! One module per subcommand; each exposes `Args` and `run`.

pub mod build;
pub mod demo;
pub mod eval;
pub mod inspect;
pub mod search;
pub mod write;

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
