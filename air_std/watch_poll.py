"""The polling driver: finds changes by scanning, in three tiers.

Runs in the watcher thread ("air-watcher"), one `step()` at a time; tests
call `full_pass()` and `hot_pass()` with no thread.

- Full pass: every directory, at the Pacer's interval (fixed when
  configured, otherwise adapted so the thread stays near a 1.5% CPU budget,
  within 0.5-2 s). It lists only directories whose (mtime, inode) moved.
- List-everything pass: every LIST_ALL_EVERY_S the full pass lists every
  directory, for filesystems whose directory mtimes lag.
- Hot pass, every `hot_interval_s` (0.1 s): files changed during this run
  and their directories (watch_hot.HotSet), with one stat per hot file and
  per hot directory; a hot directory is listed again only when its own
  (mtime, inode) moved, or moved recently enough that a same-tick change
  could hide.
"""

import time

from air_std.snapshot import ScanPass
from air_std.watch_driver import MAX_INTERVAL_S, MIN_INTERVAL_S, Driver, thread_time
from air_std.watch_hot import HotSet

__all__ = ["PollDriver", "LIST_ALL_EVERY_S"]

LIST_ALL_EVERY_S = 10.0  # full pass: list even unchanged directories this often


class PollDriver(Driver):
    """Full, list-everything and hot passes over one snapshot."""

    name = "poll"

    def __init__(self, snapshot, pacer, hot_interval_s=0.1):
        super().__init__(snapshot, pacer)
        self.hot_interval_s = hot_interval_s
        self.next_list_all = time.monotonic() + LIST_ALL_EVERY_S  # monotonic time of the next one
        self.hot = HotSet(snapshot)
        self._next_full = None           # monotonic deadlines, from the first step()
        self._next_hot = None

    def baseline(self):
        self.snapshot.scan_tree(ScanPass(self.snapshot, record=False))

    def step(self, stop_event):
        now = time.monotonic()
        if self._next_full is None:
            self._next_full = now + self.pacer.full_interval_s
            self._next_hot = now + self.hot_interval_s
        deadline = min(self._next_full, self._next_hot) if self.hot else self._next_full
        if _wait_until(stop_event, deadline):
            return None
        now = time.monotonic()
        if now >= self._next_full:
            t0 = thread_time()
            scan = self.full_pass()
            if not self.last_pass_listed_all:  # that rare pass is not the norm
                self.pacer.record(thread_time() - t0)
            now = time.monotonic()
            self._next_full = now + self.pacer.full_interval_s
        else:
            scan = self.hot_pass()
        self._next_hot = now + self.hot_interval_s
        return scan

    def full_pass(self):
        # A directory whose (mtime, inode) held since its last listing is not
        # listed again, only its known files are stat'ed; every LIST_ALL_EVERY_S
        # all are listed anyway, for filesystems that do not move a directory's
        # mtime reliably.
        now = time.monotonic()
        list_all = now >= self.next_list_all
        if list_all:
            self.next_list_all = now + LIST_ALL_EVERY_S
        scan = ScanPass(self.snapshot, list_all=list_all)
        self.snapshot.scan_tree(scan)
        self.last_pass_listed_all = list_all
        return scan

    def hot_pass(self):
        scan = ScanPass(self.snapshot)
        self.hot.check(scan)
        return scan

    def after_pass(self, scan):
        """Make the directories and files of this pass's changes hot."""
        self.hot.heat(scan)

    def describe(self):
        if self.pacer.interval_s:
            return "polling every %gs, hot files every %gs" % (self.pacer.interval_s,
                                                               self.hot_interval_s)
        return "polling, adaptive interval %g-%gs, hot files every %gs" % (
            MIN_INTERVAL_S, MAX_INTERVAL_S, self.hot_interval_s)


def _wait_until(stop_event, deadline):
    """Wait on stop_event until the monotonic `deadline`; True when asked to stop."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return stop_event.is_set()
    return stop_event.wait(remaining)

