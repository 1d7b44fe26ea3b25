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

Without --once, two more parts live as long as the engine: "air-configwatch" (the config
file and env_files, configwatch.py) and, when stdin is a terminal and
build.stdin is off, "air-keys" (`r` + Enter, keys.py). They too only write
a byte to the self-pipe. An edited env file makes the runner restart the app
(no build). An edited config file is loaded on the main thread; when it is
good, the parts above are stopped in their stop order (no post_cmd, no
cleanup, no sweep: air_std is not exiting) and parts built from the new
config are started in their start order, in this process: one code path
for stopping, so a Ctrl-C during a reload still stops everything. A config
that does not load is one error line, and the running parts go on.
"""

import errno
import logging
import os
import queue
import signal
import sys
import threading
import time

from air_std import early_signals, envfile, events, log as airlog, process, version_line, waitio
from air_std.errors import AirError
from air_std.tmpdirs import TmpDirs

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
# bytes written by the engine's own threads; signal numbers stay below 128
_FILES_CHANGED = 254   # configwatch: the config file or an env file changed
_KEY_RESTART = 253     # keys: `r` + Enter
_NOT_SIGNALS = frozenset((_CRASH, _FILES_CHANGED, _KEY_RESTART))


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


def run(cfg, app_args=(), once=None, reload_config=None):
    """Run until a signal (or, with once, until the app is ready or failed); return
    the exit code (0 after a clean stop; once.py's codes; 128+N after signal N under --once).
    reload_config(): loads the config again (the same file and flags), for
    when the config file is edited; None: the config file is not watched."""
    return Engine(cfg, app_args, once, reload_config).run()


class Engine:
    """One run of air_std; `run()` on the main thread returns the exit code."""

    def __init__(self, cfg, app_args=(), once=None, reload_config=None):
        self.cfg = cfg
        self.app_args = list(app_args)
        self.once = once  # once.Once under --once: no watcher, the run ends by itself
        self._stop_signal = None
        # under --once nothing is watched, the config file included
        self.reload_config = reload_config if once is None else None
        self.shutdown = threading.Event()
        # the stop Event of the parts built from one config; a reload makes a new one
        self._generation_stop = threading.Event()
        self.config_watch = None
        self.keys = None
        self.tmp_dirs = TmpDirs()
        self._files_pending = False
        self.force = threading.Event()
        self.crashed = []
        self.failed = []  # parts that stopped on a fault they reported (the root is gone)
        self._wake_r = self._wake_w = None
        self._old_handlers = {}
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

    def _wake(self, byte):
        """From the engine's own threads: a byte on the self-pipe."""
        try:
            os.write(self._wake_w, bytes([byte]))
        except (BlockingIOError, OSError, TypeError):
            pass  # full: a wake-up is pending; closed: air_std is exiting

    def _stop_now(self):
        self.shutdown.set()
        self._generation_stop.set()

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
        if _KEY_RESTART in data and self.runner is not None and not self.shutdown.is_set():
            self.runner.request_restart("r typed")
        if _FILES_CHANGED in data:
            # acted on in the main loop only: this also runs while a reload joins parts
            self._files_pending = True
        signals = set(b for b in data if b not in _NOT_SIGNALS)
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
        self._stop_now()

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
                    self._stop_now()
                self._note_wakeups(data)
                if self._files_pending and not self.shutdown.is_set():
                    self._files_pending = False
                    self._files_changed()
            if self._once_over() and self._stop_signal is None:
                self._stop_reason = "--once: %s" % once_codes()[self.once.code]
            if not self.crashed and not self.failed:
                log.info("shutting down (%s)", self._stop_reason)
        finally:
            # also on AirError from _start (port in use...): nothing may be left running
            self._stop_now()
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
        if self.once is None:  # --once: nothing to type, nothing watched
            self._sync_keys()
        log.info("pid %d: Ctrl-C stops; %sSIGUSR1 or kill -USR1 %d rebuilds and restarts the app",
                 pid, "r + Enter, " if self.keys else "", pid)
        if self.once is None:
            self._start_watching_config()
        self._start_parts()

    def _sync_keys(self):
        """Read r + Enter when stdin is a terminal and build.stdin is off (at
        start, and again after a reload that changed build.stdin)."""
        from air_std import terminal
        wanted = not self.cfg.build.stdin and terminal.is_tty()
        if self.cfg.build.stdin:
            log.info("build.stdin = true: the terminal's input goes to the app")
        if wanted and self.keys is None:
            from air_std.keys import Keys
            self.keys = Keys(lambda: self._wake(_KEY_RESTART), on_crash=self.request_shutdown)
            self.keys.start()
        elif not wanted and self.keys is not None:
            keys, self.keys = self.keys, None
            self._step("stopping %s" % keys.name, keys.stop)
            self._step("waiting for %s" % keys.name, lambda: self._join(keys))

    def _env_paths(self, cfg):
        return [os.path.join(cfg.root_path, p) for p in cfg.env_files]

    def _start_watching_config(self):
        from air_std.configwatch import ConfigWatch
        path = self.cfg.config_path if self.reload_config is not None else None
        self.config_watch = ConfigWatch(path, self._env_paths(self.cfg),
                                        lambda: self._wake(_FILES_CHANGED),
                                        on_crash=self.request_shutdown)
        self.config_watch.start()

    def _start_parts(self):
        """Build and start the parts from self.cfg, in their start order."""
        cfg = self.cfg
        self.tmp_dirs.make(cfg)
        proxy, watcher, rules, runner = self._make_parts()
        self.runner = runner
        runner.on_root_gone = self.part_failed
        if self.once is not None:
            # from the runner thread: the result is in; the main loop reads once.code
            self.once.on_done = lambda: self._wake(_CRASH)
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
            rules = RuleRunner(cfg, rule_changes, self._generation_stop, force=self.force,
                               runner_inbox=changes, proxy=proxy)
        watcher = None
        if self.once is None:  # --once builds and starts once: nothing to watch for
            # an edited config file is reloaded (which builds anew), never also built for
            reloaded = (cfg.config_path,) if self.reload_config and cfg.config_path else ()
            watcher = Watcher.from_config(cfg, changes, self._generation_stop, rule_queue=rule_changes,
                                          ignore_files=reloaded)
        runner = Runner(cfg, changes, self._generation_stop, force=self.force, listener=proxy,
                        app_args=self.app_args, once=self.once)
        return proxy, watcher, rules, runner

    # --- the config file and env files, edited while air_std runs ---
    def _files_changed(self):
        kinds = {}
        while True:
            try:
                kind, path = self.config_watch.events.get_nowait()
            except queue.Empty:
                break
            kinds.setdefault(kind, path)
        if "config" in kinds:
            self._reload(kinds["config"])  # the new parts read the env files anyway
        elif "env" in kinds and self.runner is not None:
            self.runner.request_app_restart(os.path.relpath(kinds["env"], self.cfg.root_path) + " changed")

    def _reload(self, path):
        """The config file changed: load it; when good, stop the parts and start
        new ones from it. A bad edit is one error line; the running parts go on."""
        name = os.path.basename(path)
        if not os.path.exists(path):
            log.warning("%s was removed; air_std keeps running with the config it has", name)
            return
        try:
            cfg = self.reload_config()
            saved, self.cfg = self.cfg, cfg
            try:
                self._check_root()
            finally:
                self.cfg = saved
            envfile.check(cfg.env_files, cfg.root_path)
        except AirError as exc:
            log.error("%s; still running with the config loaded before", exc)
            return
        except Exception as exc:  # an OSError outside load_config's own checks: still one line
            log.error("%s: cannot load it again (%s); still running with the config loaded before",
                      name, exc)
            return
        for warning in cfg.warnings:
            log.warning("%s", warning)
        log.info("%s changed; restarting with the new config", name)
        if self.runner is not None:
            self.runner.post_cmd_at_end = False
        for part in self.parts:
            self._step("stopping %s" % part.name, part.stop)
            self._step("waiting for %s" % part.name, lambda: self._join(part))
        if self.runner is not None:
            self.tmp_dirs.wrote(self.runner.written_files)
        old = self.cfg
        self.parts, self.runner = [], None
        if self.shutdown.is_set():  # a Ctrl-C during the reload: exiting after all
            from air_std.postcmd import run_post_cmd
            self._step("running post_cmd", lambda: run_post_cmd(old, self.force))
            return
        self.cfg = cfg
        self._generation_stop = threading.Event()
        self.config_watch.watch(self._env_paths(cfg))
        if cfg.build.stdin != old.build.stdin:
            self._sync_keys()
        try:
            self._start_parts()
        except Exception as exc:  # AirError (a port taken) or OSError: one line, then stop
            log.error("cannot start with the new config: %s; stopping", exc)
            self.failed.append("reload")
            self._stop_now()

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
            engine_parts = [p for p in (self.config_watch, self.keys) if p is not None]
            for part in engine_parts + self.parts:
                self._step("stopping %s" % part.name, part.stop)
                self._step("waiting for %s" % part.name, lambda: self._join(part))
            written = self.runner.written_files if self.runner else ()
            self._step("cleaning tmp_dir", lambda: self.tmp_dirs.clean(self.cfg, written))
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
