//! The names of the files in an index directory: `MANIFEST`, `LOCK`, and
//! per generation `gNNNNNNNN.graph`, `.vectors`, `.log` and `.tuning`
//! (`format-spec/manifest.md`).

/// The manifest's file name.
pub(crate) const MANIFEST_NAME: &str = "MANIFEST";
/// The name of the lock file a writer holds.
pub(crate) const LOCK_NAME: &str = "LOCK";

/// The graph file of generation `g`.
pub(crate) fn graph(g: u64) -> String {
    format!("g{g:08}.graph")
}

/// The vectors file of generation `g`.
pub(crate) fn vectors(g: u64) -> String {
    format!("g{g:08}.vectors")
}

/// The append log of generation `g`.
pub(crate) fn log(g: u64) -> String {
    format!("g{g:08}.log")
}

/// The stored operating points of generation `g`.
pub(crate) fn tuning(g: u64) -> String {
    format!("g{g:08}.tuning")
}

/// Every file generation `g` may own.
pub(crate) fn all(g: u64) -> [String; 4] {
    [graph(g), vectors(g), log(g), tuning(g)]
}

/// The generation a data or log file name belongs to (`gNNNNNNNN.graph`,
/// `.vectors`, `.log` or `.tuning`), if it is one.
pub(crate) fn generation_of(name: &str) -> Option<u64> {
    let (stem, ext) = name.split_once('.')?;
    let digits = stem.strip_prefix('g')?;
    if !matches!(ext, "graph" | "vectors" | "log" | "tuning")
        || digits.len() < 8
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_to_their_generation() {
        for g in [1, 42, 99_999_999, 123_456_789] {
            for name in all(g) {
                assert_eq!(generation_of(&name), Some(g), "{name}");
            }
        }
        for other in [
            "MANIFEST",
            "LOCK",
            "g1.graph",
            "g0000000x.log",
            "g00000001.tmp",
        ] {
            assert_eq!(generation_of(other), None, "{other}");
        }
    }
}
