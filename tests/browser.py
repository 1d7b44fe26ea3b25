"""A small headless Chromium driver for the browser tests and the browser
benchmark, with nothing but the standard library.

Chromium runs in its own session (so its whole process tree can be killed at
once) with `--remote-debugging-port=0`; the port it picked is read from
`DevToolsActivePort` in its user-data-dir, and one WebSocket to the browser
endpoint carries every DevTools call. Tabs are `Target.createTarget` plus
`Target.attachToTarget(flatten=True)`, so calls to a tab are the same
messages with a `sessionId`. Everything runs on the caller's thread: a call
sends one message and reads frames (each read bounded by a socket timeout)
until its answer arrives, keeping the events that came in between.
"""

import base64
import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# What Chromium needs to run headless here: no sandbox (we are root in a
# container), and none of the background services that phone home (their
# connections are refused on this machine, and they would only add noise).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
)


class BrowserError(Exception):
    """Chromium did not start, or a DevTools call failed or timed out."""


def find_chromium():
    """Path of a Chromium binary ($CHROMIUM first), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


# --- a minimal WebSocket client (RFC 6455), enough for DevTools ---------------


def _xor(data, mask):
    """data XOR the 4-byte mask repeated (WebSocket masking), as one big integer: fast enough."""
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


class WebSocket:
    """Client side of one WebSocket: text messages out (masked, as the RFC
    requires of clients), whole messages in. Not thread-safe."""

    def __init__(self, host, port, path, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        # No Origin header: Chromium refuses DevTools WebSockets from web origins.
        request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (path, host, port, key))
        self.sock.sendall(request.encode("ascii"))
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self.sock.close()
            raise BrowserError("DevTools WebSocket handshake refused: %r" % head[:300])

    def _fill(self):
        data = self.sock.recv(65536)  # socket.timeout past the deadline
        if not data:
            raise BrowserError("DevTools WebSocket closed by Chromium")
        self._buf += data

    def _take(self, n):
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def send_text(self, text):
        self._send_frame(0x1, text.encode("utf-8"))

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + _xor(payload, mask))

    def recv_message(self, timeout):
        """One whole text/binary message (str or bytes); socket.timeout if none comes."""
        self.sock.settimeout(max(0.01, timeout))
        parts = []
        first_opcode = None
        while True:
            b0, b1 = self._take(2)
            opcode, fin = b0 & 0x0F, b0 & 0x80
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else None
            payload = self._take(n)
            if mask:
                payload = _xor(payload, mask)
            if opcode == 0x8:
                raise BrowserError("DevTools WebSocket closed by Chromium")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                first_opcode = opcode
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode("utf-8") if first_opcode == 0x1 else data

    def close(self):
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# --- Chromium --------------------------------------------------------------


class Tab:
    """One page target, attached with its own DevTools session."""

    def __init__(self, browser, target_id, session_id):
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    def call(self, method, params=None, timeout=10.0):
        return self.browser.call(method, params, session=self.session_id, timeout=timeout)

    def evaluate(self, expression, timeout=10.0, await_promise=False):
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise,
        }, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError("JavaScript error in %r: %s" % (expression[:80], text))
        return result.get("result", {}).get("value")

    def navigate(self, url, timeout=10.0):
        return self.call("Page.navigate", {"url": url}, timeout=timeout)

    def close(self, timeout=5.0):
        self.browser.call("Target.closeTarget", {"targetId": self.target_id}, timeout=timeout)


class Chromium:
    """Headless Chromium with a private profile under `profile_dir`.

    Use as a context manager, or call close() in a finally: it always kills
    the whole process group (Chromium's helpers included) and reaps it.
    """

    def __init__(self, profile_dir, binary=None, extra_flags=(), start_timeout=30.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no Chromium binary found (tried $CHROMIUM, %s)" % ", ".join(CHROMIUM_NAMES))
        self.profile_dir = str(profile_dir)
        os.makedirs(self.profile_dir, exist_ok=True)
        self.log_path = os.path.join(self.profile_dir, "chromium.log")
        self.events = collections.deque(maxlen=2000)  # DevTools events seen while waiting for answers
        self._ids = 0
        self._ws = None
        self._log = open(self.log_path, "wb")
        port_file = os.path.join(self.profile_dir, "DevToolsActivePort")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cmd = [self.binary] + list(CHROMIUM_FLAGS) + list(extra_flags) + [
            "--remote-debugging-port=0", "--user-data-dir=" + self.profile_dir, "about:blank"]
        # Chromium's crash handler keeps its database under $XDG_CONFIG_HOME, whatever
        # --user-data-dir says, and runs outside the process group: keep both in the profile
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(self.profile_dir, "xdg-config"),
                   XDG_CACHE_HOME=os.path.join(self.profile_dir, "xdg-cache"))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            port, path = self._devtools_address(port_file, start_timeout)
            self._ws = WebSocket("127.0.0.1", port, path)
        except BaseException:
            self.close()
            raise

    def _devtools_address(self, port_file, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError("Chromium exited with %s before DevTools was up:\n%s"
                                   % (self.proc.returncode, self.log()))
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/"):
                    return int(lines[0]), lines[1].strip()
            except OSError:
                pass
            time.sleep(0.05)
        raise BrowserError("Chromium did not open DevTools within %.0fs:\n%s" % (timeout, self.log()))

    def log(self):
        """The end of Chromium's own output, without its complaints about D-Bus (none here)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(line for line in text.splitlines() if "dbus" not in line.lower())[-4000:]

    def call(self, method, params=None, session=None, timeout=10.0):
        """Send one DevTools command and return its result (BrowserError on error/timeout)."""
        if self._ws is None:
            raise BrowserError("Chromium is closed")
        self._ids += 1
        msg_id = self._ids
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._ws.send_text(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer to %s within %.1fs" % (method, timeout))
            try:
                raw = self._ws.recv_message(left)
            except socket.timeout:
                continue
            reply = json.loads(raw)
            if reply.get("id") != msg_id:
                if "method" in reply:
                    self.events.append(reply)
                continue
            if "error" in reply:
                raise BrowserError("%s failed: %s" % (method, reply["error"]))
            return reply.get("result", {})

    def wait_event(self, method, session=None, timeout=10.0):
        """The next DevTools event `method` (for `session` if given), kept or still to come."""
        def matches(event):
            return event.get("method") == method and (session is None or event.get("sessionId") == session)
        for event in list(self.events):
            if matches(event):
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no %s event within %.1fs" % (method, timeout))
            try:
                message = json.loads(self._ws.recv_message(left))
            except socket.timeout:
                continue
            if matches(message):
                return message
            if "method" in message:
                self.events.append(message)

    def new_tab(self, url="about:blank", new_window=False, timeout=10.0):
        target = self.call("Target.createTarget", {"url": url, "newWindow": new_window},
                           timeout=timeout)["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                            timeout=timeout)["sessionId"]
        return Tab(self, target, session)

    def pids(self):
        """Live processes of this Chromium: its process group, and its crash
        handlers, which leave the group but name the profile on their command line."""
        found = []
        marker = self.profile_dir.encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open("/proc/%d/stat" % pid, "rb") as f:
                    if f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X"):
                        continue
                if os.getpgid(pid) == self.proc.pid:
                    found.append(pid)
                    continue
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if marker in f.read():
                        found.append(pid)
            except (OSError, IndexError):
                pass
        return found

    def close(self):
        """Kill Chromium's whole process group and reap it. Idempotent."""
        if self._ws is not None:
            try:
                self._ws.close()
            except OSError:
                pass
            self._ws = None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        # the crash handlers end by themselves once the browser is gone; do not wait for it
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
