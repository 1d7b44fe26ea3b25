"""The runner thread ("air-runner"): debounce changes, build, restart the app.

It is the only thread that starts or stops build and app processes, so there
is never more than one build and one app at a time. It consumes ChangeBatch
messages from the watcher's queue and tells a listener (the proxy, when on)
`app_started()` and `build_failed(command, output, error)`.

Builds are cancellable: while a build command runs, the runner keeps reading
its queue; a new change kills the build's process group and starts the
debounce again. Shutdown (the shared Event, or STOP on the queue) cancels a
build and stops the app before the thread ends.
"""

import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time

from air_std import envfile, log as airlog, process, waitio
from air_std.messages import STOP, ChangeBatch
from air_std.part import Part

log = logging.getLogger("air_std.runner")
build_log = logging.getLogger("air_std.build")
main_log = logging.getLogger("air_std.main")

OUTPUT_TAIL = 64 * 1024  # bytes of build output kept for the error overlay and log file
# With Air's default kill_delay of 0 Air sends SIGKILL at once; air_std still gives
# the app this long to exit on SIGTERM/SIGINT before escalating.
MIN_GRACE_S = 0.5
# post_cmd runs at shutdown, when the user is waiting for the prompt: bounded.
POST_CMD_TIMEOUT_S = 10.0


class _Cancelled(Exception):
    """A build was interrupted by a newer change or by shutdown."""


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

    # tunables; tests may lower them on the instance
    tick_s = 0.1

    def __init__(self, cfg, inbox, shutdown, force=None, listener=None, app_args=(),
                 on_crash=None):
        super().__init__("air-runner", shutdown, on_crash)
        self.cfg = cfg
        self.inbox = inbox
        self.force = force or threading.Event()
        self.listener = listener or NullListener()
        self.app_args = list(app_args)
        self.app = None
        self._exited_app = None  # exited on its own; its group may linger until the next stop
        self._strays = []  # build output pipes still held by something the build left running
        self.written_files = []  # what air_std itself wrote (the build log), for clean_on_exit
        self._pending = []
        self._first_change = None
        self._last_change = None
        self._rerun_at = None

    @property
    def stop_timeout_s(self):
        # worst case: an app that exited on its own and the live one, each given
        # the grace, then every post_cmd given its bound and a short stop
        posts = sum(1 for c in self.cfg.build.post_cmd if c.strip())
        return 2 * self._grace() + posts * (POST_CMD_TIMEOUT_S + 2 * MIN_GRACE_S) + 3.0

    def _wake(self):
        self.inbox.put(STOP)

    # --- thread body ---
    def run(self):
        try:
            self._build_and_run([])
            while not self.should_stop:
                self._wait_for_work()
                if self.should_stop:
                    break
                if self._pending and self._debounce_over():
                    batch, self._pending = self._pending, []
                    self._first_change = self._last_change = None
                    self._build_and_run(batch)
                self._check_app()
                self._drain_strays()
                process.reap_orphans()
        finally:
            try:
                self._stop_app()
            finally:
                for f in self._strays:
                    f.close()
                self._run_post_cmd()

    def _wait_for_work(self):
        timeout = 1.0
        now = time.monotonic()
        if self._pending:
            timeout = max(0.0, self._debounce_deadline() - now)
        if self.app is not None or self._strays:
            timeout = min(timeout, self.tick_s)  # notice an app that exits; pass stray output on
        if self._rerun_at is not None:
            timeout = min(timeout, max(0.0, self._rerun_at - now))
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._take(item)

    def _take(self, item):
        if item is STOP:
            self.stop_event.set()
            return
        if isinstance(item, ChangeBatch) and item:
            now = time.monotonic()
            self._pending.extend(item.paths)
            self._first_change = self._first_change or now
            self._last_change = now

    def _debounce_deadline(self):
        delay = self.cfg.build.delay_s
        # a steady stream of changes must not postpone the build forever
        return min(self._last_change + delay, self._first_change + max(2.0, 10 * delay))

    def _debounce_over(self):
        return time.monotonic() >= self._debounce_deadline()

    # --- build and run ---
    def _build_and_run(self, changed):
        cfg = self.cfg
        if changed:
            names = sorted({os.path.relpath(p, cfg.root_path) for p in changed})
            more = " and %d more" % (len(names) - 3) if len(names) > 3 else ""
            main_log.info("%s changed; rebuilding", ", ".join(names[:3]) + more)
            if cfg.screen.clear_on_rebuild:
                airlog.clear_screen(keep_scroll=cfg.screen.keep_scroll)
        self._rerun_at = None
        while True:
            try:
                ok = self._build()
                break
            except _Cancelled:
                if self.should_stop:
                    return
                main_log.info("change during the build; building again")
                self._wait_debounce_while_cancelled()
                if self.should_stop:
                    return
        if not ok and cfg.build.stop_on_error:
            if self.app is not None:
                log.info("keeping the previous app running (build.stop_on_error)")
            return
        if self.should_stop:  # the build ended just as air_std was asked to stop
            return
        self._stop_app()
        self._start_app()

    def _wait_debounce_while_cancelled(self):
        # restart the debounce window from the change that cancelled the build
        while self._pending and not self.should_stop and not self._debounce_over():
            try:
                self._take(self.inbox.get(timeout=max(0.0, self._debounce_deadline() - time.monotonic())))
            except queue.Empty:
                pass
        self._pending = []
        self._first_change = self._last_change = None

    def _build(self):
        """Run pre_cmd then cmd; True on success. Raises _Cancelled."""
        cfg = self.cfg
        commands = [c for c in cfg.build.pre_cmd if c.strip()]
        if cfg.build.cmd.strip():
            commands.append(cfg.build.cmd)
        if not commands:
            return True
        log.info("building...")
        started = time.monotonic()
        env = envfile.load(cfg.env_files, cfg.root_path)
        env[process.ROLE_VAR] = "build"
        for command in commands:
            code, output = self._run_build_command(command, env)
            if code != 0:
                self._report_build_failure(command, code, output)
                return False
        log.info("build ok in %.2fs", time.monotonic() - started)
        return True

    def _run_build_command(self, command, env):
        build_log.debug("$ %s", command)
        proc = process.spawn(command, cwd=self.cfg.root_path, env=env, shell=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        tail = bytearray()
        fd = proc.stdout.fileno()
        partial = b""
        drain_until = None
        held = False
        try:
            while True:
                ready = waitio.readable([fd], self.tick_s)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    tail += chunk
                    del tail[:-OUTPUT_TAIL]
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()
                    for line in lines:
                        build_log.info("%s", line.decode("utf-8", "replace").rstrip("\r"))
                self._check_cancel(proc)
                if proc.poll() is not None:
                    # `cmd &` leaves a process holding the output: the build is over anyway
                    drain_until = drain_until or time.monotonic() + 0.5
                    if time.monotonic() >= drain_until:
                        held = True
                        break
            if partial:
                build_log.info("%s", partial.decode("utf-8", "replace"))
            while proc.poll() is None:  # output closed; the command may still be finishing
                self._check_cancel(proc)
                try:
                    proc.wait(self.tick_s)
                except subprocess.TimeoutExpired:
                    pass
            # like Air, what the command left running in the background stays running
            code = process.release(proc)
        finally:
            if held:
                log.debug("a process started by %r still writes to the build output", command)
                self._strays.append(proc.stdout)
            else:
                proc.stdout.close()
        return code, tail.decode("utf-8", "replace")

    def _drain_strays(self):
        """Pass on output of processes a build left running (never blocks)."""
        if not self._strays:
            return
        ready = waitio.readable(self._strays, 0)
        for f in ready:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                self._strays.remove(f)
                f.close()
                continue
            for line in chunk.decode("utf-8", "replace").splitlines():
                build_log.info("%s", line)

    def _check_cancel(self, proc):
        if not self.should_stop:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._take(item)
            if not (self._pending or self.should_stop):
                return
        # a build is disposable: a short grace, whatever kill_delay says for the app
        process.stop(proc, signal.SIGTERM, grace_s=MIN_GRACE_S, name="build", force=self.force)
        raise _Cancelled()

    def _report_build_failure(self, command, code, output):
        error = "%s: %s" % (command, process.describe_exit(code))
        hint = ""
        if code == 127:
            hint = " (command not found: check build.cmd / build.pre_cmd)"
        log.error("build failed: %s%s", error, hint)
        self._write_build_log(output)
        self.listener.build_failed(command, output, error + hint)

    def _write_build_log(self, output):
        if not self.cfg.build.log:
            return
        path = os.path.join(self.cfg.tmp_path, self.cfg.build.log)
        try:
            os.makedirs(self.cfg.tmp_path, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(output)
            if path not in self.written_files:
                self.written_files.append(path)
        except OSError as exc:
            log.warning("cannot write the build log %s: %s", path, exc)

    # --- the app ---
    def app_command(self):
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

    def _start_app(self):
        if self.should_stop:
            return
        try:
            command, shell = self.app_command()
        except FileNotFoundError as exc:
            log.error("%s", exc)
            return
        env = envfile.load(self.cfg.env_files, self.cfg.root_path)
        env[process.ROLE_VAR] = "app"  # inherited by all it starts: see process.ROLE_VAR
        shown = command if shell else " ".join(shlex.quote(a) for a in command)
        log.info("running %s", shown)
        try:
            self.app = process.spawn(command, cwd=self.cfg.root_path, env=env, shell=shell)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            log.error("cannot start the app (%s): %s", shown, exc)
            return
        self.listener.app_started()

    def _check_app(self):
        now = time.monotonic()
        if self.app is not None and self.app.poll() is not None:
            app, self.app = self.app, None
            log.info("app exited (%s)", process.describe_exit(app.returncode))
            process.release(app)
            # like Air, leave what it started alone until the next restart or shutdown;
            # keep it only while its group lives (its pid may be reused once it is empty)
            if process.group_alive(app.pid):
                self._exited_app = app
            if self.cfg.build.rerun:
                self._rerun_at = now + self.cfg.build.rerun_delay_s
        if self._rerun_at is not None and now >= self._rerun_at and self.app is None:
            self._rerun_at = None
            self._stop_app()  # what the previous run left behind
            self._start_app()

    def _grace(self):
        return max(self.cfg.build.kill_delay_s, MIN_GRACE_S)

    def _stop_app(self):
        sig = signal.SIGINT if self.cfg.build.send_interrupt else signal.SIGTERM
        exited, self._exited_app = self._exited_app, None
        if exited is not None:
            process.stop(exited, sig, grace_s=self._grace(), name="app", force=self.force, adopt=True)
        app, self.app = self.app, None
        if app is None:
            return
        code = process.stop(app, sig, grace_s=self._grace(), name="app", force=self.force, adopt=True)
        log.info("app stopped (%s)", process.describe_exit(code))

    # --- at shutdown ---
    def _run_post_cmd(self):
        """build.post_cmd, each bounded by POST_CMD_TIMEOUT_S; skipped by a second Ctrl-C."""
        cfg = self.cfg
        commands = [c for c in cfg.build.post_cmd if c.strip()]
        if not commands or self.force.is_set():
            return
        env = envfile.load(cfg.env_files, cfg.root_path)
        for command in commands:
            if self.force.is_set():
                break
            main_log.info("post_cmd: %s", command)
            try:
                proc = process.spawn(command, cwd=cfg.root_path, env=env, shell=True)
            except (OSError, ValueError) as exc:
                main_log.error("post_cmd %r cannot start: %s", command, exc)
                continue
            deadline = time.monotonic() + POST_CMD_TIMEOUT_S
            while proc.poll() is None and not self.force.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    main_log.warning("post_cmd %r still running after %.0fs; stopping it",
                                     command, POST_CMD_TIMEOUT_S)
                    break
                self.force.wait(min(0.05, remaining))
            code = process.stop(proc, grace_s=MIN_GRACE_S, name="post_cmd", force=self.force)
            if code:
                main_log.warning("post_cmd %r: %s", command, process.describe_exit(code))
