"""The proxy's connections to the app: opening one, and the pool of idle
keep-alive ones that every browser connection shares.

Used by the connection threads ("air-proxy-conn-N"), which take a connection
for one request and give it back once the app's response is read, and by "air-proxy",
which closes the pool at shutdown. Thread-safe.

Why a shared pool rather than one app connection per browser connection:
each idle browser connection then held an idle connection to the app, so a
browser (or 3,000 of them) with many idle connections kept as many threads
waiting in a threaded app, which all woke at once when the browsers hung up,
and a new request waited behind them. Now the app sees about as many
connections as there are requests in flight, plus at most MAX_IDLE.
"""

import http.client
import select
import socket
import threading
from collections import deque

from air_std.proxy_http import APP_HOST
from air_std.upstream_response import UpstreamResponse

_poll = getattr(select, "poll", None)  # every POSIX system
# Idle connections to the app kept for reuse (Go's http.Transport keeps 2 per host).
MAX_IDLE = 8


def peek_state(sock):
    """What waits on a socket, without taking it: "none", "data", or "eof"
    (the peer closed it, or it is in error)."""
    old = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        return "data" if sock.recv(1, socket.MSG_PEEK) else "eof"
    except BlockingIOError:
        return "none"
    except OSError:
        return "eof"
    finally:
        try:
            sock.settimeout(old)
        except OSError:
            pass


def _readable_now(sock):
    """True if an idle socket has something to read: the peer closed it, or
    sent bytes nobody asked for. One poll(), no change of the socket's mode."""
    if _poll is None:
        return peek_state(sock) != "none"
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class AppConnection(http.client.HTTPConnection):
    """An http.client connection that remembers the socket the server tracks:
    http.client drops `sock` (sets it to None) when a response ends with the
    connection (HTTP/1.0, `Connection: close`, a body read until close) or the
    app hangs up, and that socket must still leave the server's count."""

    response_class = UpstreamResponse
    tracked_sock = None


def open_app_connection(app_port, connect_timeout_s, io_timeout_s):
    """A connected AppConnection to the app (OSError while it is not
    listening); its responses skip interim 1xx ones."""
    conn = AppConnection(APP_HOST, app_port, timeout=connect_timeout_s)
    try:
        conn.connect()
    except OSError:
        conn.close()
        raise
    conn.sock.settimeout(io_timeout_s)
    return conn


class UpstreamPool:
    """Idle keep-alive connections to the app. `track` and `untrack` are the
    server's: every socket the pool holds stays known to it (for the
    connection budget and for shutdown)."""

    def __init__(self, track, untrack, max_idle=MAX_IDLE):
        self._track = track
        self._untrack = untrack
        self.max_idle = max_idle
        self._idle = deque()
        self._lock = threading.Lock()
        self._closed = False

    def take(self):
        """The most recently used idle connection that the app has not
        closed meanwhile (a restart, its own idle timeout), or None."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return None
            if conn.sock is not None and not _readable_now(conn.sock):
                return conn
            self.discard(conn)  # EOF, or bytes nobody asked for: not reusable

    def give(self, conn):
        """Back after a complete response, for the next request."""
        with self._lock:
            if not self._closed and conn.sock is not None:
                self._idle.append(conn)
                conn = self._idle.popleft() if len(self._idle) > self.max_idle else None
        if conn is not None:
            self.discard(conn)

    def discard(self, conn):
        """Close a connection that will not be used again."""
        sock, conn.tracked_sock = conn.tracked_sock, None
        if sock is not None:
            self._untrack(sock)
        conn.close()

    def tracked(self, conn):
        """A new connection, made known to the server."""
        conn.tracked_sock = conn.sock
        self._track(conn.sock)
        return conn

    def clear(self):
        """Close every idle connection (the app they lead to has gone)."""
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            self.discard(conn)

    def close(self):
        """At shutdown: close the idle connections, and any given back later."""
        with self._lock:
            self._closed = True
        self.clear()
