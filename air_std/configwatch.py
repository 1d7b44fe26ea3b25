"""The thread "air-configwatch": notices edits of the config file and of the
env_files, which users rarely list in include_ext (`.env` has no extension).

It compares each file's (inode, size, mtime) with the last seen every
INTERVAL_S (a handful of files: one stat each, no tree walk) and puts
("config", path) or ("env", path) on `events`, then calls `wake()`, which
writes a byte to the engine's self-pipe: the engine, on the main thread,
reloads the config or asks the runner to restart the app. Editors that save
by renaming a new file over the old one change the inode, so that counts.
A change is acted on once the file has kept its new signature for one more
pass: an editor that truncates and then writes must not have its empty
half-saved file loaded (an empty .air.toml is valid: Air's defaults).

It lives as long as the engine, across config reloads: the engine tells it
the new env_files with `watch()` (main thread; a lock guards the list).
"""

import logging
import os
import queue
import threading

from air_std.part import Part

log = logging.getLogger("air_std.main")

INTERVAL_S = 0.25
_UNSET = object()  # a signature may be None (the file is gone)


def signature(path):
    """(inode, size, mtime_ns) of path, or None when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ConfigWatch(Part):
    """See the module docstring. config_path may be None (no config file)."""

    stop_timeout_s = 1.0

    def __init__(self, config_path, env_paths, wake, interval_s=INTERVAL_S, on_crash=None):
        super().__init__("air-configwatch", None, on_crash)
        self.events = queue.Queue()
        self.wake = wake
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._config = config_path
        self._seen = {}
        self._settling = {}  # path -> its new signature, not yet seen twice
        self.watch(env_paths)

    def watch(self, env_paths):
        """The env files to watch from now on (absolute paths); main thread."""
        files = {path: "env" for path in env_paths}
        if self._config:
            files[self._config] = "config"
        with self._lock:
            self._files = files
            # the signatures of now: a change is what happens after this call
            self._seen = {path: signature(path) for path in files}
            self._settling = {}

    def run(self):
        while not self.stop_event.wait(self.interval_s):
            self.check()

    def check(self):
        """One pass; puts an event per changed file and wakes the engine once."""
        with self._lock:
            files = dict(self._files)
        changed = False
        for path, kind in files.items():
            now = signature(path)
            with self._lock:
                if self._files.get(path) != kind:
                    continue  # watch() replaced the list meanwhile
                if now == self._seen.get(path):
                    self._settling.pop(path, None)  # changed and changed back
                    continue
                if self._settling.get(path, _UNSET) != now:
                    self._settling[path] = now  # maybe still being written: look again next pass
                    continue
                del self._settling[path]
                self._seen[path] = now
            # a deleted env file takes its values away too
            self.events.put((kind, path))
            changed = True
        if changed:
            self.wake()
