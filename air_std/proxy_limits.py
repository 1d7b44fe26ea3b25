"""How many connections the proxy may hold, from the process's limit of open
files, and what it answers beyond that.

Called by the "air-proxy" thread (the accept loop) and, once at start, by
whichever thread starts the proxy. No state of its own but the process's
RLIMIT_NOFILE, which `raise_open_files_limit()` changes.

Every browser connection costs one descriptor, and one more while it has
a request at the app. When the process runs out (EMFILE), accept() fails
while the listening socket stays readable: an accept loop that just tries
again spins at 100% of a core and serves nobody, which the proxy did, with
nothing logged. So the proxy keeps its sockets within a budget below the
limit, closes the longest-idle keep-alive connection to make room, answers
503 when none is idle, and if accept() fails all the same it pauses
accepting for a moment instead of spinning.
"""

import errno
import logging
import socket

try:
    import resource
except ImportError:  # not on Windows
    resource = None

log = logging.getLogger("air_std.proxy")

# The soft limit is raised toward the hard one, up to this: more is never
# needed by a development proxy, and the app (a child) inherits the limit.
OPEN_FILES_TARGET = 8192
# Descriptors left to the rest of air_std (the watcher, build pipes, logs,
# the self-pipe, a refused connection's socket); at most a quarter of the limit.
RESERVED_FDS = 64
# errno values that mean "no descriptor or buffer for a new socket now".
EXHAUSTED = frozenset(e for e in (getattr(errno, n, None) for n in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"))
                      if e is not None)

REFUSAL_BODY = (b"air_std: too many open connections to the proxy; try again in a moment "
                b"(close some tabs, or raise the open files limit: ulimit -n)\n")
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Length: %d\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s"
           % (len(REFUSAL_BODY), REFUSAL_BODY))


def open_files_limit():
    """The soft RLIMIT_NOFILE, or None where there is no such limit to read."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit(target=OPEN_FILES_TARGET):
    """Raise the soft limit of open files toward the hard one, up to target
    (never lower it). Returns the soft limit now in force (None if unknown)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(hard, target)
    while soft != resource.RLIM_INFINITY and want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            log.debug("open files limit raised from %d to %d", soft, want)
            return want
        except (ValueError, OSError):  # macOS refuses more than its kern.maxfilesperproc
            want = max(soft, want // 2)
    return open_files_limit()


def socket_budget(limit):
    """How many sockets (browser and app side) the proxy may hold at once
    under an open files limit (None: unlimited, the target is used)."""
    limit = OPEN_FILES_TARGET if limit is None else min(limit, OPEN_FILES_TARGET)
    return max(4, limit - min(RESERVED_FDS, limit // 4))


def refuse(sock):
    """Answer 503 on a connection the proxy has no room for, and close it.
    Never blocks: the answer fits in an empty socket buffer."""
    try:
        sock.setblocking(False)
        sock.send(REFUSAL)
        sock.shutdown(socket.SHUT_WR)
        # Read what the browser sent already: closing with unread bytes
        # would reset the connection, and the browser could lose the answer.
        while sock.recv(65536):
            pass
    except OSError:
        pass  # would block, or the browser is gone: either way, done
    finally:
        sock.close()
