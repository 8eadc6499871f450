#!/usr/bin/env python3
"""Build time, peak RSS and graph quality of `strata build` vs. hnswlib `add_items`.

Both engines build from the same input file in the same run, each in a fresh
child process under `/usr/bin/time -v` (peak RSS = "Maximum resident set
size"), interleaved and repeated: round r runs strata then hnswlib, odd rounds
the reverse order.  On the shared 2-core machines absolute times drift, so the
ratios (strata / hnswlib, per round and of the medians) are what to compare.

* strata: `strata build --input X --out DIR --metric cosine --threads T --quiet`
  (the whole process: reading the input, building, writing both files); time
  is the process's wall clock.  Recall@10 at ef 64: `strata eval` afterwards.
* hnswlib: a `python -c` child that np.load()s the same input, runs
  `add_items(data, num_threads=T)` (M 16, ef_construction 200, space cosine)
  and reports the add_items wall clock; its peak RSS is the child's (numpy
  array + index), as a user of hnswlib would see it.  Recall@10 at ef 64 from
  one knn_query afterwards (not timed).

Datasets
* `--dataset npm`: 50k npm-minilm (../shared/datasets/npm-minilm), with its
  exact ground truth.
* `--dataset synth --n 500000`: synthetic clustered 384-d data (mixture of
  Gaussians in a 48-d latent space, randomly projected to 384-d, plus isotropic
  noise), written once to bench-out/build-scale/ as .npy with 200 held-out
  queries and brute-force ground truth.

Run from the repo root:
    cargo build --release -p strata-cli
    python3 benches/build_scale.py --dataset npm --rounds 3
    python3 benches/build_scale.py --dataset synth --n 500000 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from open_rss import BUILD_HINT, DEFAULT_DATA_DIR, DEFAULT_STRATA, die, resolve  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    die("numpy is missing: pip install -r benches/requirements.txt")

DIM = 384
TIME = "/usr/bin/time"


def write_ivecs(path: Path, ids: np.ndarray):
    ids = np.asarray(ids, dtype=np.int32)
    rec = np.empty((ids.shape[0], ids.shape[1] + 1), dtype=np.int32)
    rec[:, 0] = ids.shape[1]
    rec[:, 1:] = ids
    rec.tofile(path)


def read_fvecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32)


def read_ivecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:]


def make_synth(out: Path, n: int, nq: int, seed: int) -> dict:
    """Clustered unit vectors; files are reused when already there."""
    base, query, gt = out / f"synth{n}_base.npy", out / f"synth{n}_query.npy", out / f"synth{n}_gt.ivecs"
    if base.exists() and query.exists() and gt.exists():
        return {"base": base, "query": query, "gt": gt}
    out.mkdir(parents=True, exist_ok=True)
    print(f"generating {n} synthetic clustered {DIM}-d vectors in {out} ...", flush=True)
    rng = np.random.default_rng(seed)
    latent, clusters = 48, 1000
    proj = rng.standard_normal((latent, DIM)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    spread = rng.uniform(0.3, 0.8, clusters).astype(np.float32)

    def rows(count: int) -> np.ndarray:
        c = rng.integers(0, clusters, count)
        z = centres[c] + spread[c, None] * rng.standard_normal((count, latent)).astype(np.float32)
        x = z @ proj + 0.15 * rng.standard_normal((count, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    data = np.lib.format.open_memmap(base, mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, 50_000):
        data[s : s + 50_000] = rows(min(50_000, n - s))
    data.flush()
    q = rows(nq)
    np.save(query, q)
    print(f"brute-force ground truth for {nq} queries ...", flush=True)
    best = np.full((nq, 100), -np.inf, dtype=np.float32)
    best_ids = np.zeros((nq, 100), dtype=np.int64)
    for s in range(0, n, 50_000):
        sims = q @ np.asarray(data[s : s + 50_000]).T
        top = np.argpartition(-sims, 100, axis=1)[:, :100]
        cand = np.concatenate([best, np.take_along_axis(sims, top, 1)], 1)
        cand_ids = np.concatenate([best_ids, top + s], 1)
        keep = np.argsort(-cand, axis=1)[:, :100]
        best = np.take_along_axis(cand, keep, 1)
        best_ids = np.take_along_axis(cand_ids, keep, 1)
    write_ivecs(gt, best_ids)
    del data
    return {"base": base, "query": query, "gt": gt}


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([TIME, "-v"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"`{' '.join(cmd)}` exited with {r.returncode}\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}", code=1)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", r.stderr)
    secs = 0.0
    for part in w.group(1).split(":"):
        secs = secs * 60 + float(part)
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr).group(1))
    return r, {"peak_rss_mb": int(m.group(1)) / 1024, "wall_s": secs, "cpu_s": user + sys_}


HNSW_CHILD = r"""
import json, sys, time
import numpy as np, hnswlib
base, query, gt, threads, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def load(p):
    if p.endswith('.npy'):
        return np.load(p)
    raw = np.fromfile(p, dtype=np.int32); d = raw[0]
    return np.ascontiguousarray(raw.reshape(-1, d + 1)[:, 1:].view(np.float32))
x = load(base)
idx = hnswlib.Index(space='cosine', dim=x.shape[1])
idx.init_index(max_elements=x.shape[0], M=16, ef_construction=200, random_seed=1)
t = time.perf_counter()
idx.add_items(x, np.arange(x.shape[0]), num_threads=threads)
add_s = time.perf_counter() - t
q = load(query)
raw = np.fromfile(gt, dtype=np.int32); g = raw.reshape(-1, raw[0] + 1)[:, 1:11]
idx.set_ef(64); idx.set_num_threads(1)
labels, _ = idx.knn_query(q, k=10)
rec = float(np.mean([len(set(labels[i]) & set(g[i])) / 10 for i in range(len(q))]))
if out:
    idx.save_index(out)
print(json.dumps({"add_s": add_s, "recall": rec}))
"""


def run_strata(strata: Path, ds: dict, out: Path, threads: int, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    r, t = timed([str(strata), "build", "--input", str(ds["base"]), "--out", str(out), "--metric", "cosine",
                  "--threads", str(threads), "--quiet"] + extra)
    graph = sum(p.stat().st_size for p in out.glob("*.graph"))
    vectors = sum(p.stat().st_size for p in out.glob("*.vectors"))
    e = subprocess.run([str(strata), "eval", str(out), "--query", str(ds["query"]), "--groundtruth", str(ds["gt"]),
                        "--k", "10", "--ef", "64", "--threads", "1", "--json"], capture_output=True, text=True)
    if e.returncode != 0:
        die(f"strata eval failed:\n{e.stderr[-2000:]}", code=1)
    rec = next(json.loads(l)["recall"] for l in e.stdout.splitlines() if l.startswith("{") and '"ef"' in l)
    return {**t, "time_s": t["wall_s"], "graph_bytes": graph, "vectors_bytes": vectors, "recall": rec}


def run_hnswlib(ds: dict, threads: int) -> dict:
    r, t = timed([sys.executable, "-c", HNSW_CHILD, str(ds["base"]), str(ds["query"]), str(ds["gt"]), str(threads), ""])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {**t, "time_s": res["add_s"], "recall": res["recall"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("npm", "synth"), default="npm")
    ap.add_argument("--n", type=int, default=500_000, help="synthetic rows")
    ap.add_argument("--queries", type=int, default=200, help="synthetic queries")
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--strata", default=DEFAULT_STRATA)
    ap.add_argument("--work-dir", default="bench-out/build-scale")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", default="strata,hnswlib")
    ap.add_argument("--strata-before", help="also run this strata binary (engine 'strata-before'), e.g. a build of main")
    ap.add_argument("--strata-arg", action="append", default=[], help="extra argument to strata build")
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()
    strata = resolve(args.strata)
    if not strata.exists():
        die(f"{strata} not found: {BUILD_HINT}")
    if not Path(TIME).exists():
        die(f"{TIME} not found (GNU time is needed for peak RSS): apt-get install time")
    work = resolve(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.dataset == "npm":
        d = resolve(args.data_dir)
        ds = {"base": d / "npm-minilm_base.fvecs", "query": d / "npm-minilm_query.fvecs",
              "gt": d / "npm-minilm_groundtruth.ivecs"}
        for p in ds.values():
            if not p.exists():
                die(f"{p} not found: pass --data-dir (the npm-minilm dataset directory)")
        n = ds["base"].stat().st_size // (4 + 4 * DIM)
    else:
        ds = make_synth(work, args.n, args.queries, seed=7)
        n = args.n
    input_mb = n * DIM * 4 / 2**20
    engines = [e for e in args.engines.split(",") if e]
    if args.strata_before:
        before = resolve(args.strata_before)
        if not before.exists():
            die(f"{before} not found")
        engines.insert(0, "strata-before")
    res = {e: [] for e in engines}
    for r in range(args.rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        for e in order:
            if e in ("strata", "strata-before"):
                binary = strata if e == "strata" else before
                x = run_strata(binary, ds, work / f"{e}-{args.dataset}", args.threads, args.strata_arg)
            else:
                x = run_hnswlib(ds, args.threads)
            res[e].append(x)
            print(f"round {r} {e:13s} time {x['time_s']:8.2f} s  cpu {x['cpu_s']:8.2f} s  peak {x['peak_rss_mb']:8.1f} MiB  "
                  f"recall@10/ef64 {x['recall']:.4f}", flush=True)
    print()
    print(f"dataset {args.dataset}  n {n}  dim {DIM}  threads {args.threads}  input vectors {input_mb:.1f} MiB")
    med = {e: {k: statistics.median(x[k] for x in v) for k in ("time_s", "cpu_s", "peak_rss_mb", "recall")}
           for e, v in res.items()}
    for e, m in med.items():
        print(f"  {e:13s} median time {m['time_s']:8.2f} s  cpu {m['cpu_s']:8.2f} s  peak RSS {m['peak_rss_mb']:8.1f} MiB  recall {m['recall']:.4f}")
    if "strata" in res:
        g = res["strata"][-1]["graph_bytes"] / 2**20
        budget = 1.1 * input_mb + g
        print(f"  strata graph file {g:.1f} MiB; budget 1.1 x input + graph = {budget:.1f} MiB; "
              f"strata peak / budget = {med['strata']['peak_rss_mb'] / budget:.3f}")
    if "strata" in res and "hnswlib" in res:
        per_round = [s["time_s"] / h["time_s"] for s, h in zip(res["strata"], res["hnswlib"])]
        print(f"  time ratio strata/hnswlib per round {[round(x, 3) for x in per_round]}, "
              f"of medians {med['strata']['time_s'] / med['hnswlib']['time_s']:.3f}")
        print(f"  cpu ratio strata/hnswlib of medians {med['strata']['cpu_s'] / med['hnswlib']['cpu_s']:.3f} "
              "(CPU seconds of the whole child: strata reads, builds, writes; hnswlib loads, adds, queries)")
        print(f"  peak RSS ratio strata/hnswlib {med['strata']['peak_rss_mb'] / med['hnswlib']['peak_rss_mb']:.3f}")
    if "strata-before" in res and "hnswlib" in res:
        print(f"  strata-before/hnswlib time ratio of medians "
              f"{med['strata-before']['time_s'] / med['hnswlib']['time_s']:.3f}")
    if "strata-before" in res and "strata" in res:
        print(f"  strata/strata-before time {med['strata']['time_s'] / med['strata-before']['time_s']:.3f}, "
              f"recall {med['strata']['recall'] - med['strata-before']['recall']:+.4f}")
    if args.json:
        Path(resolve(args.json)).write_text(json.dumps({"n": n, "runs": res, "median": med}, indent=1))


if __name__ == "__main__":
    main()
