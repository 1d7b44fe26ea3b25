"""The inotify driver (Linux; build.watcher = "inotify", and the base of
the auto driver, watch_auto.py).

Runs in the watcher thread ("air-watcher"), one `step()` at a time: it
waits on the inotify fd (bounded) and applies the events; tests call
`event_pass()` and `full_pass()` with no thread. Imported only when inotify
may be used, so polling never loads ctypes.

Events are hints: each is confirmed by listing the directory or stating the
file through the snapshot's own code, so this driver and polling report the
same changes. A directory is watched just before it is listed (the
snapshot calls `add()`), so nothing created after the listing is missed.
Directories holding symlinks are listed on every step, because a link's
target may change where no watch sees it. A queue overflow means a full
pass. When inotify is unavailable or the watch limit is reached: `failed`
(with `fail_reason`), and the Watcher swaps in polling with one log line.

Test hook: with the environment variable AIR_STD_TEST_BLIND_INOTIFY=1 set
when the driver is made, every event is read and dropped, as on a
filesystem where inotify stays silent. Tests and benchmarks use it to show
that the auto driver's polling still finds every change; it has no use
outside them.
"""

import errno
import logging
import os
from collections import OrderedDict

from air_std import inotify
from air_std.snapshot import GONE_ERRNOS, ScanPass
from air_std.watch_driver import Driver

__all__ = ["InotifyDriver", "BLIND_ENV"]

log = logging.getLogger("air_std.watcher")

WAIT_S = 0.5  # longest wait for events in the thread; stop() is seen within it
BLIND_ENV = "AIR_STD_TEST_BLIND_INOTIFY"  # the test hook (see above)


class InotifyDriver(Driver):
    """Watches every walked directory with inotify; also the snapshot's watch
    registry (ScanPass.watches: `add`, `discard`)."""

    name = "inotify"

    def __init__(self, snapshot, pacer, max_watches=None):
        """max_watches: cap on watches below the kernel's own limit (beyond
        it: fall back to polling; tests use a small cap)."""
        super().__init__(snapshot, pacer)
        self.max_watches = max_watches
        self._ino = None
        # watch descriptor -> Node; a directory reached by two paths (through
        # a symlink, or moved while a pass runs) shares its inode's wd, and
        # the other nodes wait in _wd_more. One dict of nodes rather than one
        # of lists spares a list per directory.
        self._wd_node = {}
        self._wd_more = {}  # wd -> [Node], rarely used
        self.blind = os.environ.get(BLIND_ENV) == "1"
        try:
            self._ino = inotify.Inotify()
        except (OSError, AttributeError) as e:
            if getattr(e, "errno", None) == errno.EMFILE:
                # inotify_init1's EMFILE is usually the per-user instance limit
                self._fail("no inotify instance left (%s; raise fs.inotify.max_user_instances)"
                           % (e.strerror or e))
            else:
                self._fail("inotify is unavailable here (%s)" % (e,))

    def _new_pass(self, record=True):
        # Every directory is listed: a pass here is asked for by an event (or
        # is a full pass after an overflow), and the directory's key is no
        # reason to skip it.
        return ScanPass(self.snapshot, list_all=True, watches=self, record=record)

    def baseline(self):
        self.snapshot.scan_tree(self._new_pass(record=False))

    def step(self, stop_event):
        return self.event_pass(WAIT_S)

    def full_pass(self):
        scan = self._new_pass()
        self.snapshot.scan_tree(scan)
        self.last_pass_listed_all = True
        return scan

    def event_pass(self, timeout_s):
        if self._ino is None:
            return None
        events = self._read(timeout_s)
        if not events and not self.snapshot.link_dirs:
            return None
        scan = self._new_pass()
        self._apply(events, scan)
        self._catch_up_if_failed(scan)
        return scan

    def _read(self, timeout_s):
        """The events queued within timeout_s (none once closed)."""
        if self._ino is None:
            return []
        events = self._ino.read_events(timeout_s)
        return [] if self.blind else events

    def _apply(self, events, scan):
        """Bring the directories and files the events name up to date, and
        every directory holding symlinks, recording on `scan`."""
        snapshot = self.snapshot
        dirty = self._dirty_dirs(events)
        if dirty is None:
            log.debug("inotify queue overflowed; doing a full pass")
            snapshot.scan_tree(scan)
            return
        # A symlink's target may live in a directory we do not watch (pruned,
        # or outside the root), so no event would tell us about it: list every
        # directory holding symlinks again, on each event and each timeout.
        for n in list(snapshot.link_dirs):
            if n.alive:
                dirty[n] = None
            else:
                snapshot.link_dirs.discard(n)
        # Parents first: a parent's listing may drop or replace a child.
        for n, names in sorted(dirty.items(), key=_depth):
            if not n.alive:
                continue
            if names is None:
                snapshot.scan_dir(n, scan)
            else:
                for name in names:
                    if snapshot.check_file(n, name, scan):
                        break
        snapshot.drain(scan)

    def _catch_up_if_failed(self, scan):
        """Fell back mid-way: directories left unwatched may have changed
        unseen since. Catch up with a pass that lists them all."""
        if self.failed:
            scan.watches = None
            scan.list_all = True
            self.snapshot.scan_tree(scan)

    def _dirty_dirs(self, events):
        """{node: None (list it) or set of file names to stat}, in event order;
        None when the kernel's queue overflowed (events were lost)."""
        dirty = OrderedDict()
        overflow = False
        for wd, mask, _cookie, name in events:
            if mask & inotify.IN_Q_OVERFLOW:
                overflow = True
                continue
            if mask & inotify.IN_IGNORED:  # the kernel dropped the watch
                for n in self.nodes_of(wd):
                    n.wd = None
                    dirty[n] = None
                self._wd_node.pop(wd, None)
                self._wd_more.pop(wd, None)
                continue
            content_only = name and not (mask & (inotify.STRUCTURE | inotify.IN_ISDIR))
            for n in self.nodes_of(wd):
                if not n.alive:
                    continue
                if not content_only:
                    dirty[n] = None  # entries came or went: list the directory
                elif n not in dirty:
                    dirty[n] = {name}
                elif dirty[n] is not None:
                    dirty[n].add(name)
        return None if overflow else dirty

    # -- the watch registry (called by the snapshot) --------------------------------

    def nodes_of(self, wd):
        """The snapshot's nodes watched through `wd` (usually one)."""
        first = self._wd_node.get(wd)
        if first is None:
            return ()
        more = self._wd_more.get(wd)
        return (first,) if more is None else [first] + more

    def add(self, node):
        """Add (or refresh) the watch of a directory about to be listed."""
        ino = self._ino
        if ino is None:  # fell back: the rest of this pass lists without watching
            return
        cap = self.max_watches
        if cap is not None and node.wd is None and len(self._wd_node) >= cap:
            self._fail("inotify watch limit (%d) reached" % cap)
            return
        try:
            wd = ino.add_watch(node.path, follow=node.is_link or node.parent is None)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._fail("inotify watch limit reached (raise fs.inotify.max_user_watches)")
            elif e.errno not in GONE_ERRNOS and e.errno not in (errno.EACCES, errno.EPERM):
                self._fail("inotify_add_watch failed on %s (%s)" % (node.path, e))
            return
        if wd == node.wd:
            return
        if node.wd is not None:
            self.discard(node)
        node.wd = wd
        if self._wd_node.setdefault(wd, node) is not node:
            self._wd_more.setdefault(wd, []).append(node)

    def discard(self, node):
        """Stop watching a directory dropped from the snapshot (or re-watched)."""
        wd = node.wd
        if wd is None:
            return
        node.wd = None
        more = self._wd_more.get(wd)
        if more is not None and node in more:
            more.remove(node)
        elif self._wd_node.get(wd) is node:
            if more:
                self._wd_node[wd] = more.pop(0)
            else:
                del self._wd_node[wd]
        else:
            return
        if not more:
            self._wd_more.pop(wd, None)
        if wd not in self._wd_node and self._ino is not None:
            self._ino.rm_watch(wd)

    # -- failing and closing ------------------------------------------------------

    def _fail(self, why):
        # The Watcher logs `why` when it swaps in polling: as a warning when
        # inotify was asked for, as information under "auto".
        if not self.failed:
            self.failed = True
            self.fail_reason = why
        self.close()

    def close(self):
        ino = self._ino
        self._ino = None
        if ino is not None:
            ino.close()
        if self._wd_node:
            self._wd_node = {}
            self._wd_more = {}
            for n in self.snapshot.nodes():
                n.wd = None


def _depth(item):
    return item[0].path.count("/")
