"""One browser connection to the live-reload proxy.

`ProxyHandler` runs in that connection's "air-proxy-conn-N" thread (one per
connection, started by ProxyServer) and serves its keep-alive requests one
after the other. It dispatches each request to one of:
- the proxy's own pages under /__air_internal/: the client script, the event
  stream (SSE) it listens to, the app status the 502 page polls; and the
  answers the proxy gives itself: 502 (app not reachable), 503 (shutting
  down), 404, 405, 400 (a request it cannot forward);
- forwarding to the app, on one upstream connection per browser connection,
  reused while the app keeps it open; the response goes back through
  response_relay.ResponseRelay, the request body through request_body;
- a WebSocket Upgrade, handed to websocket_tunnel.WebSocketTunnel.

Request headers: `Accept-Encoding` is narrowed to gzip/deflate so an HTML page
can always be decoded for the injection (a brotli page could not be, with the
standard library); everything else but hop-by-hop headers is forwarded as is,
plus X-Forwarded-For/-Proto/-Host and Via.
"""

import http.client
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit, urlunsplit

from air_std.broadcast import Event, RegistryClosed
from air_std.inject import DECODABLE
from air_std.messages import STOP
from air_std.proxy_http import APP_HOST, CLIENT_GONE, HOP_BY_HOP, AppGone, tokens
from air_std.request_body import BadBody, framing, read_chunked, read_length
from air_std.response_relay import ResponseRelay
from air_std.websocket_tunnel import WebSocketTunnel, connect_app, status_of

log = logging.getLogger("air_std.proxy")

INTERNAL_PREFIX = "/__air_internal/"
SCRIPT_PATH = "/__air_internal/livereload.js"
SSE_PATH = "/__air_internal/sse"
STATUS_PATH = "/__air_internal/app-status"

# Request headers the proxy sets itself, or that only make sense on the
# browser's connection ("expect": the proxy reads the body without a 100).
_NOT_FORWARDED = frozenset((
    "expect", "content-length", "accept-encoding", "host",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "via"))
# Methods a browser may send again on a fresh connection when a kept-alive
# one turned out dead: they have no body and change nothing.
_REPLAYABLE = ("GET", "HEAD", "OPTIONS")


def format_sse(event):
    """One SSE message; multi-line data becomes several data: lines."""
    data = event.data.replace("\r\n", "\n").replace("\r", "\n")
    lines = "".join("data: %s\n" % line for line in data.split("\n"))
    return ("event: %s\n%s\n" % (event.name, lines)).encode("utf-8")


def _is_stale(sock):
    """True if the app closed this idle keep-alive connection (or sent junk)."""
    old = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        sock.recv(1, socket.MSG_PEEK)
        return True  # EOF (b"") or unsolicited bytes: either way not reusable
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        try:
            sock.settimeout(old)
        except OSError:
            pass


class ProxyHandler(BaseHTTPRequestHandler):
    """One browser connection, in its own "air-proxy-conn-N" thread.

    `self.server` is the ProxyServer, `self.proxy` the LiveReloadProxy (its
    settings, subscriber registry, app start number and stop Event).
    """

    protocol_version = "HTTP/1.1"
    server_version = "air_std"
    timeout = 60.0  # idle keep-alive connection, or a browser that stopped reading
    disable_nagle_algorithm = True  # SSE and small responses go out at once
    upstream_timeout_s = 300.0  # an app may think (or stream) for a long time
    connect_timeout_s = 1.0

    def setup(self):
        super().setup()
        self.proxy = self.server.proxy
        self._upstream = None

    def finish(self):
        try:
            super().finish()
        finally:
            self._drop_upstream()

    def handle(self):
        try:
            super().handle()
        except CLIENT_GONE as exc:
            log.debug("%s went away: %r", self.client_address[0], exc)

    def __getattr__(self, name):
        # BaseHTTPRequestHandler calls do_<METHOD>; a proxy forwards every method,
        # including ones the stdlib has never heard of (PROPFIND, PURGE...).
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format, *args):
        # the stdlib writes straight to sys.stderr; route it to our logger
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self):
        if self.path.startswith(INTERNAL_PREFIX):
            self._internal()
        elif "websocket" in self.headers.get("Upgrade", "").lower() and \
                "upgrade" in tokens(self.headers.get_all("Connection", [])):
            self._websocket()
        else:
            self._forward()

    # --- responses of our own ---
    def _has_request_body(self):
        return bool(self.headers.get("Transfer-Encoding")) or \
            self.headers.get("Content-Length", "0").strip() not in ("", "0")

    def _reply(self, status, body, content_type="text/plain; charset=utf-8", headers=()):
        if self._has_request_body():
            self.close_connection = True  # its body is still unread
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log_request(status)

    def _bad_request(self, reason):
        # the request's framing cannot be trusted: nothing after it on this
        # connection can be either
        self.close_connection = True
        self._reply(400, ("bad request: %s\n" % reason).encode("utf-8", "replace"))

    def _internal(self):
        route = self.path.split("?", 1)[0]
        if self.command not in ("GET", "HEAD"):
            self._reply(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        elif route == SCRIPT_PATH:
            self._reply(200, self.proxy.script(), "text/javascript; charset=utf-8")
        elif route == SSE_PATH:
            self._sse()
        elif route == STATUS_PATH:
            body = json.dumps({"app": self.proxy.app_accepts()}).encode()
            self._reply(200, body, "application/json")
        else:
            self._reply(404, b"not found\n")

    def _app_down(self, exc, after_failure=False):
        if after_failure:  # the runner logged the failure; nothing to add to the log
            line = ("the last build failed: the app on %s:%d is stopped until a build succeeds"
                    % (APP_HOST, self.proxy.app_port))
        else:
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused"
            elif isinstance(exc, (socket.timeout, TimeoutError)):
                reason = "timed out"
            else:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            line = "app not reachable at %s:%d (%s); still building?" % (APP_HOST, self.proxy.app_port, reason)
            self.proxy.note_app_down(line)
        self._reply(502, (_DOWN_PAGE % line).encode("utf-8"), "text/html; charset=utf-8")

    def _shutting_down(self):
        self.close_connection = True
        self._reply(503, b"air_std is shutting down\n")

    # --- the event stream ---
    def _sse(self):
        subscribers = self.proxy.subscribers
        try:
            sub = subscribers.add()
        except RegistryClosed:
            self._shutting_down()
            return
        try:
            self.close_connection = True  # the stream ends with the connection
            self.send_response_only(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.log_request(200)
            if self.command == "HEAD":
                return
            self.wfile.write(self._sse_greeting())
            interval = self.proxy.ping_interval_s
            while True:
                item = sub.get(interval)
                if item is STOP:
                    return
                self.wfile.write(b": ping\n\n" if item is None else format_sse(item))
        except CLIENT_GONE as exc:
            log.debug("SSE client %s went away: %r", self.client_address[0], exc)
        finally:
            subscribers.remove(sub.id)

    def _sse_greeting(self):
        # the current app start number first: a page served before a restart
        # whose reload it missed (published before this stream connected) reloads now
        first = b"retry: 1000\n\n" + format_sse(Event("hello", json.dumps({"gen": self.proxy.generation})))
        failure = self.proxy.last_failure
        if failure is not None:  # a page opened after a failed build shows it too
            first += format_sse(failure)
        return first

    # --- forwarding ---
    def _target(self):
        path = self.path
        if not path.startswith("/") and path != "*":  # absolute-form, as sent to a proxy
            parts = urlsplit(path)
            path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        return path

    def _forward_headers(self, keep_upgrade=False):
        h = self.headers
        drop = HOP_BY_HOP | tokens(h.get_all("Connection", [])) | _NOT_FORWARDED
        out = [(k, v) for k, v in h.items() if k.lower() not in drop]
        host = h.get("Host") or "%s:%d" % (APP_HOST, self.proxy.app_port)
        out.insert(0, ("Host", host))
        if keep_upgrade:
            out += [("Connection", "Upgrade"), ("Upgrade", h.get("Upgrade", "websocket"))]
        else:
            wanted = [t for t in (h.get("Accept-Encoding") or "").split(",")
                      if t.split(";")[0].strip().lower() in DECODABLE]
            out.append(("Accept-Encoding", ",".join(wanted).strip() or "identity"))
        forwarded = [v.strip() for v in h.get_all("X-Forwarded-For", [])]
        out.append(("X-Forwarded-For", ", ".join(forwarded + [self.client_address[0]])))
        out.append(("X-Forwarded-Proto", h.get("X-Forwarded-Proto", "http")))
        out.append(("X-Forwarded-Host", h.get("X-Forwarded-Host", host)))
        out.append(("Via", ", ".join(h.get_all("Via", []) + [self._via()])))
        return out

    def _via(self):
        return "%s air_std" % self.request_version.split("/")[-1]

    def _connect(self, make):
        """Call make() until the app accepts or app_start_timeout_s passes.
        Returns what make() returned, or None after answering 502/503."""
        deadline = time.monotonic() + self.proxy.app_start_timeout_s
        stopping = self.proxy.stopping
        while True:
            try:
                return make()
            except OSError as exc:
                last = exc
            if stopping.is_set():
                self._shutting_down()
                return None
            if self.proxy.last_failure is not None:
                # stop_on_error: the runner stopped the app after a failed build and
                # starts none until a build succeeds; waiting for it would only delay
                # the 502 page, whose live-reload client shows the failure
                self._app_down(last, after_failure=True)
                return None
            if time.monotonic() >= deadline:
                self._app_down(last)
                return None
            if stopping.wait(self.proxy.retry_interval_s):
                self._shutting_down()
                return None

    def _open_upstream(self):
        conn = http.client.HTTPConnection(APP_HOST, self.proxy.app_port, timeout=self.connect_timeout_s)
        try:
            conn.connect()
        except OSError:
            conn.close()
            raise
        conn.sock.settimeout(self.upstream_timeout_s)
        self.server.track(conn.sock)
        return conn

    def _drop_upstream(self):
        conn, self._upstream = self._upstream, None
        if conn is not None:
            if conn.sock is not None:
                self.server.untrack(conn.sock)
            conn.close()

    def _forward(self):
        try:
            target = self._target()
            kind, length = framing(self.headers)
        except ValueError as exc:  # BadBody, or a target urlsplit cannot parse
            self._bad_request(exc)
            return
        for attempt in (1, 2):
            reused = self._upstream is not None
            if reused and (self._upstream.sock is None or _is_stale(self._upstream.sock)):
                self._drop_upstream()  # the app closed it (a restart, or its idle timeout)
                reused = False
            if not reused:
                self._upstream = self._connect(self._open_upstream)
                if self._upstream is None:
                    return
            try:
                self._send_request(self._upstream, target, kind, length)
                resp = self._get_response(self._upstream)
                break
            except (http.client.InvalidURL, ValueError) as exc:
                # a control character in the path or method, or a malformed
                # body: the app's connection may hold part of the request, so
                # it goes (the app sees the upload cut short)
                self._drop_upstream()
                self._bad_request(exc)
                return
            except AppGone as exc:
                self._drop_upstream()
                if attempt == 1 and reused and kind is None and self.command in _REPLAYABLE:
                    continue  # a keep-alive connection that died just now: safe to replay
                self.close_connection = True
                self._app_down(exc.__cause__ or exc)
                return
        self._relay(resp)

    def _send_request(self, conn, target, kind, length):
        """Send the request line, headers and body to the app. AppGone when
        the app fails; BadBody when the browser's body is malformed; a
        vanished browser's error propagates as it is."""
        conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
        try:
            for name, value in self._forward_headers():
                conn.putheader(name, value)
            if kind == "length":
                conn.putheader("Content-Length", str(length))
            elif kind == "chunked":
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            raise AppGone(exc) from exc
        if kind is None:
            return
        chunked = kind == "chunked"
        pieces = read_chunked(self.rfile) if chunked else read_length(self.rfile, length)
        for piece in pieces:
            self._send_upstream(conn, b"%X\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self._send_upstream(conn, b"0\r\n\r\n")

    @staticmethod
    def _send_upstream(conn, data):
        try:
            conn.send(data)
        except OSError as exc:
            raise AppGone(exc) from exc

    @staticmethod
    def _get_response(conn):
        try:
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise AppGone(exc) from exc

    def _relay(self, resp):
        """Send the app's response to the browser, streaming the body."""
        relay = ResponseRelay(self, resp, self.proxy.generation)
        done = False
        try:
            relay.send()
            done = True
        except AppGone as exc:
            log.debug("the app broke off the response to %s %s: %r", self.command, self.path, exc)
            self.close_connection = True
            if not relay.head_sent:
                self._app_down(exc.__cause__ or exc)
            # else the browser sees a truncated response and the connection closing
        finally:
            if not done or resp.will_close:
                self._drop_upstream()
            resp.close()

    # --- WebSockets (and any other Upgrade to websocket): a byte tunnel ---
    def _open_app_socket(self):
        sock = connect_app(self.proxy.app_port, self.connect_timeout_s, self.upstream_timeout_s)
        self.server.track(sock)
        return sock

    def _upgrade_head(self):
        lines = ["%s %s HTTP/1.1" % (self.command, self._target())]
        lines += ["%s: %s" % kv for kv in self._forward_headers(keep_upgrade=True)]
        if self.headers.get("Content-Length"):
            lines.append("Content-Length: %s" % self.headers["Content-Length"])
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _websocket(self):
        self.close_connection = True  # after a tunnel the connection is not HTTP any more
        try:
            framing(self.headers)  # a Content-Length the app gets must be one
        except BadBody as exc:
            self._bad_request(exc)
            return
        sock = self._connect(self._open_app_socket)
        if sock is None:
            return
        try:
            tunnel = WebSocketTunnel(self.connection, self.rfile, sock, self.proxy.stopping,
                                     self.client_address[0])
            try:
                reply = tunnel.handshake(self._upgrade_head())
            except AppGone as exc:
                self._app_down(exc.__cause__ or exc)
                return
            self.wfile.write(reply)  # the app's handshake answer and any frames after it
            self.log_request(status_of(reply))
            tunnel.pump()
        finally:
            self.server.untrack(sock)
            sock.close()


_DOWN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>502 app not reachable</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:3em;color:#222}code{background:#eee;padding:2px 4px}</style>
</head><body>
<h1>502: app not reachable</h1>
<p><code>%s</code></p>
<p>This page reloads itself as soon as the app answers.</p>
<script>
(function () {
  function poll() {
    fetch("/__air_internal/app-status", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (s) { if (s.app) { location.reload(); } else { setTimeout(poll, 1000); } },
            function () { setTimeout(poll, 1000); });
  }
  setTimeout(poll, 1000);
})();
</script>
<script src="/__air_internal/livereload.js"></script>
</body></html>
"""
