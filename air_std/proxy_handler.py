"""One browser connection to the live-reload proxy.

`ProxyHandler` serves a connection's requests one after the other, in an
"air-proxy-conn-N" thread that ProxyServer starts whenever the connection has
a request (between requests it may wait in the server, without a thread). It
reads each request's head strictly (request_head) and dispatches it to one of:
- the proxy's own pages under /__air_internal/ and its refusals (proxy_pages);
- forwarding to the app, on a connection taken from the shared pool (upstream)
  for the request and given back as soon as the app's answer is read, before
  the browser has its last byte; the request body goes through
  request_body, the response through response_relay.ResponseRelay;
- a WebSocket Upgrade, handed to websocket_tunnel.WebSocketTunnel.

Request headers: `Accept-Encoding` is narrowed to gzip/deflate so an HTML page
can always be decoded for the injection (a brotli page could not be, with the
standard library); X-Forwarded-For/-Proto/-Host are set from what the proxy
knows, the browser's own forwarding headers dropped, Via appended; everything
else but hop-by-hop headers is forwarded as it came.
"""

import http.client
import logging
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit, urlunsplit

from air_std import waitio
from air_std.inject import DECODABLE
from air_std.proxy_http import APP_HOST, CLIENT_GONE, HOP_BY_HOP, AppGone, tokens
from air_std.proxy_limits import EXHAUSTED, REFUSAL_BODY
from air_std.proxy_pages import INTERNAL_PREFIX, OwnPages
from air_std.request_body import BadBody, framing, read_chunked, read_length
from air_std.request_head import MAX_LINE, BadHead, read_head
from air_std.response_relay import ResponseRelay
from air_std.upstream import open_app_connection, peek_state
from air_std.upstream_response import BadReply
from air_std.websocket_tunnel import WebSocketTunnel, connect_app, status_of

log = logging.getLogger("air_std.proxy")


# Request headers the proxy sets itself, or that only make sense on the
# browser's connection ("expect": the proxy answers it itself). Forwarding
# headers (these, and every X-Forwarded-*) are only the proxy's to set: an app
# that trusts them could otherwise be told any client address, host or scheme.
_NOT_FORWARDED = frozenset((
    "expect", "content-length", "accept-encoding", "host", "via", "forwarded", "x-real-ip", "x-client-ip"))
_ESCAPES = {c: "\\x%02x" % c for c in list(range(32)) + [127]}
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux
_poll = getattr(select, "poll", None)  # every POSIX system
_POLLIN = getattr(select, "POLLIN", 1)
# Methods a browser may send again on a fresh connection when a kept-alive
# one turned out dead: they have no body and change nothing.
_REPLAYABLE = ("GET", "HEAD", "OPTIONS")


def _send_upstream(conn, data):
    """Send to the app; a failed send means the app is gone (AppGone)."""
    try:
        conn.send(data)
    except OSError as exc:
        raise AppGone(exc) from exc


class ProxyHandler(OwnPages, BaseHTTPRequestHandler):
    """One browser connection. The ProxyServer creates it (in "air-proxy")
    and runs serve() in an "air-proxy-conn-N" thread whenever the connection
    has a request; between requests the connection may wait in the server,
    with no thread.

    `self.server` is the ProxyServer, `self.proxy` the LiveReloadProxy (its
    settings, subscriber registry, app start number and stop Event).
    """

    protocol_version = "HTTP/1.1"
    server_version = "air_std"
    timeout = 60.0  # a request that arrives this slowly, or a browser that stopped reading
    linger_s = 1.0  # after a response, how long the thread waits for the next request itself
    disable_nagle_algorithm = True  # SSE and small responses go out at once
    upstream_timeout_s = 300.0  # an app may think (or stream) for a long time
    connect_timeout_s = 1.0

    def __init__(self, request, client_address, server):
        # socketserver's constructor serves the whole connection at once; here
        # the server drives it (serve()), so that it can wait idle without a thread
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()

    def setup(self):
        super().setup()
        self.proxy = self.server.proxy
        self._upstream = None

    def finish(self):
        try:
            super().finish()
        finally:
            self._drop_upstream()

    def serve(self):
        """Serve requests while they come. True when the connection has gone
        idle and stays open (the server watches it until the next request);
        False when it must be closed."""
        try:
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection:
                if not self._next_request_soon():
                    return not self.proxy.stopping.is_set()
                self.handle_one_request()
        except CLIENT_GONE as exc:
            log.debug("%s went away: %r", self.client_address[0], exc)
        return False

    def _next_request_soon(self):
        """True if the next request (or the browser's hang-up) is here, or
        comes within linger_s: a browser loading a page sends its requests
        close together, and this thread serves them all."""
        sock = self.connection
        sock.settimeout(0.0)
        try:
            if self.rfile.peek(1):  # a pipelined request already read ahead: never blocks here
                return True
        except OSError:
            return True  # the next read sees it again, and ends the connection
        finally:
            sock.settimeout(self.timeout)
        return bool(self._readable(sock, self.linger_s))

    def _readable(self, socks, timeout_s):
        """The sockets among `socks` (one, or a list) that are readable, at
        end of file or in error within timeout_s."""
        if _poll is None:
            return waitio.readable(socks if isinstance(socks, list) else [socks], timeout_s)
        # a poll object of our own: waitio's general one costs more per
        # request than this path can spare
        poller = _poll()
        by_fd = {}
        for sock in socks if isinstance(socks, list) else [socks]:
            by_fd[sock.fileno()] = sock
            poller.register(sock, _POLLIN)
        return [by_fd[fd] for fd, _ in poller.poll(max(0, int(timeout_s * 1000 + 0.999)))]

    def __getattr__(self, name):
        # BaseHTTPRequestHandler calls do_<METHOD>; a proxy forwards every method,
        # including ones the stdlib has never heard of (PROPFIND, PURGE...).
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format, *args):
        # the stdlib writes straight to sys.stderr; route it to our logger,
        # with the browser's control characters escaped (a request line may hold any)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), (format % args).translate(_ESCAPES))

    def send_error(self, code, message=None, explain=None):
        # the stdlib's answer is an HTML page (for a request line over 64 KiB);
        # here every refusal is one line of text
        if not isinstance(getattr(self, "headers", None), http.client.HTTPMessage):
            self.headers = http.client.HTTPMessage()
        if code == 414:
            message = "request line longer than %d bytes" % MAX_LINE
        self._refuse(code, message or self.responses.get(code, ("", "refused"))[1])

    def parse_request(self):
        """Read the head after the request line (self.raw_requestline) strictly
        (request_head); False after answering a head the proxy refuses."""
        self.command = None
        self.request_version = "HTTP/1.1"  # until known: an error answer still gets a status line
        self.close_connection = True
        self.requestline = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        self.headers = http.client.HTTPMessage()  # none read yet
        try:
            head = read_head(self.raw_requestline, self.rfile)
        except BadHead as exc:
            self._refuse(exc.status, str(exc))
            return False
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.requestline, self.headers = head.line, head.headers
        connection = tokens(self.headers.get_all("Connection", []))
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in connection
        else:
            self.close_connection = "keep-alive" not in connection
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _dispatch(self):
        if self.path.startswith(INTERNAL_PREFIX):
            self._internal()
        elif "websocket" in self.headers.get("Upgrade", "").lower() and \
                "upgrade" in tokens(self.headers.get_all("Connection", [])):
            self._websocket()
        else:
            self._forward()

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
        out = [(k, v) for k, v in h.items()
               if k.lower() not in drop and not k.lower().startswith("x-forwarded-")]
        host = h.get("Host") or "%s:%d" % (APP_HOST, self.proxy.app_port)
        out.insert(0, ("Host", host))
        if keep_upgrade:
            out += [("Connection", "Upgrade"), ("Upgrade", h.get("Upgrade", "websocket"))]
        else:
            wanted = [t for t in (h.get("Accept-Encoding") or "").split(",")
                      if t.split(";")[0].strip().lower() in DECODABLE]
            out.append(("Accept-Encoding", ",".join(wanted).strip() or "identity"))
        # the proxy is where the browser connects: what it knows replaces what
        # the browser says (it speaks plain HTTP only)
        out.append(("X-Forwarded-For", self.client_address[0]))
        out.append(("X-Forwarded-Proto", "http"))
        out.append(("X-Forwarded-Host", host))
        via = "%s air_std" % self.request_version.split("/")[-1]
        out.append(("Via", ", ".join(h.get_all("Via", []) + [via])))
        return out

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
            if last.errno in EXHAUSTED:  # not the app: this process is out of descriptors
                self.close_connection = True
                self._reply(503, REFUSAL_BODY)
                return None
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
        conn = open_app_connection(self.proxy.app_port, self.connect_timeout_s, self.upstream_timeout_s)
        return self.server.upstream.tracked(conn)

    def _drop_upstream(self):
        """Close this request's app connection (it cannot be reused)."""
        conn, self._upstream = self._upstream, None
        if conn is not None:
            self.server.upstream.discard(conn)

    def _release_upstream(self):
        """Give this request's app connection back for the next request."""
        conn, self._upstream = self._upstream, None
        if conn is not None:
            self.server.upstream.give(conn)

    def _forward(self):
        try:
            target = self._target()
            kind, length = framing(self.headers, self.request_version)
        except ValueError as exc:  # BadBody, or a target urlsplit cannot parse
            self._bad_request(exc)
            return
        for attempt in (1, 2):
            # a retry opens a new connection: the idle ones went with the one that failed
            self._upstream = self.server.upstream.take() if attempt == 1 else None
            reused = self._upstream is not None
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
                if reused:
                    self.server.upstream.clear()  # an idle connection died: most likely, the app did
                if attempt == 1 and reused and kind is None and self.command in _REPLAYABLE:
                    continue  # a keep-alive connection that died just now: safe to replay
                self.close_connection = True
                self._app_down(exc.__cause__ or exc)
                return
        self._relay(resp, target)

    def _send_request(self, conn, target, kind, length, method=None):
        """Send the request line, headers and body to the app. AppGone when
        the app fails; BadBody when the browser's body is malformed; a
        vanished browser's error propagates as it is."""
        conn.putrequest(method or self.command, target, skip_host=True, skip_accept_encoding=True)
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
            _send_upstream(conn, b"%X\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            _send_upstream(conn, b"0\r\n\r\n")

    def _get_response(self, conn):
        """The app's response; AppGone if the app fails, CLIENT_GONE if the
        browser hangs up while the app is still thinking."""
        if _QUICKACK is not None:
            # An app that writes its headers and its body in two sends (the
            # stdlib's http.server does) without TCP_NODELAY holds the body
            # until the headers are acknowledged, and Linux delays that ACK
            # up to 40 ms on a connection that has carried a request before.
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        self._wait_for_app(conn.sock)
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise AppGone(exc) from exc
        if resp.status == 101:
            resp.close()
            exc = BadReply("101 Switching Protocols to a request that asked for no upgrade")
            raise AppGone(exc) from exc
        return resp

    def _wait_for_app(self, sock):
        """Until the app's answer starts (or its socket times out), watch the
        browser too: one that hangs up meanwhile ends the request, so the app
        sees its connection close instead of working for nobody."""
        browser = [self.connection]
        deadline = time.monotonic() + self.upstream_timeout_s
        while True:
            ready = self._readable([sock] + browser, max(0.0, deadline - time.monotonic()))
            if sock in ready or not ready:
                return  # the answer, or the app's own timeout, is for getresponse() to read
            state = peek_state(self.connection)
            if state == "eof":
                raise ConnectionResetError("the browser closed the connection before the app answered")
            browser = []  # the next request is already coming: only the app matters now

    def _relay(self, resp, target):
        """Send the app's response to the browser, streaming the body."""
        head_only = False
        if self.command == "HEAD" and ResponseRelay(self, resp, 0).injects():
            resp = self._get_for_head(resp, target)
            if resp is None:
                return
            head_only = True
        relay = ResponseRelay(self, resp, self.proxy.generation, head_only,
                              on_read_all=lambda: self._app_answered(resp))
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
            resp.close()
            if not done or resp.will_close or relay.body_unread:
                self._drop_upstream()
            else:
                self._release_upstream()

    def _app_answered(self, resp):
        """The app's answer is all read: its connection goes back to the pool
        now, before the browser has the last byte (ResponseRelay says why)."""
        if not resp.will_close:
            resp.close()
            self._release_upstream()

    def _get_for_head(self, resp, target):
        """A GET for the page a HEAD asked about: its Content-Length counts the
        script tag only once the page is seen. None after answering 502."""
        resp.close()
        if resp.will_close:
            self._drop_upstream()
            self._upstream = self._connect(self._open_upstream)
            if self._upstream is None:
                return None
        try:
            self._send_request(self._upstream, target, None, 0, method="GET")
            return self._get_response(self._upstream)
        except AppGone as exc:
            self._drop_upstream()
            self.close_connection = True
            self._app_down(exc.__cause__ or exc)
            return None

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
            framing(self.headers, self.request_version)  # a Content-Length the app gets must be one
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
