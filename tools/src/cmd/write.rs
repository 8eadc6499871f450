//! `strata insert`, `strata delete`, `strata compact`: the write path.

use super::CliResult;
use crate::ids::IdList;
use std::path::PathBuf;
use std::time::Instant;
use strata::{
    AutoCompact, BatchOptions, BatchReport, CompactOptions, Durability, Error, Writer,
    WriterOptions,
};

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

/// `--auto-compact`: a log fraction, or off.
#[derive(Clone, Copy, Debug)]
pub struct AutoCompactArg(Option<f64>);

fn parse_auto_compact(s: &str) -> Result<AutoCompactArg, String> {
    if s == "off" {
        return Ok(AutoCompactArg(None));
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(AutoCompactArg(Some(f))),
        _ => Err(format!("{s:?} is neither a positive fraction nor `off`")),
    }
}

/// Opens the writer with the command line's durability and compaction.
fn open_writer(
    dir: &std::path::Path,
    durability: DurabilityArg,
    auto: AutoCompactArg,
) -> strata::Result<Writer> {
    let options = WriterOptions {
        durability: durability.into(),
        auto_compact: auto.0.map(|log_fraction| AutoCompact {
            log_fraction,
            ..Default::default()
        }),
    };
    Writer::open_with(dir, &options)
}

/// Waits for a background compaction the command started.
fn auto_compacted(writer: &Writer) -> strata::AutoCompactStats {
    writer.wait_for_auto_compact();
    writer.auto_compact_stats()
}

/// Says what a background compaction did.
fn print_auto_compact(s: &strata::AutoCompactStats) {
    if let Some(r) = s.last {
        println!(
            "compacted in the background: generation {}, {} vectors, {} log records folded, {} carried",
            r.generation, r.vectors, r.folded_records, r.carried_records
        );
    }
    if let Some(e) = &s.last_error {
        eprintln!("warning: background compaction failed (the index is unchanged): {e}");
    }
}

/// The JSON of a background compaction.
fn auto_compact_json(s: &strata::AutoCompactStats) -> serde_json::Value {
    serde_json::json!({
        "completed": s.completed,
        "failed": s.failed,
        "generation": s.last.map(|r| r.generation),
        "error": s.last_error,
    })
}

#[derive(clap::Args)]
pub struct InsertArgs {
    /// Generation directory.
    pub dir: PathBuf,
    /// Vectors to insert (.fvecs, .bvecs or .npy; `-` reads .fvecs or .npy from stdin).
    #[arg(long)]
    pub input: PathBuf,
    /// Ids, one per row: a text file of integers (whitespace or comma separated),
    /// or an inline list such as `10,11,20-29`.
    /// Default: the next free ids, printed. Give ids to make a retry after a
    /// crash recognisable (see --skip-existing): without them a retry
    /// inserts the vectors again under new ids.
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Replace ids that exist instead of failing.
    #[arg(long, conflicts_with = "skip_existing")]
    pub upsert: bool,
    /// Skip ids that exist with the same vector (a retry of a command that
    /// may have committed); an id that exists with another vector is still
    /// an error. Needs --ids.
    #[arg(long, requires = "ids")]
    pub skip_existing: bool,
    /// Labels of the rows: a text file with one line per input row (see
    /// `strata build --labels`).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// When operations become durable.
    #[arg(long, value_enum, default_value = "group")]
    pub durability: DurabilityArg,
    /// Compact in the background once the log holds this many operations
    /// per vector of the generation (and at least 10,000), or `off`; the
    /// command waits for a compaction it started before it exits.
    #[arg(long, default_value = "0.25", value_parser = parse_auto_compact)]
    pub auto_compact: AutoCompactArg,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Generation directory.
    pub dir: PathBuf,
    /// Ids to delete: a file of integers, or a list such as `3,17,40-49`.
    #[arg(long)]
    pub ids: String,
    /// Skip ids that are not in the index instead of failing (makes a
    /// retry of a command that may have committed a no-op).
    #[arg(long)]
    pub ignore_missing: bool,
    /// When operations become durable.
    #[arg(long, value_enum, default_value = "group")]
    pub durability: DurabilityArg,
    /// Compact in the background once the log holds this many operations
    /// per vector of the generation (and at least 10,000), or `off`; the
    /// command waits for a compaction it started before it exits.
    #[arg(long, default_value = "0.25", value_parser = parse_auto_compact)]
    pub auto_compact: AutoCompactArg,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct CompactArgs {
    /// Generation directory.
    pub dir: PathBuf,
    /// Train a new quantizer on the live vectors instead of reusing the current one.
    #[arg(long)]
    pub retrain: bool,
    /// Build threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Build the new generation with `build --refine`'s second pass (the
    /// files do not record a refined build: give it at every compaction).
    #[arg(long)]
    pub refine: bool,
    /// Rebuild even when the log holds no records.
    #[arg(long)]
    pub force: bool,
}

/// An error of a write command before anything was written (every `insert`
/// and `delete` is one atomic batch, validated before anything is written),
/// printed as JSON too with `--json`.
fn refused(json: bool, e: impl std::fmt::Display, hint: &str) -> Box<dyn std::error::Error> {
    let msg = format!("{e}; nothing was committed{hint}");
    if json {
        println!(
            "{}",
            serde_json::json!({ "committed": false, "error": msg })
        );
    }
    msg.into()
}

/// An error of the batch itself: refused whole (the message says nothing
/// was committed), or committed but not made durable.
fn batch_error(json: bool, e: &Error, hint: &str) -> Box<dyn std::error::Error> {
    let (committed, msg) = match e {
        Error::CommittedNotDurable { .. } => (true, e.to_string()),
        Error::BatchRejected { .. } => (false, format!("{e}{hint}")),
        _ => (false, format!("{e}; nothing was committed{hint}")),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "committed": committed, "durable": !committed, "error": msg })
        );
    }
    msg.into()
}

/// The hint for an insert refused because an id exists.
fn insert_hint(e: &Error) -> &'static str {
    match e {
        Error::BatchRejected { source, .. } if matches!(**source, Error::IdExists(_)) => {
            " (if this retries a command that may have committed, run it again with --skip-existing)"
        }
        _ => "",
    }
}

/// After the batch was committed: makes it durable and records the log's
/// length in the MANIFEST. A failure here does not undo the batch.
fn checkpoint(writer: &Writer, r: &BatchReport) -> CliResult {
    writer.checkpoint().map_err(|e| {
        format!(
            "the batch was committed ({} operations applied) but making it durable failed: {e}; \
             a retry with the same ids and --skip-existing / --ignore-missing is safe",
            r.committed()
        )
        .into()
    })
}

/// Ids as ranges `a..=b` (consecutive runs), at most `max` of them shown.
fn ranges(ids: &[u64], max: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j].wrapping_add(1) {
            j += 1;
        }
        if out.len() == max {
            out.push("...".into());
            break;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}..={}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

pub fn insert(a: InsertArgs) -> CliResult {
    let data = crate::input::read_vectors(&a.input)?;
    let writer = open_writer(&a.dir, a.durability, a.auto_compact)?;
    let assigned = a.ids.is_none();
    let ids = match &a.ids {
        Some(p) => IdList::from_arg(&p.to_string_lossy()).map_err(|e| refused(a.json, e, ""))?,
        None => {
            let first = writer.next_free_id();
            IdList::parse(&format!("{first}-{}", first + data.len() as u64 - 1))?
        }
    };
    if ids.len() != data.len() as u64 {
        return Err(refused(
            a.json,
            format!("{} ids for {} vectors", ids.len(), data.len()),
            "",
        ));
    }
    // As many ids as rows: materialising them is bounded by the input.
    let ids: Vec<u64> = ids.iter().collect();
    let t = Instant::now();
    let options = BatchOptions {
        skip_existing: a.skip_existing,
        ..Default::default()
    };
    let labels = a
        .labels
        .as_deref()
        .map(|p| super::build::read_row_labels(p, ids.len()))
        .transpose()
        .map_err(|e| refused(a.json, e, ""))?;
    let result = match (&labels, a.upsert) {
        (None, true) => writer.upsert_batch(&ids, &data.data),
        (None, false) => writer.insert_batch(&ids, &data.data, options),
        (Some(l), true) => writer.upsert_batch_with_labels(&ids, &data.data, l),
        (Some(l), false) => writer.insert_batch_with_labels(&ids, &data.data, l, options),
    };
    let r = result.map_err(|e| batch_error(a.json, &e, insert_hint(&e)))?;
    checkpoint(&writer, &r)?;
    let s = t.elapsed().as_secs_f64();
    let auto = auto_compacted(&writer);
    let st = writer.live().stats();
    let skipped: std::collections::HashSet<u64> = r.skipped_existing.iter().copied().collect();
    let committed: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !skipped.contains(id))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "committed": true,
                "inserted": r.inserted,
                "upserted": r.upserted,
                "skipped_existing": r.skipped_existing.len(),
                "skipped_ids": r.skipped_existing,
                "first_id": committed.first(),
                "last_id": committed.last(),
                "ids_assigned": assigned,
                "log_records": r.log_records,
                "live": st.live,
                "seconds": s,
                "auto_compact": auto_compact_json(&auto),
            })
        );
        return Ok(());
    }
    let verb = if a.upsert { "upserted" } else { "inserted" };
    println!(
        "{verb} {} vectors (ids {}) as one atomic batch in {s:.2} s ({:.0}/s, durability {:?}); {} live, log {} records",
        r.inserted + r.upserted,
        if committed.is_empty() { "none".to_string() } else { ranges(&committed, 8) },
        (r.inserted + r.upserted) as f64 / s.max(1e-9),
        a.durability,
        st.live,
        st.log_records
    );
    if !r.skipped_existing.is_empty() {
        println!(
            "skipped {} ids that exist with the same vector: {}",
            r.skipped_existing.len(),
            ranges(&r.skipped_existing, 8)
        );
    }
    if assigned && !committed.is_empty() {
        println!(
            "ids were assigned (next free ids): a retry without --ids would insert the vectors again under new ids"
        );
    }
    print_auto_compact(&auto);
    Ok(())
}

pub fn delete(a: DeleteArgs) -> CliResult {
    let ids = IdList::from_arg(&a.ids).map_err(|e| refused(a.json, e, ""))?;
    let writer = open_writer(&a.dir, a.durability, a.auto_compact)?;
    // Ids are generated lazily from their runs; a list naming more ids than
    // are live cannot succeed, so it is refused before anything is deleted
    // or materialised.
    let live = writer.live().len() as u64;
    if ids.len() > live {
        return Err(refused(
            a.json,
            format!(
                "--ids names {} ids but the index holds {live} live vectors",
                ids.len()
            ),
            "",
        ));
    }
    let ids: Vec<u64> = ids.iter().collect();
    let options = BatchOptions {
        ignore_missing: a.ignore_missing,
        ..Default::default()
    };
    let r = writer.delete_batch(&ids, options).map_err(|e| {
        let hint = match &e {
            Error::BatchRejected { source, .. } if matches!(**source, Error::UnknownId(_)) => {
                " (use --ignore-missing to skip ids that are not in the index)"
            }
            _ => "",
        };
        batch_error(a.json, &e, hint)
    })?;
    checkpoint(&writer, &r)?;
    let auto = auto_compacted(&writer);
    let st = writer.live().stats();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "committed": true,
                "deleted": r.deleted,
                "skipped_missing": r.skipped_missing.len(),
                "skipped_ids": r.skipped_missing,
                "log_records": r.log_records,
                "live": st.live,
                "auto_compact": auto_compact_json(&auto),
            })
        );
        return Ok(());
    }
    println!(
        "deleted {} ids as one atomic batch; {} live, log {} records",
        r.deleted, st.live, st.log_records
    );
    if !r.skipped_missing.is_empty() {
        println!(
            "skipped {} ids that are not in the index: {}",
            r.skipped_missing.len(),
            ranges(&r.skipped_missing, 8)
        );
    }
    print_auto_compact(&auto);
    Ok(())
}

pub fn compact(a: CompactArgs) -> CliResult {
    strata::check_threads(a.threads)?;
    // This command compacts itself: no background one on top.
    let options = WriterOptions {
        auto_compact: None,
        ..WriterOptions::new(Durability::EveryOp)
    };
    let writer = Writer::open_with(&a.dir, &options)?;
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
        refine: a.refine,
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
    use super::ranges;

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10], 8), "1..=3, 7, 9..=10");
        assert_eq!(ranges(&[1, 3, 5], 2), "1, 3, ...");
        assert_eq!(ranges(&[], 2), "");
    }
}
