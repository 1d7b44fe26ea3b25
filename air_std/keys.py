"""The thread "air-keys": reads lines typed on air_std's terminal; `r` (or
nodemon's `rs`) then Enter asks for a rebuild and restart now.

Started by the engine only when stdin is a terminal and build.stdin is off
(then the app owns the terminal): stdin that is a pipe or a file belongs to
whoever gave it, and is never read. The thread waits with poll() and a
timeout, so it sees the stop Event within POLL_S, and reads only once poll
says a line is there (the terminal is in line mode: read() returns a whole
line at once and does not block). It reads only while air_std is in the
terminal's foreground (`air_std &` must not be stopped by SIGTTIN).
On end of input (Ctrl-D) it stops reading, and says so.
"""

import logging
import os

from air_std import terminal, waitio
from air_std.part import Part

log = logging.getLogger("air_std.main")

POLL_S = 0.2
BACKGROUND_POLL_S = 0.5
RESTART_WORDS = (b"r", b"rs")


class Keys(Part):
    """on_restart(): called (in this thread) for each `r` + Enter; must not block."""

    stop_timeout_s = 1.0

    def __init__(self, on_restart, fd=terminal.STDIN, on_crash=None):
        super().__init__("air-keys", None, on_crash)
        self.on_restart = on_restart
        self.fd = fd

    def run(self):
        pending = b""
        while not self.should_stop:
            if not terminal.in_foreground(self.fd):
                self.stop_event.wait(BACKGROUND_POLL_S)
                continue
            if not waitio.readable([self.fd], POLL_S):
                continue
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # EIO: the terminal hung up
                log.info("stopped reading the terminal (%s); SIGUSR1 still restarts",
                         exc.strerror or exc)
                return
            if not data:
                log.info("end of input on the terminal; r + Enter is off, SIGUSR1 still restarts")
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            pending = pending[-64:]  # a line with no end is not `r`; keep its tail only
            for line in lines:
                if line.strip().lower() in RESTART_WORDS:
                    self.on_restart()
