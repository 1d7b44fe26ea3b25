"""A small writer-preferring readers-writer lock (the stdlib has none).

Shared, no thread of its own. `broadcast.Subscribers` uses it: proxy handler
threads take the write side to add/remove themselves, the runner thread (through
the proxy) takes the read side to publish, and the main thread takes the write
side once in `close()` at shutdown.

Writer preference: once a writer waits, new readers wait behind it, so a steady
stream of readers cannot starve a writer. The price is that readers can wait
behind a steady stream of writers; registry writes (a browser tab opening or
closing) are rare, so that is the right trade here.

Not reentrant: a thread that already holds the read side must not take it
again, because a writer queued in between would block it forever.
"""

import threading


class _Side:
    """`with lock.read:` / `with lock.write:` (stateless, so safe to share)."""

    def __init__(self, acquire, release):
        self._acquire = acquire
        self._release = release

    def __enter__(self):
        self._acquire()
        return self

    def __exit__(self, *exc):
        self._release()


class RWLock:
    """Writer-preferring readers-writer lock; no writer starvation.

    One mutex, two conditions: waiting writers are woken one at a time (only
    one can hold the lock, and a shutdown that removes a thousand subscribers
    must not wake a thousand threads at every release), waiting readers all
    at once. Every method is safe from any thread. `acquire_*` return False
    on timeout (`timeout=None` waits for ever, as `threading.Lock` does).
    """

    def __init__(self):
        mutex = threading.Lock()
        self._readers_ok = threading.Condition(mutex)
        self._writer_ok = threading.Condition(mutex)
        self._mutex = mutex
        self._readers = 0  # threads holding the read side
        self._writer = False  # a thread holds the write side
        self._writers_waiting = 0
        self._read = _Side(self.acquire_read, self.release_read)
        self._write = _Side(self.acquire_write, self.release_write)

    def acquire_read(self, timeout=None):
        with self._mutex:
            return self._readers_ok.wait_for(self._read_may_enter, timeout) and self._enter_read()

    def _read_may_enter(self):
        return not self._writer and not self._writers_waiting

    def _enter_read(self):
        self._readers += 1
        return True

    def release_read(self):
        with self._mutex:
            if self._readers <= 0:
                raise RuntimeError("RWLock.release_read() without a matching acquire_read()")
            self._readers -= 1
            if not self._readers and self._writers_waiting:
                self._writer_ok.notify()

    def acquire_write(self, timeout=None):
        with self._mutex:
            self._writers_waiting += 1
            ok = False
            try:
                ok = self._writer_ok.wait_for(lambda: not self._writer and not self._readers, timeout)
            finally:
                self._writers_waiting -= 1
                if ok:
                    self._writer = True
                elif not self._writers_waiting:
                    # We gave up (timeout or exception): readers held back only by us may go now.
                    self._readers_ok.notify_all()
                elif not self._writer and not self._readers:
                    # we may have taken the one wake-up meant for the next writer
                    self._writer_ok.notify()
            return ok

    def release_write(self):
        with self._mutex:
            if not self._writer:
                raise RuntimeError("RWLock.release_write() without a matching acquire_write()")
            self._writer = False
            if self._writers_waiting:
                self._writer_ok.notify()
            else:
                self._readers_ok.notify_all()

    @property
    def read(self):
        return self._read

    @property
    def write(self):
        return self._write
