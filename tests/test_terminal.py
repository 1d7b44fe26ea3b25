"""Control from the terminal, through the real CLI on a pseudo-terminal:
`r` + Enter, build.stdin = true (the app reads the terminal, pdb works),
Ctrl-C typed on the terminal, and SIGUSR1 beside them."""

import os
import pty
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import air_std_env, wait_until

pytestmark = pytest.mark.e2e

def project(tmp_path, app, extra=""):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(textwrap.dedent(app))
    (proj / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "echo build >> builds.txt"
        entrypoint = ["{py}", "app.py"]
        include_ext = ["py"]
        delay = 50
        poll_interval = 100
        {extra}
        ''').format(py=sys.executable, extra=extra))
    return proj


# Notes each start, then waits to be stopped (SIGTERM ends it).
WAITING_APP = '''
    import os, signal, sys
    with open("starts.txt", "a") as f:
        f.write("%d\\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.sigwait([signal.SIGUSR2])
'''


def lines(path):
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("how", ["module", "pyz"])
def test_r_enter_rebuilds_and_restarts_and_ctrl_c_stops(tmp_path, run_pty, request, how):
    proj = project(tmp_path, WAITING_APP)
    air = run_pty([], proj, pyz=request.getfixturevalue("pyz_path") if how == "pyz" else None)
    air.wait_for("Ctrl-C stops; r + Enter, SIGUSR1 or kill -USR1 %d rebuilds" % air.pid)
    wait_until(lambda: len(lines(proj / "starts.txt")) == 1, timeout=15, what="the first start",
               output=air.output)
    air.type(b"r\n")
    air.wait_for("restart asked for (r typed); rebuilding")
    wait_until(lambda: len(lines(proj / "starts.txt")) == 2, timeout=15, what="the second start",
               output=air.output)
    assert len(lines(proj / "builds.txt")) == 2  # a rebuild, not only a restart
    air.type(b"something else\n")  # not a command: nothing happens, nothing breaks
    os.kill(air.pid, signal.SIGUSR1)
    air.wait_for("restart asked for (SIGUSR1); rebuilding")
    wait_until(lambda: len(lines(proj / "starts.txt")) == 3, timeout=15, what="the third start",
               output=air.output)
    air.type(b"\x04")  # Ctrl-D: no more keys, SIGUSR1 and Ctrl-C still work
    air.wait_for("end of input on the terminal; r + Enter is off")
    air.type(b"\x03")  # Ctrl-C typed on the terminal
    assert air.wait() == 0, air.output()
    assert "shutting down (SIGINT)" in air.output()
    assert "Traceback" not in air.output()


def test_stdin_that_is_not_a_terminal_is_not_read(tmp_path, run_air):
    proj = project(tmp_path, WAITING_APP)
    air = run_air([], proj)  # stdin is /dev/null
    air.wait_for("Ctrl-C stops; SIGUSR1 or kill -USR1 %d rebuilds" % air.pid)
    assert "r + Enter" not in air.stderr()
    air.signal(signal.SIGINT)
    assert air.wait() == 0, air.output()


# Reads the terminal: each line is noted; "debug" enters pdb at a breakpoint().
READING_APP = '''
    import os, signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open("starts.txt", "a") as f:
        f.write("%d\\n" % os.getpid())
    for line in sys.stdin:
        with open("got.txt", "a") as f:
            f.write(line)
        if line.strip() == "debug":
            secret = 6
            breakpoint()
            with open("got.txt", "a") as f:
                f.write("after pdb\\n")
'''


def test_build_stdin_gives_the_terminal_to_the_app(tmp_path, run_pty):
    proj = project(tmp_path, READING_APP, extra="stdin = true")
    air = run_pty([], proj)
    air.wait_for("build.stdin = true: the terminal's input goes to the app")
    assert "r + Enter" not in air.output()
    wait_until(lambda: len(lines(proj / "starts.txt")) == 1, timeout=15, what="the app",
               output=air.output)
    air.type(b"hello\n")
    wait_until(lambda: "hello" in lines(proj / "got.txt"), timeout=10, what="the app's line",
               output=air.output)
    # `r` is the app's now: a line has one reader, so air_std did not take it
    air.type(b"r\n")
    wait_until(lambda: "r" in lines(proj / "got.txt"), timeout=10, what="r read by the app",
               output=air.output)
    assert "restart asked for" not in air.output()
    # pdb at a breakpoint() reads the same terminal
    air.type(b"debug\n")
    air.wait_for("(Pdb)")
    air.type(b"p secret * 7\n")
    air.wait_for("42")
    air.type(b"c\n")
    wait_until(lambda: "pdb" in lines(proj / "got.txt"), timeout=10, what="the app past pdb",
               output=air.output)
    # SIGUSR1 still restarts
    os.kill(air.pid, signal.SIGUSR1)
    wait_until(lambda: len(lines(proj / "starts.txt")) == 2, timeout=15, what="the restart",
               output=air.output)
    air.type(b"again\n")  # the new app reads the terminal too
    wait_until(lambda: "again" in lines(proj / "got.txt"), timeout=10, what="the new app's line",
               output=air.output)
    # Ctrl-C on the terminal stops air_std and the app, as without the key
    air.type(b"\x03")
    assert air.wait() == 0, air.output()
    assert "shutting down (SIGINT)" in air.output() and "Traceback" not in air.output()


# A shell's job control in a few lines: air_std runs as a background job (its
# own process group, not the terminal's foreground); SIGUSR2 to this wrapper
# brings it to the foreground, as `fg` does.
JOB_SHELL = """
import fcntl, os, signal, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
job = subprocess.Popen([sys.executable, "-m", "air_std"], process_group=0) \\
    if sys.version_info >= (3, 11) else \\
    subprocess.Popen([sys.executable, "-m", "air_std"], preexec_fn=lambda: os.setpgid(0, 0))
signal.signal(signal.SIGUSR2, lambda *_: os.tcsetpgrp(0, job.pid))
with open("job.pid", "w") as f:
    f.write(str(job.pid))
while True:
    try:
        sys.exit(job.wait())
    except InterruptedError:
        pass
"""


def test_in_the_background_air_std_leaves_the_terminal_alone(tmp_path):
    proj = project(tmp_path, WAITING_APP)
    master, slave = pty.openpty()
    env = air_std_env(NO_COLOR="1")
    shell = subprocess.Popen([sys.executable, "-c", JOB_SHELL], cwd=str(proj), env=env, stdin=slave,
                             stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = bytearray()

    def output():
        while select.select([master], [], [], 0)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out.extend(data)
        return out.decode("utf-8", "replace")

    try:
        wait_until(lambda: "r + Enter" in output() and len(lines(proj / "starts.txt")) == 1,
                   timeout=15, what="air_std started as a job", output=output)
        job = int((proj / "job.pid").read_text())
        os.write(master, b"r\n")
        # a background read would stop air_std (SIGTTIN); it keeps running, and the line waits
        os.kill(job, signal.SIGUSR1)
        wait_until(lambda: len(lines(proj / "starts.txt")) == 2, timeout=15, what="SIGUSR1's restart",
                   output=output)
        with open("/proc/%d/stat" % job) as f:
            assert f.read().rpartition(")")[2].split()[0] != "T", output()
        assert "r typed" not in output()
        os.kill(shell.pid, signal.SIGUSR2)  # `fg`: the waiting line is now read
        wait_until(lambda: "restart asked for (r typed)" in output(), timeout=15,
                   what="the line read in the foreground", output=output)
        wait_until(lambda: len(lines(proj / "starts.txt")) == 3, timeout=15, what="r's restart",
                   output=output)
        os.write(master, b"\x03")
        assert shell.wait(15) == 0, output()
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            try:
                os.killpg(int((proj / "job.pid").read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            shell.wait(5)
        os.close(master)
