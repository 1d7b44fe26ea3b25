"""The inotify driver (Linux, opt-in with build.watcher = "inotify").

Runs in the watcher thread ("air-watcher"), one `step()` at a time: it
waits on the inotify fd (bounded) and applies the events; tests call
`event_pass()` and `full_pass()` with no thread. Imported only when that
backend is chosen, so polling never loads ctypes.

Events are hints: each is confirmed by listing the directory or stating the
file through the snapshot's own code, so this driver and polling report the
same changes. A directory is watched just before it is listed (the
snapshot calls `add()`), so nothing created after the listing is missed.
Directories holding symlinks are listed on every step, because a link's
target may change where no watch sees it. A queue overflow means a full
pass. When inotify is unavailable or the watch limit is reached: one
warning, `failed`, and the Watcher swaps in polling.
"""

import errno
import logging
from collections import OrderedDict

from air_std import inotify
from air_std.snapshot import GONE_ERRNOS, ScanPass
from air_std.watch_driver import Driver

__all__ = ["InotifyDriver"]

log = logging.getLogger("air_std.watcher")

WAIT_S = 0.5  # longest wait for events in the thread; stop() is seen within it


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
        self._wd_nodes = {}  # watch descriptor -> [Node] (one inode may be reached twice)
        try:
            self._ino = inotify.Inotify()
        except (OSError, AttributeError) as e:
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
        events = self._ino.read_events(timeout_s)
        snapshot = self.snapshot
        if not events and not snapshot.link_dirs:
            return None
        scan = self._new_pass()
        dirty = self._dirty_dirs(events)
        if dirty is None:
            log.debug("inotify queue overflowed; doing a full pass")
            snapshot.scan_tree(scan)
            return scan
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
        if self.failed:
            # Fell back mid-way: directories left unwatched may have changed
            # unseen since. Catch up with a pass that lists them all.
            scan.watches = None
            snapshot.scan_tree(scan)
        return scan

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
                for n in self._wd_nodes.pop(wd, ()):
                    n.wd = None
                    dirty[n] = None
                continue
            content_only = name and not (mask & (inotify.STRUCTURE | inotify.IN_ISDIR))
            for n in self._wd_nodes.get(wd, ()):
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

    def add(self, node):
        """Add (or refresh) the watch of a directory about to be listed."""
        ino = self._ino
        if ino is None:  # fell back: the rest of this pass lists without watching
            return
        cap = self.max_watches
        if cap is not None and node.wd is None and len(self._wd_nodes) >= cap:
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
        self._wd_nodes.setdefault(wd, []).append(node)

    def discard(self, node):
        """Stop watching a directory dropped from the snapshot (or re-watched)."""
        wd = node.wd
        if wd is None:
            return
        node.wd = None
        nodes = self._wd_nodes.get(wd)
        if nodes is None:
            return
        if node in nodes:
            nodes.remove(node)
        if not nodes:
            del self._wd_nodes[wd]
            if self._ino is not None:
                self._ino.rm_watch(wd)

    # -- failing and closing ------------------------------------------------------

    def _fail(self, why):
        log.warning("%s; falling back to polling", why)
        self.failed = True
        self.close()

    def close(self):
        ino = self._ino
        self._ino = None
        if ino is not None:
            ino.close()
        if self._wd_nodes:
            self._wd_nodes = {}
            for n in self.snapshot.nodes():
                n.wd = None


def _depth(item):
    return item[0].path.count("/")
