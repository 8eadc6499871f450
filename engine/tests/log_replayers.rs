//! Open, refresh and compaction read the append log through one replayer:
//! a damaged committed record is the same typed error from each, naming the
//! same offset, and a torn tail (a record cut short at the end) is dropped
//! by each, the committed records before it kept.
//!
//! Compaction only decodes what was appended during its build (the rest is
//! already in the writer's memory), so the damage is placed there with
//! `Writer::compact_with`, deterministically.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use strata::dataset::clustered;
use strata::{
    BuildParams, CompactOptions, Durability, Error, FileKind, Index, IndexBuilder, Metric, Writer,
};

const DIM: usize = 16;
/// An insert record of dimension 16: 12-byte frame, 20-byte fixed body,
/// 64 bytes of vector (format-spec/log-file.md).
const INSERT_RECORD: u64 = 12 + 20 + 4 * DIM as u64;

fn build(dir: &Path) -> Vec<f32> {
    let data = clustered(300, DIM, 4, 0.2, 5);
    let params = BuildParams {
        metric: Metric::L2,
        m: 8,
        ef_construction: 32,
        seed: Some(5),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    b.add_rows(&data.data).unwrap();
    b.build().unwrap().write(dir).unwrap();
    data.data
}

fn log_path(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log file")
}

fn options() -> CompactOptions {
    CompactOptions {
        retrain: false,
        threads: 1,
        refine: false,
    }
}

/// A writer with three committed inserts (ids 1000..1003) in its log, and
/// a reader that has replayed them.
fn setup(dir: &Path) -> (Writer, Index, Vec<f32>) {
    let data = build(dir);
    let w = Writer::open(dir, Durability::EveryOp).unwrap();
    for i in 0..3 {
        w.insert(1000 + i as u64, &data[i * DIM..(i + 1) * DIM])
            .unwrap();
    }
    let reader = Index::open(dir).unwrap();
    assert_eq!(reader.stats().log_records, 3);
    (w, reader, data)
}

/// The `what` of a corrupt-log error and the whole error as debug text,
/// or a panic naming `who`.
fn corrupt_what(who: &str, e: Option<Error>) -> (String, String) {
    let debug = format!("{e:?}");
    match e {
        Some(Error::Corrupt {
            file: FileKind::Log,
            what,
            ..
        }) => (what, debug),
        other => panic!("{who}: expected Error::Corrupt in the log, got {other:?}"),
    }
}

#[test]
fn a_damaged_record_is_the_same_error_from_open_refresh_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (w, reader, data) = setup(dir.path());
    let log = log_path(dir.path());
    let at = fs::metadata(&log).unwrap().len();
    let mut during = None;
    let mut damaged = Vec::new();
    let compacted = w.compact_with(options(), || {
        // A fourth insert, committed, then one bit of its vector flipped on
        // disk: a whole record whose body checksum fails (corrupt, not torn).
        w.insert(2000, &data[5 * DIM..6 * DIM]).unwrap();
        let mut bytes = fs::read(&log).unwrap();
        assert_eq!(bytes.len() as u64, at + INSERT_RECORD);
        bytes[at as usize + 40] ^= 0x04;
        fs::write(&log, &bytes).unwrap();
        damaged = bytes;
        during = Some((Index::open(dir.path()).err(), reader.refresh().err()));
    });
    let (opened, refreshed) = during.expect("the hook ran");
    let from_compaction = corrupt_what("compaction", compacted.err());
    let from_open = corrupt_what("open during the build", opened);
    let from_refresh = corrupt_what("refresh of an earlier reader", refreshed);
    assert!(
        from_compaction
            .0
            .contains(&format!("record at offset {at} (after 3 valid records)")),
        "{}",
        from_compaction.0
    );
    // The same error, field for field.
    assert_eq!(from_open.1, from_compaction.1);
    assert_eq!(from_refresh.1, from_compaction.1);
    // Nothing switched: the compaction's files are gone, generation 1 stays.
    assert!(!dir.path().join("g00000002.graph").exists());
    assert!(!dir.path().join("g00000002.log").exists());
    assert_eq!(w.live().stats().generation, 1);
    drop(w);
    // Reopened after the writer is gone: still the same error.
    let reopened = corrupt_what("open after", Index::open(dir.path()).err());
    assert_eq!(reopened.1, from_compaction.1);
    // Never repaired by anyone: the flipped bit is still there.
    assert_eq!(fs::read(&log).unwrap(), damaged);
}

#[test]
fn a_torn_tail_is_dropped_by_open_refresh_and_compaction_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (w, reader, data) = setup(dir.path());
    let log = log_path(dir.path());
    let mut during = None;
    let compacted = w.compact_with(options(), || {
        // A committed insert, then the first 30 bytes of another record: a
        // crash in the middle of an append.
        w.insert(2000, &data[5 * DIM..6 * DIM]).unwrap();
        let committed = fs::read(&log).unwrap();
        let record = committed[committed.len() - INSERT_RECORD as usize..].to_vec();
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&record[..30]).unwrap();
        drop(f);
        let opened = Index::open(dir.path()).unwrap();
        reader.refresh().unwrap();
        during = Some([
            (opened.stats().log_records, opened.stats().torn_bytes),
            (reader.stats().log_records, reader.stats().torn_bytes),
        ]);
        assert!(opened.contains(2000) && reader.contains(2000));
    });
    // Open and refresh: four committed records kept, 30 torn bytes dropped.
    assert_eq!(during.expect("the hook ran"), [(4, 30), (4, 30)]);
    // Compaction: the committed insert carried, the torn bytes not (as a
    // writer's open cuts them), no error.
    let report = compacted.expect("a torn tail is not corruption");
    assert_eq!((report.generation, report.carried_records), (2, 1));
    assert!(w.live().contains(2000));
    drop(w);
    let after = Index::open(dir.path()).unwrap();
    assert_eq!(after.stats().generation, 2);
    assert_eq!(
        (after.stats().log_records, after.stats().torn_bytes),
        (1, 0)
    );
    assert!(after.contains(2000) && after.contains(1002));
    assert_eq!(after.len(), 300 + 4);
}
