"""Ctrl-C at any moment of start-up ends in a quiet exit: the built pyz, real
SIGINTs at random delays after the process starts, in the quick modes and
while the engine starts its parts.

Python itself can be interrupted while it initialises, before the first
line of air_std runs (importing `site`, or `runpy` to run the zip); it then
prints its own error, which no program can prevent. A traceback with any
frame of air_std (the pyz or the package) fails the test.
"""

import random
import re
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

RUNS = 25
# a frame in air_std's own code, in the pyz or in the package
OURS = re.compile(r'File "[^"]*(air_std\.pyz/|/air_std/)')


def _interrupted(args, cwd, delay_s):
    proc = subprocess.Popen([sys.executable] + args, cwd=str(cwd), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(delay_s)  # a quick mode may be over before the signal
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("air_std did not exit within 20 s of SIGINT (sent after %.0f ms)"
                             % (delay_s * 1000))
    return proc.returncode, err.decode("utf-8", "replace")


def _check(code, err, delay_s):
    where = "SIGINT after %.0f ms: exit %s\n%s" % (delay_s * 1000, code, err)
    if "Traceback" in err or "Fatal Python error" in err:
        # only Python's own start-up may show one, before air_std runs at all
        assert not OURS.search(err), where
        return
    assert code in (0, 130, -signal.SIGINT), where


@pytest.mark.parametrize("mode", ["-v", "--print-config"])
def test_sigint_during_a_quick_mode(pyz_path, tmp_path, mode):
    rng = random.Random(7)
    for _ in range(RUNS):
        delay = rng.uniform(0.0, 0.15)
        code, err = _interrupted([str(pyz_path), mode], tmp_path, delay)
        _check(code, err, delay)


def test_sigint_while_the_engine_starts(pyz_path, tmp_path):
    (tmp_path / ".air.toml").write_text(
        '[build]\ncmd = "true"\nentrypoint = ["%s", "-c", "import time; time.sleep(30)"]\n'
        'include_ext = ["go"]\n' % sys.executable)
    rng = random.Random(11)
    for _ in range(RUNS):
        delay = rng.uniform(0.0, 0.3)
        code, err = _interrupted([str(pyz_path)], tmp_path, delay)
        _check(code, err, delay)


def test_a_ctrl_c_wrapped_by_python_still_counts_as_one():
    from air_std.errors import interrupted

    class Field:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    try:
        type("Config", (), {"time": Field()})  # Python <= 3.11 wraps it in RuntimeError
    except BaseException as exc:  # KeyboardInterrupt itself on 3.12+
        assert interrupted(exc)
    try:
        raise ValueError("plain")
    except ValueError as exc:
        assert not interrupted(exc)


SWALLOWED_CTRL_C = """
import os, signal, sys
import air_std
air_std.catch_early_signals()

class Dropped:
    def __del__(self):
        # the handler runs inside this finalizer: Python drops its
        # KeyboardInterrupt (and would print "Exception ignored") and goes on
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100000):
            pass

Dropped()
print("the Ctrl-C was swallowed", flush=True)
from air_std import cli
sys.exit(cli.main())
"""


def test_a_ctrl_c_python_swallowed_during_start_up_still_stops_air_std(tmp_path):
    from conftest import REPO
    import os
    (tmp_path / ".air.toml").write_text(
        '[build]\ncmd = "true"\nentrypoint = ["%s", "-c", "open(\'app.started\', \'w\'); '
        'import time; time.sleep(30)"]\ninclude_ext = ["go"]\n' % sys.executable)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", SWALLOWED_CTRL_C], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("the swallowed Ctrl-C was lost: air_std kept running\n%s" % out.decode())
    text = out.decode()
    assert "the Ctrl-C was swallowed" in text, text
    # the dropped Ctrl-C prints nothing: a Ctrl-C at start-up is not a crash
    assert "Exception ignored" not in text and "Traceback" not in text, text
    assert proc.returncode == 0 and "shutting down" in text, text
    assert not (tmp_path / "app.started").exists(), text  # nothing was started
