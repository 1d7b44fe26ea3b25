"""Tests for the seams inside the watcher: snapshot.Snapshot and its ScanPass,
the Pacer, the polling and inotify drivers on their own, and the Watcher
swapping a failed driver for polling.

Real files in tmp_path, real inotify; no thread unless the test is about the
thread, which is then waited for on its queue with a bound.
"""

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from air_std.filters import PathFilter
from air_std.snapshot import ScanPass, Snapshot
from air_std.watch_driver import CPU_BUDGET, MAX_INTERVAL_S, MIN_INTERVAL_S, Pacer
from air_std.watch_poll import PollDriver
from air_std.watcher import Watcher
from test_watcher import needs_inotify, rel, set_mtime, write

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "proj"
    write(root / "main.go")
    write(root / "pkg" / "util" / "u.go")
    write(root / "notes.txt")
    return root


def snapshot_of(root, **kw):
    snap = Snapshot(str(root), PathFilter(include_ext=["go"]), **kw)
    snap.scan_tree(ScanPass(snap, record=False))
    return snap


# -- Snapshot and ScanPass -----------------------------------------------------------

def test_baseline_pass_records_nothing_and_later_passes_record_each_change(tree):
    snap = snapshot_of(tree)
    assert sorted(os.path.relpath(p, str(tree)) for p in snap.files()) == [
        "main.go", "pkg/util/u.go"]
    assert snap.counts() == (2, 3)
    write(tree / "pkg" / "new" / "n.go")
    write(tree / "main.go", "longer now")
    (tree / "pkg" / "util" / "u.go").unlink()
    scan = ScanPass(snap)
    snap.scan_tree(scan)
    assert rel(scan.batch(), tree) == (["pkg/new/n.go"], ["main.go"], ["pkg/util/u.go"])
    assert [n.path for n in scan.new_dirs] == [str(tree / "pkg" / "new")]
    assert scan.pending == []
    again = ScanPass(snap)
    snap.scan_tree(again)
    assert again.batch() is None


def test_scan_dir_queues_new_directories_on_the_pass(tree):
    snap = snapshot_of(tree)
    write(tree / "fresh" / "deep" / "f.go")
    scan = ScanPass(snap)
    snap.scan_dir(snap.root, scan)  # the root alone: its new child waits on the pass
    assert [(n.path, recurse) for n, recurse in scan.pending] == [(str(tree / "fresh"), True)]
    assert scan.batch() is None
    snap.drain(scan)
    assert rel(scan.batch(), tree) == (["fresh/deep/f.go"], [], [])


class _RecordingWatches:
    """The ScanPass.watches interface, recording what the snapshot asks of it."""

    def __init__(self):
        self.calls = []

    def add(self, node):
        # the contract: add() comes before the directory is listed (in the
        # baseline, a listed node has files or children)
        self.calls.append(("add", node.path, bool(node.files or node.children)))

    def discard(self, node):
        self.calls.append(("discard", node.path, None))


def test_watches_are_asked_before_each_listing_and_told_of_dropped_directories(tree):
    snap = Snapshot(str(tree), PathFilter(include_ext=["go"]))
    watches = _RecordingWatches()
    snap.scan_tree(ScanPass(snap, list_all=True, watches=watches, record=False))
    added = sorted(path for kind, path, _ in watches.calls if kind == "add")
    assert added == sorted(str(p) for p in (tree, tree / "pkg", tree / "pkg" / "util"))
    assert not [c for c in watches.calls if c[2]], "a directory was listed before add()"
    watches.calls = []
    os.rename(str(tree / "pkg"), str(tree / "moved"))
    scan = ScanPass(snap, list_all=True, watches=watches)
    snap.scan_dir(snap.root, scan)
    assert [c[:2] for c in watches.calls if c[0] == "discard"] == [
        ("discard", str(tree / "pkg")), ("discard", str(tree / "pkg" / "util"))]


def test_a_steady_pass_watches_only_the_directories_it_lists(tree):
    # Re-adding a watch costs a syscall per directory, a tenth of a steady
    # pass: a directory that is not listed keeps the watch it has.
    for d in (tree, tree / "pkg", tree / "pkg" / "util"):
        set_mtime(d, 10 ** 18)  # long settled: a listing of them is trusted
    snap = snapshot_of(tree)
    write(tree / "pkg" / "n.go")
    watches = _RecordingWatches()
    snap.scan_tree(ScanPass(snap, watches=watches))
    assert watches.calls == [("add", str(tree / "pkg"), True)]  # the one whose key moved


def test_list_all_lists_a_directory_whose_key_held(tree):
    set_mtime(tree, 10 ** 18)  # long settled: its key is trusted once recorded
    snap = snapshot_of(tree)
    snap.scan_tree(ScanPass(snap))  # records the trusted key
    write(tree / "hidden.go")
    set_mtime(tree, 10 ** 18)  # a filesystem that did not move the directory's mtime
    quiet = ScanPass(snap)
    snap.scan_tree(quiet)
    assert quiet.batch() is None
    listing = ScanPass(snap, list_all=True)
    snap.scan_tree(listing)
    assert rel(listing.batch(), tree) == (["hidden.go"], [], [])


def test_node_at_finds_walked_directories_only(tree):
    snap = snapshot_of(tree)
    assert snap.node_at(str(tree)) is snap.root
    assert snap.node_at(str(tree / "pkg" / "util")).files.keys() == {"u.go"}
    assert snap.node_at(str(tree / "pkg" / "nope")) is None
    assert snap.node_at(str(tree.parent)) is None


# -- Pacer ------------------------------------------------------------------------------

def test_pacer_adapts_to_the_cpu_budget_within_bounds_unless_fixed():
    p = Pacer()
    assert p.full_interval_s == MIN_INTERVAL_S
    p.record(0.0001)
    assert p.full_interval_s == MIN_INTERVAL_S
    p.record(CPU_BUDGET * 1.0)  # a pass of 15 ms: once a second keeps 1.5% of a core
    assert p.full_interval_s == pytest.approx(1.0)
    p.record(10.0)
    assert (p.full_interval_s, p.last_cpu_s) == (MAX_INTERVAL_S, 10.0)
    fixed = Pacer(0.25)
    fixed.record(10.0)
    assert (fixed.full_interval_s, fixed.last_cpu_s) == (0.25, 10.0)


# -- the polling driver ------------------------------------------------------------------

def test_poll_step_runs_the_hot_pass_between_full_passes(tree):
    snap = snapshot_of(tree)
    driver = PollDriver(snap, Pacer(60.0), hot_interval_s=0.05)
    write(tree / "main.go", "v2")
    driver.after_pass(driver.full_pass())  # main.go is now hot
    set_mtime(tree / "main.go", 10 ** 18)
    scan = driver.step(threading.Event())  # the next full pass is a minute away
    assert rel(scan.batch(), tree) == ([], ["main.go"], [])
    assert not driver.last_pass_listed_all


def test_poll_step_runs_a_full_pass_when_due_and_paces_the_next(tree):
    snap = snapshot_of(tree)
    pacer = Pacer()
    driver = PollDriver(snap, pacer)
    pacer.full_interval_s = 0.05  # due at once (the baseline would set it)
    write(tree / "pkg" / "util" / "u.go", "cold change")
    scan = driver.step(threading.Event())
    assert rel(scan.batch(), tree) == ([], ["pkg/util/u.go"], [])
    assert MIN_INTERVAL_S <= pacer.full_interval_s <= MAX_INTERVAL_S


def test_poll_step_returns_at_once_when_stopped(tree):
    driver = PollDriver(snapshot_of(tree), Pacer(60.0))
    stop = threading.Event()
    stop.set()
    assert driver.step(stop) is None


# -- the inotify driver ------------------------------------------------------------------

@needs_inotify
def test_inotify_step_confirms_events_through_the_snapshot(tree):
    from air_std.watch_inotify import InotifyDriver
    snap = Snapshot(str(tree), PathFilter(include_ext=["go"]))
    driver = InotifyDriver(snap, Pacer())
    try:
        driver.baseline()
        assert driver.event_pass(0.0) is None
        write(tree / "pkg" / "util" / "v.go")
        scan = driver.step(threading.Event())  # events are queued: no wait
        assert rel(scan.batch(), tree) == (["pkg/util/v.go"], [], [])
        assert scan.list_all and scan.watches is driver
    finally:
        driver.close()
    assert all(n.wd is None for n in snap.nodes())
    driver.close()  # idempotent


# -- swapping a failed driver ------------------------------------------------------------

@needs_inotify
def test_a_failed_inotify_driver_is_swapped_for_polling_on_the_same_snapshot(tree):
    w = Watcher(str(tree), PathFilter(include_ext=["go"]), queue.Queue(), threading.Event(),
                backend="inotify", max_watches=3)
    w.poll_once()
    failing, snap = w.driver, w.tree
    assert w.active_backend == "inotify"
    write(tree / "a" / "x.go")  # a fourth directory: over the cap
    assert rel(w.poll_events(0.0), tree) == (["a/x.go"], [], [])
    assert isinstance(w.driver, PollDriver) and w.driver.snapshot is snap
    assert failing.failed and all(n.wd is None for n in snap.nodes())
    assert (w.backend, w.active_backend) == ("poll", "poll")
    # the changes of the failing pass are hot for the polling driver, as any others
    set_mtime(tree / "a" / "x.go", 10 ** 18)
    assert rel(w.poll_hot(), tree) == ([], ["a/x.go"], [])


@needs_inotify
def test_the_thread_falls_back_mid_run_and_keeps_reporting(tree):
    q = queue.Queue()
    w = Watcher(str(tree), PathFilter(include_ext=["go"]), q, threading.Event(),
                interval_s=0.05, backend="inotify", max_watches=3)
    w.start()
    try:
        assert w.active_backend == "inotify"
        write(tree / "a" / "x.go")
        assert str(tree / "a" / "x.go") in q.get(timeout=10).created
        write(tree / "b.go")
        assert str(tree / "b.go") in q.get(timeout=10).created
        assert w.active_backend == "poll"
    finally:
        w.stop()
        assert w.join(10)


_NO_CTYPES_SCRIPT = r"""
import logging, queue, sys, threading
sys.path.insert(0, sys.argv[1])
sys.modules["ctypes"] = None  # as on a Python built without ctypes
from air_std.filters import PathFilter
from air_std.watcher import Watcher
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append("%s %s" % (record.levelname, record.getMessage()))
logger = logging.getLogger("air_std.watcher")
logger.addHandler(Keep())
logger.setLevel(logging.INFO)
w = Watcher(sys.argv[2], PathFilter(), queue.Queue(), threading.Event(), backend=sys.argv[3])
w.poll_once()
print(w.active_backend, len(w.snapshot()), len(messages))
print(messages[0])
"""


@pytest.mark.parametrize("backend,level", [("inotify", "WARNING"), ("auto", "INFO")])
def test_a_python_without_ctypes_polls_with_one_line(tree, backend, level):
    # asked for by name, inotify missing is a warning; under auto, information
    proc = subprocess.run([sys.executable, "-c", _NO_CTYPES_SCRIPT, str(REPO), str(tree), backend],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr
    summary, message = proc.stdout.splitlines()
    assert summary == "poll 2 1"
    assert message.startswith(level + " inotify is unavailable here (")
    assert message.endswith("; falling back to polling")
