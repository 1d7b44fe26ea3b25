"""Tests for the auto driver (watch_auto.py, the default watcher): inotify
events first, the hot set and the safety net's polling when inotify says
nothing (the test hook AIR_STD_TEST_BLIND_INOTIFY=1 drops every event), the
fall back to polling when inotify runs out of watches or is unavailable
(for real, in a user namespace with its own inotify limits), and
directories created and filled faster than their watches are added.

Real files, real inotify, real processes; waits are for a state, bounded.
"""

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from air_std.filters import PathFilter
from air_std.watch_inotify import BLIND_ENV
from air_std.watch_poll import PollDriver
from air_std.watcher import Watcher
from conftest import wait_until
from test_watcher import HAVE_INOTIFY, rel, set_mtime, write

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not HAVE_INOTIFY, reason="inotify is not available here")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "proj"
    write(root / "main.go", "package main")
    write(root / "pkg" / "util" / "u.go", "package util")
    write(root / "notes.txt")
    return root


def auto(root, **kw):
    """An auto Watcher with its baseline taken (no thread)."""
    w = Watcher(str(root), PathFilter(include_ext=["go"]), kw.pop("out_queue", queue.Queue()),
                threading.Event(), backend="auto", **kw)
    assert w.poll_once() is None
    return w


def debug_lines(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.DEBUG and text in r.getMessage()]


# -- inotify first --------------------------------------------------------------------

def test_changes_come_from_events_and_polling_finds_nothing_more(tree, caplog):
    w = auto(tree)
    try:
        assert w.active_backend == "auto"
        write(tree / "pkg" / "new.go")
        write(tree / "main.go", "package main // edited")
        assert rel(w.poll_events(0.0), tree) == (["pkg/new.go"], ["main.go"], [])
        with caplog.at_level(logging.DEBUG, logger="air_std.watcher"):
            assert w.poll_once() is None  # the safety net: nothing left to find
            assert w.poll_hot() is None
        assert w.missed == 0 and not debug_lines(caplog, "inotify did not report")
        # what inotify reported is not made hot: no stats ten times a second
        assert not w.driver.hot
    finally:
        w.close()


def test_a_change_stated_before_its_event_is_read_is_not_counted_as_missed(tree, caplog):
    w = auto(tree)
    try:
        write(tree / "main.go", "package main // edited")
        # The polling phase runs before the queued event is read (as when a
        # write lands while a pass runs): the event read at its end explains it.
        scan = w.driver._new_pass()
        with caplog.at_level(logging.DEBUG, logger="air_std.watcher"):
            w.driver._poll(scan, w.tree.scan_tree)
        assert rel(scan.batch(), tree) == ([], ["main.go"], [])
        assert w.missed == 0 and not debug_lines(caplog, "inotify did not report")
    finally:
        w.close()


# -- inotify blind: the safety net and the hot set ------------------------------------

def test_the_safety_net_finds_what_inotify_missed_and_says_so_once(tree, caplog, monkeypatch):
    monkeypatch.setenv(BLIND_ENV, "1")
    w = auto(tree)
    try:
        assert w.active_backend == "auto" and w.driver.blind
        write(tree / "pkg" / "util" / "v.go")
        (tree / "main.go").unlink()
        assert w.poll_events(0.0) is None  # inotify is blind
        with caplog.at_level(logging.DEBUG, logger="air_std.watcher"):
            assert rel(w.poll_once(), tree) == (["pkg/util/v.go"], [], ["main.go"])
            assert w.missed == 2
            set_mtime(tree / "pkg" / "util" / "u.go", 10 ** 18)
            assert rel(w.poll_once(), tree) == ([], ["pkg/util/u.go"], [])
        assert w.missed == 3
        lines = debug_lines(caplog, "inotify did not report")
        assert len(lines) == 1
        assert lines[0].getMessage() == (
            "inotify did not report pkg/util/v.go; polling found it (2 change(s) in this pass; "
            "later misses are not logged)")
    finally:
        w.close()


def test_blind_hot_files_are_still_seen_by_the_hot_set(tree, monkeypatch):
    monkeypatch.setenv(BLIND_ENV, "1")
    w = auto(tree)
    try:
        write(tree / "main.go", "package main // 1")
        assert not w.driver.hot
        assert rel(w.poll_once(), tree) == ([], ["main.go"], [])  # missed: now it is hot
        assert w.driver.hot
        set_mtime(tree / "main.go", 10 ** 18)
        assert rel(w.poll_hot(), tree) == ([], ["main.go"], [])
        # a rename-save changes the hot directory, which the hot set lists again
        write(tree / "main.go.tmp", "package main // 2")
        os.replace(str(tree / "main.go.tmp"), str(tree / "main.go"))
        assert rel(w.poll_hot(), tree) == ([], ["main.go"], [])
    finally:
        w.close()


def test_the_thread_finds_blind_changes_within_the_safety_nets_interval(tree, monkeypatch):
    monkeypatch.setenv(BLIND_ENV, "1")
    q = queue.Queue()
    w = Watcher(str(tree), PathFilter(include_ext=["go"]), q, threading.Event(),
                backend="auto", net_interval_s=0.2)
    w.start()
    try:
        assert w.active_backend == "auto" and w.safety_net_s == 0.2
        write(tree / "pkg" / "late.go")
        assert str(tree / "pkg" / "late.go") in q.get(timeout=10).created
        write(tree / "pkg" / "late.go", "hot now")
        assert str(tree / "pkg" / "late.go") in q.get(timeout=10).modified
        assert w.missed >= 2
    finally:
        w.stop()
        assert w.join(10)


def test_the_safety_net_paces_itself_to_its_budget():
    from air_std.watch_auto import NET_BUDGET, NET_MAX_S, NET_MIN_S, net_pacer
    p = net_pacer()
    assert p.full_interval_s == NET_MIN_S
    p.record(NET_BUDGET * 5.0)   # a pass costing 10 ms: every 5 s keeps 0.2% of a core
    assert p.full_interval_s == pytest.approx(5.0)
    p.record(10.0)
    assert p.full_interval_s == NET_MAX_S
    assert net_pacer(0.25).full_interval_s == 0.25


# -- directories faster than their watches ----------------------------------------------

def test_a_directory_tree_made_and_filled_before_its_events_are_read(tree):
    w = auto(tree)
    try:
        deep = tree / "a" / "b" / "c"
        made = [deep / "c.go", tree / "a" / "a.go", tree / "a" / "b" / "b.go"]
        for p in made:
            write(p)
        os.rename(str(tree / "a" / "b"), str(tree / "a" / "moved"))  # and moved at once
        got = rel(w.poll_events(0.0), tree)
        assert got == (["a/a.go", "a/moved/b.go", "a/moved/c/c.go"], [], [])
        # every new directory is watched now: a change in the deepest is an event
        write(tree / "a" / "moved" / "c" / "c.go", "again")
        assert rel(w.poll_events(0.0), tree) == ([], ["a/moved/c/c.go"], [])
    finally:
        w.close()


def test_the_thread_misses_nothing_while_directories_appear_and_fill_fast(tree):
    q = queue.Queue()
    # the safety net far away: only events (and hot files) may find these
    w = Watcher(str(tree), PathFilter(include_ext=["go"]), q, threading.Event(),
                backend="auto", net_interval_s=3600)
    w.start()
    expected = set()
    try:
        for i in range(15):
            d = tree / ("burst%d" % i) / "sub" / "deeper"
            d.mkdir(parents=True)
            for j in range(4):
                p = d / ("f%d.go" % j)
                p.write_text("x")
                expected.add(str(p))
                q2 = d.parent / ("g%d.go" % j)
                q2.write_text("y")
                expected.add(str(q2))
        seen = set()

        def all_seen():
            while True:
                try:
                    seen.update(q.get_nowait().created)
                except queue.Empty:
                    return expected <= seen

        wait_until(all_seen, timeout=15, what="every file of the burst",
                   output=lambda: sorted(expected - seen)[:5])
        assert w.missed == 0
    finally:
        w.stop()
        assert w.join(10)


# -- out of watches, or no inotify ------------------------------------------------------

def test_out_of_watches_mid_run_falls_back_to_polling_with_one_info_line(tree, caplog):
    w = auto(tree, max_watches=4)
    assert w.active_backend == "auto"
    with caplog.at_level(logging.DEBUG, logger="air_std.watcher"):
        for i in range(3):
            write(tree / ("d%d" % i) / "x.go")
        write(tree / "main.go", "changed")
        batch = w.poll_events(0.0)
    assert isinstance(w.driver, PollDriver) and w.active_backend == "poll"
    assert rel(batch, tree) == (["d0/x.go", "d1/x.go", "d2/x.go"], ["main.go"], [])
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "falling back" in r.getMessage()]
    assert said == [(logging.INFO, "inotify watch limit (4) reached; falling back to polling")]
    write(tree / "d0" / "y.go")
    assert rel(w.poll_once(), tree) == (["d0/y.go"], [], [])
    w.close()


def _userns_limits_work():
    if not shutil.which("unshare") or not os.path.exists("/proc/sys/user/max_inotify_watches"):
        return False
    try:
        r = subprocess.run(["unshare", "-U", "-r", "sh", "-c",
                            "echo 3 > /proc/sys/user/max_inotify_watches"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


needs_userns = pytest.mark.skipif(not _userns_limits_work(),
                                  reason="no user namespaces with their own inotify limits")

APP = textwrap.dedent('''
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(sys.argv[1], "a") as f:
        f.write("%f\\n" % time.time())
    while True:
        signal.pause()
''')


class LimitedAir:
    """`python -m air_std` in a user namespace of its own, whose inotify limits
    are set first: the kernel's own ENOSPC and EMFILE, not a cap in our code."""

    def __init__(self, tmp_path, limits):
        self.proj = tmp_path / "proj"
        self.marker = tmp_path / "starts.txt"
        write(self.proj / "app.py", APP)
        (self.proj / ".air.toml").write_text(textwrap.dedent('''
            [build]
            cmd = "true"
            entrypoint = ["{py}", "app.py", "{marker}"]
            include_ext = ["go"]
            delay = 0
            ''').format(py=sys.executable, marker=self.marker))
        set_limits = " && ".join("echo %d > /proc/sys/user/%s" % (v, k)
                                 for k, v in sorted(limits.items()))
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", NO_COLOR="1")
        self.err_path = tmp_path / "air.err"
        self._err = open(str(self.err_path), "wb")
        self.proc = subprocess.Popen(
            ["unshare", "-U", "-r", "sh", "-c", set_limits + ' && exec "$@"', "sh",
             sys.executable, "-m", "air_std"],
            cwd=str(self.proj), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._err, start_new_session=True)

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def starts(self):
        try:
            return len(self.marker.read_text().split())
        except OSError:
            return 0

    def wait_starts(self, n):
        wait_until(lambda: self.starts() >= n, timeout=20, what="app start #%d" % n,
                   output=self.stderr)

    def wait_for(self, text):
        wait_until(lambda: text in self.stderr(), timeout=20, what=repr(text), output=self.stderr)

    def wait_restart_after(self, text):
        """Wait for `text`, then for the app to be started again after it."""
        self.wait_for(text)
        wait_until(lambda: "runner  | running " in self.stderr().rpartition(text)[2],
                   timeout=20, what="a restart after %r" % text, output=self.stderr)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._err.close()
        return self.proc.returncode


@needs_userns
def test_the_kernels_watch_limit_reached_mid_run_falls_back_and_keeps_restarting(tmp_path):
    # the project's root and pkg/ take 2 watches; the limit lets one more in
    air = LimitedAir(tmp_path, {"max_inotify_watches": 3})
    write(air.proj / "pkg" / "p.go")
    try:
        air.wait_starts(1)
        air.wait_for("watcher | watching 1 files in 2 directories (inotify")
        write(air.proj / "a" / "a.go")  # the third watch
        air.wait_restart_after("main    | a/a.go changed; rebuilding")
        write(air.proj / "b" / "b.go")  # a fourth: ENOSPC
        air.wait_restart_after("main    | b/b.go changed; rebuilding")
        air.wait_for("watcher | inotify watch limit reached (raise fs.inotify.max_user_watches);"
                     " falling back to polling")
        # polling now: a new directory, and a file in one inotify watched
        write(air.proj / "c" / "c.go")
        air.wait_restart_after("main    | c/c.go changed; rebuilding")
        write(air.proj / "pkg" / "p.go", "after the fallback")
        air.wait_restart_after("main    | pkg/p.go changed; rebuilding")
    finally:
        assert air.close() == 0, air.stderr()
    err = air.stderr()
    assert err.count("falling back to polling") == 1
    assert "warning" not in err and "Traceback" not in err


@needs_userns
def test_no_inotify_at_all_polls_with_one_info_line(tmp_path):
    air = LimitedAir(tmp_path, {"max_inotify_instances": 0})
    try:
        air.wait_starts(1)
        write(air.proj / "main.go", "edited")
        air.wait_starts(2)
    finally:
        assert air.close() == 0, air.stderr()
    err = air.stderr()
    assert ("watcher | no inotify instance left (inotify_init1: Too many open files; raise "
            "fs.inotify.max_user_instances); falling back to polling") in err
    assert err.count("falling back to polling") == 1
    assert "watching 0 files in 1 directories (polling, adaptive interval" in err
    assert "warning" not in err and "Traceback" not in err
