#!/usr/bin/env python3
"""Open time and resident memory of a strata index vs. peers, cold and warm page cache.

Every measurement runs in a *fresh* process, so the numbers are not polluted by
whatever the benchmarking process itself has mapped or allocated:

* strata:  ``strata eval DIR --query Q --k K --ef EF --threads 1 --json --report-memory``
  which prints (besides the per-ef result line) one JSON line
  ``{"open_ms", "rss_after_open_kb", "rss_after_queries_kb", "rss_file_after_queries_kb",
  "rss_anon_after_queries_kb", "graph_file_bytes", "vectors_file_bytes"}``.
* peers (hnswlib by default, optionally faiss / usearch / usearch-view): a
  ``python -c`` child that imports the library, reads the queries, samples
  /proc/self/status, loads the saved index, samples again, runs all queries
  single-threaded, samples again (see :func:`measure_peer_rss`).

"Cold" means the index files were evicted from the page cache right before the
run (posix_fadvise(POSIX_FADV_DONTNEED) on every file of the index, plus
``echo 1 > /proc/sys/vm/drop_caches`` when that file is writable); the
fraction of the index still cached after eviction is checked with mincore(2)
and reported.  "Warm" runs follow a cold run, so the files are fully cached
by the previous process.

This module also holds the helpers shared with compare_peers.py (dataset
reading, strata invocation, machine info, page-cache eviction, peer RSS).

Run from the repo root:
    cargo build --release -p strata-cli
    python3 benches/open_rss.py --index bench-out/strata-int8
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = "../shared/datasets/npm-minilm"
DEFAULT_STRATA = "target/release/strata"
DEFAULT_WORK_DIR = "bench-out"
BUILD_HINT = "run `cargo build --release -p strata-cli` from the repo root first"

PEER_ENGINES_WITH_RSS = ("hnswlib", "faiss", "faiss-pq", "usearch", "usearch-view", "svs-lvq8", "svs-lvq4x8",
                         "svs-f16")


# --------------------------------------------------------------------------- paths / data


def resolve(p: str | os.PathLike) -> Path:
    """Resolve a path given on the command line: absolute as is, relative to the repo root."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def die(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def dataset_paths(data_dir: str | os.PathLike, name: str = "npm-minilm") -> dict:
    d = resolve(data_dir)
    paths = {
        "dir": d,
        "base": d / f"{name}_base.fvecs",
        "query": d / f"{name}_query.fvecs",
        "gt": d / f"{name}_groundtruth.ivecs",
        "gt_dist": d / f"{name}_groundtruth_dist.fvecs",
    }
    missing = [str(paths[k]) for k in ("base", "query", "gt") if not paths[k].is_file()]
    if missing:
        die(
            "dataset not found: missing " + ", ".join(missing)
            + f"\n  (looked in --data-dir {d}; the default is {DEFAULT_DATA_DIR} relative to the repo root,"
            " i.e. shared/datasets/npm-minilm beside the main checkout)"
        )
    if not paths["gt_dist"].is_file():
        paths["gt_dist"] = None
    return paths


def find_strata(path: str | os.PathLike) -> Path:
    p = resolve(path)
    if not p.is_file():
        die(f"strata binary not found at {p}: {BUILD_HINT} (or pass --strata PATH)")
    if not os.access(p, os.X_OK):
        die(f"strata binary at {p} is not executable: {BUILD_HINT}")
    return p


def read_vecs(path, dtype: str = "<f4"):
    """Read a TEXMEX .fvecs ("<f4") or .ivecs ("<i4") file into an (n, d) array."""
    import numpy as np

    a = np.fromfile(path, dtype="<i4")
    if a.size == 0:
        die(f"{path} is empty")
    d = int(a[0])
    if a.size % (d + 1):
        die(f"{path}: size is not a multiple of the record size (d={d})")
    return np.ascontiguousarray(a.reshape(-1, d + 1)[:, 1:].view(dtype))


def write_vecs(path, arr):
    import numpy as np

    arr = np.ascontiguousarray(arr)
    n, d = arr.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = arr.view("<i4") if arr.dtype.kind == "f" else arr.astype("<i4")
    out.tofile(path)


def query_subset(paths: dict, nq: int | None, work_dir: Path) -> dict:
    """Return dataset paths whose query/gt files hold only the first nq queries.

    With nq None (or >= the full count) the original files are used; otherwise a
    subset is written into work_dir (same record layout) so that strata eval and
    the peers see exactly the same queries.
    """
    total = os.path.getsize(paths["query"]) // (4 + 4 * _vecs_dim(paths["query"]))
    if nq is None or nq >= total:
        return dict(paths, nq=total)
    work_dir.mkdir(parents=True, exist_ok=True)
    q = read_vecs(paths["query"], "<f4")[:nq]
    gt = read_vecs(paths["gt"], "<i4")[:nq]
    out = dict(paths, nq=nq)
    out["query"] = work_dir / f"query_first{nq}.fvecs"
    out["gt"] = work_dir / f"groundtruth_first{nq}.ivecs"
    write_vecs(out["query"], q)
    write_vecs(out["gt"], gt)
    if paths.get("gt_dist"):
        out["gt_dist"] = work_dir / f"groundtruth_dist_first{nq}.fvecs"
        write_vecs(out["gt_dist"], read_vecs(paths["gt_dist"], "<f4")[:nq])
    return out


def _vecs_dim(path) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(4), "little", signed=True)


# --------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _git_head(repo: Path) -> str | None:
    """Commit of the checkout, read from .git directly (no git process)."""
    try:
        git = repo / ".git"
        if git.is_file():  # worktree: "gitdir: ..."
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(" ", 1)[1]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        common = git / "commondir"
        if common.is_file():
            git = (git / common.read_text().strip()).resolve()
            if (git / ref).is_file():
                return (git / ref).read_text().strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


def _pkg_version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def machine_info(strata: Path | None = None) -> dict:
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_kb": _meminfo_kb("MemTotal"),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {m: _pkg_version(m) for m in ("numpy", "hnswlib", "faiss-cpu", "usearch")},
        "repo_commit": _git_head(REPO_ROOT),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if strata is not None:
        st = strata.stat()
        info["strata_binary"] = {
            "path": str(strata),
            "size": st.st_size,
            "mtime": _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            r = subprocess.run([str(strata), "--version"], capture_output=True, text=True, timeout=10)
            info["strata_binary"]["version"] = (r.stdout or r.stderr).strip() or None
        except Exception:
            pass
    return info


# --------------------------------------------------------------------------- /proc + page cache

STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def proc_status(pid: int | str = "self") -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in STATUS_KEYS:
                out[k] = int(v.split()[0])
    return out


def index_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def evict_from_page_cache(path: Path, use_drop_caches: bool = True) -> dict:
    """Evict the index at `path` (file or directory) from the page cache.

    posix_fadvise(DONTNEED) on every file (after fdatasync, because dirty pages
    are not dropped), then `echo 1 > /proc/sys/vm/drop_caches` when allowed.
    Returns which methods worked and the fraction of the files still cached.
    """
    methods = []
    errors = []
    files = index_files(path)
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
            try:
                try:
                    os.fdatasync(fd)
                except OSError:
                    pass
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(f"fadvise {f}: {e}")
    if files and not errors:
        methods.append("posix_fadvise")
    if use_drop_caches:
        try:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("1\n")
            methods.append("drop_caches")
        except OSError as e:
            errors.append(f"drop_caches: {e.strerror or e}")
    return {
        "method": "+".join(methods) or "none",
        "errors": errors,
        "cached_fraction_after": page_cache_fraction(files),
    }


_libc = None


def _get_libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    return _libc


def page_cache_fraction(files) -> float | None:
    """Fraction of the bytes of `files` that are resident in the page cache (mincore)."""
    try:
        libc = _get_libc()
        page = os.sysconf("SC_PAGE_SIZE")
        total = cached = 0
        for f in files:
            size = os.path.getsize(f)
            if size == 0:
                continue
            fd = os.open(f, os.O_RDONLY)
            try:
                addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
                if addr in (None, ctypes.c_void_p(-1).value):
                    return None
                try:
                    npages = (size + page - 1) // page
                    vec = ctypes.create_string_buffer(npages)
                    if libc.mincore(addr, size, vec) != 0:
                        return None
                    cached += sum(b & 1 for b in vec.raw) * page
                    total += npages * page
                finally:
                    libc.munmap(addr, size)
            finally:
                os.close(fd)
        return cached / total if total else None
    except Exception:
        return None


# --------------------------------------------------------------------------- strata


def run_strata_eval(
    strata: Path,
    index_dir: Path,
    query: Path,
    gt: Path | None,
    k: int,
    efs,
    threads: int = 1,
    report_memory: bool = False,
    extra_args=(),
    timeout: float = 3600,
) -> dict:
    """Run `strata eval` once and parse its JSON lines.

    Returns {"rows": {ef: row}, "memory": dict|None, "wall_s": float, "other": [...]}.
    Lines with an "ef" key are result rows; the line with "open_ms" is the memory
    report; other JSON lines are kept in "other"; non-JSON lines are ignored
    (kept in "non_json" for debugging).
    """
    efs = [int(e) for e in efs]
    cmd = [str(strata), "eval", str(index_dir), "--query", str(query)]
    if gt is not None:
        cmd += ["--groundtruth", str(gt)]
    cmd += ["--k", str(k), "--ef", ",".join(map(str, efs)), "--threads", str(threads), "--json"]
    if report_memory:
        cmd.append("--report-memory")
    cmd += list(extra_args)
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        die(f"cannot execute {strata}: {BUILD_HINT}")
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        die(
            f"`{' '.join(cmd)}` exited with {r.returncode}\n--- stderr ---\n{r.stderr[-4000:]}"
            f"\n--- stdout ---\n{r.stdout[-2000:]}",
            code=1,
        )
    rows, memory, other, non_json = {}, None, [], []
    all_rows = []  # every result line, also several per ef (an --oversample sweep)
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            non_json.append(line)
            continue
        if not isinstance(obj, dict):
            other.append(obj)
        elif "open_ms" in obj:
            memory = obj
        elif "ef" in obj:
            rows[int(obj["ef"])] = obj
            all_rows.append(obj)
        else:
            other.append(obj)
    missing = [e for e in efs if e not in rows]
    if missing:
        die(
            f"`{' '.join(cmd)}` printed no JSON result line for ef={missing}"
            f" (got efs {sorted(rows)})\n--- stdout ---\n{r.stdout[-3000:]}\n--- stderr ---\n{r.stderr[-2000:]}",
            code=1,
        )
    for e in efs:
        for key in ("recall", "qps_1t"):
            if key not in rows[e]:
                die(f"strata eval result line for ef={e} lacks key {key!r}: {rows[e]}", code=1)
    if report_memory and memory is None:
        die(f"`{' '.join(cmd)}` printed no memory line (a JSON object with \"open_ms\")", code=1)
    return {"cmd": cmd, "rows": rows, "all_rows": all_rows, "memory": memory, "wall_s": wall, "other": other,
            "non_json": non_json}


def strata_index_bytes(index_dir: Path) -> int:
    return sum(f.stat().st_size for f in index_files(index_dir))


# --------------------------------------------------------------------------- peers: RSS in a fresh process

_PEER_CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
engine = args["engine"]
import numpy as np
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0])
    return out
a = np.fromfile(args["query"], dtype="<i4")
d = int(a[0])
q = np.ascontiguousarray(a.reshape(-1, d + 1)[:, 1:].view("<f4"))[: args["nq"]]
k, ef = args["k"], args["ef"]
if engine == "hnswlib":
    import hnswlib
elif engine.startswith("faiss"):
    import faiss
    faiss.omp_set_num_threads(1)
elif engine.startswith("svs"):
    import os as _os
    import svs
else:
    from usearch.index import Index
before = status()
t0 = time.perf_counter()
if engine == "hnswlib":
    idx = hnswlib.Index(space=args["space"], dim=d)
    idx.load_index(args["path"])
elif engine.startswith("faiss"):
    idx = faiss.read_index(args["path"])
elif engine.startswith("svs"):
    # compare_peers.py saves config/, graph/ and data/ under one directory.
    root = args["path"]
    data_dir = _os.path.join(root, "data")
    data = (svs.VectorDataLoader(data_dir, svs.DataType.float16) if engine == "svs-f16"
            else svs.LVQLoader(data_dir, padding=32))
    idx = svs.Vamana(_os.path.join(root, "config"), svs.GraphLoader(_os.path.join(root, "graph")),
                     data, svs.DistanceType.MIP, num_threads=1)
else:
    idx = Index.restore(args["path"], view=(engine == "usearch-view"))
load_ms = (time.perf_counter() - t0) * 1e3
after_load = status()
t0 = time.perf_counter()
if engine == "hnswlib":
    idx.set_num_threads(1)
    idx.set_ef(ef)
    labels, _ = idx.knn_query(q, k=k, num_threads=1)
elif engine.startswith("faiss"):
    if isinstance(idx, faiss.IndexRefine):
        p = faiss.IndexRefineSearchParameters(k_factor=idx.k_factor,
            base_index_params=faiss.SearchParametersHNSW(efSearch=ef))
        _, labels = idx.search(q, k, params=p)
    else:
        faiss.downcast_index(idx).hnsw.efSearch = ef
        _, labels = idx.search(q, k)
elif engine.startswith("svs"):
    idx.num_threads = 1
    idx.search_window_size = ef
    labels, _ = idx.search(q, k)
else:
    idx.expansion_search = ef
    labels = idx.search(q, k, threads=1).keys
query_s = time.perf_counter() - t0
after_q = status()
print(json.dumps({"load_ms": load_ms, "query_s": query_s, "before": before,
                  "after_load": after_load, "after_queries": after_q,
                  "labels_head": np.asarray(labels[:2]).astype(int).tolist()}))
"""


def measure_peer_rss(
    engine: str,
    index_path: Path,
    query_path: Path,
    nq: int,
    k: int = 10,
    ef: int = 64,
    space: str = "cosine",
    cold: bool = False,
    use_drop_caches: bool = True,
    timeout: float = 600,
) -> dict:
    """Load a saved peer index in a fresh Python process and report its memory.

    The child samples /proc/self/status (VmRSS, RssAnon, RssFile) after importing
    numpy + the library and reading the queries ("before"), after loading the
    index ("after_load"), and after searching all nq queries single-threaded at
    the given ef ("after_queries").  Deltas against "before" are what the index
    costs; Python + library baseline is reported separately.
    """
    if engine not in PEER_ENGINES_WITH_RSS:
        raise ValueError(f"no RSS measurement for engine {engine!r}")
    index_path = Path(index_path)
    evict = evict_from_page_cache(index_path, use_drop_caches) if cold else None
    payload = {"engine": engine, "path": str(index_path), "query": str(query_path),
               "nq": int(nq), "k": int(k), "ef": int(ef), "space": space}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _PEER_CHILD, json.dumps(payload)],
                       capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{engine} RSS child failed ({r.returncode}):\n{r.stderr[-3000:]}")
    raw = json.loads(r.stdout.strip().splitlines()[-1])
    b, l, q = raw["before"], raw["after_load"], raw["after_queries"]
    size = sum(f.stat().st_size for f in index_files(index_path))
    return {
        "engine": engine,
        "cache": "cold" if cold else "warm",
        "eviction": evict,
        "open_ms": raw["load_ms"],
        "query_s": raw["query_s"],
        "process_wall_s": wall,
        "baseline_rss_kb": b["VmRSS"],
        "rss_after_open_kb": l["VmRSS"],
        "rss_after_queries_kb": q["VmRSS"],
        "rss_delta_open_kb": l["VmRSS"] - b["VmRSS"],
        "rss_delta_queries_kb": q["VmRSS"] - b["VmRSS"],
        "rss_anon_delta_queries_kb": q.get("RssAnon", 0) - b.get("RssAnon", 0),
        "rss_file_delta_queries_kb": q.get("RssFile", 0) - b.get("RssFile", 0),
        "index_file_bytes": size,
        "raw": raw,
    }


def measure_strata_rss(strata: Path, index_dir: Path, query: Path, gt: Path | None, k: int, ef: int,
                       cold: bool = False, use_drop_caches: bool = True, extra_args=()) -> dict:
    """One `strata eval --report-memory` run in a fresh process (optionally after eviction)."""
    evict = evict_from_page_cache(index_dir, use_drop_caches) if cold else None
    res = run_strata_eval(strata, index_dir, query, gt, k, [ef], threads=1, report_memory=True,
                          extra_args=extra_args)
    m = dict(res["memory"])
    row = res["rows"][ef]
    files = m.get("graph_file_bytes", 0) + m.get("vectors_file_bytes", 0)
    return {
        "engine": "strata",
        "cache": "cold" if cold else "warm",
        "eviction": evict,
        "open_ms": m["open_ms"],
        "process_wall_s": res["wall_s"],
        "rss_after_open_kb": m.get("rss_after_open_kb"),
        "rss_after_queries_kb": m.get("rss_after_queries_kb"),
        "rss_file_after_queries_kb": m.get("rss_file_after_queries_kb"),
        "rss_anon_after_queries_kb": m.get("rss_anon_after_queries_kb"),
        "graph_file_bytes": m.get("graph_file_bytes"),
        "vectors_file_bytes": m.get("vectors_file_bytes"),
        "index_file_bytes": files or strata_index_bytes(index_dir),
        "index_dir_bytes": strata_index_bytes(index_dir),
        "recall": row.get("recall"),
        "qps_1t": row.get("qps_1t"),
        "memory_line": res["memory"],
        "result_line": row,
    }


# --------------------------------------------------------------------------- hnswlib index for the peer side


def hnswlib_index_path(work_dir: Path, m: int, efc: int) -> Path:
    return work_dir / f"hnswlib_M{m}_efc{efc}.bin"


def build_hnswlib(base, m: int, efc: int, threads: int = 2, seed: int = 100):
    """Build an hnswlib cosine index; returns (index, add_items seconds)."""
    import hnswlib
    import numpy as np

    n, d = base.shape
    idx = hnswlib.Index(space="cosine", dim=d)
    idx.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=seed)
    idx.set_num_threads(threads)
    t0 = time.perf_counter()
    idx.add_items(base, np.arange(n), num_threads=threads)
    return idx, time.perf_counter() - t0


# --------------------------------------------------------------------------- reporting helpers


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_kb(kb) -> str:
    return "-" if kb is None else f"{kb / 1024:,.1f} MiB"


def fmt_bytes(b) -> str:
    return "-" if b is None else f"{b / 2**20:,.1f} MiB"


def _summarise(runs: list[dict]) -> dict:
    keys = ("open_ms", "process_wall_s", "rss_after_open_kb", "rss_after_queries_kb",
            "rss_file_after_queries_kb", "rss_anon_after_queries_kb", "rss_delta_open_kb",
            "rss_delta_queries_kb", "rss_anon_delta_queries_kb", "rss_file_delta_queries_kb",
            "baseline_rss_kb")
    s = {"n": len(runs)}
    for key in keys:
        vals = [r.get(key) for r in runs if r.get(key) is not None]
        if vals:
            s[key] = median(vals)
    last = runs[-1]
    for key in ("index_file_bytes", "graph_file_bytes", "vectors_file_bytes", "index_dir_bytes"):
        if last.get(key) is not None:
            s[key] = last[key]
    s["eviction_methods"] = sorted({r["eviction"]["method"] for r in runs if r.get("eviction")})
    fr = [r["eviction"]["cached_fraction_after"] for r in runs
          if r.get("eviction") and r["eviction"].get("cached_fraction_after") is not None]
    if fr:
        s["max_cached_fraction_after_evict"] = max(fr)
    # index cost: strata reports absolute RSS of a small Rust process; peers report deltas over
    # the Python baseline.
    cost_q = s.get("rss_delta_queries_kb", s.get("rss_after_queries_kb"))
    cost_o = s.get("rss_delta_open_kb", s.get("rss_after_open_kb"))
    size = s.get("index_file_bytes")
    if size:
        if cost_o is not None:
            s["rss_open_over_file_size"] = cost_o * 1024 / size
        if cost_q is not None:
            s["rss_queries_over_file_size"] = cost_q * 1024 / size
    return s


def print_memory_table(summaries: dict, title: str):
    """summaries: {(engine, cache): summary}"""
    print(f"\n{title}")
    hdr = (f"{'engine':<19}{'cache':<6}{'n':>3}{'open ms':>10}{'RSS open':>13}{'RSS queries':>13}"
           f"{'file/anon':>22}{'index files':>13}{'RSS/size':>10}")
    print(hdr)
    print("-" * len(hdr))
    for (engine, cache), s in summaries.items():
        is_peer = "rss_delta_open_kb" in s
        ro = s.get("rss_delta_open_kb") if is_peer else s.get("rss_after_open_kb")
        rq = s.get("rss_delta_queries_kb") if is_peer else s.get("rss_after_queries_kb")
        if is_peer:
            fa = f"{fmt_kb(s.get('rss_file_delta_queries_kb'))}/{fmt_kb(s.get('rss_anon_delta_queries_kb'))}"
        else:
            fa = f"{fmt_kb(s.get('rss_file_after_queries_kb'))}/{fmt_kb(s.get('rss_anon_after_queries_kb'))}"
        ratio = s.get("rss_queries_over_file_size")
        print(f"{engine:<19}{cache:<6}{s['n']:>3}{s.get('open_ms', float('nan')):>10.1f}{fmt_kb(ro):>13}"
              f"{fmt_kb(rq):>13}{fa:>22}{fmt_bytes(s.get('index_file_bytes')):>13}"
              f"{'-' if ratio is None else f'{ratio:.2f}':>10}")
    print("  peers: RSS is the delta over a Python process that already imported numpy + the library "
          "and read the queries (baseline reported in the JSON); strata: absolute RSS of the strata process.")
    print("  RSS/size = RSS after queries / on-disk size of the index files.")


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--index", default=f"{DEFAULT_WORK_DIR}/strata-int8",
                    help="strata index directory (relative paths are relative to the repo root); "
                         "built with --build-quantization if it does not exist")
    ap.add_argument("--strata", default=DEFAULT_STRATA, help="path to the strata binary")
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--work-dir", default=DEFAULT_WORK_DIR)
    ap.add_argument("--runs", type=int, default=5, help="runs per (engine, cold|warm)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--num-queries", type=int, default=None, help="default: all (200 with --quick)")
    ap.add_argument("--m", type=int, default=16, help="M for indexes this script has to build")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--build-quantization", default="int8",
                    help="--quantization for `strata build` when --index does not exist")
    ap.add_argument("--peers", default="hnswlib",
                    help=f"comma list from {','.join(PEER_ENGINES_WITH_RSS)}; '' for none. "
                         "hnswlib is built if its file is missing; others must have been saved by compare_peers.py")
    ap.add_argument("--hnswlib-index", default=None,
                    help="saved hnswlib index (default WORK_DIR/hnswlib_M{m}_efc{efc}.bin; built if missing)")
    ap.add_argument("--no-drop-caches", action="store_true",
                    help="evict with posix_fadvise only, never write /proc/sys/vm/drop_caches")
    ap.add_argument("--no-groundtruth", action="store_true",
                    help="do not pass --groundtruth to strata eval")
    ap.add_argument("--peers-only", action="store_true", help="skip strata (for testing the peer side)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 runs, 200 queries")
    ap.add_argument("--json-out", default=None, help="default WORK_DIR/open_rss.json")
    args = ap.parse_args(argv)

    if args.quick:
        args.runs = min(args.runs, 2)
        if args.num_queries is None:
            args.num_queries = 200
    paths = dataset_paths(args.data_dir)
    strata = None if args.peers_only else find_strata(args.strata)
    work_dir = resolve(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    dp = query_subset(paths, args.num_queries, work_dir)
    peers = [p for p in (s.strip() for s in args.peers.split(",")) if p]
    for p in peers:
        if p not in PEER_ENGINES_WITH_RSS:
            die(f"unknown peer {p!r}; choose from {PEER_ENGINES_WITH_RSS}")
    use_drop = not args.no_drop_caches

    index_dir = resolve(args.index)
    if strata is not None and not index_dir.exists():
        print(f"[build] {index_dir} missing: strata build --quantization {args.build_quantization}", flush=True)
        cmd = [str(strata), "build", "--input", str(paths["base"]), "--out", str(index_dir),
               "--metric", "cosine", "--m", str(args.m), "--ef-construction", str(args.ef_construction),
               "--quantization", args.build_quantization, "--threads", str(os.cpu_count() or 2), "--seed", "1"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stderr[-3000:]}", code=1)

    peer_paths = {}
    for p in peers:
        if p == "hnswlib":
            hp = resolve(args.hnswlib_index) if args.hnswlib_index else hnswlib_index_path(
                work_dir, args.m, args.ef_construction)
            if not hp.is_file():
                print(f"[build] {hp} missing: building hnswlib M={args.m} efc={args.ef_construction}", flush=True)
                base = read_vecs(paths["base"], "<f4")
                idx, secs = build_hnswlib(base, args.m, args.ef_construction, threads=os.cpu_count() or 2)
                idx.save_index(str(hp))
                print(f"[build] hnswlib add_items {secs:.1f}s", flush=True)
                del idx, base
            peer_paths[p] = hp
        else:
            stem = {"faiss": "faiss_hnswflat", "faiss-pq": "faiss_hnswpq_refine",
                    "usearch": "usearch", "usearch-view": "usearch"}[p]
            ext = "usearch" if p.startswith("usearch") else "faiss"
            pp = work_dir / f"{stem}_M{args.m}_efc{args.ef_construction}.{ext}"
            if not pp.is_file():
                die(f"{pp} not found: run compare_peers.py --peers {p.replace('-view', '')} first")
            peer_paths[p] = pp

    gt = None if args.no_groundtruth else dp["gt"]
    engines = (["strata"] if strata is not None else []) + peers
    runs = {(e, c): [] for e in engines for c in ("cold", "warm")}

    def one(engine, cold):
        if engine == "strata":
            return measure_strata_rss(strata, index_dir, dp["query"], gt, args.k, args.ef,
                                      cold=cold, use_drop_caches=use_drop)
        return measure_peer_rss(engine, peer_paths[engine], dp["query"], dp["nq"], args.k, args.ef,
                                cold=cold, use_drop_caches=use_drop)

    print(f"[open_rss] {args.runs} cold + {args.runs} warm runs of {engines}, nq={dp['nq']} k={args.k} ef={args.ef}",
          flush=True)
    for i in range(args.runs):
        order = engines if i % 2 == 0 else engines[::-1]
        for e in order:
            for cold in (True, False):  # a warm run follows the cold one, which filled the cache
                r = one(e, cold)
                runs[(e, "cold" if cold else "warm")].append(r)
                ev = r.get("eviction") or {}
                extra = (f" evict={ev.get('method')} cached_after={ev.get('cached_fraction_after')}"
                         if ev else "")
                print(f"  run {i + 1}/{args.runs} {e:<12} {'cold' if cold else 'warm'}: open {r['open_ms']:.1f} ms, "
                      f"RSS after queries {fmt_kb(r.get('rss_delta_queries_kb', r.get('rss_after_queries_kb')))}"
                      f"{extra}", flush=True)

    summaries = {key: _summarise(v) for key, v in runs.items() if v}
    print_memory_table(summaries, f"Open time and resident memory (median of {args.runs} runs per row, fresh process each)")
    methods = sorted({m for s in summaries.values() for m in s.get("eviction_methods", [])})
    print(f"  cold-cache eviction method(s): {', '.join(methods) or 'none'}")

    out = resolve(args.json_out) if args.json_out else work_dir / "open_rss.json"
    report = {
        "script": "open_rss.py",
        "machine": machine_info(strata),
        "args": vars(args),
        "index_dir": str(index_dir),
        "peer_index_paths": {k: str(v) for k, v in peer_paths.items()},
        "summary": {f"{e}/{c}": s for (e, c), s in summaries.items()},
        "runs": {f"{e}/{c}": v for (e, c), v in runs.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nraw numbers written to {out}")


if __name__ == "__main__":
    main()
