"""The seed's bug, as a test: Ctrl-C while browsers are connected.

Air crashed (a nil subscriber map entry when Stop raced RemoveSubscriber) or
left the app running when interrupted with live-reload clients attached. Here
air_std runs for real (`python -m air_std`) with the proxy on, a stdlib app,
50 reading SSE clients, 5 that never read (their socket buffers fill with
build-failure events) and 5 that hang up mid-stream, while files keep
changing; SIGINT comes at a random moment. Every run must exit 0 with no
traceback, close every SSE stream within 2 s of the signal, and leave no
process (the app's group included) behind.

30 runs by default; AIR_STRESS_RUNS raises it (`make stress`).
"""

import os
import random
import selectors
import signal
import socket
import sys
import textwrap
import threading
import time

import pytest

from conftest import REPO, free_port, http_get, pid_alive, wait_until

if not all((REPO / "air_std" / name).exists() for name in ("engine.py", "cli.py", "config.py")):
    pytest.skip("needs the engine, config and CLI (air_std/engine.py, cli.py, config.py)",
                allow_module_level=True)

pytestmark = pytest.mark.e2e

RUNS = int(os.environ.get("AIR_STRESS_RUNS", "30"))
READERS, STUCK, VANISHING = 50, 5, 5
CLOSE_WITHIN_S = 2.0

APP = textwrap.dedent('''
    import http.server, os, signal, sys
    open(os.path.join("tmp", "app.%d.pid" % os.getpid()), "w").close()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>ok</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(http.server.HTTPServer):
        def handle_error(self, *a):
            pass  # the proxy hanging up during a restart is normal here

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')

# States ending in "fail" fail with ~85 KB of output: build-failed events that
# pile up in the buffers of the clients that do not read.
BUILD = textwrap.dedent('''
    import sys
    if open("state.txt").read().strip().endswith("fail"):
        sys.stderr.write(("error: " + "x" * 100 + "\\n") * 800)
        sys.exit(1)
''')


def make_project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(APP)
    (proj / "build.py").write_text(BUILD)
    (proj / "state.txt").write_text("0\n")
    app_port, proxy_port = free_port(), free_port()
    while proxy_port == app_port:
        proxy_port = free_port()
    (proj / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "{py} build.py"
        entrypoint = ["{py}", "app.py"]
        include_ext = ["py", "txt"]
        delay = 20
        poll_interval = 50
        kill_delay = "1s"

        [proxy]
        enabled = true
        proxy_port = {proxy_port}
        app_port = {app_port}
        app_start_timeout = 3000
    ''').format(py=sys.executable, proxy_port=proxy_port, app_port=app_port))
    return proj, app_port, proxy_port


def sse_open(port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /__air_internal/sse HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
    return s


class Readers:
    """One thread reading every reader socket; notes when each one reaches EOF."""

    def __init__(self, socks):
        self.socks = socks
        self.closed_at = {}
        self.data = {s: b"" for s in socks}
        self.first = b""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-sse-readers")
        self.thread.start()

    def _run(self):
        with selectors.DefaultSelector() as sel:
            for s in self.socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while not self._stop.is_set() and len(self.closed_at) < len(self.socks):
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        self.data[s] = (self.data[s] + chunk)[-4096:]
                        if s is self.socks[0]:
                            self.first += chunk
                    else:
                        self.closed_at[s] = time.monotonic()
                        sel.unregister(s)

    def started(self):
        return all(b"200 OK" in d or s in self.closed_at for s, d in self.data.items())

    def events(self):
        """Events the first reader has seen (its stream is kept whole)."""
        return self.first.count(b"\nevent: ")

    def stop(self):
        self._stop.set()
        self.thread.join(5)


def drained_to_eof(sock, timeout):
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("run", range(RUNS))
def test_sigint_with_browsers_connected(tmp_path, run_air, run):
    rng = random.Random(int(os.environ.get("AIR_STRESS_SEED", "0")) * 1000 + run)
    proj, app_port, proxy_port = make_project(tmp_path)
    air = run_air([], proj, env={"PORT": str(app_port)})
    wait_until(lambda: (http_get(proxy_port, "/", timeout=1.0) or (0,))[0] == 200, timeout=20,
               what="the app through the proxy", output=air.output)

    readers = Readers([sse_open(proxy_port) for _ in range(READERS)])
    stuck = [sse_open(proxy_port, rcvbuf=4096) for _ in range(STUCK)]
    vanishing = [sse_open(proxy_port) for _ in range(VANISHING)]
    try:
        wait_until(readers.started, timeout=10, what="50 SSE streams", output=air.output)
        # 1-3 edits, each waited for (a reload, or a build failure with ~64 KB of
        # output), then one more and SIGINT at a random moment after it: during
        # the debounce, the build, the app restart, the publish, or idle.
        for n in range(rng.randint(1, 3)):
            seen = readers.events()
            (proj / "state.txt").write_text("%d%s\n" % (n, " fail" if rng.random() < 0.4 else ""))
            wait_until(lambda: readers.events() > seen, timeout=15,
                       what="the event for edit %d" % n, output=air.output)
            if vanishing and rng.random() < 0.7:
                vanishing.pop().close()  # a tab closed mid-stream
        (proj / "state.txt").write_text("last%s\n" % (" fail" if rng.random() < 0.4 else ""))
        time.sleep(rng.uniform(0.0, 0.5))
        sent_at = time.monotonic()
        air.signal(signal.SIGINT)
        code = air.wait(15)
        wait_until(lambda: len(readers.closed_at) == READERS, timeout=CLOSE_WITHIN_S + 1,
                   what="every SSE stream to end", output=air.output)
    finally:
        readers.stop()

    assert code == 0, air.output()
    err = air.stderr()
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert "did not stop" not in err, err  # every thread joined in time
    late = sorted(t - sent_at for t in readers.closed_at.values() if t - sent_at > CLOSE_WITHIN_S)
    assert not late, "SSE streams closed %r s after SIGINT\n%s" % (late, air.output())
    assert all(drained_to_eof(s, 5.0) for s in stuck), "a stuck client's stream was left open"

    pids = [int(p.name.split(".")[1]) for p in (proj / "tmp").glob("app.*.pid")]
    assert pids, air.output()
    for pid in pids:
        assert not pid_alive(pid), "app %d outlived air_std\n%s" % (pid, air.output())
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # and nothing of its process group either
    for s in readers.socks + stuck + vanishing:
        s.close()


def test_proxy_port_in_use_is_one_line_and_exit_1(tmp_path, run_air):
    proj, app_port, proxy_port = make_project(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", proxy_port))
        busy.listen(1)
        air = run_air([], proj, env={"PORT": str(app_port)})
        code = air.wait(15)
    err = air.stderr()
    assert code == 1, air.output()
    assert err.count("proxy_port %d on 127.0.0.1 is already in use by another program; stop it or "
                     "set proxy.proxy_port to a free port" % proxy_port) == 1, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert not list((proj / "tmp").glob("app.*.pid")), "the app was started anyway"
