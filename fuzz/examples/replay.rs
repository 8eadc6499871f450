//! Runs one target's logic over files or directories without libFuzzer
//! (stable toolchain, no sanitizer) and prints how deep each input got:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- index_search fuzz/corpus/index_search
//! ```
//!
//! A panic is printed with the input's path; the exit status is non-zero
//! if any input panicked.

use std::path::{Path, PathBuf};
use strata_fuzz::targets::{self, Reached};

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .expect("readable directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let f: fn(&[u8]) -> Reached = match target.as_str() {
        "graph_file" => targets::graph_file,
        "vectors_file" => targets::vectors_file,
        "log_file" => targets::log_file,
        "index_search" => targets::index_search,
        "input_readers" => targets::input_readers,
        "filter_expr" => targets::filter_expr,
        _ => {
            eprintln!("usage: replay <graph_file|vectors_file|log_file|index_search|input_readers|filter_expr> PATH...");
            std::process::exit(2);
        }
    };
    let mut inputs = Vec::new();
    for a in args {
        files(Path::new(&a), &mut inputs);
    }
    let (mut total, mut panicked) = (Reached::default(), 0);
    for p in &inputs {
        let bytes = std::fs::read(p).expect("readable input");
        match std::panic::catch_unwind(|| f(&bytes)) {
            Ok(r) => {
                println!(
                    "{:>3} opened {:>3} searches  {}",
                    r.opened,
                    r.searches,
                    p.display()
                );
                total.opened += r.opened;
                total.searches += r.searches;
            }
            Err(_) => {
                println!("PANIC  {}", p.display());
                panicked += 1;
            }
        }
    }
    println!(
        "{} inputs: {} opened, {} searches, {} panicked",
        inputs.len(),
        total.opened,
        total.searches,
        panicked
    );
    if panicked > 0 {
        std::process::exit(1);
    }
}
