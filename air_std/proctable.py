"""Reading the process tree below air_std from /proc.

Called by process.py on whichever thread stops or reaps processes (the
runner; the main thread at shutdown). Nothing here signals a process or
starts a thread.

`read()` returns a `ProcTable`: {pid: (ppid, pgid, state)} of the processes
below air_std. Where the kernel lists each thread's children
(/proc/PID/task/TID/children) only that subtree is read, a few files instead
of one per process on the machine (a busy CI host has hundreds); elsewhere
all of /proc is scanned, a superset. Without /proc at all (macOS, BSD) the
table is empty and says so (`available` is False): the one place that then
matters is `group_alive`, which falls back to asking the kernel about the
group itself.
"""

import os

__all__ = ["ProcTable", "read", "app_tagged", "ROLE_VAR", "CHILDREN_FILES"]

# Set in the app's environment (and so inherited by everything it starts), so that
# orphans re-parented to air_std can be told apart: the app's (stopped with it)
# from a build tool's daemons (left alone, as Air does).
ROLE_VAR = "AIR_STD_ROLE"
_APP_TAG = b"\0" + ROLE_VAR.encode() + b"=app\0"


class ProcTable:
    """One reading of the processes below air_std."""

    def __init__(self, entries, available=True):
        self.entries = entries  # {pid: (ppid, pgid, state)}
        self.available = available

    def alive(self, pid):
        """In the table and neither a zombie nor dead."""
        entry = self.entries.get(pid)
        return entry is not None and entry[2] not in ("Z", "X")

    def pgid(self, pid):
        return self.entries[pid][1]

    def descendants(self, root_pid):
        """Every pid below root_pid in the parent chain."""
        children = {}
        for pid, (ppid, _, _) in self.entries.items():
            children.setdefault(ppid, []).append(pid)
        found, stack = set(), [root_pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def children_of(self, ppid, state=None):
        """Direct children of ppid (in the given state only, when given)."""
        return [pid for pid, (parent, _, st) in self.entries.items()
                if parent == ppid and (state is None or st == state)]

    def group_alive(self, pgid):
        """Is any live process below air_std still in group pgid?

        Only processes below air_std count: once the leader is reaped its pid,
        and so its group id, may belong to an unrelated process. Without /proc
        the group signal is the only thing to go by."""
        if not self.available:
            try:
                os.killpg(pgid, 0)
                return True
            except (ProcessLookupError, PermissionError):
                return False
        return any(self.entries[p][1] == pgid and self.alive(p)
                   for p in self.descendants(os.getpid()))


def read():
    """The ProcTable of the processes below air_std, as they are now."""
    if CHILDREN_FILES:
        return ProcTable(_subtree(os.getpid()))
    try:
        names = os.listdir("/proc")
    except OSError:
        return ProcTable({}, available=False)
    table = {}
    for name in names:
        if name.isdigit():
            entry = _stat_entry(name)
            if entry is not None:
                table[int(name)] = entry
    return ProcTable(table)


def app_tagged(pid):
    """True if pid's environment says it descends from the app (see ROLE_VAR)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return (b"\0" + f.read()).find(_APP_TAG) >= 0
    except OSError:
        return False


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


def _subtree(root_pid):
    """{pid: (ppid, pgid, state)} of everything below root_pid, from the children lists."""
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
    if os.name == "nt":
        return False
    me = os.getpid()
    return os.path.exists("/proc/%d/task/%d/children" % (me, me))


# Whether this kernel lists children per thread; tests switch it off to run
# the scan of all of /proc that older kernels need.
CHILDREN_FILES = _has_children_files()
