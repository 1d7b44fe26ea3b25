"""Running a build: `pre_cmd` then `cmd`, cancellable, with its output shown.

Used by the runner thread only; no thread of its own. While a command runs,
`Builder` reads its output (buildoutput.py) and, between reads, asks the
runner whether a newer change or a stop arrived (`cancel_requested`); if so
it stops the command's process group and raises BuildCancelled.

A failed command is reported with a log line and an entry appended to the
build log (`build.log` in tmp_dir, Air's build-errors.log), and kept in
`failure` (command, output tail, error) for the runner, which decides what
follows from build.stop_on_error (the browser's overlay among it).

A failing pre_cmd is handled as Air's buildRun (runner/engine.go) handles it:
the remaining pre_cmd entries are skipped, and with stop_on_error = true the
build ends there; with false, cmd still runs.
"""

import logging
import os
import signal
import subprocess
import time

from air_std import config, envfile, events, process, proctable, waitio
from air_std.buildoutput import READ_SIZE, BuildOutput

__all__ = ["Builder", "BuildCancelled"]

log = logging.getLogger("air_std.runner")
build_log = logging.getLogger("air_std.build")

# A build is disposable: stopping one gives it this long, whatever kill_delay says for the app.
CANCEL_GRACE_S = 0.5
# A command whose pipe stays open this long after it exited left a process
# holding it (`cmd &`): the build is over, and that output is read on the side.
HELD_PIPE_S = 0.5


class BuildCancelled(Exception):
    """A build was interrupted by a newer change or by shutdown."""


class Builder:
    """Runs the build commands of one config; `written_files` lists what it wrote.

    force: a second Ctrl-C (ends a cancelled build's grace). strays: a
    buildoutput.StrayPipes that takes over the output of what a command left
    running. After a failed run, `failure` is (command, output tail, error).
    """

    def __init__(self, cfg, force, strays, tick_s=0.1):
        self.cfg = cfg
        self.force = force
        self.strays = strays
        self.tick_s = tick_s
        self.written_files = []  # the build log, for clean_on_exit
        self.failure = None
        self.failure_status = None

    def run(self, cancel_requested):
        """Run pre_cmd then cmd; True when every command succeeded. Raises
        BuildCancelled once cancel_requested() (called between reads of the
        output) is true."""
        b = self.cfg.build
        pre = [c for c in b.pre_cmd if c.strip()]
        if not pre and not b.cmd.strip():
            return True
        log.info("building...")
        self.failure = None
        started = time.monotonic()
        events.emit("build_started", commands=pre + ([b.cmd] if b.cmd.strip() else []))
        env = envfile.load(self.cfg.env_files, self.cfg.root_path)
        env[proctable.ROLE_VAR] = "build"
        for command in pre:
            if not self._run_one(command, env, cancel_requested):
                if b.stop_on_error:
                    return self._failed(started)
                # Air's buildRun: without stop_on_error a failed pre_cmd does not stop cmd
                if b.cmd.strip():
                    log.info("running build.cmd anyway (build.stop_on_error = false)")
                break
        if b.cmd.strip() and not self._run_one(b.cmd, env, cancel_requested):
            return self._failed(started)
        if self.failure is not None:
            return self._failed(started)
        took = time.monotonic() - started
        log.info("build ok in %.2fs", took)
        events.emit("build_succeeded", duration=round(took, 3))
        return True

    def _failed(self, started):
        command, output, error = self.failure
        events.emit("build_failed", duration=round(time.monotonic() - started, 3), command=command,
                    exit_status=self.failure_status, error=error, output=events.tail_lines(output))
        return False

    def _run_one(self, command, env, cancel_requested):
        code, output = self.run_command(command, env, cancel_requested)
        if code != 0:
            self._report_failure(command, code, output)
        return code == 0

    def run_command(self, command, env, cancel_requested):
        """(exit status, tail of the output) of one command; raises BuildCancelled."""
        build_log.debug("$ %s", command)
        proc = process.spawn(command, cwd=self.cfg.root_path, env=env, shell=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = BuildOutput(build_log)
        held = False
        try:
            held = self._pass_output(proc, output, cancel_requested)
            if not held:
                output.lines.flush()
            while proc.poll() is None:  # output closed; the command may still be finishing
                self._cancel_if_asked(proc, cancel_requested)
                try:
                    proc.wait(self.tick_s)
                except subprocess.TimeoutExpired:
                    pass
            # like Air, what the command left running in the background stays running
            code = process.release(proc)
        finally:
            if held:
                log.debug("a process started by %r still writes to the build output", command)
                self.strays.add(proc.stdout, output.lines)
            else:
                proc.stdout.close()
        return code, output.text()

    def _pass_output(self, proc, output, cancel_requested):
        """Hand the output to `output` until end of file; True if the command
        exited but something it left running still holds the pipe."""
        fd = proc.stdout.fileno()
        held_since = None
        while True:
            if waitio.readable([fd], self.tick_s):
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    return False
                output.feed(chunk)
            self._cancel_if_asked(proc, cancel_requested)
            if proc.poll() is not None:
                now = time.monotonic()
                if held_since is None:
                    held_since = now
                if now - held_since >= HELD_PIPE_S:
                    return True

    def _cancel_if_asked(self, proc, cancel_requested):
        if cancel_requested():
            process.stop(proc, signal.SIGTERM, grace_s=CANCEL_GRACE_S, name="build", force=self.force)
            raise BuildCancelled()

    def _report_failure(self, command, code, output):
        error = "%s: %s" % (command, process.describe_exit(code))
        hint = ""
        if code == 127:
            hint = " (command not found: check build.cmd / build.pre_cmd)"
        log.error("build failed: %s%s", error, hint)
        self._write_build_log(command, error, output)
        self.failure = (command, output, error + hint)
        self.failure_status = code

    def _write_build_log(self, command, error, output):
        """Append one entry per failure, as Air's writeBuildErrorLog appends (Air
        writes only the error's text, such as "exit status 1", with no newline;
        an entry here says when, which command, how it ended, and the output).
        Only ever inside tmp_dir (config.build_log_path)."""
        path, why_not = config.build_log_path(self.cfg)
        if path is None:
            if why_not:
                log.warning("build log not written: %s", why_not)
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if output and not output.endswith("\n"):
            output += "\n"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write("=== %s build failed: %s\n%s\n" % (stamp, error, output))
            if path not in self.written_files:
                self.written_files.append(path)
        except OSError as exc:
            log.warning("cannot write the build log %s: %s", path, exc)
