"""Reading a small file the user names (the config file, an env file) so that
a wrong entry can neither block air_std nor fill its memory.

Only a regular file is read. It is opened without blocking (a FIFO would wait
for a writer forever) and checked again once open (it may have been replaced
since the stat), then read with a bound: /proc files and files that grow say
nothing true in st_size. Used on the main thread (config.py) and the runner
thread (envfile.py); no state.
"""

import os
import stat

__all__ = ["file_kind", "read_bounded"]

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(st):
    """None for a regular file, else what it is, for an error line ("a FIFO (named pipe)")."""
    if stat.S_ISREG(st.st_mode):
        return None
    return next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")


def read_bounded(path, limit, check):
    """At most limit + 1 bytes of `path`: more than `limit` means it grew while
    read, which the caller reports. check(stat_result) runs before the open (a
    device is never opened) and on the open file; it raises to refuse the file.
    OSError (missing, unreadable) goes to the caller."""
    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        check(os.fstat(fd))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
