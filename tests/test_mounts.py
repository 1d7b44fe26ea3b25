"""Tests for mounts.py, the auto watcher's decision between inotify and
polling: the real mount table of this machine for the local case, and
mountinfo texts written here for the network and shared filesystems this
machine does not have (NFS, SMB, WSL2's 9p, FUSE, VirtualBox, virtiofs);
then the Watcher acting on the decision, with its one log line.
"""

import logging
import os
import queue
import sys
import threading

import pytest

from air_std import mounts
from air_std.filters import PathFilter
from air_std.watcher import Watcher
from test_watcher import HAVE_INOTIFY, rel, write

linux_only = pytest.mark.skipif(not os.path.exists(mounts.MOUNTINFO),
                                reason="no /proc/self/mountinfo here")


def table(*lines):
    """A mountinfo text: each line (point, fstype, source) after a local root."""
    out = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    for i, (point, fstype, source) in enumerate(lines):
        out.append("%d 22 0:%d / %s rw,relatime shared:%d - %s %s rw,vers=4.2"
                   % (30 + i, 40 + i, point, 2 + i, fstype, source))
    return "\n".join(out) + "\n"


# -- the real table ---------------------------------------------------------------

@linux_only
def test_the_real_table_finds_the_mount_holding_a_path(tmp_path):
    with open(mounts.MOUNTINFO, "rb") as f:
        found = mounts.mount_of(os.path.realpath(str(tmp_path)), mounts.parse_mountinfo(f.read()))
    assert found is not None
    # the mount point found is on the same filesystem as the path
    assert os.stat(found.point).st_dev == os.stat(str(tmp_path)).st_dev
    assert str(tmp_path).startswith(found.point.rstrip("/") + "/")


@linux_only
def test_a_tree_on_this_machines_local_disk_is_judged_local(tmp_path):
    with open(mounts.MOUNTINFO, "rb") as f:
        fstype = mounts.mount_of(os.path.realpath(str(tmp_path)),
                                 mounts.parse_mountinfo(f.read())).fstype
    if mounts.kind_of(fstype) != "local":
        pytest.skip("the temporary directory is on %s here" % fstype)
    verdict = mounts.judge([str(tmp_path)])
    assert verdict == mounts.Verdict(True, "on %s" % fstype)


# -- written tables: what this machine does not have -------------------------------

@pytest.mark.parametrize("fstype,source", [
    ("nfs4", "server:/export/home"),
    ("nfs", "server:/export"),
    ("cifs", "//nas/share"),
    ("smb3", "//nas/share"),
    ("9p", "drvfs"),              # WSL2's /mnt/c
    ("virtiofs", "myfs"),         # Docker Desktop, VMs
    ("vboxsf", "project"),        # VirtualBox shared folders
    ("fuse.sshfs", "me@host:/src"),
    ("fuse.grpcfuse", "grpcfuse"),
    ("fuseblk", "/dev/sdb1"),
])
def test_network_and_shared_filesystems_are_not_trusted(fstype, source):
    t = table(("/mnt/share", fstype, source))
    verdict = mounts.judge(["/mnt/share/proj"], t)
    assert not verdict.local
    assert verdict.why == ("/mnt/share/proj is on %s (%s), a network or shared filesystem: "
                           "inotify misses changes made from its other side" % (fstype, source))


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs"])
def test_local_filesystems_are_trusted(fstype):
    verdict = mounts.judge(["/srv/proj"], table(("/srv", fstype, "/dev/sdb1")))
    assert verdict == mounts.Verdict(True, "on %s" % fstype)


def test_an_unknown_type_is_polled_with_its_name():
    verdict = mounts.judge(["/data/proj"], table(("/data", "weirdfs", "x")))
    assert verdict == mounts.Verdict(
        False, "/data/proj is on weirdfs, a filesystem type not known to deliver inotify events")


def test_the_longest_mount_point_wins_and_the_top_of_a_stack():
    t = table(("/mnt", "nfs4", "a:/"), ("/mnt/local", "ext4", "/dev/sdc"),
              ("/mnt/localish", "cifs", "//x/y"))
    assert mounts.judge(["/mnt/local/proj"], t).local
    assert not mounts.judge(["/mnt/localish/proj"], t).local  # not a prefix of /mnt/local
    assert not mounts.judge(["/mnt/other"], t).local
    # two mounts on one point: the later one is on top
    stacked = table(("/w", "nfs4", "a:/"), ("/w", "ext4", "/dev/sdd"))
    assert mounts.judge(["/w/proj"], stacked).local
    stacked = table(("/w", "ext4", "/dev/sdd"), ("/w", "nfs4", "a:/"))
    assert not mounts.judge(["/w/proj"], stacked).local


def test_mount_points_with_escaped_characters():
    t = table(("/home/me/My\\040Projects", "nfs4", "srv:/my\\040projects"))
    parsed = mounts.parse_mountinfo(t)
    assert parsed[-1] == mounts.Mount("/home/me/My Projects", "nfs4", "srv:/my projects")
    assert not mounts.judge(["/home/me/My Projects/app"], t).local
    assert mounts.judge(["/home/me/My"], t).local


def test_every_tree_counts_and_the_first_remote_one_is_named():
    t = table(("/mnt/share", "nfs4", "srv:/e"))
    verdict = mounts.judge(["/home/me/proj", "/mnt/share/lib"], t)
    assert not verdict.local and verdict.why.startswith("/mnt/share/lib is on nfs4")
    assert mounts.judge(["/home/me/proj", "/home/me/lib"], t).local


def test_a_share_mounted_inside_the_tree_counts_unless_it_is_never_walked():
    t = table(("/home/me/proj/shared", "cifs", "//nas/s"), ("/home/me/proj/proc", "proc", "proc"))
    verdict = mounts.judge(["/home/me/proj"], t)
    assert not verdict.local and verdict.why.startswith("/home/me/proj/shared is on cifs")
    assert mounts.judge(["/home/me/proj"], t, walked=lambda p: not p.endswith("/shared")).local


def test_a_tree_given_through_a_symlink_is_judged_where_it_leads(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    t = table((os.path.realpath(str(real)), "nfs4", "srv:/r"))
    verdict = mounts.judge([str(link)], t)
    assert not verdict.local and verdict.why.startswith(os.path.realpath(str(real)) + " is on nfs4")


def test_an_unreadable_or_empty_table_means_polling():
    assert mounts.judge(["/x"], "") == mounts.Verdict(
        False, "the mount table %s lists no mount" % mounts.MOUNTINFO)
    assert mounts.judge(["/x"], "garbage line\n").local is False


# -- the Watcher acting on it -------------------------------------------------------

def _records(caplog, level):
    return [r.getMessage() for r in caplog.records
            if r.name == "air_std.watcher" and r.levelno == level]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_auto_on_a_network_filesystem_polls_and_says_why_in_one_info_line(tmp_path, caplog):
    root = tmp_path / "proj"
    write(root / "main.go")
    t = table((os.path.realpath(str(tmp_path)), "nfs4", "srv:/export"))
    q = queue.Queue()
    w = Watcher(str(root), PathFilter(include_ext=["go"]), q, threading.Event(),
                backend="auto", mount_table=t, interval_s=0.05)
    with caplog.at_level(logging.INFO, logger="air_std.watcher"):
        w.start()
        try:
            write(root / "new.go")
            assert str(root / "new.go") in q.get(timeout=10).created
        finally:
            w.stop()
            assert w.join(10)
    assert w.active_backend == "poll"
    why = "%s is on nfs4 (srv:/export), a network or shared filesystem: inotify misses " \
          "changes made from its other side; watching by polling" % os.path.realpath(str(root))
    infos = _records(caplog, logging.INFO)
    assert infos[0] == why
    assert infos[1] == "watching 1 files in 1 directories (polling every 0.05s, hot files every 0.1s)"
    assert len(infos) == 2 and not _records(caplog, logging.WARNING)


@pytest.mark.skipif(not HAVE_INOTIFY, reason="inotify is not available here")
def test_auto_takes_the_include_dirs_and_the_excluded_mounts_into_account(tmp_path):
    root = tmp_path / "proj"
    write(root / "src" / "a.go")
    write(root / "vendor" / "v.go")
    real = os.path.realpath(str(root))
    share = table((real + "/vendor", "nfs4", "srv:/v"))

    def backend(**filters):
        w = Watcher(str(root), PathFilter(include_ext=["go"], **filters), queue.Queue(),
                    threading.Event(), backend="auto", mount_table=share)
        try:
            assert w.poll_once() is None
            return w.active_backend
        finally:
            w.close()

    assert backend() == "poll"                               # walked: its files are watched
    assert backend(exclude_dir=["vendor"]) == "auto"         # never walked
    assert backend(include_dir=["src"]) == "auto"            # outside include_dir: not walked
    assert backend(include_dir=["src", "vendor"]) == "poll"


@pytest.mark.skipif(not HAVE_INOTIFY, reason="inotify is not available here")
def test_auto_on_a_local_disk_takes_inotify_events(tmp_path, caplog):
    root = tmp_path / "proj"
    write(root / "main.go")
    with caplog.at_level(logging.DEBUG, logger="air_std.watcher"):
        w = Watcher(str(root), PathFilter(include_ext=["go"]), queue.Queue(), threading.Event(),
                    backend="auto", mount_table=table((os.path.realpath(str(tmp_path)), "xfs",
                                                       "/dev/sdb")))
        try:
            assert w.poll_once() is None
            assert w.active_backend == "auto"
            write(root / "new.go")
            assert rel(w.poll_events(0.0), root) == (["new.go"], [], [])
        finally:
            w.close()
    assert "the watched trees are on xfs: inotify can be trusted there" in [
        r.getMessage() for r in caplog.records]
