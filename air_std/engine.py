"""The engine: builds the parts, owns the shutdown Event, runs the shutdown
sequence. Everything here runs on the main thread.

Signals: a handler only writes one byte (the signal's number) to a
self-pipe. Event.set() takes a lock, and a handler that calls it while the
main thread is inside the same Event's wait() can deadlock (the handler runs
on the main thread, between two bytecodes of that wait). So the main thread
parks in poll() on the pipe and acts in normal code: a stop signal starts
the shutdown, a second one (another Ctrl-C) sets `force`, which ends every
grace period and SIGKILLs what is left; SIGUSR1 asks the runner for a
restart; the rest of the signals that would end air_std are ignored (see
the tables below). Threads that crash write to the same pipe.

The parts (watcher, rules when [[build.rules]] has any, runner, proxy)
share one contract (part.Part). They start in the order proxy (its port is
checked before anything runs), watcher (the baseline is taken before the
first build), rules, runner; they stop in the order data flows: watcher,
rules (stops a running rule command), runner (cancels a build, stops the
app, runs post_cmd, bounded), proxy (subscribers closed, server shut down).
Then tmp cleanup (only with clean_on_exit, only what air_std made), a last
sweep of any descendant, and a report of any thread that did not end.

Under --once (once.py) there is no watcher and no rules part: the runner
builds and starts the app once and, when it knows the result, wakes the
main thread through the same self-pipe; the shutdown sequence is the same
and the exit code is the result's (128 + N after a stop signal N). tmp_dir
is created only when a build may write there (some pre_cmd or cmd).
"""

import errno
import logging
import os
import queue
import shutil
import signal
import sys
import threading
import time

from air_std import early_signals, events, log as airlog, process, version_line, waitio
from air_std.errors import AirError

log = logging.getLogger("air_std.main")

# What air_std does with each signal whose default action would end it: none
# may end it without the shutdown sequence, which would leave the app (in its
# own session) running and holding its port.
# Stop cleanly. SIGXCPU: the CPU-time limit was reached and the kernel will
# SIGKILL at the hard limit, so stop the app while there is time; SIGPWR: the
# power is failing (UPS daemons, init).
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGXCPU", "SIGPWR")
# Kill everything now. SIGQUIT (Ctrl-\\) is what people press when Ctrl-C seems
# stuck; SIGABRT is what supervisors send to abort (systemd's watchdog).
FORCE_SIGNALS = ("SIGQUIT", "SIGABRT")
# Rebuild and restart the app now, as if a file had changed (nodemon's `rs`).
RESTART_SIGNALS = ("SIGUSR1",)
# Left at their default: SIGKILL and SIGSTOP cannot be caught; SIGCHLD, SIGURG,
# SIGWINCH, SIGCONT and SIGINFO do not end a process, SIGTSTP, SIGTTIN and SIGTTOU
# pause it; SIGPIPE and SIGXFSZ are ignored by Python already (the write fails
# with an error instead; subprocess gives the app their default back); SIGSEGV,
# SIGBUS, SIGFPE and SIGILL report a fault of the interpreter itself, and a
# Python handler would return to the faulting instruction forever.
LEFT_ALONE = ("SIGKILL", "SIGSTOP", "SIGCHLD", "SIGURG", "SIGWINCH", "SIGCONT", "SIGINFO",
              "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGPIPE", "SIGXFSZ",
              "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL")
# Every other signal is ignored, as Go ignores them by default and so Air
# survives them: SIGUSR2, the timers (SIGALRM, SIGVTALRM, SIGPROF), I/O
# readiness (SIGIO, also named SIGPOLL), SIGSTKFLT, SIGTRAP, SIGSYS and the
# real-time signals. With a handler, not SIG_IGN: the app must not inherit an
# ignored disposition through exec.
# A signal counts as "second" (force) only this long after the first: `npm run`,
# yarn and a closing terminal deliver the same Ctrl-C or hang-up twice at once.
SECOND_SIGNAL_AFTER_S = 0.5
_CRASH = 0  # byte written by a crashed thread; signal numbers are never 0


def _numbers(names):
    return frozenset(getattr(signal, n) for n in names if hasattr(signal, n))


_STOPPING = _numbers(STOP_SIGNALS + FORCE_SIGNALS)
_FORCING = _numbers(FORCE_SIGNALS)
_RESTARTING = _numbers(RESTART_SIGNALS)


def once_codes():
    from air_std.once import EXIT_CODES
    return EXIT_CODES


def handled_signals():
    """Every signal air_std installs its handler for, in number order."""
    left = _numbers(LEFT_ALONE)
    return sorted(int(sig) for sig in signal.valid_signals() if sig not in left)


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal, or one this Python has no name for
        low = getattr(signal, "SIGRTMIN", None)
        if low is not None and number > low:
            return "SIGRTMIN+%d" % (number - low)
        return "signal %d" % number


def run(cfg, app_args=(), once=None):
    """Run until a signal (or, with once, until the app is ready or failed); return
    the exit code (0 after a clean stop; once.py's codes; 128+N after signal N under --once)."""
    return Engine(cfg, app_args, once).run()


class Engine:
    """One run of air_std; `run()` on the main thread returns the exit code."""

    def __init__(self, cfg, app_args=(), once=None):
        self.cfg = cfg
        self.app_args = list(app_args)
        self.once = once  # once.Once under --once: no watcher, the run ends by itself
        self._stop_signal = None
        self.shutdown = threading.Event()
        self.force = threading.Event()
        self.crashed = []
        self.failed = []  # parts that stopped on a fault they reported (the root is gone)
        self._wake_r = self._wake_w = None
        self._old_handlers = {}
        self._made_tmp = None  # (st_dev, st_ino) of the tmp_dir air_std created
        self._first_signal_at = None
        self._stop_reason = "a part crashed"
        self.runner = None
        self.parts = []  # in stop order

    # --- signals through the self-pipe ---
    def _on_signal(self, signum, frame):
        try:
            os.write(self._wake_w, bytes([signum]))
        except (BlockingIOError, OSError):
            pass  # the pipe is full: a wake-up is already pending

    def _install_signals(self):
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        for sig in handled_signals():
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (OSError, ValueError):  # reserved here (glibc keeps two real-time signals)
                pass
        # a Ctrl-C from before these handlers that Python swallowed on the way
        if early_signals:
            self._on_signal(early_signals[0], None)
            del early_signals[:]

    def _restore_signals(self):
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    def request_shutdown(self, who):
        """From any thread: a part crashed; stop everything (exit code 1)."""
        self.crashed.append(who)
        try:
            os.write(self._wake_w, bytes([_CRASH]))
        except (BlockingIOError, OSError, TypeError):
            pass

    def part_failed(self, who):
        """From any thread: a part met a fault it has already reported in one
        line (the project root is gone); stop everything, exit code 1."""
        self.failed.append(who)
        try:
            os.write(self._wake_w, bytes([_CRASH]))
        except (BlockingIOError, OSError, TypeError):
            pass

    def _read_wakeups(self, timeout):
        """Wait up to timeout for bytes on the self-pipe; return them (b"" on timeout)."""
        try:
            ready = waitio.readable([self._wake_r], timeout)
        except OSError as exc:  # EINTR is retried by Python; anything else is real
            if exc.errno != errno.EINTR:
                raise
            ready = [self._wake_r]
        if not ready:
            return b""
        try:
            return os.read(self._wake_r, 4096)
        except BlockingIOError:
            return b""

    def _note_wakeups(self, data):
        signals = set(b for b in data if b != _CRASH)
        for sig in sorted(signals - _STOPPING):
            self._note_other_signal(sig)
        signals &= _STOPPING
        if not signals:
            return
        now = time.monotonic()
        if self._first_signal_at is None:
            self._first_signal_at = now
            self._stop_signal = min(signals)
            self._stop_reason = signal_name(min(signals))
        second = self.shutdown.is_set() and now - self._first_signal_at >= SECOND_SIGNAL_AFTER_S
        if second or signals & _FORCING:
            if not self.force.is_set():
                log.warning("second signal: killing everything now")
            self.force.set()
        self.shutdown.set()

    def _note_other_signal(self, sig):
        """A signal that does not stop air_std: SIGUSR1 restarts, the rest are ignored."""
        name = signal_name(sig)
        if sig in _RESTARTING:
            if self.runner is not None and not self.shutdown.is_set():
                self.runner.request_restart(name)
            return
        log.info("%s ignored (SIGUSR1 rebuilds and restarts the app; Ctrl-C stops air_std)", name)

    # --- main ---
    def run(self):
        if os.name == "nt":
            # the self-pipe and the build output are waited for with poll(), which
            # Windows lacks; say so instead of failing half-way
            raise AirError("Windows is not supported yet (air_std runs on Linux and macOS); "
                           "use WSL2 or Air itself")
        self._install_signals()
        try:
            self._note_wakeups(self._read_wakeups(0))  # a Ctrl-C already pending: start nothing
            if not self.shutdown.is_set():
                self._start()
            while not self.shutdown.is_set():
                data = self._read_wakeups(1.0)
                if self.crashed or self.failed or self._once_over():
                    self.shutdown.set()
                self._note_wakeups(data)
            if self._once_over() and self._stop_signal is None:
                self._stop_reason = "--once: %s" % once_codes()[self.once.code]
            if not self.crashed and not self.failed:
                log.info("shutting down (%s)", self._stop_reason)
        finally:
            # also on AirError from _start (port in use...): nothing may be left running
            self.shutdown.set()
            self._stop_parts()
        code = self._exit_code()
        events.emit("shutdown", exit_code=code, reason=self._stop_reason)
        lingering = [t.name for t in threading.enumerate()
                     if t is not threading.current_thread() and t.is_alive() and t.name.startswith("air-")]
        if lingering:
            # a bug, reported by name; a non-daemon thread must not keep air_std alive after this
            log.error("threads still running at exit: %s (a bug: please report it)", ", ".join(lingering))
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(1)
        return code

    def _once_over(self):
        return self.once is not None and self.once.code is not None

    def _exit_code(self):
        if self.crashed or self.failed:
            return 1
        if self._once_over() and self._stop_signal is None:
            return self.once.code
        if self.once is not None and self._stop_signal is not None:
            # a CI job cancelled mid-run did not pass: the shell's 128+N
            return 128 + self._stop_signal
        return 0

    def _once_done(self):
        """From the runner thread: the --once run has its result."""
        try:
            os.write(self._wake_w, bytes([_CRASH]))
        except (BlockingIOError, OSError, TypeError):
            pass

    def _start(self):
        cfg = self.cfg
        self._check_root()
        process.make_subreaper()
        # Air's printStartupBanner (main.go): the banner when set, nothing when
        # set to "", else its own splash, which here is air_std's version line
        banner = cfg.misc.startup_banner
        if banner is None:
            banner = version_line()
        if banner:
            airlog.write_raw(banner)
        pid = os.getpid()
        log.info("pid %d: Ctrl-C stops; SIGUSR1 or kill -USR1 %d rebuilds and restarts the app", pid, pid)
        self._make_tmp()
        proxy, watcher, rules, runner = self._make_parts()
        self.runner = runner
        runner.on_root_gone = self.part_failed
        if self.once is not None:
            self.once.on_done = self._once_done
        self.parts = [p for p in (watcher, rules, runner, proxy) if p is not None]
        for part in (proxy, watcher, rules, runner):
            if part is None:
                continue
            part.on_crash = self.request_shutdown
            # ProxyError (its port is taken) ends the run before anything starts
            part.start()
        if proxy is not None:
            log.info("proxy on http://%s:%d -> app on 127.0.0.1:%d",
                     cfg.proxy.bind, proxy.port, cfg.proxy.app_port)

    def _make_parts(self):
        """(proxy or None, watcher, rules part or None, runner), not started yet."""
        from air_std.runner import Runner
        from air_std.watcher import Watcher
        cfg = self.cfg
        proxy = None
        if cfg.proxy.enabled:
            from air_std.proxy import LiveReloadProxy
            proxy = LiveReloadProxy(cfg.proxy)
        rules = rule_changes = None
        changes = queue.Queue()
        if cfg.build.rules and self.once is None:
            from air_std.rule_runner import RuleRunner
            rule_changes = queue.Queue()
            # the runner's queue carries a rule's `restart = true` (RestartApp)
            rules = RuleRunner(cfg, rule_changes, self.shutdown, force=self.force,
                               runner_inbox=changes, proxy=proxy)
        watcher = None
        if self.once is None:  # --once builds and starts once: nothing to watch for
            watcher = Watcher.from_config(cfg, changes, self.shutdown, rule_queue=rule_changes)
        runner = Runner(cfg, changes, self.shutdown, force=self.force, listener=proxy,
                        app_args=self.app_args, once=self.once)
        return proxy, watcher, rules, runner

    def _make_tmp(self):
        cfg = self.cfg
        if os.path.isdir(cfg.tmp_path):
            return
        if not cfg.build.cmd.strip() and not any(c.strip() for c in cfg.build.pre_cmd):
            # no build to put anything there (`run`, a read-only tree), and air_std's
            # only file there is the log of a failed build: nothing to make
            return
        try:
            os.makedirs(cfg.tmp_path)
            st = os.lstat(cfg.tmp_path)
            self._made_tmp = (st.st_dev, st.st_ino)
        except OSError as exc:
            raise AirError("cannot create tmp_dir %s: %s" % (cfg.tmp_path, exc.strerror))

    def _check_root(self):
        """The root must be a directory (else air_std would create it, making
        tmp_dir); and Air refuses to watch / or the home directory unless told to."""
        if not os.path.isdir(self.cfg.root_path):
            what = "is not a directory" if os.path.exists(self.cfg.root_path) else "does not exist"
            raise AirError("root %s %s; set root in .air.toml to your project's directory"
                           % (self.cfg.root_path, what))
        root = os.path.realpath(self.cfg.root_path)
        home = os.path.realpath(os.path.expanduser("~"))
        if root in ("/", home) and not self.cfg.build.ignore_dangerous_root_dir:
            raise AirError("root %s is a dangerous directory to watch (every file below it); "
                           "run air_std in your project, or set build.ignore_dangerous_root_dir = true"
                           % root)

    def _join(self, part):
        """Join a part while still listening for a second signal (force)."""
        timeout = part.stop_timeout_s
        deadline = time.monotonic() + timeout
        while not part.join(0):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("thread %s did not stop within %.1fs (a bug: please report it)",
                          part.name, timeout)
                return False
            self._note_wakeups(self._read_wakeups(min(0.05, remaining)))
        return True

    def _stop_parts(self):
        """Each step runs even if an earlier one failed: nothing may be left running."""
        try:
            for part in self.parts:
                self._step("stopping %s" % part.name, part.stop)
                self._step("waiting for %s" % part.name, lambda: self._join(part))
            self._step("cleaning tmp_dir", self._clean_tmp)
        finally:
            left = process.kill_all_descendants()
            if left:
                log.error("%d processes could not be stopped", left)
            self._restore_signals()

    def _step(self, what, func):
        try:
            func()
        except Exception as exc:  # report and go on with the shutdown
            log.error("%s failed: %s", what, exc)
            log.debug("%s failed", what, exc_info=True)

    def _clean_tmp(self):
        """clean_on_exit: remove tmp_dir only if air_std created it (and it is still that
        directory, not a symlink put in its place), else only the files air_std wrote there."""
        cfg = self.cfg
        if not cfg.misc.clean_on_exit:
            return
        tmp = os.path.realpath(cfg.tmp_path)
        root = os.path.realpath(cfg.root_path)
        if tmp == root or not tmp.startswith(root + os.sep):
            log.warning("not cleaning tmp_dir %s: it is not inside root %s", tmp, root)
            return
        if self._made_tmp:
            try:
                st = os.lstat(cfg.tmp_path)
            except OSError:
                return
            if (st.st_dev, st.st_ino) != self._made_tmp:
                log.warning("not removing %s: it is no longer the directory air_std created", cfg.tmp_path)
                return
            shutil.rmtree(cfg.tmp_path, ignore_errors=True)  # the unresolved path: rmtree refuses symlinks
            log.info("removed %s", cfg.tmp_path)
            return
        for path in self.runner.written_files if self.runner else ():
            if os.path.realpath(path).startswith(tmp + os.sep):
                try:
                    os.remove(path)
                except OSError:
                    pass
