//! Kill loop of large write batches: a child process appends batches of
//! 45k–55k operations (each spans three 1 MiB write chunks, so
//! kills land inside a batch's writes) and is SIGKILLed at random moments. After every
//! kill, every batch is in the directory whole or not at all, and every
//! acknowledged one is there. (The command-line version, with random
//! duplicate, existing and unknown ids and checked reports, is
//! `tools/tests/batch_crash.rs`.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata::{
    BatchOptions, BuildParams, CompactOptions, Durability, Error, Index, IndexBuilder, Metric,
    Quantization, Writer,
};

const DIM: usize = 4;
const BASE: u64 = 200;
const KILLS: usize = 40;

fn vector(id: u64) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((id.wrapping_mul(2654435761) >> (j * 7)) % 1000) as f32 / 100.0 - 5.0)
        .collect()
}

/// Step `i`: pair `i / 2` inserts a batch of fresh ids (even `i`) and then
/// deletes exactly those ids (odd `i`). Every fifth pair's insert holds an
/// existing id in its middle, so it is refused whole, and so is the delete
/// of its ids, which then do not exist.
fn batch_ids(pair: u64) -> Vec<u64> {
    let n = 45_000 + (pair * 7919) % 10_000;
    let first = 1_000_000 + pair * 200_000;
    (first..first + n).collect()
}

fn refused(pair: u64) -> bool {
    pair % 5 == 3
}

/// The ids logged by the batches of steps `0..n`, beyond the base.
fn logged_after(n: u64) -> Option<u64> {
    // After an insert step (n odd) of a pair that was not refused.
    (n % 2 == 1 && !refused(n / 2)).then_some(n / 2)
}

#[test]
#[ignore = "child process of batches_are_whole_after_every_kill"]
fn batch_crash_child() {
    let Ok(dir) = std::env::var("STRATA_BATCH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("STRATA_BATCH_START")
        .unwrap()
        .parse()
        .unwrap();
    // No fsync: a process kill keeps what reached the kernel, and the
    // batch's writes are a larger share of its time.
    let writer = Writer::open(&dir, Durability::None).unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for i in start..start + 6 {
        let pair = i / 2;
        let mut ids = batch_ids(pair);
        let result = if i % 2 == 0 {
            if refused(pair) {
                let mid = ids.len() / 2;
                ids[mid] = 7; // a base id
            }
            let rows: Vec<f32> = ids.iter().flat_map(|&id| vector(id)).collect();
            writer.insert_batch(&ids, &rows, BatchOptions::default())
        } else {
            writer.delete_batch(&ids, BatchOptions::default())
        };
        match result {
            Ok(r) => assert_eq!(r.committed(), ids.len()),
            Err(Error::BatchRejected { .. }) => assert!(refused(pair), "step {i}"),
            Err(e) => panic!("step {i}: {e}"),
        }
        writeln!(out, "STRATA-ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

fn build_base(dir: &Path) {
    let params = BuildParams {
        metric: Metric::L2,
        quantization: Quantization::None,
        m: 8,
        ef_construction: 32,
        seed: Some(1),
        threads: 1,
        ..Default::default()
    };
    let mut b = IndexBuilder::new(DIM, params).unwrap();
    for i in 0..BASE {
        b.add(i, &vector(i)).unwrap();
    }
    b.build().unwrap().write(dir).unwrap();
}

/// Which of the pair's ids are live: all, none, or (a failure) some.
fn presence(live: &Index, pair: u64) -> Option<bool> {
    let ids = batch_ids(pair);
    let present = ids.iter().filter(|&&id| live.contains(id)).count();
    match present {
        0 => Some(false),
        n if n == ids.len() => Some(true),
        _ => None,
    }
}

#[test]
fn batches_are_whole_after_every_kill() {
    let dir = tempfile::tempdir().unwrap();
    build_base(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut next = 0u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut torn_batches, mut in_flight_kept) = (0, 0);
    // The kill window adapts to the machine's speed: wider after a kill
    // that let no step finish, narrower after one that did.
    let mut window_us = 300_000u64;
    let started = std::time::Instant::now();
    let mut kills = 0;
    for kill in 0..KILLS {
        if kill >= 15 && started.elapsed() > Duration::from_secs(18) {
            break; // a slow machine: enough kills
        }
        kills += 1;
        let mut child = Command::new(&exe)
            .args([
                "batch_crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STRATA_BATCH_DIR", dir.path())
            .env("STRATA_BATCH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last: Option<u64> = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, n)) = line.rsplit_once("STRATA-ACK ") {
                    last = Some(n.trim().parse().unwrap());
                }
            }
            last
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(20_000 + rng % window_us));
        child.kill().unwrap();
        child.wait().unwrap();
        let done = reader.join().unwrap().map_or(next, |a| a + 1);
        let live =
            Index::open(dir.path()).unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        if live.stats().torn_bytes > 0 {
            torn_batches += 1;
        }
        // The batches of the last two pairs are each whole or absent.
        let (cur, prev) = (done / 2, (done / 2).saturating_sub(1));
        let p_cur = presence(&live, cur)
            .unwrap_or_else(|| panic!("kill {kill}: pair {cur} partly present"));
        let p_prev = presence(&live, prev)
            .unwrap_or_else(|| panic!("kill {kill}: pair {prev} partly present"));
        // Acknowledged steps are there; the one in flight whole or not at all.
        let state = |n: u64| -> (bool, bool) {
            let l = logged_after(n);
            (l == Some(cur), l == Some(prev))
        };
        let now = if (p_cur, p_prev) == state(done) {
            done
        } else if (p_cur, p_prev) == state(done + 1) {
            in_flight_kept += 1;
            done + 1
        } else {
            panic!("kill {kill}: after {done} acknowledged steps, pairs {cur}/{prev} present {p_cur}/{p_prev}");
        };
        let extra = logged_after(now).map_or(0, |p| batch_ids(p).len());
        assert_eq!(live.len(), BASE as usize + extra, "kill {kill}");
        assert!(
            (0..BASE).all(|id| live.contains(id)),
            "kill {kill}: base ids"
        );
        if let Some(p) = logged_after(now) {
            let id = batch_ids(p)[123];
            assert_eq!(live.exact_search(&vector(id), 1).unwrap()[0].distance, 0.0);
        }
        window_us = if now == next {
            (window_us * 3 / 2).min(1_500_000)
        } else {
            (window_us * 9 / 10).max(50_000)
        };
        next = now;
        // Keep the log short: compact while only the base is live.
        if logged_after(now).is_none() && live.stats().log_bytes > 6 << 20 {
            drop(live);
            let w = Writer::open(dir.path(), Durability::EveryOp).unwrap();
            w.compact(CompactOptions {
                retrain: false,
                threads: 1,
                ..Default::default()
            })
            .unwrap();
        }
    }
    eprintln!("{kills} kills, {next} steps, {torn_batches} torn batches dropped whole, {in_flight_kept} in-flight batches kept whole");
    assert!(next >= 8, "the child made progress: {next} steps");
    // How many kills land inside a batch's writes varies from run to run
    // (the writes are a few ms of each batch's tens of ms, most of
    // it validation and applying), so it is reported, not required; every
    // cut inside a batch is pinned by `log.rs::a_torn_batch_is_dropped_whole`.
}
