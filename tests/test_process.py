"""process.py and proctable.py: real process trees, real signals, real /proc."""

import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from air_std import process, proctable
from conftest import pid_alive, wait_until

# A leader that starts: a child ignoring SIGTERM, and a setsid-detached
# daemon (double fork) that leaves the group. Each writes its pid to a file.
TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    d = sys.argv[1]
    def note(name):
        with open(os.path.join(d, name), "w") as f:
            f.write(str(os.getpid()))
    if len(sys.argv) > 2 and sys.argv[2] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("stubborn.pid")
        while True: time.sleep(0.05)
    if len(sys.argv) > 2 and sys.argv[2] == "daemon":
        if os.fork(): os._exit(0)
        os.setsid()
        if os.fork(): os._exit(0)
        note("daemon.pid")
        while True: time.sleep(0.05)
    note("leader.pid")
    subprocess.Popen([sys.executable, __file__, d, "stubborn"])
    subprocess.Popen([sys.executable, __file__, d, "daemon"]).wait()
    while True: time.sleep(0.05)
""")


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    # the test process plays air_std's role: descendants that double-fork come back to it
    assert process.make_subreaper()


@pytest.fixture(autouse=True, params=["children-files", "full-scan"])
def proc_reading(request, monkeypatch):
    """Every test runs with both ways of reading /proc: air_std's subtree through
    /proc/PID/task/TID/children, and the scan of every process (older kernels)."""
    if request.param == "children-files":
        if not proctable.CHILDREN_FILES:
            pytest.skip("this kernel has no /proc/PID/task/TID/children")
    else:
        monkeypatch.setattr(proctable, "CHILDREN_FILES", False)
    return request.param


def test_both_readings_of_proc_agree_on_the_subtree(tmp_path, monkeypatch):
    proc, pids = start_tree(tmp_path)
    try:
        me = os.getpid()
        mine = proctable.read().descendants(me)
        monkeypatch.setattr(proctable, "CHILDREN_FILES", not proctable.CHILDREN_FILES)
        assert proctable.read().descendants(me) == mine
        assert set(pids) <= mine
    finally:
        process.stop(proc, signal.SIGTERM, grace_s=0.3, adopt=True)


def test_a_grandchild_reparented_while_proc_is_read_is_never_missed():
    """B forks D and exits while we read the table: D moves to us (the subreaper)
    between reads, and a single walk from the top could see neither B's nor our
    list holding it. stop() would then call the tree gone with D alive."""
    me = os.getpid()
    orphans = []
    misses = reads = 0
    try:
        for _ in range(60):
            r, w = os.pipe()
            b = os.fork()
            if b == 0:  # B: fork D, tell its pid, exit a moment later
                try:
                    d = os.fork()
                    if d == 0:
                        time.sleep(30)
                        os._exit(0)
                    os.write(w, b"%d\n" % d)
                    end = time.monotonic() + 0.002
                    while time.monotonic() < end:
                        pass
                finally:
                    os._exit(0)
            os.close(w)
            d = int(os.read(r, 32))
            os.close(r)
            orphans.append(d)
            reparented = 0
            while reparented < 3:
                table = proctable.read()
                reads += 1
                if d not in table.descendants(me):
                    misses += 1
                with open("/proc/%d/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        reparented += 1
            os.waitpid(b, 0)
    finally:
        for d in orphans:
            os.kill(d, signal.SIGKILL)
            os.waitpid(d, 0)
    assert misses == 0, "%d of %d reads of /proc missed a live grandchild" % (misses, reads)


def start_tree(tmp_path):
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    proc = process.spawn([sys.executable, str(script), str(tmp_path)], cwd=str(tmp_path),
                         env=dict(os.environ, **{proctable.ROLE_VAR: "app"}))
    names = ("leader.pid", "stubborn.pid", "daemon.pid")
    wait_until(lambda: all((tmp_path / n).exists() and (tmp_path / n).read_text() for n in names),
               timeout=10, what="the tree to start")
    return proc, [int((tmp_path / n).read_text()) for n in names]


def test_stop_kills_whole_tree_including_detached_and_stubborn(tmp_path):
    proc, pids = start_tree(tmp_path)
    daemon = pids[2]
    assert os.getpgid(daemon) != proc.pid  # it really left the group
    code = process.stop(proc, signal.SIGTERM, grace_s=0.3, adopt=True)
    assert code is not None
    for pid in pids:
        assert not pid_alive(pid), "pid %d survived" % pid
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_stop_returns_early_when_everything_exits(tmp_path):
    proc = process.spawn("exec sleep 30", cwd=str(tmp_path), env=None, shell=True)
    code = process.stop(proc, signal.SIGTERM, grace_s=5)
    assert code == -signal.SIGTERM


def test_force_event_skips_the_grace(tmp_path):
    proc, pids = start_tree(tmp_path)
    force = threading.Event()
    force.set()
    process.stop(proc, signal.SIGTERM, grace_s=60, force=force, adopt=True)
    assert not any(pid_alive(p) for p in pids)


def test_stop_after_exit_is_safe(tmp_path):
    proc = process.spawn("exit 3", cwd=str(tmp_path), env=None, shell=True)
    proc.wait(5)
    assert process.stop(proc) == 3


def test_descendants_and_describe_exit(tmp_path):
    proc = process.spawn("sleep 30 & sleep 30 & wait", cwd=str(tmp_path), env=None, shell=True)
    wait_until(lambda: len(proctable.read().descendants(proc.pid)) >= 2, what="two children")
    process.stop(proc, grace_s=1)
    assert process.describe_exit(-9) == "killed by SIGKILL"
    assert process.describe_exit(2) == "exit status 2"


def test_kill_all_descendants_sweeps(tmp_path):
    procs = [process.spawn("exec sleep 30", cwd=str(tmp_path), env=None, shell=True) for _ in range(3)]
    process.kill_all_descendants()
    for p in procs:
        assert p.wait(5) == -signal.SIGKILL
        process._forget(p)


def test_without_proc_the_group_signal_is_what_counts(tmp_path, monkeypatch):
    """macOS and the BSDs have no /proc: the table is empty, and whether a group
    still lives is asked of the kernel (killpg(pgid, 0)), in one place. They have
    no subreaper either: orphans go to init, which reaps them (a subreaper with no
    table to find its zombies in would keep the group alive)."""
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    monkeypatch.setattr(proctable, "read", lambda: proctable.ProcTable({}, available=False))
    assert prctl(36, 0, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER off, for this test only
    try:
        proc = process.spawn("sleep 30 & exec sleep 30", cwd=str(tmp_path), env=None, shell=True)
        assert process.group_alive(proc.pid)
        assert process.stop(proc, signal.SIGTERM, grace_s=5) == -signal.SIGTERM
        assert not process.group_alive(proc.pid)
    finally:
        assert process.make_subreaper()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open here (Linux, Python >= 3.9)")
def test_the_app_output_thread_reports_the_exit_even_while_a_child_holds_the_pipes(tmp_path):
    """The runner sleeps while the app runs and is woken by its exit: the exit
    must be reported even when something the app started keeps the output
    pipes open (then end of file never comes)."""
    import subprocess
    from air_std.appoutput import AppOutput
    script = "import subprocess, sys; subprocess.Popen(['sleep', '30']); print('bye', flush=True)"
    proc = process.spawn([sys.executable, "-c", script], cwd=str(tmp_path), env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exited = threading.Event()
    sink_r, sink_w = os.pipe()  # where the output is copied: a few bytes, it never fills
    out = AppOutput(proc.stdout, proc.stderr, sink_w, sink_w, pid=proc.pid, on_exit=exited.set)
    try:
        assert out.watches_exit
        out.start()
        wait_until(exited.is_set, timeout=10, what="the exit reported by the output thread")
        assert proc.poll() is not None  # reported once it can be reaped, not before
        assert "bye" in out.tail()
        assert out._thread.is_alive()  # the sleeping child still holds the pipes: still reading
    finally:
        process.stop(proc, signal.SIGTERM, grace_s=1.0, name="test")
        out.finish()
        os.close(sink_r)
        os.close(sink_w)
    assert not out._thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open here (Linux, Python >= 3.9)")
def test_the_app_output_wake_pipe_is_closed_by_a_thread_that_outlives_finish(tmp_path):
    """finish() waits a bounded time for the output thread; one still busy
    then (here: in a slow exit callback) closes the wake-up pipe itself as it
    ends, so no descriptor is left behind either way."""
    import fcntl
    import subprocess
    from air_std.appoutput import AppOutput
    proc = process.spawn([sys.executable, "-c", "pass"], cwd=str(tmp_path), env=dict(os.environ),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    in_callback, release = threading.Event(), threading.Event()

    def slow_on_exit():
        in_callback.set()
        assert release.wait(10)

    sink_r, sink_w = os.pipe()
    out = AppOutput(proc.stdout, proc.stderr, sink_w, sink_w, pid=proc.pid, on_exit=slow_on_exit)
    wake_w = out._wake_w
    try:
        out.start()
        wait_until(in_callback.is_set, timeout=10, what="the exit callback")
        out.finish(timeout=0.05)
        assert out._thread.is_alive()
        fcntl.fcntl(wake_w, fcntl.F_GETFD)  # still open: the thread has not ended
    finally:
        release.set()
        out._thread.join(10)
        proc.wait(10)
        os.close(sink_r)
        os.close(sink_w)
    assert not out._thread.is_alive()
    with pytest.raises(OSError):
        fcntl.fcntl(wake_w, fcntl.F_GETFD)  # closed by the thread as it ended
