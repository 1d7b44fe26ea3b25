"""The app's output: copied to air_std's own stdout/stderr, its tail kept.

Thread "air-app-output", one per app start, started and stopped by app.py
(runner thread). Like Air (startCmd pipes the app's stdout and stderr and
copies them), the app writes into two pipes; this thread copies every chunk
as it arrives, unchanged, to air_std's stdout and stderr (both to stderr
under --json, whose stdout carries only events), and keeps the last
TAIL_BYTES of the two, in the order they were read, so that a crash can be
shown with its traceback: in the log, in --json's `app_exited` and in the
browser's overlay.

The loop waits in poll() on the two pipes and a wake-up pipe (so an idle app
costs no periodic wake-ups), and ends at end of file on both pipes or when
asked to stop (the app was stopped: whatever a daemon it left still writes is
no longer read), so it never outlives the app's stop by more than
STOP_WAIT_S. Writes wait for room in short steps (TICK_S): a stalled
reader of air_std's output slows the app (as it did when the app wrote to it
directly) but cannot keep this thread alive past its stop.

Given the app's pid and `on_exit`, it also watches the app's exit (a pidfd in
the same poll()) and calls on_exit() once when it comes: the runner is woken
then, instead of checking the app every 100 ms (`watches_exit` says whether it
can; where it cannot, the runner goes on checking).
"""

import os
import stat
import threading

from air_std import process, waitio
from air_std.buildoutput import READ_SIZE
from air_std.part import guarded

__all__ = ["AppOutput", "TAIL_BYTES"]

TAIL_BYTES = 32 * 1024
TICK_S = 0.1
# The longest a read waits before looking at the stop flag again; stop() wakes it at once.
IDLE_WAIT_S = 5.0
# A pipe that polls writable has room for one page at least: a piece this big never blocks.
WRITE_PIECE = 4096
# After the app exited, how long its last words may take to arrive (a
# process it left running may hold the pipes open for ever).
STOP_WAIT_S = 0.5


class AppOutput:
    """Copies one app's stdout and stderr pipes (file objects) to out_fd and err_fd."""

    def __init__(self, stdout, stderr, out_fd, err_fd, pid=None, on_exit=None):
        self._targets = {stdout: out_fd, stderr: err_fd}
        # owned by the thread, which closes it: never closed under a poll() using it
        self._exit_fd = process.exit_fd(pid) if pid is not None and on_exit else None
        self._on_exit = on_exit
        self.watches_exit = self._exit_fd is not None
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        # Who closes _wake_w: finish(), unless the thread outlives its join;
        # then the thread does as it ends. Decided under _lock, so exactly once.
        self._ended = False
        self._thread_closes_wake = False
        self._is_file = {}  # target fd -> is it a regular file (written without waiting)
        self._thread = threading.Thread(target=guarded, args=("air-app-output", self._run),
                                        name="air-app-output")

    def start(self):
        self._thread.start()

    def _run(self):
        open_pipes = dict(self._targets)
        try:
            while (open_pipes or self._exit_fd is not None) and not self._stop.is_set():
                fds = [self._wake_r] + ([self._exit_fd] if self._exit_fd is not None else [])
                for pipe in waitio.readable(list(open_pipes) + fds, IDLE_WAIT_S):
                    if pipe == self._wake_r:
                        continue  # stop() was called: the loop's test ends it
                    if pipe == self._exit_fd:
                        self._exited()
                        continue
                    chunk = os.read(pipe.fileno(), READ_SIZE)
                    if not chunk:
                        del open_pipes[pipe]
                        continue
                    self._keep(chunk)
                    self._write_all(open_pipes[pipe], chunk)
        finally:
            for pipe in self._targets:
                pipe.close()
            os.close(self._wake_r)
            if self._exit_fd is not None:
                os.close(self._exit_fd)
            with self._lock:
                self._ended = True
                if self._thread_closes_wake:
                    os.close(self._wake_w)

    def _exited(self):
        # what it left may still write: reading goes on until end of file or stop
        os.close(self._exit_fd)
        self._exit_fd = None
        self._on_exit()

    def _keep(self, chunk):
        with self._lock:
            self._tail += chunk
            if len(self._tail) > TAIL_BYTES:
                del self._tail[:-TAIL_BYTES]

    def tail(self):
        """The last output read so far, as text (from a whole line on when cut)."""
        with self._lock:
            data = bytes(self._tail)
        if len(data) >= TAIL_BYTES:
            data = data[data.find(b"\n") + 1:]
        return data.decode("utf-8", "replace")

    def settle(self, timeout=STOP_WAIT_S):
        """Wait up to timeout for the end of both pipes (the app's last words) and
        return the tail; reading goes on if something it left still holds them."""
        self._thread.join(timeout)
        return self.tail()

    def finish(self, timeout=STOP_WAIT_S):
        """settle(), then stop reading; returns the tail. Called once the app and
        what it left running were stopped."""
        self.settle(timeout)
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(TICK_S * 5)
        with self._lock:
            if self._ended:
                os.close(self._wake_w)
            else:
                self._thread_closes_wake = True  # still busy (a slow on_exit): it closes it as it ends
        return self.tail()

    def _write_all(self, fd, data):
        """Write data to fd, in pieces a ready pipe takes without blocking, so that a
        reader of air_std's output that stalls can hold this thread only until stop."""
        view = memoryview(data)
        try:
            if self._is_file.get(fd) is None:
                self._is_file[fd] = stat.S_ISREG(os.fstat(fd).st_mode)
            if self._is_file[fd]:  # a file never makes a writer wait for a reader
                while view:
                    view = view[os.write(fd, view):]
                return
            while view:
                if not waitio.writable(fd, TICK_S):
                    if self._stop.is_set():
                        return  # stopping, and nobody reads: the rest is dropped
                    continue
                view = view[os.write(fd, view[:WRITE_PIECE]):]
        except OSError:  # our own stdout is gone (closed terminal): keep draining the app
            pass
