"""The proxy through the real CLI (air_std started as users start it, with
an http.server app on a free port): what a browser's requests see. The
proxy's own tests (test_proxy.py) drive LiveReloadProxy in-process; these
check the same promises end to end."""

import http.client
import signal
import sys
import textwrap

import pytest

from conftest import free_port, http_get, wait_until

pytestmark = pytest.mark.e2e

# A page with </body> (so the proxy injects its script), answered to GET and
# HEAD alike as the stdlib does it: HEAD gets the headers only.
APP = textwrap.dedent('''
    import http.server, os, signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    PAGE = b"<html><body><form method=post><input name=q></form></body></html>"
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def head(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
        def do_HEAD(self):
            self.head()
        def do_GET(self):
            self.head()
            self.wfile.write(PAGE)
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')


def test_head_through_the_proxy_has_the_content_length_of_the_injected_get(tmp_path, run_air):
    app_port, proxy_port = free_port(), free_port()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "true"
        entrypoint = ["%s", "app.py"]
        [proxy]
        enabled = true
        proxy_port = %d
        app_port = %d
        ''' % (sys.executable, proxy_port, app_port)))
    air = run_air([], tmp_path, env={"PORT": str(app_port)})
    wait_until(lambda: http_get(proxy_port), timeout=20, what="the page through the proxy",
               output=air.output)
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=5)
    try:
        for method, body in (("GET", None), ("POST", b"q=1")):
            conn.request(method, "/", body=body)
            got = conn.getresponse()
            page = got.read()
            assert b"/__air_internal/livereload.js" in page   # injected: longer than the app's page
            conn.request("HEAD", "/")
            head = conn.getresponse()
            assert head.read() == b"" and head.status == 200
            # the same page as the GET's, tag included (a POST's page also names its method)
            if method == "GET":
                assert head.getheader("Content-Length") == got.getheader("Content-Length") \
                    == str(len(page)), air.output()
            else:
                assert b'data-air-method="POST"' in page
    finally:
        conn.close()
    air.signal(signal.SIGINT)
    assert air.wait(15) == 0, air.output()
