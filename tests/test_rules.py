"""[[build.rules]] through the real CLI: a real project in a temp dir, real
rule commands and builds, real signals. Each test waits for a state (a line
in a log file the commands write, a line of air_std's output), never for a
time window; a change that must *not* do something is followed by one that
must, so its absence is checked once the watcher has certainly seen it.

Also the RuleSet's matching (rules.py, through filters.PathFilter.route),
without a thread: Air's ruleMatches and isRuleDir/inRuleDir, case by case.
"""

import os
import signal
import sys
import textwrap

import pytest

from air_std.filters import MAIN, PathFilter
from air_std.rules import RuleSet
from conftest import pid_alive, wait_until

e2e = pytest.mark.e2e  # through the CLI; the tests without a thread are unit tests

PY = sys.executable

# Appends its arguments as one line to the file named first.
MARK = "import sys\nopen(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')\n"
# A rule command that notes its start (and its pid), then, when given a
# release file, waits for it (bounded) before noting its end.
SLOW = textwrap.dedent('''
    import os, sys, time
    log, release = sys.argv[1], sys.argv[2]
    with open(log, "a") as f:
        f.write("start %d\\n" % os.getpid())
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(log, "a") as f:
        f.write("end\\n")
''')
APP = "import time\nwhile True:\n    time.sleep(1)\n"


def project(tmp_path, build="", rules="", include_ext='["py"]'):
    """proj/ with app.py and an .air.toml whose build appends to out/builds;
    tools/ and out/ lie beside it, so nothing they write is watched."""
    tools, out, proj = tmp_path / "tools", tmp_path / "out", tmp_path / "proj"
    for d in (tools, out, proj):
        d.mkdir()
    (tools / "mark.py").write_text(MARK)
    (tools / "slow.py").write_text(SLOW)
    (proj / "app.py").write_text(APP)
    text = textwrap.dedent('''
        [build]
        cmd = "{py} {tools}/mark.py {out}/builds"
        entrypoint = ["{py}", "app.py"]
        include_ext = {include_ext}
        delay = 50
        poll_interval = 100
        ''').format(py=PY, tools=tools, out=out, include_ext=include_ext)
    text += textwrap.dedent(build) + "\n" + textwrap.dedent(rules).format(py=PY, tools=tools, out=out)
    (proj / ".air.toml").write_text(text)
    return proj, tools, out


def lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, count, air, what):
    return wait_until(lambda: len(lines(path)) >= count and lines(path), timeout=20,
                      what="%d line(s) in %s (%s)" % (count, path.name, what), output=air.output)


def rebuild_lines(air):
    """The main build's "... changed; rebuilding" lines, without the part's prefix."""
    return [line.split("| ", 1)[-1] for line in air.stderr().splitlines()
            if line.endswith("changed; rebuilding")]


def start(run_air, proj, out):
    air = run_air([], proj)
    wait_lines(out / "builds", 1, air, "the first build")
    air.wait_for("running ", timeout=20)
    return air


def stop(air):
    air.signal(signal.SIGINT)
    assert air.wait(15) == 0, air.output()
    assert "Traceback" not in air.stderr(), air.output()


@e2e
def test_a_rule_runs_its_cmd_and_its_files_never_start_the_main_build(tmp_path, run_air):
    # web/ is in exclude_dir and .css is not a main extension: the rule's
    # include_dir is walked anyway (Air's isRuleDir), and its file is watched.
    proj, tools, out = project(tmp_path, build='exclude_dir = ["web"]\n', rules='''
        [[build.rules]]
        name = "assets"
        cmd = "{py} {tools}/mark.py {out}/assets ran"
        include_dir = ["web"]
        include_ext = ["css"]
        delay = 50
        ''')
    (proj / "web").mkdir()
    air = start(run_air, proj, out)
    (proj / "web" / "site.css").write_text("body {}\n")
    wait_lines(out / "assets", 1, air, "the rule's command")
    err = air.stderr()
    assert "[assets] web/site.css changed" in err and "[assets] > %s" % PY in err
    air.wait_for("[assets] done in", timeout=20)
    # The main build runs for a main file, and only for it.
    (proj / "main.py").write_text("x = 1\n")
    wait_lines(out / "builds", 2, air, "the rebuild for main.py")
    assert rebuild_lines(air) == ["main.py changed; rebuilding"], air.output()
    assert len(lines(out / "builds")) == 2 and len(lines(out / "assets")) == 1
    stop(air)


@e2e
def test_rules_are_checked_in_order_and_the_first_match_wins(tmp_path, run_air):
    # Both rules match web/a.css, and so would the main build (.css is one of
    # its extensions): only "first" runs for it.
    proj, tools, out = project(tmp_path, include_ext='["py", "css", "js"]', rules='''
        [[build.rules]]
        name = "first"
        cmd = "{py} {tools}/mark.py {out}/first ran"
        include_dir = ["web"]
        include_ext = ["css"]
        delay = 50
        [[build.rules]]
        name = "second"
        cmd = "{py} {tools}/mark.py {out}/second ran"
        include_ext = ["css", "js"]
        delay = 50
        ''')
    (proj / "web").mkdir()
    air = start(run_air, proj, out)
    (proj / "web" / "a.css").write_text("a {}\n")
    wait_lines(out / "first", 1, air, "the first rule")
    (proj / "web" / "b.js").write_text("b()\n")  # only "second" matches it
    wait_lines(out / "second", 1, air, "the second rule")
    air.wait_for("[second] done in", timeout=20)
    (proj / "main.py").write_text("x = 1\n")
    wait_lines(out / "builds", 2, air, "the rebuild for main.py")
    err = air.stderr()
    assert "[second] web/b.js changed" in err and "[second] web/a.css" not in err, air.output()
    assert "[first] web/a.css changed" in err and "[first] web/b.js" not in err, air.output()
    assert rebuild_lines(air) == ["main.py changed; rebuilding"], air.output()
    stop(air)


@e2e
def test_changes_during_a_run_give_exactly_one_more_run(tmp_path, run_air):
    proj, tools, out = project(tmp_path, rules='''
        [[build.rules]]
        name = "slow"
        cmd = "{py} {tools}/slow.py {out}/slow {out}/release"
        include_ext = ["css"]
        delay = 50
        ''')
    air = run_air(["-d"], proj)  # -d: the watcher logs each file it hands to a rule
    wait_lines(out / "builds", 1, air, "the first build")
    (proj / "a.css").write_text("1\n")
    wait_lines(out / "slow", 1, air, "the first run, waiting for its release")
    # A burst while the command runs: several files, one of them again.
    for name in ("b.css", "c.css", "a.css", "d.css"):
        (proj / name).write_text("2\n")
    for name, count in (("a.css", 2), ("b.css", 1), ("c.css", 1), ("d.css", 1)):
        air.wait_for("%s matches rule slow" % name, count=count, timeout=20)
    (out / "release").write_text("")
    wait_lines(out / "slow", 4, air, "the first run's end, then the second run")
    air.wait_for("[slow] done in", timeout=20, count=2)
    # Then a change of its own: the third run, and none in between.
    (proj / "e.css").write_text("3\n")
    air.wait_for("[slow] done in", timeout=20, count=3)
    got = lines(out / "slow")
    assert [line.split()[0] for line in got] == ["start", "end"] * 3, got
    changed = [line.split("[slow] ", 1)[1] for line in air.stderr().splitlines()
               if "[slow]" in line and line.endswith(" changed")]
    assert changed == ["a.css changed", "a.css, b.css, c.css and 1 more changed", "e.css changed"], \
        air.output()
    stop(air)


@e2e
def test_shutdown_stops_a_running_rule_command(tmp_path, run_air):
    proj, tools, out = project(tmp_path, rules='''
        [[build.rules]]
        name = "forever"
        cmd = "{py} {tools}/slow.py {out}/forever {out}/never"
        include_ext = ["css"]
        delay = 50
        ''')
    air = start(run_air, proj, out)
    (proj / "a.css").write_text("1\n")
    got = wait_lines(out / "forever", 1, air, "the rule's command")
    pid = int(got[0].split()[1])
    assert pid_alive(pid)
    stop(air)
    assert not pid_alive(pid), "the rule's command outlived air_std"
    assert "[forever] stopping" in air.stderr(), air.output()


@e2e
def test_a_rule_include_dir_outside_root_is_watched(tmp_path, run_air):
    proj, tools, out = project(tmp_path, rules='''
        [[build.rules]]
        name = "shared"
        cmd = "{py} {tools}/mark.py {out}/shared ran"
        include_dir = ["../assets"]
        ''')
    (tmp_path / "assets").mkdir()
    air = start(run_air, proj, out)
    (tmp_path / "assets" / "logo.svg").write_text("<svg/>\n")
    wait_lines(out / "shared", 1, air, "the rule for ../assets")
    assert "[shared] ../assets/logo.svg changed" in air.stderr(), air.output()
    stop(air)


@e2e
def test_a_hidden_rule_include_dir_is_named_at_start(tmp_path, run_air):
    proj, tools, out = project(tmp_path, rules='''
        [[build.rules]]
        name = "ci"
        cmd = "true"
        include_dir = [".github"]
        ''')
    air = start(run_air, proj, out)
    assert ("build.rules[0] (ci): include_dir .github is a hidden directory, which Air never "
            "watches; not watched") in air.stderr(), air.output()
    stop(air)


@e2e
@pytest.mark.parametrize("rule, message", [
    ('cmd = "make css"\n',
     ".air.toml: build.rules[0]: needs at least one of include_dir, include_ext or include_file"),
    ('include_ext = ["css"]\n', ".air.toml: build.rules[0]: cmd is required"),
    ('include_ext = ["css"]\nrestart = "yes"\n', ".air.toml: build.rules[0].restart: "),
    ('cmd = "x"\ninclude_dir = [".."]\n', ".air.toml: build.rules[0].include_dir: '..' holds root"),
])
def test_bad_rules_are_one_line_errors(tmp_path, run_air, rule, message):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".air.toml").write_text("[[build.rules]]\n" + rule)
    air = run_air(["--print-config"], proj)
    assert air.wait(10) == 1, air.output()
    err = air.stderr().strip()
    assert err.startswith("air_std: error: " + message) and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------- restart and reload (air_std's keys)

# An app that notes its pid in the file given, then serves / on PORT (when set).
PID_APP = textwrap.dedent('''
    import http.server, os, signal, sys
    with open(sys.argv[1], "a") as f:
        f.write("%d\\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT") or 0)
    if port:
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<html><body>page</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_HEAD = do_GET
            def log_message(self, *a):
                pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    else:
        signal.sigwait([signal.SIGINT])
''')


def pid_project(tmp_path, rules, proxy=""):
    """project() with an app that notes each start's pid in out/pids."""
    proj, tools, out = project(tmp_path, rules=rules)
    (proj / "app.py").write_text(PID_APP)
    toml = proj / ".air.toml"
    text = toml.read_text().replace('"app.py"]', '"app.py", "%s"]' % (out / "pids"), 1)
    toml.write_text(text + proxy)
    return proj, tools, out


@e2e
def test_a_rule_with_restart_restarts_the_app_without_the_main_build(tmp_path, run_air):
    proj, tools, out = pid_project(tmp_path, rules='''
        [[build.rules]]
        name = "data"
        include_ext = ["txt"]
        restart = true
        delay = 50
        [[build.rules]]
        name = "broken"
        cmd = "exit 3"
        include_ext = ["csv"]
        restart = true
        delay = 50
        ''')
    air = start(run_air, proj, out)
    first = wait_lines(out / "pids", 1, air, "the first app")
    (proj / "words.txt").write_text("a\n")  # no cmd: the restart alone
    pids = wait_lines(out / "pids", 2, air, "the app restarted by the rule")
    assert pids[1] != first[0]
    air.wait_for("[data]: restarting the app (no build)", timeout=10)
    # A rule whose command fails leaves the app alone.
    (proj / "table.csv").write_text("a,b\n")
    air.wait_for("[broken] not restarting the app: the command failed", timeout=20)
    (proj / "words.txt").write_text("b\n")
    wait_lines(out / "pids", 3, air, "the second restart by the rule")
    assert len(lines(out / "builds")) == 1, air.output()   # never the main build
    assert rebuild_lines(air) == [], air.output()
    stop(air)


@e2e
def test_a_restart_rule_leaves_an_app_stopped_by_a_failed_build_alone(tmp_path, run_air):
    proj, tools, out = pid_project(tmp_path, rules="""
        [[build.rules]]
        name = "data"
        include_ext = ["txt"]
        restart = true
        delay = 50
        """)
    toml = proj / ".air.toml"
    text = toml.read_text()
    # the build fails while broken.flag exists (not a watched extension)
    text = text.replace(' {out}/builds"\n'.format(out=out),
                        ' {out}/builds && test ! -e broken.flag"\nstop_on_error = true\n'.format(out=out), 1)
    toml.write_text(text)
    air = start(run_air, proj, out)
    wait_lines(out / "pids", 1, air, "the first app")
    (proj / "broken.flag").write_text("")
    (proj / "main.py").write_text("x = 1\n")
    air.wait_for("stopping the app until a build succeeds", timeout=20)
    (proj / "words.txt").write_text("a\n")
    air.wait_for("[data]: not restarting the app: the last build failed", timeout=20)
    (proj / "broken.flag").unlink()
    (proj / "main.py").write_text("x = 2\n")
    wait_lines(out / "pids", 2, air, "the app after the good build")
    (proj / "words.txt").write_text("b\n")
    wait_lines(out / "pids", 3, air, "the restart by the rule")
    assert len(lines(out / "pids")) == 3, air.output()
    stop(air)


def from_rule(event):
    """A rule's reload, not the stream's hello or the app start's reload
    (which may reach a stream opened just after the start)."""
    return event[0] != "hello" and '"reason": "rule"' in event[1]


def read_sse_events(sock, want, deadline_s=20.0):
    """The rules' SSE events (name, data) read from an open stream until
    there are `want` of them; bounded by deadline_s."""
    import re
    import time
    events, buf = [], b""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        events = [(m.group(1).decode(), m.group(2).decode())
                  for m in re.finditer(rb"event: (\S+)\r?\ndata: ([^\r\n]*)", buf)]
        if len([e for e in events if from_rule(e)]) >= want:
            break
    return [e for e in events if from_rule(e)]


def sse_hello(sock):
    """True once the stream's first event (hello) was read: it is registered."""
    sock.settimeout(0.2)
    try:
        return b"event: hello" in sock.recv(65536)
    except OSError:
        return False


def open_sse(port):
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /__air_internal/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Accept: text/event-stream\r\n\r\n")
    return sock


@e2e
def test_a_rule_with_reload_reloads_the_browser_and_restarts_nothing(tmp_path, run_air):
    import json
    from conftest import free_port, http_get
    app_port, proxy_port = free_port(), free_port()
    proj, tools, out = pid_project(tmp_path, rules='''
        [[build.rules]]
        name = "static"
        include_dir = ["static"]
        reload = true
        delay = 50
        ''', proxy="[proxy]\nenabled = true\nproxy_port = %d\napp_port = %d\n"
        % (proxy_port, app_port))
    (proj / "static").mkdir()
    air = run_air([], proj, env={"PORT": str(app_port)})
    wait_lines(out / "pids", 1, air, "the app")
    wait_until(lambda: http_get(proxy_port), timeout=20, what="the page through the proxy",
               output=air.output)
    sock = open_sse(proxy_port)
    try:
        wait_until(lambda: sse_hello(sock), timeout=10, what="the stream's hello")
        (proj / "static" / "site.css").write_text("body { color: red }\n")
        (event, data), = read_sse_events(sock, 1)
        assert event == "reload" and json.loads(data) == {
            "reason": "rule", "css": True, "paths": ["static/site.css"]}, data
        air.wait_for("[static] stylesheets swapped in 1 page(s)", timeout=10)
        (proj / "static" / "app.js").write_text("x()\n")
        (event, data), = read_sse_events(sock, 1)
        assert json.loads(data)["css"] is False, data
        air.wait_for("[static] reload in 1 page(s)", timeout=10)
    finally:
        sock.close()
    assert len(lines(out / "pids")) == 1 and len(lines(out / "builds")) == 1, air.output()
    stop(air)


@e2e
def test_a_rule_with_only_reload_and_no_proxy_is_a_warning(tmp_path, run_air):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".air.toml").write_text('[[build.rules]]\ninclude_ext = ["css"]\nreload = true\n')
    air = run_air(["--print-config"], proj)
    assert air.wait(10) == 0, air.output()
    warning, = [l for l in air.stderr().splitlines() if "reload" in l]
    assert warning == ("air_std: warning: .air.toml: build.rules[0].reload: reload = true, but "
                       "proxy.enabled is false: no browser is reloaded for this rule (its files "
                       "do nothing); set proxy.enabled = true with proxy_port and app_port"), warning
    import json
    rule, = json.loads(air.stdout())["build"]["rules"]
    assert (rule["restart"], rule["reload"], rule["cmd"]) == (False, True, "")


# ---------------------------------------------------------------- matching, no thread

def route(flt, *paths):
    return [flt.route(p) for p in paths]


def test_rule_matching_follows_air():
    rules = RuleSet([
        {"name": "web", "include_dir": ["web"], "include_ext": ["css"], "exclude_regex": [r"\.min\."]},
        {"name": "any-proto", "include_ext": [".proto"]},
        {"name": "one-file", "include_file": ["conf/app.yaml"]},
        {"name": "dir-only", "include_dir": ["static"]},
        {"name": "files-in-dir", "include_dir": ["docs"], "include_file": ["docs/index.md", "x.md"]},
    ], tmp_dir="tmp", testdata_dir="testdata")
    f = PathFilter(include_ext=["go", "css"], exclude_dir=["web/vendor", "static"], rules=rules)
    # first match wins, and the main build never sees a file a rule took
    assert route(f, "web/a.css", "a.css", "web/a.go", "main.go") == [0, MAIN, MAIN, MAIN]
    # exclude_regex is the rule's own; the main build takes the file back if it wants it
    assert route(f, "web/a.min.css") == [MAIN]
    # below a rule's include_dir, exclude_dir, hidden directories and tmp still prune
    assert route(f, "web/vendor/a.css", "web/.cache/a.css") == [None, None]
    # a rule without include_dir sees what Air watches: the main build's
    # directories and every rule's include_dir (static is excluded, yet a rule dir)
    assert route(f, "api/x.proto", "static/x.proto", "web/x.proto", "tmp/x.proto") == [1, 1, 1, None]
    # include_file alone: that file only, wherever it is
    assert route(f, "conf/app.yaml", "conf/other.yaml") == [2, None]
    # neither include_ext nor include_file: every file of the directory
    assert route(f, "static/logo.png", "static/css/x.css") == [3, 3]
    # include_file with include_dir: the listed files under it, none outside it
    assert route(f, "docs/index.md", "docs/other.md", "x.md") == [4, None, None]


def test_rule_include_dirs_that_air_never_walks_are_noted():
    rules = RuleSet([{"name": "r", "include_dir": [".github", "tmp", "web"]}],
                    tmp_dir="tmp", testdata_dir="testdata")
    assert rules.rules[0].dirs == ("web",)
    assert [n.split(": ")[1] for n in rules.notes] == [
        "include_dir .github is a hidden directory, which Air never watches; not watched",
        "include_dir tmp is tmp_dir or testdata_dir, which Air never watches; not watched"]


def test_rule_include_dirs_resolve_against_root(tmp_path):
    root = str(tmp_path / "proj")
    rules = RuleSet([{"include_dir": [os.path.join(root, "web"), "../shared/", "./a/../b"]}], root)
    assert rules.rules[0].dirs == ("web", "../shared", "b")
    assert rules.outside() == [("../shared", "build.rules[0].include_dir")]


def test_the_watcher_splits_each_pass_between_the_rules_and_the_main_build(tmp_path):
    import queue
    import shutil
    import threading

    from air_std.messages import RuleChanges
    from air_std.watcher import Watcher

    root, beside = tmp_path / "proj", tmp_path / "assets"
    for d in (root / "web" / "img", root / "src", beside):
        d.mkdir(parents=True)
    rules = RuleSet([{"name": "web", "include_dir": ["web"], "include_ext": ["css", "png"]},
                     {"name": "beside", "include_dir": ["../assets"]}], str(root))
    flt = PathFilter(include_ext=["go", "css"], exclude_dir=["web"], rules=rules)
    main, to_rules = queue.Queue(), queue.Queue()
    w = Watcher(str(root), flt, main, threading.Event(), rule_queue=to_rules)
    assert w.poll_once() is None  # the baseline
    assert [t.path for t in w.tree.trees] == [str(root), str(beside)]
    for rel in ("web/a.css", "web/img/b.png", "web/c.go", "src/d.go", "src/e.css", "../assets/f.svg"):
        (root / rel).write_text("x")
    batch = w.poll_once()
    assert batch.created == (str(root / "src" / "d.go"), str(root / "src" / "e.css"))
    got = [to_rules.get_nowait() for _ in range(2)]
    assert got == [RuleChanges(0, (str(root / "web" / "a.css"), str(root / "web" / "img" / "b.png"))),
                   RuleChanges(1, (str(beside / "f.svg"),))]
    # a whole directory of the rule's goes: its files still go to the rule
    shutil.rmtree(str(root / "web" / "img"))
    assert w.poll_once() is None
    assert to_rules.get_nowait() == RuleChanges(0, (str(root / "web" / "img" / "b.png"),))
    assert to_rules.empty()
