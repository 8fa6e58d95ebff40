#!/usr/bin/env python3
"""shoal against Ray, side by side, in one run on this machine.

Runs `shoal bench` (the worker-bin command) and Ray's equivalents of the same
metrics, then prints one table: metric | shoal | Ray | ratio | limit.

The script needs only the standard library to start. It creates its own
virtual environment in `benches/compare/.venv` (ray==2.60.0 and numpy from
PyPI) and re-executes itself with that environment's Python for the Ray part.
See README.md in this folder.

Ray's figures come from Ray's own `ray microbenchmark` code
(`ray/_private/ray_perf.py`) where it has the metric, timed by Ray's own
`timeit` helper (`ray/_private/ray_microbenchmark_helpers.py`); the metrics it
lacks (nested tasks sync, zero-copy get, array tasks, dependent chain, the
filled and nested-array puts, owned get) are written here in the same shape
and timed by the same helper. Init and shutdown, cold put and the idle node
run in fresh processes after everything else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

RAY_VERSION = "2.60.0"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = HERE / ".venv"
VENV_PYTHON = VENV / "bin" / "python"

# Object store for the Ray side: 800 MB puts need room for two at once.
STORE_BYTES = int(2.5e9)
STORE_MIN_BYTES = int(1.8e9)
# get owned gigabytes: timed calls after one warm-up.
OWNED_GET_CALLS = 8
# A fresh-process run (init, cold put, idle node) that takes longer is stopped.
PROBE_TIMEOUT_S = 300

# shoal bench's metric names (the output contract), in table order, with the
# unit each is expected in.
MACHINE = [
    ("machine memcpy gigabytes", "GB/s"),
    ("machine memcpy gigabytes all cores", "GB/s"),
    ("machine unix socket ping-pong", "round trips/s"),
    ("machine worker start", "ms"),
]
COMPARED = [
    ("single client tasks sync", "tasks/s"),
    ("single client tasks async", "tasks/s"),
    ("multi client tasks async", "tasks/s"),
    ("nested tasks sync", "tasks/s"),
    ("1:1 actor calls sync", "calls/s"),
    ("1:1 actor calls async", "calls/s"),
    ("1:n actor calls async", "calls/s"),
    ("n:n actor calls async", "calls/s"),
    ("n:n actor calls with arg async", "calls/s"),
    ("single client tasks and get batch", "batches/s"),
    ("cancel pending", "cancels/s"),
    ("streaming items", "items/s"),
    ("single client put calls", "calls/s"),
    ("single client get calls", "calls/s"),
    ("single client put gigabytes", "GB/s"),
    # shoal only: put(a) consuming an owned array (Ray has no consuming put).
    ("put owned gigabytes", "GB/s"),
    # Ray's figure for it: its put of a filled array (RAY_EXTRA).
    ("put_with gigabytes", "GB/s"),
    ("put nested arrays gigabytes", "GB/s"),
    ("get owned gigabytes", "GB/s"),
    ("cold put gigabytes", "GB/s"),
    ("multi client put gigabytes", "GB/s"),
    ("single client get object containing 10k refs", "calls/s"),
    ("single client wait 1k refs", "calls/s"),
    ("zero-copy get gigabytes", "GB/s"),
    ("zero-copy get per call", "µs"),
    ("array tasks", "ms"),
    ("array tasks compute floor", "ms"),
    ("array tasks ratio to floor", "x"),
    # shoal only: the same sums on as many threads of one process (the
    # machine's memory bandwidth shared, as the workers share it).
    ("array tasks threaded floor", "ms"),
    ("array tasks ratio to threaded floor", "x"),
    ("dependent chain", "µs/link"),
    ("init to first result", "ms"),
    ("shutdown", "ms"),
    # Lower is better (see higher_is_better).
    ("init cpu seconds", "s"),
    ("idle node rss", "MB"),
]
# Ray-side figures beyond shoal's list, each shown in the table under the
# shoal metrics it compares with: ray_perf puts np.zeros (never-touched pages,
# so the copy reads one shared zero page); shoal puts an array with data in it,
# and its put_with fills one in place, which Ray cannot do: its nearest is the
# put of an array already filled.
RAY_EXTRA = {
    "single client put gigabytes, filled array": ("GB/s", ("single client put gigabytes", "put_with gigabytes")),
}
KNOWN = dict(MACHINE + COMPARED + [(k, u) for k, (u, _) in RAY_EXTRA.items()])

# The machine ceiling printed beside each metric, from shoal bench's own run.
LIMITS = {
    "single client put gigabytes": "machine memcpy gigabytes all cores",
    "put_with gigabytes": "machine memcpy gigabytes all cores",
    "put nested arrays gigabytes": "machine memcpy gigabytes all cores",
    "get owned gigabytes": "machine memcpy gigabytes all cores",
    "cold put gigabytes": "machine memcpy gigabytes all cores",
    "multi client put gigabytes": "machine memcpy gigabytes",
    "single client tasks sync": "machine unix socket ping-pong",
    "nested tasks sync": "machine unix socket ping-pong",
    "1:1 actor calls sync": "machine unix socket ping-pong",
    "init to first result": "machine worker start",
    "array tasks": "array tasks compute floor",
}

# ray_perf's names for the metrics it has -> shoal's names.
RAY_PERF_NAMES = {
    "single client get calls (Plasma Store)": "single client get calls",
    "single client put calls (Plasma Store)": "single client put calls",
    "single client put gigabytes": "single client put gigabytes",
    "single client tasks and get batch": "single client tasks and get batch",
    "multi client put gigabytes": "multi client put gigabytes",
    "single client get object containing 10k refs": "single client get object containing 10k refs",
    "single client wait 1k refs": "single client wait 1k refs",
    "single client tasks sync": "single client tasks sync",
    "single client tasks async": "single client tasks async",
    "multi client tasks async": "multi client tasks async",
    "1:1 actor calls sync": "1:1 actor calls sync",
    "1:1 actor calls async": "1:1 actor calls async",
    "1:n actor calls async": "1:n actor calls async",
    "n:n actor calls async": "n:n actor calls async",
    "n:n actor calls with arg async": "n:n actor calls with arg async",
}
# ray_perf counts its 100 Mi int64 (838.9 MB) array as 0.8 GB; scale its
# gigabyte figures to the bytes actually moved, as shoal counts them.
RAY_PERF_GB_FIX = {
    "single client put gigabytes": 100 * 1024 * 1024 * 8 / 0.8e9,
    "multi client put gigabytes": 100 * 1024 * 1024 * 8 / 0.8e9,
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def selected(name: str, pattern: str | None) -> bool:
    return not pattern or pattern in name


def ray_selected(name: str, pattern: str | None) -> bool:
    """A Ray-side figure is wanted: its name matches, or (for a RAY_EXTRA
    figure) the name of a shoal metric it is shown under."""
    if selected(name, pattern):
        return True
    return name in RAY_EXTRA and any(selected(c, pattern) for c in RAY_EXTRA[name][1])


def median_half_range(xs: list[float]) -> tuple[float, float]:
    """As shoal bench reports: the median (upper, for an even count) and half the range."""
    s = sorted(xs)
    return s[len(s) // 2], (s[-1] - s[0]) / 2


# --------------------------------------------------------------------------
# Parsing `<metric>\t<value>\t<unit>\t± <spread>` lines (both sides).
# --------------------------------------------------------------------------


class Figure:
    def __init__(self, name, value, unit, spread):
        self.name, self.value, self.unit, self.spread = name, value, unit, spread

    def spread_text(self):
        if self.spread is None:
            return ""
        if isinstance(self.spread, str):
            return f"± {self.spread}"
        return f"± {self.spread:.6g}"


def parse_bench(text: str, source: str) -> tuple[dict[str, Figure], dict[str, str]]:
    """Metric lines -> {name: Figure}; `# key: value` lines -> metadata."""
    figures: dict[str, Figure] = {}
    meta: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            key, _, val = line[1:].partition(":")
            if val:
                meta[key.strip()] = val.strip()
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            log(f"warning: {source} line {n} is not a metric line, ignored: {line!r}")
            continue
        name, value, unit = fields[0].strip(), fields[1].strip(), fields[2].strip()
        try:
            v = float(value)
        except ValueError:
            log(f"warning: {source} line {n}: value {value!r} is not a number, ignored")
            continue
        spread: float | str | None = None
        if len(fields) > 3:
            s = fields[3].strip()
            for prefix in ("±", "+-", "+/-"):
                if s.startswith(prefix):
                    s = s[len(prefix):].strip()
            try:
                spread = float(s)
            except ValueError:
                spread = s or None  # e.g. "3.1%": shown as written
        if name not in KNOWN:
            log(f"warning: {source}: unknown metric {name!r} (shown in raw values only)")
        elif unit != KNOWN[name]:
            log(f"warning: {source}: {name!r} in {unit!r}, expected {KNOWN[name]!r}")
        figures[name] = Figure(name, v, unit, spread)
    return figures, meta


def format_line(name, value, unit, spread) -> str:
    return f"{name}\t{value:.6g}\t{unit}\t± {spread:.3g}"


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------

TIME_SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def is_rate(unit: str) -> bool:
    return unit.endswith("/s")


def higher_is_better(unit: str) -> bool:
    """Rates (GB/s, tasks/s): higher is better. Everything else is a cost and
    lower is better: times (ms, µs/link), CPU time (s), memory (MB) and the
    x-to-floor ratios."""
    return is_rate(unit)


def to_common(a: Figure, b: Figure) -> tuple[float, float] | None:
    """Both values in one unit, or None if the units cannot be matched."""
    if a.unit == b.unit:
        return a.value, b.value
    ua, ub = a.unit.split("/")[0], b.unit.split("/")[0]
    rest_a, rest_b = a.unit[len(ua):], b.unit[len(ub):]
    if ua in TIME_SCALE and ub in TIME_SCALE and rest_a == rest_b:
        return a.value * TIME_SCALE[ua], b.value * TIME_SCALE[ub]
    size = {"GB/s": 1e9, "MB/s": 1e6, "KB/s": 1e3}
    if a.unit in size and b.unit in size:
        return a.value * size[a.unit], b.value * size[b.unit]
    size = {"GB": 1e9, "MB": 1e6, "KB": 1e3, "GiB": 2**30, "MiB": 2**20, "KiB": 2**10}
    if a.unit in size and b.unit in size:
        return a.value * size[a.unit], b.value * size[b.unit]
    return None


def ratio_text(shoal: Figure | None, ray: Figure | None) -> str:
    if shoal is None or ray is None:
        return "—"
    both = to_common(shoal, ray)
    if both is None:
        return "units differ"
    s, r = both
    if higher_is_better(shoal.unit):
        num, den = s, r  # rates
    else:
        num, den = r, s  # times, CPU seconds, memory, x-to-floor
    if den == 0:
        return "∞" if num > 0 else "—"
    return f"{num / den:.2f}x"


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(f: Figure | None) -> str:
    return "—" if f is None else f"{fmt(f.value)} {f.unit}"


def limit_cell(name: str, shoal: dict[str, Figure]) -> str:
    src = LIMITS.get(name)
    if not src:
        return ""
    f = shoal.get(src)
    if f is None:
        return "—"
    what = {
        "machine memcpy gigabytes": "memcpy, 1 core",
        "machine memcpy gigabytes all cores": "memcpy, all cores",
        "machine unix socket ping-pong": "socket ping-pong",
        "machine worker start": "worker start",
        "array tasks compute floor": "compute floor",
    }[src]
    return f"{cell(f)} ({what})"


def print_table(shoal, ray, shoal_meta, ray_meta, pattern):
    rows = [("metric", "shoal", "Ray", "ratio", "limit")]
    for name, _unit in COMPARED:
        s, r = shoal.get(name), ray.get(name)
        if (s is None and r is None) or not selected(name, pattern):
            continue
        rows.append((name, cell(s), cell(r), ratio_text(s, r), limit_cell(name, shoal)))
        for extra, (_u, counterparts) in RAY_EXTRA.items():
            if name in counterparts and extra in ray:
                rows.append((f"  {extra} (Ray)", cell(s), cell(ray[extra]), ratio_text(s, ray[extra]), ""))
    if len(rows) == 1:
        print("no metrics to compare" + (f" (filter {pattern!r})" if pattern else ""))
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        aligns = ["<", ">", ">", ">", "<"]

        def line(row):
            return " | ".join(f"{c:{a}{w}}" for c, a, w in zip(row, aligns, widths)).rstrip()

        print(line(rows[0]))
        print("-|-".join("-" * w for w in widths))
        for row in rows[1:]:
            print(line(row))
        print()
        print("ratio: how many times better shoal is (shoal/Ray for rates; Ray/shoal for times, CPU seconds, memory).")
        print("limit: this machine's ceiling, measured by shoal bench in the same run.")

    print()
    print("raw values")
    for side, figs, meta in (("shoal", shoal, shoal_meta), ("Ray", ray, ray_meta)):
        print(f"  {side}:")
        if not figs:
            print("    (none)")
        order = [n for n in KNOWN if n in figs] + [n for n in figs if n not in KNOWN]
        w = max((len(n) for n in order), default=0)
        for n in order:
            f = figs[n]
            print(f"    {n:<{w}}  {f.value:>14.6g} {f.unit:<14} {f.spread_text()}")
        for k, v in meta.items():
            print(f"    # {k}: {v}")


# --------------------------------------------------------------------------
# The shoal side.
# --------------------------------------------------------------------------


def run_shoal(pattern: str | None, args=None) -> str:
    if not (REPO / "Cargo.toml").exists():
        sys.exit(f"error: no Cargo.toml at {REPO} (expected the repo root two levels above this script)")
    if shutil.which("cargo") is None:
        sys.exit("error: cargo not found on PATH")
    cmd = ["cargo", "run", "--release", "-p", "shoal-worker", "--", "bench"]
    if args is not None and args.ray_address:
        # shoal on the Ray cluster: the binary with the `ray` feature, its
        # worker library built from the same crate.
        build = ["cargo", "rustc", "--release", "-p", "shoal-worker", "--lib", "--features", "ray", "--crate-type", "cdylib"]
        log(f"== shoal's worker library: {' '.join(build)}")
        if subprocess.run(build, cwd=REPO).returncode != 0:
            sys.exit("error: building the worker library failed")
        library = Path(args.ray_library)
        library.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "target" / "release" / "libshoal_worker.so", library / "libshoal_worker.so")
        cmd = ["cargo", "run", "--release", "-p", "shoal-worker", "--features", "ray", "--", "bench",
               "--ray", args.ray_address, "--ray-library", str(library.resolve())]
    if pattern:
        cmd += ["--filter", pattern]
    log(f"== shoal: {' '.join(cmd)}  (in {REPO})")
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    log(f"== shoal bench took {time.perf_counter() - t:.0f} s")
    if p.returncode != 0:
        sys.stderr.write(p.stdout)
        sys.exit(f"error: shoal bench exited with {p.returncode} (use --ray-only to run Ray alone)")
    return p.stdout


# --------------------------------------------------------------------------
# The Ray side: virtual environment, then a child process in it.
# --------------------------------------------------------------------------


def venv_ready() -> bool:
    if not VENV_PYTHON.exists():
        return False
    check = f"import ray, numpy; assert ray.__version__ == {RAY_VERSION!r}, ray.__version__"
    return subprocess.run([str(VENV_PYTHON), "-c", check], capture_output=True).returncode == 0


def ensure_venv():
    if venv_ready():
        return
    if not VENV_PYTHON.exists():
        log(f"== creating virtual environment {VENV}")
        r = subprocess.run([sys.executable, "-m", "venv", str(VENV)])
        if r.returncode != 0:
            sys.exit("error: `python3 -m venv` failed (on Debian/Ubuntu: apt-get install python3-venv)")
    log(f"== installing ray=={RAY_VERSION} and numpy into {VENV} (needs PyPI; a few minutes)")
    r = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", f"ray=={RAY_VERSION}", "numpy"]
    )
    if r.returncode != 0 or not venv_ready():
        sys.exit("error: installing ray/numpy into the virtual environment failed")


def store_plan(requested: int | None) -> tuple[int, str]:
    """Object store size, and a note on where it lives."""
    want = requested or STORE_BYTES
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_bavail * st.f_frsize
    except OSError:
        shm = 0
    if shm >= want:
        return want, f"{want / 1e9:.2f} GB in /dev/shm ({shm / 1e9:.1f} GB free)"
    if requested is None and shm * 0.95 >= STORE_MIN_BYTES:
        size = int(shm * 0.95)
        return size, f"{size / 1e9:.2f} GB in /dev/shm (only {shm / 1e9:.2f} GB free there)"
    # Too small for the 800 MB puts: Ray then keeps the store in /tmp, slower.
    os.environ["RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE"] = "1"
    return want, f"{want / 1e9:.2f} GB in /tmp (/dev/shm has only {shm / 1e9:.2f} GB free: Ray is slower there)"


def run_ray(args) -> str:
    ensure_venv()
    store, note = store_plan(args.object_store_bytes)
    cpus = args.num_cpus or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="shoal-compare-") as tmp:
        out = Path(tmp) / "ray.tsv"
        cmd = [
            str(VENV_PYTHON), str(Path(__file__).resolve()), "--ray-child", str(out),
            "--num-cpus", str(cpus), "--object-store-bytes", str(store),
            "--settle", str(args.settle), "--init-runs", str(args.init_runs),
            "--fresh-runs", str(args.fresh_runs),
        ]
        if args.ray_address:
            cmd += ["--ray-address", args.ray_address]
        if args.filter:
            cmd += ["--filter", args.filter]
        log(f"== Ray {RAY_VERSION}: num_cpus={cpus}, object store {note}, settle {args.settle} s")
        t = time.perf_counter()
        # The child's progress (Ray's own "name per second" lines) goes to stderr.
        r = subprocess.run(cmd, stdout=sys.stderr, env=os.environ.copy())
        log(f"== Ray side took {time.perf_counter() - t:.0f} s")
        text = out.read_text() if out.exists() else ""
        if r.returncode != 0:
            log(f"error: the Ray side exited with {r.returncode}; keeping what it measured")
        return text + f"# object store: {note}\n"


# --------------------------------------------------------------------------
# In the virtual environment: Ray's benchmarks.
# --------------------------------------------------------------------------


def ray_child(args):
    import types

    import numpy as np

    import ray
    from ray._private import ray_microbenchmark_helpers as helpers

    # ray_perf imports the Ray Client microbenchmark, which needs grpc (not in
    # plain `ray`); it runs after everything here, so a stub stands in for it.
    stub = types.ModuleType("ray._private.ray_client_microbenchmark")
    stub.main = lambda results=None: results
    sys.modules.setdefault("ray._private.ray_client_microbenchmark", stub)
    from ray._private import ray_perf

    pattern = args.filter
    out_path = Path(args.ray_child)
    out = out_path.open("w")
    out.write(f"# ray: {ray.__version__} (optimized build: {bool(ray._raylet.OPTIMIZED)})\n")
    out.write(f"# numpy: {np.__version__}\n")
    out.write(f"# num_cpus: {args.num_cpus}; settle before each metric: {args.settle} s (Ray's default 10)\n")
    out.flush()

    def emit(name, value, unit, spread):
        out.write(format_line(name, value, unit, spread) + "\n")
        out.flush()

    # The selection is by shoal's names; Ray's own TESTS_TO_RUN/TESTS_TO_SKIP
    # would also apply inside its timeit, so clear them.
    helpers.filter_pattern = ""
    helpers.skip_pattern = ""
    ray_timeit = helpers.timeit

    def timeit(name, fn, multiplier=1):
        (r,) = ray_timeit(name, fn, multiplier, warmup_time_sec=args.settle)
        return r[1], r[2]  # mean, std of the per-second rate over 4 runs

    init_kwargs = dict(num_cpus=args.num_cpus, object_store_memory=args.object_store_bytes)
    if args.ray_address:
        # The cluster shoal ran on; its size is the cluster's own.
        init_kwargs = dict(address=args.ray_address)

    def guarded(what, fn):
        """Run one measurement; if it fails, say so and go on with the others."""
        try:
            fn()
        except Exception:
            print(f"error: {what} failed; going on with the other metrics", flush=True)
            traceback.print_exc()
            out.write(f"# {what}: failed (the traceback is in the Ray side's log)\n")
            out.flush()

    # ---- ray_perf.main() for the metrics it has, stopped after the last one.
    wanted = {rn for rn, sn in RAY_PERF_NAMES.items() if selected(sn, pattern)}

    class Done(Exception):
        pass

    def perf_timeit(name, fn, multiplier=1, warmup_time_sec=10):
        if name in wanted:
            mean, sd = timeit(name, fn, multiplier)
            shoal_name = RAY_PERF_NAMES[name]
            fix = RAY_PERF_GB_FIX.get(shoal_name, 1.0)
            emit(shoal_name, mean * fix, KNOWN[shoal_name], sd * fix)
            wanted.discard(name)
        if not wanted:
            raise Done
        return [None]

    real_init = ray.init

    def init_with_our_args(*a, **kw):
        return real_init(*a, **{**init_kwargs, **kw})

    def run_ray_perf():
        ray_perf.timeit = perf_timeit
        ray.init = init_with_our_args
        try:
            ray_perf.main()
        except Done:
            pass
        finally:
            ray.init = real_init

    if wanted:
        guarded("ray_perf metrics", run_ray_perf)

    # ---- The rest, written in ray_perf's shape, on the same node.
    want_nested = selected("nested tasks sync", pattern)
    want_filled_put = ray_selected("single client put gigabytes, filled array", pattern)
    want_nested_arrays = selected("put nested arrays gigabytes", pattern)
    want_owned_get = selected("get owned gigabytes", pattern)
    want_zero = any(selected(n, pattern) for n in ("zero-copy get gigabytes", "zero-copy get per call"))
    want_array = any(
        selected(n, pattern) for n in ("array tasks", "array tasks compute floor", "array tasks ratio to floor")
    )
    want_chain = selected("dependent chain", pattern)
    want_cancel = selected("cancel pending", pattern)
    want_streaming = selected("streaming items", pattern)
    want_node = (
        want_nested,
        want_filled_put,
        want_nested_arrays,
        want_owned_get,
        want_zero,
        want_array,
        want_chain,
        want_cancel,
        want_streaming,
    )
    if any(want_node) and not ray.is_initialized():
        guarded("ray.init", lambda: real_init(**init_kwargs))

    def nested_tasks():
        # shoal's shape: one task submitting a no-op child and getting it, one
        # at a time; per call 500 children (shoal: 2 000), so that one call
        # (~1 s at Ray's rate) fits Ray's 2 s timing runs.
        children = 500

        @ray.remote
        def nested_child():
            return b"ok"

        @ray.remote
        def nested_sync(n):
            for _ in range(n):
                ray.get(nested_child.remote())
            return n

        def nested():
            assert ray.get(nested_sync.remote(children)) == children

        rate, sd = timeit("nested tasks sync (one task getting 500 children, one at a time)", nested, children)
        emit("nested tasks sync", rate, "tasks/s", sd)

    def filled_put():
        filled = np.full(100_000_000, 1.5)  # 800 MB, every page written

        def put_filled():
            ray.put(filled)

        rate, sd = timeit("single client put gigabytes (filled 800 MB array)", put_filled, 0.8)
        emit("single client put gigabytes, filled array", rate, "GB/s", sd)

    def nested_arrays_put():
        # shoal puts a Vec of 8 x 100 MB arrays; Ray's shape: a list of them.
        parts = [np.full(12_500_000, 1.5) for _ in range(8)]
        back = ray.get(ray.put(parts))
        assert len(back) == 8 and all(a.shape == (12_500_000,) and a[7] == 1.5 for a in back), "wrong list back"
        del back

        def put_nested():
            ray.put(parts)

        rate, sd = timeit("put nested arrays gigabytes (a list of 8 filled 100 MB arrays)", put_nested, 0.8)
        emit("put nested arrays gigabytes", rate, "GB/s", sd)

    def owned_get():
        # ray.get of a numpy array is zero-copy (read-only, backed by the
        # store); a Ray user who wants to own it copies it. Timed per call,
        # the copy freed outside the timing (as shoal drops its copy), so the
        # figure holds the get and the copy (with the new pages' faults) but
        # not the 800 MB munmap that a timeit loop would also count.
        ref = ray.put(np.full(100_000_000, 1.5))
        got = ray.get(ref).copy()
        assert got.flags.owndata and got.flags.writeable and got.shape == (100_000_000,) and got[7] == 1.5
        del got
        time.sleep(args.settle)
        rates = []
        for i in range(1 + OWNED_GET_CALLS):  # the first is a warm-up
            t = time.perf_counter()
            got = ray.get(ref).copy()
            secs = time.perf_counter() - t
            del got
            if i:
                rates.append(0.8 / secs)
        mean, sd = float(np.mean(rates)), float(np.std(rates))
        print(f"get owned gigabytes (ray.get(ref).copy(), 800 MB) per second {mean:.2f} +- {sd:.2f}", flush=True)
        emit("get owned gigabytes", mean, "GB/s", sd)

    def zero_copy():
        big = np.zeros(100_000_000, dtype=np.float64)  # 800 MB
        big_ref = ray.put(big)
        del big
        got = ray.get(big_ref)
        assert not got.flags.writeable and not got.flags.owndata, "ray.get copied the array"
        del got

        def zero_copy_get():
            ray.get(big_ref)

        rate, sd = timeit("zero-copy get (800 MB numpy array)", zero_copy_get)
        emit("zero-copy get gigabytes", rate * 0.8, "GB/s", sd * 0.8)
        emit("zero-copy get per call", 1e6 / rate, "µs", 1e6 * sd / rate**2)

    def array_tasks():
        n_tasks = 20
        arr = np.ones(12_500_000, dtype=np.float64)  # 100 MB

        @ray.remote
        def total(a):
            return float(a.sum())

        arr_ref = ray.put(arr)
        assert ray.get([total.remote(arr_ref) for _ in range(n_tasks)]) == [12_500_000.0] * n_tasks

        def tasks():
            ray.get([total.remote(arr_ref) for _ in range(n_tasks)])

        def compute_floor():
            for _ in range(n_tasks):
                arr.sum()

        rate, sd = timeit("array tasks (20 tasks summing one 100 MB array)", tasks)
        tasks_ms, tasks_sd = 1e3 / rate, 1e3 * sd / rate**2
        rate, sd = timeit("array tasks compute floor (20 numpy sums in the driver)", compute_floor)
        floor_ms, floor_sd = 1e3 / rate / args.num_cpus, 1e3 * sd / rate**2 / args.num_cpus
        if selected("array tasks", pattern):
            emit("array tasks", tasks_ms, "ms", tasks_sd)
        if selected("array tasks compute floor", pattern):
            emit("array tasks compute floor", floor_ms, "ms", floor_sd)
        if selected("array tasks ratio to floor", pattern):
            ratio = tasks_ms / floor_ms
            emit("array tasks ratio to floor", ratio, "x", ratio * math.hypot(tasks_sd / tasks_ms, floor_sd / floor_ms))

    def dependent_chain():
        links = 1000

        @ray.remote
        def increment(n):
            return n + 1

        def chain():
            r = increment.remote(0)
            for _ in range(links - 1):
                r = increment.remote(r)
            assert ray.get(r) == links

        rate, sd = timeit("dependent chain (1000 tasks, each taking the previous ref)", chain)
        emit("dependent chain", 1e6 / rate / links, "µs/link", 1e6 * sd / rate**2 / links)

    def cancel_pending():
        # shoal's shape: 1 000 tasks (shoal: 10 000) waiting for an argument a
        # long task computes, then ray.cancel of each; only the cancels are
        # timed, over 4 runs.
        n = 1000

        @ray.remote
        def gate(s):
            time.sleep(s)
            return s

        @ray.remote
        def after_gate(x):
            return b"ok"

        blocker = gate.remote(600)
        rates = []
        for _ in range(5):
            pending = [after_gate.remote(blocker) for _ in range(n)]
            t0 = time.perf_counter()
            for r in pending:
                ray.cancel(r)
            rates.append(n / (time.perf_counter() - t0))
        try:
            ray.get(pending[-1])
            raise AssertionError("a cancelled task gave a value")
        except ray.exceptions.TaskCancelledError:
            pass
        ray.cancel(blocker, force=True)
        mean, sd = statistics.mean(rates[1:]), statistics.stdev(rates[1:])
        emit("cancel pending", mean, "cancels/s", sd)

    def streaming_items():
        # shoal's shape: one generator task of 100 000 small items, its
        # refs taken by the driver as they come (`for ref in gen`); items
        # per second from the submission to the end, over 3 runs after a
        # warm-up.
        n = 100_000

        @ray.remote
        def stream_items(n):
            for i in range(n):
                yield i

        rates = []
        for _ in range(4):
            t0 = time.perf_counter()
            items = sum(1 for _ in stream_items.remote(n))
            rates.append(items / (time.perf_counter() - t0))
            assert items == n, f"{items} items of {n}"
        mean, sd = statistics.mean(rates[1:]), statistics.stdev(rates[1:])
        emit("streaming items", mean, "items/s", sd)

    if ray.is_initialized():
        for want, what, fn in (
            (want_nested, "nested tasks sync", nested_tasks),
            (want_filled_put, "single client put gigabytes, filled array", filled_put),
            (want_nested_arrays, "put nested arrays gigabytes", nested_arrays_put),
            (want_owned_get, "get owned gigabytes", owned_get),
            (want_zero, "zero-copy get", zero_copy),
            (want_array, "array tasks", array_tasks),
            (want_chain, "dependent chain", dependent_chain),
            (want_cancel, "cancel pending", cancel_pending),
            (want_streaming, "streaming items", streaming_items),
        ):
            if want:
                guarded(what, fn)
        ray.shutdown()

    # ---- Fresh processes, each its own node, after all else.
    def fresh_runs(kind, n, extra=()):
        """`n` runs of `compare.py --ray-probe KIND` in fresh processes: the
        JSON object each prints last; a run that fails is reported and skipped."""
        time.sleep(args.settle)
        results = []
        for i in range(n):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--ray-probe", kind,
                   "--num-cpus", str(args.num_cpus), *extra]
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"{kind} run {i + 1} took over {PROBE_TIMEOUT_S} s; stopped", flush=True)
                continue
            res = last_json(p.stdout) if p.returncode == 0 else None
            if res is None:
                print(f"{kind} run {i + 1} failed (exit {p.returncode})", flush=True)
                continue
            results.append(res)
            time.sleep(1)
        return results

    def init_and_shutdown():
        runs = fresh_runs("init", args.init_runs, ["--object-store-bytes", str(args.object_store_bytes)])
        for res in runs:
            print(f"init to first result {res['init_ms']:.0f} ms, shutdown {res['shutdown_ms']:.0f} ms", flush=True)
        inits, downs = [r["init_ms"] for r in runs], [r["shutdown_ms"] for r in runs]
        if inits:
            if selected("init to first result", pattern):
                emit("init to first result", float(np.mean(inits)), "ms", float(np.std(inits)))
            if selected("shutdown", pattern):
                emit("shutdown", float(np.mean(downs)), "ms", float(np.std(downs)))

    def cold_put():
        runs = fresh_runs("cold-put", args.fresh_runs)
        for res in runs:
            print(f"cold put gigabytes {res['gbps']:.2f} GB/s (default object store "
                  f"{res['store_bytes'] / 1e9:.2f} GB)", flush=True)
        if runs:
            median, half = median_half_range([r["gbps"] for r in runs])
            emit("cold put gigabytes", median, "GB/s", half)
            out.write(f"# cold put: {len(runs)} fresh processes, Ray's default object store "
                      f"{runs[0]['store_bytes'] / 1e9:.2f} GB\n")
            out.flush()

    def idle_node():
        runs = fresh_runs("idle", args.fresh_runs)
        for res in runs:
            print(f"idle node: driver {res['cpu_s']:.3f} CPU s, {res['rss_mb']:.0f} MB; Ray's other "
                  f"{res['others']} processes {res['others_cpu_s']:.2f} CPU s, {res['others_rss_mb']:.0f} MB", flush=True)
        if not runs:
            return
        if selected("init cpu seconds", pattern):
            median, half = median_half_range([r["cpu_s"] for r in runs])
            emit("init cpu seconds", median, "s", half)
        if selected("idle node rss", pattern):
            median, half = median_half_range([r["rss_mb"] for r in runs])
            emit("idle node rss", median, "MB", half)
        cpu, _ = median_half_range([r["others_cpu_s"] for r in runs])
        rss, _ = median_half_range([r["others_rss_mb"] for r in runs])
        out.write(f"# idle node: the driver process only; Ray's other processes, not counted "
                  f"({runs[0]['others_names']}), used {cpu:.2f} CPU s and {rss:.0f} MB VmRSS "
                  f"(summed, medians of {len(runs)} runs)\n")
        out.flush()

    if selected("init to first result", pattern) or selected("shutdown", pattern):
        guarded("init and shutdown", init_and_shutdown)
    if selected("cold put gigabytes", pattern):
        guarded("cold put gigabytes", cold_put)
    if selected("init cpu seconds", pattern) or selected("idle node rss", pattern):
        guarded("idle node", idle_node)
    out.close()


def last_json(text: str) -> dict | None:
    """The last line of `text` that is a JSON object (Ray may log around it)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def proc_cpu_seconds(pid) -> float:
    """User and system CPU time of a process, all its threads (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid) -> float:
    """A process's VmRSS in MB (10^6 bytes), as shoal bench reports it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0  # a zombie has none


def descendants(pid) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def ray_probe(args):
    """One fresh-process measurement (`--ray-probe KIND`); prints one JSON line."""
    import numpy as np

    import ray

    @ray.remote
    def one():
        return 1

    if args.ray_probe == "init":
        t0 = time.perf_counter()
        ray.init(num_cpus=args.num_cpus, object_store_memory=args.object_store_bytes)
        assert ray.get(one.remote()) == 1
        t1 = time.perf_counter()
        ray.shutdown()
        t2 = time.perf_counter()
        res = {"init_ms": (t1 - t0) * 1e3, "shutdown_ms": (t2 - t1) * 1e3}
    elif args.ray_probe == "cold-put":
        # The first 800 MB put right after a default init: the store's pages
        # are new. The array is built before init, outside the timing.
        arr = np.full(100_000_000, 1.5)
        ray.init(num_cpus=args.num_cpus)
        t = time.perf_counter()
        ref = ray.put(arr)
        secs = time.perf_counter() - t
        store = ray.cluster_resources().get("object_store_memory", 0.0)
        del ref
        ray.shutdown()
        res = {"gbps": arr.nbytes / secs / 1e9, "store_bytes": store}
    elif args.ray_probe == "idle":
        # The driver's CPU time (all its threads) from just before a default
        # init until the node has been up 5 s, having run one tiny task, and
        # its VmRSS then. Ray's raylet, GCS and workers are other processes:
        # reported beside, not counted (shoal's workers are not counted either).
        def cpu():
            r = resource.getrusage(resource.RUSAGE_SELF)
            return r.ru_utime + r.ru_stime

        cpu0 = cpu()
        ray.init(num_cpus=args.num_cpus)
        up = time.perf_counter()
        assert ray.get(one.remote()) == 1
        time.sleep(max(0.0, up + 5 - time.perf_counter()))
        cpu_s = cpu() - cpu0
        rss_mb = proc_rss_mb("self")
        others_cpu = others_rss = 0.0
        names: dict[str, int] = {}
        for pid in descendants(os.getpid()):
            try:
                others_cpu += proc_cpu_seconds(pid)
                others_rss += proc_rss_mb(pid)
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except (OSError, IndexError, ValueError):
                continue
            names[comm] = names.get(comm, 0) + 1
        ray.shutdown()
        res = {
            "cpu_s": cpu_s, "rss_mb": rss_mb, "others": sum(names.values()),
            "others_cpu_s": others_cpu, "others_rss_mb": others_rss,
            "others_names": ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(names.items())),
        }
    else:
        sys.exit(f"unknown probe {args.ray_probe!r}")
    print(json.dumps(res), flush=True)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description="shoal bench against Ray's equivalents, in one run on this machine.",
    )
    ap.add_argument("--filter", metavar="PATTERN", help="only metrics whose shoal name contains PATTERN (both sides)")
    ap.add_argument("--shoal-only", action="store_true", help="run shoal bench only")
    ap.add_argument("--ray-only", action="store_true", help="run the Ray side only")
    ap.add_argument("--shoal-output", metavar="FILE", help="reuse saved `shoal bench` stdout instead of running it")
    ap.add_argument("--ray-output", metavar="FILE", help="reuse a saved Ray-side output (see --save) instead of running Ray")
    ap.add_argument("--save", metavar="DIR", help="write the two raw outputs to DIR/shoal.tsv and DIR/ray.tsv")
    ap.add_argument("--num-cpus", type=int, help="Ray's num_cpus (default: this machine's cores)")
    ap.add_argument("--object-store-bytes", type=int, help=f"Ray's object store size (default {STORE_BYTES:.3g})")
    ap.add_argument(
        "--settle", type=float, default=5.0,
        help="seconds Ray's timeit sleeps before each metric (Ray's default is 10; default here 5)",
    )
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="run both sides on this Ray cluster (`eval \"$(tests/ray/cluster start)\"` starts one): "
                         "shoal through its Ray backend (`shoal bench --ray`), Ray's on the same cluster")
    ap.add_argument("--ray-library", metavar="DIR", default=str(REPO / "target" / "ray-bench-library"),
                    help="where --ray-address puts shoal's worker library (default target/ray-bench-library)")
    ap.add_argument("--init-runs", type=int, default=5, help="fresh processes timed for init/shutdown (default 5)")
    ap.add_argument(
        "--fresh-runs", type=int, default=3,
        help="fresh Ray processes for cold put and for the idle node (default 3; shown as median ± half the range)",
    )
    ap.add_argument("--ray-child", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--ray-probe", choices=("init", "cold-put", "idle"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.ray_probe:
        return ray_probe(args)
    if args.ray_child:
        return ray_child(args)
    if args.shoal_only and args.ray_only:
        ap.error("--shoal-only and --ray-only together leave nothing to run")

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    log(f"== {platform.node()}: {cores} cores, {platform.platform()}, load average {load_before:.2f}")
    ran_shoal = not args.ray_only and not args.shoal_output
    ran_ray = not args.shoal_only and not args.ray_output
    if load_before > 0.5 * cores and (ran_shoal or ran_ray):
        log(f"warning: the machine is busy (1-minute load {load_before:.2f} on {cores} cores): figures will be disturbed")
    shoal_text = ray_text = ""
    if not args.ray_only:
        if args.shoal_output:
            shoal_text = Path(args.shoal_output).read_text()
        else:
            shoal_text = run_shoal(args.filter, args)
    if not args.shoal_only:
        if args.ray_output:
            ray_text = Path(args.ray_output).read_text()
        else:
            ray_text = run_ray(args)
    if args.save:
        d = Path(args.save)
        d.mkdir(parents=True, exist_ok=True)
        if shoal_text:
            (d / "shoal.tsv").write_text(shoal_text)
        if ray_text:
            (d / "ray.tsv").write_text(ray_text)

    shoal, shoal_meta = parse_bench(shoal_text, "shoal bench")
    ray_figs, ray_meta = parse_bench(ray_text, "Ray side")
    if args.filter:
        # A saved output may hold more than the filter asks for.
        shoal = {k: v for k, v in shoal.items() if selected(k, args.filter) or k in LIMITS.values()}
        ray_figs = {k: v for k, v in ray_figs.items() if ray_selected(k, args.filter)}
    print()
    print_table(shoal, ray_figs, shoal_meta, ray_meta, args.filter)
    if ran_shoal or ran_ray:
        print()
        print(f"1-minute load average on {cores} cores: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
              " (well above 0 means something else ran alongside)")


if __name__ == "__main__":
    main()
