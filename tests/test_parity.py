"""Keys and flags that must mean what Air's own code makes them mean, each
through the real CLI on a real project in tmp_path: build.stop_on_error (and
the proxy's answer while the app is stopped), log.silent and log.main_only,
--color and [color], the signals air_std catches, and the smaller points
(tmp_dir's defaults, .config/air.toml, clear_on_rebuild, exclude_unchanged,
build.bin's deprecation, -v and the start-up banner).

Terminal behaviour (colour in auto mode, clearing the screen) is tested on a
real pseudo-terminal (`pty`), since air_std only does it on a terminal.
"""

import json
import os
import signal
import sys
import textwrap

import pytest

from conftest import free_port, http_get, pid_alive, wait_until

pytestmark = pytest.mark.e2e

PY = sys.executable
# The app notes each start's pid, one per line, then waits to be stopped.
APP = textwrap.dedent('''
    import os, signal, sys, time
    with open("pids.txt", "a") as f:
        f.write("%d\\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.05)
''')
# The same, also answering HTTP on $PORT (for the proxy).
HTTP_APP = textwrap.dedent('''
    import http.server, os, signal, sys
    with open("pids.txt", "a") as f:
        f.write("%d\\n" % os.getpid())
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>the app</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')


def project(tmp_path, build="", rest="", app=APP, top="", name=".air.toml", cmd=None):
    """A project whose build is a syntax check of app.py (or `cmd`); `build` goes
    in [build], `rest` after it (other tables)."""
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "app.py").write_text(app)
    config = proj / name
    config.parent.mkdir(exist_ok=True)
    config.write_text(textwrap.dedent('''
        {top}
        [build]
        cmd = "{cmd}"
        entrypoint = ["{py}", "app.py"]
        include_ext = ["py", "txt"]
        exclude_file = ["pids.txt"]
        delay = 50
        poll_interval = 100
        kill_delay = "2s"
        ''').format(py=PY, top=top, cmd=cmd or PY + " -m py_compile app.py") + build + "\n" + rest + "\n")
    return proj


def pids(proj):
    path = proj / "pids.txt"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def started(proj, count, output):
    """Wait until the app has started `count` times; return the last pid."""
    wait_until(lambda: len(pids(proj)) >= count, timeout=15, what="%d app start(s)" % count,
               output=output)
    return pids(proj)[-1]


def break_build(proj):
    (proj / "app.py").write_text((proj / "app.py").read_text() + "\nthis is not python(\n")


def stop(air, code=0):
    air.signal(signal.SIGINT)
    assert air.wait(15) == code, air.output()
    assert "Traceback" not in air.stderr(), air.output()


# ---------------------------------------------------------------- build.stop_on_error

def test_stop_on_error_and_a_failing_pre_cmd_stops_the_app_and_skips_cmd(tmp_path, run_air):
    # Air's buildRun: a failed pre_cmd with stop_on_error = true stops the app and ends the build
    proj = project(tmp_path, 'pre_cmd = ["test ! -e broken.txt"]\nstop_on_error = true\n',
                   cmd="echo built >> builds.log")
    air = run_air([], proj)
    first = started(proj, 1, air.output)
    (proj / "broken.txt").write_text("x")
    air.wait_for("build failed: test ! -e broken.txt", timeout=15)
    wait_until(lambda: not pid_alive(first), timeout=15, what="the app stopped", output=air.output)
    assert (proj / "builds.log").read_text().count("built") == 1  # cmd did not run again
    assert pids(proj) == [first]
    stop(air)


def test_without_stop_on_error_a_failing_pre_cmd_still_runs_cmd_and_restarts(tmp_path, run_air):
    # Air's buildRun: with stop_on_error = false, cmd runs after a failed pre_cmd
    proj = project(tmp_path, 'pre_cmd = ["test ! -e broken.txt"]\nstop_on_error = false\n',
                   cmd="echo built >> builds.log")
    air = run_air([], proj)
    first = started(proj, 1, air.output)
    (proj / "broken.txt").write_text("x")
    second = started(proj, 2, air.output)
    assert second != first and not pid_alive(first)
    assert (proj / "builds.log").read_text().count("built") == 2
    assert "running build.cmd anyway" in air.stderr()
    stop(air)


def test_the_proxy_answers_at_once_while_the_app_is_stopped_after_a_failed_build(tmp_path, run_air):
    app_port, proxy_port = free_port(), free_port()
    # a long app_start_timeout: a proxy that waited for the stopped app would not answer in time
    proj = project(tmp_path, "stop_on_error = true\n",
                   "[proxy]\nenabled = true\nproxy_port = %d\napp_port = %d\napp_start_timeout = 300000\n"
                   % (proxy_port, app_port), app=HTTP_APP)
    air = run_air([], proj, env={"PORT": str(app_port)})
    wait_until(lambda: (http_get(proxy_port) or (0, ""))[1].find("the app") >= 0, timeout=15,
               what="the app through the proxy", output=air.output)
    break_build(proj)
    air.wait_for("stopping the app until a build succeeds", timeout=15)
    wait_until(lambda: http_get(app_port, timeout=1.0) is None, timeout=15, what="the app stopped",
               output=air.output)
    status, body = http_get(proxy_port, timeout=30.0) or (None, air.output())
    assert status == 502 and "the last build failed" in body, body
    assert "/__air_internal/livereload.js" in body  # whose client shows the overlay
    # the page's event stream starts with the failure
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    try:
        conn.request("GET", "/__air_internal/sse")
        resp = conn.getresponse()
        seen = b""
        while b"event: build-failed" not in seen and len(seen) < 65536:
            chunk = resp.fp.readline()
            if not chunk:
                break
            seen += chunk
        assert b"event: build-failed" in seen and b"SyntaxError" in resp.fp.readline() + seen
    finally:
        conn.close()
    stop(air)


# ---------------------------------------------------------------- [log]

def test_log_silent_hides_air_std_but_never_the_build_output(tmp_path, run_air):
    proj = project(tmp_path, "stop_on_error = true\n", "[log]\nsilent = true\n")
    air = run_air([], proj)
    started(proj, 1, air.output)
    break_build(proj)
    air.wait_for("SyntaxError", timeout=15)
    err = air.stderr()
    # Air (util.go): silent hides every line of its own, and its banner
    for line in ("air_std 0.", "building", "build failed", "watching", "changed; rebuilding"):
        assert line not in err, err
    stop(air)


def test_log_main_only_shows_main_lines_and_the_build_output(tmp_path, run_air):
    proj = project(tmp_path, "stop_on_error = true\n", "[log]\nmain_only = true\n")
    air = run_air([], proj)
    started(proj, 1, air.output)
    break_build(proj)
    air.wait_for("SyntaxError", timeout=15)
    err = air.stderr()
    assert "app.py changed; rebuilding" in err  # Air's mainLog
    assert "building..." not in err and "watching" not in err, err  # build, runner, watcher
    stop(air)


# ---------------------------------------------------------------- colour

MAGENTA = "\x1b[35m"


def test_color_flag_and_mode_with_airs_values(tmp_path, run_air):
    proj = project(tmp_path)
    # --color always colours a file too, whatever NO_COLOR says
    air = run_air(["--color", "always"], proj, env={"NO_COLOR": "1"})
    air.wait_for("kill -USR1", timeout=15)
    stop(air)
    assert MAGENTA in air.stderr()
    # [color] mode = "always" does the same; --color never wins over it
    proj = project(tmp_path, rest='[color]\nmode = "always"\n')
    air = run_air([], proj)
    air.wait_for("kill -USR1", timeout=15)
    stop(air)
    assert MAGENTA in air.stderr()
    air = run_air(["--color=never"], proj)
    air.wait_for("kill -USR1", timeout=15)
    stop(air)
    assert "\x1b[" not in air.stderr()


def test_bad_color_values_are_one_line_errors(tmp_path, run_air):
    proj = project(tmp_path, rest='[color]\nmode = "sometimes"\n')
    air = run_air([], proj)
    assert air.wait(10) == 1
    assert air.stderr() == ('air_std: error: .air.toml: color.mode: expected "auto", "always" or '
                            '"never", got \'sometimes\'\n')
    air = run_air(["--color", "rainbow"], tmp_path)
    assert air.wait(10) == 1
    assert air.stderr() == "air_std: error: --color: expected auto, always or never, got 'rainbow'\n"


def test_colour_names_as_air_has_them(tmp_path, run_air):
    proj = project(tmp_path, rest='[color]\nmain = "purple"\nrunner = "raw"\n')
    air = run_air(["--color", "always"], proj)
    started(proj, 1, air.output)
    stop(air)
    err = air.stderr()
    assert "color.main: unknown colour 'purple', shown in white" in err
    assert "\x1b[37mmain    | pid " in err  # Air's getColor: white for a name it does not know
    assert "\nrunner  | running" in err  # raw: no colour


def stop(air):
    air.signal(signal.SIGINT)
    return air.wait(15)


def test_auto_colours_a_terminal_unless_no_color(tmp_path, run_pty):
    proj = project(tmp_path)
    air = run_pty([], proj, output_only=True, colour=True)
    air.wait_for("kill -USR1")
    assert stop(air) == 0
    assert MAGENTA in air.output()
    air = run_pty([], proj, env={"NO_COLOR": "1"}, output_only=True, colour=True)
    air.wait_for("kill -USR1")
    assert stop(air) == 0
    assert "\x1b[3" not in air.output()


def test_clear_on_rebuild_clears_before_the_changed_line(tmp_path, run_pty):
    # Air's start(): the screen is cleared, then "x has changed" is printed on it
    proj = project(tmp_path, rest="[screen]\nclear_on_rebuild = true\n")
    air = run_pty(["--color", "never"], proj, output_only=True, colour=True)
    started(proj, 1, air.output)
    (proj / "note.txt").write_text("changed")
    air.wait_for("note.txt changed; rebuilding")
    started(proj, 2, air.output)
    assert stop(air) == 0
    text = air.output()
    assert text.index("\x1b[2J") < text.index("note.txt changed; rebuilding"), text


# ---------------------------------------------------------------- signals

def test_sigusr1_rebuilds_and_restarts_and_the_start_line_says_so(tmp_path, run_air):
    proj = project(tmp_path, cmd="echo built >> builds.log")
    air = run_air([], proj)
    first = started(proj, 1, air.output)
    air.wait_for("SIGUSR1 or kill -USR1 %d rebuilds and restarts" % air.pid)
    air.signal(signal.SIGUSR1)
    second = started(proj, 2, air.output)
    assert second != first and not pid_alive(first)
    assert (proj / "builds.log").read_text().count("built") == 2
    assert "restart asked for (SIGUSR1); rebuilding" in air.stderr()
    stop(air)


IGNORED = ["SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGSTKFLT", "SIGTRAP", "SIGSYS",
           "SIGRTMIN", "SIGRTMAX"]


def test_signals_air_survives_are_ignored(tmp_path, run_air):
    proj = project(tmp_path)
    air = run_air([], proj)
    first = started(proj, 1, air.output)
    air.wait_for("kill -USR1")
    for name in IGNORED:
        # Python 3.8 has no name for SIGSTKFLT (16 on Linux); air_std catches it all the same
        number = getattr(signal, name, 16 if name == "SIGSTKFLT" else None)
        air.signal(number)
        air.wait_for("%s ignored" % (name if hasattr(signal, name) else "signal %d" % number),
                     timeout=10)
    air.signal(signal.SIGRTMIN + 1)
    air.wait_for("SIGRTMIN+1 ignored", timeout=10)
    assert air.proc.poll() is None and pids(proj) == [first] and pid_alive(first)
    stop(air)
    assert not pid_alive(first)


@pytest.mark.parametrize("name", ["SIGXCPU", "SIGPWR", "SIGABRT"])
def test_signals_that_stop_air_std_stop_the_app_first(tmp_path, run_air, name):
    proj = project(tmp_path, 'post_cmd = ["echo done > post.txt"]\n')
    air = run_air([], proj)
    first = started(proj, 1, air.output)
    air.wait_for("kill -USR1")
    air.signal(getattr(signal, name))
    assert air.wait(15) == 0, air.output()
    assert "shutting down (%s)" % name in air.stderr()
    assert not pid_alive(first)
    if name != "SIGABRT":  # SIGABRT kills everything at once, like SIGQUIT
        assert (proj / "post.txt").read_text().strip() == "done"


# ---------------------------------------------------------------- the smaller points

FAKE_GO = '''#!/bin/sh
# "go build -o OUT ." as far as these tests need: OUT becomes a program that notes its start
[ "$1" = build ] && [ "$2" = -o ] || exit 2
printf '#!/bin/sh\\necho "$$" >> pids.txt\\nexec sleep 60\\n' > "$3" && chmod +x "$3"
'''


def fake_go(tmp_path):
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    return {"PATH": "%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"])}


def test_a_custom_tmp_dir_moves_the_default_cmd_bin_and_exclude_dir(tmp_path, run_air):
    # Air's adjustDefaultsForTmpDir: Air's defaults for a Go project, with tmp_dir = "out"
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.go").write_text("package main\n")
    (proj / ".air.toml").write_text('tmp_dir = "out"\n[build]\ndelay = 0\n')
    air = run_air(["--print-config"], proj)
    assert air.wait(10) == 0, air.output()
    build = json.loads(air.stdout())["build"]
    assert build["cmd"] == "go build -o ./out/main ." and build["bin"] == "./out/main"
    assert build["exclude_dir"] == ["assets", "out", "vendor", "testdata"]
    air = run_air([], proj, env=fake_go(tmp_path))
    started(proj, 1, air.output)
    assert (proj / "out" / "main").exists() and not (proj / "tmp").exists()
    stop(air)


def test_dot_config_air_toml_is_read_when_there_is_no_air_toml(tmp_path, run_air):
    # Air's defaultPathConfig: .air.toml, else .config/air.toml
    proj = project(tmp_path, cmd="echo from-dot-config >> builds.log", name=".config/air.toml")
    air = run_air([], proj)
    started(proj, 1, air.output)
    assert (proj / "builds.log").read_text().strip() == "from-dot-config"
    stop(air)


def test_exclude_unchanged_says_which_file_it_skipped(tmp_path, run_air):
    proj = project(tmp_path, "exclude_unchanged = true\n")
    (proj / "note.txt").write_text("same")
    air = run_air([], proj)
    started(proj, 1, air.output)
    air.wait_for("watching")
    (proj / "note.txt").write_text("same")  # a save that changes nothing
    st = os.stat(str(proj / "note.txt"))
    os.utime(str(proj / "note.txt"), ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10 ** 9))
    air.wait_for("skipping note.txt because contents unchanged", timeout=15)
    assert len(pids(proj)) == 1
    stop(air)


def test_build_bin_without_entrypoint_is_warned_about_as_air_does(tmp_path, run_air):
    proj = project(tmp_path)
    toml = (proj / ".air.toml").read_text()
    (proj / ".air.toml").write_text(toml.replace('entrypoint = ["%s", "app.py"]' % PY,
                                                 'bin = "./run.sh"'))
    (proj / "run.sh").write_text("#!/bin/sh\nexec %s app.py\n" % PY)
    (proj / "run.sh").chmod(0o755)
    air = run_air([], proj)
    started(proj, 1, air.output)
    stop(air)
    assert ('air_std: warning: .air.toml: build.bin is deprecated in Air; set build.entrypoint '
            'instead (entrypoint = ["./run.sh"])') in air.stderr()
    empty = tmp_path / "empty"
    empty.mkdir()
    air = run_air(["--print-config"], empty)  # no file, no --build.bin: Air stays quiet
    assert air.wait(10) == 0 and "deprecated" not in air.stderr()


def test_version_and_start_up_banner_follow_air(tmp_path, run_air):
    from air_std import version_line
    air = run_air(["-v"], tmp_path)
    assert air.wait(10) == 0 and air.stdout() == version_line() + "\n"
    (tmp_path / ".air.toml").write_text('[misc]\nstartup_banner = "Welcome to the project"\n')
    air = run_air(["-v"], tmp_path)
    assert air.wait(10) == 0
    assert air.stdout() == "Welcome to the project\n" + version_line() + "\n"
    # at start: the banner (or, when unset, the version line), unless it is ""
    proj = project(tmp_path, rest='[misc]\nstartup_banner = "Welcome to the project"\n')
    air = run_air([], proj)
    air.wait_for("kill -USR1")
    stop(air)
    assert air.stderr().startswith("Welcome to the project\n")
    proj = project(tmp_path, rest='[misc]\nstartup_banner = ""\n')
    air = run_air([], proj)
    air.wait_for("kill -USR1")
    stop(air)
    assert air.stderr().startswith("main    | pid ")
