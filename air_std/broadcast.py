"""The subscriber registry behind the live-reload SSE stream.

`Subscribers` maps id -> `Subscriber`, each with its own small bounded mailbox,
guarded by an `RWLock`. Who calls what:
- proxy handler threads (one per open SSE connection): `add()`, then
  `Subscriber.get(timeout)` in a loop, and `remove()` in a `finally`;
- the runner thread, through the proxy's listener: `publish()`;
- the main thread at shutdown: `close()`, which wakes every handler at once.
No thread of its own.

Air crashed here (a nil map entry when Stop raced RemoveSubscriber) and later
blocked every broadcast on one slow subscriber. Designed out: add/remove take
the write lock; publish takes the read lock only to copy the subscriber list and
delivers outside it; delivery never blocks (a full mailbox drops its oldest
message: reloads are idempotent); remove is idempotent from any thread; close
is idempotent and a closed mailbox answers STOP for ever, so no wake-up is lost.

The mailbox is a Condition around `deque(maxlen=...)` rather than a
`queue.Queue`: dropping the oldest item and appending must be one atomic step
(with `queue.Queue`, two racing publishers can both see it full), and STOP must
never be the item that gets dropped.
"""

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass

from air_std.messages import STOP
from air_std.rwlock import RWLock

log = logging.getLogger("air_std.proxy")


@dataclass(frozen=True)
class Event:
    """One message for every browser: `name` is the SSE event name ("reload",
    "build-failed", ...), `data` the payload already serialized (JSON or "")."""

    name: str
    data: str = ""


class RegistryClosed(RuntimeError):
    """`Subscribers.add()` after `close()`: the proxy is shutting down (answer 503)."""


class Subscriber:
    """One SSE connection's mailbox. Only `Subscribers.add()` creates them.

    `get()` is called by the handler thread that owns the subscriber; the
    registry delivers into it from any thread. Thread-safe.
    """

    def __init__(self, sub_id, maxsize):
        self.id = sub_id
        self.dropped = 0  # messages pushed out by newer ones because the handler fell behind
        self._items = deque(maxlen=maxsize)
        self._stopped = False
        self._cond = threading.Condition(threading.Lock())

    def get(self, timeout):
        """Next Event; None after `timeout` seconds with nothing; `messages.STOP`
        once the registry is closed or this subscriber was removed (then on
        every later call too: end the response and `remove()` yourself)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._stopped or self._items, timeout):
                return None
            if self._stopped:
                return STOP
            return self._items.popleft()

    @property
    def stopped(self):
        return self._stopped

    def _offer(self, event):
        """Deliver without blocking; False if this mailbox is already stopped."""
        with self._cond:
            if self._stopped:
                return False
            if len(self._items) == self._items.maxlen:
                self.dropped += 1  # the deque drops the oldest as we append
            self._items.append(event)
            self._cond.notify()
            return True

    def _stop(self):
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()

    def __repr__(self):
        return "<Subscriber id=%d pending=%d dropped=%d%s>" % (
            self.id, len(self._items), self.dropped, " stopped" if self._stopped else "")


class Subscribers:
    """Registry of SSE subscribers; every method is safe from any thread and
    none blocks for longer than a dict operation under the lock."""

    def __init__(self, maxsize=16):
        if maxsize < 1:
            raise ValueError("Subscribers(maxsize=%r): expected at least 1" % (maxsize,))
        self._maxsize = maxsize
        self._lock = RWLock()
        self._subs = {}
        self._ids = itertools.count()
        self._closed = False

    def add(self):
        """A new Subscriber; raises RegistryClosed after close()."""
        with self._lock.write:
            if self._closed:
                raise RegistryClosed("the live-reload proxy is shutting down")
            sub = Subscriber(next(self._ids), self._maxsize)
            self._subs[sub.id] = sub
        log.debug("SSE subscriber %d added", sub.id)
        return sub

    def remove(self, sub_id):
        """Forget sub_id and wake its handler with STOP. Unknown or already
        removed ids are a no-op, before or after close()."""
        if self._closed:
            # After close() the registry only shrinks: add() refuses, publish()
            # copies nothing, and close() stops the mailboxes from its own copy
            # of the dict; so nothing iterates the dict any more and a pop
            # (atomic) needs no lock. At shutdown every SSE handler leaves at
            # once, and through the lock (each release wakes every waiting
            # writer) 1000 open streams took over 8 s to end instead of 0.7 s.
            sub = self._subs.pop(sub_id, None)
        else:
            with self._lock.write:
                sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub._stop()
            log.debug("SSE subscriber %d removed", sub_id)

    def publish(self, event):
        """Deliver event to every subscriber without blocking; returns how many
        mailboxes took it (0 after close)."""
        with self._lock.read:
            if self._closed:
                return 0
            subs = list(self._subs.values())
        # Outside the lock: adds and removes never wait for a delivery.
        return sum(1 for sub in subs if sub._offer(event))

    def count(self):
        with self._lock.read:
            return len(self._subs)

    def close(self):
        """Refuse new subscribers and wake every handler now with STOP.
        Idempotent; when any call returns, every subscriber is stopped."""
        with self._lock.write:
            first = not self._closed
            subs = list(self._subs.values()) if first else []
            # remove() pops without the lock from here on (see there), so the
            # loop below goes over a copy of the dict.
            self._closed = True
            # Stopping under the write lock (each stop is a few bytecodes and
            # never blocks) means a concurrent second close() cannot return
            # before every mailbox is stopped.
            for sub in subs:
                sub._stop()
            n = len(subs)
        if first:
            log.debug("subscriber registry closed; %d SSE handler(s) woken", n)

    @property
    def closed(self):
        return self._closed
