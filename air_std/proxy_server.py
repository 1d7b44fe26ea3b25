"""The listening side of the live-reload proxy.

`ProxyServer` accepts browser connections and runs each in its own
non-daemon "air-proxy-conn-N" thread (ProxyHandler). The proxy's "air-proxy"
thread calls its `handle_request()` in a loop; at shutdown the same thread
calls `abort_connections()` and `join_handlers()`. It also remembers every
open socket, browser side and app side, so that shutdown can wake a
connection thread blocked on any of them.
"""

import itertools
import logging
import socket
import socketserver
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from air_std.proxy_http import CLIENT_GONE

log = logging.getLogger("air_std.proxy")


class ProxyServer(ThreadingHTTPServer):
    """The listening side. "air-proxy" calls handle_request(); every other
    method is safe from any thread. `proxy` is the LiveReloadProxy its
    handlers serve.

    Handler threads are non-daemon and tracked here, but `block_on_close` is
    off: the stdlib's server_close() would join them without a bound, while
    `join_handlers(timeout)` bounds it and `abort_connections()` wakes the
    stuck ones.
    """

    daemon_threads = False
    block_on_close = False
    request_queue_size = 1024  # the default 5 drops SYNs when many tabs (re)connect at once

    def __init__(self, address, handler_class, proxy):
        self.proxy = proxy
        self._lock = threading.Lock()
        self._handler_threads = set()
        self._open = set()  # browser and app sockets to shut down on abort
        self._seq = itertools.count(1)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler_class)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse-DNS lookup
        # that can stall startup for half a minute when the resolver does not
        # answer; the name it finds is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        # accept() right after select() said readable can still block (the peer
        # reset in between); a timeout keeps the accept loop responsive.
        self.socket.settimeout(1.0)

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="air-proxy-conn-%d" % next(self._seq))
        with self._lock:
            self._handler_threads.add(thread)
            self._open.add(request)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": too many connections
            log.warning("dropping a connection from %s: %s", client_address[0], exc)
            with self._lock:
                self._handler_threads.discard(thread)
            self.shutdown_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._handler_threads.discard(threading.current_thread())

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
