"""The auto driver (build.watcher = "auto", the default): inotify events as
hints, with polling as the safety net.

Runs in the watcher thread ("air-watcher"), one `step()` at a time; tests
call `event_pass()`, `hot_pass()` and `full_pass()` with no thread. The
Watcher picks this driver only where inotify can be trusted (Linux, every
watched tree on a local filesystem: mounts.py); elsewhere it polls.

Three sources bring the one snapshot up to date:
- inotify events, applied as the inotify driver applies them: a change is
  seen within milliseconds, at almost no CPU;
- the hot set (watch_hot.py) every 0.1 s while it holds files: the changes
  inotify missed (and their directories), so a file being worked on where
  inotify is blind is still seen within about 100 ms. Where inotify works
  nothing is missed, the set stays empty and costs nothing: checking files
  ten times a second would cost more than all the rest;
- the safety net: a steady polling pass over the whole tree (it lists only
  directories whose (mtime, inode) moved), paced to NET_BUDGET of one core
  within NET_MIN_S..NET_MAX_S. Whatever inotify never reports (events lost
  by a filesystem that looked local, a watch the kernel dropped) is found
  within one interval.
A polling phase first applies the events already queued; the events that
arrive while it runs are read at its end. A change it found that none of
them explains is one inotify missed: counted in `missed`, made hot, and the
first one is logged (debug).
"""

import logging
import os
import time

from air_std import inotify
from air_std.watch_driver import Pacer, thread_time
from air_std.watch_hot import HotSet
from air_std.watch_inotify import WAIT_S, InotifyDriver

__all__ = ["AutoDriver", "NET_BUDGET", "NET_MIN_S", "NET_MAX_S", "net_pacer"]

log = logging.getLogger("air_std.watcher")

# The safety net's share of one core. The whole process idles at about 0.2%
# with inotify (mostly the runner's 0.1 s check of the app), so this keeps it
# under 0.5% on a 10k-file tree. On a tree too big for that budget the pass is
# held at NET_MAX_S: a pass over 100k files costs 130-260 ms of CPU (a fast or
# a busy machine), 0.2-0.4% of a core once a minute.
NET_BUDGET = 0.002
NET_MIN_S = 2.0
NET_MAX_S = 60.0


def net_pacer(interval_s=None):
    """The safety net's Pacer: `interval_s` fixed (tests), or adaptive."""
    return Pacer(interval_s, NET_BUDGET, NET_MIN_S, NET_MAX_S)


class AutoDriver(InotifyDriver):
    """inotify events, the hot set and a paced polling pass, on one snapshot."""

    name = "auto"

    def __init__(self, snapshot, pacer, net, hot_interval_s=0.1, max_watches=None):
        """pacer: the Watcher's (used by polling if this driver fails);
        net: the safety net's Pacer (net_pacer())."""
        super().__init__(snapshot, pacer, max_watches)
        self.net = net
        self.hot_interval_s = hot_interval_s
        self.hot = HotSet(snapshot)
        self.missed = 0        # changes found by polling that no event explained
        self._next_net = None  # monotonic deadlines, from the first step()
        self._next_hot = None

    def step(self, stop_event):
        now = time.monotonic()
        if self._next_net is None:
            self._next_net = now + self.net.full_interval_s
            self._next_hot = now + self.hot_interval_s
        due = min(self._next_net, self._next_hot) if self.hot else self._next_net
        events = self._read(min(WAIT_S, max(0.0, due - now)))
        scan = self._new_pass()
        if events or self.snapshot.link_dirs:
            self._apply(events, scan)
        now = time.monotonic()
        if now >= self._next_net:
            t0 = thread_time()
            self._poll(scan, self.snapshot.scan_tree)
            self.net.record(thread_time() - t0)
            now = time.monotonic()
            self._next_net = now + self.net.full_interval_s
            self._next_hot = now + self.hot_interval_s
        elif self.hot and now >= self._next_hot:
            self._poll(scan, self.hot.check)
            self._next_hot = now + self.hot_interval_s
        self._catch_up_if_failed(scan)
        return scan

    def full_pass(self):
        """The safety net's pass, now."""
        scan = self._new_pass()
        self._apply(self._read(0.0), scan)
        self._poll(scan, self.snapshot.scan_tree)
        self._catch_up_if_failed(scan)
        return scan

    def hot_pass(self):
        scan = self._new_pass()
        self._apply(self._read(0.0), scan)
        self._poll(scan, self.hot.check)
        self._catch_up_if_failed(scan)
        return scan

    def after_pass(self, scan):
        """Nothing: only what inotify missed is made hot, by _poll()."""

    def _poll(self, scan, phase):
        """Run a polling phase (phase(scan)), then tell what it found that
        inotify had not reported."""
        marks = (len(scan.created), len(scan.modified), len(scan.deleted), len(scan.new_dirs))
        # A polling phase lists a directory only when its (mtime, inode)
        # moved; events ask for every named directory to be listed.
        scan.list_all = False
        try:
            phase(scan)
        finally:
            scan.list_all = True
        self.last_pass_listed_all = False
        found = (scan.created[marks[0]:] + scan.modified[marks[1]:]
                 + scan.deleted[marks[2]:])
        if not found or self.failed:
            return
        # A change made while the phase ran may have been stat'ed a moment
        # before its event was queued: the events read now explain those.
        late = self._read(0.0)
        explained = self._touched(late)
        self._apply(late, scan)
        if explained is None:  # the queue overflowed: nothing can be told
            return
        missed = [p for p in found if not _explained(p, explained)]
        if not missed:
            return
        gone = set(scan.deleted[marks[2]:])
        for p in missed:
            self.hot.heat_path(p, p not in gone)
        for node in scan.new_dirs[marks[3]:]:
            if not _explained(node.path, explained):
                self.hot.heat_dir(node)
        if not self.missed:
            log.debug("inotify did not report %s; polling found it (%d change(s) in this pass;"
                      " later misses are not logged)",
                      os.path.relpath(missed[0], self.snapshot.root_path), len(missed))
        self.missed += len(missed)

    def _touched(self, events):
        """The paths the events name (directories, and entries in them), or
        None when the queue overflowed."""
        touched = set()
        for wd, mask, _cookie, name in events:
            if mask & inotify.IN_Q_OVERFLOW:
                return None
            for n in self.nodes_of(wd):
                touched.add(n.path)
                if name:
                    touched.add(n.prefix + name)
        return touched

    def describe(self):
        if self.net.interval_s:
            net = "every %gs" % self.net.interval_s
        else:
            net = "every %g-%gs (adaptive)" % (NET_MIN_S, NET_MAX_S)
        return "inotify, a polling safety net %s, files inotify missed every %gs" % (
            net, self.hot_interval_s)


def _explained(path, touched):
    """True when `path` or one of its directories is in `touched`."""
    p = path
    while p:
        if p in touched:
            return True
        p = p.rpartition("/")[0]
    return "/" in touched
