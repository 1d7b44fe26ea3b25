"""Smoke run of air_std.pyz on the example app, with any Python (3.8+).

Standard library only, so every interpreter of the test matrix can run it
without pytest: copy examples/hello to a temporary directory, start
`PYTHON air_std.pyz` there with free ports, check the page through the
proxy, edit the app, check the new page, send SIGINT, and require exit 0,
no traceback and no process left behind. Then a CI smoke run of the same
app (`--once --json`): exit 0 and every stdout line a JSON event.

Usage: python tests/smoke_pyz.py path/to/air_std.pyz
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "hello")


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def get(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        conn.close()


def wait_for(pred, timeout, what, proc, errfile):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(errfile) as f:
        raise SystemExit("smoke: FAILED waiting for %s\n%s" % (what, f.read()))


def leftovers(marker):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
                with open("/proc/%s/stat" % name) as f:
                    state = f.read().rpartition(")")[2].split()[0]
                cwd = os.readlink("/proc/%s/cwd" % name)
            except OSError:
                continue
            if state != "Z" and (marker in cmd or cwd.startswith(marker)):
                found.append((int(name), cmd))
    return found


def main():
    pyz = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="airchk-smoke-")
    proj = os.path.join(tmp, "hello")
    shutil.copytree(EXAMPLE, proj, ignore=shutil.ignore_patterns("tmp", "__pycache__"))
    app_port, proxy_port = free_port(), free_port()
    env = dict(os.environ, PORT=str(app_port), NO_COLOR="1")
    errfile = os.path.join(tmp, "air.err")
    started = time.monotonic()
    with open(errfile, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, pyz, "--proxy.app_port", str(app_port),
             "--proxy.proxy_port", str(proxy_port), "--build.entrypoint", sys.executable + ",main.py",
             "--build.cmd", sys.executable + " -m py_compile main.py"],
            cwd=proj, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            start_new_session=True)
    try:
        wait_for(lambda: "Hello from air_std" in get(proxy_port), 30, "the first page", proc, errfile)
        first = time.monotonic() - started
        page = get(proxy_port)
        if "livereload" not in page:
            raise SystemExit("smoke: FAILED: the proxy did not inject the live-reload script")
        main_py = os.path.join(proj, "main.py")
        with open(main_py) as f:
            src = f.read()
        t0 = time.monotonic()
        with open(main_py, "w") as f:
            f.write(src.replace("Hello from air_std", "Edited by the smoke test"))
        wait_for(lambda: "Edited by the smoke test" in get(proxy_port), 30, "the edited page", proc, errfile)
        restart = time.monotonic() - t0
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            raise SystemExit("smoke: FAILED: air_std did not exit after SIGINT")
        with open(errfile) as f:
            log = f.read()
        if code != 0 or "Traceback" in log:
            raise SystemExit("smoke: FAILED: exit %s\n%s" % (code, log))
        once = once_run(pyz, proj, env, app_port)
        deadline = time.monotonic() + 3
        while leftovers(tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = leftovers(tmp)
        if left:
            raise SystemExit("smoke: FAILED: processes left behind: %r" % left)
        print("smoke: ok on Python %s (first page %.2fs, edit to new page %.2fs, --once %.2fs)"
              % (sys.version.split()[0], first, restart, once))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def once_run(pyz, proj, env, app_port):
    """`--once --json` on the example: exit 0, events parsed, the last one shutdown."""
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, pyz, "--once", "--json", "--proxy.enabled", "false",
             "--proxy.app_port", str(app_port), "--build.entrypoint", sys.executable + ",main.py",
             "--build.cmd", sys.executable + " -m py_compile main.py"],
            cwd=proj, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=60, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise SystemExit("smoke: FAILED: --once did not end within 60s")
    took = time.monotonic() - t0
    try:
        events = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    except ValueError as exc:
        raise SystemExit("smoke: FAILED: --json wrote a line that is not JSON (%s)\n%s"
                         % (exc, done.stdout.decode("utf-8", "replace")))
    names = [e.get("event") for e in events]
    if done.returncode != 0 or names[-1:] != ["shutdown"] or "app_ready" not in names:
        raise SystemExit("smoke: FAILED: --once exit %s, events %s\n%s"
                         % (done.returncode, names, done.stderr.decode("utf-8", "replace")))
    return took


if __name__ == "__main__":
    main()
