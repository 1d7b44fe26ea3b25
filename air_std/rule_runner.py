"""The rules part: runs each [[build.rules]] command when the watcher sends
it that rule's changes, in the thread "air-rules".

Which rule a changed file belongs to is decided in the watcher (rules.py,
filters.py); this part only runs commands. Per rule, after Air's runRule
(runner/rule.go), with air_std's debounce:
- changes collect in a Debouncer with the rule's `delay` (due `delay` after
  the last change, at most max(2 s, 10 delays) after the first), so a burst
  of saves gives one run;
- the command runs to completion (`/bin/sh -c`, in root, in its own process
  group, with env_files loaded); changes that arrive meanwhile are kept and
  give exactly one more run once it is over;
- every line it prints, and each of air_std's lines about it, starts with
  "[name]";
- at shutdown a running command is stopped like a cancelled build: SIGTERM
  to its group, CANCEL_GRACE_S, then SIGKILL (a second Ctrl-C skips the
  grace).
air_std's own keys act once the command succeeded (or at once, without a
cmd): `restart = true` sends RestartApp to the runner (the app restarted
without the main build; the browser reloads after it, as after a build);
`reload = true` alone asks the proxy to reload the browser, with the
changed paths, so that a change of .css files only swaps stylesheets. A
command that failed or could not start does neither: the app and the page
keep the last good state, as for a failed build with stop_on_error.

One thread for every rule, not one per rule: the engine starts and stops one
part however many rules there are, and shutdown stops every running command
in one place. Rules still run at the same time, as Air's goroutine per rule
lets them: the thread waits in poll() on the output of every running command
(its inbox is read between waits, every TICK_S while a command runs), so a
long command of one rule never holds up another.
"""

import logging
import os
import queue
import signal
import subprocess
import threading
import time

from air_std import envfile, process, proctable, waitio
from air_std.build import CANCEL_GRACE_S, HELD_PIPE_S
from air_std.buildoutput import READ_SIZE, LineLog, StrayPipes
from air_std.debounce import Debouncer
from air_std.messages import STOP, RestartApp, RuleChanges
from air_std.part import Part
from air_std.schema import RULE_KEY

__all__ = ["RuleRunner"]

log = logging.getLogger("air_std.runner")

TICK_S = 0.1        # while a command runs: how often the inbox and the command are looked at
IDLE_WAIT_S = 1.0   # with nothing to do, the loop still wakes this often (the inbox wakes it first)
LAST_READS = 16     # a stopped command's output still in its pipe: at most this many reads


class _Prefixed:
    """The logger a rule's LineLog writes to: each line gets "[name] " in front."""

    def __init__(self, logger, name):
        self.logger = logger
        self.prefix = "[%s] " % name

    def info(self, fmt, *args):
        text = fmt % args if args else fmt
        self.logger.info("%s", "\n".join(self.prefix + line for line in text.split("\n")))


class _Job:
    """One rule: its pending changes and its command while it runs."""

    def __init__(self, index, rule):
        self.index = index
        self.name = rule["name"] or "rule-%d" % index
        self.cmd = rule["cmd"].strip()
        self.restart = rule["restart"]
        self.reload = rule["reload"]
        self.changed = ()         # root-relative paths the current run is for
        self.changes = Debouncer(RULE_KEY["delay"].seconds(rule["delay"]))
        self.lines = _Prefixed(log, self.name)
        self.proc = None          # the command's Popen while it runs
        self.pipe = None          # its output, until end of file
        self.output = None        # the LineLog of that output
        self.started = None       # monotonic time of the start
        self.exited_at = None     # when the command exited with its pipe still open

    def say(self, level, fmt, *args):
        log.log(level, "[%s] " + fmt, self.name, *args)


class RuleRunner(Part):
    """Runs the commands of cfg.build.rules; takes RuleChanges (and STOP)
    from `inbox`. stop_event is the engine's shared shutdown Event; `force`
    (a second Ctrl-C) ends the grace of a command being stopped."""

    def __init__(self, cfg, inbox, shutdown, force=None, on_crash=None, runner_inbox=None,
                 proxy=None):
        """runner_inbox: the runner's queue, for `restart = true`; proxy: the
        live-reload proxy (None when off), for `reload = true`."""
        super().__init__("air-rules", shutdown, on_crash)
        self.cfg = cfg
        self.inbox = inbox
        self.runner_inbox = runner_inbox
        self.proxy = proxy
        self.force = force or threading.Event()
        self.jobs = [_Job(i, rule) for i, rule in enumerate(cfg.build.rules)]
        self.strays = StrayPipes()   # output of what a command left running (`cmd &`)

    @property
    def stop_timeout_s(self):
        # every running command given the grace, then the SIGKILL rounds of process.stop
        return len(self.jobs) * (CANCEL_GRACE_S + 2.0) + 3.0

    def _wake(self):
        self.inbox.put(STOP)

    # --- thread body ---
    def run(self):
        try:
            while not self.should_stop:
                self._wait()
                for job in self.jobs:
                    if self.should_stop:
                        break
                    if job.proc is None and job.changes.due():
                        self._start(job)
                self.strays.drain()
        finally:
            for job in self.jobs:
                self._stop(job)
            self.strays.close()

    def _wait(self):
        """Wait (bounded) for output, a change or a debounce coming due."""
        timeout = IDLE_WAIT_S
        for job in self.jobs:
            if job.proc is None:
                timeout = job.changes.wait_s(timeout)
        running = [job for job in self.jobs if job.proc is not None]
        if not running and not self.strays:
            try:
                self._take(self.inbox.get(timeout=timeout))
            except queue.Empty:
                return
        else:
            pipes = [job.pipe for job in running if job.pipe is not None]
            ready = waitio.readable(pipes, min(timeout, TICK_S))
            for job in running:
                self._pump(job, job.pipe is not None and job.pipe in ready)
        while True:  # whatever else is already there
            try:
                self._take(self.inbox.get_nowait())
            except queue.Empty:
                return

    def _take(self, item):
        if item is STOP:
            self.stop_event.set()
        elif isinstance(item, RuleChanges) and 0 <= item.index < len(self.jobs):
            self.jobs[item.index].changes.add(item.paths)

    # --- one command ---
    def _start(self, job):
        root = self.cfg.root_path
        names = sorted({os.path.relpath(p, root) for p in job.changes.take()})
        more = " and %d more" % (len(names) - 3) if len(names) > 3 else ""
        job.say(logging.INFO, "%s changed", ", ".join(names[:3]) + more)
        job.changed = tuple(names)
        if not job.cmd:
            self._after_cmd(job, 0)
            return
        job.say(logging.INFO, "> %s", job.cmd)
        env = envfile.load(self.cfg.env_files, root)
        # like a build's: what the command leaves running survives restarts
        env[proctable.ROLE_VAR] = "build"
        try:
            proc = process.spawn(job.cmd, cwd=root, env=env, shell=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the command
            job.say(logging.ERROR, "cannot run %s: %s", job.cmd, exc)
            self._after_cmd(job, None)
            return
        job.proc, job.pipe, job.output = proc, proc.stdout, LineLog(job.lines)
        job.started, job.exited_at = time.monotonic(), None

    def _pump(self, job, readable):
        """Pass on what the command printed; finish it once it exited."""
        if readable:
            chunk = os.read(job.pipe.fileno(), READ_SIZE)
            if chunk:
                job.output.feed(chunk)
            else:
                self._close_pipe(job)
        if job.proc.poll() is None:
            return
        if job.pipe is not None:
            # It exited, but its pipe is still open: output still to read, or
            # something it left running holds the pipe (`cmd &`); that output
            # is then read on the side, as for a build.
            now = time.monotonic()
            if job.exited_at is None:
                job.exited_at = now
            if now - job.exited_at < HELD_PIPE_S:
                return
            self.strays.add(job.pipe, job.output)
            job.pipe = None
        code = process.release(job.proc)
        job.proc = None
        if code == 0:
            job.say(logging.INFO, "done in %.2fs", time.monotonic() - job.started)
        else:
            job.say(logging.ERROR, "failed: %s", process.describe_exit(code))
        self._after_cmd(job, code)

    def _after_cmd(self, job, code):
        """What follows a rule's command (code 0 also stands for no cmd;
        None: it could not start): its exit status is logged by now."""
        if not (job.restart or job.reload):
            return
        if code != 0:
            job.say(logging.INFO, "not %s: the command failed",
                    "restarting the app" if job.restart else "reloading the browser")
            return
        if job.restart:
            if self.runner_inbox is not None:
                self.runner_inbox.put(RestartApp("[%s]" % job.name))
        elif self.proxy is not None:
            n, what = self.proxy.reload_browsers(job.changed)
            job.say(logging.INFO, "%s in %d page(s)", what, n)

    def _close_pipe(self, job):
        job.output.flush()
        job.pipe.close()
        job.pipe = None

    def _stop(self, job):
        """Shutdown: stop a running command's tree, keep its last output."""
        if job.proc is None:
            return
        job.say(logging.INFO, "stopping %s", job.cmd)
        code = process.stop(job.proc, signal.SIGTERM, grace_s=CANCEL_GRACE_S,
                            name="rule %s" % job.name, force=self.force)
        job.proc = None
        if job.pipe is not None:
            for _ in range(LAST_READS):  # what it printed before it was stopped
                if not waitio.readable([job.pipe], 0):
                    break
                chunk = os.read(job.pipe.fileno(), READ_SIZE)
                if not chunk:
                    break
                job.output.feed(chunk)
            self._close_pipe(job)
        job.say(logging.INFO, "stopped (%s)", process.describe_exit(code))
