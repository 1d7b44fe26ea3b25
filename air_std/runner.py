"""The runner thread ("air-runner"): debounce changes, build, restart the app.

It is the only thread that starts or stops build and app processes, so there
is never more than one build and one app at a time. It consumes ChangeBatch
messages from the watcher's queue and tells a listener (the proxy, when on)
`app_started()` and `build_failed(command, output, error)`.

The loop is here; the pieces it calls are apart: debounce.py (when a batch
of changes is due), build.py (pre_cmd and cmd, cancellable), buildoutput.py
(the build's output, and what a build left running), app.py (the app's
start, exit, rerun and stop) and postcmd.py (post_cmd at shutdown).

Builds are cancellable: while a build command runs, the runner keeps reading
its queue; a new change kills the build's process group and starts the
debounce again. A RestartNow on the queue (SIGUSR1 or `r` + Enter, through
the engine) is a change that is due at once. A RestartApp restarts the app
without a build: a [[build.rules]] entry with `restart = true` (through the
rules part) or an edited env file (through the engine). It is skipped while a
build is pending or running (that build's restart covers it and reads the env
files again) and while the last build failed with stop_on_error (the app stays
stopped until a build succeeds). Shutdown (the shared Event, or STOP on the queue) cancels a
build and stops the app before the thread ends.

Under --once (once.py) there is no loop: one build, one app start, then
bounded readiness checks until the app is ready, exits or times out; the
result goes to the engine, which stops everything with its exit code.

The project root is checked on every turn of the loop (one stat) and before
every build: once it is gone (deleted, moved away) nothing can be built or
started there, so the runner says so in one line, ends (stopping the app)
and tells the engine (`on_root_gone`), which stops air_std with exit code 1.
"""

import errno
import logging
import os
import queue
import stat
import threading

from air_std import events, log as airlog, process
from air_std.app import App
from air_std.build import BuildCancelled, Builder
from air_std.buildoutput import StrayPipes
from air_std.debounce import Debouncer
from air_std.messages import APP_GONE, STOP, ChangeBatch, RestartApp, RestartNow
from air_std.once import APP_EXITED, BUILD_FAILED, CHECK_EVERY_S, NOT_READY, OK
from air_std.part import Part
from air_std.postcmd import POST_CMD_GRACE_S, POST_CMD_TIMEOUT_S, post_commands, run_post_cmd

log = logging.getLogger("air_std.runner")
main_log = logging.getLogger("air_std.main")

# How often the loop looks at a running app (has it exited?) and at the output
# of what a build left running, and how often a build checks for a newer change
# while its output is quiet.
TICK_S = 0.1
# How many of the last lines of a crashed app's output the log repeats.
LOG_TAIL_LINES = 20
# With nothing to watch, the loop still wakes this often (the queue wakes it first).
IDLE_WAIT_S = 1.0


class NullListener:
    def app_started(self):
        pass

    def app_exited(self, error, output):
        pass

    def build_failed(self, command, output, error):
        pass


class Runner(Part):
    """Owns build and app processes, in the thread "air-runner".

    stop_event is the engine's shared shutdown Event: once it is set no build
    or app starts any more. `force` (a second Ctrl-C) ends every grace period.
    When the thread ends it stops the app's tree, then runs post_cmd.
    """

    def __init__(self, cfg, inbox, shutdown, force=None, listener=None, app_args=(),
                 on_crash=None, once=None):
        super().__init__("air-runner", shutdown, on_crash)
        self.cfg = cfg
        self.inbox = inbox
        self.force = force or threading.Event()
        self.listener = listener or NullListener()
        self.changes = Debouncer(cfg.build.delay_s)
        self._restart_why = None  # who asked for the restart now pending, if any
        self._app_restart_why = None  # a rule or an env file asked for an app restart without a build
        self._held_by_failure = False  # stop_on_error stopped the app after a failed build
        # False when the engine stops this runner to start one from a reloaded
        # config: post_cmd is for when air_std exits, not for a reload
        self.post_cmd_at_end = True
        self.strays = StrayPipes()
        self.builder = Builder(cfg, self.force, self.strays, tick_s=TICK_S)
        self.app_life = App(cfg, self.stop_event, self.force, app_args,
                            on_started=self.listener.app_started, tick_s=TICK_S,
                            on_exited=self._app_exited, wake=lambda: self.inbox.put(APP_GONE))
        self.last_exit = None  # (returncode or None, output tail) of the last app that ended on its own
        self._ready_probe = None  # --json, no proxy, app_port set: watches for the app's first accept
        if events.enabled() and once is None and listener is None and cfg.proxy.app_port:
            from air_std.once import Once
            self._ready_probe = Once(app_port=cfg.proxy.app_port)
        self.once = once  # once.Once under --once: build, start, wait for ready, end
        self.on_root_gone = None  # callable(name), set by the engine
        self.root_lost = False

    @property
    def app(self):
        """The app's Popen while it runs, else None."""
        return self.app_life.proc

    @property
    def written_files(self):
        """What air_std itself wrote (the build log), for clean_on_exit."""
        return self.builder.written_files

    @property
    def stop_timeout_s(self):
        # worst case: an app that exited on its own and the live one, each given
        # the grace, then every post_cmd given its bound and a short stop
        posts = len(post_commands(self.cfg))
        return 2 * self.app_life.grace_s + posts * (POST_CMD_TIMEOUT_S + 2 * POST_CMD_GRACE_S) + 3.0

    def _wake(self):
        self.inbox.put(STOP)

    def request_restart(self, why):
        """From any thread: rebuild and restart the app now, as if a file had changed."""
        if not self.should_stop:
            self.inbox.put(RestartNow(why))

    def request_app_restart(self, why):
        """From any thread: restart the app (no build), for a new environment."""
        if not self.should_stop:
            self.inbox.put(RestartApp(why))

    # --- thread body ---
    def run(self):
        try:
            if self.once is not None:
                self._run_once()
                return
            self._build_and_run([])
            while not self.should_stop:
                self._wait_for_work()
                if self.should_stop or self._root_gone():
                    break
                if self.changes.due():
                    self._build_and_run(self.changes.take())
                self._restart_app_without_build()
                self._check_app()
                self.strays.drain()
                process.reap_orphans()
        finally:
            try:
                self.app_life.stop()
            finally:
                self.strays.close()
                if self.post_cmd_at_end:
                    run_post_cmd(self.cfg, self.force)

    def _wait_for_work(self):
        timeout = self.changes.wait_s(IDLE_WAIT_S)
        if self.strays:
            timeout = min(timeout, TICK_S)  # pass their output on
        if self._ready_probe is not None and self.app is not None:
            timeout = min(timeout, TICK_S)  # --json: look for the app's first accept
        timeout = self.app_life.wait_s(timeout)
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._take(item)

    def _take(self, item):
        if item is STOP:
            self.stop_event.set()
        elif isinstance(item, ChangeBatch) and item:
            self.changes.add(item.paths)
        elif isinstance(item, RestartNow):
            self._restart_why = item.why
            self.changes.request_now()
        elif isinstance(item, RestartApp):
            self._app_restart_why = item.why

    def _restart_app_without_build(self):
        """A rule's `restart = true` or an edited env file: the app restarted,
        nothing built."""
        why, self._app_restart_why = self._app_restart_why, None
        if why is None or self.should_stop:
            return
        if self.changes:
            return  # the build that is coming restarts the app anyway
        if self._held_by_failure:
            main_log.info("%s: not restarting the app: the last build failed "
                          "(build.stop_on_error = true)", why)
            return
        main_log.info("%s: restarting the app (no build)", why)
        self.app_life.cancel_rerun()
        self.app_life.restart()

    # --- --once ---
    def _run_once(self):
        """Build, start the app, wait until it is ready or ends; tell `once` the
        exit code. The caller's finally stops the app and runs post_cmd."""
        once = self.once
        once.begin()
        if once.port_taken():
            # the check would find that program ready, whatever the app does
            main_log.error("--once: 127.0.0.1:%d (proxy.app_port) already accepts connections before "
                           "the app started: another program holds it; stop it or set proxy.app_port "
                           "to the app's port (exit %d)", once.app_port, NOT_READY)
            once.finish(NOT_READY)
            return
        try:
            ok = self.builder.run(lambda: self.should_stop or once.timed_out())
        except BuildCancelled:
            if not self.should_stop:
                main_log.error("--once: the build was still running after --ready-timeout %gs",
                               once.ready_timeout_s)
                once.finish(NOT_READY)
            return
        if self.should_stop:
            return
        if not ok:
            main_log.error("--once: the build failed; stopping (exit %d)", BUILD_FAILED)
            once.finish(BUILD_FAILED)
            return
        self.app_life.cancel_rerun()
        started_at = once.clock()
        if not self.app_life.start():
            if not self.should_stop:
                main_log.error("--once: the app did not start; stopping (exit %d)", APP_EXITED)
                once.finish(APP_EXITED)
            return
        self._wait_ready(once, started_at)

    def _wait_ready(self, once, started_at):
        while not self.should_stop:
            self.app_life.check()
            self.app_life.cancel_rerun()  # the run ends here: build.rerun does not apply
            if self.last_exit is not None:
                main_log.error("--once: the app exited before it was ready; stopping (exit %d)",
                               APP_EXITED)
                once.finish(APP_EXITED)
                return
            if once.ready(started_at):
                took = once.clock() - started_at
                main_log.info("--once: ready (%s) %.2fs after the start; stopping", once.describe(), took)
                events.emit_first("app_ready", pid=self.app.pid if self.app else None,
                                  after=round(took, 3), check=once.describe())
                once.finish(OK)
                return
            if once.timed_out():
                main_log.error("--once: not ready within --ready-timeout %gs (waited until %s); "
                               "stopping (exit %d)", once.ready_timeout_s, once.describe(), NOT_READY)
                once.finish(NOT_READY)
                return
            self.stop_event.wait(CHECK_EVERY_S)

    def _check_app(self):
        self.app_life.check()
        if self._ready_probe is not None and self.app is not None and self._ready_probe.ready(0):
            # --json without the proxy (whose notifier tells it otherwise): the first accept
            self._ready_probe = None
            events.emit_first("app_ready", port=self.cfg.proxy.app_port, pid=self.app.pid)

    def _app_exited(self, code, output):
        """The app ended on its own (or could not start: code None): say how, with
        the last lines of its output, in the log, in --json and in the browser."""
        self.last_exit = (code, output)
        error = process.describe_exit(code) if code is not None else "could not start"
        tail = events.tail_lines(output, LOG_TAIL_LINES)
        if code is None:
            pass  # App.start() said why, in one line
        elif code == 0 or not tail:
            log.info("app exited (%s)", error)
        else:
            # the main log: log.main_only must not hide a crash
            main_log.error("app exited (%s); its last output:\n%s", error, tail)
        events.emit("app_exited", exit_status=code, error=error, output=events.tail_lines(output))
        self.listener.app_exited(error, events.tail_lines(output))

    # --- build and run ---
    def _build_and_run(self, changed):
        if self._root_gone():
            return
        why, self._restart_why = self._restart_why, None
        if changed or why:
            self._announce(changed, why)
        self.app_life.cancel_rerun()
        ok = self._build_until_not_cancelled()
        self._app_restart_why = None  # a rule or env file asked meanwhile: this start covers it (and reads the env files)
        if ok is None or self.should_stop:  # stopped, or the build ended just as air_std was asked to
            return
        self._held_by_failure = not ok and self.cfg.build.stop_on_error
        if self._held_by_failure:
            self._stop_after_failure()
            return
        # stop_on_error = false: like Air, the app is restarted even after a failed
        # build (from the binary the last good build left), and the browser is not
        # shown the failure, since the reload that follows the restart would replace it
        self.app_life.restart()

    def _stop_after_failure(self):
        """build.stop_on_error = true, as Air's buildRun (runner/engine.go): the
        app is stopped until a build succeeds. The browser is told first, so that
        the proxy answers at once from then on instead of waiting for the app."""
        self.listener.build_failed(*self.builder.failure)
        if self.app is not None:
            log.info("stopping the app until a build succeeds (build.stop_on_error = true)")
        self.app_life.stop()

    def _announce(self, changed, why=None):
        cfg = self.cfg
        # Air's start() clears the screen first, so the "changed" line stays on it
        if cfg.screen.clear_on_rebuild:
            airlog.clear_screen(keep_scroll=cfg.screen.keep_scroll)
        names = sorted({os.path.relpath(p, cfg.root_path) for p in changed})
        more = " and %d more" % (len(names) - 3) if len(names) > 3 else ""
        if names:
            main_log.info("%s changed; rebuilding", ", ".join(names[:3]) + more)
            events.emit("change", files=names)
        if why:
            main_log.info("restart asked for (%s); rebuilding", why)
            events.emit("change", files=[], reason=why)

    def _build_until_not_cancelled(self):
        """The build's result (True: ok), built again after each cancelling
        change once its debounce is over; None if air_std is stopping."""
        while True:
            try:
                return self.builder.run(self._cancel_requested)
            except FileNotFoundError:  # the build's working directory, if the root just went
                if self._root_gone():
                    return None
                raise
            except BuildCancelled:
                if self.should_stop:
                    return None
                main_log.info("change during the build; building again")
                self._wait_debounce_after_cancel()
                if self.should_stop:
                    return None

    def _cancel_requested(self):
        """Called by a build between reads: take a message, if any; True once
        a change or a stop arrived (the build is then stopped)."""
        if not self.should_stop:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return False
            self._take(item)
        return bool(self.changes) or self.should_stop

    def _wait_debounce_after_cancel(self):
        # the window runs from the change that cancelled the build; the rebuild covers it
        while self.changes and not self.should_stop and not self.changes.due():
            try:
                self._take(self.inbox.get(timeout=self.changes.wait_s(IDLE_WAIT_S)))
            except queue.Empty:
                pass
        self.changes.take()
        self._restart_why = None  # the rebuild that follows is the restart asked for

    # --- the root ---
    def _root_gone(self):
        """True once the project root is gone; the first time, says so, stops
        the loop and tells the engine. Any other error (EACCES, EIO) is not a
        disappearance: the build or the watcher reports it."""
        if self.root_lost:
            return True
        try:
            gone = not stat.S_ISDIR(os.stat(self.cfg.root_path).st_mode)
        except OSError as exc:
            gone = exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)
        if not gone:
            return False
        self.root_lost = True
        main_log.error("root %s no longer exists (deleted or moved); stopping", self.cfg.root_path)
        self.stop_event.set()
        if self.on_root_gone is not None:
            self.on_root_gone(self.name)
        return True
