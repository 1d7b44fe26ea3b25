"""Spawning commands in their own process group and stopping them completely.

Called by the runner thread (builds, the app) and by the engine on the main
thread (post_cmd, the last-resort sweep at shutdown). Nothing here starts a
thread.

Stopping is about the whole tree, not the leader: a group signal reaches every
process in the command's group; descendants that left the group (`setsid`,
daemonizing) are found by walking /proc from the leader before signalling, and
because air_std makes itself a child subreaper (Linux) such processes are
re-parented to air_std when their parent dies, so they can still be found,
stopped and reaped. On platforms without /proc only the group is handled.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from air_std import waitio

IS_WINDOWS = os.name == "nt"
_pidfd_open = getattr(os, "pidfd_open", None)  # Linux, Python >= 3.9: a wakeup at a child's exit
log = logging.getLogger("air_std.runner")

# pids of live Popen children: Popen reaps these itself, so the orphan reaper
# must never waitpid() them (it would steal their exit status).
_tracked = set()
_tracked_lock = threading.Lock()
# Set in the app's environment (and so inherited by everything it starts), so that
# orphans re-parented to air_std can be told apart: the app's (stopped with it)
# from a build tool's daemons (left alone, as Air does).
ROLE_VAR = "AIR_STD_ROLE"


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


def _proc_table():
    """{pid: (ppid, pgid, state)} of the processes below air_std (a superset
    where the kernel has no /proc/PID/task/TID/children); None without /proc.

    Every caller asks about air_std's own subtree, so where the kernel lists
    each thread's children only that subtree is read: a few files, instead of
    one per process on the machine (a busy CI host has hundreds)."""
    if _CHILDREN_FILES:
        return _subtree_table(os.getpid())
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    table = {}
    for name in names:
        if name.isdigit():
            entry = _stat_entry(name)
            if entry is not None:
                table[int(name)] = entry
    return table


def _stat_entry(pid):
    """(ppid, pgid, state) from /proc/PID/stat; None once it is gone."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:  # exited while we looked
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2:].split()
    if len(fields) < 3:
        return None
    return int(fields[1]), int(fields[2]), fields[0].decode()


def _children(pid):
    """Children of every thread of pid; [] once it is gone."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return []
    kids = []
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                kids.extend(map(int, f.read().split()))
        except OSError:  # the thread ended
            continue
    return kids


def _subtree_table(root_pid):
    table = {}

    def add(pids):
        stack = list(pids)
        while stack:
            pid = stack.pop()
            if pid not in table:
                entry = _stat_entry(pid)
                if entry is not None:
                    table[pid] = entry
                    stack.extend(_children(pid))

    add(_children(root_pid))
    # A process whose parent exits while we walk moves to the subreaper (the
    # root) after we may have read the root's list and before its old parent's:
    # read the root's list again until it brings nobody new.
    for _ in range(10):
        new = [pid for pid in _children(root_pid) if pid not in table]
        if not new:
            break
        add(new)
    return table


def _has_children_files():
    me = os.getpid()
    return os.path.exists("/proc/%d/task/%d/children" % (me, me))


_CHILDREN_FILES = not IS_WINDOWS and _has_children_files()


def descendants(root_pid, table=None):
    """Every pid below root_pid in the parent chain (from /proc)."""
    table = (_proc_table() or {}) if table is None else table
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [root_pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _app_tagged(pid):
    """True if pid's environment says it descends from the app (see ROLE_VAR)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return (b"\0" + f.read()).find(b"\0" + ROLE_VAR.encode() + b"=app\0") >= 0
    except OSError:
        return False


def _alive(pid, table):
    entry = table.get(pid)
    return entry is not None and entry[2] not in ("Z", "X")


def reap_orphans():
    """Reap zombies re-parented to us (subreaper) that no Popen owns."""
    if IS_WINDOWS:
        return
    try:
        # cheap check first (no /proc scan): is any child of ours a zombie at all?
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return
    except ChildProcessError:
        return
    except (AttributeError, OSError):
        pass  # no waitid here: scan
    me = os.getpid()
    with _tracked_lock:
        tracked = set(_tracked)
    for pid, (ppid, _, state) in (_proc_table() or {}).items():
        if ppid == me and state == "Z" and pid not in tracked:
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
    """(groups, loose pids) still alive among the group and the known descendants.

    adopt: also take orphans re-parented to air_std that carry the app's tag in
    their environment (ROLE_VAR=app): the app's daemonized children, but not a
    build tool's daemon (gradle, sccache...), which Air would leave alone too.
    Only processes below air_std are ever signalled: after the leader is reaped
    its pid (and so its group id) may belong to an unrelated process.
    """
    table = _proc_table() if table is None else table
    if table is None:  # no /proc: trust the group signal alone
        try:
            os.killpg(pgid, 0)
            return {pgid}, set()
        except (ProcessLookupError, PermissionError):
            return set(), set()
    me = os.getpid()
    mine = descendants(me, table)
    if adopt:
        with _tracked_lock:
            tracked = set(_tracked)
        known |= {p for p, (ppid, _, st) in table.items()
                  if ppid == me and p not in tracked and st != "Z" and _app_tagged(p)}
    groups = {pgid} if any(table[p][1] == pgid and _alive(p, table) for p in mine) else set()
    loose = set()
    for pid in known & mine:
        if _alive(pid, table):
            owner = table[pid][1]
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
    pgid = proc.pid
    table = _proc_table()  # one read of /proc for both questions: signal sooner
    known = descendants(proc.pid, table or {})
    force = force or threading.Event()
    if not force.is_set() and grace_s > 0:
        groups, loose = _targets(pgid, known, adopt, table)
        _send(groups, loose, sig)
        if _wait_gone(proc, pgid, known, grace_s, force, adopt):
            return _finish(proc)
        if force.is_set():
            log.info("%s (pid %d): second signal; sending SIGKILL", name, proc.pid)
        else:
            log.warning("%s (pid %d) still running %.1fs after %s; sending SIGKILL",
                        name, proc.pid, grace_s, signal.Signals(sig).name)
    for _ in range(50):
        groups, loose = _targets(pgid, known, adopt)
        if not groups and not loose:
            break
        _send(groups, loose, signal.SIGKILL)
        if _wait_gone(proc, pgid, known, 0.2, None, adopt):
            break
    return _finish(proc)


def _wait_gone(proc, pgid, known, timeout_s, force, adopt):
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        if proc.poll() is not None:
            _forget(proc)
        reap_orphans()
        groups, loose = _targets(pgid, known, adopt)
        if not groups and not loose:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (force is not None and force.is_set()):
            return False
        if proc.returncode is None:
            # Most apps exit with their leader: wake the moment it does, so a
            # restart does not pay for a polling period.
            _wait_exit(proc, min(0.05, remaining))
        else:
            # The leader is gone but some of its tree lives on: poll, backing off.
            (force or threading.Event()).wait(min(pause, remaining))
            pause = min(pause * 2, 0.02)


def _wait_exit(proc, timeout_s):
    """Wait up to timeout_s for proc (not yet reaped) to exit; never raises."""
    fd = None
    if _pidfd_open is not None:
        try:
            fd = _pidfd_open(proc.pid)
        except OSError:  # kernel older than 5.3
            fd = None
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
    table = _proc_table()
    if table is None:  # no /proc
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    return any(table[p][1] == pgid and _alive(p, table) for p in descendants(os.getpid(), table))


def kill_all_descendants():
    """Last resort at shutdown: SIGKILL everything below air_std, then reap it."""
    if IS_WINDOWS:
        return 0
    table = _proc_table() or {}
    victims = descendants(os.getpid(), table)
    _send((), victims, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while victims and time.monotonic() < deadline:
        reap_orphans()
        table = _proc_table() or {}
        victims = {p for p in victims if _alive(p, table)}
        threading.Event().wait(0.01)
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
