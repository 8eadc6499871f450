#!/usr/bin/env python3
"""The append log on npm-minilm: recall before and after compaction against a
fresh build, insert throughput per durability setting, and what an unfolded
log costs search.

0. Overlay: build an index from the first half, insert the other half
   through the log (no compaction: the logged vectors are searched through
   the in-memory graph over the log), and compare single-thread QPS at
   recall@10 >= 0.95 with a fresh build of all of them, in the same run
   (evals interleaved, `--repeat` times, best QPS per setting: the machine
   may be shared).
1. Recall: build an index from the first half of the base vectors, insert the
   other half through the log, delete 10% of all ids (seeded), then measure
   recall@10 against exact ground truth recomputed without the deleted ids:
   before compaction, after `strata compact`, and for a fresh build of the
   same final set. Also checks that no deleted id is ever returned.
2. Throughput: inserts per second into a copy of the half index with each
   durability setting (every-op, group, none).
3. Log cost: single-thread search latency of the half index alone, with an
   unfolded log of 10% and of 50% of its size, and after folding the 50%.

Run from the repo root:
    cargo build --release -p strata-cli
    python3 benches/log_bench.py

Every `strata insert`/`delete` here runs with `--auto-compact off`: the
logged state is what is measured, and `compact` is run where it is meant.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_rss as common  # noqa: E402


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        common.die(f"`{' '.join(map(str, cmd))}` failed:\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}", code=1)
    return r.stdout


def exact_topk(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest inner products (unit vectors: cosine), ties by id."""
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, s in enumerate(scores):
        order = np.lexsort((ids, -s))[:k]
        out[i] = ids[order]
    return out


def write_ids(path: Path, ids) -> Path:
    path.write_text("\n".join(str(int(i)) for i in ids) + "\n")
    return path


def eval_rows(strata, index_dir, query, gt, efs, k=10):
    res = common.run_strata_eval(strata, index_dir, query, gt, k, efs, threads=1)
    return {ef: res["rows"][ef] for ef in efs}


def check_no_deleted(strata, index_dir, query, deleted: set, k=10, ef=64):
    out = run([strata, "search", index_dir, "--query", query, "--k", k, "--ef", ef])
    hits = 0
    for line in out.splitlines():
        hits += sum(1 for i in json.loads(line)["ids"] if i in deleted)
    return hits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    ap.add_argument("--strata", default=common.DEFAULT_STRATA)
    ap.add_argument("--work-dir", default="bench-out/log")
    ap.add_argument("--quantization", default="int8")
    ap.add_argument("--efs", default="32,48,64,128")
    ap.add_argument("--throughput-ops", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="eval passes per index in part 0 (best QPS kept)")
    ap.add_argument("--overlay-efs", default="16,24,32,40,48,64")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--only-overlay", action="store_true", help="run part 0 and the throughput part only")
    args = ap.parse_args(argv)
    strata = common.find_strata(args.strata)
    paths = common.dataset_paths(args.data_dir)
    work = common.resolve(args.work_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    efs = [int(e) for e in args.efs.split(",")]
    base = common.read_vecs(paths["base"])
    queries_path = paths["query"]
    queries = common.read_vecs(queries_path)
    n = len(base)
    half = n // 2
    rng = np.random.default_rng(args.seed)
    a_path, b_path = work / "half_a.fvecs", work / "half_b.fvecs"
    common.write_vecs(a_path, base[:half])
    common.write_vecs(b_path, base[half:])
    build = ["build", "--metric", "cosine", "--m", "16", "--ef-construction", "200", "--quantization",
             args.quantization, "--threads", "2", "--seed", "1", "--quiet"]
    report = {}

    # 0. The overlay against a fresh build.
    oefs = [int(e) for e in args.overlay_efs.split(",")]
    gt_all = exact_topk(base, np.arange(n), queries, 100)
    gt_all_path = work / "gt_all.ivecs"
    common.write_vecs(gt_all_path, gt_all.astype(np.int32))
    ov = work / "overlay"
    run([strata, *build, "--input", a_path, "--out", ov])
    out = run([strata, "insert", "--auto-compact", "off", ov, "--input", b_path, "--ids", write_ids(work / "ids_b.txt", range(half, n)),
               "--durability", "group"])
    ov_rate = float(out.split("(")[2].split("/s")[0])
    full = work / "fresh-all"
    run([strata, *build, "--input", paths["base"], "--out", full])
    best = {"overlay": {}, "fresh": {}}
    for _ in range(args.repeat):
        for name, d in [("fresh", full), ("overlay", ov)]:
            for ef, row in eval_rows(strata, d, queries_path, gt_all_path, oefs).items():
                b = best[name].setdefault(ef, dict(row))
                b["qps_1t"] = max(b["qps_1t"], row["qps_1t"])
    print(f"== overlay: {half} built + {n - half} inserted through the log (insert {ov_rate:.0f}/s, group) "
          f"vs a fresh build of {n}; single thread, best of {args.repeat} ==")
    print(f"{'ef':>5} {'recall log':>11} {'recall fresh':>13} {'QPS log':>9} {'QPS fresh':>10}")
    for ef in oefs:
        o, f = best["overlay"][ef], best["fresh"][ef]
        print(f"{ef:>5} {o['recall']:>11.4f} {f['recall']:>13.4f} {o['qps_1t']:>9.0f} {f['qps_1t']:>10.0f}")

    def at_target(rows):
        ok = [(r["qps_1t"], ef) for ef, r in rows.items() if r["recall"] >= args.target_recall]
        return max(ok) if ok else (0.0, None)

    (oq, oef), (fq, fef) = at_target(best["overlay"]), at_target(best["fresh"])
    ratio = oq / fq if fq else float("nan")
    print(f"best QPS at recall@10 >= {args.target_recall}: log {oq:.0f} (ef {oef}), fresh {fq:.0f} (ef {fef}): "
          f"ratio {ratio:.2f}")
    report["overlay"] = {"overlay": best["overlay"], "fresh": best["fresh"], "insert_per_s": ov_rate,
                         "ratio": ratio, "ef_overlay": oef, "ef_fresh": fef}
    if args.only_overlay:
        throughput(args, strata, work, build, a_path, base, half, report)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))
        return

    # 1. Recall.
    idx = work / "live"
    run([strata, *build, "--input", a_path, "--out", idx])
    t = time.perf_counter()
    run([strata, "insert", "--auto-compact", "off", idx, "--input", b_path, "--ids", write_ids(work / "ids_b.txt", range(half, n)), "--durability", "group"])
    insert_s = time.perf_counter() - t
    deleted = np.sort(rng.choice(n, size=n // 10, replace=False))
    run([strata, "delete", "--auto-compact", "off", idx, "--ids", str(write_ids(work / "deleted.txt", deleted))])
    alive = np.setdiff1d(np.arange(n), deleted)
    gt = exact_topk(base[alive], alive, queries, 100)
    gt_path = work / "gt_final.ivecs"
    common.write_vecs(gt_path, gt.astype(np.int32))
    dset = set(int(i) for i in deleted)
    before = eval_rows(strata, idx, queries_path, gt_path, efs)
    leaked_before = check_no_deleted(strata, idx, queries_path, dset)
    t = time.perf_counter()
    run([strata, "compact", idx])
    compact_s = time.perf_counter() - t
    after = eval_rows(strata, idx, queries_path, gt_path, efs)
    leaked_after = check_no_deleted(strata, idx, queries_path, dset)
    # Fresh build of the final set: ids are row numbers of `alive`, so map the truth.
    fresh_in = work / "final.fvecs"
    common.write_vecs(fresh_in, base[alive])
    fresh = work / "fresh"
    run([strata, *build, "--input", fresh_in, "--out", fresh])
    row_of = {int(v): i for i, v in enumerate(alive)}
    gt_rows = np.vectorize(row_of.get)(gt).astype(np.int32)
    gt_rows_path = work / "gt_final_rows.ivecs"
    common.write_vecs(gt_rows_path, gt_rows)
    fresh_rows = eval_rows(strata, fresh, queries_path, gt_rows_path, efs)
    print(f"== recall@10: half built ({half}), half inserted through the log ({insert_s:.1f} s), "
          f"{len(deleted)} ids deleted; compaction took {compact_s:.1f} s ==")
    print(f"{'ef':>5} {'before compact':>15} {'after compact':>14} {'fresh build':>12} {'QPS before':>11} {'QPS after':>10} {'QPS fresh':>10}")
    for ef in efs:
        print(f"{ef:>5} {before[ef]['recall']:>15.4f} {after[ef]['recall']:>14.4f} {fresh_rows[ef]['recall']:>12.4f} "
              f"{before[ef]['qps_1t']:>11.0f} {after[ef]['qps_1t']:>10.0f} {fresh_rows[ef]['qps_1t']:>10.0f}")
    print(f"deleted ids returned (k=10, ef=64, 1000 queries): before compaction {leaked_before}, after {leaked_after}")
    report["recall"] = {"before": before, "after": after, "fresh": fresh_rows, "leaked_before": leaked_before,
                        "leaked_after": leaked_after, "insert_s": insert_s, "compact_s": compact_s}

    throughput(args, strata, work, build, a_path, base, half, report)
    log_cost(args, strata, work, build, a_path, base, half, queries, queries_path, report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))


def throughput(args, strata, work, build, a_path, base, half, report):
    # 2. Insert throughput per durability (graph insertion included).
    print("\n== insert throughput (ops/s) into the half index ==")
    report["throughput"] = {}
    for d in ["every-op", "group", "none"]:
        tdir = work / f"tp-{d}"
        run([strata, *build, "--input", a_path, "--out", tdir])
        ops = args.throughput_ops
        sub = work / f"tp-{ops}.fvecs"
        common.write_vecs(sub, base[half:half + ops])
        out = run([strata, "insert", "--auto-compact", "off", tdir, "--input", sub, "--durability", d])
        rate = float(out.split("(")[2].split("/s")[0])
        report["throughput"][d] = rate
        print(f"  {d:9} {rate:>10.0f} ops/s   ({ops} inserts)")
        shutil.rmtree(tdir)


def log_cost(args, strata, work, build, a_path, base, half, queries, queries_path, report):
    # 3. What an unfolded log costs search.
    print("\n== single-thread search with an unfolded log (half index as base) ==")
    report["log_cost"] = {}
    base_dir = work / "cost-base"
    run([strata, *build, "--input", a_path, "--out", base_dir])
    for frac in [0.0, 0.1, 0.5]:
        d = work / f"cost-{int(frac * 100)}"
        shutil.copytree(base_dir, d)
        m = int(half * frac)
        if m:
            sub = work / f"cost-{m}.fvecs"
            common.write_vecs(sub, base[half:half + m])
            run([strata, "insert", "--auto-compact", "off", d, "--input", sub, "--durability", "none"])
        ids = np.arange(half + m)
        g = exact_topk(base[: half + m], ids, queries, 100)
        gp = work / f"gt-cost-{m}.ivecs"
        common.write_vecs(gp, g.astype(np.int32))
        rows = eval_rows(strata, d, queries_path, gp, [64])
        report["log_cost"][frac] = rows[64]
        print(f"  log {int(frac * 100):>3}% ({m:>6} vectors): ef=64 recall {rows[64]['recall']:.4f}, "
              f"p50 {rows[64]['p50_us']:.0f} us, p99 {rows[64]['p99_us']:.0f} us, {rows[64]['qps_1t']:.0f} QPS")
        if frac == 0.5:
            run([strata, "compact", d])
            rows = eval_rows(strata, d, queries_path, gp, [64])
            report["log_cost"]["0.5-compacted"] = rows[64]
            print(f"  log 50% after compact:     ef=64 recall {rows[64]['recall']:.4f}, "
                  f"p50 {rows[64]['p50_us']:.0f} us, p99 {rows[64]['p99_us']:.0f} us, {rows[64]['qps_1t']:.0f} QPS")


if __name__ == "__main__":
    main()
