#!/usr/bin/env python3
"""air_std against the watchers a user would pick instead, in one run.

    python3 bench/bench_peers.py            # full run (about 17 minutes)
    python3 bench/bench_peers.py --quick    # fewer samples, 10k files only (about 5 minutes)

Tools, each restarting a small app on every change:
- air_std: the pyz built by `make -s pyz`: its default, build.watcher =
  "auto" (inotify events with a polling safety net); build.watcher = "poll"
  (adaptive polling), and polling with a fixed 350 ms full pass (to compare
  CPU at equal first-edit latency with watchfiles' polling); build.watcher =
  "inotify"; and auto with its inotify made blind by the test hook
  AIR_STD_TEST_BLIND_INOTIFY=1 (what auto does where events never come: the
  safety net and the hot set alone; 10k tree only);
- watchfiles CLI: default (inotify through Rust notify) and WATCHFILES_FORCE_POLLING=1;
- watchmedo auto-restart (watchdog): default (inotify) and --debug-force-polling;
- nodemon: default (chokidar, fs.watch) and --legacy-watch (polling).
The peers are installed by this script, for this run only, into a venv
(`python3 -m venv` + pip) and an npm prefix under a temporary directory that is
removed at the end. A peer that cannot be installed is reported as unavailable.

Measured for each tool and mode, from the same run on the same trees:
- idle CPU of the watcher process alone (utime + stime from /proc/PID/stat: the
  app and every other child are excluded), on trees of 10,000 files (and
  100,000 in full mode) shaped like bench_watcher.py's: 50 files a directory,
  five extensions, .go and .html watched;
- detection latency on the 10k tree: write to a .go file -> the app restarted.
  The app appends time.time() to a marker file (outside the tree) when it
  starts; the figure is that time minus the time just before the write. Two
  kinds: the same file edited again (air_std's hot set) and the first edit of
  a file (a file not edited before in this run, each in a directory not
  touched before);
- edit -> HTTP: examples/hello copied to a temporary directory, main.py
  rewritten with a new greeting, time until GET / on the app's port (no proxy)
  answers with it. Every tool runs `python3 main.py`: air_std uses the
  example's .air.toml with delay = 0, the proxy off and build.cmd = "" (the
  same work as the peers); its figure with the example's py_compile build step
  kept is given in the notes;
- a burst (air_std only): 50 files, one in each of 50 directories, written
  within about 100 ms with the default `delay` (1000 ms), three times: the
  builds and restarts each burst caused (one of each is right), and the time
  from the burst's last write to the restart.
Every tool gets its smallest debounce: air_std delay = 0, nodemon --delay 0,
watchmedo --debounce-interval 0; watchfiles has no CLI setting (it waits 50 ms
without events). Polling intervals are each tool's default.

Before each write the script waits a random 0.05 s .. 0.05 s + the mode's poll
period, so writes land at random points of the poll cycle. Every process
started runs in its own session and is stopped (SIGINT, then SIGKILL of its
group and of every descendant); a last sweep kills any process whose command
line or working directory is inside this run's temporary directory.
Markdown on stdout; progress on stderr. Standard library only.
"""

import argparse
import http.client
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_model, free_port, make_tree, percentile, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
GREETING = "Hello from air_std"

APP_SRC = r'''"""Benchmark app: note the start time in the marker file, then wait to be stopped."""
import os, signal, sys, time

def _bye(*_):
    os._exit(0)

for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2):
    signal.signal(_sig, _bye)
with open(sys.argv[1], "a") as f:
    f.write("%.6f %d\n" % (time.time(), os.getpid()))
while True:
    signal.pause()
'''

# watchfiles' CLI takes a filter as an importable callable (found through PYTHONPATH).
FILTER_SRC = r'''"""Extension filters for the watchfiles CLI, the same files the other tools watch."""
def go_html(change, path):
    return path.endswith((".go", ".html"))

def py_html(change, path):
    return path.endswith((".py", ".html"))
'''

# auto with inotify blind finds a first edit with its safety net, paced to its
# CPU budget within 2-60 s: writes are spread over this long, and each is
# waited for up to BLIND_TIMEOUT_S.
BLIND_PERIOD_S = 15.0
BLIND_TIMEOUT_S = 60.0
AUTO_IDLE_S = 120.0  # idle window of the auto rows: two halves of at least one interval

# (tool, mode, description, poll period in s used to spread the writes)
ROWS = [
    ("air_std", "auto", "default: auto (inotify events, a polling safety net every 2-60 s)",
     0.3),
    ("air_std", "poll", 'polling (build.watcher = "poll": adaptive full pass <= 2 s, hot set '
     '100 ms)', 2.0),
    ("air_std", "poll350", 'polling, full pass every 350 ms (build.watcher = "poll", '
     'build.poll_interval = 350)', 0.35),
    ("air_std", "inotify", 'inotify (build.watcher = "inotify")', 0.3),
    ("air_std", "blind", "auto with inotify made blind (test hook): safety net and hot set "
     "alone", BLIND_PERIOD_S),
    ("watchfiles", "native", "inotify (Rust notify; default)", 0.3),
    ("watchfiles", "poll", "polling 300 ms (WATCHFILES_FORCE_POLLING=1)", 0.3),
    ("watchmedo", "native", "inotify (default)", 0.3),
    ("watchmedo", "poll", "polling 1 s (--debug-force-polling)", 1.0),
    ("nodemon", "native", "fs.watch through chokidar (default)", 0.3),
    ("nodemon", "poll", "polling 100 ms (--legacy-watch)", 0.3),
]


# edit->HTTP variants given in the notes, beside the table's like-for-like cell
VARIANTS = {
    "hello-build": "with the example's py_compile build step kept",
    # nodemon's default SIGUSR2 kills a Python app outright (no handler: ~1.5 ms);
    # the example asks for SIGINT (send_interrupt), a graceful exit of ~10 ms
    "hello-sigint": "with --signal SIGINT, the stop signal the example's .air.toml asks air_std for",
}

_T0 = time.monotonic()


def progress(msg):
    sys.stderr.write("bench_peers: [%4.0fs] %s\n" % (time.monotonic() - _T0, msg))
    sys.stderr.flush()


# -- /proc helpers ---------------------------------------------------------------

def proc_fields(pid):
    """Fields of /proc/PID/stat after the command name: [0] is field 3 (state)."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime + stime of the process itself (all its threads, no children)."""
    r = proc_fields(pid)
    return (int(r[11]) + int(r[12])) / float(CLK_TCK)


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def descendants(pid):
    """(pid, starttime) of every live descendant of pid."""
    kids = {}
    for p in all_pids():
        try:
            r = proc_fields(p)
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(int(r[1]), []).append((p, r[19]))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), ()):
            out.append(child)
            todo.append(child[0])
    return out


def kill_if_same(pid, starttime):
    """SIGKILL pid unless it has exited or its number was reused."""
    try:
        if proc_fields(pid)[19] == starttime:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def sweep(top):
    """Kill every process whose command line or working directory lies in `top`."""
    me, killed = os.getpid(), []
    for p in all_pids():
        if p == me:
            continue
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        try:
            cwd = os.readlink("/proc/%d/cwd" % p)
        except OSError:
            cwd = ""
        if top in cmd or cwd == top or cwd.startswith(top + os.sep):
            try:
                os.kill(p, signal.SIGKILL)
                killed.append(p)
            except OSError:
                pass
    return killed


class Proc:
    """One tool, in a session of its own, output to a log file."""

    def __init__(self, argv, cwd, env, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=self._log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def cpu(self):
        return cpu_seconds(self.pid)

    def tail(self, n=2000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self):
        """SIGINT (every tool here stops its app on it), 8 s, then SIGKILL for the
        group and every descendant seen before. Returns a problem or ''."""
        problem = ""
        kids = descendants(self.pid) if self.alive() else []
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGINT)
            except OSError:
                pass
            try:
                self.p.wait(8)
            except subprocess.TimeoutExpired:
                problem = "did not exit within 8 s of SIGINT; killed"
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for pid, start in kids:
            kill_if_same(pid, start)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            problem = "still alive 5 s after SIGKILL"
        self._log.close()
        return problem


def run_quiet(argv, timeout, **kw):
    """(ok, last line of output)."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        return False, "timed out after %ds" % timeout
    except OSError as exc:
        return False, str(exc)
    lines = [ln for ln in r.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    return r.returncode == 0, (lines[-1].strip() if lines else "exit %d" % r.returncode)


def install_pip_peers(top, needed):
    """watchfiles and watchmedo, each pip-installed into one venv made for this run."""
    tools = {}
    wanted = [t for t in ("watchfiles", "watchmedo") if t in needed]
    if not wanted:
        return tools
    venv = os.path.join(top, "venv")
    progress("installing %s into %s" % (" and ".join(wanted), venv))
    ok, msg = run_quiet([sys.executable, "-m", "venv", venv], 120)
    if not ok:
        return {t: "unavailable: python3 -m venv: %s" % msg for t in wanted}
    py = os.path.join(venv, "bin", "python")
    specs = {"watchfiles": ("watchfiles", "watchfiles", "__version__", "watchfiles"),
             "watchmedo": ("watchdog[watchmedo]", "watchdog.version", "VERSION_STRING", "watchdog")}
    for tool in wanted:
        spec, module, attr, dist = specs[tool]
        ok, msg = run_quiet([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
                            300)
        exe = os.path.join(venv, "bin", tool)
        if not ok or not os.path.exists(exe):
            tools[tool] = "unavailable: pip install %s: %s" % (spec, msg)
            continue
        _, ver = run_quiet([py, "-c", "import %s as m; print(m.%s)" % (module, attr)], 60)
        tools[tool] = (exe, "%s %s" % (dist, ver))
    return tools


def install_nodemon(top):
    """nodemon, npm-installed into a prefix made for this run."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        return "unavailable: %s not found" % ("npm" if not npm else "node")
    prefix = os.path.join(top, "npm")
    progress("installing nodemon into %s" % prefix)
    env = dict(os.environ, npm_config_update_notifier="false")
    ok, msg = run_quiet([npm, "install", "--prefix", prefix, "--no-audit", "--no-fund",
                         "--loglevel=error", "nodemon"], 300, env=env)
    exe = os.path.join(prefix, "node_modules", ".bin", "nodemon")
    if not ok or not os.path.exists(exe):
        return "unavailable: npm install nodemon: %s" % msg
    _, ver = run_quiet([exe, "--version"], 60, env=env)
    _, nver = run_quiet([node, "--version"], 60)
    return (exe, "nodemon %s (node %s)" % (ver, nver))


def build_pyz(top):
    pyz = os.path.join(top, "air_std.pyz")
    ok, msg = run_quiet(["make", "-s", "-C", REPO, "pyz", "PYZ=" + pyz], 120)
    if not ok or not os.path.exists(pyz):
        return "unavailable: make pyz: %s" % msg
    _, ver = run_quiet([sys.executable, pyz, "-v"], 60)
    return (pyz, ver)


# -- commands ------------------------------------------------------------------------

class Scenario:
    """What to watch and which app to run in it."""

    def __init__(self, name, watch_dir, exts, app_argv, cwd):
        self.name, self.watch_dir, self.exts, self.app_argv, self.cwd = \
            name, watch_dir, exts, app_argv, cwd


def command(tool, mode, exe, scen, top):
    """(argv, extra environment) to run `tool` in `mode` on the scenario."""
    app_shell = " ".join(shlex.quote(a) for a in scen.app_argv)
    env = {}
    if tool == "air_std":
        if scen.name in ("hello", "hello-build"):
            # the example's own .air.toml (cwd), with delay 0 and no proxy; "hello"
            # drops its py_compile build so that air_std does what the peers do
            argv = [sys.executable, exe, "--build.delay", "0", "--proxy.enabled", "false"]
            if scen.name == "hello":
                argv += ["--build.cmd", ""]
        else:
            conf = os.path.join(top, "air-%s.toml" % scen.name)
            if scen.name == "burst":
                # the default delay, and a build that counts itself
                build = "echo b >> %s" % shlex.quote(os.path.join(top, "builds-burst.txt"))
                delay = ""
            else:
                build, delay = "true", "delay = 0\n"
            with open(conf, "w") as f:
                f.write("root = %s\n[build]\ncmd = %s\nentrypoint = %s\n"
                        "include_ext = %s\n%s"
                        % (json.dumps(scen.watch_dir), json.dumps(build),
                           json.dumps(scen.app_argv), json.dumps(list(scen.exts)), delay))
            argv = [sys.executable, exe, "-c", conf]
        if mode == "inotify":
            argv += ["--build.watcher", "inotify"]
        elif mode == "poll":
            argv += ["--build.watcher", "poll"]
        elif mode == "poll350":
            # a fixed interval at which a file's first edit is seen about as fast as
            # watchfiles' polling sees it: CPU compared at equal latency
            argv += ["--build.watcher", "poll", "--build.poll_interval", "350"]
        elif mode == "blind":
            env["AIR_STD_TEST_BLIND_INOTIFY"] = "1"  # the default (auto), its events dropped
    elif tool == "watchfiles":
        env["PYTHONPATH"] = top
        if mode == "poll":
            env["WATCHFILES_FORCE_POLLING"] = "1"
        argv = [exe, "--target-type", "command", "--verbosity", "warning",
                "--filter", "bench_peers_filter.%s" % "_".join(scen.exts), app_shell,
                scen.watch_dir]
    elif tool == "watchmedo":
        argv = [exe, "auto-restart", "-d", scen.watch_dir, "-R",
                "-p", ";".join("**/*." + e for e in scen.exts), "--debounce-interval", "0"]
        if mode == "poll":
            argv.append("--debug-force-polling")
        argv += ["--"] + list(scen.app_argv)
    elif tool == "nodemon":
        env["NO_UPDATE_NOTIFIER"] = "1"
        argv = [exe, "--no-update-notifier", "-q", "-I", "--delay", "0", "-e", ",".join(scen.exts),
                "-w", scen.watch_dir]
        if mode == "poll":
            argv.append("--legacy-watch")
        if scen.name == "hello-sigint":
            argv += ["--signal", "SIGINT"]
        argv += ["-x", app_shell]
    else:
        raise ValueError(tool)
    return argv, env


# -- measurements -------------------------------------------------------------------

def read_marker(path):
    try:
        with open(path) as f:
            return [float(ln.split()[0]) for ln in f if len(ln.split()) == 2]
    except (OSError, ValueError):
        return []


def idle_cpu(proc, seconds):
    """Share of one core used by the watcher process over `seconds`."""
    c0, t0 = proc.cpu(), time.monotonic()
    time.sleep(seconds)
    if not proc.alive():
        raise RuntimeError("exited during the idle window")
    return (proc.cpu() - c0) / (time.monotonic() - t0)


def settle(proc, cap_s, window_s):
    """Wait until the watcher's start-up work looks over: two consecutive windows
    whose CPU shares differ by at most 2% of a core or 25%, at most cap_s.
    Returns False when the cap was reached first."""
    deadline = time.monotonic() + cap_s
    last = idle_cpu(proc, window_s)
    while time.monotonic() < deadline:
        now = idle_cpu(proc, window_s)
        if abs(now - last) <= max(0.02, 0.25 * last):
            return True
        last = now
    return False


def steady_idle(proc, seconds, tries=3):
    """(share of a core, steady) over `seconds`, taken as two halves that must
    agree (2% of a core or 35%): a tool still crawling its tree at a steady rate
    passes settle() but not this, and is measured again, up to `tries` times."""
    for _ in range(tries):
        first, second = idle_cpu(proc, seconds / 2.0), idle_cpu(proc, seconds / 2.0)
        if abs(first - second) <= max(0.02, 0.35 * max(first, second)):
            return (first + second) / 2.0, True
    return (first + second) / 2.0, False


def detect(proc, marker, paths, period, timeout=3.5):
    """Latencies (s, None for a miss) from appending to each path to the app's restart."""
    lat = []
    for path in paths:
        time.sleep(random.uniform(0.05, 0.05 + period))
        t0 = time.time()
        with open(path, "a") as f:
            f.write("e")
        got = wait_for(lambda: [t for t in read_marker(marker) if t >= t0], timeout, 0.005)
        lat.append(got[0] - t0 if got else None)
        if not got and not proc.alive():
            raise RuntimeError("exited during the latency samples")
    return lat


def http_body(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        conn.close()


def edit_http(proc, main_py, src, port, labels, period, timeout=3.5):
    """Latencies (s, None for a miss) from rewriting main.py to the new greeting over HTTP."""
    lat = []
    for label in labels:
        time.sleep(random.uniform(0.05, 0.05 + min(period, 1.0)))
        text = src.replace(GREETING, label)
        t0 = time.time()
        with open(main_py, "w") as f:
            f.write(text)
        ok = wait_for(lambda: label in http_body(port), timeout, 0.005)
        lat.append(time.time() - t0 if ok else None)
        if not ok and not proc.alive():
            raise RuntimeError("exited during the HTTP samples")
    return lat


class Bench:
    def __init__(self, top, quick, skip_100k, only):
        self.top, self.quick = top, quick
        self.samples = 8 if quick else 20
        self.idle_s = 10.0 if quick else 30.0
        self.idle_100k_s = 15.0
        self.settle_cap_s = 20.0 if quick else 40.0
        self.settle_window_s = 1.0 if quick else 2.0
        self.skip_100k = quick or skip_100k
        self.only = only
        self.results = {}      # (tool, mode) -> {column: text}
        self.bursts = {}       # (tool, mode) -> [(builds, restarts, s to restart, s of writing)]
        self.notes = []
        self.env = dict(os.environ, NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
        self.env.pop("PYTHONPATH", None)
        with open(os.path.join(top, "app.py"), "w") as f:
            f.write(APP_SRC)
        with open(os.path.join(top, "bench_peers_filter.py"), "w") as f:
            f.write(FILTER_SRC)

    def cell(self, row, column, text):
        self.results.setdefault(row[:2], {})[column] = text

    def note(self, row, text):
        self.notes.append("%s %s: %s" % (row[0], row[1], text))
        progress("%s %s: %s" % (row[0], row[1], text))

    def start(self, row, exe, scen, tag, ready, ready_timeout, env=None):
        argv, extra = command(row[0], row[1], exe, scen, self.top)
        env = dict(env or self.env, **extra)
        log = os.path.join(self.top, "log-%s-%s-%s.txt" % (row[0], row[1], tag))
        proc = Proc(argv, scen.cwd, env, log)
        if not wait_for(lambda: ready() or not proc.alive(), ready_timeout, 0.02) or not proc.alive():
            why = ("exited (%s)" % proc.p.returncode if not proc.alive()
                   else "the app did not start within %ds" % ready_timeout)
            tail = proc.tail()
            self.finish(row, proc)
            raise RuntimeError("%s; output: %s" % (why, tail.strip().replace("\n", " | ")[-400:]))
        return proc

    def finish(self, row, proc):
        problem = proc.stop()
        if problem:
            self.note(row, problem)
        killed = sweep(self.top)
        if killed:
            self.note(row, "%d process(es) left behind after stopping it; killed" % len(killed))
        time.sleep(0.3)  # let the killed processes' exits settle before the next tool

    # -- the three scenarios -------------------------------------------------------

    def tree(self, row, exe, root, n, tag, with_latency):
        marker = os.path.join(self.top, "marker-%s-%s-%s.txt" % (row[0], row[1], tag))
        scen = Scenario(tag, root, ("go", "html"),
                        ["python3", os.path.join(self.top, "app.py"), marker], root)
        progress("%s %s: %s-file tree" % (row[0], row[1], format(n, ",")))
        proc = self.start(row, exe, scen, tag, lambda: read_marker(marker), 180)
        try:
            time.sleep(1.0)
            if not settle(proc, self.settle_cap_s, self.settle_window_s):
                self.note(row, "%s-file tree: CPU still changing after %gs of settling"
                          % (format(n, ","), self.settle_cap_s))
            seconds = self.idle_s if n <= 10000 else self.idle_100k_s
            if row[0] == "air_std" and row[1] in ("auto", "blind"):
                # the safety net passes every 2-60 s: each half of the window
                # must hold whole intervals, or a half with a pass and one
                # without would never agree
                seconds = max(seconds, AUTO_IDLE_S)
            share, steady = steady_idle(proc, seconds)
            self.cell(row, "idle%d" % n, "%.2f" % (share * 100) + ("" if steady else " (unsteady)"))
            if not steady:
                self.note(row, "%s-file tree: the two halves of the idle window still differed "
                          "after 3 tries" % format(n, ","))
            if not with_latency:
                return
            rnd = random.Random(n)
            dirs = sorted({os.path.dirname(p) for p in self.go_files})
            rnd.shuffle(dirs)
            hot = os.path.join(dirs[0], sorted(f for f in os.listdir(dirs[0]) if f.endswith(".go"))[0])
            cold = []
            for d in dirs[1:self.samples + 1]:
                cold.append(os.path.join(d, sorted(f for f in os.listdir(d) if f.endswith(".go"))[-1]))
            # blind: the hot set answers within 100 ms, the safety net within its
            # interval, which the writes are spread over
            blind = row[1] == "blind"
            hot_period, timeout = (0.3, BLIND_TIMEOUT_S) if blind else (row[3], 3.5)
            detect(proc, marker, [hot], hot_period, timeout)  # warm-up: the same file from now on
            t_first = time.time()
            hot_lat = detect(proc, marker, [hot] * self.samples, hot_period, timeout)
            cold_lat = detect(proc, marker, cold, row[3], timeout)
            time.sleep(0.5)  # a late second restart for the last write would show now
            restarts = len([t for t in read_marker(marker) if t >= t_first])
            self.cell(row, "hot", fmt_lat(hot_lat))
            self.cell(row, "cold", fmt_lat(cold_lat))
            found = len([x for x in hot_lat + cold_lat if x is not None])
            if restarts > found:
                self.note(row, "%d restart(s) more than edits seen on the %s-file tree"
                          % (restarts - found, format(n, ",")))
        finally:
            self.finish(row, proc)

    def burst(self, row, exe, bursts=3, files=50, spread_s=0.1):
        """Bursts of `files` first edits, one per directory, within about
        spread_s, with the default delay: the builds and restarts each caused."""
        marker = os.path.join(self.top, "marker-%s-%s-burst.txt" % row[:2])
        builds = os.path.join(self.top, "builds-burst.txt")
        if os.path.exists(builds):
            os.remove(builds)

        def n_builds():
            try:
                with open(builds) as f:
                    return len(f.read().split())
            except OSError:
                return 0

        root = os.path.dirname(os.path.dirname(os.path.dirname(self.go_files[0])))
        scen = Scenario("burst", root, ("go", "html"),
                        ["python3", os.path.join(self.top, "app.py"), marker], root)
        progress("%s %s: bursts of %d files" % (row[0], row[1], files))
        proc = self.start(row, exe, scen, "burst", lambda: read_marker(marker), 180)
        rnd = random.Random(hash(row[1]) & 0xffff)
        by_dir = {}
        for p in self.go_files:
            by_dir.setdefault(os.path.dirname(p), []).append(p)
        dirs = sorted(by_dir)
        results = []
        try:
            for _ in range(bursts):
                time.sleep(3.0)  # quiet for longer than the debounce's longest wait (2 s)
                b0, r0 = n_builds(), len(read_marker(marker))
                paths = [sorted(by_dir[d])[rnd.randrange(len(by_dir[d]))]
                         for d in rnd.sample(dirs, files)]
                t0 = time.time()
                for i, path in enumerate(paths):
                    delay = t0 + i * spread_s / (files - 1) - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    with open(path, "a") as f:
                        f.write("b")
                t_last = time.time()
                got = wait_for(lambda: [t for t in read_marker(marker) if t >= t_last], 15, 0.01)
                # any second build or restart the burst causes comes within the
                # debounce's longest wait (max(2 s, 10 delays) = 10 s by default) of
                # the first change; the first restart came after 1 delay
                time.sleep(4.0)
                results.append((n_builds() - b0, len(read_marker(marker)) - r0,
                                (got[0] - t_last) if got else None, t_last - t0))
                if not proc.alive():
                    raise RuntimeError("exited during the bursts")
        finally:
            self.finish(row, proc)
        self.bursts[row[:2]] = results

    def hello(self, row, exe, name="hello"):
        work = os.path.join(self.top, "%s-%s-%s" % ((name,) + row[:2]))
        shutil.copytree(os.path.join(REPO, "examples", "hello"), work,
                        ignore=shutil.ignore_patterns("tmp", "__pycache__"))
        main_py = os.path.join(work, "main.py")
        with open(main_py) as f:
            src = f.read()
        port = free_port()
        scen = Scenario(name, work, ("py", "html"), ["python3", "main.py"], work)
        variant = VARIANTS.get(name, "")
        progress("%s %s: edit -> HTTP on examples/hello%s" % (row[0], row[1], variant and ", " + variant))
        proc = self.start(row, exe, scen, name, lambda: GREETING in http_body(port), 60,
                          env=dict(self.env, PORT=str(port)))
        try:
            time.sleep(0.5)
            edit_http(proc, main_py, src, port, ["Warm-up edit"], row[3])
            labels = ["Edit number %d" % i for i in range(self.samples)]
            lat = fmt_lat(edit_http(proc, main_py, src, port, labels, row[3]))
            if name == "hello":
                self.cell(row, "http", lat)
            else:
                self.note(row, "edit->HTTP %s: %s ms" % (variant, lat))
        finally:
            self.finish(row, proc)

    def run(self, tools):
        rows = [r for r in ROWS if not self.only or r[0] in self.only or "%s:%s" % r[:2] in self.only]
        tree10 = os.path.join(self.top, "tree10k")
        make_tree(tree10, 10000)
        self.go_files = [os.path.join(dp, f) for dp, _d, fs in os.walk(tree10)
                         for f in fs if f.endswith(".go")]
        sizes = [(10000, tree10)]
        if not self.skip_100k:
            tree100 = os.path.join(self.top, "tree100k")
            make_tree(tree100, 100000)
            sizes.append((100000, tree100))
        subprocess.run(["sync"], check=False, timeout=120)
        for row in rows:
            got = tools[row[0]]
            if isinstance(got, str):
                self.cell(row, "unavailable", got)
                continue
            steps = [("10k tree", lambda: self.tree(row, got[0], tree10, 10000, "t10k", True))]
            if row[1] != "blind":
                steps.append(("example app", lambda: self.hello(row, got[0])))
            if row[0] == "air_std" and row[1] not in ("poll350", "blind"):
                steps.append(("example app with its build",
                              lambda: self.hello(row, got[0], "hello-build")))
                steps.append(("bursts", lambda: self.burst(row, got[0])))
            if row[:2] == ("nodemon", "native"):
                steps.append(("example app, SIGINT", lambda: self.hello(row, got[0], "hello-sigint")))
            for what, fn in steps:
                try:
                    fn()
                except Exception as exc:  # one tool failing must not stop the others
                    self.note(row, "%s: failed: %s" % (what, exc))
        for n, root in sizes[1:]:
            for row in rows:
                got = tools[row[0]]
                if isinstance(got, str) or row[1] == "blind":  # blind idles as auto does
                    continue
                try:
                    self.tree(row, got[0], root, n, "t%dk" % (n // 1000), False)
                except Exception as exc:
                    self.note(row, "%s-file tree: failed: %s" % (format(n, ","), exc))
        return rows


def fmt_lat(lat):
    ms = [x * 1000 for x in lat if x is not None]
    missed = len(lat) - len(ms)
    if not ms:
        return "missed all %d" % len(lat)
    text = "%.0f / %.0f" % (statistics.median(ms), percentile(ms, 95))
    return text + (" (%d missed)" % missed if missed else "")


def machine(top):
    cpu = cpu_model()
    fs = subprocess.run(["stat", "-f", "-c", "%T", top], stdout=subprocess.PIPE,
                        universal_newlines=True, timeout=30).stdout.strip()
    return "%s; %s; %d CPUs; Python %s; %s; trees on %s" % (
        time.strftime("%Y-%m-%d %H:%M"), cpu, os.cpu_count() or 0, platform.python_version(),
        platform.platform(), fs or "?")


def report_bursts(bench, rows):
    """The table of the bursts (air_std rows only)."""
    if not bench.bursts:
        return
    print("Bursts: 50 files, one in each of 50 directories of the 10k tree, written within "
          "about 100 ms with the default `delay = 1000`; each cell: builds and restarts the "
          "burst caused (one of each is right), and the time from its last write to the "
          "restarted app.\n")
    n = max(len(r) for r in bench.bursts.values())
    print("| tool | mode | " + " | ".join("burst %d" % (i + 1) for i in range(n)) + " |")
    print("|---|---|" + "---|" * n)
    for row in rows:
        res = bench.bursts.get(row[:2])
        if res is None:
            continue
        cells = ["%d build%s, %d restart%s, %s (written in %.0f ms)" % (
            b, "" if b == 1 else "s", r, "" if r == 1 else "s",
            "%.0f ms" % (lat * 1000) if lat is not None else "no restart", w * 1000)
            for b, r, lat, w in res]
        print("| %s | %s | %s |" % (row[0], row[2], " | ".join(cells)))
    print()


def report(bench, rows, tools, versions, elapsed, machine_line):
    q = bench.quick
    print("### Watchers side by side: air_std and the peers, same run, same trees\n")
    print("%s%s\n" % (machine_line, "; --quick" if q else ""))
    print("Versions: %s.\n" % "; ".join(versions))
    cols = ["idle CPU %% of a core (10k, %gs)" % bench.idle_s]
    if not bench.skip_100k:
        cols.append("idle CPU %% (100k, %gs)" % bench.idle_100k_s)
    cols += ["detect p50/p95 (ms), same file again", "detect p50/p95 (ms), first edit of a file",
             "edit->HTTP p50/p95 (ms)"]
    print("| tool | mode | " + " | ".join(cols) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for row in rows:
        res = bench.results.get(row[:2], {})
        if "unavailable" in res:
            cells = [res["unavailable"]] + ["-"] * (len(cols) - 1)
        else:
            keys = ["idle10000"] + ([] if bench.skip_100k else ["idle100000"]) + ["hot", "cold", "http"]
            # the blind row runs on the 10k tree only: its other cells are auto's
            cells = [res.get(k, "-" if row[1] == "blind" else "failed") for k in keys]
        print("| %s | %s | %s |" % (row[0], row[2], " | ".join(cells)))
    print()
    print("%d samples per latency cell. Idle CPU: utime+stime of the watcher process alone "
          "(the app excluded), measured once its start-up work is over (two %g s windows within "
          "2%% of a core or 25%%, then the idle window's two halves within 2%% or 35%%, else "
          "measured again); .go and .html watched (40%% of the files). "
          "Detection: append to a .go file -> the restarted app's first line (includes stopping "
          "the old app and starting Python). edit->HTTP: examples/hello, main.py rewritten -> "
          "GET / on the app's port shows it; every tool runs `python3 main.py` (air_std: the "
          "example's .air.toml with delay = 0, proxy off and build.cmd = \"\"; the notes give "
          "air_std's figure with the example's py_compile build step kept)."
          % (bench.samples, bench.settle_window_s))
    print()
    print("Settings: air_std `delay = 0`, on the trees `cmd = \"true\"` and `entrypoint` the app; "
          "watchfiles `--target-type command --filter` (a filter for the same extensions; the CLI "
          "has no debounce flag: it yields after 50 ms without events); watchmedo `auto-restart -R "
          "-p '**/*.go;**/*.html' --debounce-interval 0` (polling interval: its default 1 s); "
          "nodemon `--delay 0 -e go,html -w DIR -x CMD` (`--legacy-watch` polls every 100 ms by "
          "default). Each tool stops the app with its own default signal: air_std SIGINT on "
          "examples/hello (its send_interrupt = true; the app exits in ~10 ms) and SIGTERM on the "
          "trees, watchfiles and watchmedo SIGINT, nodemon SIGUSR2 (which kills a Python app "
          "outright, ~1.5 ms; the notes give nodemon with --signal SIGINT). air_std's auto "
          "rows idle over %g s, whole intervals of its safety net. The blind row: "
          "auto with AIR_STD_TEST_BLIND_INOTIFY=1, on the 10k tree only (its 100k idle and "
          "edit->HTTP would be auto's); its first edits are spread over %g s and each waited "
          "for up to %g s, since only the safety net finds them."
          % (AUTO_IDLE_S, BLIND_PERIOD_S, BLIND_TIMEOUT_S))
    print()
    report_bursts(bench, rows)
    unavailable = ["%s: %s" % (t, v) for t, v in sorted(tools.items()) if isinstance(v, str)]
    print("Unavailable: %s." % ("; ".join(unavailable) if unavailable else "none"))
    if bench.skip_100k and not q:
        print("100k-file tree: skipped (--skip-100k).")
    if bench.notes:
        print()
        print("Notes:")
        for n in bench.notes:
            print("- %s" % n)
    print()
    print("Runtime: %.0f s." % elapsed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="8 samples, 10 s idle windows, 10k tree only")
    ap.add_argument("--skip-100k", action="store_true", help="no 100k-file tree in a full run")
    ap.add_argument("--only", default="",
                    help="comma list of tools (air_std,watchfiles,watchmedo,nodemon) or tool:mode")
    ap.add_argument("--dir", default=None, help="where to make the temporary directory")
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("bench_peers: skipped: needs Linux (/proc)")
        return 0
    only = set(filter(None, args.only.split(",")))
    t_start = time.monotonic()
    top = os.path.realpath(tempfile.mkdtemp(prefix="air-bench-peers-", dir=args.dir))

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        machine_line = machine(top)
        tools = {"air_std": build_pyz(top)}
        needed = {r[0] for r in ROWS if not only or r[0] in only
                  or "%s:%s" % r[:2] in only}
        tools.update(install_pip_peers(top, needed))
        if "nodemon" in needed:
            tools["nodemon"] = install_nodemon(top)
        for t in ("watchfiles", "watchmedo", "nodemon"):
            tools.setdefault(t, "unavailable: not selected (--only)")
        versions = [v[1] for _k, v in sorted(tools.items()) if not isinstance(v, str)]
        bench = Bench(top, args.quick, args.skip_100k, only)
        rows = bench.run(tools)
        report(bench, rows, tools, versions, time.monotonic() - t_start, machine_line)
    finally:
        sweep(top)
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
