"""Faults a careless user or an attacker brings about, and what air_std does:
config files that are too big, too deep, not files at all, or hold a NUL
byte; a build log aimed outside the project; an app that daemonizes; the
project root deleted while air_std runs. Each ends in one clear line (and
exit 1 where the run cannot go on), never a traceback, and nothing outside
the project is written."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from air_std import config, tomlread
from air_std.build import Builder
from air_std.buildoutput import StrayPipes
from air_std.config import build_log_path, load_config
from air_std.errors import ConfigError
from conftest import REPO, free_port, http_get, wait_until


def write_config(tmp_path, text):
    (tmp_path / ".air.toml").write_text(text, encoding="utf-8")


def config_error(tmp_path, text=None, overrides=None):
    if text is not None:
        write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides, cwd=str(tmp_path), env={})
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_one_line_error(air, *words):
    code = air.wait(15)
    err = air.stderr()
    assert code == 1, air.output()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("air_std: error:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), err
    return lines[0]


# ---------------------------------------------------------------- NUL bytes

@pytest.mark.parametrize("key, value", [
    ("root", '"a\\u0000b"'),
    ("tmp_dir", '"tmp\\u0000"'),
    ("env_files", '[".env", "x\\u0000y"]'),
    ("build.cmd", '"go build\\u0000"'),
    ("build.pre_cmd", '["echo \\u0000"]'),
    ("build.entrypoint", '["./app", "--flag=\\u0000"]'),
    ("build.entrypoint", '"./a\\u0000pp"'),
    ("build.args_bin", '["\\u0000"]'),
    ("build.full_bin", '"./app\\u0000"'),
    ("build.log", '"a\\u0000.log"'),
    ("build.exclude_dir", '["vendor\\u0000"]'),
    ("build.include_file", '["main\\u0000.go"]'),
    ("proxy.bind", '"127.0.0.1\\u0000"'),
    ("misc.startup_banner", '"hi\\u0000"'),
])
def test_a_nul_byte_in_any_string_is_a_config_error(tmp_path, key, value):
    section, _, name = key.rpartition(".")
    text = ("[%s]\n" % section if section else "") + "%s = %s\n" % (name, value)
    message = config_error(tmp_path, text)
    assert message.startswith(".air.toml: %s: " % key) and "NUL byte" in message


def test_a_nul_byte_in_a_rule_or_a_flag_is_a_config_error(tmp_path):
    message = config_error(tmp_path, '[[build.rules]]\ncmd = "make\\u0000"\n')
    assert "build.rules[0].cmd" in message and "NUL byte" in message
    write_config(tmp_path, "")
    for dotted in ("build.cmd", "build.pre_cmd", "root"):
        message = config_error(tmp_path, overrides=[(dotted, "a\0b")])
        assert message.startswith("--%s: " % dotted) and "NUL byte" in message


@pytest.mark.e2e
def test_print_config_refuses_a_nul_byte_through_the_real_cli(tmp_path, run_air):
    write_config(tmp_path, '[build]\npre_cmd = ["echo a\\u0000b"]\n')
    air = run_air(["--print-config"], tmp_path)
    assert_one_line_error(air, ".air.toml: build.pre_cmd", "NUL byte")
    assert air.stdout() == ""


# ---------------------------------------------------------------- size, depth, what -c may name

@pytest.mark.parametrize("python", ["tomllib", "fallback"])
@pytest.mark.parametrize("shape", ["array", "inline table", "mixed"])
def test_500_nested_values_are_one_error_with_its_place(tmp_path, monkeypatch, python, shape):
    monkeypatch.setattr(tomlread, "_FORCE_FALLBACK", python == "fallback")
    if python == "tomllib" and sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    opening, closing = {"array": ("[", "]"), "inline table": ("{a=", "}"),
                        "mixed": ("[{a=", "}]")}[shape]
    value = opening * 500 + "1" + closing * 500
    message = config_error(tmp_path, '[build]\ncmd = "make"\nexclude_dir = %s\n' % value)
    assert message.startswith(".air.toml:3:") and "nested more than 32 deep" in message


def test_tables_nested_too_deep_by_dotted_keys_are_an_error(tmp_path):
    message = config_error(tmp_path, "root.%s = 1\n" % ".".join(["a"] * 3000))
    assert "nested more than 64 deep" in message


def test_nesting_within_the_bound_still_loads(tmp_path):
    write_config(tmp_path, "[misc]\nnot_a_key = %s1%s\n" % ("[" * 32, "]" * 32))
    cfg = load_config(cwd=str(tmp_path), env={})
    assert "misc.not_a_key: unknown key" in cfg.warnings[0]


def test_a_config_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big.toml"
    with open(str(path), "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: no disk used, and never read
    with pytest.raises(ConfigError, match=r"^big.toml: 67108864 bytes; a config file may have at most"):
        load_config("big.toml", cwd=str(tmp_path), env={})
    (tmp_path / "edge.toml").write_text("#" * (config.MAX_CONFIG_BYTES - 1) + "\n")
    assert load_config("edge.toml", cwd=str(tmp_path), env={}).build.cmd


@pytest.mark.e2e
@pytest.mark.parametrize("name, kind", [("/dev/zero", "a character device"),
                                        ("fifo", "a FIFO (named pipe)")])
def test_c_naming_a_device_or_a_fifo_is_an_error_not_a_hang(tmp_path, run_air, name, kind):
    os.mkfifo(str(tmp_path / "fifo"))
    air = run_air(["-c", name, "--print-config"], tmp_path)
    assert_one_line_error(air, "%s: is %s; expected a .air.toml file" % (name, kind))


@pytest.mark.e2e
def test_dev_zero_under_a_memory_limit_is_an_error_not_a_memory_error(tmp_path):
    # the limit is the shell's (ulimit -v), so it binds air_std only
    script = "ulimit -v 400000; exec %s -m air_std -c /dev/zero --print-config" % sys.executable
    done = subprocess.run(["sh", "-c", script], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 1 and "Error" not in done.stderr.replace("air_std: error:", ""), \
        done.stderr
    assert done.stderr == "air_std: error: /dev/zero: is a character device; expected a .air.toml file\n"


def test_a_found_air_toml_that_is_not_a_file_is_an_error(tmp_path):
    os.mkfifo(str(tmp_path / ".air.toml"))
    assert config_error(tmp_path) == ".air.toml: is a FIFO (named pipe); expected a .air.toml file"
    os.remove(str(tmp_path / ".air.toml"))
    os.symlink("missing.toml", str(tmp_path / ".air.toml"))
    assert config_error(tmp_path) == ".air.toml: a symbolic link to missing.toml, which does not exist"


def test_huge_numbers_and_deep_regexes_are_config_errors(tmp_path):
    assert "out of range" in config_error(tmp_path, '[build]\nkill_delay = "%ss"\n' % ("9" * 5000))
    assert "expected an integer" in config_error(tmp_path, "[build]\ndelay = %s\n" % ("9" * 4000))
    write_config(tmp_path, "")
    for dotted in ("build.delay", "build.kill_delay", "proxy.app_port"):
        message = config_error(tmp_path, overrides=[(dotted, "9" * 5000)])
        assert message.startswith("--%s: expected" % dotted)
    message = config_error(tmp_path, overrides=[("build.exclude_regex", "(" * 1000 + ")" * 1000)])
    assert "groups nested too deeply" in message


def test_names_from_the_user_never_break_the_one_line(tmp_path, monkeypatch):
    # key and file names may hold newlines, tabs or line separators: shown escaped
    write_config(tmp_path, '"a\\nb" = 1\n[build]\n"x\\u2028y" = 2\n')
    warnings = [w for w in load_config(cwd=str(tmp_path), env={}).warnings if "unknown" in w]
    assert [w.split(":")[0] for w in warnings] == ["a\\nb", "build.x\\u2028y"]
    monkeypatch.setattr(tomlread, "_FORCE_FALLBACK", True)
    message = config_error(tmp_path, 'cmd = "a\\\x0cb"\n')  # a form feed after the backslash
    assert message.isprintable() and "invalid escape '\\\\x0c'" in message
    weird = tmp_path / "my\nconfig.toml"
    weird.write_text("root = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(weird), cwd=str(tmp_path), env={})
    assert str(info.value).isprintable() and "my\\nconfig.toml" in str(info.value)


# ---------------------------------------------------------------- where the build log may go

@pytest.mark.parametrize("log", ["../../elsewhere/notes.txt", "..", "a/../../b", "/", "."])
def test_a_build_log_outside_tmp_dir_is_a_config_error(tmp_path, log):
    message = config_error(tmp_path, '[build]\nlog = "%s"\n' % log)
    assert message.startswith(".air.toml: build.log: expected a file name inside tmp_dir")
    write_config(tmp_path, "")
    assert config_error(tmp_path, overrides=[("build.log", log)]).startswith("--build.log: ")


def test_an_absolute_build_log_is_joined_below_tmp_dir_as_air_joins_it(tmp_path):
    write_config(tmp_path, '[build]\nlog = "/tmp/air.log"\n')  # Go's filepath.Join keeps it inside
    cfg = load_config(cwd=str(tmp_path), env={})
    assert build_log_path(cfg) == (str(tmp_path / "tmp" / "tmp" / "air.log"), None)


def failed_build(proj, top=""):
    (proj / ".air.toml").write_text(top + '[build]\ncmd = "echo broken; exit 3"\nlog = "notes.txt"\n')
    builder = Builder(load_config(cwd=str(proj), env={}), threading.Event(), StrayPipes(),
                      tick_s=0.05)
    assert builder.run(lambda: False) is False
    return builder


def outside_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    notes = elsewhere / "notes.txt"
    notes.write_text("my notes\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    return proj, notes


def test_a_symlink_in_tmp_dir_cannot_lead_the_build_log_out(tmp_path, caplog):
    proj, notes = outside_file(tmp_path)
    (proj / "tmp").mkdir()
    os.symlink(str(notes), str(proj / "tmp" / "notes.txt"))
    builder = failed_build(proj)
    assert notes.read_text() == "my notes\n" and builder.written_files == []
    assert "build log not written: %s leads out of tmp_dir" % (proj / "tmp" / "notes.txt") in caplog.text
    os.remove(str(proj / "tmp" / "notes.txt"))
    shutil.rmtree(str(proj / "tmp"))
    os.symlink(str(notes.parent), str(proj / "tmp"))  # tmp_dir itself leads out of root
    builder = failed_build(proj)
    assert notes.read_text() == "my notes\n" and builder.written_files == []
    assert "is not inside root" in caplog.text


def test_a_tmp_dir_outside_root_gets_no_build_log(tmp_path, caplog):
    proj, notes = outside_file(tmp_path)
    builder = failed_build(proj, top='tmp_dir = "%s"\n' % notes.parent)
    assert notes.read_text() == "my notes\n" and builder.written_files == []
    assert "build log not written: tmp_dir %s is not inside root" % notes.parent in caplog.text


@pytest.mark.e2e
def test_a_failed_build_never_writes_outside_the_project(tmp_path, run_air):
    proj, notes = outside_file(tmp_path)
    (proj / ".air.toml").write_text('[build]\ncmd = "exit 3"\nlog = "../../elsewhere/notes.txt"\n'
                                    'entrypoint = ["true"]\n')
    air = run_air([], proj)
    assert_one_line_error(air, "build.log", "../../elsewhere/notes.txt")
    (proj / ".air.toml").write_text('[build]\ncmd = "echo broken; exit 3"\nlog = "%s"\n'
                                    'entrypoint = ["true"]\n' % notes)
    air = run_air([], proj)
    log = proj / "tmp" / notes.relative_to("/")
    wait_until(lambda: log.exists() and "build failed" in log.read_text() and "broken\n" in log.read_text(),
               what="the build log in tmp_dir", output=air.output)
    air.signal(signal.SIGINT)
    assert air.wait(10) == 0, air.output()
    assert notes.read_text() == "my notes\n"


# ---------------------------------------------------------------- an app that daemonizes

# The leader binds the port, double-forks a setsid daemon that serves on it, and
# exits: a second copy started while the first daemon lives cannot bind.
DAEMON_APP = textwrap.dedent('''
    import http.server, os, signal, sys
    VALUE = "one"
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = VALUE.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    with open("daemon-%s.pid" % VALUE, "w") as f:
        f.write(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()
''')


@pytest.mark.e2e
def test_a_daemonized_app_is_replaced_at_every_restart(tmp_path, run_air):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(DAEMON_APP)
    (proj / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "true"
        entrypoint = ["{py}", "app.py"]
        include_ext = ["py"]
        delay = 50
        poll_interval = 100
        ''').format(py=sys.executable))
    port = free_port()
    air = run_air([], proj, env={"PORT": str(port)})
    for value in ("one", "two", "three"):
        if value != "one":
            (proj / "app.py").write_text(DAEMON_APP.replace('VALUE = "one"', 'VALUE = "%s"' % value))
        wait_until(lambda: (http_get(port, timeout=1.0) or (0, ""))[1] == value, timeout=20,
                   what="the daemon of version %r serving" % value, output=air.output)
    assert "Address already in use" not in air.stderr()
    air.signal(signal.SIGINT)
    assert air.wait(10) == 0, air.output()
    assert "stopping what the app left running" in air.stderr()


# ---------------------------------------------------------------- the root deleted mid-run

@pytest.mark.e2e
def test_deleting_the_root_stops_air_std_with_one_line_and_exit_1(tmp_path, run_air):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.txt").write_text("x")
    (proj / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "true"
        entrypoint = ["{py}", "-c", "import time; open('started', 'w').close(); time.sleep(60)"]
        include_ext = ["txt"]
        delay = 0
        poll_interval = 100
        ''').format(py=sys.executable))
    air = run_air([], proj)
    wait_until(lambda: (proj / "started").exists(), timeout=15, what="the app", output=air.output)
    shutil.rmtree(str(proj))
    code = air.wait(15)
    err = air.stderr()
    assert code == 1, air.output()
    assert "Traceback" not in err and "crashed" not in err, err
    assert err.count("root %s no longer exists (deleted or moved); stopping" % proj) == 1, err


@pytest.mark.e2e
def test_a_root_that_does_not_exist_is_refused_at_start(tmp_path, run_air):
    write_config(tmp_path, 'root = "srcc"\n[build]\ncmd = "true"\nentrypoint = ["true"]\n')
    air = run_air([], tmp_path)
    assert_one_line_error(air, "root %s does not exist" % (tmp_path / "srcc"))
    assert not (tmp_path / "srcc").exists()
