#!/usr/bin/env python3
"""The memory-for-recall ladder: one strata index per quantizer, side by side.

For each variant (float32, int8, PQ at several m, 1-bit) this builds an index
on the same data (cosine, M, ef_construction, 2 threads, timed including
codebook training), then sweeps ef x oversample with `strata eval`, repeated
in interleaved rounds (variant order reversed every round), and reports per
variant:

* RAM-resident bytes per vector: what traversal reads (graph file: codes,
  links, ids; plus the vectors file for float32 traversal);
* build time;
* the fastest setting (median single-thread QPS over rounds) that reaches
  the target recall@10, or the best recall reached if none does.

Run from the repo root:
    cargo build --release -p strata-cli
    python3 benches/quantizer_ladder.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_rss as common  # noqa: E402


def parse_variant(spec: str):
    """`none`, `int8`, `binary`, or `pq:M`."""
    if spec.startswith("pq:"):
        return spec, ["--quantization", "pq", "--pq-m", spec.split(":", 1)[1]]
    return spec, ["--quantization", spec]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    ap.add_argument("--strata", default=common.DEFAULT_STRATA)
    ap.add_argument("--work-dir", default="bench-out/ladder")
    ap.add_argument("--variants", default="none,int8,pq:192,pq:96,pq:48,binary")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--efs", default="16,24,32,48,64,96,128")
    ap.add_argument("--oversample", default="1,2,4,8", help="oversampling factors swept with every ef")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--rebuild", action="store_true", help="rebuild indexes that already exist")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    strata = common.find_strata(args.strata)
    paths = common.dataset_paths(args.data_dir)
    work = common.resolve(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v.strip()) for v in args.variants.split(",") if v.strip()]
    efs = [int(e) for e in args.efs.split(",")]
    oversamples = [float(o) for o in args.oversample.split(",") if o.strip()]

    builds = {}
    for name, qargs in variants:
        out = work / name.replace(":", "")
        if out.exists() and not args.rebuild and (out / "MANIFEST").exists():
            info = json.loads(subprocess.run([str(strata), "inspect", str(out), "--json"], capture_output=True, text=True, check=True).stdout)
            builds[name] = {"dir": out, "build_s": None, "info": info}
            continue
        cmd = [str(strata), "build", "--input", str(paths["base"]), "--out", str(out), "--metric", "cosine",
               "--m", str(args.m), "--ef-construction", str(args.ef_construction), "--threads", "2", "--seed", "1", "--quiet", *qargs]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        build_s = time.perf_counter() - t0
        info = json.loads(subprocess.run([str(strata), "inspect", str(out), "--json"], capture_output=True, text=True, check=True).stdout)
        builds[name] = {"dir": out, "build_s": build_s, "info": info}
        print(f"built {name:8} in {build_s:6.1f} s", flush=True)

    # rows[name][(ef, os)] -> list of row dicts, one per round
    rows = {name: {} for name, _ in variants}
    for r in range(args.rounds):
        order = [n for n, _ in variants]
        if r % 2:
            order.reverse()
        for name in order:
            extra = [] if name == "none" else ["--oversample", ",".join(str(o) for o in oversamples)]
            res = common.run_strata_eval(strata, builds[name]["dir"], paths["query"], paths["gt"], args.k, efs,
                                         threads=1, extra_args=extra)
            for row in res.get("all_rows", res["rows"].values()):
                key = (row["ef"], row.get("oversample"))
                rows[name].setdefault(key, []).append(row)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    n = builds[variants[0][0]]["info"]["count"]
    float_resident = builds.get("none", {}).get("info", {}).get("resident_bytes")
    print()
    print(f"== npm-minilm ({n} x 384, cosine), M={args.m}, efC={args.ef_construction}, k={args.k}, "
          f"{args.rounds} interleaved rounds, single-thread QPS (median) ==")
    hdr = f"{'variant':9} {'code B':>7} {'RAM B/vec':>9} {'vs f32':>7} {'build s':>8}  {'ef':>4} {'os':>4} {'recall':>7} {'QPS':>8}"
    print(hdr)
    print("-" * len(hdr))
    summary = {}
    for name, _ in variants:
        info = builds[name]["info"]
        resident = info["resident_bytes"] / info["count"]
        med = {key: (statistics.median(x["qps_1t"] for x in rs), rs[0]["recall"]) for key, rs in rows[name].items()}
        ok = [(q, rec, key) for key, (q, rec) in med.items() if rec >= args.target_recall]
        if ok:
            q, rec, key = max(ok)
        else:
            rec, q, key = max((rec, q, key) for key, (q, rec) in med.items())
        ratio = f"{resident / (float_resident / info['count']):.3f}" if float_resident else "-"
        bs = builds[name]["build_s"]
        os_s = "-" if key[1] is None else f"{key[1]:g}"
        print(f"{name:9} {info.get('code_bytes', 0):>7} {resident:>9.0f} {ratio:>7} {bs if bs is None else round(bs, 1)!s:>8}  "
              f"{key[0]:>4} {os_s:>4} {rec:>7.4f} {q:>8.0f}{'' if rec >= args.target_recall else '  (best recall; target not reached)'}")
        summary[name] = {"resident_bytes_per_vector": resident, "build_s": bs, "ef": key[0], "oversample": key[1],
                         "recall": rec, "qps_1t": q, "code_bytes": info.get("code_bytes"),
                         "sweep": {f"{k[0]}/{k[1]}": {"recall": v[1], "qps_1t": v[0]} for k, v in med.items()}}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": common.machine_info(strata), "summary": summary}, indent=2))
        print(f"\nraw numbers written to {args.json_out}")


if __name__ == "__main__":
    main()
