//! What `insert`, `delete` and `compact` share: how the writer is opened
//! (durability, background compaction), and how a batch's errors and
//! reports are told.

use super::CliResult;
use strata::{AutoCompact, BatchReport, Durability, Error, Writer, WriterOptions};

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
pub struct AutoCompactArg(pub Option<f64>);

/// Parses `--auto-compact`: a positive log fraction, or `off`.
pub fn parse_auto_compact(s: &str) -> Result<AutoCompactArg, String> {
    if s == "off" {
        return Ok(AutoCompactArg(None));
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(AutoCompactArg(Some(f))),
        _ => Err(format!("{s:?} is neither a positive fraction nor `off`")),
    }
}

/// Opens the writer with the command line's durability and compaction.
pub fn open_writer(
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
pub fn auto_compacted(writer: &Writer) -> strata::AutoCompactStats {
    writer.wait_for_auto_compact();
    writer.auto_compact_stats()
}

/// Says what a background compaction did.
pub fn print_auto_compact(s: &strata::AutoCompactStats) {
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
pub fn auto_compact_json(s: &strata::AutoCompactStats) -> serde_json::Value {
    serde_json::json!({
        "completed": s.completed,
        "failed": s.failed,
        "generation": s.last.map(|r| r.generation),
        "error": s.last_error,
    })
}

/// An error of a write command before anything was written (every `insert`
/// and `delete` is one atomic batch, validated before anything is written),
/// printed as JSON too with `--json`.
pub fn refused(json: bool, e: impl std::fmt::Display, hint: &str) -> Box<dyn std::error::Error> {
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
pub fn batch_error(json: bool, e: &Error, hint: &str) -> Box<dyn std::error::Error> {
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

/// After the batch was committed: makes it durable and records the log's
/// length in the MANIFEST. A failure here does not undo the batch.
pub fn checkpoint(writer: &Writer, r: &BatchReport) -> CliResult {
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
pub fn ranges(ids: &[u64], max: usize) -> String {
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
