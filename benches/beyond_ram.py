#!/usr/bin/env python3
"""Search beyond RAM: strata under a cgroup-v1 memory cap after dropping caches.

For each quantization (int8, pq, binary) this builds (or reuses) an index of
npm-minilm in bench-out/br-Q, makes N distinct queries (base rows plus
Gaussian noise, renormalised; exact top-10 by brute force with numpy) so that
the rows a run rescores exceed what the cap can cache, and then, for each
I/O mode, runs ``strata eval`` in a fresh process:

* warm: no cap, both files read into the page cache first;
* capped at graph + 50 %, + 25 %, + 10 % of the vectors file (plus the eval
  process's own anonymous memory, measured in the warm run and printed),
  after ``echo 3 > /proc/sys/vm/drop_caches``: eval's warm-up pass fills the
  cache to its steady state, then the timed passes run: queries one at a
  time on one thread (latency), `search_batch` on one thread (rescoring
  reads pipelined across queries), `search_batch` on 2 threads;
* cold start: capped at graph + 25 %, caches dropped, a fresh process, no
  warm-up (and no memory pass): the first 1,000 queries.

Before each mode other than plain mmap, a warm mapped-read run of the same
quantization is repeated as that mode's reference ("warm (ref)"), so that
every ratio compares runs minutes apart, not the first and the last.

It prints one table per quantization: QPS (1 thread one query at a time, 1
thread batched, 2 threads batched), ratios to the warm mapped-read QPS of
the same quantization (one query at a time), recall@10, p50/p99 latency, direct row reads
per query, achieved reads/s, and the graph mapping's resident KiB at the end
of the capped run; and fio's 4 KiB random-read IOPS at queue depth 32
(O_DIRECT, io_uring) on the same vectors file, for the reads/s comparison.

Needs root (cgroup v1 at /sys/fs/cgroup/memory, drop_caches), numpy, fio.
Run from the repo root:
    cargo build --release -p strata-cli
    python3 benches/beyond_ram.py                      # all three quantizations
    python3 benches/beyond_ram.py --quant int8 --io mmap,auto --queries 5000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


def resolve(p):
    p = Path(p).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def read_fvecs(path):
    import numpy as np

    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def write_fvecs(path, x):
    import numpy as np

    n, d = x.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = x.astype(np.float32).view(np.int32)
    out.tofile(path)


def write_ivecs(path, x):
    import numpy as np

    n, d = x.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = x
    out.tofile(path)


def make_queries(base_path, out_dir, n, noise, seed):
    """n distinct perturbed base rows (unit norm) and their exact top-10 (cosine)."""
    import numpy as np

    q_path = out_dir / f"br-queries-{n}-{noise}-{seed}.fvecs"
    gt_path = out_dir / f"br-queries-{n}-{noise}-{seed}.ivecs"
    if q_path.exists() and gt_path.exists():
        return q_path, gt_path
    base = read_fvecs(base_path)
    rng = np.random.default_rng(seed)
    rows = rng.choice(base.shape[0], size=n, replace=n > base.shape[0])
    q = base[rows] + rng.normal(0.0, noise, size=(n, base.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gt = np.empty((n, 10), dtype=np.int32)
    for s in range(0, n, 1000):
        sims = q[s : s + 1000] @ base.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        gt[s : s + 1000] = np.take_along_axis(top, order, axis=1)
    write_fvecs(q_path, q)
    write_ivecs(gt_path, gt)
    return q_path, gt_path


def drop_caches():
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


class Cgroup:
    def __init__(self, name):
        self.path = CGROUP_ROOT / name
        self.path.mkdir(exist_ok=True)

    def set_limit(self, limit):
        # -1 first so that lowering below the current usage is not refused.
        (self.path / "memory.limit_in_bytes").write_text(str(limit if limit else -1))

    def remove(self):
        try:
            self.path.rmdir()
        except OSError:
            pass


def run_eval(strata, index, q, gt, ef, io, cgroup, limit, threads, extra=(), memory=True):
    """One fresh `strata eval` process in `cgroup` with `limit` bytes (0 = none).

    `memory`: pass --report-memory (one untimed pass over the queries before
    the timed ones, so never for a cold start)."""
    cgroup.set_limit(limit)
    cmd = [
        str(strata), "eval", str(index), "--query", str(q), "--groundtruth", str(gt),
        "--k", "10", "--ef", ",".join(map(str, ef)), "--threads", str(threads),
        "--json", *(["--report-memory"] if memory else []), "--io", io, *extra,
    ]
    procs = cgroup.path / "cgroup.procs"
    shell = f'echo $$ > {procs} && exec "$@"'
    t = time.time()
    p = subprocess.run(["sh", "-c", shell, "sh", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        die(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    rows, mem = [], {}
    for line in p.stdout.splitlines():
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "ef" in j:
            rows.append(j)
        elif "open_ms" in j:
            mem = j
    return rows, mem, time.time() - t


def fio_iops(path, qd, seconds):
    out = subprocess.run(
        ["fio", "--name=br", f"--filename={path}", "--rw=randread", "--bs=4k", "--direct=1",
         "--ioengine=io_uring", f"--iodepth={qd}", f"--runtime={seconds}", "--time_based",
         "--readonly", "--output-format=json"],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["jobs"][0]["read"]["iops"]


def ensure_index(strata, base, quant, work):
    d = work / f"br-{quant}"
    if not (d / "MANIFEST").exists():
        print(f"building {d} ...", flush=True)
        subprocess.run(
            [str(strata), "build", "--input", str(base), "--out", str(d), "--metric", "cosine",
             "--m", "16", "--ef-construction", "200", "--quantization", quant,
             "--threads", "2", "--seed", "1"],
            check=True, stdout=subprocess.DEVNULL,
        )
    g = next(d.glob("*.graph"))
    v = next(d.glob("*.vectors"))
    return d, g, v


def per_quant(arg, cast):
    """`v` or `q=v,q=v` as {quantization or "*": cast(v)} ("" gives {})."""
    out = {}
    for part in filter(None, arg.split(",")):
        k, _, v = part.rpartition("=")
        out[k or "*"] = cast(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strata", default="target/release/strata")
    ap.add_argument("--data-dir", default="../shared/datasets/npm-minilm")
    ap.add_argument("--work-dir", default="bench-out")
    ap.add_argument("--quant", default="int8,pq,binary")
    ap.add_argument("--io", default="mmap,auto,uring,pread,willneed,auto+cut,uring+cut",
                    help="I/O modes; MODE+cut adds --rescore-cut (int8 only), MODE+lock "
                         "--lock-graph, MODE+cache a row cache of the cap's share of the vectors, "
                         "MODE+codes --no-rescore (answers from the codes alone, no row read)")
    ap.add_argument("--cut", type=float, default=0.05,
                    help="Z of --rescore-cut for MODE+cut (0.05: the README's recommendation)")
    ap.add_argument("--caps", default="50,25,10", help="percent of the vectors file above the graph")
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ef", default="32", help="ef per quantization: one value or q=ef,q=ef")
    ap.add_argument("--oversample", default="",
                    help="oversampling per quantization (eval --oversample): one value or q=f,q=f; "
                         "default: rescore all ef candidates")
    ap.add_argument("--threads", type=int, default=2, help="threads of eval's multi-thread pass")
    ap.add_argument("--fio-seconds", type=int, default=10)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start runs")
    ap.add_argument("--json-out", default="bench-out/beyond_ram.json")
    a = ap.parse_args()

    if os.geteuid() != 0:
        die("needs root (cgroup limits, drop_caches)")
    strata = resolve(a.strata)
    if not strata.exists():
        die(f"{strata} missing: run `cargo build --release -p strata-cli`")
    data = resolve(a.data_dir)
    base = data / "npm-minilm_base.fvecs"
    if not base.exists():
        die(f"dataset not found in {data}")
    work = resolve(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    q, gt = make_queries(base, work, a.queries, a.noise, a.seed)
    efs = per_quant(a.ef, int)
    oversamples = per_quant(a.oversample, str)
    cg = Cgroup(f"strata-beyond-ram-{os.getpid()}")
    report = {"queries": a.queries, "noise": a.noise, "threads_mt": a.threads, "runs": []}
    warm_ref = {}
    try:
        for quant in a.quant.split(","):
            index, gfile, vfile = ensure_index(strata, base, quant, work)
            ef = efs.get(quant, efs.get("*", 32))
            gbytes, vbytes = gfile.stat().st_size, vfile.stat().st_size
            fio = fio_iops(vfile, 32, a.fio_seconds)
            fio1 = fio_iops(vfile, 1, max(3, a.fio_seconds // 2))
            print(f"\n== {quant}: graph {gbytes / 2**20:.1f} MiB, vectors {vbytes / 2**20:.1f} MiB, "
                  f"ef {ef}, {a.queries} queries; fio 4 KiB randread O_DIRECT io_uring on the vectors file: "
                  f"QD32 {fio:.0f} IOPS, QD1 {fio1:.0f} IOPS", flush=True)
            for label in a.io.split(","):
                io, *flags = label.split("+")
                cut, cache = "cut" in flags, "cache" in flags
                if cut and quant != "int8":
                    continue
                opts = ("--rescore-cut", str(a.cut)) if cut else ()
                over = oversamples.get(quant, oversamples.get("*"))
                # The warm reference runs at the same operating point.
                ref_opts = ("--oversample", over) if over else ()
                opts = (*opts, *ref_opts)
                if "lock" in flags:
                    opts = (*opts, "--lock-graph")
                if "codes" in flags:
                    opts = (*opts, "--no-rescore")

                def cache_opts(pct):
                    # The row cache takes the cap's share of the vectors file
                    # (direct reads leave the page cache to the graph).
                    return ("--row-cache-mib", str(vbytes * pct // 100 >> 20)) if cache else ()

                table = []

                def warm_up_files():
                    drop_caches()
                    for f in (gfile, vfile):
                        with open(f, "rb") as fh:
                            while fh.read(1 << 20):
                                pass

                if io != "mmap" or flags:
                    # The reference, interleaved: warm mapped reads right
                    # before this mode's runs (the shared machine drifts).
                    warm_up_files()
                    rows, mem, _ = run_eval(strata, index, q, gt, [ef], "mmap", cg, 0, a.threads,
                                            ref_opts)
                    table.append(("mmap", "warm (ref)", 0, rows[0], mem))
                    warm_ref[quant] = rows[0]["qps_1t"]
                # Warm: the whole index in the page cache, no cap.
                warm_up_files()
                rows, mem, _ = run_eval(strata, index, q, gt, [ef], io, cg, 0, a.threads,
                                        (*opts, *cache_opts(25)))
                warm = rows[0]
                # The process's own anonymous memory, without the row cache
                # (which is charged to the cap's share of the vectors).
                # (the largest seen: buffers and results grow during the sweep).
                anon = (max(mem.get("rss_anon_after_queries_kb", 0),
                            mem.get("rss_anon_after_sweep_kb", 0)) * 1024
                        - mem.get("row_cache_resident_bytes", 0))
                table.append((label, "warm", 0, warm, mem))
                for pct in map(int, a.caps.split(",")):
                    limit = gbytes + vbytes * pct // 100 + anon + (4 << 20)
                    drop_caches()
                    rows, mem, _ = run_eval(strata, index, q, gt, [ef], io, cg, limit, a.threads,
                                            (*opts, *cache_opts(pct)))
                    table.append((label, f"graph+{pct}%", limit, rows[0], mem))
                if not a.no_cold:
                    limit = gbytes + vbytes * 25 // 100 + anon + (4 << 20)
                    drop_caches()
                    rows, mem, _ = run_eval(strata, index, q, gt, [ef], io, cg, limit, a.threads,
                                            (*opts, *cache_opts(25), "--no-warmup", "--limit", "1000"),
                                            memory=False)
                    table.append((label, "cold+25%", limit, rows[0], mem))
                # "x warm": against the warm mapped-read QPS of this
                # quantization (the best a cached index does), else this mode's.
                if io == "mmap" and not flags:
                    warm_ref[quant] = warm["qps_1t"]
                warm_qps = warm_ref.get(quant, warm["qps_1t"])
                print(f"{'io':>9} {'cap':>10} {'cap MiB':>8} {'qps_1t':>8} {'x warm':>7} {'batch1t':>8} "
                      f"{'x warm':>7} {'qps_2t':>8} {'recall':>7} {'p50 us':>8} {'p99 us':>8} "
                      f"{'reads/q':>8} {'reads/s':>8} {'%fio32':>7} {'rd/s b1':>8} {'%fio32':>7} "
                      f"{'rd/s 2t':>8} {'cache/q':>7} {'graph KiB':>9}")
                for io_, cap, limit, r, m in table:
                    rps = r.get("direct_reads_per_s_1t", 0.0)
                    rpb = r.get("direct_reads_per_s_batch_1t", 0.0)
                    b1 = r.get("qps_batch_1t", 0.0)
                    print(f"{io_:>9} {cap:>10} {limit / 2**20:>8.1f} {r['qps_1t']:>8.0f} "
                          f"{r['qps_1t'] / warm_qps:>7.2f} {b1:>8.0f} {b1 / warm_qps:>7.2f} "
                          f"{r['qps_mt']:>8.0f} {r['recall']:>7.4f} "
                          f"{r['p50_us']:>8.0f} {r['p99_us']:>8.0f} {r['direct_reads_per_query']:>8.1f} "
                          f"{rps:>8.0f} {100 * rps / fio if fio else 0:>7.1f} "
                          f"{rpb:>8.0f} {100 * rpb / fio if fio else 0:>7.1f} "
                          f"{r.get('direct_reads_per_s_mt', 0):>8.0f} "
                          f"{r.get('cached_rows_per_query', 0):>7.1f} "
                          f"{m.get('rss_graph_map_after_sweep_kb', 0):>9}", flush=True)
                    if not r.get("batch_matches", True):
                        print(f"  warning: {io_} {cap}: search_batch answers differ from search", flush=True)
                    report["runs"].append({"quant": quant, "io": io_, "cap": cap, "limit": limit,
                                           "ef": ef, "fio_qd32": fio, "fio_qd1": fio1,
                                           "row": r, "memory": m})
    finally:
        cg.remove()
    out = resolve(a.json_out)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()
