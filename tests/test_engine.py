"""The engine and its part contract: real threads, a real air_std process,
real signals. A part that is slow to stop, or that crashes, must not stop the
rest of the shutdown sequence."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from air_std.part import Part, guarded
from conftest import REPO, pid_alive, wait_until

# A watcher whose full pass hangs, as a stat on a dead NFS server does: it
# cannot see stop() until the pass returns (30 s, far beyond the engine's wait).
SLOW_WATCHER_RUN = textwrap.dedent('''
    import sys, threading
    from air_std import cli, watch_poll

    real_full_pass = watch_poll.PollDriver.full_pass

    def hanging_full_pass(self):
        print("pass hangs", flush=True)
        threading.Event().wait(30)
        return real_full_pass(self)

    watch_poll.PollDriver.full_pass = hanging_full_pass
    sys.exit(cli.main())
''')


def start_air(tmp_path, script, toml):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".air.toml").write_text(toml.format(py=sys.executable))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    out = open(str(tmp_path / "out.txt"), "wb")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(proj), env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    out.close()
    return proj, proc, lambda: (tmp_path / "out.txt").read_text(errors="replace")


def exit_code(proc, output, timeout=20):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("air_std did not exit within %ds:\n%s" % (timeout, output())) from None


def test_a_watcher_slow_to_stop_does_not_skip_the_rest_of_the_shutdown(tmp_path):
    proj, proc, output = start_air(tmp_path, SLOW_WATCHER_RUN, textwrap.dedent('''
        [build]
        cmd = "true"
        entrypoint = ["{py}", "-c", "import os, time; open('app.pid', 'w').write(str(os.getpid())); time.sleep(60)"]
        post_cmd = ["echo done > post_cmd.ran"]
        poll_interval = 100
        include_ext = ["go"]
        watcher = "poll"  # the polling pass is what hangs (on NFS, auto polls too)
        '''))
    try:
        wait_until(lambda: (proj / "app.pid").exists() and "pass hangs" in output(), timeout=15,
                   what="the app and a hanging pass", output=output)
        app_pid = int((proj / "app.pid").read_text())
        proc.send_signal(signal.SIGINT)
        code = exit_code(proc, output)
        text = output()
        assert "thread air-watcher did not stop within 3.0s" in text, text
        assert "Traceback" not in text, text
        # the steps after the watcher's all ran: the app stopped, post_cmd ran
        assert not pid_alive(app_pid), text
        assert (proj / "post_cmd.ran").read_text() == "done\n", text
        assert code == 1, text  # a thread that would not end is a bug, not a clean stop
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


CRASHING_RUNNER_RUN = textwrap.dedent('''
    import sys
    from air_std import cli, runner

    class CrashingRunner(runner.Runner):
        def _check_app(self):
            super()._check_app()
            if self.app is not None:
                raise RuntimeError("runner bug")

    runner.Runner = CrashingRunner
    sys.exit(cli.main())
''')


def test_a_crashed_part_stops_everything_and_exits_1(tmp_path):
    proj, proc, output = start_air(tmp_path, CRASHING_RUNNER_RUN, textwrap.dedent('''
        [build]
        cmd = "true"
        entrypoint = ["{py}", "-c", "import os, time; open('app.pid', 'w').write(str(os.getpid())); time.sleep(60)"]
        post_cmd = ["echo done > post_cmd.ran"]
        '''))
    try:
        code = exit_code(proc, output)
        text = output()
        assert code == 1, text
        assert "air-runner crashed" in text and "RuntimeError: runner bug" in text, text
        app_pid = int((proj / "app.pid").read_text())
        assert not pid_alive(app_pid), text
        assert (proj / "post_cmd.ran").exists(), text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- the contract itself, on a minimal part -----------------------------------------


class Ticker(Part):
    """Counts ticks until stopped; its thread waits on the stop Event only."""

    def __init__(self, **kw):
        super().__init__("air-ticker", **kw)
        self.ticks = 0

    def run(self):
        while not self.stop_event.wait(0.01):
            self.ticks += 1


def test_stop_never_blocks_and_join_reports_the_end():
    t = Ticker()
    assert t.join(0) and not t.is_alive()  # never started: nothing to wait for
    t.start()
    wait_until(lambda: t.ticks > 2, what="a few ticks")
    assert t.is_alive()
    t.stop()
    t.stop()  # idempotent
    assert t.join(5) and not t.is_alive()
    with pytest.raises(RuntimeError, match="air-ticker already started"):
        t.start()


def test_a_shared_stop_event_stops_every_part_that_holds_it():
    shared = threading.Event()
    parts = [Ticker(stop_event=shared) for _ in range(3)]
    for p in parts:
        p.start()
    shared.set()
    assert all(p.join(5) for p in parts)


def test_the_crash_guard_logs_once_sets_stop_and_reports(caplog):
    told = []

    class Broken(Part):
        def run(self):
            raise ValueError("broken part")

    b = Broken("air-broken", on_crash=told.append)
    b.start()
    assert b.join(5)
    assert told == ["air-broken"] and b.should_stop
    records = [r for r in caplog.records if r.getMessage() == "air-broken crashed"]
    assert len(records) == 1 and records[0].exc_info[0] is ValueError


def test_guarded_returns_the_result_when_nothing_escapes():
    assert guarded("air-x", lambda: 42) == 42
