"""Tests for the watcher through its public surface (watcher.Watcher), with
its drivers (watch_poll.py, watch_inotify.py over inotify.py, and
watch_auto.py) on the same snapshot code (snapshot.py); the seams between
those parts are tested in test_watch_drivers.py, the auto driver's own
behaviour in test_watch_auto.py and its choice of filesystems in
test_mounts.py.

Real files in tmp_path; no sleeping past mtime resolution (mtimes are set
with os.utime(ns=...)); no timing assertions (speed is in bench/). Most
tests call poll_once()/poll_hot()/poll_events() with no thread; a few run
the real "air-watcher" thread and wait on its queue with a bound.
"""

import json
import logging
import os
import queue
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from air_std.filters import PathFilter
from air_std.messages import ChangeBatch
from air_std.watch_driver import MAX_INTERVAL_S, MIN_INTERVAL_S
from air_std.watch_inotify import BLIND_ENV
from air_std.watcher import Watcher

REPO = Path(__file__).resolve().parent.parent


def _inotify_available():
    if not sys.platform.startswith("linux"):
        return False
    try:
        from air_std.inotify import Inotify
        Inotify().close()
        return True
    except OSError:
        return False


HAVE_INOTIFY = _inotify_available()
needs_inotify = pytest.mark.skipif(not HAVE_INOTIFY, reason="inotify is not available here")
BACKENDS = ["poll", pytest.param("inotify", marks=needs_inotify),
            pytest.param("auto", marks=needs_inotify)]


def make(root, backend="poll", **kw):
    fkeys = ("include_ext", "include_dir", "include_file", "exclude_dir", "exclude_file",
             "exclude_regex", "tmp_dir", "testdata_dir")
    fargs = {k: kw.pop(k) for k in fkeys if k in kw}
    fargs.setdefault("include_ext", ["go", "html"])
    w = Watcher(str(root), PathFilter(**fargs), kw.pop("out_queue", queue.Queue()),
                kw.pop("shutdown_event", threading.Event()), backend=backend, **kw)
    assert w.poll_once() is None  # the baseline
    return w


def step(w):
    """Changes since the last call, by whichever means the backend uses."""
    if w.active_backend in ("inotify", "auto"):
        return w.poll_events(0.0)
    return w.poll_once()


def rel(batch, root):
    """A batch as (created, modified, deleted) lists of relative paths."""
    if batch is None:
        return ([], [], [])
    r = str(root) + "/"
    for p in batch.paths:
        assert p.startswith(r), p
    return tuple(sorted(p[len(r):] for p in paths)
                 for paths in (batch.created, batch.modified, batch.deleted))


def write(p, text="x"):
    p = Path(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def set_mtime(p, t_ns):
    os.utime(str(p), ns=(t_ns, t_ns))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "proj"
    write(root / "main.go", "package main")
    write(root / "views" / "index.html", "<p>")
    write(root / "pkg" / "util" / "u.go", "package util")
    write(root / "README.md", "readme")
    return root


# -- basic diffs ---------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_created_modified_deleted(tree, backend):
    w = make(tree, backend)
    assert step(w) is None
    write(tree / "new.go")
    assert rel(step(w), tree) == (["new.go"], [], [])
    write(tree / "main.go", "package main // changed size")
    assert rel(step(w), tree) == ([], ["main.go"], [])
    (tree / "views" / "index.html").unlink()
    assert rel(step(w), tree) == ([], [], ["views/index.html"])
    w.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_paths_are_absolute_and_unwatched_files_ignored(tree, backend):
    w = make(tree, backend)
    write(tree / "notes.txt")
    write(tree / "README.md", "changed")
    write(tree / "pkg" / "a.go")
    batch = step(w)
    assert isinstance(batch, ChangeBatch)
    assert batch.created == (str(tree / "pkg" / "a.go"),)
    assert batch.modified == () and batch.deleted == ()
    w.close()


def test_mtime_only_change_is_seen_even_when_older(tree):
    w = make(tree)
    st0 = os.stat(str(tree / "main.go"))
    set_mtime(tree / "main.go", st0.st_mtime_ns - 10 ** 9)  # restored to an older time
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])
    set_mtime(tree / "main.go", st0.st_mtime_ns - 10 ** 9)
    assert w.poll_once() is None


def test_mtimes_before_1970_are_kept_apart(tree):
    main = tree / "main.go"
    set_mtime(main, -10 ** 9)
    w = make(tree)
    assert w.snapshot()[str(main)][0] == -10 ** 9
    set_mtime(main, -2 * 10 ** 9)
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])
    set_mtime(main, 10 ** 9)
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])


def test_same_size_same_mtime_new_inode_is_modified(tree):
    """A replace by rename that keeps size and lands in the same mtime tick."""
    w = make(tree)
    target = tree / "main.go"
    st0 = os.stat(str(target))
    tmp = write(tree / "main.go.tmp", "package mai!")  # same length
    set_mtime(tmp, st0.st_mtime_ns)
    os.replace(str(tmp), str(target))
    st1 = os.stat(str(target))
    assert (st1.st_size, st1.st_mtime_ns) == (st0.st_size, st0.st_mtime_ns)
    assert st1.st_ino != st0.st_ino
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rename_save_reports_the_file_never_the_temp(tree, backend):
    w = make(tree, backend)
    target = tree / "main.go"
    # vim: writes a new file, moves the old to main.go~, then removes it
    os.rename(str(target), str(tree / "main.go~"))
    write(target, "package main // v2")
    (tree / "main.go~").unlink()
    write(tree / ".main.go.swp", "swap")
    assert rel(step(w), tree) == ([], ["main.go"], [])
    # write-temp-then-rename, temp with an unwatched name
    tmp = write(tree / ".main.go.tmp~", "package main // v3")
    os.replace(str(tmp), str(target))
    assert rel(step(w), tree) == ([], ["main.go"], [])
    (tree / ".main.go.swp").unlink()
    assert step(w) is None
    w.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_dir_is_picked_up(tree, backend):
    w = make(tree, backend)
    write(tree / "a" / "b" / "c.go")
    assert rel(step(w), tree) == (["a/b/c.go"], [], [])
    write(tree / "a" / "b" / "d.go")
    assert rel(step(w), tree) == (["a/b/d.go"], [], [])
    shutil.rmtree(str(tree / "a"))
    assert rel(step(w), tree) == ([], [], ["a/b/c.go", "a/b/d.go"])
    w.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_and_directory_swap_names(tree, backend):
    w = make(tree, backend, include_ext=["*"])
    (tree / "README.md").unlink()
    write(tree / "README.md" / "inside.go")
    assert rel(step(w), tree) == (["README.md/inside.go"], [], ["README.md"])
    shutil.rmtree(str(tree / "pkg"))
    write(tree / "pkg", "now a file")
    assert rel(step(w), tree) == (["pkg"], [], ["pkg/util/u.go"])
    w.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_moved_directory(tree, backend):
    w = make(tree, backend)
    os.rename(str(tree / "pkg"), str(tree / "views" / "lib"))
    assert rel(step(w), tree) == (["views/lib/util/u.go"], [], ["pkg/util/u.go"])
    write(tree / "views" / "lib" / "util" / "v.go")
    assert rel(step(w), tree) == (["views/lib/util/v.go"], [], [])
    w.close()


# -- pruning -------------------------------------------------------------------

def _atime_ns(p):
    return os.stat(str(p)).st_atime_ns


def test_pruned_dirs_are_never_listed(tree):
    """tmp, testdata, .git, hidden and excluded dirs are not even opened.

    Listing a directory updates its atime (relatime: when atime <= mtime), so
    every directory gets atime 0 first; a control directory shows the
    filesystem does it."""
    pruned = [tree / "tmp", tree / "testdata", tree / ".git", tree / ".idea",
              tree / "node_modules", tree / "web" / "dist"]
    for d in pruned:
        write(d / "x.go")
        write(d / "sub" / "y.go")
    control = tree / "pkg" / "util"
    for d in pruned + [control]:
        st0 = os.stat(str(d))
        os.utime(str(d), ns=(0, st0.st_mtime_ns))
    w = make(tree, exclude_dir=["node_modules", "web/dist"])
    w.poll_once()
    if _atime_ns(control) == 0:
        pytest.skip("this filesystem does not update directory atimes (noatime)")
    for d in pruned:
        assert _atime_ns(d) == 0, "%s was listed" % d
    assert not [p for p in w.snapshot() if "/x.go" in p or "/y.go" in p]


def test_excluded_dir_contents_never_reported(tree):
    w = make(tree, exclude_dir=["vendor"], exclude_regex=["_test\\.go$"],
             exclude_file=["pkg/util/gen.go"])
    write(tree / "vendor" / "lib.go")
    write(tree / "tmp" / "main")
    write(tree / "tmp" / "build.go")
    write(tree / "a_test.go")
    write(tree / "pkg" / "util" / "gen.go")
    write(tree / ".git" / "HEAD.go")
    assert w.poll_once() is None


def test_include_dir_and_include_file(tree):
    w = make(tree, include_dir=["pkg"], include_file=["README.md"])
    assert sorted(os.path.relpath(p, str(tree)) for p in w.snapshot()) == [
        "README.md", "pkg/util/u.go"]
    write(tree / "main.go", "changed")
    write(tree / "README.md", "changed")
    write(tree / "pkg" / "new.go")
    assert rel(w.poll_once(), tree) == (["pkg/new.go"], ["README.md"], [])


# -- hostile filesystems ---------------------------------------------------------

def test_directories_vanishing_and_appearing_while_scanning(tree):
    """Another thread churns files and directories while passes run; no pass
    may fail, and once the churn stops the snapshot matches the disk."""
    w = make(tree, include_ext=["*"])
    stop = threading.Event()
    errors = []

    def churn():
        try:
            for i in range(400):
                if stop.is_set():
                    return
                d = tree / ("churn%d" % (i % 5))
                sub = d / "deep" / ("s%d" % (i % 3))
                try:
                    sub.mkdir(parents=True, exist_ok=True)
                    (sub / ("f%d.go" % i)).write_text("x")
                    (d / ("g%d" % i)).write_text("y")
                    if i % 2:
                        shutil.rmtree(str(d))
                    else:
                        os.rename(str(d), str(tree / ("moved%d" % (i % 4))))
                except OSError:
                    pass  # the other side of the race; expected
                try:
                    shutil.rmtree(str(tree / ("moved%d" % ((i + 1) % 4))))
                except OSError:
                    pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=churn, name="test-churn")
    t.start()
    try:
        passes = 0
        while t.is_alive() and passes < 2000:
            w.poll_once()
            w.poll_hot()
            passes += 1
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive() and not errors
    w.poll_once()
    assert w.snapshot() == reference_scan(str(tree), w.filters, False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_root_given_through_a_symlink(tmp_path, backend):
    real = tmp_path / "real"
    write(real / "a.go")
    os.symlink(str(real), str(tmp_path / "link"))
    w = make(tmp_path / "link", backend)
    assert list(w.snapshot()) == [str(tmp_path / "link" / "a.go")]
    write(real / "b.go")
    assert rel(step(w), tmp_path / "link") == (["b.go"], [], [])
    w.close()


def test_root_disappearing_reports_everything_deleted(tmp_path):
    root = tmp_path / "proj"
    write(root / "a.go")
    write(root / "sub" / "b.go")
    w = make(root)
    shutil.rmtree(str(root))
    assert rel(w.poll_once(), root) == ([], [], ["a.go", "sub/b.go"])
    write(root / "a.go")
    assert rel(w.poll_once(), root) == (["a.go"], [], [])


def test_root_moved_away_and_back_is_listed_again(tmp_path):
    """Its (mtime, inode) are as before, but what it held was reported deleted."""
    root = tmp_path / "proj"
    write(root / "a.go")
    write(root / "sub" / "b.go")
    for d in (root, root / "sub"):
        set_mtime(d, 10 ** 18)  # settled: keys recorded by a listing are trusted
    w = make(root)
    assert w.poll_once() is None
    os.rename(str(root), str(tmp_path / "away"))
    assert rel(w.poll_once(), root) == ([], [], ["a.go", "sub/b.go"])
    os.rename(str(tmp_path / "away"), str(root))
    assert rel(w.poll_once(), root) == (["a.go", "sub/b.go"], [], [])


def _without_dac_override(cmd):
    """cmd run with root's permission bypass dropped (a no-op for other users)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv(1) is missing to drop CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--inh-caps=" + caps, "--bounding-set=" + caps] + cmd


_UNSEARCHABLE_SCRIPT = r"""
import json, os, queue, sys, threading
sys.path.insert(0, sys.argv[1])
from air_std.filters import PathFilter
from air_std.watcher import Watcher
root = sys.argv[2]
d = os.path.join(root, "d")
w = Watcher(root, PathFilter(include_ext=["go"]), queue.Queue(), threading.Event())
w.poll_once()
w.poll_once()
def step():
    b = w.poll_once()
    return None if b is None else [sorted(os.path.relpath(p, root) for p in x)
                                   for x in (b.created, b.modified, b.deleted)]
os.chmod(d, 0o600)  # listable, but its files cannot be stat'ed
os.utime(d, ns=(10 ** 18, 10 ** 18))
out = [step()]
os.chmod(d, 0o700)  # only the ctime moves
out.append(step())
print(json.dumps(out))
"""


def test_files_hidden_by_a_passing_permission_come_back(tmp_path):
    """A listing that could not stat some entries is not trusted later."""
    root = tmp_path / "proj"
    write(root / "d" / "a.go")
    for d in (root, root / "d"):
        set_mtime(d, 10 ** 18)
    cmd = _without_dac_override([sys.executable, "-c", _UNSEARCHABLE_SCRIPT, str(REPO), str(root)])
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    finally:
        (root / "d").chmod(0o755)
    if proc.returncode != 0 and b"setpriv" in proc.stderr:
        pytest.skip("cannot drop capabilities here: %s" % proc.stderr.decode(errors="replace"))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert json.loads(proc.stdout.decode()) == [[[], [], ["d/a.go"]], [["d/a.go"], [], []]]


_PERM_SCRIPT = r"""
import json, logging, os, queue, sys, threading
sys.path.insert(0, sys.argv[1])
from air_std.filters import PathFilter
from air_std.watcher import Watcher
root = sys.argv[2]
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logger = logging.getLogger("air_std.watcher")
logger.addHandler(Keep())
logger.setLevel(logging.WARNING)
w = Watcher(root, PathFilter(include_ext=["go"]), queue.Queue(), threading.Event())
w.poll_once()
os.chmod(os.path.join(root, "later"), 0)   # unreadable after the baseline
batches = [w.poll_once(), w.poll_once(), w.poll_hot()]
files = sorted(os.path.relpath(p, root) for p in w.snapshot())
print(json.dumps({"messages": messages, "batches": [b is not None for b in batches],
                  "files": files}))
"""


def test_permission_denied_dir_warns_once_and_keeps_what_it_knew(tmp_path):
    root = tmp_path / "proj"
    write(root / "ok" / "a.go")
    write(root / "locked" / "b.go")
    write(root / "later" / "c.go")
    (root / "locked").chmod(0)
    cmd = _without_dac_override([sys.executable, "-c", _PERM_SCRIPT, str(REPO), str(root)])
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    finally:
        for d in ("locked", "later"):
            (root / d).chmod(0o755)
    if proc.returncode != 0 and b"setpriv" in proc.stderr:
        pytest.skip("cannot drop capabilities here: %s" % proc.stderr.decode(errors="replace"))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result = json.loads(proc.stdout.decode())
    warned = [m for m in result["messages"] if "cannot read directory" in m]
    assert len([m for m in warned if "locked" in m]) == 1, result
    assert len([m for m in warned if "later" in m]) == 1, result
    assert result["batches"] == [False, False, False]
    assert result["files"] == ["later/c.go", "ok/a.go"]


# -- symlinks ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_symlink_cycles_with_follow_symlink(tree, backend):
    os.symlink(str(tree), str(tree / "pkg" / "loop"))       # back to the root
    os.symlink("..", str(tree / "pkg" / "util" / "up"))      # back to the parent
    os.symlink(str(tree / "views"), str(tree / "pkg" / "v"))  # a plain link to a sibling
    w = make(tree, backend, follow_symlink=True)
    files = sorted(os.path.relpath(p, str(tree)) for p in w.snapshot())
    assert files == ["main.go", "pkg/util/u.go", "pkg/v/index.html", "views/index.html"]
    write(tree / "views" / "new.html")
    assert rel(step(w), tree) == (["pkg/v/new.html", "views/new.html"], [], [])
    w.close()


def test_dir_symlinks_not_followed_by_default(tree):
    os.symlink(str(tree / "views"), str(tree / "linked"))
    os.symlink(str(tree), str(tree / "loop"))
    w = make(tree)
    assert not [p for p in w.snapshot() if "/linked/" in p or "/loop/" in p]
    write(tree / "views" / "x.html")
    assert rel(w.poll_once(), tree) == (["views/x.html"], [], [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_symlink_follows_its_target(tmp_path, backend):
    root = tmp_path / "proj"
    outside = write(tmp_path / "shared" / "common.go", "v1")
    write(root / "main.go")
    os.symlink(str(outside), str(root / "common.go"))
    os.symlink(str(tmp_path / "missing.go"), str(root / ".#main.go"))  # emacs lock: dangling
    w = make(root, backend)
    assert sorted(os.path.relpath(p, str(root)) for p in w.snapshot()) == ["common.go", "main.go"]
    write(outside, "v2 longer")
    assert rel(step(w), root) == ([], ["common.go"], [])
    outside.unlink()
    assert rel(step(w), root) == ([], [], ["common.go"])
    write(outside, "back")
    assert rel(step(w), root) == (["common.go"], [], [])
    w.close()


# -- exclude_unchanged ----------------------------------------------------------------

def test_exclude_unchanged_reports_only_content_changes(tree):
    w = make(tree, exclude_unchanged=True)
    main = tree / "main.go"
    set_mtime(main, 10 ** 18)
    assert w.poll_once() is None
    tmp = write(tree / "main.go.new", main.read_text())   # identical content, new inode
    os.replace(str(tmp), str(main))
    assert w.poll_once() is None
    write(main, "package main // real change")
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])
    write(tree / "n.go", "new")
    assert rel(w.poll_once(), tree) == (["n.go"], [], [])
    set_mtime(tree / "n.go", 10 ** 18)
    assert w.poll_once() is None
    (tree / "n.go").unlink()
    assert rel(w.poll_once(), tree) == ([], [], ["n.go"])


def test_without_exclude_unchanged_a_touch_is_a_change(tree):
    w = make(tree)
    set_mtime(tree / "main.go", 10 ** 18)
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])


# -- tiers ----------------------------------------------------------------------------

def test_hot_pass_sees_recently_changed_files_and_their_dirs(tree):
    w = make(tree)
    write(tree / "main.go", "v2")
    assert rel(w.poll_once(), tree) == ([], ["main.go"], [])   # main.go is now hot
    assert w.poll_hot() is None
    set_mtime(tree / "main.go", 10 ** 18)
    assert rel(w.poll_hot(), tree) == ([], ["main.go"], [])
    # a rename-save and a new file in the hot directory
    tmp = write(tree / ".main.go.tmp~", "v3")
    os.replace(str(tmp), str(tree / "main.go"))
    write(tree / "other.go")
    assert rel(w.poll_hot(), tree) == (["other.go"], ["main.go"], [])
    # a new directory inside a hot one is scanned whole
    write(tree / "fresh" / "deep" / "f.go")
    assert rel(w.poll_hot(), tree) == (["fresh/deep/f.go"], [], [])
    # a cold file is left to the full pass
    write(tree / "pkg" / "util" / "u.go", "cold change")
    assert w.poll_hot() is None
    assert rel(w.poll_once(), tree) == ([], ["pkg/util/u.go"], [])
    assert w.poll_once() is None


def test_hot_dir_deleted(tree):
    w = make(tree)
    write(tree / "pkg" / "util" / "u.go", "v2")
    w.poll_once()
    shutil.rmtree(str(tree / "pkg"))
    assert rel(w.poll_hot(), tree) == ([], [], ["pkg/util/u.go"])
    assert w.poll_once() is None


def _listed_dirs(w, monkeypatch):
    """Run one full pass and return the paths of the directories it listed."""
    listed = []
    real = os.scandir

    def spy(fd):
        listed.append(os.readlink("/proc/self/fd/%d" % fd))
        return real(fd)
    monkeypatch.setattr(os, "scandir", spy)
    try:
        batch = w.poll_once()
    finally:
        monkeypatch.setattr(os, "scandir", real)
    return batch, sorted(listed)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_full_pass_lists_only_directories_whose_mtime_moved(tree, monkeypatch):
    for d in (tree, tree / "views", tree / "pkg", tree / "pkg" / "util"):
        set_mtime(d, 10 ** 18)  # long settled
    w = make(tree)
    w.poll_once()  # the first pass after the baseline trusts the keys it records
    # an in-place write moves no directory: nothing is listed, the stat sees it
    write(tree / "pkg" / "util" / "u.go", "in place, longer")
    batch, listed = _listed_dirs(w, monkeypatch)
    assert rel(batch, tree) == ([], ["pkg/util/u.go"], [])
    assert listed == []
    # a new file moves its directory's mtime: that directory alone is listed
    write(tree / "views" / "new.html")
    batch, listed = _listed_dirs(w, monkeypatch)
    assert rel(batch, tree) == (["views/new.html"], [], [])
    assert listed == [str(tree / "views")]
    # ...and, its mtime being recent, again on the next pass (a same-tick change could hide)
    batch, listed = _listed_dirs(w, monkeypatch)
    assert batch is None and listed == [str(tree / "views")]


def test_same_tick_change_after_a_listing_is_still_seen(tree):
    w = make(tree)
    d = tree / "views"
    before = os.stat(str(d)).st_mtime_ns  # recent: the tree was just written
    w.poll_once()
    # a file created in the same clock tick as that listing leaves the mtime as it was
    write(d / "late.html")
    set_mtime(d, before)
    assert rel(w.poll_once(), tree) == (["views/late.html"], [], [])


def test_directories_are_all_listed_now_and_then(tree):
    """The safety net for filesystems whose directory mtimes do not move."""
    set_mtime(tree, 10 ** 18)
    w = make(tree)
    w.poll_once()
    write(tree / "hidden.go")
    set_mtime(tree, 10 ** 18)  # the directory's mtime did not move
    assert w.poll_once() is None
    w.driver.next_list_all = 0.0  # the time for the list-everything pass has come
    assert rel(w.poll_once(), tree) == (["hidden.go"], [], [])
    assert w.last_pass_listed_all


def test_interval_is_adaptive_within_bounds_unless_set(tree):
    w = make(tree)
    assert MIN_INTERVAL_S <= w.full_interval_s <= MAX_INTERVAL_S
    w2 = make(tree, interval_s=0.7)
    assert w2.full_interval_s == 0.7


# -- the thread -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_puts_batches_on_the_queue_and_stops_cleanly(tree, backend):
    base = threading.active_count()
    q = queue.Queue()
    w = Watcher(str(tree), PathFilter(include_ext=["go"]), q, threading.Event(),
                interval_s=0.05, backend=backend)
    w.start()
    try:
        assert [t.name for t in threading.enumerate()].count("air-watcher") == 1
        assert not [t for t in threading.enumerate() if t.name == "air-watcher" and t.daemon]
        write(tree / "late.go")
        batch = q.get(timeout=10)
        assert isinstance(batch, ChangeBatch)
        assert str(tree / "late.go") in batch.created
    finally:
        w.stop()
        w.stop()  # idempotent
        assert w.join(10)
    assert threading.active_count() == base


def test_start_twice_is_refused_and_stop_before_start_is_harmless(tree):
    w = Watcher(str(tree), PathFilter(), queue.Queue(), threading.Event())
    w.stop()
    assert w.join(0.1)
    w2 = Watcher(str(tree), PathFilter(), queue.Queue(), threading.Event(), interval_s=0.05)
    w2.start()
    try:
        with pytest.raises(RuntimeError):
            w2.start()
    finally:
        w2.stop()
        assert w2.join(10)


def test_shutdown_event_ends_the_thread(tree):
    base = threading.active_count()
    ev = threading.Event()
    w = Watcher(str(tree), PathFilter(), queue.Queue(), ev, interval_s=0.05)
    w.start()
    ev.set()
    assert w.join(10)
    assert threading.active_count() == base


class _BrokenQueue(queue.Queue):
    """A consumer that fails: the watcher must log, set shutdown and end."""

    def put(self, item, block=True, timeout=None):
        raise RuntimeError("queue is broken")


def test_crash_logs_and_sets_shutdown(tree, caplog):
    ev = threading.Event()
    told = []
    w = Watcher(str(tree), PathFilter(), _BrokenQueue(), ev, interval_s=0.05)
    w.on_crash = told.append
    w.start()
    write(tree / "boom.go")
    assert ev.wait(10)
    assert w.join(10)
    assert told == ["air-watcher"]
    crashed = [r for r in caplog.records if r.getMessage() == "air-watcher crashed"]
    assert crashed and crashed[0].exc_info is not None


# -- from_config ---------------------------------------------------------------------------

def _cfg(root, **build):
    b = dict(include_ext=["go"], include_dir=[], include_file=[], exclude_dir=["vendor"],
             exclude_file=[], exclude_regex=["_test.go"], exclude_unchanged=False,
             follow_symlink=False, poll=False, poll_interval_s=None, watcher="poll",
             rules=(), bin="./tmp/main", entrypoint=(), full_bin="")
    b.update(build)
    b["exclude_regex_compiled"] = [re.compile(p) for p in b["exclude_regex"]]
    return SimpleNamespace(root_path=str(root), tmp_path=str(root / "tmp"),
                           testdata_path=str(root / "testdata"), build=SimpleNamespace(**b))


def test_from_config(tree):
    q, ev = queue.Queue(), threading.Event()
    w = Watcher.from_config(_cfg(tree, poll_interval_s=0.75, follow_symlink=True), q, ev)
    assert (w.backend, w.interval_s, w.follow_symlink) == ("poll", 0.75, True)
    assert w.root_path == str(tree)
    w.poll_once()
    write(tree / "vendor" / "v.go")
    write(tree / "x_test.go")
    write(tree / "y.go")
    assert rel(w.poll_once(), tree) == (["y.go"], [], [])


def test_from_config_backend_choice(tree):
    q, ev = queue.Queue(), threading.Event()
    assert Watcher.from_config(_cfg(tree, watcher="inotify"), q, ev).backend == "inotify"
    assert Watcher.from_config(_cfg(tree, watcher="inotify", poll=True), q, ev).backend == "poll"
    assert Watcher.from_config(_cfg(tree), q, ev).backend == "poll"
    assert Watcher.from_config(_cfg(tree, watcher="auto"), q, ev).backend == "auto"
    # Air's poll = true forces polling whatever build.watcher says
    assert Watcher.from_config(_cfg(tree, watcher="auto", poll=True), q, ev).backend == "poll"
    # config.py refuses any other name with a message for the user; here it is a bug
    with pytest.raises(ValueError, match="fsevents"):
        Watcher.from_config(_cfg(tree, watcher="fsevents"), q, ev)


# -- inotify specifics ---------------------------------------------------------------------

@needs_inotify
def test_inotify_watch_limit_at_start_falls_back_with_one_warning(tree, caplog):
    with caplog.at_level(logging.WARNING, logger="air_std.watcher"):
        w = make(tree, "inotify", max_watches=2)
    assert w.active_backend == "poll"
    warnings = [r for r in caplog.records if "falling back to polling" in r.getMessage()]
    assert len(warnings) == 1
    write(tree / "pkg" / "n.go")
    assert rel(w.poll_once(), tree) == (["pkg/n.go"], [], [])


@needs_inotify
def test_inotify_watch_limit_mid_run_falls_back_without_losing_changes(tree, caplog):
    w = make(tree, "inotify", max_watches=5)
    assert w.active_backend == "inotify"
    with caplog.at_level(logging.WARNING, logger="air_std.watcher"):
        for i in range(4):
            write(tree / ("d%d" % i) / "x.go")
        write(tree / "main.go", "changed")
        batch = w.poll_events(0.0)
    assert w.active_backend == "poll"
    assert rel(batch, tree) == (["d0/x.go", "d1/x.go", "d2/x.go", "d3/x.go"], ["main.go"], [])
    assert len([r for r in caplog.records if "falling back" in r.getMessage()]) == 1
    write(tree / "d0" / "y.go")
    assert rel(w.poll_once(), tree) == (["d0/y.go"], [], [])


@needs_inotify
def test_inotify_without_events_reports_nothing(tree):
    w = make(tree, "inotify")
    assert w.poll_events(0.0) is None
    write(tree / "notes.txt")  # an event, but for an unwatched file
    assert w.poll_events(0.0) is None
    w.close()


# -- property: tiers, inotify and blind auto report what a full scan does ---------------------

def reference_scan(root, filters, follow):
    """The plain, obviously correct scan: {abs path: (mtime_ns, size, ino)}."""
    out = {}

    def walk(path, rule, ancestors):
        try:
            names = os.listdir(path)
        except OSError:
            return
        for name in names:
            p = path + "/" + name
            try:
                lst = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(lst.st_mode):
                child = filters.dir_rule(rule, name)
                if child is not None:
                    walk(p, child, ancestors + [(lst.st_dev, lst.st_ino)])
                continue
            st_ = lst
            if stat.S_ISLNK(lst.st_mode):
                try:
                    st_ = os.stat(p)
                except OSError:
                    continue
                if stat.S_ISDIR(st_.st_mode):
                    ident = (st_.st_dev, st_.st_ino)
                    if follow and ident not in ancestors:
                        child = filters.dir_rule(rule, name)
                        if child is not None:
                            walk(p, child, ancestors + [ident])
                    continue
            if rule.accept(name):
                out[p] = (st_.st_mtime_ns, st_.st_size, st_.st_ino)

    try:
        st0 = os.stat(root)
    except OSError:
        return out
    walk(root, filters.root_rule(), [(st0.st_dev, st0.st_ino)])
    return out


def expected_diff(prev, cur):
    created = sorted(set(cur) - set(prev))
    deleted = sorted(set(prev) - set(cur))
    modified = sorted(p for p in set(cur) & set(prev) if cur[p] != prev[p])
    return created, modified, deleted


def as_lists(*batches):
    c, m, d = [], [], []
    for b in batches:
        if b is not None:
            c += b.created
            m += b.modified
            d += b.deleted
    return c, m, d


FILE_NAMES = ["a.go", "b.go", "c.txt", ".h.go", "t.go~", "noext"]
DIR_NAMES = ["d", "e", "tmp", ".git", "v"]
OPS = ["create", "create", "modify", "modify", "delete", "rename", "save", "mkdir", "mkdir",
       "rmdir", "mvdir", "symlink", "symlink", "relink", "utime"]


def _listing(root):
    dirs, files = [root], []
    for dp, dns, fns in os.walk(root):
        dirs += [os.path.join(dp, d) for d in dns if not os.path.islink(os.path.join(dp, d))]
        files += [os.path.join(dp, f) for f in fns]
        files += [os.path.join(dp, d) for d in dns if os.path.islink(os.path.join(dp, d))]
    return sorted(dirs), sorted(files)


def apply_op(root, op, i, j, k):
    dirs, files = _listing(root)
    d = dirs[i % len(dirs)]
    try:
        if op == "create":
            p = os.path.join(d, FILE_NAMES[j % len(FILE_NAMES)])
            if not os.path.isdir(p):
                with open(p, "w") as f:
                    f.write("x" * (k % 4))
        elif op == "modify" and files:
            p = files[j % len(files)]
            if os.path.isfile(p):
                st0 = os.stat(p)
                with open(p, "r+") as f:
                    f.truncate(0)
                    f.write("y" * (k % 4))
                if k % 3 == 0:  # same mtime tick: only size (if any) tells
                    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))
        elif op == "delete" and files:
            os.unlink(files[j % len(files)])
        elif op == "rename" and files:
            os.rename(files[j % len(files)], os.path.join(d, FILE_NAMES[k % len(FILE_NAMES)]))
        elif op == "save" and files:
            p = files[j % len(files)]
            tmp = os.path.join(os.path.dirname(p), ".save.tmp~")
            with open(tmp, "w") as f:
                f.write("z" * (k % 4))
            if k % 2 and os.path.exists(p):
                st0 = os.stat(p)
                os.utime(tmp, ns=(st0.st_atime_ns, st0.st_mtime_ns))
            os.replace(tmp, p)
        elif op == "mkdir":
            os.mkdir(os.path.join(d, (DIR_NAMES + FILE_NAMES)[j % 11]))
        elif op == "rmdir" and d != root:
            shutil.rmtree(d)
        elif op == "mvdir" and d != root:
            dst_parent = dirs[j % len(dirs)]
            if not (dst_parent + "/").startswith(d + "/"):
                os.rename(d, os.path.join(dst_parent, DIR_NAMES[k % len(DIR_NAMES)]))
        elif op == "symlink":
            targets = dirs + files + [os.path.join(root, "nowhere.go")]
            target = targets[j % len(targets)]
            name = (FILE_NAMES + DIR_NAMES)[k % 11]
            # Absolute targets only: a relative link moved by "rename" could
            # point out of the temp tree (to /tmp, or /) and make the scan huge.
            os.symlink(target, os.path.join(d, name))
        elif op == "relink":
            # replace a file, link or directory by a symlink at the same path
            entries = [x for x in dirs + files if x != root]
            if entries:
                p = entries[j % len(entries)]
                targets = dirs + files
                target = targets[k % len(targets)]
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                tmp = os.path.join(os.path.dirname(p), ".relink.tmp~")
                os.symlink(target, tmp)
                os.replace(tmp, p)
        elif op == "utime" and files:
            t = 10 ** 18 + (k % 3) * 10 ** 9
            os.utime(files[j % len(files)], ns=(t, t))
    except OSError:
        pass  # a random operation may be impossible on the current tree


_AGED = [10 ** 18]  # next "old" directory mtime handed out by age_dirs


def age_dirs(root):
    """Give every directory touched since the last call a new mtime far in the
    past, never one it had before: as if time had passed since the change.
    Without it every directory is too recent to trust its (mtime, inode), and
    the full pass would list them all instead of stat'ing known files only."""
    for dp, dns, _fns in os.walk(root):
        for p in [dp] + [os.path.join(dp, d) for d in dns if os.path.islink(os.path.join(dp, d))]:
            if os.path.islink(p):
                continue
            try:
                if os.stat(p).st_mtime_ns > 15 * 10 ** 17:
                    _AGED[0] += 1000
                    os.utime(p, ns=(_AGED[0], _AGED[0]))
            except OSError:
                pass


op_lists = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 60), st.integers(0, 60),
                              st.integers(0, 60)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=op_lists, follow=st.booleans(), star=st.booleans(), aged=st.booleans())
def test_tiers_inotify_and_blind_auto_match_a_reference_scan(tmp_path, ops, follow, star, aged):
    with tempfile.TemporaryDirectory(dir=str(tmp_path)) as top:
        root = os.path.join(top, "r")
        os.mkdir(root)
        for name in ("a.go", "c.txt"):
            with open(os.path.join(root, name), "w") as f:
                f.write("seed")
        os.mkdir(os.path.join(root, "d"))
        if aged:
            age_dirs(root)
        kw = dict(include_ext=["*"] if star else ["go"], exclude_dir=["v"], follow_symlink=follow)
        poller = make(root, **kw)
        ino = make(root, "inotify", **kw) if HAVE_INOTIFY else None
        # auto with its events dropped: its polling alone must find everything
        os.environ[BLIND_ENV] = "1"
        try:
            blind = make(root, "auto", **kw)
        finally:
            del os.environ[BLIND_ENV]
        try:
            prev = reference_scan(root, poller.filters, follow)
            assert poller.snapshot() == prev
            if ino is not None:
                assert ino.snapshot() == prev
            for op in ops:
                apply_op(root, *op)
                if aged:
                    age_dirs(root)
                cur = reference_scan(root, poller.filters, follow)
                want = expected_diff(prev, cur)
                hot, full = poller.poll_hot(), poller.poll_once()
                got = as_lists(hot, full)
                assert tuple(sorted(x) for x in got) == want, (op, hot, full)
                assert sum(map(len, got)) == sum(map(len, want)), ("reported twice", hot, full)
                assert poller.snapshot() == cur
                if ino is not None:
                    got = as_lists(ino.poll_events(0.0))
                    assert tuple(sorted(x) for x in got) == want, (op, "inotify")
                    assert ino.snapshot() == cur
                got = as_lists(blind.poll_hot(), blind.poll_once())
                assert tuple(sorted(x) for x in got) == want, (op, "auto, blind")
                assert blind.snapshot() == cur
                prev = cur
        finally:
            blind.close()
            if ino is not None:
                ino.close()
