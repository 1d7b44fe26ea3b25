"""What air_std asks of its terminal: is stdin one, is air_std in its
foreground, and the terminal's settings saved and put back around an app
that was given the terminal (build.stdin) and may leave it without echo.

Called by the engine (main thread), the key reader ("air-keys") and the app
lifecycle (runner thread); no state of its own, so any thread may call it.

Job control: a process that reads its controlling terminal from a
background process group gets SIGTTIN and is stopped, and one that changes
the terminal's settings gets SIGTTOU. So air_std reads keys and restores
settings only while its own group is the terminal's foreground group.
"""

import os

try:
    import termios
except ImportError:  # not on Windows
    termios = None

STDIN = 0


def is_tty(fd=STDIN):
    try:
        return os.isatty(fd)
    except OSError:
        return False


def in_foreground(fd=STDIN):
    """True while air_std's process group is the terminal's foreground group."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not a terminal, or not our controlling terminal
        return False


def save(fd=STDIN):
    """The terminal's settings, or None when fd is not a terminal in our foreground."""
    if termios is None or not is_tty(fd) or not in_foreground(fd):
        return None
    try:
        return termios.tcgetattr(fd)
    except termios.error:
        return None


def restore(saved, fd=STDIN):
    """Put back settings from save(); only from the foreground (else SIGTTOU)."""
    if saved is None or termios is None or not in_foreground(fd):
        return
    try:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    except termios.error:
        pass
