#!/usr/bin/env python3
"""Side-by-side benchmark of strata against hnswlib (and optionally faiss / usearch).

Everything is measured on the same machine in the same run, interleaved and
repeated, and reported as *ratios*: absolute QPS on the 2-core dev/CI machines
drifts up to 2x between runs, ratios taken within one run do not.

What is measured
* build: wall-clock of hnswlib add_items (num_threads = all cores) vs.
  `strata build ... --threads N` (subprocess, so it includes process start and
  writing the index; hnswlib's time excludes save_index).  Optional faiss HNSWFlat
  (IndexHNSWFlat, inner product), faiss HNSW-PQ + IndexRefineFlat, usearch.
* search: single thread only.  Peers: one batched call over all queries with one
  thread (ann-benchmarks "batch, 1 thread" style; no per-query Python overhead).
  strata: one `strata eval ... --ef e1,e2,... --threads 1 --json` per round,
  which reports qps_1t/recall/p50/p99 per ef.  Round r runs engine after engine,
  each over all efs; odd rounds use the reversed engine order.  Per (engine, ef)
  the median QPS over rounds is used.
* recall@k of peers = |returned ∩ gt[:k]| / k averaged over queries
  (plus a tie-robust variant in the JSON).  strata's recall is what eval prints.
* memory: each saved index is loaded in a fresh process and its RSS measured
  after load and after running all queries (see open_rss.py).

Run from the repo root:
    cargo build --release -p strata-cli && python3 benches/compare_peers.py
    python3 benches/compare_peers.py --quick          # smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in benches/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_rss as common  # noqa: E402  (shared helpers live in open_rss.py)
from open_rss import die, median, resolve  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    die("numpy is missing: pip install -r benches/requirements.txt")

KNOWN_PEERS = ("hnswlib", "faiss", "faiss-pq", "usearch", "svs-lvq8", "svs-lvq4x8", "svs-f16")
KNOWN_QUANT = ("int8", "none", "f16", "pq", "binary", "lvq8", "lvq4x8")


def parse_list(s: str, cast=str):
    return [cast(x.strip()) for x in s.split(",") if x.strip()]


# --------------------------------------------------------------------------- peers


class Peer:
    """A built in-process peer index with a uniform single-thread batch search."""

    name: str
    file_ext: str

    def __init__(self, args, base):
        self.args = args
        self.base = base
        self.index = None

    def build(self) -> dict:
        raise NotImplementedError

    def save(self, path: Path):
        raise NotImplementedError

    def set_search_threads(self):
        pass

    def search(self, q, k: int, ef: int):
        """Return an (nq, k) int64 label array; the caller times this call."""
        raise NotImplementedError

    @classmethod
    def unavailable(cls):
        """Why this peer cannot run on this machine, or None."""
        return None

    def path(self, work_dir: Path) -> Path:
        return work_dir / f"{self.stem}_M{self.args.m}_efc{self.args.ef_construction}.{self.file_ext}"


class HnswlibPeer(Peer):
    name, stem, file_ext = "hnswlib", "hnswlib", "bin"

    def build(self):
        import hnswlib

        n, d = self.base.shape
        self.index = hnswlib.Index(space="cosine", dim=d)
        self.index.init_index(max_elements=n, ef_construction=self.args.ef_construction,
                              M=self.args.m, random_seed=100)
        self.index.set_num_threads(self.args.build_threads)
        t0 = time.perf_counter()
        self.index.add_items(self.base, np.arange(n), num_threads=self.args.build_threads)
        return {"build_s": time.perf_counter() - t0}

    def path(self, work_dir):
        return common.hnswlib_index_path(work_dir, self.args.m, self.args.ef_construction)

    def save(self, path):
        self.index.save_index(str(path))

    def set_search_threads(self):
        self.index.set_num_threads(1)

    def search(self, q, k, ef):
        self.index.set_ef(ef)
        labels, _ = self.index.knn_query(q, k=k, num_threads=1)
        return labels


class FaissPeer(Peer):
    name, stem, file_ext = "faiss", "faiss_hnswflat", "faiss"

    def build(self):
        import faiss

        n, d = self.base.shape
        faiss.omp_set_num_threads(self.args.build_threads)
        self.index = faiss.IndexHNSWFlat(d, self.args.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.args.ef_construction
        t0 = time.perf_counter()
        self.index.add(self.base)
        return {"build_s": time.perf_counter() - t0}

    def save(self, path):
        import faiss

        faiss.write_index(self.index, str(path))

    def set_search_threads(self):
        import faiss

        faiss.omp_set_num_threads(1)

    def search(self, q, k, ef):
        self.index.hnsw.efSearch = ef
        _, labels = self.index.search(q, k)
        return labels


class FaissPQRefinePeer(Peer):
    """IndexHNSWPQ (PQ codes in the graph) re-ranked by IndexRefineFlat on the full vectors.

    Uses METRIC_L2: for unit-norm vectors L2 ranks exactly like cosine/inner product, and
    faiss 1.15's IndexHNSWPQ with METRIC_INNER_PRODUCT returns near-random results here
    (recall@10 ~0.2 vs ~0.84 with L2 at efSearch=64, PQ96).
    """

    name, stem, file_ext = "faiss-pq", "faiss_hnswpq_refine", "faiss"

    def build(self):
        import faiss

        n, d = self.base.shape
        faiss.omp_set_num_threads(self.args.build_threads)
        hnsw_pq = faiss.IndexHNSWPQ(d, self.args.pq_m, self.args.m, 8, faiss.METRIC_L2)
        hnsw_pq.hnsw.efConstruction = self.args.ef_construction
        self.index = faiss.IndexRefineFlat(hnsw_pq)
        self.index.k_factor = self.args.refine_k_factor
        self._keep = hnsw_pq  # the refine index does not own the python base object
        t0 = time.perf_counter()
        self.index.train(self.base)
        t1 = time.perf_counter()
        self.index.add(self.base)
        t2 = time.perf_counter()
        return {"build_s": t2 - t0, "train_s": t1 - t0, "add_s": t2 - t1}

    def save(self, path):
        import faiss

        faiss.write_index(self.index, str(path))

    def set_search_threads(self):
        import faiss

        faiss.omp_set_num_threads(1)

    def search(self, q, k, ef):
        import faiss

        params = faiss.IndexRefineSearchParameters(
            k_factor=self.args.refine_k_factor,
            base_index_params=faiss.SearchParametersHNSW(efSearch=ef))
        _, labels = self.index.search(q, k, params=params)
        return labels


class UsearchPeer(Peer):
    name, stem, file_ext = "usearch", "usearch", "usearch"

    def build(self):
        from usearch.index import Index

        n, d = self.base.shape
        self.index = Index(ndim=d, metric="cos", dtype="f32", connectivity=self.args.m,
                           expansion_add=self.args.ef_construction)
        t0 = time.perf_counter()
        self.index.add(np.arange(n), self.base, threads=self.args.build_threads)
        return {"build_s": time.perf_counter() - t0}

    def save(self, path):
        self.index.save(str(path))

    def search(self, q, k, ef):
        self.index.expansion_search = ef
        return self.index.search(q, k, threads=1).keys


class SvsPeer(Peer):
    """Intel SVS (pip `scalable-vs`): a Vamana graph over LVQ codes, no float32 copy.

    Built as the strongest configuration found for npm-minilm (issue 12): alpha 0.95
    (SVS's choice for inner product), max degree 2 M, window ef_construction, LVQ with
    32-byte padding, inner product (the vectors are unit norm, so it ranks as cosine).
    `ef` is SVS's search window size. SVS refuses LVQ on non-Intel CPUs
    ("LVQ and Leanvec functionality of SVS is not supported on non-Intel hardware"):
    `unavailable` probes that with a tiny build, and the run then skips the peer.
    """

    name, stem, file_ext = "svs-lvq8", "svs_lvq8", "svs"
    primary, residual = 8, 0

    def _loader(self, raw, d):
        import svs

        return svs.LVQLoader(svs.VectorDataLoader(str(raw), svs.DataType.float32, dims=d),
                             primary=self.primary, residual=self.residual, padding=32)

    @classmethod
    def unavailable(cls):
        # SVS ends the process (it does not raise) when LVQ is unsupported, so
        # the probe, a tiny LVQ build, runs in a child process.
        probe = f"""
import numpy as np, svs, tempfile, os
with tempfile.TemporaryDirectory() as tmp:
    raw = os.path.join(tmp, "probe.fvecs")
    svs.write_vecs(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32), raw)
    loader = svs.LVQLoader(svs.VectorDataLoader(raw, svs.DataType.float32, dims=32),
                           primary={cls.primary}, residual={cls.residual}, padding=32)
    svs.Vamana.build(svs.VamanaBuildParameters(graph_max_degree=8, window_size=16), loader,
                     svs.DistanceType.MIP, num_threads=1)
print("ok")
"""
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().endswith("ok"):
            return None
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[-1] if text else f"the LVQ probe exited with {r.returncode}"

    def build(self):
        import svs

        n, d = self.base.shape
        raw = self.path(resolve(self.args.work_dir)).with_suffix(".fvecs")
        raw.parent.mkdir(parents=True, exist_ok=True)
        svs.write_vecs(np.ascontiguousarray(self.base), str(raw))
        params = svs.VamanaBuildParameters(alpha=0.95, graph_max_degree=2 * self.args.m,
                                           window_size=self.args.ef_construction)
        t0 = time.perf_counter()
        self.index = svs.Vamana.build(params, self._loader(raw, d), svs.DistanceType.MIP,
                                      num_threads=self.args.build_threads)
        dt = time.perf_counter() - t0
        raw.unlink()
        return {"build_s": dt}

    def save(self, path):
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        self.index.save(str(path / "config"), str(path / "graph"), str(path / "data"))

    def set_search_threads(self):
        self.index.num_threads = 1

    def search(self, q, k, ef):
        self.index.search_window_size = max(ef, k)
        labels, _ = self.index.search(q, k)
        return labels


class SvsLvq4x8Peer(SvsPeer):
    """SVS with two-level LVQ: 4-bit primary codes traversed, 8-bit residuals re-rank."""

    name, stem = "svs-lvq4x8", "svs_lvq4x8"
    primary, residual = 4, 8


class SvsF16Peer(SvsPeer):
    """SVS's Vamana graph over float16 vectors (runs on any x86 CPU, unlike LVQ)."""

    name, stem = "svs-f16", "svs_f16"

    @classmethod
    def unavailable(cls):
        try:
            import svs  # noqa: F401
        except ImportError:
            return "svs is not installed (pip install scalable-vs)"
        return None

    def build(self):
        import svs

        params = svs.VamanaBuildParameters(alpha=0.95, graph_max_degree=2 * self.args.m,
                                           window_size=self.args.ef_construction)
        data = np.ascontiguousarray(self.base.astype(np.float16))
        t0 = time.perf_counter()
        self.index = svs.Vamana.build(params, data, svs.DistanceType.MIP,
                                      num_threads=self.args.build_threads)
        return {"build_s": time.perf_counter() - t0}


PEER_CLASSES = {c.name: c for c in (HnswlibPeer, FaissPeer, FaissPQRefinePeer, UsearchPeer,
                                    SvsPeer, SvsLvq4x8Peer, SvsF16Peer)}


# --------------------------------------------------------------------------- strata


def strata_build(args, strata: Path, base: Path, out_dir: Path, quant: str, extra=()) -> dict:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cmd = [str(strata), "build", "--input", str(base), "--out", str(out_dir), "--metric", "cosine",
           "--m", str(args.m), "--ef-construction", str(args.ef_construction), "--quantization", quant,
           "--threads", str(args.build_threads), "--seed", "1", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        die(f"`{' '.join(cmd)}` exited with {r.returncode}\n--- stderr ---\n{r.stderr[-4000:]}", code=1)
    if not out_dir.exists():
        die(f"`{' '.join(cmd)}` succeeded but {out_dir} does not exist", code=1)
    return {"build_s": wall, "cmd": cmd, "index_bytes": common.strata_index_bytes(out_dir),
            "stdout_tail": r.stdout[-2000:], "stderr_tail": r.stderr[-2000:]}


# --------------------------------------------------------------------------- recall


def recall_at_k(labels, gt, k: int) -> float:
    labels = np.asarray(labels)[:, :k]
    hits = 0
    for row, truth in zip(labels, gt[:, :k]):
        hits += len(set(row.tolist()) & set(truth.tolist()))
    return hits / (k * len(gt))


def recall_tie_robust(labels, q, base, gt_dist, k: int, eps: float = 1e-5) -> float:
    """A returned id counts when its true cosine distance <= k-th true distance + eps."""
    labels = np.asarray(labels)[:, :k].astype(np.int64)
    valid = (labels >= 0) & (labels < len(base))
    safe = np.where(valid, labels, 0)
    d = 1.0 - np.einsum("qd,qkd->qk", q.astype(np.float64), base[safe].astype(np.float64))
    ok = valid & (d <= gt_dist[:, k - 1:k].astype(np.float64) + eps)
    return float(ok.sum()) / (k * len(q))


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR,
                    help="dataset directory (relative paths are relative to the repo root)")
    ap.add_argument("--strata", default=common.DEFAULT_STRATA, help="path to the built strata binary")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--efs", default="16,24,32,48,64,96,128")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved search rounds")
    ap.add_argument("--build-rounds", type=int, default=1,
                    help="interleaved builds per engine (median reported; last one is searched)")
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 2,
                    help="threads for every engine's build (all cores)")
    ap.add_argument("--target-recall", default="0.95",
                    help="recall@k targets, comma-separated (QPS ratios are reported at each)")
    ap.add_argument("--work-dir", default=common.DEFAULT_WORK_DIR)
    ap.add_argument("--peers", default="hnswlib,faiss",
                    help=f"comma list from {','.join(KNOWN_PEERS)} ('' for none)")
    ap.add_argument("--quantization", default="int8,none",
                    help="strata variants: a --quantization of strata build, optionally +refine "
                         "(built with --refine) and +codes (searched with --no-rescore: answers "
                         "from the codes alone), e.g. int8+refine+codes")
    ap.add_argument("--oversample", type=float, default=None,
                    help="strata: rescore ceil(k * oversample) candidates (default: the engine's, max(k, ef))")
    ap.add_argument("--pq-m", type=int, default=96, help="faiss-pq: PQ sub-quantizers (8 bits each)")
    ap.add_argument("--refine-k-factor", type=float, default=4.0, help="faiss-pq: IndexRefineFlat k_factor")
    ap.add_argument("--num-queries", type=int, default=None, help="default: all (200 with --quick)")
    ap.add_argument("--peer-latency", action="store_true",
                    help="also time peers one query at a time for p50/p99 (includes Python call overhead)")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process RSS measurement")
    ap.add_argument("--memory-ef", type=int, default=64)
    ap.add_argument("--no-groundtruth", action="store_true", help="do not pass --groundtruth to strata eval")
    ap.add_argument("--peers-only", action="store_true",
                    help="run only the peers (no strata binary needed; for testing this script)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round, 200 queries")
    ap.add_argument("--json-out", default=None, help="default WORK_DIR/compare_peers.json")
    args = ap.parse_args(argv)

    if args.quick:
        args.rounds = 1
        args.build_rounds = 1
        if args.num_queries is None:
            args.num_queries = 200
    efs = sorted(set(parse_list(args.efs, int)))
    if not efs:
        die("--efs is empty")
    peers = parse_list(args.peers)
    for p in peers:
        if p not in PEER_CLASSES:
            die(f"unknown peer {p!r}; choose from {','.join(KNOWN_PEERS)}")
    skipped = {}
    for p in list(peers):
        why = PEER_CLASSES[p].unavailable()
        if why:
            print(f"warning: peer {p} skipped: {why}", file=sys.stderr, flush=True)
            skipped[p] = why
            peers.remove(p)
    targets = parse_list(args.target_recall, float)
    quants = [] if args.peers_only else parse_list(args.quantization)
    for qz in quants:
        if qz.split("+")[0] not in KNOWN_QUANT:
            print(f"warning: quantization {qz!r} is not one of {KNOWN_QUANT}; passing it through", file=sys.stderr)

    paths = common.dataset_paths(args.data_dir)
    strata = None if args.peers_only else common.find_strata(args.strata)
    work_dir = resolve(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    dp = common.query_subset(paths, args.num_queries, work_dir)
    gt_arg = None if args.no_groundtruth else dp["gt"]

    print("[data] loading", paths["base"], flush=True)
    base = common.read_vecs(paths["base"], "<f4")
    queries = common.read_vecs(dp["query"], "<f4")
    gt = common.read_vecs(dp["gt"], "<i4")
    gt_dist = common.read_vecs(dp["gt_dist"], "<f4") if dp.get("gt_dist") else None
    if gt.shape[1] < args.k:
        die(f"ground truth has only {gt.shape[1]} neighbours per query, --k {args.k}")
    nq = len(queries)
    print(f"[data] base {base.shape}, queries {queries.shape}, gt {gt.shape}", flush=True)

    machine = common.machine_info(strata)
    print(f"[machine] {machine['cpu_model']}, {machine['cpu_count']} cpus, {machine['date']}", flush=True)

    # ---------------------------------------------------------------- builds
    peer_objs = {p: PEER_CLASSES[p](args, base) for p in peers}
    # A variant QUANT+refine builds with --refine; QUANT[+refine]+codes searches
    # that index with --no-rescore (each index is built once).
    def flags(qz):
        return qz.split("+")[1:]

    def index_name(qz):
        return "-".join([qz.split("+")[0]] + (["refine"] if "refine" in flags(qz) else []))

    strata_dirs = {f"strata-{qz}": work_dir / f"strata-{index_name(qz)}" for qz in quants}
    strata_quant = {f"strata-{qz}": qz.split("+")[0] for qz in quants}
    strata_build_extra = {f"strata-{qz}": (["--refine"] if "refine" in flags(qz) else [])
                          for qz in quants}
    strata_extra = {f"strata-{qz}": (["--no-rescore"] if "codes" in flags(qz) else [])
                    for qz in quants}
    built_dirs = {}
    for e, d in strata_dirs.items():
        built_dirs.setdefault(d, e)
    strata_builders = list(built_dirs.values())
    builders = peers[:1] + strata_builders + peers[1:]  # hnswlib, strata..., other peers
    builds = {e: [] for e in builders}
    for r in range(args.build_rounds):
        order = builders if r % 2 == 0 else builders[::-1]
        for e in order:
            print(f"[build {r + 1}/{args.build_rounds}] {e} ...", end=" ", flush=True)
            if e in peer_objs:
                info = peer_objs[e].build()
            else:
                info = strata_build(args, strata, paths["base"], strata_dirs[e], strata_quant[e],
                                    strata_build_extra[e])
            builds[e].append(info)
            print(f"{info['build_s']:.1f}s", flush=True)
    index_paths = {}
    for p, obj in peer_objs.items():
        path = obj.path(work_dir)
        obj.save(path)
        index_paths[p] = path
    for e, d in strata_dirs.items():
        index_paths[e] = d
    build_median = {e: median([b["build_s"] for b in v]) for e, v in builds.items()}

    # ---------------------------------------------------------------- search
    for obj in peer_objs.values():
        obj.set_search_threads()
        obj.search(queries, args.k, efs[0])  # warm-up (untimed)
    engines = peers[:1] + list(strata_dirs) + peers[1:]
    # raw[engine][ef] = list of per-round dicts
    raw = {e: {ef: [] for ef in efs} for e in engines}
    strata_calls = []
    round_load = []
    load0 = os.getloadavg()[0]
    if load0 > 1.0:
        print(f"warning: 1-min load average is {load0:.2f} before the search rounds: other processes compete "
              "for the 2 cores; absolute QPS will be noisy (ratios from interleaved rounds less so)",
              file=sys.stderr, flush=True)
    for r in range(args.rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        round_load.append({"round": r, "loadavg_1m_start": os.getloadavg()[0]})
        print(f"[search round {r + 1}/{args.rounds}] order: {', '.join(order)}", flush=True)
        for e in order:
            if e in peer_objs:
                obj = peer_objs[e]
                for ef in efs:
                    t0 = time.perf_counter()
                    labels = obj.search(queries, args.k, ef)
                    dt = time.perf_counter() - t0
                    row = {"round": r, "qps_1t": nq / dt, "seconds": dt,
                           "recall": recall_at_k(labels, gt, args.k)}
                    if gt_dist is not None:
                        row["recall_tie"] = recall_tie_robust(labels, queries, base, gt_dist, args.k)
                    if args.peer_latency:
                        lat = np.empty(nq)
                        for i in range(nq):
                            t0 = time.perf_counter()
                            obj.search(queries[i:i + 1], args.k, ef)
                            lat[i] = time.perf_counter() - t0
                        row["p50_us"] = float(np.percentile(lat, 50) * 1e6)
                        row["p99_us"] = float(np.percentile(lat, 99) * 1e6)
                    raw[e][ef].append(row)
            else:
                extra = (["--oversample", str(args.oversample)] if args.oversample else []) + strata_extra[e]
                res = common.run_strata_eval(strata, strata_dirs[e], dp["query"], gt_arg, args.k, efs, threads=1,
                                              extra_args=extra)
                strata_calls.append({"engine": e, "round": r, "wall_s": res["wall_s"], "cmd": res["cmd"],
                                     "other": res["other"], "non_json": res["non_json"][:20]})
                for ef in efs:
                    row = dict(res["rows"][ef])
                    row["round"] = r
                    raw[e][ef].append(row)
            summary = ", ".join(f"{ef}:{raw[e][ef][-1]['qps_1t']:.0f}" for ef in efs)
            print(f"  {e:<18} qps by ef {summary}", flush=True)

    # ---------------------------------------------------------------- aggregate
    base_engine = "hnswlib" if "hnswlib" in engines else None
    agg = {e: {} for e in engines}
    for e in engines:
        for ef in efs:
            rows = raw[e][ef]
            qps = [x["qps_1t"] for x in rows]
            a = {"recall": median([x.get("recall") for x in rows]),
                 "qps_median": median(qps), "qps_min": min(qps), "qps_max": max(qps),
                 "qps_rounds": qps,
                 "p50_us": median([x.get("p50_us") for x in rows]),
                 "p99_us": median([x.get("p99_us") for x in rows]),
                 # strata only: work per query (`strata::take_search_counts`)
                 "hops_per_query": median([x.get("hops_per_query") for x in rows]),
                 "distances_per_query": median([x.get("distances_per_query") for x in rows])}
            if rows and "recall_tie" in rows[0]:
                a["recall_tie"] = median([x["recall_tie"] for x in rows])
            agg[e][ef] = a
    for e in engines:
        for ef in efs:
            a = agg[e][ef]
            if base_engine:
                b = agg[base_engine][ef]
                a["qps_ratio_vs_hnswlib"] = a["qps_median"] / b["qps_median"]
                per_round = [x["qps_1t"] / y["qps_1t"] for x, y in zip(raw[e][ef], raw[base_engine][ef])]
                a["qps_ratio_vs_hnswlib_median_of_rounds"] = median(per_round)

    at_targets, ratios_at = {}, {}
    for target in targets:
        at_target = {}
        for e in engines:
            hit = next((ef for ef in efs if agg[e][ef]["recall"] is not None
                        and agg[e][ef]["recall"] >= target), None)
            if hit is None:
                best = max(efs, key=lambda ef: agg[e][ef]["recall"] or 0)
                at_target[e] = {"reached": False, "max_recall": agg[e][best]["recall"], "at_ef": best}
            else:
                at_target[e] = {"reached": True, "ef": hit, "recall": agg[e][hit]["recall"],
                                "qps_median": agg[e][hit]["qps_median"],
                                "hops_per_query": agg[e][hit]["hops_per_query"],
                                "distances_per_query": agg[e][hit]["distances_per_query"],
                                "qps_rounds": [x["qps_1t"] for x in raw[e][hit]]}
        target_ratios = {}
        for s in strata_dirs:
            for p in peers:
                ts, tp = at_target.get(s), at_target.get(p)
                if ts and tp and ts["reached"] and tp["reached"]:
                    per_round = [a / b for a, b in zip(ts["qps_rounds"], tp["qps_rounds"])]
                    target_ratios[f"{s}/{p}"] = {
                        "ratio_of_medians": ts["qps_median"] / tp["qps_median"],
                        "median_of_round_ratios": median(per_round),
                        "ef": {s: ts["ef"], p: tp["ef"]},
                    }
                else:
                    target_ratios[f"{s}/{p}"] = None
        at_targets[target], ratios_at[target] = at_target, target_ratios

    # ---------------------------------------------------------------- memory (fresh processes)
    memory = {}
    if not args.no_memory:
        print(f"[memory] fresh-process RSS, warm cache, ef={args.memory_ef}", flush=True)
        for p in peers:
            try:
                memory[p] = common.measure_peer_rss(p, index_paths[p], dp["query"], nq, args.k, args.memory_ef)
            except Exception as ex:  # memory is a side measurement; do not lose the run
                print(f"  warning: {p} RSS measurement failed: {ex}", file=sys.stderr)
        for s, d in strata_dirs.items():
            memory[s] = common.measure_strata_rss(strata, d, dp["query"], gt_arg, args.k, args.memory_ef,
                                                  extra_args=strata_extra[s])
            memory[s]["engine"] = s

    # ---------------------------------------------------------------- report
    print()
    print(f"== {nq} queries, k={args.k}, M={args.m}, efC={args.ef_construction}, "
          f"{args.rounds} interleaved round(s), single-thread search; "
          f"ratios are within this run ==")
    print("\nBuild (wall-clock, {} threads{})".format(
        args.build_threads, f", median of {args.build_rounds}" if args.build_rounds > 1 else ""))
    for e in builders:
        ratio = (f"  x{build_median[e] / build_median[base_engine]:.2f} vs hnswlib"
                 if base_engine and e != base_engine else "")
        extra = ""
        if "train_s" in builds[e][-1]:
            extra = f" (train {builds[e][-1]['train_s']:.1f}s)"
        print(f"  {e:<18} {build_median[e]:8.1f} s{extra}{ratio}")

    print(f"\nSearch, single thread: recall@{args.k}, median QPS over rounds, QPS ratio vs hnswlib at the same ef")
    has_lat = any(agg[e][efs[0]]["p50_us"] is not None for e in engines)
    hdr = f"  {'engine':<18}{'ef':>5}{'recall':>9}{'QPS':>10}{'spread':>8}{'vs hnswlib':>12}"
    if has_lat:
        hdr += f"{'p50 us':>9}{'p99 us':>9}"
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for e in engines:
        for ef in efs:
            a = agg[e][ef]
            spread = (a["qps_max"] - a["qps_min"]) / a["qps_median"] * 100
            ratio = a.get("qps_ratio_vs_hnswlib")
            line = (f"  {e:<18}{ef:>5}{a['recall']:>9.4f}{a['qps_median']:>10.0f}{spread:>7.0f}%"
                    f"{'-' if ratio is None else f'x{ratio:.2f}':>12}")
            if has_lat:
                p50, p99 = a["p50_us"], a["p99_us"]
                line += f"{'-' if p50 is None else f'{p50:.0f}':>9}{'-' if p99 is None else f'{p99:.0f}':>9}"
            print(line)
    if args.peer_latency:
        print("  (peer p50/p99 are one-query-at-a-time calls from Python: they include call overhead)")

    for target in targets:
        at_target, target_ratios = at_targets[target], ratios_at[target]
        print(f"\nAt recall@{args.k} >= {target} (smallest ef in --efs reaching it):")
        for e in engines:
            t = at_target[e]
            if t["reached"]:
                work = ""
                if t.get("distances_per_query") is not None:
                    work = (f"  {t['hops_per_query']:.1f} hops, "
                            f"{t['distances_per_query']:.0f} distances per query")
                print(f"  {e:<18} ef={t['ef']:<4} recall {t['recall']:.4f}  {t['qps_median']:.0f} QPS{work}")
            else:
                print(f"  {e:<18} not reached (max recall {t['max_recall']:.4f} at ef={t['at_ef']})")
        for key, v in target_ratios.items():
            if v is None:
                print(f"  {key}: n/a (target not reached by both)")
            else:
                print(f"  QPS ratio {key}: x{v['ratio_of_medians']:.2f} "
                      f"(median of per-round ratios x{v['median_of_round_ratios']:.2f})")

    if memory:
        summ = {}
        for e, m in memory.items():
            summ[(e, "warm")] = common._summarise([m])
        common.print_memory_table(summ, f"Memory (fresh process, warm page cache, {nq} queries at ef={args.memory_ef})")

    out = resolve(args.json_out) if args.json_out else work_dir / "compare_peers.json"
    report = {
        "script": "compare_peers.py",
        "machine": machine,
        "args": vars(args),
        "dataset": {k: str(v) for k, v in dp.items()},
        "nq": nq,
        "efs": efs,
        "index_paths": {k: str(v) for k, v in index_paths.items()},
        "builds": builds,
        "build_median_s": build_median,
        "build_ratio_vs_hnswlib": ({e: build_median[e] / build_median[base_engine] for e in builders}
                                   if base_engine else None),
        "search_raw": {e: {str(ef): v for ef, v in d.items()} for e, d in raw.items()},
        "search": {e: {str(ef): v for ef, v in d.items()} for e, d in agg.items()},
        "target_recall": targets,
        "at_target": {str(t): v for t, v in at_targets.items()},
        "target_qps_ratios": {str(t): v for t, v in ratios_at.items()},
        "strata_calls": strata_calls,
        "round_loadavg": round_load,
        "memory": memory,
        "skipped_peers": skipped,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nraw numbers written to {out}")


if __name__ == "__main__":
    main()
