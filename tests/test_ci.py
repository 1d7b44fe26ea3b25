"""CI smoke runs through the real CLI: `--once` and each of its exit paths,
`--json`'s events (every line parsed, their order), `run CMD` with no
config on a read-only tree, and an exited app's status and output tail.

Each test runs `python -m air_std` in its own session on free ports; the
conftest check fails any test that leaves a process behind."""

import json
import os
import signal
import stat
import sys
import textwrap
import time

import pytest

from conftest import free_port, pid_alive, wait_until

pytestmark = pytest.mark.e2e

PY = sys.executable

SERVER = textwrap.dedent('''
    import http.server, os, signal, sys
    print("app: starting", flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path != "/broken" else 500
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')

CRASH = textwrap.dedent('''
    import sys
    print("app: loading settings", flush=True)
    def load():
        raise RuntimeError("DATABASE_URL is not set")
    load()
''')

STUBBORN = textwrap.dedent('''
    import os, signal, threading
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("app: ignoring SIGTERM", flush=True)
    threading.Event().wait(120)
''')


def project(tmp_path, app=SERVER, build=None, post=None, kill_delay="500ms"):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(app)
    lines = ["[build]", 'entrypoint = ["%s", "app.py"]' % PY,
             'cmd = "%s"' % (build if build is not None else "%s -m py_compile app.py" % PY),
             'include_ext = ["py"]', "delay = 50", "poll_interval = 100",
             'kill_delay = "%s"' % kill_delay]
    if post:
        lines.append("post_cmd = [%s]" % json.dumps(post))
    (proj / ".air.toml").write_text("\n".join(lines) + "\n")
    return proj


def events(air):
    """Every line of stdout as JSON (a line that is not JSON fails the test)."""
    out = []
    for line in air.stdout().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError("--json wrote a line that is not JSON: %r\n%s" % (line, air.output()))
    return out


def names(evs):
    return [e["event"] for e in evs]


def run_once(run_air, proj, args, env=None, timeout=30.0):
    started = time.monotonic()
    air = run_air(["--once"] + list(args), proj, env=env)
    code = air.wait(timeout)
    return air, code, time.monotonic() - started


def assert_refused(run_air, args, proj, words):
    """air_std exits 1 with one error line holding `words`; its output files are removed
    (the run directory must stay as it was)."""
    air = run_air(args, proj)
    assert air.wait(10) == 1, air.output()
    err = air.stderr().strip()
    assert err.startswith("air_std: error: ") and words in err and "\n" not in err, err
    air.close()
    for f in (air.out_path, air.err_path):
        f.unlink()


def test_once_good_app_ready_on_app_port_then_stops_and_runs_post_cmd(tmp_path, run_air):
    proj = project(tmp_path, post="echo post ran > post.txt")
    port = free_port()
    air, code, _ = run_once(run_air, proj, ["--json", "--proxy.app_port", str(port)],
                            env={"PORT": str(port)})
    assert code == 0, air.output()
    assert (proj / "post.txt").read_text().strip() == "post ran"
    got = events(air)
    assert names(got) == ["build_started", "build_succeeded", "app_started", "app_ready", "shutdown"], got
    assert all(isinstance(e["time"], float) for e in got)
    assert got[-1]["exit_code"] == 0
    assert not pid_alive(got[2]["pid"])
    err = air.stderr()
    assert "app: starting" in err  # --json: the app's stdout goes to stderr
    assert "127.0.0.1:%d accepts connections" % port in err
    assert "Traceback" not in err


def test_once_ready_url_needs_a_status_below_400(tmp_path, run_air):
    proj = project(tmp_path)
    port = free_port()
    env = {"PORT": str(port)}
    air, code, _ = run_once(run_air, proj, ["--ready-url", "http://127.0.0.1:%d/" % port], env=env)
    assert code == 0, air.output()
    # a 500 is not ready: the wait ends at --ready-timeout, exit 4
    air2, code, took = run_once(run_air, proj, ["--ready-url", "http://127.0.0.1:%d/broken" % port,
                                                "--ready-timeout", "1.5"], env=env)
    assert code == 4, air2.output()
    assert "not ready within --ready-timeout 1.5s" in air2.stderr()
    assert took < 15


def test_once_failing_build_exits_2_with_its_output(tmp_path, run_air):
    proj = project(tmp_path, build="echo compiler says: missing semicolon; exit 7")
    air, code, _ = run_once(run_air, proj, ["--json"])
    assert code == 2, air.output()
    assert "compiler says: missing semicolon" in air.stderr()
    got = events(air)
    assert names(got) == ["build_started", "build_failed", "shutdown"], got
    failed = got[1]
    assert failed["exit_status"] == 7
    assert "missing semicolon" in failed["output"]
    assert failed["duration"] >= 0 and "exit status 7" in failed["error"]
    assert got[-1]["exit_code"] == 2


def test_once_failing_pre_cmd_exits_2(tmp_path, run_air):
    proj = project(tmp_path)
    air, code, _ = run_once(run_air, proj, ["--build.pre_cmd", "echo pre broke; false"])
    assert code == 2, air.output()
    assert "pre broke" in air.stderr()
    assert "running %s app.py" % PY not in air.stderr()  # the app never started


def test_once_app_crashing_at_start_exits_3_with_its_traceback(tmp_path, run_air):
    proj = project(tmp_path, app=CRASH)
    air, code, took = run_once(run_air, proj, ["--json"])
    assert code == 3, air.output()
    got = events(air)
    assert names(got) == ["build_started", "build_succeeded", "app_started", "app_exited", "shutdown"], got
    exited = got[3]
    assert exited["exit_status"] == 1 and exited["error"] == "exit status 1"
    assert "RuntimeError: DATABASE_URL is not set" in exited["output"]
    assert "Traceback (most recent call last)" in exited["output"]
    err = air.stderr()
    assert "app exited (exit status 1); its last output:" in err
    assert "the app exited before it was ready" in err
    assert took < 15  # noticed at once, not after --ready-after or --ready-timeout


def test_once_app_never_ready_exits_4_within_the_timeout(tmp_path, run_air):
    proj = project(tmp_path, app=STUBBORN.replace("SIG_IGN", "SIG_DFL"))
    nobody = free_port()
    air, code, took = run_once(run_air, proj, ["--proxy.app_port", str(nobody), "--ready-timeout", "1"])
    assert code == 4, air.output()
    assert "127.0.0.1:%d accepts connections" % nobody in air.stderr()
    assert took < 10


def test_once_app_ignoring_sigterm_is_killed_and_the_run_is_bounded(tmp_path, run_air):
    proj = project(tmp_path, app=STUBBORN, kill_delay="500ms")
    air, code, took = run_once(run_air, proj, ["--json", "--ready-after", "0.5"])
    assert code == 0, air.output()
    pid = [e for e in events(air) if e["event"] == "app_started"][0]["pid"]
    assert not pid_alive(pid)
    assert "sending SIGKILL" in air.stderr()
    assert took < 10  # build + 0.5 s up + 0.5 s grace, with room for a slow machine


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_once_interrupted_exits_128_plus_the_signal(tmp_path, run_air, sig, code):
    proj = project(tmp_path)
    port = free_port()
    air = run_air(["--once", "--json", "--ready-url", "http://127.0.0.1:%d/never" % free_port()],
                  proj, env={"PORT": str(port)})
    wait_until(lambda: "app_started" in air.stdout(), timeout=15, what="app_started", output=air.output)
    air.signal(sig)
    assert air.wait(10) == code, air.output()
    assert names(events(air))[-1] == "shutdown"


def test_once_bad_flags_are_one_line_errors(tmp_path, run_air):
    proj = project(tmp_path)
    for args, words in ((["--ready-url", "localhost:8000"], "--ready-url: expected an http://"),
                        (["--ready-timeout", "soon"], "--ready-timeout: expected a number of seconds"),
                        (["--ready-after", "-1"], "--ready-after: expected a number of seconds"),
                        (["--ready-after"], "--ready-after needs a value")):
        assert_refused(run_air, ["--once"] + args, proj, words)


def test_json_watch_mode_events_in_order(tmp_path, run_air):
    proj = project(tmp_path)
    app_port, proxy_port = free_port(), free_port()
    air = run_air(["--json", "--proxy.enabled", "--proxy.app_port", str(app_port),
                   "--proxy.proxy_port", str(proxy_port)], proj, env={"PORT": str(app_port)})
    wait_until(lambda: "reload_sent" in air.stdout(), timeout=15, what="the first reload_sent",
               output=air.output)
    (proj / "app.py").write_text(CRASH)
    wait_until(lambda: "app_exited" in air.stdout(), timeout=15, what="app_exited", output=air.output)
    air.signal(signal.SIGINT)
    assert air.wait(10) == 0, air.output()
    got = events(air)
    assert names(got) == ["build_started", "build_succeeded", "app_started", "app_ready", "reload_sent",
                          "change", "build_started", "build_succeeded", "app_started", "app_exited",
                          "shutdown"], got
    assert got[5]["files"] == ["app.py"]
    assert got[4]["subscribers"] == 0
    assert "DATABASE_URL is not set" in got[9]["output"]
    assert got[-1] == dict(got[-1], exit_code=0)
    times = [e["time"] for e in got]
    assert times == sorted(times)


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, dirs, files in os.walk(path) for f in files + dirs)


def test_run_needs_no_config_and_writes_nothing_on_a_read_only_tree(tmp_path, run_air):
    proj = tmp_path / "ro"
    (proj / "templates").mkdir(parents=True)
    (proj / "app.py").write_text(SERVER)
    (proj / "templates" / "index.html").write_text("<p>hi</p>")
    before = _tree(proj)
    for d in (proj / "templates", proj):
        d.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        port = free_port()
        air, code, _ = run_once(run_air, proj, ["--json", "--ready-url", "http://127.0.0.1:%d/" % port,
                                                "run", PY, "app.py"], env={"PORT": str(port)})
        assert code == 0, air.output()
        # no build step at all: the app is CMD
        assert names(events(air)) == ["app_started", "app_ready", "shutdown"]
        assert "go build" not in air.stderr() and "not found" not in air.stderr()
        assert _tree(proj) == before  # no tmp_dir, no build log, no .pyc
    finally:
        for d in (proj, proj / "templates"):
            d.chmod(0o755)


def test_run_watches_a_python_apps_files_and_restarts_on_change(tmp_path, run_air):
    proj = tmp_path / "app"
    proj.mkdir()
    (proj / "app.py").write_text(SERVER)
    (proj / "settings.toml").write_text("a = 1\n")
    port = free_port()
    air = run_air(["--json", "--build.poll_interval", "100", "--build.delay", "50",
                   "--proxy.app_port", str(port), "run", PY, "app.py"], proj, env={"PORT": str(port)})
    wait_until(lambda: "app_ready" in air.stdout(), timeout=15, what="the first app ready",
               output=air.output)
    (proj / "settings.toml").write_text("a = 2\n")
    wait_until(lambda: air.stdout().count("app_started") == 2, timeout=15,
               what="a restart after settings.toml changed", output=air.output)
    (proj / ".env").write_text("X=1\n")
    wait_until(lambda: air.stdout().count("app_started") == 3, timeout=15,
               what="a restart after .env changed", output=air.output)
    air.signal(signal.SIGINT)
    assert air.wait(10) == 0, air.output()
    got = events(air)
    changes = [e["files"] for e in got if e["event"] == "change"]
    assert changes == [["settings.toml"], [".env"]]
    # no proxy: app_ready still comes, once, when the first app accepts on app_port
    assert names(got)[:2] == ["app_started", "app_ready"] and names(got).count("app_ready") == 1
    assert got[1]["port"] == port
    assert "build_started" not in air.stdout()
    assert not (proj / "tmp").exists()


def test_run_with_a_config_keeps_its_build_and_replaces_the_app(tmp_path, run_air):
    proj = project(tmp_path, app="raise SystemExit('the config app must not run')")
    (proj / "other.py").write_text(SERVER)
    port = free_port()
    air, code, _ = run_once(run_air, proj, ["--json", "--proxy.app_port", str(port), "run", PY, "other.py"],
                            env={"PORT": str(port)})
    assert code == 0, air.output()
    got = events(air)
    assert names(got)[:3] == ["build_started", "build_succeeded", "app_started"]
    assert got[2]["command"].endswith("other.py")


def test_run_refuses_a_missing_program_in_one_line(tmp_path, run_air):
    proj = tmp_path / "p"
    proj.mkdir()
    for args, words in ((["run"], "run needs the app's command"),
                        (["run", "no-such-program-air"], "'no-such-program-air' is not a program on PATH"),
                        (["run", "./missing.py"], "./missing.py not found")):
        assert_refused(run_air, args, proj, words)
    assert os.listdir(proj) == []


def test_once_refuses_an_app_port_another_program_holds(tmp_path, run_air):
    import socket
    proj = project(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        air, code, _ = run_once(run_air, proj, ["--proxy.app_port", str(port)], env={"PORT": str(port)})
    assert code == 4, air.output()
    assert "already accepts connections before the app started" in air.stderr()
    assert "running %s app.py" % PY not in air.stderr()


def test_app_output_reaches_stdout_unchanged_and_bytes_survive(tmp_path, run_air):
    app = textwrap.dedent(r'''
        import os, sys
        sys.stdout.buffer.write(b"out: caf\xc3\xa9 \xff raw\n" + b"x" * 100000 + b"\nend-of-stdout\n")
        sys.stdout.flush()
        sys.stderr.write("err: to stderr\n")
    ''')
    proj = project(tmp_path, app=app, build="true")
    air, code, _ = run_once(run_air, proj, ["--ready-after", "5"])
    assert code == 3, air.output()  # it exited before it was ready
    out = air.out_path.read_bytes()
    assert b"out: caf\xc3\xa9 \xff raw\n" + b"x" * 100000 + b"\nend-of-stdout\n" in out
    assert "err: to stderr" in air.stderr() and "err: to stderr" not in air.stdout()


def test_what_an_exited_app_left_running_is_still_heard_until_the_next_stop(tmp_path, run_air):
    # the app exits at once; its child writes later, into the pipes it inherited
    app = textwrap.dedent('''
        import os, sys, time
        if os.fork() == 0:
            time.sleep(1.0)
            print("child: still here", flush=True)
            time.sleep(60)
            os._exit(0)
        print("parent: bye", flush=True)
    ''')
    proj = project(tmp_path, app=app, build="true")
    air = run_air([], proj)
    air.wait_for("app exited (exit status 0)", timeout=15)
    wait_until(lambda: "child: still here" in air.stdout(), timeout=10,
               what="the child's line after its parent exited", output=air.output)
    air.signal(signal.SIGINT)
    assert air.wait(10) == 0, air.output()


def test_started_with_stdout_closed(tmp_path):
    import shlex
    import subprocess
    from conftest import REPO
    proj = project(tmp_path, app=CRASH, build="true")
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def run(args):
        line = "exec %s -m air_std %s >&-" % (shlex.quote(PY), " ".join(args))
        return subprocess.run(["/bin/sh", "-c", line], cwd=str(proj), env=env, stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=30, start_new_session=True)

    done = run(["--once", "--json"])
    err = done.stderr.decode()
    assert done.returncode == 1 and "--json writes its events to stdout, which is closed" in err, err
    done = run(["--once"])
    err = done.stderr.decode()
    # the app's output has nowhere to go on stdout, and nothing else catches it
    assert done.returncode == 3, err
    assert "RuntimeError: DATABASE_URL is not set" in err and "Traceback" in err


def test_once_a_build_still_running_at_the_timeout_is_stopped_exit_4(tmp_path, run_air):
    proj = project(tmp_path, build="echo compiling; sleep 60")
    air, code, took = run_once(run_air, proj, ["--ready-timeout", "1"])
    assert code == 4, air.output()
    assert "the build was still running after --ready-timeout 1s" in air.stderr()
    assert took < 10
