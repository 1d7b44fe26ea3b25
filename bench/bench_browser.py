"""Time from a file write to the reloaded page, in headless Chromium.

    python3 bench/bench_browser.py [--quick] [--runs N]

Builds air_std.pyz (`make -s pyz`), copies examples/hello to a temporary
directory and runs it with the proxy on, once with `poll_interval = 500` and
once with `100` (the rest is the example's .air.toml: delay 200 ms, a
py_compile build, the app stopped with SIGINT). One Chromium tab (driven by
tests/browser.py, standard library only) stays on the page; the page posts a
beacon to the app on every load, and the app logs the time it received it
(HELLO_BEACON_LOG). A sample is: write a file, then wait for the next load
beacon; the figure is the beacon's time minus the time just before the write
(both from this machine's clock).

Two kinds of change, because the watcher treats them differently:
- "first change to a file": a file never changed before in this run (each
  sample edits a new one, in its own directory), found by a full poll pass:
  this is where `poll_interval` counts;
- "file changed again": main.py, changed before in this run, so it is in the
  watcher's hot set, checked every 100 ms whatever `poll_interval` is.

Before each write the bench waits for the page's live-reload client to be
connected again, then a random 0..poll_interval pause, so writes land at
random points of the poll cycle. Prints a markdown table on stdout; progress
goes to stderr.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from benchlib import free_port, percentile, wait_for  # noqa: E402
from browser import BrowserError, Chromium, find_chromium  # noqa: E402  (tests/browser.py)

GREETING = "Hello from air_std"


class Run:
    """air_std.pyz on a copy of the example app, and a Chromium tab on it."""

    def __init__(self, work, pyz, poll_interval_ms, cold_files):
        self.dir = os.path.join(work, "hello-%d" % poll_interval_ms)
        shutil.copytree(os.path.join(REPO, "examples", "hello"), self.dir,
                        ignore=shutil.ignore_patterns("tmp", "__pycache__"))
        # files for "first change" samples: one per directory, so that no
        # directory made hot by an earlier sample lists it early
        self.cold = []
        for i in range(cold_files):
            d = os.path.join(self.dir, "bench_pages", "p%03d" % i)
            os.makedirs(d)
            path = os.path.join(d, "page.html")
            with open(path, "w") as f:
                f.write("<p>not changed yet</p>\n")
            self.cold.append(path)
        old = time.time() - 60  # nothing looks freshly written when air_std starts
        for path in self.cold:
            os.utime(path, (old, old))
        self.beacon_log = os.path.join(work, "beacons-%d.jsonl" % poll_interval_ms)
        app_port, proxy_port = free_port(), free_port()
        while proxy_port == app_port:
            proxy_port = free_port()
        self.url = "http://127.0.0.1:%d/" % proxy_port
        env = dict(os.environ, PORT=str(app_port), HELLO_BEACON_LOG=self.beacon_log, NO_COLOR="1")
        self.err_path = os.path.join(work, "air-%d.err" % poll_interval_ms)
        self._err = open(self.err_path, "wb")
        self.air = subprocess.Popen(
            [sys.executable, pyz, "--proxy.proxy_port", str(proxy_port), "--proxy.app_port", str(app_port),
             "--build.entrypoint", "%s,main.py" % sys.executable,
             "--build.cmd", "%s -m py_compile main.py" % sys.executable,
             "--build.poll_interval", str(poll_interval_ms)],
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err,
            start_new_session=True)
        self.chromium = None
        self.tab = None
        self.missed = 0

    def open_tab(self, profile):
        self.chromium = Chromium(profile)
        wait_for(lambda: self._serving(), 30, what="the example page through the proxy")
        self.tab = self.chromium.new_tab(self.url)
        self.wait_loads(1, 30)
        self.wait_connected()

    def _serving(self):
        import http.client
        conn = http.client.HTTPConnection(self.url.split("/")[2], timeout=1)
        try:
            conn.request("GET", "/")
            return GREETING in conn.getresponse().read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            if self.air.poll() is not None:
                raise RuntimeError("air_std exited:\n" + self.log())
            return False
        finally:
            conn.close()

    def log(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-20000:]

    def loads(self):
        try:
            with open(self.beacon_log) as f:
                entries = [json.loads(line) for line in f]
        except FileNotFoundError:
            return []
        return [e for e in entries if isinstance(e["data"], dict) and e["data"].get("kind") == "load"]

    def wait_loads(self, count, timeout=20):
        return wait_for(lambda: len(self.loads()) >= count and self.loads(), timeout,
                        what="%d load beacon(s)" % count)

    def wait_connected(self, timeout=20):
        def connected():
            try:
                return self.tab.evaluate("window.__airStd ? window.__airStd.state : ''", timeout=2) == "open"
            except BrowserError:
                return False  # between two documents
        wait_for(connected, timeout, what="the live-reload client to connect")

    def sample(self, path, content, pause_s):
        """Seconds from writing `content` to `path` to the first load beacon
        served by a new app process; None if none came (a missed reload)."""
        loads = self.loads()
        before, old_pid = len(loads), loads[-1]["pid"]
        time.sleep(random.uniform(0, pause_s))
        t0 = time.time()
        with open(path, "w") as f:
            f.write(content)

        def reloaded():
            for entry in self.loads()[before:]:
                if entry["pid"] != old_pid:
                    return entry
            return None
        try:
            got = wait_for(reloaded, 20, what="the reload after writing %s" % os.path.relpath(path, self.dir))
        except RuntimeError as exc:
            self.missed += 1
            progress("MISSED: %s\n%s" % (exc, self.diagnosis()))
            self.wait_connected()
            return None
        self.wait_connected()
        return got["t"] - t0

    def duplicates(self):
        """Loads beyond the first served by each app process (a page reloaded twice)."""
        per_pid = {}
        for entry in self.loads():
            per_pid[entry["pid"]] = per_pid.get(entry["pid"], 0) + 1
        return sum(n - 1 for n in per_pid.values())

    def diagnosis(self):
        try:
            with open(self.beacon_log) as f:
                beacons = "".join(f.readlines()[-8:])
        except OSError:
            beacons = "(none)"
        return "air_std's output (end):\n%s\nlast beacons:\n%s" % (self.log(), beacons)

    def close(self):
        if self.chromium is not None:
            self.chromium.close()
        if self.air.poll() is None:
            self.air.send_signal(signal.SIGINT)
            try:
                self.air.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.air.pid, signal.SIGKILL)
                self.air.wait(5)
        self._err.close()


def measure(work, pyz, poll_interval_ms, runs):
    """(first-change samples, changed-again samples, anomalies) for one poll_interval."""
    run = Run(work, pyz, poll_interval_ms, runs)
    try:
        run.open_tab(os.path.join(work, "chromium-%d" % poll_interval_ms))
        cold = []
        for i, path in enumerate(run.cold):
            cold.append(run.sample(path, "<p>changed %d</p>\n" % i, poll_interval_ms / 1000.0))
            report(poll_interval_ms, "first change", i, runs, cold[-1])
        main_py = os.path.join(run.dir, "main.py")
        with open(main_py) as f:
            src = f.read()
        run.sample(main_py, src.replace(GREETING, "warm-up"), 0)  # main.py joins the hot set
        hot = []
        for i in range(runs):
            hot.append(run.sample(main_py, src.replace(GREETING, "Edit %d" % i), poll_interval_ms / 1000.0))
            report(poll_interval_ms, "changed again", i, runs, hot[-1])
        time.sleep(1.0)  # a late duplicate reload of the last sample would show now
        duplicates = run.duplicates()
        if duplicates:
            progress("DUPLICATE reloads: %d\n%s" % (duplicates, run.diagnosis()))
        return cold, hot, {"missed": run.missed, "duplicates": duplicates}
    except BaseException:
        progress(run.diagnosis())
        raise
    finally:
        run.close()


def report(interval, kind, i, runs, latency):
    shown = "missed" if latency is None else "%.0f ms" % (latency * 1000)
    progress("poll_interval %d ms, %s %d/%d: %s" % (interval, kind, i + 1, runs, shown))


def progress(line):
    sys.stderr.write("bench_browser: %s\n" % line)
    sys.stderr.flush()


def chromium_version(binary):
    try:
        out = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=30).stdout.decode("utf-8", "replace").strip()
        return out.splitlines()[-1] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 samples per row instead of 20")
    parser.add_argument("--runs", type=int, help="samples per row")
    opts = parser.parse_args()
    runs = opts.runs or (5 if opts.quick else 20)
    binary = find_chromium()
    if not binary:
        print("bench_browser: skipped: no Chromium found (apt-get install chromium)")
        return 0
    work = tempfile.mkdtemp(prefix="air-bench-browser-")
    try:
        pyz = os.path.join(work, "air_std.pyz")
        subprocess.run(["make", "-s", "-C", REPO, "pyz", "PYZ=" + pyz], check=True, timeout=120,
                       stdout=sys.stderr)
        results = []
        anomalies = {"missed": 0, "duplicates": 0}
        for interval in (500, 100):
            cold, hot, found = measure(work, pyz, interval, runs)
            results.append((interval, "first change to a file (found by a full poll)", cold))
            results.append((interval, "same file changed again (hot set, every 100 ms)", hot))
            for key in anomalies:
                anomalies[key] += found[key]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("### Browser reload: file write to the reloaded page's beacon, %s" % time.strftime("%Y-%m-%d"))
    print()
    print("examples/hello through air_std.pyz with the proxy on (delay 200 ms, build = py_compile, "
          "app stopped with SIGINT); %s headless, Python %s, %d CPU(s); %d samples per row."
          % (chromium_version(binary), sys.version.split()[0], os.cpu_count() or 1, runs))
    print()
    print("| poll_interval | change | median (ms) | p90 (ms) | min (ms) | max (ms) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for interval, kind, samples in results:
        ms = [s * 1000 for s in samples if s is not None]
        if not ms:
            print("| %d ms | %s | - | - | - | - |" % (interval, kind))
            continue
        print("| %d ms | %s | %.0f | %.0f | %.0f | %.0f |" % (
            interval, kind, statistics.median(ms), percentile(ms, 90), min(ms), max(ms)))
    print()
    print("Reloads missed (no new page within 20 s of a write): %d; pages reloaded twice for one "
          "restart: %d (both should be 0)." % (anomalies["missed"], anomalies["duplicates"]))
    return 1 if anomalies["missed"] or anomalies["duplicates"] else 0


if __name__ == "__main__":
    sys.exit(main())
