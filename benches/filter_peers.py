#!/usr/bin/env python3
"""Filtered search side by side: strata's label filters against hnswlib's filter callback.

Labels (assigned here, written to a labels file for `strata build --labels`):
* Zipf: every vector gets one of 100 labels, label j with probability
  proportional to 1 / (j + 1)^1.3 (label 0 about 34 % of the vectors, label
  99 under 0.1 %).  Filters of every selectivity from 0.001 to 1 are single
  labels, unions of the most frequent labels (`label in (0, 1, ...)`) and
  negations.
* correlated: label 200 on the 2 % of vectors nearest to one anchor vector;
  queried by the queries nearest to that anchor (matches lie next to them).
* anti-correlated: label 201 on the 2 % of vectors farthest from the anchor,
  queried by the same queries (every match is far away).

Ground truth: the exact filtered top k, computed here with numpy (cosine on
unit vectors).  strata: `strata eval --filter EXPR --groundtruth ...` (one
thread, reports recall, QPS and the planner's paths per ef).  hnswlib: the
same M / ef_construction, `knn_query(q, k, num_threads=1, filter=...)` with a
Python callback over a precomputed boolean array (the peer's documented way),
one batched call per ef.  Rounds alternate the order of the engines; per
(engine, case, ef) the median QPS over rounds is used; the reported point of
each engine is the cheapest ef whose recall reaches --target.

    cargo build --release -p strata-cli
    python3 benches/filter_peers.py [--queries 200] [--rounds 2] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_rss as common  # noqa: E402
from open_rss import die, median  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    die("numpy is missing: pip install -r benches/requirements.txt")

ZIPF_LABELS = 100
ZIPF_S = 1.3
CORRELATED, ANTI = 200, 201
STRATA_EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
HNSW_EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]


def assign_labels(base: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = base.shape[0]
    p = 1.0 / np.arange(1, ZIPF_LABELS + 1) ** ZIPF_S
    zipf = rng.choice(ZIPF_LABELS, size=n, p=p / p.sum())
    anchor = int(rng.integers(n))
    sims = base @ base[anchor]
    order = np.argsort(-sims)
    share = n // 50
    correlated = np.zeros(n, bool)
    correlated[order[:share]] = True
    anti = np.zeros(n, bool)
    anti[order[-share:]] = True
    return zipf, correlated, anti, anchor


def zipf_cases(zipf: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Expressions over the Zipf labels, with their match masks, spanning 0.001..1."""
    n = zipf.size
    counts = np.bincount(zipf, minlength=ZIPF_LABELS)
    cases = []
    for target in (0.001, 0.003, 0.01, 0.03):
        j = int(np.argmin(np.abs(counts / n - target)))
        cases.append((f"label = {j}", zipf == j))
    # Unions: of labels 1, 2, ... (label 0 alone is about a third) until
    # about 10 %; label 0; then 0, 1, ... until half.
    for target, first in ((0.1, 1), (0.3, 0), (0.5, 0)):
        labels, share = [], 0.0
        for j in range(first, ZIPF_LABELS):
            labels.append(j)
            share += counts[j] / n
            if share >= target * 0.95:
                break
        expr = f"label in ({', '.join(map(str, labels))})" if len(labels) > 1 else f"label = {labels[0]}"
        cases.append((expr, np.isin(zipf, labels)))
    cases.append(("not label = 0", zipf != 0))
    cases.append(("not label = 12345", np.ones(n, bool)))
    return cases


def exact_truth(base, queries, mask, k):
    ids = np.flatnonzero(mask)
    sims = queries @ base[ids].T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[top]


def recall(found, truth, k):
    hits = sum(len(set(map(int, f[:k])) & set(map(int, t[:k]))) for f, t in zip(found, truth))
    return hits / (len(truth) * min(k, truth.shape[1]))


def hnswlib_sweep(index, queries, truth, mask, k, efs, target):
    allowed = mask.tolist()

    def flt(i):
        return allowed[i]

    rows = {}
    for ef in efs:
        index.set_ef(max(ef, k))
        t0 = time.perf_counter()
        try:
            labels, _ = index.knn_query(queries, k=k, num_threads=1, filter=flt)
        except RuntimeError as e:  # fewer than k found at this ef
            rows[ef] = {"recall": 0.0, "qps": 0.0, "error": str(e)}
            continue
        dt = time.perf_counter() - t0
        rows[ef] = {"recall": recall(labels, truth, k), "qps": len(queries) / dt}
        if rows[ef]["recall"] >= target + 0.02:
            break
    return rows


def strata_sweep(strata, index_dir, query_path, gt_path, expr, k, efs, target):
    r = common.run_strata_eval(strata, index_dir, query_path, gt_path, k, efs, threads=1,
                               extra_args=["--filter", expr])
    rows = {}
    for ef, row in r["rows"].items():
        rows[ef] = {"recall": row["recall"], "qps": row["qps_1t"], "paths": row.get("filtered_paths")}
    return rows


def best(rows_by_round: list[dict], target: float):
    """The cheapest ef reaching the target recall: (ef, recall, median qps, paths)."""
    efs = sorted(set().union(*[r.keys() for r in rows_by_round]))
    for ef in efs:
        got = [r[ef] for r in rows_by_round if ef in r]
        rec = median([g["recall"] for g in got])
        if rec >= target:
            return {"ef": ef, "recall": rec, "qps": median([g["qps"] for g in got]),
                    "paths": got[0].get("paths"), "rounds": len(got)}
    last = efs[-1]
    got = [r[last] for r in rows_by_round if last in r]
    return {"ef": last, "recall": median([g["recall"] for g in got]), "qps": median([g["qps"] for g in got]),
            "paths": got[0].get("paths"), "rounds": len(got), "below_target": True}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    ap.add_argument("--strata", default="target/release/strata")
    ap.add_argument("--work-dir", default="/tmp/strata-filter-bench")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--quantization", default="int8")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None, help="write all rows as JSON here")
    args = ap.parse_args()

    strata = common.find_strata(args.strata)
    paths = common.dataset_paths(args.data_dir)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    base = common.read_vecs(paths["base"])
    all_queries = common.read_vecs(paths["query"])
    n = base.shape[0]
    rng = np.random.default_rng(args.seed)
    zipf, correlated, anti, anchor = assign_labels(base, rng)

    labels_path = work / "labels.txt"
    with open(labels_path, "w") as f:
        for i in range(n):
            row = [int(zipf[i])] + ([CORRELATED] if correlated[i] else []) + ([ANTI] if anti[i] else [])
            f.write(" ".join(map(str, row)) + "\n")

    queries = np.ascontiguousarray(all_queries[: args.queries])
    near = np.argsort(-(all_queries @ base[anchor]))[: args.queries]
    near_queries = np.ascontiguousarray(all_queries[near])
    q_path, qn_path = work / "queries.fvecs", work / "queries_near_anchor.fvecs"
    common.write_vecs(q_path, queries)
    common.write_vecs(qn_path, near_queries)

    cases = [(e, m, "zipf", queries, q_path) for e, m in zipf_cases(zipf)]
    cases.append((f"label = {CORRELATED}", correlated, "correlated", near_queries, qn_path))
    cases.append((f"label = {ANTI}", anti, "anti-correlated", near_queries, qn_path))

    idx_dir = work / f"strata-{args.quantization}-labels"
    if not (idx_dir / "MANIFEST").exists():
        cmd = [str(strata), "build", "--input", str(paths["base"]), "--out", str(idx_dir), "--metric", "cosine",
               "--m", str(args.m), "--ef-construction", str(args.ef_construction), "--quantization",
               args.quantization, "--threads", "2", "--seed", "1", "--labels", str(labels_path), "--quiet"]
        print("building strata:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, capture_output=True)
    import hnswlib  # noqa: F401

    hpath = work / f"hnswlib_M{args.m}_efc{args.ef_construction}.bin"
    if hpath.exists():
        import hnswlib as h

        hidx = h.Index(space="cosine", dim=base.shape[1])
        hidx.load_index(str(hpath), max_elements=n)
    else:
        print("building hnswlib", flush=True)
        hidx, _ = common.build_hnswlib(base, args.m, args.ef_construction)
        hidx.save_index(str(hpath))
    hidx.set_num_threads(1)

    results = []
    for expr, mask, kind, qs, qp in cases:
        truth = exact_truth(base, qs, mask, args.k)
        gt_path = work / f"gt_{abs(hash(expr)) % 10**8}.ivecs"
        common.write_vecs(gt_path, truth.astype("<i4"))
        s_rounds, h_rounds = [], []
        for r in range(args.rounds):
            order = ("strata", "hnswlib") if r % 2 == 0 else ("hnswlib", "strata")
            for engine in order:
                if engine == "strata":
                    s_rounds.append(strata_sweep(strata, idx_dir, qp, gt_path, expr, args.k, STRATA_EFS, args.target))
                else:
                    h_rounds.append(hnswlib_sweep(hidx, qs, truth, mask, args.k, HNSW_EFS, args.target))
        s, h = best(s_rounds, args.target), best(h_rounds, args.target)
        sel = float(mask.mean())
        row = {"case": kind, "filter": expr, "selectivity": sel, "matches": int(mask.sum()), "strata": s,
               "hnswlib": h, "speedup": s["qps"] / h["qps"] if h["qps"] else None,
               "strata_rows": s_rounds, "hnswlib_rows": h_rounds}
        results.append(row)
        # strata's planner: the share of queries scanned exactly, answered by
        # the graph, or finished exactly after the graph hit its visit limit.
        paths_txt = ""
        if s.get("paths"):
            names = ("exact", "graph", "fallback")
            paths_txt = " ".join(f"{nm} {v:.0%}" for nm, v in zip(names, s["paths"]) if v)
        print(f"{kind:16} {expr[:40]:40} sel {sel:7.4f}  strata ef {s['ef']:4} recall {s['recall']:.3f} "
              f"{s['qps']:9.0f} QPS [{paths_txt}] | hnswlib ef {h['ef']:4} recall {h['recall']:.3f} "
              f"{h['qps']:8.0f} QPS | x{row['speedup'] or 0:.2f}", flush=True)

    print(f"\n{'case':16} {'selectivity':>11} {'strata recall':>13} {'strata QPS':>10} {'hnswlib recall':>14} "
          f"{'hnswlib QPS':>11} {'ratio':>6}")
    for row in results:
        s, h = row["strata"], row["hnswlib"]
        print(f"{row['case']:16} {row['selectivity']:11.4f} {s['recall']:13.3f} {s['qps']:10.0f} "
              f"{h['recall']:14.3f} {h['qps']:11.0f} {row['speedup'] or 0:6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": common.machine_info(strata), "args": vars(args),
                                              "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
