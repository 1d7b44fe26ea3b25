"""Start-up time of `python air_std.pyz -v` per interpreter, and the pyz size.

Baseline measured in the same run: `python -c pass` (the interpreter's own
start-up), so the table shows what air_std adds. Usage:
    python3 bench/bench_startup.py [--quick] [--pyz air_std.pyz]
"""

import glob
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, runs):
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait() with a timeout polls with sleeps of up to 50 ms, which would round
        # every sample; a blocking wait plus a watchdog keeps both precision and a bound
        watchdog = threading.Timer(30, proc.kill)
        watchdog.start()
        code = proc.wait()
        watchdog.cancel()
        samples.append((time.perf_counter() - t0) * 1000)
        if code != 0:
            raise SystemExit("%s exited with %d" % (" ".join(cmd), code))
    return statistics.median(samples)


def interpreters():
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = []
    for minor in ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13"):
        dirs = sorted(glob.glob(os.path.join(root, "versions", minor + ".*")))
        if dirs:
            found.append((minor, os.path.join(dirs[-1], "bin", "python")))
    return found or [("%d.%d" % sys.version_info[:2], sys.executable)]


def main():
    quick = "--quick" in sys.argv
    pyz = os.path.join(ROOT, "air_std.pyz")
    if "--pyz" in sys.argv:
        pyz = sys.argv[sys.argv.index("--pyz") + 1]
    if not os.path.exists(pyz):
        subprocess.run(["make", "-s", "-C", ROOT, "pyz", "PYZ=" + pyz], check=True)
    runs = 5 if quick else 20
    print("### Start-up (`python air_std.pyz -v`), median of %d runs, %s" % (runs, time.strftime("%Y-%m-%d")))
    print()
    print("pyz size: %.1f KiB" % (os.path.getsize(pyz) / 1024.0))
    print()
    print("| Python | `python -c pass` (ms) | `python air_std.pyz -v` (ms) | added by air_std (ms) |")
    print("| --- | ---: | ---: | ---: |")
    for minor, py in interpreters():
        base = timed([py, "-c", "pass"], runs)
        ours = timed([py, pyz, "-v"], runs)
        print("| %s | %.1f | %.1f | %.1f |" % (minor, base, ours, ours - base))


if __name__ == "__main__":
    main()
