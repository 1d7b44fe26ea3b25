"""What the watcher thread drives: one way of finding changes (a `Driver`),
and the pacing of full passes that the drivers share (`Pacer`).

Runs in the watcher thread ("air-watcher"); tests also call drivers with no
thread. The Watcher (watcher.py) holds one snapshot.Snapshot and one Driver
at a time; each driver brings the same snapshot up to date its own way:
- watch_poll.PollDriver: full passes at a paced interval, plus a hot set of
  recently changed files checked every 100 ms;
- watch_inotify.InotifyDriver: waits for inotify events and confirms each
  through the snapshot, so both report the same changes;
- watch_auto.AutoDriver: the inotify driver's events, plus the polling
  driver's hot set and a slow, budgeted full pass as a safety net.
A driver that can no longer do its job (inotify unavailable, the watch limit
reached) sets `failed` (and `fail_reason`); the Watcher then swaps in a
PollDriver on the same snapshot.
"""

import time

__all__ = ["Driver", "Pacer", "MIN_INTERVAL_S", "MAX_INTERVAL_S", "CPU_BUDGET", "thread_time"]

MIN_INTERVAL_S = 0.5      # Air's minimum poll interval
MAX_INTERVAL_S = 2.0      # adaptive full pass: at least this often
CPU_BUDGET = 0.015        # adaptive full pass: share of one core, under 2% so
                          # the whole process (wakeups, hot passes) stays within it

# CPU time of the calling thread: what a pass costs, whatever else the machine does.
thread_time = getattr(time, "thread_time", time.perf_counter)


class Pacer:
    """How long from one full pass to the next: `interval_s` when configured,
    else the measured CPU cost of a pass divided by `budget` (a share of one
    core), kept within [min_s, max_s]. The polling driver's full pass uses
    the defaults; the auto driver's safety net has its own, smaller budget."""

    def __init__(self, interval_s=None, budget=CPU_BUDGET, min_s=MIN_INTERVAL_S,
                 max_s=MAX_INTERVAL_S):
        self.interval_s = interval_s
        self.budget = budget
        self.min_s = min_s
        self.max_s = max_s
        self.full_interval_s = interval_s if interval_s else min_s
        self.last_cpu_s = 0.0

    def record(self, cpu_s):
        """Note the CPU seconds of a full pass (or the baseline) and re-pace."""
        self.last_cpu_s = cpu_s
        if self.interval_s:
            self.full_interval_s = self.interval_s
            return
        self.full_interval_s = max(self.min_s, min(self.max_s, cpu_s / self.budget))


class Driver:
    """The interface every driver implements, with the defaults of a driver
    that has no hot set and no events.

    Each method that scans returns the snapshot.ScanPass it ran (its changes
    are the Watcher's to report), or None when it did nothing.
    """

    name = "?"  # what Watcher.active_backend reports

    def __init__(self, snapshot, pacer):
        self.snapshot = snapshot
        self.pacer = pacer
        self.failed = False                # True: replace me by polling
        self.fail_reason = ""              # why, for the Watcher's one log line
        self.last_pass_listed_all = False  # the last full pass listed every directory

    def baseline(self):
        """Fill the empty snapshot (nothing is reported)."""
        raise NotImplementedError

    def step(self, stop_event):
        """The thread's one unit of work: wait for what this driver waits for
        (bounded, and returning None early once stop_event is set), then scan."""
        raise NotImplementedError

    def full_pass(self):
        """Bring the whole snapshot up to date now."""
        raise NotImplementedError

    def hot_pass(self):
        """Check the files changed recently (polling); others have none."""
        return None

    def event_pass(self, timeout_s):
        """Wait up to timeout_s for events and apply them (inotify); others have none."""
        return None

    def after_pass(self, scan):
        """Told of every pass reported, whichever driver ran it."""

    def describe(self):
        """How this driver watches, for the start-up line."""
        return self.name

    def close(self):
        """Release what the driver holds (an fd); idempotent."""
