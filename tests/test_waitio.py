"""waitio.readable: readiness of pipes, EOF and pidfds, at fd numbers above 1024
where select.select() gives up (the proxy can hold that many sockets)."""

import os
import resource
import subprocess
import sys
import time

import pytest

from air_std import process, waitio

HIGH_FD = 1500


@pytest.fixture
def high_pipe():
    """A pipe whose read end is fd HIGH_FD (above FD_SETSIZE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip("the fd limit here is %d" % hard)
    if soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH_FD + 1, hard))
    r, w = os.pipe()
    os.dup2(r, HIGH_FD)
    os.close(r)
    try:
        yield HIGH_FD, w
    finally:
        for fd in (HIGH_FD, w):
            try:
                os.close(fd)
            except OSError:
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_high_fd_timeout_then_data_then_eof(high_pipe):
    r, w = high_pipe
    t0 = time.monotonic()
    assert waitio.readable([r], 0.05) == []
    assert time.monotonic() - t0 >= 0.04
    os.write(w, b"x")
    assert waitio.readable([r], 1.0) == [r]
    os.read(r, 1)
    assert waitio.readable([r], 0) == []
    os.close(w)
    assert waitio.readable([r], 1.0) == [r]  # end of file counts as readable
    assert os.read(r, 1) == b""


def test_file_objects_come_back_as_given(high_pipe):
    r, w = high_pipe
    with os.fdopen(os.dup(r), "rb", buffering=0) as f:
        os.write(w, b"y")
        assert waitio.readable([f], 1.0) == [f]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd: Linux")
def test_stopping_an_app_with_many_fds_open_waits_instead_of_spinning(high_pipe):
    """process.stop's wait on the leader's exit with fds above 1024 in use."""
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(30)")
    fillers = []
    proc = None
    try:
        while not fillers or fillers[-1] < 1024:  # every low fd taken: the pidfd lands high
            fillers.append(os.dup(0))
        proc = process.spawn([sys.executable, "-c", code], cwd=".", env=None, stdout=subprocess.PIPE)
        assert waitio.readable([proc.stdout], 10), "the child never said its handler is installed"
        assert proc.stdout.readline() == b"ready\n"
        c0, t0 = time.process_time(), time.monotonic()
        process.stop(proc, grace_s=0.6)
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
    finally:
        for fd in fillers:
            os.close(fd)
        if proc is not None:
            if proc.returncode is None:
                process.stop(proc, grace_s=0)
            proc.stdout.close()
    assert proc.returncode is not None
    assert wall >= 0.5
    # a spin through the grace period would take about as much CPU as wall time
    assert cpu < wall / 2, (cpu, wall)


def test_a_closed_fd_is_an_error_not_a_silent_never_ready():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        waitio.readable([r], 0.2)
