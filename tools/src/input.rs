//! Vector input for the commands: a file (format by extension), or `-` for
//! standard input (`.npy` if it starts with NumPy's magic, else `.fvecs`;
//! read as a stream, no seeking).

use std::io::{BufRead, Read};
use std::path::Path;
use strata::dataset::{self, Vectors};

/// Whether a path argument means standard input/output.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Refuses two arguments that both read standard input (`-`): the first
/// would consume it all. `args` are `(flag, value)` pairs.
pub fn one_stdin(args: &[(&str, Option<&std::path::PathBuf>)]) -> Result<(), String> {
    let stdin: Vec<&str> = args
        .iter()
        .filter(|(_, p)| p.is_some_and(|p| is_stdio(p)))
        .map(|(flag, _)| *flag)
        .collect();
    if stdin.len() > 1 {
        return Err(format!(
            "{} all read stdin (`-`): only one of them can; give the others as files",
            stdin.join(" and ")
        ));
    }
    Ok(())
}

/// All of standard input as text (UTF-8).
pub fn read_stdin_text() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| format!("<stdin>: {e}"))?;
    Ok(text)
}

/// Reads vectors from `path`, or from standard input for `-`.
pub fn read_vectors(path: &Path) -> strata::Result<Vectors> {
    if !is_stdio(path) {
        return dataset::read_vectors(path);
    }
    let name = Path::new("<stdin>");
    let stdin = std::io::stdin();
    let mut r = stdin.lock();
    let is_npy = r
        .fill_buf()
        .map_err(|e| io(name, e))?
        .starts_with(b"\x93NUMPY");
    if is_npy {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|e| io(name, e))?;
        dataset::parse_npy(&bytes, name)
    } else {
        dataset::read_fvecs_from(r, name)
    }
}

fn io(name: &Path, e: std::io::Error) -> strata::Error {
    strata::Error::InputFormat {
        path: name.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Checks that queries have the index's dimension, naming both.
pub fn check_query_dim(query: &Path, queries: &Vectors, index_dim: usize) -> Result<(), String> {
    if queries.dim != index_dim {
        return Err(format!(
            "dimension mismatch: the queries in {} have dimension {}, the index has dimension {index_dim}",
            query.display(),
            queries.dim
        ));
    }
    Ok(())
}
