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
the engine) is a change that is due at once; a RestartApp (an env file was
edited) restarts the app with no build, unless a build is due anyway. Shutdown (the shared Event, or STOP on the queue) cancels a
build and stops the app before the thread ends.

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

from air_std import log as airlog, process
from air_std.app import App
from air_std.build import BuildCancelled, Builder
from air_std.buildoutput import StrayPipes
from air_std.debounce import Debouncer
from air_std.messages import STOP, ChangeBatch, RestartApp, RestartNow
from air_std.part import Part
from air_std.postcmd import POST_CMD_GRACE_S, POST_CMD_TIMEOUT_S, post_commands, run_post_cmd

log = logging.getLogger("air_std.runner")
main_log = logging.getLogger("air_std.main")

# How often the loop looks at a running app (has it exited?) and at the output
# of what a build left running, and how often a build checks for a newer change
# while its output is quiet.
TICK_S = 0.1
# With nothing to watch, the loop still wakes this often (the queue wakes it first).
IDLE_WAIT_S = 1.0


class NullListener:
    def app_started(self):
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
                 on_crash=None):
        super().__init__("air-runner", shutdown, on_crash)
        self.cfg = cfg
        self.inbox = inbox
        self.force = force or threading.Event()
        self.listener = listener or NullListener()
        self.changes = Debouncer(cfg.build.delay_s)
        self._restart_why = None  # who asked for the restart now pending, if any
        self._env_why = None  # an env file edited: restart the app, no build
        # False when the engine stops this runner to start one from a reloaded
        # config: post_cmd is for when air_std exits, not for a reload
        self.post_cmd_at_end = True
        self.strays = StrayPipes()
        self.builder = Builder(cfg, self.force, self.strays, tick_s=TICK_S)
        self.app_life = App(cfg, self.stop_event, self.force, app_args,
                            on_started=self.listener.app_started, tick_s=TICK_S)
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
            self._build_and_run([])
            while not self.should_stop:
                self._wait_for_work()
                if self.should_stop or self._root_gone():
                    break
                if self.changes.due():
                    self._env_why = None  # the restart after the build reads the env files too
                    self._build_and_run(self.changes.take())
                elif self._env_why and not self.changes:
                    self._restart_for_env()
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
            self._env_why = item.why

    def _restart_for_env(self):
        why, self._env_why = self._env_why, None
        if self.builder.failure is not None and self.cfg.build.stop_on_error:
            return  # the app waits for a build that succeeds; the new values come with it
        main_log.info("%s changed; restarting the app (no build)", why)
        self.app_life.cancel_rerun()
        self.app_life.restart()

    def _check_app(self):
        self.app_life.check()

    # --- build and run ---
    def _build_and_run(self, changed):
        if self._root_gone():
            return
        why, self._restart_why = self._restart_why, None
        if changed or why:
            self._announce(changed, why)
        self.app_life.cancel_rerun()
        ok = self._build_until_not_cancelled()
        if ok is None or self.should_stop:  # stopped, or the build ended just as air_std was asked to
            return
        if not ok and self.cfg.build.stop_on_error:
            self._stop_after_failure()
            return
        # stop_on_error = false: like Air, the app is restarted even after a failed
        # build (from the binary the last good build left), and the browser is not
        # shown the failure, since the reload that follows the restart would replace it
        self._env_why = None  # an env file edited during the build: this start reads it
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
        if why:
            main_log.info("restart asked for (%s); rebuilding", why)

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
