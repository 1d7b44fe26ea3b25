"""The answers the live-reload proxy gives itself, as a part of each browser
connection's handler (ProxyHandler inherits OwnPages): the client script, the
event stream (SSE) it listens to, the app status the 502 page polls, and the
refusals: 400 and the other answers to a request it cannot forward, 502 (the
app is not reachable, or broke the protocol), 503 (shutting down).

Runs in the browser connection's "air-proxy-conn-N" thread; the only shared
state it touches is the proxy's subscriber registry (thread-safe) and the
numbers the runner's thread writes (the app start number, the last failure).
"""

import html
import json
import logging
import socket

from air_std.broadcast import Event, RegistryClosed
from air_std.inject import script_tag
from air_std.messages import STOP
from air_std.proxy_http import APP_HOST, CLIENT_GONE
from air_std.upstream_response import BadReply

log = logging.getLogger("air_std.proxy")

INTERNAL_PREFIX = "/__air_internal/"
SCRIPT_PATH = "/__air_internal/livereload.js"
SSE_PATH = "/__air_internal/sse"
STATUS_PATH = "/__air_internal/app-status"

_REFUSALS = {400: "bad request", 414: "request line too long", 431: "request header fields too large",
             505: "HTTP version not supported"}


def format_sse(event):
    """One SSE message; multi-line data becomes several data: lines."""
    data = event.data.replace("\r\n", "\n").replace("\r", "\n")
    lines = "".join("data: %s\n" % line for line in data.split("\n"))
    return ("event: %s\n%s\n" % (event.name, lines)).encode("utf-8")


class OwnPages:
    """The proxy's own answers, mixed into ProxyHandler (a
    BaseHTTPRequestHandler with `self.proxy`, the LiveReloadProxy)."""

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
        self._refuse(400, reason)

    def _refuse(self, status, reason):
        # the request's framing cannot be trusted: nothing after it on this
        # connection can be either
        self.close_connection = True
        what = _REFUSALS.get(status, "bad request")
        self._reply(status, ("%s: %s\n" % (what, reason)).encode("utf-8", "replace"))

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
        if isinstance(exc, BadReply):
            # the app is up but broke the protocol: a page that reloads itself
            # whenever the app accepts connections would reload for ever
            line = "the app at %s:%d sent an invalid response: %s" % (APP_HOST, self.proxy.app_port, exc)
            self.proxy.note_app_down(line)
            self.close_connection = True
            self._reply(502, ("bad gateway: %s\n" % line).encode("utf-8"))
            return
        detail = ""
        failure = self.proxy.last_failure
        if after_failure and failure is not None and failure.name == "app-exited":
            # the app is known to be dead: say how it ended, with its last words, as text
            info = json.loads(failure.data)
            line = ("the app on %s:%d exited (%s); the page reloads when it runs again"
                    % (APP_HOST, self.proxy.app_port, info.get("error", "")))
            detail = "<pre>%s</pre>" % html.escape(info.get("output", ""))
        elif after_failure:  # the runner logged the failure; nothing to add to the log
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
        # after a POST, reloading would send it again: the page loads its address with GET
        again = "location.reload()" if self.command in ("GET", "HEAD") else \
            'location.replace(location.href.split("#")[0])'
        page = _DOWN_PAGE % {"line": html.escape(line), "again": again, "detail": detail,
                             "tag": script_tag(self.proxy.generation, self.command or "GET").decode("ascii")}
        self._reply(502, page.encode("utf-8"), "text/html; charset=utf-8")

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


_DOWN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>502 app not reachable</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:3em;color:#222}code{background:#eee;padding:2px 4px}
pre{background:#eee;padding:8px;white-space:pre-wrap;word-break:break-word}</style>
</head><body>
<h1>502: app not reachable</h1>
<p><code>%(line)s</code></p>
%(detail)s
<p>This page reloads itself as soon as the app answers.</p>
<script>
(function () {
  function poll() {
    fetch("/__air_internal/app-status", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (s) { if (s.app) { %(again)s; } else { setTimeout(poll, 1000); } },
            function () { setTimeout(poll, 1000); });
  }
  setTimeout(poll, 1000);
})();
</script>
%(tag)s
</body></html>
"""
