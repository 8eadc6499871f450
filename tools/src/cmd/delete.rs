//! `strata delete`: ids out through the append log, as one atomic batch.

use super::write_common::{
    auto_compact_json, auto_compacted, batch_error, checkpoint, open_writer, parse_auto_compact,
    print_auto_compact, ranges, refused, AutoCompactArg, DurabilityArg,
};
use super::CliResult;
use crate::ids::IdList;
use strata::{BatchOptions, Error};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    /// Ids to delete: a file of integers (`-`: read from stdin), or a list
    /// such as `3,17,40-49`.
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

pub fn run(a: Args) -> CliResult {
    let ids = IdList::from_arg(&a.ids).map_err(|e| refused(a.json, e, ""))?;
    let writer = open_writer(&a.index.dir, a.durability, a.auto_compact)?;
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
