"""`--once`: what "ready" means, and how a run that stops by itself ends.

Used by the runner thread (the readiness checks, `Once.finish`) and read by
the engine on the main thread (`Once.code`) after the runner told it the run
is over; no thread of its own. Every check is bounded: an HTTP try waits at
most PROBE_TIMEOUT_S, a TCP connect CONNECT_TIMEOUT_S.

Ready means, first that applies: `--ready-url` answers with a status below
400; else, with proxy.app_port set, a TCP connect to it succeeds; else the
app has stayed up `--ready-after` seconds. `--ready-timeout` bounds the
whole wait, the build included.
"""

import socket
import time
import urllib.error
import urllib.request

__all__ = ["Once", "OK", "BUILD_FAILED", "APP_EXITED", "NOT_READY", "EXIT_CODES"]

# Exit codes of --once (README "CI"); 1 stays every user error, 130/143 signals.
OK = 0
BUILD_FAILED = 2
APP_EXITED = 3
NOT_READY = 4
EXIT_CODES = {OK: "the app was ready", BUILD_FAILED: "the build (or pre_cmd) failed",
              APP_EXITED: "the app exited before it was ready",
              NOT_READY: "the app was not ready within --ready-timeout"}

PROBE_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.25
# between two readiness checks; the app's exit is noticed within this too
CHECK_EVERY_S = 0.1

# A smoke check of the app must not go through the CI runner's HTTP proxy; and, as
# `curl -k`, it accepts the self-signed certificate a dev server on https has: it asks
# only "does it answer?", and trusts nothing the answer says.
def _handlers():
    handlers = [urllib.request.ProxyHandler({})]
    try:
        import ssl
    except ImportError:  # a Python built without OpenSSL: http:// still works
        return handlers
    return handlers + [urllib.request.HTTPSHandler(context=ssl._create_unverified_context())]


_opener = urllib.request.build_opener(*_handlers())


class Once:
    """The settings of a --once run, and its result once `finish()` was called."""

    def __init__(self, ready_url=None, ready_after_s=2.0, ready_timeout_s=60.0, app_port=0,
                 clock=time.monotonic):
        self.ready_url = ready_url
        self.ready_after_s = ready_after_s
        self.ready_timeout_s = ready_timeout_s
        self.app_port = app_port
        self.clock = clock
        self.deadline = None
        self.code = None
        self.on_done = None  # callable(), set by the engine: the run is over

    def begin(self):
        self.deadline = self.clock() + self.ready_timeout_s

    def timed_out(self):
        return self.deadline is not None and self.clock() >= self.deadline

    def describe(self):
        if self.ready_url:
            return "%s answers below 400" % self.ready_url
        if self.app_port:
            return "127.0.0.1:%d accepts connections" % self.app_port
        return "the app stays up %gs" % self.ready_after_s

    def port_taken(self):
        """Before the app runs: is app_port, the readiness check, held by another program?"""
        return not self.ready_url and bool(self.app_port) and self._accepts()

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.app_port), timeout=CONNECT_TIMEOUT_S):
                return True
        except OSError:
            return False

    def ready(self, started_at):
        """One bounded check: is the app ready now? started_at: the app's start (clock)."""
        if self.ready_url:
            return _url_ready(self.ready_url)
        if self.app_port:
            return self._accepts()
        return self.clock() - started_at >= self.ready_after_s

    def finish(self, code):
        if self.code is None:
            self.code = code
            if self.on_done is not None:
                self.on_done()


def _url_ready(url):
    try:
        with _opener.open(url, timeout=PROBE_TIMEOUT_S) as resp:
            return resp.status < 400
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code < 400
    except (OSError, ValueError, urllib.error.URLError):  # refused, timed out, reset, bad reply
        return False
    except Exception:  # http.client's protocol errors (a non-HTTP answer): not ready yet
        return False
