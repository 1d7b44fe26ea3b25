"""Shared test helpers: waiting with a bound, free ports, running air_std for
real, and a check after every test that no process it started is left alive.

Every test gets `tmp_path`; any process whose working directory or command
line mentions that directory after the test is a leak and fails the test.
"""

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# Real .air.toml files from public projects. They live beside the repository, not
# in it: a clone elsewhere has none, and the tests that read them skip there.
CORPUS = REPO.parent / "shared" / "corpus" / "air-toml"


def corpus_files(sub=""):
    """The corpus's .toml files for parametrize; one placeholder when the corpus
    is absent, so that the test is collected and the `corpus` fixture skips it."""
    files = sorted((CORPUS / sub).glob("*.toml"))
    return files or [pytest.param(None, id="no-corpus")]


@pytest.fixture
def corpus():
    """The corpus directory; skips the test when it is absent, or fails it when
    AIR_REQUIRE_CORPUS=1 (CI has the corpus and must run these tests)."""
    if CORPUS.is_dir():
        return CORPUS
    why = "no .air.toml corpus at %s (it is kept beside the repository, in ../shared)" % CORPUS
    if os.environ.get("AIR_REQUIRE_CORPUS") == "1":
        pytest.fail("AIR_REQUIRE_CORPUS=1 but %s" % why)
    pytest.skip(why)


def wait_until(pred, timeout=5.0, interval=0.02, what="condition", output=None):
    """Poll pred() until truthy; on timeout fail with `what` and the child's output."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = ""
            if output is not None:
                extra = "\n--- output ---\n" + (output() if callable(output) else str(output))
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def procs_mentioning(marker):
    """Live pids (not zombies, not us) whose cwd or command line contains marker."""
    marker = str(marker)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == os.getpid():
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid)
            except OSError:
                cwd = ""
        except OSError:
            continue
        if (marker in cmd or cwd.startswith(marker)) and pid_alive(pid):
            found.append((pid, cmd.strip()))
    return found


@pytest.fixture(autouse=True)
def restore_air_std_logger():
    """Tests that run cli.main() or log.setup() install a handler and turn off
    propagation on the `air_std` logger; put it back so caplog sees records in
    every later test, whatever the order."""
    import logging
    logger = logging.getLogger("air_std")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path):
    yield
    left = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        left = procs_mentioning(tmp_path)
        if not left:
            return
        time.sleep(0.05)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    pytest.fail("processes left behind by the test: %r" % (left,))


@pytest.fixture(scope="session")
def pyz_path(tmp_path_factory):
    """Build air_std.pyz once per session with the same recipe as `make pyz`."""
    out = tmp_path_factory.mktemp("pyz") / "air_std.pyz"
    subprocess.run(["make", "-s", "-C", str(REPO), "pyz", "PYZ=%s" % out], check=True, timeout=60)
    return out


def air_std_env(env=None, **fixed):
    """os.environ with this checkout importable and output unbuffered, then
    `fixed`, then the test's own `env`."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(fixed)
    full_env.update(env or {})
    return full_env


class AirChild:
    """What every air_std run of a test has: its pid, signals, a bounded wait
    that shows the output on failure, and a kill of its whole session."""

    proc = None

    def output(self):
        raise NotImplementedError

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("air_std did not exit within %.1fs\n%s" % (timeout, self.output()))

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(5)


class AirProcess(AirChild):
    """A real air_std run in its own session, with its output in files."""

    def __init__(self, args, cwd, env=None, pyz=None):
        self.cwd = Path(cwd)
        self.out_path = self.cwd.parent / ("air-%s.out" % self.cwd.name)
        self.err_path = self.cwd.parent / ("air-%s.err" % self.cwd.name)
        cmd = [sys.executable, str(pyz)] if pyz else [sys.executable, "-m", "air_std"]
        full_env = air_std_env()
        full_env.pop("NO_COLOR", None)
        full_env.update(env or {})
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd + list(args), cwd=str(self.cwd), env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def output(self):
        return "--- stdout ---\n%s\n--- stderr ---\n%s" % (self.stdout(), self.stderr())

    def wait_for(self, text, timeout=10.0, count=1, stream="stderr"):
        read = self.stderr if stream == "stderr" else self.stdout
        return wait_until(lambda: read().count(text) >= count, timeout=timeout,
                          what="%r x%d in air_std's %s" % (text, count, stream), output=self.output)

    def close(self):
        self.kill()
        self._out.close()
        self._err.close()


# Makes the pty air_std's controlling terminal (start_new_session made it a
# session leader), then becomes air_std: the pty's foreground group is air_std's,
# as when a user runs it in a terminal.
TAKE_TTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")


class PtyAir(AirChild):
    """air_std with a pseudo-terminal as its stdout and stderr, and as its
    stdin and controlling terminal unless output_only (then stdin is
    /dev/null). colour: as a user's terminal (TERM=xterm, no NO_COLOR)."""

    def __init__(self, args, cwd, env=None, pyz=None, output_only=False, colour=False):
        self.master, slave = pty.openpty()
        full_env = air_std_env() if colour else air_std_env(NO_COLOR="1")
        if colour:
            full_env.pop("NO_COLOR", None)
            full_env.pop("FORCE_COLOR", None)
            full_env["TERM"] = "xterm"
        full_env.pop("PYTHONBREAKPOINT", None)
        full_env.update(env or {})
        air_std = [str(pyz)] if pyz else ["-m", "air_std"]
        if output_only:
            cmd, stdin = [sys.executable] + air_std + list(args), subprocess.DEVNULL
        else:
            cmd, stdin = [sys.executable, "-c", TAKE_TTY] + air_std + list(args), slave
        try:
            self.proc = subprocess.Popen(cmd, cwd=str(cwd), env=full_env, stdin=stdin, stdout=slave,
                                         stderr=slave, start_new_session=True)
        finally:
            os.close(slave)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._done = threading.Event()
        # the pty must be read all along, or air_std blocks writing its log
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while not self._done.is_set():
            ready = select.select([self.master], [], [], 0.1)[0]
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every slave end is closed
                return
            if not data:
                return
            with self._lock:
                self._buf += data

    def output(self):
        with self._lock:
            return self._buf.decode("utf-8", "replace")

    def wait_for(self, text, count=1, timeout=15.0):
        wait_until(lambda: self.output().count(text) >= count, timeout=timeout,
                   what="%r x%d on the terminal" % (text, count), output=self.output)

    def type(self, data):
        os.write(self.master, data)

    def close(self):
        self.kill()
        self._done.set()
        self._reader.join(2)
        os.close(self.master)


@pytest.fixture
def run_pty():
    started = []

    def start(args, cwd, env=None, pyz=None, **how):
        air = PtyAir(args, cwd, env, pyz, **how)
        started.append(air)
        return air

    yield start
    for air in started:
        air.close()


@pytest.fixture
def run_air():
    """Start air_std processes; every one is stopped (SIGKILL of its group) at teardown."""
    started = []

    def start(args, cwd, env=None, pyz=None):
        ap = AirProcess(args, cwd, env=env, pyz=pyz)
        started.append(ap)
        return ap

    yield start
    for ap in started:
        ap.close()


def http_get(port, path="/", timeout=2.0):
    """GET from 127.0.0.1:port; returns (status, body text) or None if unreachable."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
