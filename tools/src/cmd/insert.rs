//! `strata insert`: vectors in through the append log, as one atomic batch.

use super::write_common::{
    auto_compact_json, auto_compacted, batch_error, checkpoint, open_writer, parse_auto_compact,
    print_auto_compact, ranges, refused, AutoCompactArg, DurabilityArg,
};
use super::CliResult;
use crate::ids::IdList;
use std::path::PathBuf;
use std::time::Instant;
use strata::{BatchOptions, Error};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    /// Vectors to insert (.fvecs, .bvecs or .npy; `-` reads .fvecs or .npy from stdin).
    #[arg(long)]
    pub input: PathBuf,
    /// Ids, one per row: a text file of integers (whitespace or comma separated),
    /// `-` for such text on stdin, or an inline list such as `10,11,20-29`.
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
    /// `strata build --labels`; `-` reads it from stdin).
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
    /// Print the report as one JSON object (no spinner).
    #[arg(long)]
    pub json: bool,
    /// No progress spinner (shown for inputs of more than 10,000 rows).
    #[arg(long)]
    pub quiet: bool,
}

/// Inputs of more rows than this show a spinner while the batch is written.
const SPINNER_ROWS: usize = 10_000;

/// The hint for an insert refused because an id exists.
fn insert_hint(e: &Error) -> &'static str {
    match e {
        Error::BatchRejected { source, .. } if matches!(**source, Error::IdExists(_)) => {
            " (if this retries a command that may have committed, run it again with --skip-existing)"
        }
        _ => "",
    }
}

pub fn run(a: Args) -> CliResult {
    crate::input::one_stdin(&[
        ("--input", Some(&a.input)),
        ("--ids", a.ids.as_ref()),
        ("--labels", a.labels.as_ref()),
    ])
    .map_err(|e| refused(a.json, e, ""))?;
    let data = crate::input::read_vectors(&a.input)?;
    let writer = open_writer(&a.index.dir, a.durability, a.auto_compact)?;
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
    let spinner = crate::progress::spinner(
        format!(
            "{} {} vectors as one batch",
            if a.upsert { "upserting" } else { "inserting" },
            ids.len()
        ),
        a.quiet || a.json || ids.len() <= SPINNER_ROWS,
    );
    let result = match (&labels, a.upsert) {
        (None, true) => writer.upsert_batch(&ids, &data.data),
        (None, false) => writer.insert_batch(&ids, &data.data, options),
        (Some(l), true) => writer.upsert_batch_with_labels(&ids, &data.data, l),
        (Some(l), false) => writer.insert_batch_with_labels(&ids, &data.data, l, options),
    };
    spinner.finish_and_clear();
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
