"""How fast air_std passes a build's output on, and how much memory it takes.

A real air_std (`python -m air_std`) runs a build command that writes a lot
to stdout in one of three shapes (one 50 MB line with no newline, 2-byte
lines, 80-byte lines), then starts an app that only notes that it started.
air_std's own log goes to a file, as it would go to a terminal.

Baselines measured in the same run: the same writer with its output sent to
/dev/null (what the build costs without air_std), and the peak RSS of an
air_std whose build prints nothing. Usage:
    python3 bench/bench_build_output.py [--quick] [--repo DIR] [--mb N]
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_model, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each writer prints about N MB in one shape, in 64 KiB writes.
SHAPES = {
    "one line, no newline": "b'x' * 65536",
    "2-byte lines": "b'x\\n' * 32768",
    "80-byte lines": "(b'x' * 79 + b'\\n') * 819",
}
WRITER = ("import sys; w = sys.stdout.buffer.write; block = {block}; "
          "n = {mb} * 1024 * 1024 // len(block)\nfor _ in range(n): w(block)")

APP = "import time; open('started', 'w').close(); time.sleep(600)"


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def writer_alone(code, runs):
    """Seconds the writer takes with its output going to /dev/null."""
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, check=True, timeout=300)
        took = time.perf_counter() - t0
        best = took if best is None else min(best, took)
    return best


def through_air_std(repo, code, workdir):
    """(seconds from air_std's start to the app's, air_std's peak RSS in KiB)."""
    proj = os.path.join(workdir, "proj")
    shutil.rmtree(proj, ignore_errors=True)
    os.makedirs(proj)
    script = os.path.join(workdir, "writer.py")
    with open(script, "w") as f:
        f.write(code)
    with open(os.path.join(proj, ".air.toml"), "w") as f:
        f.write('[build]\ncmd = "%s %s"\nentrypoint = ["%s", "-c", "%s"]\ninclude_ext = ["nothing"]\n'
                % (sys.executable, script, sys.executable, APP))
    env = dict(os.environ, PYTHONPATH=repo, NO_COLOR="1")
    log_path = os.path.join(workdir, "air.log")
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        air = subprocess.Popen([sys.executable, "-m", "air_std"], cwd=proj, env=env,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_for(lambda: os.path.exists(os.path.join(proj, "started")), 600, step=0.005,
                     what="the app after the build")
            took = time.perf_counter() - t0
            hwm = vm_hwm_kib(air.pid)
        finally:
            air.send_signal(signal.SIGINT)
            try:
                air.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(air.pid, signal.SIGKILL)
                air.wait(5)
    os.remove(log_path)
    return took, hwm


def main():
    quick = "--quick" in sys.argv
    repo = ROOT
    if "--repo" in sys.argv:
        repo = os.path.abspath(sys.argv[sys.argv.index("--repo") + 1])
    mb = 10 if quick else 50
    if "--mb" in sys.argv:
        mb = int(sys.argv[sys.argv.index("--mb") + 1])
    runs = 1 if quick else 3
    workdir = tempfile.mkdtemp(prefix="air-bench-output-")
    try:
        empty, empty_hwm = through_air_std(repo, "pass", workdir)
        print("### Build output through air_std, %d MB per shape, best of %d, %s"
              % (mb, runs, time.strftime("%Y-%m-%d")))
        print()
        print("%s; Python %s; air_std from %s" % (cpu_model(), sys.version.split()[0], repo))
        print()
        print("Baselines: the writer alone to /dev/null; air_std with a build that prints "
              "nothing: %.2f s to the app, peak RSS %.1f MB." % (empty, empty_hwm / 1024.0))
        print()
        print("| shape | writer alone (s) | through air_std (s) | air_std MB/s | slowdown | peak RSS (MB) | RSS added (MB) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, block in SHAPES.items():
            code = WRITER.format(block=block, mb=mb)
            alone = writer_alone(code, runs)
            took, hwm = None, 0
            for _ in range(runs):
                t, h = through_air_std(repo, code, workdir)
                took = t if took is None else min(took, t)
                hwm = max(hwm, h)
            build_s = max(1e-6, took - empty)  # air_std's own start and the app's are not the build
            print("| %s | %.2f | %.2f | %.1f | %.1fx | %.1f | %+.1f |"
                  % (name, alone, build_s, mb / build_s, build_s / alone, hwm / 1024.0,
                     (hwm - empty_hwm) / 1024.0))
            sys.stdout.flush()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
