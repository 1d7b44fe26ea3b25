"""`--json`: one JSON object per line on stdout for each thing that happens.

No thread of its own: `emit()` is called by whichever thread saw the event
(the runner: builds and the app; the watcher's batches reach it through the
runner; the proxy's notifier: reloads; the engine's main thread: shutdown).
A lock keeps each line whole. When --json is off, `emit()` returns at once.

The event names and fields are a contract (README "JSON events"): every
object has `event` and `time` (seconds since the epoch, float); fields are
only ever added, never renamed.
"""

import json
import os
import threading
import time

__all__ = ["enable", "enabled", "emit", "tail_lines"]

# How much of an output the events carry: the last lines, as CI logs and
# editors show them, bounded so that one event stays one readable line.
TAIL_LINES = 40
TAIL_CHARS = 8192

_lock = threading.Lock()
_fd = None  # the descriptor events go to (stdout's) while --json is on


def enable(fd):
    """Send events to fd from now on (the CLI's stdout, before the log moves to stderr)."""
    global _fd
    _fd = fd


def enabled():
    return _fd is not None


def tail_lines(text, lines=TAIL_LINES, chars=TAIL_CHARS):
    """The last `lines` lines of text, at most `chars` characters, without the final newline."""
    if not text:
        return ""
    kept = text.rstrip("\n").split("\n")[-lines:]
    out = "\n".join(line.rstrip("\r") for line in kept)
    return out[-chars:]


def emit(event, **fields):
    """Write {"event": event, "time": ..., **fields} as one line, if --json is on."""
    fd = _fd
    if fd is None:
        return
    record = {"event": event, "time": round(time.time(), 3)}
    record.update(fields)
    data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")
    with _lock:
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:  # the reader left (`| head`); events are not worth failing over
            pass


_first_sent = set()


def emit_first(event, **fields):
    """emit(), only the first time this event is emitted in the run (app_ready:
    told by --once's readiness check or by the proxy, whichever sees it first)."""
    with _lock:
        if event in _first_sent:
            return
        _first_sent.add(event)
    emit(event, **fields)
