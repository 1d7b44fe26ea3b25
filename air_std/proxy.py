"""The live-reload proxy, as the engine sees it: one Part, and the runner's listener.

The browser talks to the proxy, the proxy talks to the app: it forwards every
request to 127.0.0.1:app_port, puts `<script src="/__air_internal/livereload.js">`
before the last `</body>` of HTML pages, and serves the event stream that
script listens to (`/__air_internal/sse`). The pieces:
- proxy_server.ProxyServer: the listening socket and the idle connections,
  a thread for each connection with a request in flight; proxy_limits: the
  budget of sockets under the open files limit;
- proxy_handler.ProxyHandler: one browser connection (dispatch, the proxy's
  own pages, forwarding), with request_head, request_body, response_relay,
  upstream (the shared app connections) and websocket_tunnel for the
  protocol work;
- broadcast.Subscribers: the registry of open event streams.

Threads:
- "air-proxy": accepts connections and watches the idle ones
  (ProxyServer.serve()) until stop(), then closes everything itself (see run());
- "air-proxy-conn-N": one browser connection while it has requests (keep-alive
  requests close together, an SSE stream, or a WebSocket tunnel);
- "air-proxy-notify": after `app_started()`, waits until the new app accepts
  TCP connections, then publishes the reload (Air publishes at spawn time and
  leans on request retries);
- the runner thread calls `app_started()`, `build_failed()` and `app_exited()`, the rules
  thread `reload_browsers()`; none of them blocks. The main thread calls
  `start()` and `stop()`.

Shutdown (`stop()`, any thread) never waits on a browser: the subscriber
registry is closed (every SSE handler wakes with STOP), the accept loop ends,
and after a short grace every socket still open (browser or app side) is shut
down, which wakes a handler blocked on a client that stopped reading; then
the handler threads are joined with a bound.
"""

import errno
import json
import logging
import pkgutil
import queue
import socket
import threading
import time

from air_std import events
from air_std.broadcast import Event, Subscribers
from air_std.errors import ProxyError
from air_std.messages import STOP
from air_std.part import Part, guarded
from air_std.proxy_handler import ProxyHandler
from air_std.proxy_http import APP_HOST
from air_std.proxy_limits import raise_open_files_limit
from air_std.proxy_server import ProxyServer

log = logging.getLogger("air_std.proxy")


class LiveReloadProxy(Part):
    """The proxy part of air_std, and the runner's listener.

    start() binds (ProxyError when the port is taken) and starts "air-proxy",
    which accepts connections until stop(), then closes every stream and
    connection and joins the handler threads itself, so stop() never blocks.
    app_started() and build_failed() are called from the runner thread, are
    thread-safe and never block. Tests may lower the class attributes on an
    instance.
    """

    ping_interval_s = 5.0  # SSE keep-alive comment; also how often a dead browser is noticed
    retry_interval_s = 0.05  # between connection attempts while the app is down
    down_log_interval_s = 5.0
    accept_poll_s = 0.1  # the longest the accept loop sleeps (stop() also wakes it)
    close_grace_s = 0.25  # woken SSE handlers and in-flight responses end cleanly within this
    stop_timeout_s = 3.5

    def __init__(self, proxy_cfg, subscribers=None):
        super().__init__("air-proxy")
        self.cfg = proxy_cfg
        # config.load() has checked the ports (set, in range, distinct)
        self.bind = proxy_cfg.bind or "127.0.0.1"  # an empty bind is the default, not every interface
        self.app_port = proxy_cfg.app_port
        self.app_start_timeout_s = proxy_cfg.app_start_timeout_s
        self.subscribers = subscribers if subscribers is not None else Subscribers()
        self.stopping = self.stop_event  # handlers watch it
        # the build-failed Event since the last app start; while it is set the runner
        # has stopped the app (build.stop_on_error), so requests get the 502 page at once
        self.last_failure = None
        # app start number; written by the runner thread only, read by handlers
        # (an int read or write is atomic in CPython)
        self.generation = 0
        self._inbox = queue.Queue()
        self._server = None
        self._notifier = None
        self._script = None
        self._last_down_log = None

    @property
    def port(self):
        """The bound port (proxy_port may be 0 in tests)."""
        if self._server is None:
            return int(self.cfg.proxy_port)
        return self._server.server_address[1]

    def script(self):
        if self._script is None:
            # pkgutil, not open(__file__...): inside a zipapp there is no directory
            data = pkgutil.get_data("air_std", "livereload.js")
            if not data:
                raise ProxyError("air_std/livereload.js is missing from the package; reinstall air_std")
            self._script = data
        return self._script

    def start(self):
        """Bind now (ProxyError if the port is taken), then serve in "air-proxy"."""
        self.script()
        port = int(self.cfg.proxy_port)
        raise_open_files_limit()  # before the server sizes its budget of sockets on it
        try:
            server = ProxyServer((self.bind, port), ProxyHandler, self)
        except OSError as exc:
            raise ProxyError(self._bind_error(port, exc)) from exc
        server.poll_s = self.accept_poll_s
        self._server = server
        self._notifier = threading.Thread(
            target=guarded, args=("air-proxy-notify", self._notify_loop, self.on_crash),
            name="air-proxy-notify")
        self._notifier.start()
        super().start()
        log.debug("listening on %s:%d, forwarding to %s:%d", self.bind, self.port, APP_HOST, self.app_port)

    def _bind_error(self, port, exc):
        if exc.errno == errno.EADDRINUSE:
            return ("proxy_port %d on %s is already in use by another program; stop it or set "
                    "proxy.proxy_port to a free port" % (port, self.bind))
        if exc.errno == errno.EACCES:
            return ("proxy_port %d on %s needs more privileges; set proxy.proxy_port above 1023"
                    % (port, self.bind))
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            return ("proxy.bind %r is not an address of this machine (%s); use 127.0.0.1, or "
                    "0.0.0.0 for every interface" % (self.bind, exc.strerror or exc))
        return "cannot listen on %s:%d for the proxy: %s" % (self.bind, port, exc.strerror or exc)

    def run(self):
        """Accept connections until stop(), then end every stream and connection."""
        server = self._server
        try:
            server.serve(self.stop_event)
        finally:
            self._close(server)

    def _close(self, server):
        deadline = time.monotonic() + self.stop_timeout_s - 0.5
        self.subscribers.close()
        self._inbox.put(STOP)
        server.close_idle()
        server.server_close()
        # woken SSE handlers and in-flight responses get a moment to end cleanly;
        # then idle keep-alives, stuck writers and tunnels are cut
        if server.join_handlers(self.close_grace_s):
            server.abort_connections()
            server.join_handlers(max(0.0, deadline - time.monotonic()))
        self._notifier.join(max(0.0, deadline - time.monotonic()))
        lingering = [t.name for t in server.join_handlers(0)]
        if self._notifier.is_alive():
            lingering.append(self._notifier.name)
        for name in lingering:
            log.error("thread %s did not stop in time (a bug: please report it)", name)

    def _wake(self):
        # every SSE handler wakes with STOP now, without waiting for the accept loop
        self.subscribers.close()
        self._inbox.put(STOP)
        if self._server is not None:
            self._server.wake()

    # --- the runner's listener (runner thread) ---
    def app_started(self):
        """The new app process was spawned: reload browsers once it accepts."""
        self.last_failure = None
        # counted at spawn, not at publish: a page served by the new app already
        # carries the new number, so its stream's hello cannot make it reload again
        self.generation += 1
        if not self.stopping.is_set():
            self._inbox.put("app-started")

    def build_failed(self, command, output, error):
        """Show the failure over every open page (and pages opened later); the
        runner calls it with build.stop_on_error, just before it stops the app."""
        event = Event("build-failed", json.dumps({"command": command, "output": output, "error": error}))
        self.last_failure = event
        n = self.subscribers.publish(event)
        log.debug("build failure sent to %d page(s)", n)

    def app_exited(self, error, output):
        """The app ended on its own (crash at import, port taken): show it over every
        open page at once, and on the 502 page of requests from now on, without
        waiting app_start_timeout for an app known to be dead. The next start
        clears it (app_started) and its reload removes the overlay."""
        event = Event("app-exited", json.dumps({"error": error, "output": output}))
        self.last_failure = event
        n = self.subscribers.publish(event)
        log.debug("app exit sent to %d page(s)", n)

    def reload_browsers(self, paths=()):
        """Reload every open page now, the app untouched (a [[build.rules]]
        entry with `reload = true`; the rules thread). When every path is a
        .css file, pages swap their stylesheets instead of reloading, so
        scroll position and form state stay. No app start number: every page
        acts on it. Returns (pages reached, what they were told, for the log)."""
        css = bool(paths) and all(p.lower().endswith(".css") for p in paths)
        data = {"reason": "rule", "css": css, "paths": list(paths)}
        n = self.subscribers.publish(Event("reload", json.dumps(data)))
        return n, "stylesheets swapped" if css else "reload"

    def app_accepts(self, timeout=0.25):
        """True if something accepts TCP connections on app_port now."""
        try:
            with socket.create_connection((APP_HOST, self.app_port), timeout=timeout):
                return True
        except OSError:
            return False

    def note_app_down(self, line):
        now = time.monotonic()
        if self._last_down_log is None or now - self._last_down_log >= self.down_log_interval_s:
            self._last_down_log = now
            log.warning("%s", line)

    def _notify_loop(self):
        deadline = None  # while waiting for a new app to accept connections
        while True:
            try:
                item = self._inbox.get(timeout=1.0 if deadline is None else self.retry_interval_s)
            except queue.Empty:
                item = None
            if item is STOP:
                return
            if item == "app-started":
                deadline = time.monotonic() + self.app_start_timeout_s  # a newer app restarts the wait
            if deadline is None:
                continue
            if self.app_accepts():
                reason = "app-ready"
            elif time.monotonic() >= deadline:
                log.warning("the app does not accept connections on %s:%d %.1fs after it started; "
                            "reloading the browser anyway", APP_HOST, self.app_port,
                            self.app_start_timeout_s)
                reason = "timeout"
            else:
                continue
            deadline = None
            n = self.subscribers.publish(
                Event("reload", json.dumps({"reason": reason, "gen": self.generation})))
            log.debug("reload sent to %d page(s)", n)
            if reason == "app-ready":
                events.emit_first("app_ready", port=self.app_port)
            events.emit("reload_sent", subscribers=n, reason=reason)
