"""The example app for air_std: a standard-library web server.

Run it through air_std (`make demo` at the repository root), then edit this
file or templates/index.html: air_std rebuilds (a syntax check), restarts the
app and, with the proxy on, reloads the page in your browser.

The page also talks to the app over a WebSocket (/ws echoes every message),
to show that WebSockets work through air_std's proxy. When HELLO_BEACON_LOG
names a file, every page load (and WebSocket echo) posted to /beacon is
appended to it as a JSON line: air_std's browser tests count reloads that way.
"""

import base64
import hashlib
import http.server
import json
import os
import signal
import struct
import sys
import threading
import time

GREETING = "Hello from air_std"
STARTED = time.strftime("%H:%M:%S")
HERE = os.path.dirname(os.path.abspath(__file__))
BEACON_LOG = os.environ.get("HELLO_BEACON_LOG", "")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # fixed by the WebSocket RFC
beacon_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, "text/plain", "ok")
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket_echo()
        with open(os.path.join(HERE, "templates", "index.html"), encoding="utf-8") as f:
            page = f.read()
        values = {"greeting": GREETING, "started": STARTED, "pid": os.getpid(),
                  "beacon": "on" if BEACON_LOG else "off"}
        for key, value in values.items():  # not str.format: the page has JavaScript braces
            page = page.replace("{%s}" % key, str(value))
        self.reply(200, "text/html; charset=utf-8", page)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/beacon":
            return self.reply(404, "text/plain", "not found")
        if BEACON_LOG:
            try:
                data = json.loads(body.decode("utf-8"))
            except ValueError:
                data = body.decode("utf-8", "replace")
            line = json.dumps({"t": time.time(), "pid": os.getpid(), "data": data})
            with beacon_lock, open(BEACON_LOG, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status, ctype, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket_echo(self):
        """Accept the WebSocket and send every frame back as it came."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            first, opcode, size = head[0], head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else bytes(4)
            data = self.rfile.read(size)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))  # browsers mask what they send
            if opcode == 0x9:  # ping: answer pong
                first = 0x8A
            # the server sends unmasked frames; a close frame is echoed, then we stop
            if size < 126:
                self.wfile.write(struct.pack("!BB", first, size) + data)
            elif size < 65536:
                self.wfile.write(struct.pack("!BBH", first, 126, size) + data)
            else:
                self.wfile.write(struct.pack("!BBQ", first, 127, size) + data)
            if opcode == 0x8:
                return

    def log_message(self, fmt, *args):
        sys.stderr.write("hello: " + (fmt % args) + "\n")


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A browser that went away mid-answer (a reload, a closed tab, a client's
        # timeout) is normal here, not worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("127.0.0.1", port), Handler)
    # air_std stops the app with SIGINT (send_interrupt = true): exit cleanly
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("hello: serving on http://127.0.0.1:%d (pid %d)" % (port, os.getpid()), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
