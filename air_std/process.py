"""Spawning commands in their own process group and stopping them completely.

Called by the runner thread (builds, the app, post_cmd) and by the engine on
the main thread (the last-resort sweep at shutdown). Nothing here starts a
thread.

Stopping is about the whole tree, not the leader: a group signal reaches every
process in the command's group; descendants that left the group (`setsid`,
daemonizing) are found in /proc (proctable.py) from the leader before
signalling, and because air_std makes itself a child subreaper (Linux) such
processes are re-parented to air_std when their parent dies, so they can still
be found, stopped and reaped. On platforms without /proc only the group is
handled.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from air_std import proctable, waitio

IS_WINDOWS = os.name == "nt"
_pidfd_open = getattr(os, "pidfd_open", None)  # Linux, Python >= 3.9: a wakeup at a child's exit
log = logging.getLogger("air_std.runner")

# pids of live Popen children: Popen reaps these itself, so the orphan reaper
# must never waitpid() them (it would steal their exit status).
_tracked = set()
_tracked_lock = threading.Lock()


def make_subreaper():
    """Linux: adopt orphaned descendants (PR_SET_CHILD_SUBREAPER). False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # 36 = PR_SET_CHILD_SUBREAPER
    except (ImportError, OSError, AttributeError):  # a Python built without _ctypes
        return False


def spawn(args, cwd, env, shell=False, stdout=None, stderr=None, stdin=subprocess.DEVNULL):
    """Start `args` (a shell command string when shell=True) as the leader of a new group."""
    if IS_WINDOWS:
        return _spawn_windows(args, cwd, env, shell, stdout, stderr, stdin)
    argv = ["/bin/sh", "-c", args] if shell else list(args)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            start_new_session=True)
    with _tracked_lock:
        _tracked.add(proc.pid)
    return proc


def _forget(proc):
    with _tracked_lock:
        _tracked.discard(proc.pid)


def _tracked_pids():
    with _tracked_lock:
        return set(_tracked)


def reap_orphans():
    """Reap zombies re-parented to us (subreaper) that no Popen owns."""
    if IS_WINDOWS:
        return
    try:
        # cheap check first (no /proc read): is any child of ours a zombie at all?
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return
    except ChildProcessError:
        return
    except (AttributeError, OSError):
        pass  # no waitid here: read the table
    tracked = _tracked_pids()
    for pid in proctable.read().children_of(os.getpid(), state="Z"):
        if pid not in tracked:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _send(pgids, pids, sig):
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _targets(pgid, known, adopt, table=None):
    """(groups, loose pids) still alive among the group (none when pgid is None)
    and the known descendants (a set, which adopted orphans are added to).

    adopt: also take orphans re-parented to air_std that carry the app's tag in
    their environment (proctable.ROLE_VAR=app): the app's daemonized children, but not a
    build tool's daemon (gradle, sccache...), which Air would leave alone too.
    Only processes below air_std are ever signalled: after the leader is reaped
    its pid (and so its group id) may belong to an unrelated process.
    """
    table = proctable.read() if table is None else table
    me = os.getpid()
    mine = table.descendants(me)
    if adopt:
        tracked = _tracked_pids()
        # Added to `known` in place, so an adopted process stays a target until it
        # is gone: once it is dying its environment can no longer be read.
        known.update(p for p in table.children_of(me)
                     if p not in known and p not in tracked and table.alive(p)
                     and proctable.app_tagged(p))
    groups = {pgid} if pgid is not None and table.group_alive(pgid) else set()
    loose = set()
    for pid in known & mine:
        if table.alive(pid):
            owner = table.pgid(pid)
            if owner == pid:  # a group leader of its own (setsid): take its group
                groups.add(owner)
            elif owner != pgid:
                loose.add(pid)
    return groups, loose


def stop(proc, sig=signal.SIGTERM, grace_s=0.5, name="app", force=None, adopt=False):
    """Stop proc's group and every descendant; return the leader's exit status.

    Sends `sig`, waits up to grace_s for everything to exit (ending early when
    the `force` Event is set: a second Ctrl-C), then SIGKILLs what is left and
    waits for it to be gone. Safe to call on a process that already exited.
    """
    if IS_WINDOWS:
        return _stop_windows(proc, grace_s)
    table = proctable.read()  # one read of /proc for both questions: signal sooner
    known = table.descendants(proc.pid)
    _stop_tree(proc, known, table, sig, grace_s, "%s (pid %d)" % (name, proc.pid), force, adopt)
    return _finish(proc)


def stop_adopted(sig=signal.SIGTERM, grace_s=0.5, name="app", force=None):
    """Stop the app's orphans when there is no app process left to stop them
    with: what an app that exited on its own left running outside its group
    (a double-forked `setsid` daemon holding the app's port), re-parented to
    air_std. Same escalation as stop(); returns how many there were."""
    if IS_WINDOWS:
        return 0
    table = proctable.read()
    known = set()
    _targets(None, known, True, table)
    if not known:
        return 0
    for pid in list(known):  # and what they started, in whatever group
        known |= table.descendants(pid)
    log.info("stopping what the %s left running: pid %s", name, ", ".join(map(str, sorted(known))))
    _stop_tree(None, known, table, sig, grace_s, "what the %s left running" % name, force, True)
    return len(known)


def _stop_tree(proc, known, table, sig, grace_s, who, force, adopt):
    """Signal, wait up to grace_s, then SIGKILL until all is gone. proc (the
    leader, whose group is taken) may be None: then `known` is the whole tree."""
    pgid = proc.pid if proc is not None else None
    force = force or threading.Event()
    if not force.is_set() and grace_s > 0:
        groups, loose = _targets(pgid, known, adopt, table)
        _send(groups, loose, sig)
        if _wait_gone(proc, pgid, known, grace_s, force, adopt):
            return
        if force.is_set():
            log.info("%s: second signal; sending SIGKILL", who)
        else:
            log.warning("%s still running %.1fs after %s; sending SIGKILL",
                        who, grace_s, signal.Signals(sig).name)
    for _ in range(50):
        groups, loose = _targets(pgid, known, adopt)
        if not groups and not loose:
            break
        _send(groups, loose, signal.SIGKILL)
        if _wait_gone(proc, pgid, known, 0.2, None, adopt):
            break


def _wait_gone(proc, pgid, known, timeout_s, force, adopt):
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        if proc is not None and proc.poll() is not None:
            _forget(proc)
        reap_orphans()
        groups, loose = _targets(pgid, known, adopt)
        if not groups and not loose:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (force is not None and force.is_set()):
            return False
        if proc is not None and proc.returncode is None:
            # Most apps exit with their leader: wake the moment it does, so a
            # restart does not pay for a polling period.
            _wait_exit(proc, min(0.05, remaining))
        else:
            # The leader is gone but some of its tree lives on: poll, backing off.
            (force or threading.Event()).wait(min(pause, remaining))
            pause = min(pause * 2, 0.02)


def exit_fd(pid):
    """An fd that turns readable when the child `pid` (not yet reaped) exits, or
    None where there is none (no pidfd_open: not Linux, Python < 3.9, a kernel
    older than 5.3). The caller closes it."""
    if _pidfd_open is None:
        return None
    try:
        return _pidfd_open(pid)
    except OSError:
        return None


def _wait_exit(proc, timeout_s):
    """Wait up to timeout_s for proc (not yet reaped) to exit; never raises."""
    fd = exit_fd(proc.pid)
    if fd is None:
        try:
            proc.wait(timeout_s)  # elsewhere: Popen's own sleep-and-poll loop
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        waitio.readable([fd], timeout_s)
    finally:
        os.close(fd)
    proc.poll()


def _finish(proc):
    try:
        code = proc.wait(5)
    except subprocess.TimeoutExpired:  # cannot happen after SIGKILL of its group; be loud
        log.error("%s (pid %d) did not exit after SIGKILL", "process", proc.pid)
        code = None
    _forget(proc)
    reap_orphans()
    return code


def release(proc):
    """Reap a finished process without touching anything it left running."""
    code = proc.wait()
    _forget(proc)
    return code


def group_alive(pgid):
    """Is any live process below air_std still in group pgid?"""
    return proctable.read().group_alive(pgid)


def kill_all_descendants():
    """Last resort at shutdown: SIGKILL everything below air_std, then reap it."""
    if IS_WINDOWS:
        return 0
    victims = proctable.read().descendants(os.getpid())
    _send((), victims, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    pause = threading.Event()  # never set: a bounded wait between reads
    while victims and time.monotonic() < deadline:
        reap_orphans()
        table = proctable.read()
        victims = {p for p in victims if table.alive(p)}
        pause.wait(0.01)
    return len(victims)


def describe_exit(code):
    """'exit status 2' or 'killed by SIGKILL' for a Popen returncode."""
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


# --- Windows: kept small and apart; untested here (README says so) ---

def _spawn_windows(args, cwd, env, shell, stdout, stderr, stdin):
    return subprocess.Popen(args, cwd=cwd, env=env, shell=shell, stdin=stdin, stdout=stdout,
                            stderr=stderr, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)


def _stop_windows(proc, grace_s):
    try:
        proc.send_signal(signal.CTRL_BREAK_EVENT)
        proc.wait(grace_s)
    except (OSError, subprocess.TimeoutExpired):
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    return proc.wait(10)
