//! `strata --version [--verbose]`.

use strata::format::{
    DIRECTORY_VERSION, FORMAT_VERSION, OLDEST_LOG_VERSION, OLDEST_SUPPORTED_VERSION,
};

/// The version line, and with `verbose` the on-disk format versions this
/// build reads and writes and the distance kernels chosen for this CPU.
pub fn text(verbose: bool) -> String {
    let mut s = format!("strata {}\n", env!("CARGO_PKG_VERSION"));
    if verbose {
        s.push_str(&format!(
            "data files (graph, vectors): format version {FORMAT_VERSION} at most, written as \
             the oldest version that holds the index's layout; reads \
             {OLDEST_SUPPORTED_VERSION}..={FORMAT_VERSION}\n"
        ));
        s.push_str(&format!(
            "directory (MANIFEST, append log): directory version {DIRECTORY_VERSION} written; \
             reads MANIFEST {OLDEST_SUPPORTED_VERSION}..={DIRECTORY_VERSION}, log \
             {OLDEST_LOG_VERSION}..={DIRECTORY_VERSION}\n"
        ));
        s.push_str(&format!(
            "distance kernels: {} (chosen at run time for this CPU; STRATA_FORCE_SCALAR=1 forces scalar)\n",
            strata::distance::Kernels::detect().name
        ));
    }
    s
}
