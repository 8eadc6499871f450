//! Property test of write batches through the command-line tool: random
//! insert and delete batches, with random duplicate, existing and unknown
//! ids and random --skip-existing / --ignore-missing, each run as a
//! `strata` process that is SIGKILLed at a random moment (or left to
//! finish). After every run the directory must open with the batch present
//! whole or absent whole; a run that finished must have reported exactly
//! what a model of the batch predicts (committed or refused, counts); and
//! a retry of a killed batch with the skip flags must commit exactly what
//! is missing.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use strata::Index;

/// The expected contents: id → vector seed.
type Model = BTreeMap<u64, u64>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone)]
enum Batch {
    /// (id, vector seed) rows; skip existing identical ones.
    Insert {
        rows: Vec<(u64, u64)>,
        skip: bool,
    },
    Delete {
        ids: Vec<u64>,
        ignore: bool,
    },
}

/// What the batch does to `m` under the engine's rules: the new contents
/// and the count committed, or None if it must be refused whole.
fn apply(m: &Model, b: &Batch) -> Option<(Model, u64)> {
    let mut out = m.clone();
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    match b {
        Batch::Insert { rows, skip } => {
            for &(id, seed) in rows {
                if !seen.insert(id) {
                    return None; // duplicate id in the batch
                }
                match m.get(&id) {
                    Some(&s) if *skip && s == seed => {}
                    Some(_) => return None,
                    None => {
                        out.insert(id, seed);
                        n += 1;
                    }
                }
            }
        }
        Batch::Delete { ids, ignore } => {
            for &id in ids {
                if !seen.insert(id) {
                    return None;
                }
                if out.remove(&id).is_some() {
                    n += 1;
                } else if !ignore {
                    return None;
                }
            }
        }
    }
    Some((out, n))
}

/// Size classes of batches: mostly small, some larger than one 1 MiB
/// write chunk (about 16k records at dim 8) so that kills can land between
/// the writes of one batch.
fn size_class(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => 0,
        60..=91 => 1,
        _ => 2,
    }
}

fn random_batch(rng: &mut Rng, class: usize, m: &Model, next_id: &mut u64) -> Batch {
    let size = match class {
        0 => 1 + rng.below(300),
        1 => 300 + rng.below(3000),
        _ => 17_000 + rng.below(4_000),
    } as usize;
    let live: Vec<u64> = m.keys().copied().collect();
    if rng.chance(60) || live.len() < size + 10 {
        let mut rows: Vec<(u64, u64)> = (0..size)
            .map(|_| {
                *next_id += 1;
                (*next_id, *next_id)
            })
            .collect();
        if rng.chance(25) && !live.is_empty() {
            // An existing id, with its own vector (skippable) or another.
            let id = live[rng.below(live.len() as u64) as usize];
            let seed = if rng.chance(50) {
                m[&id]
            } else {
                id + 77_000_000
            };
            let at = rng.below(rows.len() as u64) as usize;
            rows.insert(at, (id, seed));
        }
        if rng.chance(8) {
            let dup = rows[rng.below(rows.len() as u64) as usize];
            rows.push(dup);
        }
        Batch::Insert {
            rows,
            skip: rng.chance(50),
        }
    } else {
        let mut ids: Vec<u64> = (0..size)
            .map(|_| live[rng.below(live.len() as u64) as usize])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if rng.chance(25) {
            let at = rng.below(ids.len() as u64) as usize;
            ids.insert(at, 900_000_000 + rng.below(1000));
        }
        if rng.chance(5) {
            ids.push(ids[0]);
        }
        Batch::Delete {
            ids,
            ignore: rng.chance(50),
        }
    }
}

fn args(b: &Batch, idx: &Path, dir: &Path, retry: bool) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut a: Vec<String> = match b {
        Batch::Insert { rows, skip } => {
            let (v, i) = (dir.join("v.fvecs"), dir.join("ids.txt"));
            let seeds: Vec<u64> = rows.iter().map(|r| r.1).collect();
            let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
            write_vectors(&v, &seeds);
            write_ids(&i, &ids);
            let mut a = vec![
                "insert".into(),
                s(idx),
                "--input".into(),
                s(&v),
                "--ids".into(),
                s(&i),
            ];
            if *skip || retry {
                a.push("--skip-existing".into());
            }
            a
        }
        Batch::Delete { ids, ignore } => {
            let i = dir.join("del.txt");
            write_ids(&i, ids);
            let mut a = vec!["delete".into(), s(idx), "--ids".into(), s(&i)];
            if *ignore || retry {
                a.push("--ignore-missing".into());
            }
            a
        }
    };
    a.extend(["--durability".into(), "every-op".into(), "--json".into()]);
    // Kills are meant to land around batch commits: a background compaction
    // after the commit (the index grows past the default threshold) would
    // take most of each run and absorb them. Kills inside background
    // compactions are engine/tests/crash.rs's.
    a.extend(["--auto-compact".into(), "off".into()]);
    a
}

fn with_retry_flags(b: &Batch) -> Batch {
    match b.clone() {
        Batch::Insert { rows, .. } => Batch::Insert { rows, skip: true },
        Batch::Delete { ids, .. } => Batch::Delete { ids, ignore: true },
    }
}

/// The directory's contents, checked against `candidates`: returns the
/// index of the one it equals.
fn which(idx: &Path, candidates: &[&Model], universe: u64, what: &str) -> usize {
    let live = Index::open(idx).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let found = candidates.iter().position(|m| {
        live.len() == m.len()
            && (0..universe).all(|id| live.contains(id) == m.contains_key(&id))
            && m.keys()
                .filter(|&&id| id >= universe)
                .all(|&id| live.contains(id))
    });
    let i = found.unwrap_or_else(|| {
        panic!(
            "{what}: contents ({} live, {:?}) match none of the {} allowed states (sizes {:?})",
            live.len(),
            live.stats(),
            candidates.len(),
            candidates.iter().map(|m| m.len()).collect::<Vec<_>>()
        )
    });
    // Vectors are the model's: a few ids find themselves at distance 0.
    for (&id, &seed) in candidates[i].iter().rev().step_by(97).take(4) {
        let hit = live.exact_search(&vector(seed), 1).unwrap();
        assert_eq!(hit[0].distance, 0.0, "{what}: id {id}");
    }
    i
}

#[test]
fn batches_survive_kills_whole_or_not_at_all() {
    let t = tempfile::tempdir().unwrap();
    let idx = t.path().join("idx");
    build_base(&idx);
    let mut model: Model = (0..BASE).map(|i| (i, i)).collect();
    let mut rng = Rng(0x0005_EEDB_A7C4_u64);
    let mut next_id = 10_000u64;
    // 20 s of runs, but at least 20 of them (a loaded machine runs fewer
    // in 20 s: keep going, up to a hard stop at 180 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let hard_stop = Instant::now() + Duration::from_secs(180);
    let (mut runs, mut kills, mut kept_whole, mut dropped_whole, mut refused, mut torn_seen) =
        (0, 0, 0, 0, 0, 0);
    // How long an uninterrupted run of each size class takes, to aim the
    // kills: uniformly over 0.2..1.2 of it.
    let mut typical: [Option<Duration>; 3] = [None; 3];
    while (Instant::now() < deadline || runs < 20) && Instant::now() < hard_stop && runs < 150 {
        runs += 1;
        let class = size_class(&mut rng);
        let batch = random_batch(&mut rng, class, &model, &mut next_id);
        let expected = apply(&model, &batch);
        let universe = next_id + 1;
        let kill = typical[class].is_some() && rng.chance(60);
        let started = Instant::now();
        let mut child = strata()
            .args(args(&batch, &idx, t.path(), false))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let killed = if kill {
            let t = typical[class].expect("measured");
            let wait = t.mul_f64((200 + rng.below(1000)) as f64 / 1000.0);
            std::thread::sleep(wait);
            child.kill().is_ok()
        } else {
            false
        };
        let out = child.wait_with_output().unwrap();
        let finished = out.status.code().is_some();
        if finished && !kill && expected.is_some() {
            let took = started.elapsed();
            typical[class] =
                Some(typical[class].map_or(took, |t| t.mul_f64(0.7) + took.mul_f64(0.3)));
        }
        let what = format!(
            "run {runs} ({batch_kind}, killed {killed}, status {:?})",
            out.status,
            batch_kind = match &batch {
                Batch::Insert { rows, skip } => format!("insert {} skip {skip}", rows.len()),
                Batch::Delete { ids, ignore } => format!("delete {} ignore {ignore}", ids.len()),
            }
        );
        let after = expected.as_ref().map(|e| &e.0);
        let now = if finished {
            // The process ran to its end: its report is the truth.
            let report = json(&out);
            match &expected {
                None => {
                    assert!(
                        !out.status.success(),
                        "{what}: a refusable batch succeeded: {report}"
                    );
                    assert_eq!(report["committed"], false, "{what}");
                    refused += 1;
                    which(&idx, &[&model], universe, &what);
                    model.clone()
                }
                Some((m, n)) => {
                    assert!(out.status.success(), "{what}: {}", stderr(&out));
                    let got = report["inserted"].as_u64().or(report["deleted"].as_u64());
                    assert_eq!(got, Some(*n), "{what}: reported count");
                    which(&idx, &[m], universe, &what);
                    m.clone()
                }
            }
        } else {
            kills += 1;
            let candidates: Vec<&Model> = std::iter::once(&model).chain(after).collect();
            let i = which(&idx, &candidates, universe, &what);
            if Index::open(&idx).unwrap().stats().torn_bytes > 0 {
                torn_seen += 1;
            }
            if i == 0 {
                dropped_whole += 1;
            } else {
                kept_whole += 1;
            }
            let now = candidates[i].clone();
            // Retry the killed command with the skip flags: it commits
            // exactly what is missing (everything, or nothing).
            if rng.chance(50) {
                let retry = with_retry_flags(&batch);
                let o = strata()
                    .args(args(&retry, &idx, t.path(), true))
                    .output()
                    .unwrap();
                let after_retry = apply(&now, &retry);
                match after_retry {
                    Some((m, n)) => {
                        assert!(o.status.success(), "{what}: retry: {}", stderr(&o));
                        let r = json(&o);
                        let got = r["inserted"].as_u64().or(r["deleted"].as_u64());
                        assert_eq!(got, Some(n), "{what}: retry count");
                        if i == 1 {
                            assert_eq!(n, 0, "{what}: retry of a committed batch is a no-op");
                        }
                        which(&idx, &[&m], universe, &format!("{what}, retry"));
                        m
                    }
                    None => {
                        assert!(!o.status.success(), "{what}: retry");
                        which(&idx, &[&now], universe, &format!("{what}, retry"));
                        now
                    }
                }
            } else {
                now
            }
        };
        model = now;
    }
    eprintln!(
        "{runs} runs: {kills} kills ({kept_whole} batches kept whole, {dropped_whole} dropped whole, \
         {torn_seen} with a torn tail), {refused} refused; {} live",
        model.len()
    );
    assert!(runs >= 20, "only {runs} runs");
    assert!(
        kept_whole >= 1 && dropped_whole >= 1,
        "kills landed on both sides of commits"
    );
}
