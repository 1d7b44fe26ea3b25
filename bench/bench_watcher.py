#!/usr/bin/env python3
"""Watcher benchmark: pass cost against find(1), idle CPU, detection latency,
snapshot memory, for each backend: polling, inotify and auto (the default:
inotify with a polling safety net), and auto with its inotify made blind by
the test hook AIR_STD_TEST_BLIND_INOTIFY=1 (the safety net and the hot set
alone). Standard library only; prints markdown tables.

    python3 bench/bench_watcher.py            # full run (a few minutes)
    python3 bench/bench_watcher.py --quick    # smaller samples, short idle windows

Trees of 1k, 10k and 100k files are generated in a temp directory (removed
afterwards). Every figure comes from this run on this machine; `find` is
measured in the same run, interleaved with the watcher's passes, best of N.
"""

import argparse
import os
import platform
import queue
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from air_std.filters import PathFilter  # noqa: E402
from air_std.watch_inotify import BLIND_ENV  # noqa: E402
from air_std.watcher import Watcher  # noqa: E402
from benchlib import cpu_model, make_tree  # noqa: E402



def all_files(root):
    out = []
    for dp, _dns, fns in os.walk(root):
        out += [os.path.join(dp, f) for f in fns]
    return out


def time_find(root):
    """(wall, CPU) seconds of one find run; CPU (user+sys of the child) is the
    steadier figure on a loaded machine."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["find", root, "-type", "f", "-printf", "%T@ %s %i\n"],
                   stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def naive_walk(root):
    """What a plain poller does: os.walk plus one stat per path, one dict."""
    t0 = time.perf_counter()
    snap = {}
    for dp, _dns, fns in os.walk(root):
        for f in fns:
            p = os.path.join(dp, f)
            st = os.stat(p)
            snap[p] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return time.perf_counter() - t0


def watcher(root, q=None, **kw):
    """A Watcher; backend "auto-blind" is auto with every inotify event dropped."""
    blind = kw.get("backend") == "auto-blind"
    if blind:
        kw["backend"] = "auto"
        os.environ[BLIND_ENV] = "1"  # read when the driver is made, in the constructor's baseline
    try:
        w = Watcher(root, PathFilter(include_ext=kw.pop("include_ext", ["*"]), exclude_dir=[]),
                    q if q is not None else queue.Queue(), threading.Event(), **kw)
        if blind:
            w.poll_once()  # the baseline, while the hook is set
    finally:
        os.environ.pop(BLIND_ENV, None)
    return w


def label(w, backend):
    """The backend that ran, as the tables name it."""
    active = w.active_backend
    if backend == "auto-blind":
        return "auto, inotify blind" if active == "auto" else active + " (auto fell back)"
    if backend == "auto" and active != "auto":
        return active + " (auto fell back)"
    return active


# -- 1. pass cost -------------------------------------------------------------

def bench_pass(trees, reps):
    """Two passes against find: one that lists every directory (what find does, and
    what air_std does every 10 s) and the steady one, which lists only directories
    whose (mtime, inode) moved and stats the known files of the others."""
    rows = []
    for n, root in trees:
        w = watcher(root, backend="poll")  # the polling driver's two kinds of pass
        w.poll_once()  # baseline
        time_find(root)  # warm caches for both sides
        w.poll_once()
        best = {"list": float("inf"), "steady": float("inf"), "find": float("inf")}
        for _ in range(reps):  # interleaved, so all see the same machine load
            best["find"] = min(best["find"], time_find(root)[0])
            for kind in ("list", "steady"):
                if kind == "list":
                    w.driver.next_list_all = 0.0  # this pass lists everything
                t0 = time.perf_counter()
                w.poll_once()
                best[kind] = min(best[kind], time.perf_counter() - t0)
                assert w.last_pass_listed_all == (kind == "list")
        best_naive = min(naive_walk(root) for _ in range(3))
        rows.append((n, best["list"], best["find"], best["steady"], best_naive))
    print("### Full pass vs find (include_ext \"*\": every file is stat'ed; best of %d)\n" % reps)
    print("| files | pass listing every directory (ms) | µs/file | find (ms) | listing pass / find "
          "| steady pass (ms) | steady pass / find | naive walk / find |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, lp, f, sp, nv in rows:
        print("| %s | %.1f | %.2f | %.1f | **%.2fx** | %.1f | **%.2fx** | %.2fx |"
              % (format(n, ","), lp * 1e3, lp / n * 1e6, f * 1e3, lp / f, sp * 1e3, sp / f, nv / f))
    print("\nfind's times include starting the process (about 1-2 ms), which is why "
          "the 1k ratios are low. The steady pass skips the listing of directories whose "
          "(mtime, inode) held; find and the naive walk list and stat everything.\n")
    print()


# -- 2. idle CPU ----------------------------------------------------------------

def _measure_idle(w, seconds, stop):
    """Share of one core this process used over `seconds` (CPU time, not wall)."""
    c0, t0 = time.process_time(), time.perf_counter()
    stop.wait(seconds)
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def _heat(w, q, root, n):
    """Edit n files and wait until each is reported: they are hot from now on."""
    files = sorted(p for p in all_files(root) if p.endswith(".go"))[:n]
    for p in files:
        with open(p, "a") as fh:
            fh.write("h")
    left = set(files)
    deadline = time.monotonic() + 60
    while left:
        if time.monotonic() > deadline:
            raise RuntimeError("edits not reported within 60 s: %s" % sorted(left)[:3])
        try:
            left -= set(q.get(timeout=1.0).paths)
        except queue.Empty:
            pass


def bench_idle(trees, seconds, backends, net_windows):
    print("### Idle CPU, include_ext go,html (40% of the files), whole process\n")
    print("CPU is this process's utime+stime (time.process_time()) over the window, after a "
          "settling period: steady on a loaded machine, where wall-clock figures are not. "
          "Windows of %g s; for auto, at least %d safety-net interval(s), so that its passes "
          "are counted. \"10 hot files\": after 10 files were edited, so the hot set is "
          "checked every 100 ms.\n" % (seconds, net_windows))
    print("| files | backend | CPU (% of one core) | window (s) | full-pass interval (s) "
          "| pass CPU (ms) |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, root in trees:
        for backend in backends:
            if backend == "auto-blind":
                continue  # idles as auto does: a blind inotify only costs its reads
            q = queue.Queue()
            w = watcher(root, q, backend=backend, include_ext=["go", "html"])
            w.start()
            rows = []
            try:
                stop = threading.Event()
                # let the adaptive intervals settle; the safety net's first pass
                # comes 2 s after the start and paces the next ones
                stop.wait(min(3.0, seconds / 3))
                if w.safety_net_s is not None:
                    deadline = time.monotonic() + 60
                    while w.driver.net.last_cpu_s == 0 and time.monotonic() < deadline:
                        stop.wait(0.2)
                for hot in (False, True):
                    if hot:
                        _heat(w, q, root, 10)
                        stop.wait(1.0)
                    window = seconds
                    if w.safety_net_s is not None:
                        window = max(seconds, net_windows * w.safety_net_s)
                    cpu = _measure_idle(w, window, stop)
                    rows.append((hot, cpu, window, w.safety_net_s,
                                 w.driver.net.last_cpu_s if w.safety_net_s is not None else None,
                                 label(w, backend)))
            finally:
                w.stop()
                w.join(10)
            for hot, cpu, window, net, net_cost, active in rows:
                if net is not None:
                    interval = "%.1f (safety net)" % net
                    cost = "%.1f" % (net_cost * 1e3)
                elif active == "inotify":
                    interval = cost = "-"
                else:
                    interval = "%.2f" % w.full_interval_s
                    cost = "%.1f" % (w.last_full_cpu_s * 1e3)
                print("| %s | %s%s | %.2f%% | %.0f | %s | %s |" % (
                    format(n, ","), active, ", 10 hot files" if hot else "", cpu * 100, window,
                    interval, cost))
    print()


# -- 3. latency -------------------------------------------------------------------

def _wait_for(q, path, timeout=60.0):
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise RuntimeError("no change reported for %s within %gs" % (path, timeout))
        try:
            batch = q.get(timeout=left)
        except queue.Empty:
            continue
        if path in batch.paths:
            return time.perf_counter()


def _drain(q):
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def bench_latency(root, samples, backends):
    rnd = random.Random(5)
    files = [p for p in all_files(root) if p.endswith(".go")]
    rnd.shuffle(files)
    cold = iter(files[1:])
    hot = files[0]
    pause = threading.Event()
    print("### Detection latency, %s files watched (.go/.html of a %s-file tree), %d samples each\n"
          % (format(len(files) * 2, ","), format(len(all_files(root)), ","), samples))
    print("| backend | change | p50 (ms) | p95 (ms) | max (ms) | slowest write (ms) "
          "| safety net interval (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    blind_notes = []
    for backend in backends:
        q = queue.Queue()
        w = watcher(root, q, backend=backend, include_ext=["go", "html"])
        w.start()
        active = label(w, backend)
        try:
            # make `hot` hot: one change, seen
            with open(hot, "a") as fh:
                fh.write("h")
            _wait_for(q, hot)
            results = {}

            def measure(label, change):
                lat = []
                for i in range(samples):
                    # land at a random phase of the full-pass cycle (a fixed short
                    # pause would land each edit just after the pass that saw the last)
                    period = w.safety_net_s if w.safety_net_s else w.full_interval_s
                    pause.wait(rnd.uniform(0.05, 0.05 + max(0.1, period)))
                    _drain(q)
                    path, t0 = change(i)
                    # how long the change itself took (open, write, close): an append to
                    # a file whose last page left the cache waits for the disk
                    written = time.perf_counter() - t0
                    lat.append((_wait_for(q, path, timeout=60.0) - t0, written))
                results[label] = lat

            def edit_hot(i):
                t0 = time.perf_counter()
                with open(hot, "a") as fh:
                    fh.write("e")
                return hot, t0

            def edit_cold(i):
                p = next(cold)
                t0 = time.perf_counter()
                with open(p, "a") as fh:
                    fh.write("c")
                return p, t0

            def new_dir(i):
                d = os.path.join(os.path.dirname(next(cold)), "new_%s_%d" % (backend.replace("-", "_"), i))
                p = os.path.join(d, "n.go")
                t0 = time.perf_counter()
                os.mkdir(d)
                with open(p, "w") as fh:
                    fh.write("n")
                return p, t0

            def rename_save(i):
                tmp = hot + ".tmp~"
                t0 = time.perf_counter()
                with open(tmp, "w") as fh:
                    fh.write("saved %d" % i)
                os.replace(tmp, hot)
                return hot, t0

            measure("hot file edit", edit_hot)
            measure("atomic rename-save (hot file)", rename_save)
            measure("cold file edit", edit_cold)
            measure("new file in a new dir", new_dir)
            net = w.safety_net_s
        finally:
            w.stop()
            w.join(10)
        for what, pairs in results.items():
            lat = sorted(x for x, _ in pairs)
            p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
            print("| %s | %s | %.0f | %.0f | %.0f | %.0f | %s |" % (
                active, what, statistics.median(lat) * 1e3, p95 * 1e3, lat[-1] * 1e3,
                max(took for _, took in pairs) * 1e3, "%.1f" % net if net is not None else "-"))
        if backend == "auto-blind":
            blind_notes.append("auto, inotify blind: %d change(s) found by polling that inotify "
                               "did not report; safety net every %.1f s at the end (paced to "
                               "its CPU budget)" % (w.missed, net or 0))
    print()
    for note in blind_notes:
        print("- " + note)
    if blind_notes:
        print()


# -- 4. memory ----------------------------------------------------------------------

_RSS_SCRIPT = r"""
import os, queue, sys, threading
sys.path.insert(0, sys.argv[1])
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
from air_std.filters import PathFilter
from air_std.watcher import Watcher
before = status("VmRSS")
w = Watcher(sys.argv[2], PathFilter(include_ext=["*"], exclude_dir=[]), queue.Queue(),
            threading.Event(), backend=sys.argv[3])
w.poll_once()
w.poll_once()
files, dirs = w.counts()
print(before, status("VmRSS"), status("VmHWM"), files, dirs, w.active_backend)
"""


def bench_rss(trees, backends):
    print("### Memory: one process holding the snapshot (include_ext \"*\")\n")
    print("| files | backend | RSS before (MB) | RSS with snapshot (MB) | peak RSS (MB) "
          "| bytes/file |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, root in trees:
        for backend in backends:
            if backend == "auto-blind":
                continue
            out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, REPO, root, backend],
                                 check=True, stdout=subprocess.PIPE,
                                 universal_newlines=True).stdout.split()
            before, after, peak, files = float(out[0]), float(out[1]), float(out[2]), int(out[3])
            print("| %s | %s | %.1f | %.1f | %.1f | %.0f |" % (
                format(files, ","), out[5], before, after, peak,
                (after - before) * 1048576 / max(files, 1)))
    print()


def machine():
    cpu = cpu_model()
    load = "load average %.2f at start" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return "%s; %s; %d CPUs; Python %s; %s; %s" % (
        time.strftime("%Y-%m-%d"), cpu, os.cpu_count() or 0, platform.python_version(),
        platform.platform(), load)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, 5 s idle windows")
    ap.add_argument("--dir", default=None, help="where to build the trees (default: $TMPDIR)")
    ap.add_argument("--skip", default="",
                    help="comma list of sections to skip: pass,idle,latency,rss")
    ap.add_argument("--backends", default="",
                    help="comma list of backends (default: poll,inotify,auto,auto-blind)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    backends = ["poll"]
    try:
        from air_std.inotify import Inotify
        Inotify().close()
        backends += ["inotify", "auto", "auto-blind"]
    except OSError:
        backends.append("auto")  # it polls here; the table says so
    if args.backends:
        backends = [b for b in args.backends.split(",") if b in backends]

    top = tempfile.mkdtemp(prefix="air-bench-", dir=args.dir)
    try:
        trees = []
        for n in (1000, 10000, 100000):
            root = os.path.join(top, "t%d" % n)
            make_tree(root, n)
            trees.append((n, root))
        fs = subprocess.run(["stat", "-f", "-c", "%T", top], stdout=subprocess.PIPE,
                            universal_newlines=True).stdout.strip()
        print("## air_std watcher benchmark\n")
        print("%s; trees on %s (%s)%s\n" % (machine(), top, fs or "?",
                                             "; --quick" if args.quick else ""))
        subprocess.run(["sync"], check=False)
        if "pass" not in skip:
            bench_pass(trees, 3 if args.quick else 11)
        if "idle" not in skip:
            bench_idle(trees[1:], 5.0 if args.quick else 30.0, backends, 1 if args.quick else 3)
        if "latency" not in skip:
            bench_latency(trees[1][1], 5 if args.quick else 20, backends)
        if "rss" not in skip:
            bench_rss(trees[1:], backends)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
