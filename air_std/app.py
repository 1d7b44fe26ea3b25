"""The app's lifecycle: its command line, starting it (with air_std's stdin
when build.stdin is set), noticing that it exited, `rerun` and its back-off
after quick crashes, and stopping its whole tree.

Used by the runner thread only; the app's output is copied by the thread
appoutput.py starts for each app, whose tail `check()` hands to
`on_exited(code, tail)` when the app exits on its own. There is at most one
app at a time, plus, after it exited on its own, what it left running (its
process group, and the daemons it started outside it, found by their tag),
which is stopped with the next restart or at shutdown.
"""

import logging
import os
import shlex
import shutil
import signal
import subprocess
import time

from air_std import envfile, events, process, proctable, terminal
from air_std.appoutput import AppOutput

__all__ = ["App", "MIN_GRACE_S"]

log = logging.getLogger("air_std.runner")
# An app that cannot start is reported as Air's mainLog reports it ("failed to
# start"), so that log.main_only still shows it.
main_log = logging.getLogger("air_std.main")

# With Air's default kill_delay of 0 Air sends SIGKILL at once; air_std still gives
# the app this long to exit on SIGTERM/SIGINT before escalating.
MIN_GRACE_S = 0.5
# `rerun` with an app that fails at once would restart it rerun_delay apart
# forever, filling the terminal. A failure (non-zero status or a signal) within
# CRASH_WITHIN_S of the start counts as a crash; each crash in a row doubles the
# wait, up to CRASH_DELAY_CAP_S (or rerun_delay, when that is longer). A run
# longer than that, an exit with status 0 (Air's rerun: a job run in a loop)
# or a new build resets the count.
CRASH_WITHIN_S = 3.0
CRASH_DELAY_CAP_S = 5.0


class App:
    """The app process (`proc`, None while it is not running) and its restarts.

    stop_event: once set, the app is not started any more. force: a second
    Ctrl-C, which ends every grace period. on_started(): called after every
    start, by a build or by `rerun`.
    """

    def __init__(self, cfg, stop_event, force, app_args=(), on_started=None, tick_s=0.1,
                 clock=time.monotonic, on_exited=None, wake=None):
        self.cfg = cfg
        self.stop_event = stop_event
        self.force = force
        self.app_args = list(app_args)
        self.on_started = on_started or (lambda: None)
        self.on_exited = on_exited or (lambda code, tail: None)
        # from the output thread when the app exits: wakes the runner (None: it checks every tick_s)
        self.wake = wake
        self.output = None  # the AppOutput of the running app
        # the AppOutput of an app that exited on its own: what it left running (a
        # daemon, a child) may still write there, as it could with Air, until the next stop
        self._exited_output = None
        self.tick_s = tick_s
        self.clock = clock
        self.proc = None
        self._exited = None  # exited on its own; its group may linger until the next stop
        self._rerun_at = None
        self._started_at = None
        self._tty_settings = None  # build.stdin: the terminal as it was before the app ran
        self.crashes = 0  # quick failures in a row, for `rerun`'s back-off

    @property
    def grace_s(self):
        return max(self.cfg.build.kill_delay_s, MIN_GRACE_S)

    def command(self):
        """(argv or shell string, shell?) for the app; raises FileNotFoundError with a hint."""
        b = self.cfg.build
        extra = list(b.args_bin) + self.app_args
        root = self.cfg.root_path
        if b.full_bin.strip():
            return " ".join([b.full_bin] + [shlex.quote(a) for a in extra]), True
        if b.entrypoint:
            exe = b.entrypoint[0]
            path = os.path.join(root, exe)
            if os.sep not in exe and not os.path.exists(path):
                found = shutil.which(exe)  # `python3` style entrypoints come from PATH
                path = found or path
            if not os.path.exists(path):
                raise FileNotFoundError("build.entrypoint %r not found at %s; does build.cmd create it?"
                                        % (exe, path))
            return [path] + list(b.entrypoint[1:]) + extra, False
        path = os.path.abspath(os.path.join(root, b.bin))
        if not os.path.exists(path):
            raise FileNotFoundError("build.bin %r not found at %s; does build.cmd create it?"
                                    % (b.bin, path))
        return " ".join([shlex.quote(path)] + [shlex.quote(a) for a in extra]), True

    def start(self):
        """Start the app (unless air_std is stopping); True once it runs."""
        if self.stop_event.is_set():
            return False
        try:
            command, shell = self.command()
        except FileNotFoundError as exc:
            main_log.error("%s", exc)
            return False
        env = envfile.load(self.cfg.env_files, self.cfg.root_path)
        env[proctable.ROLE_VAR] = "app"  # inherited by all it starts: see proctable.ROLE_VAR
        # its output is a pipe now, which Python buffers: print() would show up
        # only at exit, and a crash's context with it
        env.setdefault("PYTHONUNBUFFERED", "1")
        shown = command if shell else " ".join(shlex.quote(a) for a in command)
        log.info("running %s", shown)
        # build.stdin: the app inherits air_std's stdin. It stays in its own session,
        # so the terminal's Ctrl-C still reaches air_std only (which stops the app),
        # and a process reading a terminal that is not its controlling one gets no
        # SIGTTIN: it reads whatever air_std, which then reads nothing, is given.
        stdin = None if self.cfg.build.stdin else subprocess.DEVNULL
        if self.cfg.build.stdin:
            self._tty_settings = terminal.save()
        try:
            self.proc = process.spawn(command, cwd=self.cfg.root_path, env=env, shell=shell,
                                      stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            main_log.error("cannot start the app (%s): %s", shown, exc)
            self.on_exited(None, "cannot start the app (%s): %s" % (shown, exc))
            return False
        # under --json stdout carries only events: the app's stdout joins stderr
        out_fd = 2 if events.enabled() else 1
        self.output = AppOutput(self.proc.stdout, self.proc.stderr, out_fd, 2,
                                pid=self.proc.pid, on_exit=self.wake)
        self.output.start()
        events.emit("app_started", pid=self.proc.pid, command=shown)
        self._started_at = self.clock()
        self.on_started()
        return True

    def _finish_output(self):
        output, self.output = self.output, None
        return output.finish() if output is not None else ""

    def _finish_exited_output(self):
        output, self._exited_output = self._exited_output, None
        if output is not None:
            output.finish()

    def restart(self):
        """Stop the app (and what an exited one left) and start it again."""
        self.stop()
        self.start()

    def check(self):
        """Notice that the app exited (scheduling `rerun`), and rerun it when due."""
        now = self.clock()
        if self.proc is not None and self.proc.poll() is not None:
            proc, self.proc = self.proc, None
            process.release(proc)
            output, self.output = self.output, None
            self._exited_output = output
            self.on_exited(proc.returncode, output.settle() if output is not None else "")
            # like Air, leave what it started alone until the next restart or shutdown;
            # keep it only while its group lives (its pid may be reused once it is empty)
            if process.group_alive(proc.pid):
                self._exited = proc
            if self.cfg.build.rerun:
                self._rerun_at = now + self._rerun_delay(proc.returncode, now)
        if self._rerun_at is not None and now >= self._rerun_at and self.proc is None:
            self._rerun_at = None
            self.restart()  # the stop is for what the previous run left behind

    def _rerun_delay(self, code, now):
        """rerun_delay, or the back-off after quick crashes (logged)."""
        delay = self.cfg.build.rerun_delay_s
        quick = self._started_at is not None and now - self._started_at < CRASH_WITHIN_S
        if code == 0 or not quick:
            self.crashes = 0
            return delay
        self.crashes += 1
        cap = max(delay, CRASH_DELAY_CAP_S)
        # rerun_delay = 0 still backs off: a crash loop with no pause at all is the worst case
        delay = min(cap, (delay or 0.25) * 2 ** (self.crashes - 1))
        main_log.warning("app crashed %d %s; waiting %.1fs before running it again "
                         "(an edit or a restart asked for runs it sooner)",
                         self.crashes, "time" if self.crashes == 1 else "times", delay)
        return delay

    def cancel_rerun(self):
        """A build starts: it, not `rerun`, starts the next app (so new code starts
        the crash count afresh)."""
        self._rerun_at = None
        self.crashes = 0

    def wait_s(self, longest):
        """How long the runner may wait before check() has something to do."""
        if self.proc is not None and not (self.output is not None and self.output.watches_exit):
            longest = min(longest, self.tick_s)  # notice an app that exits (else its exit wakes us)
        if self._rerun_at is not None:
            longest = min(longest, max(0.0, self._rerun_at - self.clock()))
        return longest

    def stop(self):
        """Stop the app's tree, and what an app that exited on its own left running."""
        sig = signal.SIGINT if self.cfg.build.send_interrupt else signal.SIGTERM
        exited, self._exited = self._exited, None
        if exited is not None:
            process.stop(exited, sig, grace_s=self.grace_s, name="app", force=self.force, adopt=True)
        proc, self.proc = self.proc, None
        if proc is None:
            self._stop_daemons(sig)
            self._finish_exited_output()
            self._give_terminal_back()
            return
        code = process.stop(proc, sig, grace_s=self.grace_s, name="app", force=self.force, adopt=True)
        self._finish_exited_output()
        self._finish_output()
        log.info("app stopped (%s)", process.describe_exit(code))
        self._give_terminal_back()

    def _give_terminal_back(self):
        # an app stopped at a pdb or readline prompt leaves the terminal without
        # echo; the next app, and the shell after air_std, need it as it was
        saved, self._tty_settings = self._tty_settings, None
        terminal.restore(saved)

    def _stop_daemons(self, sig):
        # With no app to stop, what it daemonized (double fork, setsid: out of its
        # group, so not kept in _exited) would hold its port against the next start.
        # Stopping the app above takes these too (adopt=True).
        process.stop_adopted(sig, grace_s=self.grace_s, name="app", force=self.force)
