"""The listening side of the live-reload proxy, and where idle connections wait.

`ProxyServer.serve()` runs in the proxy's "air-proxy" thread: one selector
watches the listening socket and every idle browser connection. A connection
with a request to serve gets its own non-daemon "air-proxy-conn-N" thread
(ProxyHandler.serve()); when it has had no request for a moment (the
handler's linger_s), the thread gives it back here and ends. So an idle
keep-alive connection costs one descriptor and no thread, and is closed after
keepalive_timeout_s, or sooner when the budget of sockets is full.

Why: with one thread per connection, 3,000 idle connections were 3,000
threads blocked in recv(); when those browsers hung up together, all of them
woke at once, and a new request's thread got the interpreter lock only as
often as each of the 3,000 did (each exit does several syscalls, each one a
new round of handing the lock around): it waited up to 3 s. Here those
3,000 closes are done by this one thread, which a request's thread takes
turns with, so a request waits for other requests in flight only.

At shutdown the same thread calls `close_idle()`, `abort_connections()` and
`join_handlers()`. Every open socket, browser side and app side, is tracked
so that shutdown can wake a connection thread blocked on any of them, and so
that the budget (proxy_limits) counts them.
"""

import itertools
import logging
import selectors
import socket
import socketserver
import sys
import threading
import time
from collections import OrderedDict, deque
from http.server import HTTPServer

from air_std.proxy_http import CLIENT_GONE
from air_std.proxy_limits import EXHAUSTED, open_files_limit, refuse, socket_budget
from air_std.upstream import UpstreamPool, peek_state

log = logging.getLogger("air_std.proxy")

_LISTEN = "listen"
_WAKE = "wake"
# How often a repeated warning (connections refused, descriptors exhausted) is logged.
WARN_INTERVAL_S = 60.0


class ProxyServer(HTTPServer):
    """The listening side. "air-proxy" calls serve() and, at shutdown,
    close_idle(); every other method is safe from any thread. `proxy` is the
    LiveReloadProxy its handlers serve. Tests may lower the class attributes
    on an instance.
    """

    request_queue_size = 1024  # the default 5 drops SYNs when many tabs (re)connect at once
    keepalive_timeout_s = 5.0  # an idle connection (no request in flight) is closed after this
    poll_s = 0.1  # the longest the loop sleeps (it is woken for stop and parked connections anyway)
    accept_batch = 64  # connections accepted in one go before the loop looks at the rest
    pause_s = 0.25  # accepting pauses this long when the process is out of descriptors

    def __init__(self, address, handler_class, proxy):
        self.proxy = proxy
        self._lock = threading.Lock()
        self._handler_threads = set()
        self._prune_at = 64
        self._open = set()  # browser and app sockets, for the budget and for abort
        self._seq = itertools.count(1)
        self._closing = False
        self._to_park = deque()  # idle connections handed back by their threads
        self._parked = OrderedDict()  # handler -> when it is closed; "air-proxy" only, oldest first
        self._warned = {}
        self.accept_failures = 0  # accept() found no descriptor (for tests and diagnostics)
        self.budget = socket_budget(open_files_limit())
        self.upstream = UpstreamPool(self.track, self.untrack)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()  # a byte here wakes serve()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler_class)  # a bind error calls server_close()
        self.socket.setblocking(False)  # accepted in batches until EAGAIN

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse-DNS lookup
        # that can stall startup for half a minute when the resolver does not
        # answer; the name it finds is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    # --- the "air-proxy" thread -------------------------------------------------

    def serve(self, stop_event):
        """Accept and watch idle connections until stop_event is set."""
        sel = self._sel
        sel.register(self.socket, selectors.EVENT_READ, _LISTEN)
        sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        paused_until = None
        while not stop_event.is_set():
            timeout = self.poll_s
            if self._parked:
                first = next(iter(self._parked.values()))
                timeout = min(timeout, max(0.0, first - time.monotonic()))
            ready = [key.data for key, _ in sel.select(timeout)]
            if _LISTEN in ready and not self._accept_ready():
                sel.unregister(self.socket)  # no descriptor left: wait, do not spin
                paused_until = time.monotonic() + self.pause_s
            if _WAKE in ready:
                self._take_parked()
            # A few idle connections per round, after the new ones: when
            # thousands hang up at once, closing them all before the next
            # accept() would keep a new browser waiting for that long. The
            # rest are still readable, and come back at the next select().
            # (One closed meanwhile to make room is not parked any more.)
            woken = [data for data in ready if data in self._parked]
            for handler in woken[:self.accept_batch]:
                self._wake_parked(handler)
            now = time.monotonic()
            if paused_until is not None and now >= paused_until:
                paused_until = None
                sel.register(self.socket, selectors.EVENT_READ, _LISTEN)
            while self._parked:
                handler, deadline = next(iter(self._parked.items()))
                if deadline > now:
                    break
                self._unpark(handler)
                self.close_handler(handler)  # idle for keepalive_timeout_s

    def _accept_ready(self):
        """Accept the connections waiting (up to accept_batch); False when the
        process has no descriptor left and no idle connection to close."""
        for _ in range(self.accept_batch):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    self.accept_failures += 1
                    self._warn("exhausted", "out of file descriptors (%s, open files limit %s): new "
                               "connections wait; raise the limit (ulimit -n) or close some tabs",
                               exc.strerror or exc, open_files_limit())
                    if self._evict_oldest():
                        continue
                    return False
                log.debug("accept failed: %r", exc)  # the browser gave up before it was accepted
                return True
            if not self._make_room():
                self._warn("full", "%d connections and app connections open, the most the open files "
                           "limit (%s) leaves room for: answering 503 to new ones until some close",
                           len(self._open), open_files_limit())
                refuse(sock)
                continue
            self._admit(sock, address)
        return True

    def _make_room(self):
        """True if the connection just accepted, and the app connection it may
        need, fit in the budget, after closing the longest-idle ones if needed."""
        while len(self._open) + 2 > self.budget:
            if not self._evict_oldest():
                return False
        return True

    def _evict_oldest(self):
        if not self._parked:
            return False
        handler = next(iter(self._parked))
        self._unpark(handler)
        self.close_handler(handler)
        return True

    def _admit(self, sock, address):
        self.track(sock)
        try:
            handler = self.RequestHandlerClass(sock, address, self)
        except Exception:
            self.handle_error(sock, address)
            self.shutdown_request(sock)
            return
        if peek_state(sock) == "none":
            self._park_here(handler)  # nothing sent yet: wait here, without a thread
        else:
            self._start(handler)

    def _take_parked(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._to_park:
            self._park_here(self._to_park.popleft())

    def _park_here(self, handler):
        try:
            self._sel.register(handler.connection, selectors.EVENT_READ, handler)
        except (ValueError, KeyError, OSError):  # closed meanwhile (abort)
            self.close_handler(handler)
            return
        self._parked[handler] = time.monotonic() + self.keepalive_timeout_s

    def _unpark(self, handler):
        del self._parked[handler]
        try:
            self._sel.unregister(handler.connection)
        except (ValueError, KeyError, OSError):
            pass

    def _wake_parked(self, handler):
        self._unpark(handler)
        if peek_state(handler.connection) == "eof":
            self.close_handler(handler)  # the browser hung up: done here, no thread needed
        else:
            self._start(handler)

    def _start(self, handler):
        thread = threading.Thread(target=self._run, args=(handler,), name="air-proxy-conn-%d" % next(self._seq))
        with self._lock:
            # a thread stays listed until it has ended (join_handlers must see one that is
            # still closing its connection); the ended ones are dropped now and then
            if len(self._handler_threads) >= self._prune_at:
                self._handler_threads = {t for t in self._handler_threads if t.is_alive()}
                self._prune_at = 2 * len(self._handler_threads) + 64
            self._handler_threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": too many at once
            with self._lock:
                self._handler_threads.discard(thread)
            self._warn("threads", "cannot start a thread for a connection from %s: %s; closing it",
                       handler.client_address[0], exc)
            self.close_handler(handler)

    def close_idle(self):
        """At shutdown: close every idle connection; any handed back later is
        closed by its own thread."""
        with self._lock:
            self._closing = True
        self._take_parked()
        for handler in list(self._parked):
            self._unpark(handler)
            self.close_handler(handler)
        self.upstream.close()

    def server_close(self):
        super().server_close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- connection threads -------------------------------------------------------

    def _run(self, handler):
        parked = False
        try:
            parked = handler.serve()
        except Exception:
            self.handle_error(handler.request, handler.client_address)
        if parked:
            self.park(handler)
        else:
            self.close_handler(handler)

    def park(self, handler):
        """Hand an idle connection to "air-proxy" to watch (any thread)."""
        with self._lock:
            closing = self._closing
            if not closing:
                self._to_park.append(handler)
        if closing:
            self.close_handler(handler)
            return
        self.wake()

    def wake(self):
        """Wake the loop in serve() now (any thread)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a wake-up is already pending, or the server is closed

    def close_handler(self, handler):
        try:
            handler.finish()
        except Exception:  # flushing to a browser that has gone
            pass
        self.shutdown_request(handler.request)

    # --- any thread ---------------------------------------------------------------

    def shutdown_request(self, request):
        # Forget the socket before closing it, under the lock abort_connections()
        # holds, so a shutdown() can never hit a closed (and reused) descriptor.
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, CLIENT_GONE) or (isinstance(exc, OSError) and self.proxy.stopping.is_set()):
            # a browser that left, or a socket stop() shut down under the handler
            log.debug("%s went away: %r", client_address[0], exc)
        else:
            log.error("request from %s failed", client_address[0], exc_info=True)

    def _warn(self, key, message, *args):
        """log.warning at most once per WARN_INTERVAL_S for each kind of trouble."""
        now = time.monotonic()
        last = self._warned.get(key)
        if last is None or now - last >= WARN_INTERVAL_S:
            self._warned[key] = now
            log.warning(message, *args)

    def track(self, sock):
        with self._lock:
            self._open.add(sock)

    def untrack(self, sock):
        with self._lock:
            self._open.discard(sock)

    def abort_connections(self):
        """Shut down every open socket: wakes any handler blocked on it."""
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the peer or not connected

    def join_handlers(self, timeout):
        """Join handler threads for up to timeout seconds; the ones still alive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in threads if t.is_alive()]

