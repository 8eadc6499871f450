//! Crash safety of the write path: a child process appends with
//! per-operation fsync (and compacts now and then, itself or by the
//! writer's background policy) and is killed with
//! SIGKILL at random points, over and over; after every kill the directory
//! must open, hold every acknowledged operation (and at most the one in
//! flight), and answer searches as a model of the expected contents says.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata::{
    AutoCompact, BuildParams, CompactOptions, Durability, Index, IndexBuilder, Metric,
    Quantization, Writer, WriterOptions,
};

const DIM: usize = 8;
const BASE: u64 = 10_000_000;
const KILLS: usize = 200;

/// A deterministic vector for a seed.
fn vector(seed: u64) -> Vec<f32> {
    (0..DIM)
        .map(|j| (((seed * 31 + j as u64 * 7) % 997) as f32) / 100.0 - 5.0)
        .collect()
}

/// Operation `i` of the endless script: inserts of id `i`, a delete of an
/// earlier insert every 8 ops, an upsert every 8 ops, a compaction every 40.
enum Step {
    Insert(u64),
    Delete(u64),
    Upsert(u64, u64),
    Compact,
}

fn step(i: u64) -> Step {
    if i % 40 == 39 {
        return Step::Compact;
    }
    match i % 8 {
        3 => Step::Delete(i - 2),
        7 => Step::Upsert(i - 1, 5_000_000 + i),
        _ => Step::Insert(i),
    }
}

/// The expected live ids (with their vector seeds) after steps `0..n`.
fn model(n: u64) -> BTreeMap<u64, u64> {
    let mut m: BTreeMap<u64, u64> = (0..200).map(|i| (BASE + i, BASE + i)).collect();
    for i in 0..n {
        match step(i) {
            Step::Insert(id) => {
                m.insert(id, id);
            }
            Step::Delete(id) => {
                m.remove(&id);
            }
            Step::Upsert(id, seed) => {
                m.insert(id, seed);
            }
            Step::Compact => {}
        }
    }
    m
}

fn build_base(dir: &Path) {
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: 8,
        ef_construction: 32,
        seed: Some(1),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    for i in 0..200 {
        b.add(BASE + i, &vector(BASE + i)).unwrap();
    }
    b.build().unwrap().write(dir).unwrap();
}

/// Does the directory hold exactly the contents of `expected`?
fn matches(live: &Index, expected: &BTreeMap<u64, u64>, universe: u64) -> bool {
    if live.len() != expected.len() {
        return false;
    }
    (0..universe).all(|id| live.contains(id) == expected.contains_key(&id))
}

/// The child: runs steps from `STRATA_CRASH_START`, printing `STRATA-ACK N` after
/// each one returns (durable, with per-operation fsync).
#[test]
#[ignore = "child process of crash_kill_loop"]
fn crash_child() {
    let Ok(dir) = std::env::var("STRATA_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("STRATA_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    // With STRATA_CRASH_AUTO the writer compacts on its own, in the
    // background, every 20 operations or so, and the script's explicit
    // compactions are skipped: kills then land inside background ones.
    let auto = std::env::var("STRATA_CRASH_AUTO").is_ok();
    let options = WriterOptions {
        durability: Durability::EveryOp,
        auto_compact: auto.then_some(AutoCompact {
            log_fraction: 0.05,
            min_ops: 20,
            options: CompactOptions {
                retrain: false,
                threads: 1,
                ..Default::default()
            },
        }),
    };
    let writer = Writer::open_with(&dir, &options).unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for i in start..start + 400 {
        match step(i) {
            Step::Insert(id) => writer.insert(id, &vector(id)).unwrap(),
            Step::Delete(id) => writer.delete(id).unwrap(),
            Step::Upsert(id, seed) => writer.upsert(id, &vector(seed)).unwrap(),
            Step::Compact if auto => {}
            Step::Compact => {
                writer
                    .compact(CompactOptions {
                        retrain: false,
                        threads: 1,
                        ..Default::default()
                    })
                    .unwrap();
            }
        }
        writeln!(out, "STRATA-ACK {i}").unwrap();
        if auto && writer.auto_compact_stats().running {
            // Tells the parent when to aim a kill (see `kill_loop`).
            writeln!(out, "STRATA-COMPACTING").unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn crash_kill_loop() {
    kill_loop(KILLS, false);
}

/// The same with compactions started by the writer's policy, on its
/// background thread, instead of by the script.
#[test]
fn crash_kill_loop_background_compaction() {
    kill_loop(KILLS / 2, true);
}

fn kill_loop(kills: usize, auto: bool) {
    let dir = tempfile::tempdir().unwrap();
    build_base(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut next = 0u64; // first step not yet known to be applied
    let mut rng = 0x9E37_79B9u64;
    let mut compactions_interrupted = 0;
    // Kills land inside a compaction by chance, and a faster machine
    // compacts in less time: keep killing (up to four times the planned
    // number) until enough of them did, so the property is always tested.
    let mut kill = 0;
    while kill < kills || (compactions_interrupted < 3 && kill < kills * 4) {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STRATA_CRASH_DIR", dir.path())
            .env("STRATA_CRASH_START", next.to_string())
            .envs(auto.then_some(("STRATA_CRASH_AUTO", "1")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (compacting_tx, compacting) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last: Option<u64> = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print its own text before ours on the same line.
                if let Some((_, n)) = line.rsplit_once("STRATA-ACK ") {
                    last = Some(n.trim().parse().unwrap());
                }
                if line.contains("STRATA-COMPACTING") {
                    let _ = compacting_tx.send(());
                }
            }
            last
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if auto && kill % 2 == 1 {
            // Every other kill is aimed: a few milliseconds after the child
            // saw a background compaction running (or after two seconds
            // without one), so that kills inside compactions do not depend
            // on how fast this machine compacts.
            let _ = compacting.recv_timeout(Duration::from_secs(2));
            std::thread::sleep(Duration::from_micros(rng % 4_000));
        } else {
            std::thread::sleep(Duration::from_micros(2_000 + rng % 40_000));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let acked = reader.join().unwrap();
        let done = acked.map_or(next, |a| a + 1); // steps surely applied: 0..done
        if killed_inside_a_compaction(dir.path()) {
            compactions_interrupted += 1; // killed inside a compaction
        }
        // Every acknowledged step is there; the one in flight may be too.
        let live =
            Index::open(dir.path()).unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        let universe = done + 2;
        let now = if matches(&live, &model(done), universe) {
            done
        } else if matches(&live, &model(done + 1), universe) {
            done + 1
        } else {
            panic!("kill {kill} (status {status:?}): contents match neither {done} nor {} steps; stats {:?}", done + 1, live.stats());
        };
        // Searches agree with the model: each probed id is its own nearest
        // neighbour (distance 0) with the vector the model says.
        let expected = model(now);
        for (&id, &seed) in expected.iter().rev().take(5) {
            let hits = live.exact_search(&vector(seed), 1).unwrap();
            assert_eq!(hits[0].distance, 0.0, "kill {kill}: id {id}");
            let approx = live
                .search(&vector(seed), 3, &strata::SearchParams::with_ef(64))
                .unwrap();
            assert!(
                approx.iter().all(|h| expected.contains_key(&h.id)),
                "kill {kill}: a dead id returned"
            );
        }
        next = now;
        // Skip past a compaction that keeps being interrupted at the same point.
        if matches!(step(next), Step::Compact) && kill % 7 == 6 {
            next += 1;
        }
        kill += 1;
    }
    assert!(next > 50, "the child made progress: {next} steps");
    // A writer can still open (truncating any torn tail) and the state holds.
    let writer = Writer::open(dir.path(), Durability::EveryOp).unwrap();
    assert!(matches(&writer.live(), &model(next), next + 2));
    assert!(
        !killed_inside_a_compaction(dir.path()),
        "a writer's open removes what an interrupted compaction left"
    );
    eprintln!("{kill} kills (background compaction: {auto}), {next} steps applied, {compactions_interrupted} of them inside a compaction");
    assert!(
        compactions_interrupted >= 3,
        "kills landed inside compactions: {compactions_interrupted}"
    );
}

/// Whether the process died inside a compaction: data files of more than
/// one generation are present (it was between publishing the next
/// generation's files and removing the previous one), or a staged file
/// (`.NAME.tmp-PID-SEQ`: the next generation's graph or vectors being
/// written, or a manifest being replaced).
fn killed_inside_a_compaction(dir: &Path) -> bool {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let staged = names
        .iter()
        .any(|n| n.starts_with('.') && n.contains(".tmp-"));
    let mut gens: Vec<&str> = names
        .iter()
        .filter(|n| {
            n.starts_with('g')
                && (n.ends_with(".graph") || n.ends_with(".vectors") || n.ends_with(".log"))
        })
        .map(|n| &n[..9])
        .collect();
    gens.sort();
    gens.dedup();
    staged || gens.len() > 1
}
