"""Waiting for file descriptors to become readable, whatever their number.

`select.select()` refuses descriptors >= FD_SETSIZE (1024), and air_std can
hold that many: the proxy keeps one socket per open browser stream, so a
build's pipe opened afterwards may get a high number. `poll()` has no such
limit. Used by whichever thread waits: the engine's main thread (self-pipe),
the watcher (inotify fd), the runner (build output), process.stop (pidfd).
"""

import errno
import math
import select

__all__ = ["readable"]

_poll = getattr(select, "poll", None)  # every POSIX system; not Windows
_READY = (getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
          | getattr(select, "POLLHUP", 16) | getattr(select, "POLLERR", 8))
_NVAL = getattr(select, "POLLNVAL", 32)


def readable(items, timeout_s):
    """The items (fds, or objects with fileno()) that are readable, at end of
    file or in error within timeout_s seconds (0: just look), in their order."""
    items = list(items)
    if _poll is None:
        return select.select(items, [], [], max(0.0, timeout_s))[0]
    poller = _poll()
    by_fd = {}
    for item in items:
        fd = item if isinstance(item, int) else item.fileno()
        by_fd[fd] = item
        poller.register(fd, select.POLLIN | select.POLLPRI)
    ms = int(math.ceil(max(0.0, timeout_s) * 1000.0))
    ready = set()
    for fd, events in poller.poll(ms):
        if events & _NVAL:  # as select() does: a closed fd is an error, not "not ready"
            raise OSError(errno.EBADF, "fd %d is not open" % fd)
        if events & _READY:
            ready.add(fd)
    return [item for fd, item in by_fd.items() if fd in ready]


def writable(fd, timeout_s):
    """True if fd can take a write (a pipe: at least one page) within timeout_s."""
    if _poll is None:
        return bool(select.select([], [fd], [], max(0.0, timeout_s))[1])
    poller = _poll()
    poller.register(fd, select.POLLOUT)
    ms = int(math.ceil(max(0.0, timeout_s) * 1000.0))
    return any(events & (select.POLLOUT | _READY) for _, events in poller.poll(ms))
