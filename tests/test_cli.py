"""Tests for air_std.cli: argv parsing, --print-config on the corpus (in process and as
a real subprocess), clean one-line errors, -v/-h, init, warnings, air_wd."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import CORPUS, REPO, corpus_files
from air_std import cli, schema
from air_std.errors import ConfigError

VALID = corpus_files()
INVALID = corpus_files("invalid")
# A representative subset for the slower subprocess runs: Air's example, the legacy
# .conf example, unknown tables, string kill_delay/entrypoint, multi-line strings,
# the empty file, CRLF, a Windows platform block, proxy enabled.
SUBSET = ["001_air-verse__air.toml", "005_air-verse__air.toml", "020_14790897__my-one-api.toml",
          "026_abc-valera__giggler-golang.toml", "038_BacoFoods__menu.toml",
          "055_ct5845__ct-go-web-starter.toml", "069_GeWuYou__Graft.toml",
          "079_jianghao7795__student.toml", "088_Madraka__GONews.toml"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run main() in process with tmp_path as cwd and no air_wd from the outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("air_wd", raising=False)
    return tmp_path


def run_cli(args, cwd, env=None):
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("air_wd", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "air_std"] + list(args), cwd=str(cwd),
                          env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


# ---------------------------------------------------------------- parse_args

def test_parse_flags_overrides_and_app_args():
    opts = cli.parse_args(["-d", "-c", "x.toml", "--build.cmd", "make -j2", "--build.exclude_dir=a,b",
                           "-build.exclude_dir", "c", "--proxy.enabled", "--build.poll", "false",
                           "--root", "src", "--", "--port", "8080", "-v"])
    assert opts.debug and opts.config_file == "x.toml"
    assert opts.overrides == [("build.cmd", "make -j2"), ("build.exclude_dir", "a,b"),
                              ("build.exclude_dir", "c"), ("proxy.enabled", "true"),
                              ("build.poll", "false"), ("root", "src")]
    assert opts.app_args == ["--port", "8080", "-v"]
    assert not opts.show_version


def test_parse_value_may_start_with_a_dash():
    opts = cli.parse_args(["--build.args_bin", "-v,--debug", "--config=dev.toml"])
    assert opts.overrides == [("build.args_bin", "-v,--debug")] and opts.config_file == "dev.toml"


def test_first_positional_ends_options_like_go_flag():
    opts = cli.parse_args(["-d", "serve", "--port", "1"])
    assert opts.app_args == ["serve", "--port", "1"] and opts.overrides == []


def test_parse_init_and_modes():
    assert cli.parse_args(["init"]).init
    assert cli.parse_args(["--print-config"]).print_config
    assert cli.parse_args(["--version"]).show_version and cli.parse_args(["-v"]).show_version
    assert cli.parse_args(["-h"]).show_help and cli.parse_args(["--help"]).show_help
    with pytest.raises(cli.UsageError, match="init takes no arguments"):
        cli.parse_args(["init", "extra"])


@pytest.mark.parametrize("argv,expect", [
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--build.cmdd", "x"], "unknown option --build.cmdd (did you mean --build.cmd?)"),
    (["-c"], "-c needs a file name"),
    (["--build.cmd"], "--build.cmd needs a value"),
    (["--.root", "x"], "unknown option --.root"),
    (["--build.linux", "x"], "unknown option --build.linux"),
])
def test_parse_errors(argv, expect):
    with pytest.raises((cli.UsageError, ConfigError)) as info:
        cli.parse_args(argv)
    assert expect in str(info.value)


# ---------------------------------------------------------------- in-process main()

@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_print_config_every_corpus_file(path, in_tmp, capsys, corpus):
    assert cli.main(["--print-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert set(data) >= {"root", "build", "log", "color", "misc", "screen", "proxy"}
    for line in err.splitlines():
        assert line.startswith("air_std: warning: ") and str(path) in line


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_corpus_file_exits_1_with_one_line(path, in_tmp, capsys, corpus):
    assert cli.main(["--print-config", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.match(r"^air_std: error: %s:\d+:\d+: invalid TOML: .+\n$" % re.escape(str(path)), err), err


def test_print_config_applies_overrides(in_tmp, capsys):
    (in_tmp / ".air.toml").write_text('[build]\ncmd = "go build"\nexclude_dir = ["x"]\n')
    argv = ["--print-config", "--build.cmd", "make", "--build.exclude_dir", "a,b",
            "--build.exclude_dir=c", "--build.kill_delay", "2s", "--proxy.enabled",
            "--proxy.proxy_port", "8090", "--proxy.app_port", "8080"]
    assert cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["build"]["cmd"] == "make"
    assert data["build"]["exclude_dir"] == ["a", "b", "c"]
    assert data["build"]["kill_delay"] == "2s"
    assert data["proxy"]["enabled"] is True and data["proxy"]["proxy_port"] == 8090


def test_errors_are_one_line_and_exit_1(in_tmp, capsys):
    (in_tmp / ".air.toml").write_text('[build]\ndelay = "abc"\n')
    assert cli.main(["--print-config"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("air_std: error: .air.toml: build.delay: expected an integer (milliseconds), "
                   "got 'abc'\n")
    assert cli.main(["--nope"]) == 1
    assert capsys.readouterr().err == "air_std: error: unknown option --nope\n"
    assert cli.main(["-c", "missing.toml"]) == 1
    assert capsys.readouterr().err == "air_std: error: missing.toml: config file not found\n"


def test_warnings_go_to_stderr_and_json_stays_clean(in_tmp, capsys):
    (in_tmp / ".air.toml").write_text("[build]\nfollow_symlinks = true\nentrypoint = [\"./tmp/main\"]\n")
    assert cli.main(["--print-config"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert err == ("air_std: warning: build.follow_symlinks: unknown key in .air.toml "
                   "(did you mean build.follow_symlink?); ignored\n")


def test_version_and_help(in_tmp, capsys):
    assert cli.main(["-v"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"^air_std \d+\.\d+\.\d+\S* \(python \d+\.\d+\.\d+\)\n$", out), out
    assert cli.main(["-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: air-std")
    assert "--build.cmd" in out and "--KEY VALUE" in out and "build.kill_delay" in out
    listed = out.split("\nkeys:\n", 1)[1].split()
    assert listed == [key.dotted for key in schema.KEYS] + ["build.<windows|linux|darwin>.<key>"]


def test_init_python_project_then_refuses_to_overwrite(in_tmp, capsys):
    (in_tmp / "app.py").write_text("print('hi')\n")
    assert cli.main(["init"]) == 0
    out = capsys.readouterr().out
    assert "wrote %s" % (in_tmp / ".air.toml") in out and "python3 app.py" in out
    text = (in_tmp / ".air.toml").read_text()
    assert cli.main(["--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["build"]["entrypoint"] == ["python3", "app.py"]
    assert cli.main(["init"]) == 1
    err = capsys.readouterr().err
    assert err == ("air_std: error: .air.toml already exists; not overwriting it "
                   "(remove it first to start over)\n")
    assert (in_tmp / ".air.toml").read_text() == text


def test_init_go_project(in_tmp, capsys):
    (in_tmp / "go.mod").write_text("module example.com/x\n")
    assert cli.main(["init"]) == 0
    assert "Go project" in capsys.readouterr().out
    assert cli.main(["--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["build"]["cmd"] == "go build -o ./tmp/main ."


def test_config_error_stops_before_the_engine(in_tmp, capsys):
    (in_tmp / ".air.toml").write_text("[proxy]\nenabled = true\n")
    assert cli.main([]) == 1
    assert "proxy.proxy_port: must be set" in capsys.readouterr().err


# ---------------------------------------------------------------- real subprocess

@pytest.mark.parametrize("name", SUBSET)
def test_subprocess_print_config(name, tmp_path, corpus):
    path = CORPUS / name
    proc = run_cli(["--print-config", "-c", str(path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["build"]["kill_delay"] is not None


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_subprocess_invalid_file(path, tmp_path, corpus):
    proc = run_cli(["--print-config", "-c", str(path)], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.match(r"^air_std: error: %s:\d+:\d+: " % re.escape(str(path)), lines[0])


def test_subprocess_version(tmp_path):
    proc = run_cli(["-v"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("air_std ") and proc.stderr == ""


def test_subprocess_air_wd(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / ".air.toml").write_text('[build]\ncmd = "make from-air-wd"\n')
    proc = run_cli(["--print-config"], cwd=tmp_path, env={"air_wd": str(project)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["build"]["cmd"] == "make from-air-wd"


def test_subprocess_unknown_flag(tmp_path):
    proc = run_cli(["--build.exclude_dirs", "x"], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == ("air_std: error: unknown option --build.exclude_dirs "
                           "(did you mean --build.exclude_dir?)\n")


def test_parse_run_once_json_and_ready_flags():
    opts = cli.parse_args(["--once", "--json", "--ready-url=http://127.0.0.1:8000/health",
                           "--ready-after", "1.5", "--ready-timeout", "2m",
                           "run", "python", "app.py", "--port", "9000", "--once"])
    assert opts.once and opts.json
    assert opts.ready_url == "http://127.0.0.1:8000/health"
    assert opts.ready_after_s == 1.5 and opts.ready_timeout_s == 120.0
    # everything after CMD is the app's, flags that look like air_std's included
    assert opts.run_command == ["python", "app.py", "--port", "9000", "--once"]
    assert cli.parse_args(["run", "--", "./server"]).run_command == ["./server"]
    plain = cli.parse_args([])
    assert (plain.once, plain.json, plain.ready_after_s, plain.ready_timeout_s) == (False, False, 2.0, 60.0)


@pytest.mark.parametrize("argv, expect", [
    (["run"], "run needs the app's command"),
    (["--ready-url", "ftp://x/"], "--ready-url: expected an http:// or https:// URL"),
    (["--ready-url", "http://:80/"], "--ready-url: expected"),
    (["--ready-url", "http://h:99999/"], "--ready-url: expected"),
    (["--ready-timeout", "0"], "--ready-timeout: expected a number of seconds above 0"),
    (["--ready-timeout", "nan"], "--ready-timeout: expected"),
    (["--ready-after", "2 days"], "--ready-after: expected"),
    (["--ready-timeout"], "--ready-timeout needs a value"),
])
def test_parse_errors_of_the_ci_flags(argv, expect):
    with pytest.raises(cli.UsageError) as err:
        cli.parse_args(argv)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_print_config_of_run_without_a_config_shows_the_python_watch_set(in_tmp, capsys):
    assert cli.main(["--print-config", "run", sys.executable, "app.py"]) == 0
    build = json.loads(capsys.readouterr().out)["build"]
    assert build["cmd"] == "" and build["entrypoint"] == [sys.executable, "app.py"]
    assert {"py", "html", "css", "js", "toml", "yaml", "json"} <= set(build["include_ext"])
    assert build["include_file"] == [".env"] and "__pycache__" in build["exclude_dir"]
    assert os.listdir(str(in_tmp)) == []  # nothing written


def test_print_config_of_run_with_another_program_keeps_airs_watch_set(in_tmp, capsys):
    assert cli.main(["--print-config", "run", "/bin/sh", "-c", "exec ./server"]) == 0
    build = json.loads(capsys.readouterr().out)["build"]
    assert build["include_ext"] == ["go", "tpl", "tmpl", "html"] and build["cmd"] == ""
