"""The WebSocket pass-through: after the handshake, a byte tunnel between the
browser and the app.

Runs in the connection thread ("air-proxy-conn-N") of the browser that asked
for the Upgrade; the thread stays in `pump()` until either side closes or the
proxy stops. The proxy does not read the WebSocket frames: it copies bytes, so
every extension and subprotocol the two ends agree on works.
"""

import logging
import selectors
import socket

from air_std.proxy_http import APP_HOST, CHUNK, AppGone

log = logging.getLogger("air_std.proxy")

# A handshake answer longer than this is not one: the tunnel passes it on as is.
MAX_HEAD = 64 * 1024
# How often pump() looks at the stop Event while neither side sends anything.
STOP_POLL_S = 0.5


def connect_app(app_port, connect_timeout_s, io_timeout_s):
    """A TCP connection to the app (OSError while it is not listening)."""
    sock = socket.create_connection((APP_HOST, app_port), timeout=connect_timeout_s)
    sock.settimeout(io_timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def status_of(reply):
    """The status code of a raw response head, or "-" when it has none."""
    status = reply.split(b" ", 2)[1:2]
    return int(status[0]) if status and status[0].isdigit() else "-"


class WebSocketTunnel:
    """One browser connection handed over to the app.

    `browser` is the browser's socket and `rfile` the buffered reader its
    request head came through (it may hold bytes the browser sent after it);
    `app` a connected socket to the app; `stopping` the proxy's stop Event;
    `peer` names the browser in the log.
    """

    def __init__(self, browser, rfile, app, stopping, peer):
        self.browser = browser
        self.peer = peer
        self.rfile = rfile
        self.app = app
        self.stopping = stopping

    def handshake(self, head):
        """Send the request head to the app; its answer (head, and any frames
        that came with it). AppGone when the app fails or closes first."""
        try:
            self.app.sendall(head)
            reply = self._read_head()
        except OSError as exc:
            raise AppGone(exc) from exc
        if not reply:
            exc = ConnectionResetError("the app closed the connection")
            raise AppGone(exc) from exc
        return reply

    def _read_head(self):
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < MAX_HEAD:
            data = self.app.recv(CHUNK)
            if not data:
                return b""
            buf += data
        return buf

    def _buffered_from_browser(self):
        """Bytes the browser sent after its handshake that rfile already read ahead."""
        old = self.browser.gettimeout()
        self.browser.settimeout(0.0)
        try:
            pending = self.rfile.peek(CHUNK)  # never blocks now: b"" when nothing is buffered
            return self.rfile.read(len(pending)) if pending else b""
        finally:
            self.browser.settimeout(old)

    def pump(self):
        """Copy bytes both ways until either side closes or the proxy stops."""
        try:
            pending = self._buffered_from_browser()
            if pending:
                self.app.sendall(pending)
            with selectors.DefaultSelector() as sel:
                sel.register(self.browser, selectors.EVENT_READ, self.app)
                sel.register(self.app, selectors.EVENT_READ, self.browser)
                while not self.stopping.is_set():
                    for key, _ in sel.select(timeout=STOP_POLL_S):
                        data = key.fileobj.recv(CHUNK)
                        if not data:
                            return
                        key.data.sendall(data)
        except (OSError, ValueError) as exc:  # ValueError: a socket closed under select
            log.debug("websocket tunnel for %s ended: %r", self.peer, exc)
