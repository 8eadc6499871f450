//! Steady state of an index that takes writes: one writer inserting at a
//! fixed rate (and deleting a share of what it inserted) with automatic
//! compaction on, searcher threads querying all the while. Prints, once per
//! second, QPS, p50 and p99 latency, the generation, the log's size, the
//! background compactions and the process's resident memory; at the end,
//! recall@10 of the final state against exact brute-force ground truth over
//! the live vectors, and fails if any search errored or returned an id
//! whose delete had been acknowledged before the search began.
//!
//! ```sh
//! cargo bench -p strata-benches --bench steady_state -- \
//!     --base ../shared/datasets/npm-minilm/npm-minilm_base.fvecs \
//!     --query ../shared/datasets/npm-minilm/npm-minilm_query.fvecs \
//!     [--initial 25000] [--rate 500] [--seconds 60] [--searchers 2] [--ef 48] \
//!     [--min-ops 5000] [--log-fraction 0.25] [--compact-threads 1] [--csv FILE]
//! ```

#[path = "bench_args.rs"]
mod bench_args;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use strata::dataset::{self, Vectors};
use strata::{
    AutoCompact, BuildParams, CompactOptions, Durability, IndexBuilder, Metric, SearchParams,
    Writer, WriterOptions,
};

struct Args {
    base: PathBuf,
    query: Option<PathBuf>,
    initial: usize,
    rate: f64,
    seconds: u64,
    searchers: usize,
    ef: usize,
    min_ops: u64,
    log_fraction: f64,
    compact_threads: usize,
    delete_every: u64,
    csv: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        base: PathBuf::new(),
        query: None,
        initial: 25_000,
        rate: 500.0,
        seconds: 60,
        searchers: 2,
        ef: 48,
        min_ops: 5_000,
        log_fraction: 0.25,
        compact_threads: 1,
        delete_every: 10,
        csv: None,
    };
    bench_args::parse(|flag, v| {
        let n = |v: &str| bench_args::num::<f64>(flag, v);
        match flag {
            "--base" => a.base = v.into(),
            "--query" => a.query = Some(v.into()),
            "--initial" => a.initial = n(v) as usize,
            "--rate" => a.rate = n(v),
            "--seconds" => a.seconds = n(v) as u64,
            "--searchers" => a.searchers = n(v) as usize,
            "--ef" => a.ef = n(v) as usize,
            "--min-ops" => a.min_ops = n(v) as u64,
            "--log-fraction" => a.log_fraction = n(v),
            "--compact-threads" => a.compact_threads = n(v) as usize,
            "--delete-every" => a.delete_every = n(v) as u64,
            "--csv" => a.csv = Some(v.into()),
            _ => return false,
        }
        true
    });
    if a.base.as_os_str().is_empty() {
        eprintln!("--base FILE.fvecs is required (e.g. ../shared/datasets/npm-minilm/npm-minilm_base.fvecs)");
        std::process::exit(2)
    }
    a
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Latencies of one second, in microseconds.
#[derive(Default)]
struct Bucket {
    lat_us: Vec<u32>,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Cosine distance in f64 over unit-normalised copies.
fn normalised(v: &[f32]) -> Vec<f64> {
    let n = v
        .iter()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-30);
    v.iter().map(|x| *x as f64 / n).collect()
}

fn main() {
    let a = args();
    let base = dataset::read_vectors(&a.base).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let dim = base.dim;
    let queries: Vectors = match &a.query {
        Some(q) => dataset::read_vectors(q).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        }),
        None => Vectors {
            dim,
            data: base.data[..dim * 1000.min(base.len())].to_vec(),
        },
    };
    let initial = a.initial.min(base.len());
    let dir = tempfile::tempdir().expect("a temporary directory");
    eprintln!(
        "building {initial} of {} vectors ({dim}-d, cosine, int8) ...",
        base.len()
    );
    let t = Instant::now();
    let mut b = IndexBuilder::new(
        dim,
        BuildParams {
            metric: Metric::Cosine,
            ..Default::default()
        },
    )
    .expect("valid parameters");
    b.add_rows(&base.data[..initial * dim]).expect("valid rows");
    b.build_into(dir.path(), &|_| {}).expect("build");
    eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());

    let policy = AutoCompact {
        log_fraction: a.log_fraction,
        min_ops: a.min_ops,
        options: CompactOptions {
            retrain: false,
            threads: a.compact_threads,
            ..Default::default()
        },
    };
    let writer = Arc::new(
        Writer::open_with(
            dir.path(),
            &WriterOptions {
                durability: Durability::Group {
                    max_ops: 1000,
                    max_delay: Duration::from_millis(10),
                },
                auto_compact: Some(policy),
            },
        )
        .expect("writer"),
    );
    // Deleted ids with the order of their (acknowledged) deletes.
    let deleted: Arc<RwLock<HashMap<u64, usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let dead_returned = Arc::new(AtomicU64::new(0));
    let raced = Arc::new(AtomicU64::new(0));
    let buckets: Arc<Mutex<Vec<Bucket>>> = Arc::new(Mutex::new(
        (0..a.seconds + 2).map(|_| Bucket::default()).collect(),
    ));
    let start = Instant::now();
    let sp = SearchParams::with_ef(a.ef);

    let searchers: Vec<_> = (0..a.searchers)
        .map(|s| {
            let (live, queries, deleted, stop, errors, dead, raced, buckets) = (
                writer.live(),
                queries.clone(),
                deleted.clone(),
                stop.clone(),
                errors.clone(),
                dead_returned.clone(),
                raced.clone(),
                buckets.clone(),
            );
            std::thread::spawn(move || {
                let mut i = s;
                let mut local: Vec<(usize, u32)> = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let q = queries.row(i % queries.len());
                    i += a.searchers;
                    // Deletes acknowledged before this search: the first
                    // `gone_before` in delete order.
                    let gone_before = deleted.read().unwrap().len();
                    let t0 = Instant::now();
                    match live.search(q, 10, &sp) {
                        Ok(hits) => {
                            let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            if gone_before > 0 {
                                let gone = deleted.read().unwrap();
                                for h in &hits {
                                    match gone.get(&h.id) {
                                        // Deleted before the search began.
                                        Some(&seq) if seq < gone_before => {
                                            dead.fetch_add(1, Ordering::Relaxed);
                                        }
                                        // Deleted while it ran: either is right.
                                        Some(_) => {
                                            raced.fetch_add(1, Ordering::Relaxed);
                                        }
                                        None => {}
                                    }
                                }
                            }
                            let sec = t0.duration_since(start).as_secs() as usize;
                            local.push((sec, us));
                        }
                        Err(e) => {
                            eprintln!("search error: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if local.len() >= 256 {
                        let mut b = buckets.lock().unwrap();
                        for (sec, us) in local.drain(..) {
                            if let Some(b) = b.get_mut(sec) {
                                b.lat_us.push(us);
                            }
                        }
                    }
                }
                let mut b = buckets.lock().unwrap();
                for (sec, us) in local.drain(..) {
                    if let Some(b) = b.get_mut(sec) {
                        b.lat_us.push(us);
                    }
                }
            })
        })
        .collect();

    // The writer: one insert every 1/rate seconds (rows after the initial
    // ones, cycling with fresh ids if the file runs out), and every
    // `delete_every`-th operation a delete of a row it inserted earlier.
    let inserted: Arc<Mutex<Vec<u64>>> = Arc::default();
    // The longest writer operation of each second, in µs (a compaction
    // must block operations for its switch only).
    let op_max: Arc<Vec<AtomicU64>> =
        Arc::new((0..a.seconds + 2).map(|_| AtomicU64::new(0)).collect());
    let writer_thread = {
        let (writer, base, deleted, stop, inserted, op_max) = (
            writer.clone(),
            base.clone(),
            deleted.clone(),
            stop.clone(),
            inserted.clone(),
            op_max.clone(),
        );
        std::thread::spawn(move || {
            let interval = Duration::from_secs_f64(1.0 / a.rate.max(1e-3));
            let mut next = Instant::now();
            let mut op = 0u64;
            let mut row = initial;
            let mut id = base.len() as u64;
            while !stop.load(Ordering::Acquire) {
                let began = Instant::now();
                if op > 0 && a.delete_every > 0 && op.is_multiple_of(a.delete_every) {
                    let victim = {
                        let ins = inserted.lock().unwrap();
                        ins.get((op as usize * 7919) % ins.len().max(1)).copied()
                    };
                    if let Some(v) = victim {
                        if !deleted.read().unwrap().contains_key(&v) {
                            writer.delete(v).expect("delete");
                            let mut d = deleted.write().unwrap();
                            let seq = d.len();
                            d.insert(v, seq);
                        }
                    }
                } else {
                    let this = if row < base.len() {
                        row as u64
                    } else {
                        id += 1;
                        id
                    };
                    writer
                        .insert(this, base.row(row % base.len()))
                        .expect("insert");
                    inserted.lock().unwrap().push(this);
                    row += 1;
                }
                let sec = (began - start).as_secs() as usize;
                if let Some(m) = op_max.get(sec) {
                    m.fetch_max(began.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                op += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            op
        })
    };

    println!(
        "{:>4} {:>8} {:>8} {:>8} {:>4} {:>9} {:>8} {:>6} {:>9} {:>9}",
        "t_s", "qps", "p50_us", "p99_us", "gen", "live", "log_rec", "compct", "rss_mib", "w_max_us"
    );
    let mut csv = a.csv.as_ref().map(|p| {
        let mut f = std::fs::File::create(p).expect("csv file");
        writeln!(
            f,
            "t_s,qps,p50_us,p99_us,generation,live,log_records,compactions,rss_mib,writer_max_us"
        )
        .unwrap();
        f
    });
    let mut rss_max = 0u64;
    let mut w_max_all = 0u64;
    for sec in 1..=a.seconds {
        let wake = start + Duration::from_secs(sec);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        // Second `sec - 1` is complete once `sec` has begun (searches in
        // flight land in their start second; allow a moment for them).
        std::thread::sleep(Duration::from_millis(20));
        let mut lat = {
            let b = buckets.lock().unwrap();
            b[(sec - 1) as usize].lat_us.clone()
        };
        lat.sort_unstable();
        let st = writer.live().stats();
        let ac = writer.auto_compact_stats();
        let rss = rss_kib() / 1024;
        rss_max = rss_max.max(rss);
        let row = (
            sec,
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            st.generation,
            st.live,
            st.log_records,
            ac.completed,
            rss,
        );
        let w_max = op_max[(sec - 1) as usize].load(Ordering::Relaxed);
        w_max_all = w_max_all.max(w_max);
        println!(
            "{:>4} {:>8} {:>8} {:>8} {:>4} {:>9} {:>8} {:>6} {:>9} {:>9}{}",
            row.0,
            row.1,
            row.2,
            row.3,
            row.4,
            row.5,
            row.6,
            row.7,
            row.8,
            w_max,
            if ac.running { "  (compacting)" } else { "" }
        );
        if let Some(f) = csv.as_mut() {
            writeln!(
                f,
                "{},{},{},{},{},{},{},{},{},{}",
                row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, w_max
            )
            .unwrap();
        }
    }
    stop.store(true, Ordering::Release);
    let ops = writer_thread.join().expect("writer thread");
    for s in searchers {
        s.join().expect("searcher thread");
    }
    writer.wait_for_auto_compact();
    let ac = writer.auto_compact_stats();
    let live = writer.live();
    let st = live.stats();

    // Recall@10 of the final state against brute force over the live set.
    let gone = deleted.read().unwrap().clone();
    let mut live_ids: Vec<u64> = (0..initial as u64).collect();
    live_ids.extend(inserted.lock().unwrap().iter().copied());
    live_ids.retain(|id| !gone.contains_key(id));
    let vector_of = |id: u64| -> &[f32] {
        let r = if (id as usize) < base.len() {
            id as usize
        } else {
            // Fresh ids past the file cycle over its rows.
            let past = (id as usize) - base.len() - 1;
            (base.len() + past) % base.len()
        };
        base.row(r)
    };
    let normed: Vec<Vec<f64>> = live_ids
        .iter()
        .map(|&id| normalised(vector_of(id)))
        .collect();
    let nq = 200.min(queries.len());
    let mut hits = 0usize;
    for qi in 0..nq {
        let q = normalised(queries.row(qi));
        let mut scored: Vec<(f64, u64)> = normed
            .iter()
            .zip(&live_ids)
            .map(|(v, &id)| (1.0 - v.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>(), id))
            .collect();
        scored.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: HashSet<u64> = scored[..10].iter().map(|s| s.1).collect();
        let got = live.search(queries.row(qi), 10, &sp).expect("search");
        hits += got.iter().filter(|h| want.contains(&h.id)).count();
    }
    let recall = hits as f64 / (nq * 10) as f64;
    let errors = errors.load(Ordering::Relaxed);
    let dead = dead_returned.load(Ordering::Relaxed);
    let raced = raced.load(Ordering::Relaxed);
    println!();
    println!(
        "{} s, {} writer operations ({:.0}/s), {} searcher threads, ef {}",
        a.seconds,
        ops,
        ops as f64 / a.seconds as f64,
        a.searchers,
        a.ef
    );
    println!(
        "automatic compactions: {} completed, {} failed (policy: log >= {} x generation and >= {} ops, {} build threads)",
        ac.completed, ac.failed, a.log_fraction, a.min_ops, a.compact_threads
    );
    println!(
        "final: generation {}, {} live ({} ids tracked), log {} records; peak RSS sampled {} MiB",
        st.generation,
        st.live,
        live_ids.len(),
        st.log_records,
        rss_max
    );
    println!(
        "longest writer operation: {:.1} ms",
        w_max_all as f64 / 1000.0
    );
    println!(
        "recall@10 at ef {} against brute force over the live set ({nq} queries): {recall:.4}",
        a.ef
    );
    println!("search errors: {errors}; ids returned after their delete was acknowledged: {dead} (deleted while the search ran: {raced})");
    if errors > 0 || dead > 0 || st.live != live_ids.len() {
        eprintln!("FAILED: search errors, a deleted id returned, or a live-count mismatch");
        std::process::exit(1);
    }
}
