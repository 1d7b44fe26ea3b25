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
    (["mypkg/__main__.py"], ["python3", "-m", "mypkg"]),
    ([".venv/bin/python", "server.py"], ["./.venv/bin/python", "server.py"]),
])
def test_init_template_python_script(tmp_path, files, entry):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert detect_project(str(tmp_path))[1] == entry
    cfg = check_template_loads(tmp_path)
    assert cfg.build.entrypoint == tuple(entry)
    assert cfg.build.cmd == "true"   # no build step: nothing written into the project
    assert cfg.build.delay == 100
    assert "py" in cfg.build.include_ext
    assert {"__pycache__", ".venv", "venv"} <= set(cfg.build.exclude_dir)
    patterns = cfg.build.exclude_regex_compiled
    assert any(p.search("pkg/test_views.py") for p in patterns)
    assert any(p.search("views_test.py") for p in patterns)
    assert not any(p.search("pkg/latest_views.py") for p in patterns)
    # SIGTERM: a plain script has no handler, and SIGINT would print a traceback
    assert not cfg.build.send_interrupt and cfg.build.kill_delay_s == 1.0
    assert not cfg.proxy.enabled and cfg.build.rules == ()


def test_a_single_script_with_a_main_guard_is_the_entry(tmp_path):
    (tmp_path / "tool.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "helpers.py").write_text("x = 1\n")
    assert detect_project(str(tmp_path))[1] == ["python3", "tool.py"]


def test_no_entry_file_is_an_error_not_a_made_up_main_py(tmp_path):
    (tmp_path / "helpers.py").write_text("x = 1\n")
    with pytest.raises(AirError, match=r"^no app to run here: none of main\.py, app\.py"):
        init_template(str(tmp_path))
    with pytest.raises(AirError, match=r"^no app to run here"):
        write_config(str(tmp_path))
    assert not (tmp_path / ".air.toml").exists()


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
    assert line == ("wrote %s for a plain Python project (entrypoint: python3 server.py); edit it, "
                    "then run air-std" % (tmp_path / ".air.toml"))
    text = (tmp_path / ".air.toml").read_text()
    assert text == init_template(str(tmp_path))
    with pytest.raises(AirError, match=r"^\.air\.toml already exists; not overwriting it"):
        write_config(str(tmp_path))
    assert (tmp_path / ".air.toml").read_text() == text


def test_write_config_in_a_directory_with_no_app_writes_nothing():
    # /proc/self lists like a directory, holds no entry file, and no file can
    # be created in it, even by root: the missing app is said before any write.
    with pytest.raises(AirError, match=r"^no app to run here"):
        write_config("/proc/self")


# ---------------------------------------------------------------- through the CLI

FRAMEWORK_PROJECTS = {
    "flask": ({"web.py": "from flask import Flask\n\nserver = Flask(__name__)\n",
               "static/site.css": "h1 {}\n", "requirements.txt": "Flask>=3\n"},
              ["python3", "-m", "flask", "--app", "web:server", "run", "--no-reload", "--port", "5000"],
              5000, ["static"]),
    "fastapi": ({"main.py": "from fastapi import FastAPI\nfrom fastapi.staticfiles import StaticFiles\n"
                            "app = FastAPI()\napp.mount('/a', StaticFiles(directory='assets'))\n",
                 "assets/app.js": "x()\n"},
                ["python3", "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", "8000"],
                8000, ["assets"]),
    "starlette-in-a-package": ({"shop/__init__.py": "", "shop/asgi.py":
                                "import starlette.applications as s\napi = s.Starlette()\n"},
                               ["python3", "-m", "uvicorn", "shop.asgi:api", "--host", "127.0.0.1",
                                "--port", "8000"], 8000, []),
    "django": ({"manage.py": "import sys\n", "blog/__init__.py": "", "blog/static/blog.css": "",
                "pyproject.toml": '[project]\nname = "x"\ndependencies = ["Django>=5"]\n'},
               ["python3", "manage.py", "runserver", "--noreload", "127.0.0.1:8000"],
               8000, ["blog/static"]),
    # no import of the framework anywhere at the top: the dependency names it
    "fastapi-by-dependency": ({"run.py": "import uvicorn\nif __name__ == '__main__':\n    uvicorn.run('x:y')\n",
                               "pyproject.toml": '[tool.poetry.dependencies]\npython = "^3.11"\nfastapi = "*"\n'},
                              ["python3", "run.py"], 8000, []),
}


def write_files(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def init_then_print_config(run_air, proj):
    """`air-std init`, then `--print-config` of what it wrote: (init's stdout, config)."""
    import json
    air = run_air(["init"], proj)
    assert air.wait(15) == 0, air.output()
    said = air.stdout()
    shown = run_air(["--print-config"], proj)
    assert shown.wait(15) == 0, shown.output()
    assert shown.stderr() == "", shown.output()   # no warning about what init wrote
    return said, json.loads(shown.stdout())


@pytest.mark.e2e
@pytest.mark.parametrize("kind", sorted(FRAMEWORK_PROJECTS))
def test_init_on_a_web_project(tmp_path, run_air, kind):
    files, entry, port, static = FRAMEWORK_PROJECTS[kind]
    write_files(tmp_path, files)
    said, cfg = init_then_print_config(run_air, tmp_path)
    assert "wrote %s for a " % (tmp_path / ".air.toml") in said
    assert cfg["build"]["entrypoint"] == entry
    for name in entry[1:2]:
        if name.endswith(".py"):
            assert (tmp_path / name).is_file()   # the real entry, never a made-up main.py
    assert cfg["proxy"]["enabled"] is True
    assert (cfg["proxy"]["app_port"], cfg["proxy"]["proxy_port"]) == (port, 8090)
    assert cfg["build"]["cmd"] == "true" and cfg["build"]["pre_cmd"] == []
    assert cfg["build"]["delay"] <= 200
    assert cfg["build"]["send_interrupt"] is True   # the servers' clean shutdown on SIGINT
    assert "--reload" not in entry
    rules = cfg["build"]["rules"]
    if static:
        rule, = rules
        assert rule["include_dir"] == static and rule["reload"] is True and rule["restart"] is False
        assert rule["cmd"] == "" and set(rule["include_ext"]) == {"css", "js"}
    else:
        assert rules == []


@pytest.mark.e2e
def test_init_never_overwrites_and_says_so(tmp_path, run_air):
    (tmp_path / "app.py").write_text("")
    (tmp_path / ".air.toml").write_text("# mine\n")
    air = run_air(["init"], tmp_path)
    assert air.wait(15) == 1
    assert air.stderr() == ("air_std: error: .air.toml already exists; not overwriting it "
                            "(remove it first to start over)\n")
    assert (tmp_path / ".air.toml").read_text() == "# mine\n"


# A plain script: notes each start, then sleeps until stopped.
SCRIPT = """import os, sys, time
open(sys.argv[1] if len(sys.argv) > 1 else "starts.log", "a").write("%d\\n" % os.getpid())
if __name__ == "__main__":
    while True:
        time.sleep(0.2)
"""


@pytest.mark.e2e
def test_init_on_a_script_runs_it_with_no_build_and_no_traceback(tmp_path, run_air):
    """What init writes for a plain script runs as is: no __pycache__ or
    other file written into the project, and a restart (SIGTERM) prints no
    KeyboardInterrupt traceback."""
    import sys
    from conftest import wait_until
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "tool.py").write_text(SCRIPT)
    said, cfg = init_then_print_config(run_air, proj)
    assert cfg["build"]["entrypoint"] == ["python3", "tool.py"] and cfg["proxy"]["enabled"] is False
    starts = tmp_path / "starts.log"
    # this interpreter, and the log outside the project; the rest as init wrote it
    air = run_air(["--build.entrypoint", "%s,tool.py,%s" % (sys.executable, starts),
                   "--build.poll_interval", "100"], proj)
    wait_until(lambda: starts.exists() and len(starts.read_text().split()) >= 1, timeout=20,
               what="the script's start", output=air.output)
    (proj / "tool.py").write_text(SCRIPT + "# edited\n")
    wait_until(lambda: len(starts.read_text().split()) >= 2, timeout=20,
               what="the restart after the edit", output=air.output)
    import signal
    air.signal(signal.SIGINT)
    assert air.wait(15) == 0, air.output()
    out = air.output()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    written = sorted(p.name for p in proj.iterdir())
    assert written == [".air.toml", "tmp", "tool.py"], written   # tmp_dir: air_std's own
    assert list((proj / "tmp").iterdir()) == []


# What `init` writes for a project like each quick start of the README
# (examples/quickstart/<kind>/.air.toml) and the keys that must agree.
QUICKSTART_PROJECTS = {
    "flask": {"app.py": "from flask import Flask\napp = Flask(__name__)\n", "static/site.css": ""},
    "django": {"manage.py": "", "blog/__init__.py": "", "blog/static/blog.css": ""},
    "fastapi": {"main.py": "from fastapi import FastAPI\nfrom fastapi.staticfiles import StaticFiles\n"
                           "app = FastAPI()\napp.mount('/static', StaticFiles(directory='static'))\n",
                "static/app.js": ""},
}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", sorted(QUICKSTART_PROJECTS))
def test_the_readme_quick_start_loads_and_matches_init(tmp_path, run_air, kind):
    import json
    import shutil
    from conftest import REPO
    quick = tmp_path / "quick"
    quick.mkdir()
    shutil.copy(str(REPO / "examples" / "quickstart" / kind / ".air.toml"), str(quick / ".air.toml"))
    shown = run_air(["--print-config"], quick)
    assert shown.wait(15) == 0 and shown.stderr() == "", shown.output()
    quick_cfg = json.loads(shown.stdout())
    proj = tmp_path / "proj"
    proj.mkdir()
    write_files(proj, QUICKSTART_PROJECTS[kind])
    said, init_cfg = init_then_print_config(run_air, proj)
    for section, key in (("build", "cmd"), ("build", "entrypoint"), ("build", "delay"),
                         ("build", "send_interrupt"), ("build", "rules"), ("proxy", "enabled"),
                         ("proxy", "proxy_port"), ("proxy", "app_port")):
        assert quick_cfg[section][key] == init_cfg[section][key], (kind, section, key)


def test_a_flask_application_factory_is_found_by_flask_itself(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "__init__.py").write_text(
        "from flask import Flask\n\ndef create_app():\n    app = Flask(__name__)\n    return app\n")
    (tmp_path / "wsgi.py").write_text("from site import create_app\napp2 = create_app()\n")
    assert detect_project(str(tmp_path))[1] == [
        "python3", "-m", "flask", "--app", "site", "run", "--no-reload", "--port", "5000"]


@pytest.mark.parametrize("pyproject", ["not = [valid", '[project]\ndependencies = "flask"\n',
                                       "[tool]\npoetry = 3\n"])
def test_a_pyproject_that_says_nothing_usable_is_ignored(tmp_path, pyproject):
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "app.py").write_text("print(1)\n")
    assert detect_project(str(tmp_path))[1] == ["python3", "app.py"]
    assert "enabled = false" in init_template(str(tmp_path))


def test_a_package_named_like_an_entry_file_is_not_taken_for_one(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "__main__.py").write_text("")
    assert detect_project(str(tmp_path))[1] == ["python3", "-m", "app"]
