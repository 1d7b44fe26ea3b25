"""Helpers shared by the scripts in bench/: test trees, ports, waiting, percentiles, the CPU.

Standard library only; each bench script imports it from its own directory
(`python3 bench/bench_x.py` puts bench/ on sys.path). Nothing here starts a
thread or a process.
"""

import math
import os
import platform
import socket
import time

EXTS = ("go", "html", "txt", "js", "py")
FILES_PER_DIR = 50


def make_tree(root, n_files):
    """n_files files, 50 per directory, two levels deep, five extensions.
    Names are unique (no help from repeated strings) and ~15 characters."""
    made = 0
    for d in range(max(1, n_files // FILES_PER_DIR)):
        path = os.path.join(root, "pkg%02d" % (d % 20), "module%04d" % (d // 20))
        os.makedirs(path, exist_ok=True)
        for f in range(FILES_PER_DIR):
            if made == n_files:
                return
            name = "handler_%06d.%s" % (made, EXTS[f % len(EXTS)])
            with open(os.path.join(path, name), "w") as fh:
                fh.write("x" * (f * 37 % 3000))
            made += 1


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, step=0.01, what=None):
    """pred()'s first true value within timeout seconds; None after that,
    or RuntimeError naming `what` when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            if what is not None:
                raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))
            return None
        time.sleep(step)


def percentile(samples, pct):
    """Nearest-rank percentile of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, int(math.ceil(pct / 100.0 * len(ordered))))
    return ordered[rank - 1]


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
