"""Tests for air_std.init_command (`air-std init`): the project kind and
entrypoint it guesses, the template it writes loading cleanly through
load_config, and never writing over an existing .air.toml."""

import pytest

from air_std.config import load_config
from air_std.errors import AirError
from air_std.init_command import detect_project, init_template, write_config


def check_template_loads(project):
    text = init_template(str(project))
    (project / ".air.toml").write_text(text, encoding="utf-8")
    cfg = load_config(cwd=str(project), env={})
    assert cfg.warnings == ()
    assert text.startswith("# ")
    return cfg
def test_init_template_go(tmp_path):
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "main.go").write_text("package main\n")
    cfg = check_template_loads(tmp_path)
    assert cfg.build.cmd == "go build -o ./tmp/main ."
    assert cfg.build.entrypoint == ("./tmp/main",)
    assert cfg.build.include_ext == ("go", "tpl", "tmpl", "html")
    assert cfg.build.exclude_regex_compiled[0].search("a/b_test.go")


def test_init_template_go_with_single_cmd_dir(tmp_path):
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "cmd" / "server").mkdir(parents=True)
    (tmp_path / "cmd" / "server" / "main.go").write_text("package main\n")
    assert check_template_loads(tmp_path).build.cmd == "go build -o ./tmp/main ./cmd/server"


@pytest.mark.parametrize("files,entry", [
    (["app.py"], ["python3", "app.py"]),
    (["main.py", "app.py"], ["python3", "main.py"]),
    (["manage.py", "app.py"], ["python3", "manage.py", "runserver", "--noreload"]),
    (["mypkg/__main__.py"], ["python3", "-m", "mypkg"]),
    ([".venv/bin/python", "server.py"], ["./.venv/bin/python", "server.py"]),
    ([], ["python3", "main.py"]),
])
def test_init_template_python(tmp_path, files, entry):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert detect_project(str(tmp_path))[1] == entry
    cfg = check_template_loads(tmp_path)
    assert cfg.build.entrypoint == tuple(entry)
    assert cfg.build.cmd.startswith(entry[0] + " -m compileall -q ")
    assert "py" in cfg.build.include_ext
    assert {"__pycache__", ".venv", "venv"} <= set(cfg.build.exclude_dir)
    patterns = cfg.build.exclude_regex_compiled
    assert any(p.search("pkg/test_views.py") for p in patterns)
    assert any(p.search("views_test.py") for p in patterns)
    assert not any(p.search("pkg/latest_views.py") for p in patterns)
    assert cfg.build.send_interrupt and cfg.build.kill_delay_s == 1.0




def test_go_project_with_several_cmd_dirs_builds_the_root(tmp_path):
    (tmp_path / "go.mod").write_text("module x\n")
    for name in ("api", "worker"):
        (tmp_path / "cmd" / name).mkdir(parents=True)
        (tmp_path / "cmd" / name / "main.go").write_text("package main\n")
    assert detect_project(str(tmp_path)) == ("go", ["./tmp/main"], "go build -o ./tmp/main .")


def test_template_quotes_what_it_puts_in_toml_strings(tmp_path):
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "cmd" / 'we"ird\\x').mkdir(parents=True)
    (tmp_path / "cmd" / 'we"ird\\x' / "main.go").write_text("package main\n")
    assert check_template_loads(tmp_path).build.cmd == 'go build -o ./tmp/main ./cmd/we"ird\\x'


def test_write_config_writes_once_and_never_overwrites(tmp_path):
    (tmp_path / "server.py").write_text("")
    line = write_config(str(tmp_path))
    assert line == ("wrote %s for a Python project (entrypoint: python3 server.py); edit it, "
                    "then run air-std" % (tmp_path / ".air.toml"))
    text = (tmp_path / ".air.toml").read_text()
    assert text == init_template(str(tmp_path))
    with pytest.raises(AirError, match=r"^\.air\.toml already exists; not overwriting it"):
        write_config(str(tmp_path))
    assert (tmp_path / ".air.toml").read_text() == text


def test_write_config_names_the_path_it_cannot_write():
    # /proc/self lists like a directory, but no file can be created in it, even by root.
    with pytest.raises(AirError, match=r"^cannot write /proc/self/\.air\.toml: "):
        write_config("/proc/self")
