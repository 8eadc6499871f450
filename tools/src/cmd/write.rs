//! `strata insert`, `strata delete`, `strata compact`: the write path.

use super::CliResult;
use crate::ids::IdList;
use std::path::PathBuf;
use std::time::Instant;
use strata::{CompactOptions, Durability, Writer};

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
    /// Vectors to insert (.fvecs, .bvecs or .npy; `-` reads .fvecs or .npy from stdin).
    #[arg(long)]
    pub input: PathBuf,
    /// Ids, one per row: a text file of integers (whitespace or comma separated),
    /// or an inline list such as `10,11,20-29`.
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
    /// Rebuild even when the log holds no records.
    #[arg(long)]
    pub force: bool,
}

pub fn insert(a: InsertArgs) -> CliResult {
    let data = crate::input::read_vectors(&a.input)?;
    let writer = Writer::open(&a.dir, a.durability.into())?;
    let ids = match &a.ids {
        Some(p) => IdList::from_arg(&p.to_string_lossy())?,
        None => {
            let first = writer.next_free_id();
            IdList::parse(&format!("{first}-{}", first + data.len() as u64 - 1))?
        }
    };
    if ids.len() != data.len() as u64 {
        return Err(format!("{} ids for {} vectors", ids.len(), data.len()).into());
    }
    let t = Instant::now();
    for (id, v) in ids.iter().zip(data.rows()) {
        if a.upsert {
            writer.upsert(id, v)?;
        } else {
            writer.insert(id, v)?;
        }
    }
    writer.flush()?;
    let s = t.elapsed().as_secs_f64();
    let st = writer.live().stats();
    let (first, last) = ids.ends().unwrap_or((0, 0));
    println!(
        "inserted {} vectors (ids {first}..={last}) in {s:.2} s ({:.0}/s, durability {:?}); {} live, log {} records",
        ids.len(),
        ids.len() as f64 / s.max(1e-9),
        a.durability,
        st.live,
        st.log_records
    );
    Ok(())
}

pub fn delete(a: DeleteArgs) -> CliResult {
    let ids = IdList::from_arg(&a.ids)?;
    let writer = Writer::open(&a.dir, a.durability.into())?;
    // Ids are generated lazily from their runs; a list naming more ids than
    // are live cannot succeed, so it is refused before anything is deleted.
    let live = writer.live().len() as u64;
    if ids.len() > live {
        return Err(format!(
            "--ids names {} ids but the index holds {live} live vectors: nothing deleted",
            ids.len()
        )
        .into());
    }
    for id in ids.iter() {
        writer.delete(id)?;
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
    strata::check_threads(a.threads)?;
    let writer = Writer::open(&a.dir, Durability::EveryOp)?;
    let before = writer.live().stats();
    if before.log_records == 0 && !a.force {
        println!(
            "nothing to compact: the log of generation {} holds no records (--force rebuilds anyway)",
            before.generation
        );
        return Ok(());
    }
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
