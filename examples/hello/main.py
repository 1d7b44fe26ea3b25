"""The example app for air_std: a standard-library web server.

Run it through air_std (`make demo` at the repository root), then edit this
file or templates/index.html: air_std rebuilds (a syntax check), restarts the
app and, with the proxy on, reloads the page in your browser.
"""

import http.server
import os
import signal
import sys
import time

GREETING = "Hello from air_std"
STARTED = time.strftime("%H:%M:%S")
HERE = os.path.dirname(os.path.abspath(__file__))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, "text/plain", "ok")
        with open(os.path.join(HERE, "templates", "index.html"), encoding="utf-8") as f:
            page = f.read().format(greeting=GREETING, started=STARTED, pid=os.getpid())
        self.reply(200, "text/html; charset=utf-8", page)

    def reply(self, status, ctype, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("hello: " + (fmt % args) + "\n")


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
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
