"""The live-reload proxy: the browser talks to it, it talks to the app.

It forwards every request to 127.0.0.1:app_port, puts
`<script src="/__air_internal/livereload.js">` before the last `</body>` of
HTML pages, and serves the event stream that script listens to
(`/__air_internal/sse`). Threads:

- "air-proxy": `serve_forever(poll_interval=0.1)`; accepts connections and
  starts one non-daemon "air-proxy-conn-N" thread per connection;
- "air-proxy-conn-N": one browser connection (keep-alive requests, an SSE
  stream, or a WebSocket tunnel);
- "air-proxy-notify": after `app_started()`, waits until the new app accepts
  TCP connections, then publishes the reload (Air publishes at spawn time and
  leans on request retries);
- the runner thread calls `app_started()` and `build_failed()`, which never
  block; the main thread calls `start()` and `stop()`.

Shutdown (`stop()`, main thread) never waits on a browser: the subscriber
registry is closed (every SSE handler wakes with STOP), the accept loop ends,
and after a short grace every socket still open (browser or app side) is shut
down, which wakes a handler blocked on a client that stopped reading; then
the handler threads are joined with a bound.

Request headers: `Accept-Encoding` is narrowed to gzip/deflate so an HTML page
can always be decoded for the injection (a brotli page could not be, with the
standard library); everything else but hop-by-hop headers is forwarded as is,
plus X-Forwarded-For/-Proto/-Host and Via.
"""

import errno
import http.client
import itertools
import json
import logging
import pkgutil
import queue
import selectors
import socket
import socketserver
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, urlunsplit

from air_std.broadcast import Event, RegistryClosed, Subscribers
from air_std.errors import ProxyError
from air_std.inject import DECODABLE, HTMLInjector, StreamDecoder, script_tag
from air_std.messages import STOP
from air_std.part import Part, guarded

log = logging.getLogger("air_std.proxy")

APP_HOST = "127.0.0.1"
INTERNAL_PREFIX = "/__air_internal/"
SCRIPT_PATH = "/__air_internal/livereload.js"
SSE_PATH = "/__air_internal/sse"
STATUS_PATH = "/__air_internal/app-status"

HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
))
CHUNK = 64 * 1024
# A page announced with a Content-Length up to this size is injected in one
# piece and sent with a corrected Content-Length; longer or chunked pages stream.
HTML_BUFFER_MAX = 4 * 1024 * 1024
# What a browser vanishing looks like from a handler thread (socket.timeout is
# not a TimeoutError before Python 3.10).
CLIENT_GONE = (ConnectionError, TimeoutError, socket.timeout)


class _AppGone(Exception):
    """The app's side of a forwarded request failed (refused, reset, bad reply)."""


# --- server ------------------------------------------------------------------


class ProxyServer(ThreadingHTTPServer):
    """The listening side. serve_forever() runs in "air-proxy"; every other
    method is safe from any thread.

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
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse-DNS lookup that
        # has stalled startup for ~35 s (python/cpython#106505).
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


def _tokens(values):
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def format_sse(event):
    """One SSE message; multi-line data becomes several data: lines."""
    data = event.data.replace("\r\n", "\n").replace("\r", "\n")
    lines = "".join("data: %s\n" % line for line in data.split("\n"))
    return ("event: %s\n%s\n" % (event.name, lines)).encode("utf-8")


class ProxyHandler(BaseHTTPRequestHandler):
    """One browser connection, in its own "air-proxy-conn-N" thread."""

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
                "upgrade" in _tokens(self.headers.get_all("Connection", [])):
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

    def _app_down(self, exc):
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
            # the current app start number first: a page served before a restart
            # whose reload it missed (published before this stream connected) reloads now
            first = b"retry: 1000\n\n" + format_sse(
                Event("hello", json.dumps({"gen": self.proxy.generation})))
            failure = self.proxy.last_failure
            if failure is not None:  # a page opened after a failed build shows it too
                first += format_sse(failure)
            self.wfile.write(first)
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

    # --- forwarding ---
    def _target(self):
        path = self.path
        if not path.startswith("/") and path != "*":  # absolute-form, as sent to a proxy
            parts = urlsplit(path)
            path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        return path

    def _body_kind(self):
        """("chunked", None), ("length", n) or (None, 0); ValueError if malformed."""
        codings = _tokens(self.headers.get_all("Transfer-Encoding", []))
        if codings:
            if "chunked" not in codings:
                raise ValueError("unsupported Transfer-Encoding %r" % sorted(codings))
            return "chunked", None
        lengths = {v.strip() for v in self.headers.get_all("Content-Length", [])}
        if not lengths:
            return None, 0
        if len(lengths) > 1:
            raise ValueError("conflicting Content-Length headers")
        n = int(lengths.pop())
        if n < 0:
            raise ValueError("negative Content-Length")
        return ("length", n) if n else (None, 0)

    def _forward_headers(self, keep_upgrade=False):
        h = self.headers
        drop = HOP_BY_HOP | _tokens(h.get_all("Connection", [])) | {
            "expect", "content-length", "accept-encoding", "host",
            "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "via"}
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
            kind, length = self._body_kind()
        except ValueError as exc:
            self.close_connection = True
            self._reply(400, ("bad request: %s\n" % exc).encode())
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
                self._drop_upstream()
                self.close_connection = True
                self._reply(400, ("bad request: %s\n" % exc).encode())
                return
            except _AppGone as exc:
                self._drop_upstream()
                if attempt == 1 and reused and kind is None and self.command in ("GET", "HEAD", "OPTIONS"):
                    continue  # a keep-alive connection that died just now: safe to replay
                self.close_connection = True
                self._app_down(exc.__cause__ or exc)
                return
        self._relay(resp)

    def _send_request(self, conn, target, kind, length):
        # InvalidURL/ValueError (a control character in the path or method) -> 400
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
            raise _AppGone(exc) from exc
        if kind is None:
            return
        pieces = self._read_chunked() if kind == "chunked" else self._read_length(length)
        for piece in pieces:  # errors reading the browser propagate: it went away
            if kind == "chunked":
                piece = b"%X\r\n%s\r\n" % (len(piece), piece)
            try:
                conn.send(piece)
            except OSError as exc:
                raise _AppGone(exc) from exc
        if kind == "chunked":
            try:
                conn.send(b"0\r\n\r\n")
            except OSError as exc:
                raise _AppGone(exc) from exc

    @staticmethod
    def _get_response(conn):
        try:
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _AppGone(exc) from exc

    def _read_length(self, remaining):
        while remaining:
            data = self.rfile.read1(min(CHUNK, remaining))
            if not data:
                raise ConnectionResetError("the browser closed the connection mid-upload")
            remaining -= len(data)
            yield data

    def _read_chunked(self):
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionResetError("the browser closed the connection mid-upload")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped
                return
            for piece in self._read_length(size):
                yield piece
            self.rfile.readline(3)  # the CRLF after the chunk

    def _relay(self, resp):
        """Send the app's response to the browser, streaming the body."""
        done = False
        self._head_sent = False
        try:
            drop = HOP_BY_HOP | _tokens(resp.msg.get_all("Connection", []))
            headers = [(k, v) for k, v in resp.msg.items() if k.lower() not in drop]
            headers.append(("Via", ", ".join(resp.msg.get_all("Via", []) + ["1.1 air_std"])))
            status = resp.status
            has_body = self.command != "HEAD" and status >= 200 and status not in (204, 304)
            ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
            if has_body and status != 206 and ctype == "text/html" and encoding in DECODABLE:
                self._relay_html(resp, headers, encoding)
            elif not has_body:
                self._send_head(resp, headers)
            else:
                self._relay_stream(resp, headers)
            done = True
        except _AppGone as exc:
            log.debug("the app broke off the response to %s %s: %r", self.command, self.path, exc)
            self.close_connection = True
            if not self._head_sent:
                self._app_down(exc.__cause__ or exc)
            # else the browser sees a truncated response and the connection closing
        finally:
            if not done or resp.will_close:
                self._drop_upstream()
            resp.close()

    def _send_head(self, resp, headers):
        self.send_response_only(resp.status, resp.reason)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._head_sent = True
        self.log_request(resp.status)

    def _framing(self, headers, length):
        """Add the body framing header; True if the body must be chunked."""
        headers[:] = [(k, v) for k, v in headers if k.lower() != "content-length"]
        if length is not None:
            headers.append(("Content-Length", str(length)))
            return False
        if self.request_version >= "HTTP/1.1":
            headers.append(("Transfer-Encoding", "chunked"))
            return True
        self.close_connection = True  # HTTP/1.0 browser: the end of the body is the close
        return False

    def _read_app(self, resp, whole=False):
        try:
            return resp.read() if whole else resp.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _AppGone(exc) from exc

    def _write(self, data, chunked):
        if data:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if chunked else data)

    def _relay_stream(self, resp, headers, transform=None):
        chunked = self._framing(headers, resp.length if transform is None else None)
        self._send_head(resp, headers)
        while True:
            data = self._read_app(resp)
            if not data:
                break
            self._write(transform(data) if transform else data, chunked)
        if transform:
            self._write(transform(None), chunked)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _relay_html(self, resp, headers, encoding):
        injector = HTMLInjector(resp.msg.get_content_charset(), script_tag(self.proxy.generation))
        decoder = None if encoding == "identity" else StreamDecoder(encoding)
        if decoder:
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        if resp.length is not None and resp.length <= HTML_BUFFER_MAX:
            raw = self._read_app(resp, whole=True)
            try:
                body = decoder.feed(raw) + decoder.finish() if decoder else raw
                body = injector.feed(body) + injector.finish()
            except zlib.error as exc:
                log.debug("cannot decode %s HTML from %s: %s; sent as is", encoding, self.path, exc)
                headers.append(("Content-Encoding", encoding))
                body = raw
            self._framing(headers, len(body))
            self._send_head(resp, headers)
            self.wfile.write(body)
            return

        def transform(data):
            if data is None:  # end of the body
                return injector.feed(decoder.finish() if decoder else b"") + injector.finish()
            try:
                return injector.feed(decoder.feed(data) if decoder else data)
            except zlib.error as exc:
                raise _AppGone(exc) from exc

        self._relay_stream(resp, headers, transform)

    # --- WebSockets (and any other Upgrade to websocket): a byte tunnel ---
    def _open_raw(self):
        sock = socket.create_connection((APP_HOST, self.proxy.app_port), timeout=self.connect_timeout_s)
        sock.settimeout(self.upstream_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(sock)
        return sock

    def _websocket(self):
        self.close_connection = True  # after a tunnel the connection is not HTTP any more
        sock = self._connect(self._open_raw)
        if sock is None:
            return
        try:
            lines = ["%s %s HTTP/1.1" % (self.command, self._target())]
            lines += ["%s: %s" % kv for kv in self._forward_headers(keep_upgrade=True)]
            if self.headers.get("Content-Length"):
                lines.append("Content-Length: %s" % self.headers["Content-Length"])
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            try:
                sock.sendall(head)
                reply = self._read_head(sock)
            except OSError as exc:
                self._app_down(exc)
                return
            if not reply:
                self._app_down(ConnectionResetError("the app closed the connection"))
                return
            self.wfile.write(reply)  # the app's handshake answer and any frames after it
            status = reply.split(b" ", 2)[1:2]
            self.log_request(int(status[0]) if status and status[0].isdigit() else "-")
            pending = self._buffered_from_browser()
            if pending:
                sock.sendall(pending)
            self._pump(self.connection, sock)
        finally:
            self.server.untrack(sock)
            sock.close()

    @staticmethod
    def _read_head(sock):
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            data = sock.recv(CHUNK)
            if not data:
                return b""
            buf += data
        return buf

    def _buffered_from_browser(self):
        """Bytes the browser sent after its handshake that rfile already read ahead."""
        old = self.connection.gettimeout()
        self.connection.settimeout(0.0)
        try:
            pending = self.rfile.peek(CHUNK)  # never blocks now: b"" when nothing is buffered
            return self.rfile.read(len(pending)) if pending else b""
        finally:
            self.connection.settimeout(old)

    def _pump(self, browser, app):
        """Copy bytes both ways until either side closes or the proxy stops."""
        stopping = self.proxy.stopping
        with selectors.DefaultSelector() as sel:
            sel.register(browser, selectors.EVENT_READ, app)
            sel.register(app, selectors.EVENT_READ, browser)
            try:
                while not stopping.is_set():
                    for key, _ in sel.select(timeout=0.5):
                        data = key.fileobj.recv(CHUNK)
                        if not data:
                            return
                        key.data.sendall(data)
            except (OSError, ValueError) as exc:  # ValueError: a socket closed under select
                log.debug("websocket tunnel for %s ended: %r", self.client_address[0], exc)


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


# --- the object the engine uses ----------------------------------------------


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
    accept_poll_s = 0.1  # how soon the accept loop notices stop()
    close_grace_s = 0.25  # woken SSE handlers and in-flight responses end cleanly within this
    stop_timeout_s = 3.5

    def __init__(self, proxy_cfg, subscribers=None):
        super().__init__("air-proxy")
        self.cfg = proxy_cfg
        self.bind = getattr(proxy_cfg, "bind", None) or "127.0.0.1"
        self.app_port = int(proxy_cfg.app_port)
        self.app_start_timeout_s = float(proxy_cfg.app_start_timeout_s)
        if not 0 < self.app_port < 65536:
            raise ProxyError("proxy.app_port %r: expected the port your app listens on (1-65535)"
                             % (proxy_cfg.app_port,))
        if int(proxy_cfg.proxy_port) == self.app_port:
            raise ProxyError("proxy.proxy_port and proxy.app_port are both %d; the proxy would "
                             "forward to itself: give the proxy its own port" % self.app_port)
        self.subscribers = subscribers if subscribers is not None else Subscribers()
        self.stopping = self.stop_event  # handlers watch it
        self.last_failure = None  # the build-failed Event since the last app start
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
        try:
            server = ProxyServer((self.bind, port), ProxyHandler, self)
        except OSError as exc:
            raise ProxyError(self._bind_error(port, exc)) from exc
        server.timeout = self.accept_poll_s
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
            # handle_request(), not serve_forever(): serve_forever can only be
            # ended by shutdown(), which blocks its caller until the loop is over.
            while not self.should_stop:
                server.handle_request()
        finally:
            self._close(server)

    def _close(self, server):
        deadline = time.monotonic() + self.stop_timeout_s - 0.5
        self.subscribers.close()
        self._inbox.put(STOP)
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
        """Show the failure over every open page (and pages opened later)."""
        event = Event("build-failed", json.dumps({"command": command, "output": output, "error": error}))
        self.last_failure = event
        n = self.subscribers.publish(event)
        log.debug("build failure sent to %d page(s)", n)

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
