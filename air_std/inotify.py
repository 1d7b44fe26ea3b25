"""Linux inotify through ctypes (stdlib only), for the watcher's opt-in backend.

Used only by the inotify driver (watch_inotify.py) in the watcher thread
("air-watcher"); that module is imported only when `build.watcher =
"inotify"`, so polling never loads ctypes. One `Inotify` owns one
non-blocking, close-on-exec inotify fd; `read_events()` waits for it with
waitio (poll()) and a timeout, so the thread never blocks without a bound.
Events are hints: the driver confirms each by listing or stating the path.
"""

import ctypes
import errno
import os
import struct
import sys

from air_std import waitio

__all__ = ["Inotify", "IN_ISDIR", "IN_Q_OVERFLOW", "IN_IGNORED", "STRUCTURE", "WATCH_MASK"]

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# Events that add or remove directory entries: the directory must be listed.
STRUCTURE = (IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
             | IN_MOVE_SELF | IN_UNMOUNT)
# IN_ATTRIB because `touch`/utime change only the mtime; IN_ONLYDIR so a path
# that became a file between listing and watching is refused, not watched.
WATCH_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | STRUCTURE | IN_ONLYDIR

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)

_libc = None


def _load():
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise OSError(errno.ENOSYS, "inotify exists only on Linux")
        libc = ctypes.CDLL(None, use_errno=True)
        for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            if not hasattr(libc, name):
                raise OSError(errno.ENOSYS, "libc has no %s" % name)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
        _libc = libc
    return _libc


def _oserror(what, path=None):
    e = ctypes.get_errno()
    return OSError(e, "%s: %s" % (what, os.strerror(e)), path)


class Inotify:
    """One inotify instance. Not thread-safe: the watcher thread owns it."""

    def __init__(self):
        libc = _load()
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _oserror("inotify_init1")
        self._libc = libc
        self.fd = fd

    def fileno(self):
        return self.fd

    def add_watch(self, path, follow=False, mask=WATCH_MASK):
        """Watch a directory (through a final symlink only when `follow`); the
        same inode always gives the same wd. Raises OSError (ENOSPC when the
        user's watch limit is reached, ENOTDIR when it is not a directory)."""
        if not follow:
            mask |= IN_DONT_FOLLOW
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise _oserror("inotify_add_watch", path)
        return wd

    def rm_watch(self, wd):
        # EINVAL: the kernel already dropped it (directory deleted); nothing to do.
        self._libc.inotify_rm_watch(self.fd, wd)

    def read_events(self, timeout_s):
        """Wait up to timeout_s, then return every queued event as
        (wd, mask, cookie, name); name is "" for events on the directory itself."""
        if self.fd < 0:
            return []
        try:
            ready = waitio.readable([self.fd], timeout_s)
        except InterruptedError:
            return []
        if not ready:
            return []
        events = []
        size = _HEADER.size
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not buf:
                break
            pos, end = 0, len(buf)
            while pos + size <= end:
                wd, mask, cookie, length = _HEADER.unpack_from(buf, pos)
                pos += size
                raw = buf[pos:pos + length].split(b"\0", 1)[0]
                pos += length
                events.append((wd, mask, cookie, os.fsdecode(raw)))
        return events

    def close(self):
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
