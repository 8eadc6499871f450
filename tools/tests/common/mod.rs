//! Helpers shared by the command-line tests: a small index, input files,
//! and running the `strata` binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use strata::dataset::{write_fvecs, Vectors};

pub const DIM: usize = 8;
pub const BASE: u64 = 200;

/// A deterministic vector for a seed (distinct seeds give distinct vectors).
pub fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32) / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// An index of ids `0..BASE`, id `i` holding `vector(i)`, built by the
/// binary under test (so an older one, through `STRATA_BIN`, reads it).
pub fn build_base(dir: &Path) {
    let input = dir.with_extension("base.fvecs");
    write_vectors(&input, &(0..BASE).collect::<Vec<_>>());
    let o = strata()
        .args(["build", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir)
        .args(["--metric", "l2", "--quantization", "none", "--m", "8"])
        .args([
            "--ef-construction",
            "32",
            "--threads",
            "1",
            "--seed",
            "1",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "build: {}", stderr(&o));
}

/// Writes `seeds`' vectors as an .fvecs file.
pub fn write_vectors(path: &Path, seeds: &[u64]) {
    let data: Vec<f32> = seeds.iter().flat_map(|&s| vector(s)).collect();
    write_fvecs(path, &Vectors { dim: DIM, data }).unwrap();
}

/// Writes ids as a text file.
pub fn write_ids(path: &Path, ids: &[u64]) {
    let text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

/// The binary under test; `STRATA_BIN` runs the same tests against another
/// build (e.g. an older one, to see which of them it fails).
pub fn strata() -> Command {
    Command::new(
        std::env::var_os("STRATA_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_strata").into()),
    )
}

pub fn run(args: &[&str]) -> Output {
    strata().args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON object on the last line of stdout.
pub fn json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}
