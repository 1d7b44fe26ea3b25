"""Debouncing changes: one build for a burst of saves.

Used by the runner thread; no thread of its own, no I/O. The clock is passed
in (time.monotonic by default) so the rules below can be tested without
waiting or building.

Changed paths collect until `delay_s` has passed without a new change (Air's
`build.delay`). A steady stream of changes (a generator writing files, a
formatter touching the tree) would push that moment back forever, so a batch
is also due at `cap_s` after its first change: ten delays, and at least 2 s so
that a short delay still lets a burst of saves through as one batch. Taking
the batch starts a new window: changes that arrive while a build runs are
timed from their own arrival, not from the batch being built.

A restart asked for by hand (SIGUSR1) makes the batch due at once, with
whatever changes are pending.
"""

import time

__all__ = ["Debouncer"]

MIN_CAP_S = 2.0
CAP_DELAYS = 10


class Debouncer:
    """The changes waiting for a build, and when they are due."""

    def __init__(self, delay_s, clock=time.monotonic):
        self.delay_s = max(0.0, delay_s)
        self.cap_s = max(MIN_CAP_S, CAP_DELAYS * self.delay_s)
        self.clock = clock
        self._paths = []
        self._first = None
        self._last = None
        self._now = None   # when a restart was asked for, if one was

    def __bool__(self):
        return bool(self._paths) or self._now is not None

    def request_now(self):
        """A restart asked for by hand: due at once (the pending paths go with it)."""
        if self._now is None:
            self._now = self.clock()

    def add(self, paths):
        """Note changed paths, now; an empty sequence changes nothing."""
        if not paths:
            return
        now = self.clock()
        self._paths.extend(paths)
        if self._first is None:
            self._first = now
        self._last = now

    def deadline(self):
        """The clock value at which the pending changes are due; None if there are none."""
        if self._now is not None:
            return self._now
        if not self._paths:
            return None
        return min(self._last + self.delay_s, self._first + self.cap_s)

    def due(self):
        deadline = self.deadline()
        return deadline is not None and self.clock() >= deadline

    def wait_s(self, longest):
        """Seconds until the changes are due (0 if they are), at most `longest`."""
        deadline = self.deadline()
        if deadline is None:
            return longest
        return min(longest, max(0.0, deadline - self.clock()))

    def take(self):
        """The pending paths, in arrival order; the next change opens a new window."""
        paths = self._paths
        self._paths = []
        self._first = self._last = self._now = None
        return paths
