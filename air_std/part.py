"""The contract between the engine and its threaded parts.

The watcher, the runner and the proxy are each a `Part`: the engine (main
thread) builds them, calls `start()` in its start order, and at shutdown
calls `stop()` then `join(timeout)` on each in its stop order, reporting by
`name` any part that does not end in time. It never needs to know which part
it holds.

The contract, for every part:
- `name`: the name of its thread ("air-watcher"), used in every report;
- `start()`: does what must happen before the thread runs (the watcher's
  baseline, the proxy's bind; errors raise here), starts the thread, returns;
- `stop()`: asks the thread to end; never blocks, idempotent, any thread;
- `join(timeout) -> bool`: waits up to timeout s; True once the thread ended;
- `is_alive()`;
- `stop_timeout_s`: how long the engine should wait in `join` after `stop()`;
- one crash guard (`_guarded_run`): an exception escaping `run()` is logged
  once with its traceback, sets the part's stop Event and calls
  `on_crash(name)`, which the engine turns into a shutdown with exit code 1.

A part runs `run()` in its thread. `run()` returns when `should_stop` is
true: the part's own stop Event, which the engine may share between parts
so that one signal winds them all down. Subclasses wake a thread blocked
on something else (a queue, a socket) in `_wake()`.
"""

import logging
import threading

__all__ = ["Part", "guarded"]

log = logging.getLogger("air_std.main")


def guarded(name, func, on_crash=None, stop_event=None):
    """Run func(); if anything escapes it, log it once as a crash of `name`,
    set stop_event and report to on_crash(name). Returns func's result, or
    None after a crash. The one crash guard of every air_std thread."""
    try:
        return func()
    except BaseException:  # a dead thread must not leave a silently stale tool
        log.critical("%s crashed", name, exc_info=True)
        if stop_event is not None:
            stop_event.set()
        if on_crash is not None:
            on_crash(name)
        return None


class Part:
    """Base of the engine's parts; see the module docstring for the contract.

    on_crash may be given to the constructor or set before `start()`.
    """

    stop_timeout_s = 3.0

    def __init__(self, name, stop_event=None, on_crash=None):
        self.name = name
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.on_crash = on_crash
        self._thread = None

    # -- what subclasses provide ------------------------------------------------

    def run(self):
        """The thread body; returns once `should_stop` is true."""
        raise NotImplementedError

    def _wake(self):
        """Wake the thread if it may be blocked on something other than the
        stop Event (a queue, a socket). Called by stop(); must not block."""

    # -- the contract ---------------------------------------------------------------

    @property
    def should_stop(self):
        return self.stop_event.is_set()

    def start(self):
        if self._thread is not None:
            raise RuntimeError("%s already started" % self.name)
        self._thread = threading.Thread(target=self._guarded_run, name=self.name)
        self._thread.start()

    def _guarded_run(self):
        guarded(self.name, self.run, self.on_crash, self.stop_event)

    def stop(self):
        self.stop_event.set()
        self._wake()

    def join(self, timeout=None):
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def is_alive(self):
        thread = self._thread
        return thread is not None and thread.is_alive()
