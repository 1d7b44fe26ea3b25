"""The watcher: finds created, modified and deleted files under the root (and
under each include_dir outside it) and puts one ChangeBatch per pass with
changes on the runner's queue; with [[build.rules]], the changes a rule takes
go to the rules part's queue instead, one RuleChanges per rule.

Runs in the thread "air-watcher" (started by the engine). The thread's loop
is small: it asks its driver for one step at a time and reports what the
step found. The work is elsewhere:
- snapshot.py: the model of the tree and the scan that updates it;
- watch_poll.py: polling (full, list-everything and hot passes);
- watch_inotify.py: inotify events, each confirmed through the snapshot;
- watch_auto.py: inotify events, with polling as a safety net (the default);
- watch_driver.py: the interface of a driver, and full-pass pacing;
- mounts.py: whether the watched trees are on local filesystems, where
  inotify can be trusted (backend "auto" polls elsewhere).
When the inotify or auto driver fails (inotify unavailable, or the watch
limit reached) the watcher swaps in a polling driver on the same snapshot,
with one log line saying why: a warning when inotify was asked for by name,
information under "auto".

`poll_once()`, `poll_hot()` and `poll_events()` run one pass with no thread
at all (tests and benchmarks do that).
"""

import logging
import os
import queue
import sys

from air_std.filters import PathFilter
from air_std.messages import RuleChanges
from air_std.part import Part
from air_std.snapshot import Snapshot
from air_std.watch_driver import Pacer, thread_time
from air_std.watch_poll import PollDriver

__all__ = ["Watcher", "BACKENDS"]

log = logging.getLogger("air_std.watcher")

BACKENDS = ("auto", "poll", "inotify")


class Watcher(Part):
    """Watches the tree under `root_path` and puts ChangeBatch objects on `out_queue`.

    Thread use: construct and `start()` in the engine's thread; the thread
    "air-watcher" then owns the snapshot and the driver. `stop()` is safe from
    any thread and never blocks; `join(timeout)` waits for the thread.
    `poll_once()`, `poll_hot()` and `poll_events()` are for callers that run
    no thread (tests, benchmarks) and must not be used while the thread runs.
    """

    def __init__(self, root_path, filters, out_queue, shutdown_event, interval_s=None,
                 follow_symlink=False, exclude_unchanged=False, hot_interval_s=0.1,
                 backend="auto", max_watches=None, rule_queue=None, on_crash=None,
                 net_interval_s=None, mount_table=None):
        """root_path: the tree to watch; filters: a PathFilter; out_queue gets one
        ChangeBatch per pass with changes; shutdown_event is set if the thread
        crashes. interval_s: full-pass period in seconds, None to adapt it to the
        CPU budget (polling). hot_interval_s: period of the hot tier. backend:
        "auto", "poll" or "inotify". max_watches: cap on inotify watches below
        the kernel's limit (beyond it: one log line and back to polling; tests
        use a small cap). rule_queue gets a RuleChanges per pass for each
        [[build.rules]] entry with changes (filters.rules decides; without a
        queue they are dropped). on_crash: optional callable(name) told when the
        thread crashes (the engine wakes its main thread with it); the
        attribute may be set later. net_interval_s: the auto driver's safety
        net period, None to adapt it (tests fix it). mount_table: a mountinfo
        text for the auto backend's decision, None to read this system's
        (tests pass one with network filesystems)."""
        if backend not in BACKENDS:  # config refuses any other name first
            raise ValueError("backend: expected one of %s, got %r" % (BACKENDS, backend))
        super().__init__("air-watcher", shutdown_event, on_crash)
        self.root_path = os.path.abspath(root_path)
        self.filters = filters
        self._queue = out_queue
        self.interval_s = interval_s
        self.follow_symlink = bool(follow_symlink)
        self.exclude_unchanged = bool(exclude_unchanged)
        self.hot_interval_s = hot_interval_s
        self.backend = backend
        self.max_watches = max_watches
        self.net_interval_s = net_interval_s
        self.mount_table = mount_table
        self._rule_queue = rule_queue
        self._pacer = Pacer(interval_s)
        self.tree = None    # the snapshot.Snapshot, once the baseline is taken
        self.driver = None  # the watch_driver.Driver finding changes in it

    @classmethod
    def from_config(cls, cfg, out_queue, shutdown_event, ignore_files=(), **kwargs):
        """Build from a loaded Config: cfg.root_path, the build.include_*/exclude_*
        keys and build.rules (through PathFilter), build.follow_symlink,
        exclude_unchanged, poll, poll_interval_s and air_std's build.watcher
        ("auto" unless set; poll = true forces polling, as in Air). kwargs
        override those (rule_queue: where the rules' changes go).
        ignore_files: absolute paths that never start the main build."""
        b = cfg.build
        kw = dict(interval_s=b.poll_interval_s, follow_symlink=b.follow_symlink,
                  exclude_unchanged=b.exclude_unchanged,
                  backend="poll" if b.poll else b.watcher)  # Air: poll = true forces polling
        kw.update(kwargs)
        return cls(cfg.root_path, PathFilter.from_config(cfg, ignore_files=ignore_files), out_queue,
                   shutdown_event, **kw)

    # -- lifecycle -----------------------------------------------------------------

    def start(self):
        """Take the baseline snapshot now, then start the thread; returns at once after."""
        for note in self.filters.notes:
            log.warning("%s", note)
        if self.tree is None:
            self._baseline()
        files, dirs = self.counts()
        log.info("watching %d files in %d directories (%s)", files, dirs,
                 self.driver.describe())
        for top in self.tree.trees[1:]:
            log.info("also watching %s (outside root)", top.path)
        super().start()

    def run(self):
        try:
            while not self.should_stop:
                scan = self.driver.step(self.stop_event)
                if scan is not None:
                    self._emit(self._finish(scan))
        finally:
            self.driver.close()

    def close(self):
        """Release the inotify fd (the thread does this itself when it ends)."""
        if self.driver is not None:
            self.driver.close()

    # -- one pass, no thread ---------------------------------------------------------

    def poll_once(self):
        """One full pass. The first call takes the baseline and returns None."""
        if self.tree is None:
            self._baseline()
            return None
        return self._finish(self.driver.full_pass())

    def poll_hot(self):
        """One pass over the hot set only (files changed during this run)."""
        if self.tree is None:
            self._baseline()
            return None
        scan = self.driver.hot_pass()
        return None if scan is None else self._finish(scan)

    def poll_events(self, timeout_s=0.0):
        """inotify backend: wait up to timeout_s for events and apply them."""
        if self.tree is None:
            self._baseline()
            return None
        scan = self.driver.event_pass(timeout_s)
        return None if scan is None else self._finish(scan)

    # -- what the watcher knows ------------------------------------------------------

    def counts(self):
        """(watched files, walked directories) in the snapshot."""
        return (0, 0) if self.tree is None else self.tree.counts()

    def snapshot(self):
        """{absolute path: (mtime_ns, size, ino)} of every watched file (tests)."""
        return {} if self.tree is None else self.tree.files()

    @property
    def active_backend(self):
        return "poll" if self.driver is None else self.driver.name

    @property
    def full_interval_s(self):
        """Seconds between full passes (polling), as last paced."""
        return self._pacer.full_interval_s

    @property
    def safety_net_s(self):
        """Seconds between the auto driver's safety-net passes, as last paced
        (None when another driver runs)."""
        net = getattr(self.driver, "net", None)
        return None if net is None else net.full_interval_s

    @property
    def missed(self):
        """Changes the auto driver's polling found that inotify did not report."""
        return getattr(self.driver, "missed", 0)

    @property
    def last_full_cpu_s(self):
        """CPU seconds of the last full pass that set the pace (or of the baseline)."""
        return self._pacer.last_cpu_s

    @property
    def last_pass_listed_all(self):
        return self.driver is not None and self.driver.last_pass_listed_all

    # -- inside ------------------------------------------------------------------------

    def _baseline(self):
        self.tree = Snapshot(self.root_path, self.filters, self.follow_symlink,
                             self.exclude_unchanged)
        self.driver = self._first_driver()
        self._replace_failed_driver()
        t0 = thread_time()
        self.driver.baseline()
        self._pacer.record(thread_time() - t0)
        self._replace_failed_driver()

    def _first_driver(self):
        if self.backend == "auto":
            why = self._why_not_inotify()
            if why:
                log.info("%s; watching by polling", why)
                self.backend = "poll"
        if self.backend in ("auto", "inotify"):
            try:
                if self.backend == "auto":
                    from air_std.watch_auto import AutoDriver, net_pacer
                    return AutoDriver(self.tree, self._pacer, net_pacer(self.net_interval_s),
                                      self.hot_interval_s, self.max_watches)
                from air_std.watch_inotify import InotifyDriver
                return InotifyDriver(self.tree, self._pacer, self.max_watches)
            except ImportError as e:  # a Python built without ctypes
                self._log_fallback("inotify is unavailable here (%s)" % e)
                self.backend = "poll"
        return PollDriver(self.tree, self._pacer, self.hot_interval_s)

    def _why_not_inotify(self):
        """Why the auto backend must poll here, or "" when inotify can be trusted."""
        if not sys.platform.startswith("linux"):
            return "inotify exists only on Linux"
        from air_std import mounts
        verdict = mounts.judge(self.trees(), self.mount_table, self._walks_into)
        if verdict.local:
            log.debug("the watched trees are %s: inotify can be trusted there", verdict.why)
            return ""
        return verdict.why

    def trees(self):
        """The directories the watcher walks from: the root, each include_dir
        in it, then each tree outside it (an include_dir of the main build or
        of a rule, filters.trees)."""
        root = self.root_path
        out = [root]
        dirs = list(self.filters.include_dir) + [t.rel for t in self.filters.trees[1:]]
        for d in dirs:
            path = os.path.normpath(os.path.join(root, d))
            if path not in out:
                out.append(path)
        return out

    def _walks_into(self, path):
        """Whether the filters let the scan reach directory `path` (absolute,
        symlinks resolved); a path outside the root counts as walked."""
        real_root = os.path.realpath(self.root_path)
        rel = os.path.relpath(path, real_root)
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
            return True
        rule = self.filters.root_rule()
        for name in rel.split(os.sep):
            rule = self.filters.dir_rule(rule, name)
            if rule is None:
                return False
        return True

    def _replace_failed_driver(self):
        """A driver that can no longer do its job gives way to polling: one
        object swapped, on the same snapshot."""
        if not self.driver.failed:
            return
        self._log_fallback(self.driver.fail_reason)
        self.driver.close()
        self.driver = PollDriver(self.tree, self._pacer, self.hot_interval_s)
        self.backend = "poll"

    def _log_fallback(self, why):
        # Asked for by name, inotify failing is worth a warning; under "auto"
        # polling is one of the two expected outcomes.
        level = logging.INFO if self.backend == "auto" else logging.WARNING
        log.log(level, "%s; falling back to polling", why)

    def _finish(self, scan):
        """The batch of a pass; the driver is told of it first (polling heats
        its files)."""
        self._replace_failed_driver()
        self.driver.after_pass(scan)
        if self.filters.rules is None:
            batch = scan.batch()
        else:
            # Air (engine.go, the event loop of watchPath): rules first; a
            # file a rule takes never reaches the main build.
            batch, by_rule = scan.split()
            for index, paths in sorted(by_rule.items()):
                self._emit_rule(index, paths)
        if batch and log.isEnabledFor(logging.DEBUG):
            for kind, paths in (("created", batch.created), ("modified", batch.modified),
                                ("deleted", batch.deleted)):
                for p in paths:
                    log.debug("%s %s", kind, os.path.relpath(p, self.root_path))
        return batch

    def _emit(self, batch):
        if batch:
            self._put(self._queue, batch)

    def _emit_rule(self, index, paths):
        if log.isEnabledFor(logging.DEBUG):
            name = self.filters.rules.rules[index].name
            for p in paths:
                log.debug("%s matches rule %s", os.path.relpath(p, self.root_path), name)
        if self._rule_queue is not None:
            self._put(self._rule_queue, RuleChanges(index, tuple(paths)))

    def _put(self, out, message):
        while True:
            try:
                out.put(message, timeout=0.5)
                return
            except queue.Full:  # a bounded queue and a busy consumer: retry unless stopping
                if self.should_stop:
                    return
