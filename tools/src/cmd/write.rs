//! `strata insert`, `strata delete`, `strata compact`: the write path.

use super::CliResult;
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata::{dataset, CompactOptions, Durability, Writer};

/// How operations are made durable, as chosen on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DurabilityArg {
    /// fsync after every operation.
    EveryOp,
    /// fsync every 1,000 operations or 10 ms, and at the end.
    Group,
    /// fsync once at the end.
    None,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::EveryOp => Durability::EveryOp,
            DurabilityArg::Group => Durability::Group {
                max_ops: 1000,
                max_delay: std::time::Duration::from_millis(10),
            },
            DurabilityArg::None => Durability::None,
        }
    }
}

#[derive(clap::Args)]
pub struct InsertArgs {
    /// Index directory.
    pub dir: PathBuf,
    /// Vectors to insert (.fvecs, .bvecs or .npy).
    #[arg(long)]
    pub input: PathBuf,
    /// Ids, one per row: a text file of integers (whitespace or comma separated).
    /// Default: the next free ids, printed.
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Replace ids that exist instead of failing.
    #[arg(long)]
    pub upsert: bool,
    /// When operations become durable.
    #[arg(long, value_enum, default_value = "group")]
    pub durability: DurabilityArg,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Index directory.
    pub dir: PathBuf,
    /// Ids to delete: a file of integers, or a list such as `3,17,40-49`.
    #[arg(long)]
    pub ids: String,
    /// When operations become durable.
    #[arg(long, value_enum, default_value = "group")]
    pub durability: DurabilityArg,
}

#[derive(clap::Args)]
pub struct CompactArgs {
    /// Index directory.
    pub dir: PathBuf,
    /// Train a new quantizer on the live vectors instead of reusing the current one.
    #[arg(long)]
    pub retrain: bool,
    /// Build threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Parses integers separated by commas or whitespace, with `a-b` ranges.
fn parse_ids(text: &str) -> Result<Vec<u64>, String> {
    let mut ids = Vec::new();
    for tok in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        match tok.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.parse().map_err(|e| format!("{tok:?}: {e}"))?,
                    b.parse().map_err(|e| format!("{tok:?}: {e}"))?,
                );
                if b < a || b - a > 100_000_000 {
                    return Err(format!("{tok:?}: not a range of at most 100M ids"));
                }
                ids.extend(a..=b);
            }
            None => ids.push(tok.parse().map_err(|e| format!("{tok:?}: {e}"))?),
        }
    }
    Ok(ids)
}

fn ids_from(arg: &str) -> Result<Vec<u64>, String> {
    let p = Path::new(arg);
    if p.is_file() {
        parse_ids(&std::fs::read_to_string(p).map_err(|e| format!("{arg}: {e}"))?)
    } else {
        parse_ids(arg)
    }
}

pub fn insert(a: InsertArgs) -> CliResult {
    let data = dataset::read_vectors(&a.input)?;
    let writer = Writer::open(&a.dir, a.durability.into())?;
    let ids = match &a.ids {
        Some(p) => ids_from(&p.to_string_lossy())?,
        None => {
            let first = writer.next_free_id();
            (first..first + data.len() as u64).collect()
        }
    };
    if ids.len() != data.len() {
        return Err(format!("{} ids for {} vectors", ids.len(), data.len()).into());
    }
    let t = Instant::now();
    for (id, v) in ids.iter().zip(data.rows()) {
        if a.upsert {
            writer.upsert(*id, v)?;
        } else {
            writer.insert(*id, v)?;
        }
    }
    writer.flush()?;
    let s = t.elapsed().as_secs_f64();
    let st = writer.live().stats();
    println!(
        "inserted {} vectors (ids {}..={}) in {s:.2} s ({:.0}/s, durability {:?}); {} live, log {} records",
        ids.len(),
        ids.first().copied().unwrap_or(0),
        ids.last().copied().unwrap_or(0),
        ids.len() as f64 / s.max(1e-9),
        a.durability,
        st.live,
        st.log_records
    );
    Ok(())
}

pub fn delete(a: DeleteArgs) -> CliResult {
    let ids = ids_from(&a.ids)?;
    let writer = Writer::open(&a.dir, a.durability.into())?;
    for id in &ids {
        writer.delete(*id)?;
    }
    writer.flush()?;
    let st = writer.live().stats();
    println!(
        "deleted {} ids; {} live, log {} records",
        ids.len(),
        st.live,
        st.log_records
    );
    Ok(())
}

pub fn compact(a: CompactArgs) -> CliResult {
    let writer = Writer::open(&a.dir, Durability::EveryOp)?;
    let before = writer.live().stats();
    let t = Instant::now();
    let r = writer.compact(CompactOptions {
        retrain: a.retrain,
        threads: a.threads,
    })?;
    println!(
        "compacted generation {} ({} base, {} deleted, {} inserted, {} log records) into generation {}: {} vectors in {:.2} s",
        before.generation,
        before.base_count,
        before.deleted,
        before.inserted,
        r.folded_records,
        r.generation,
        r.vectors,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ids;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(
            parse_ids("3, 17 40-42\n7").unwrap(),
            vec![3, 17, 40, 41, 42, 7]
        );
        assert!(parse_ids("5-2").is_err());
        assert!(parse_ids("x").is_err());
    }
}
