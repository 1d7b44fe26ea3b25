"""`air-std init`: guesses what kind of project the current directory holds and
writes a commented .air.toml suited to it (Go when go.mod exists, else Python).

Runs in the main thread, instead of the engine; cli.py calls write_config().
"""

import os

from air_std.config import CONFIG_NAME
from air_std.errors import AirError

# The file `init` writes; %(name)s fields are filled per project kind.
_TEMPLATE = """\
# air_std / Air config for %(what)s (written by `air-std init`).
# Air's documentation applies: https://github.com/air-verse/air

# Working directory: . or an absolute path; the directories below are relative to it.
root = "."
tmp_dir = "tmp"
# Files of KEY=value lines loaded into the app's environment (missing files are skipped).
env_files = []

[build]
# Commands run before each build.
pre_cmd = []
# The build command (a shell command line; `make` works too).
cmd = %(cmd)s
# Commands run after Ctrl-C, before air_std exits.
post_cmd = []
# The app: first item is the executable (relative to root), the rest its arguments.
entrypoint = %(entrypoint)s
# Extra arguments for the app (arguments after `--` on the command line are added).
args_bin = []
# Watch files with these extensions (["*"] watches every file).
include_ext = %(include_ext)s
# Never watch these directories.
exclude_dir = %(exclude_dir)s
# Watch only these directories (empty: everything under root).
include_dir = []
# Also watch these files; ignore these files.
include_file = []
exclude_file = []
# Ignore files whose path matches these regular expressions.
exclude_regex = %(exclude_regex)s
# Do not rebuild when a file was saved without changing its content.
exclude_unchanged = true
follow_symlink = false
# Build output log, written in tmp_dir.
log = "build-errors.log"
# Milliseconds to wait after a change before building (changes in between join it).
delay = 1000
# When a build fails: true stops the app until a build succeeds (with the proxy on,
# the browser shows the error); false restarts the app from what the last good
# build left (for an interpreted app, that is the new, broken code).
stop_on_error = true
# Stop the app with SIGINT (else SIGTERM), wait kill_delay, then SIGKILL.
send_interrupt = %(send_interrupt)s
kill_delay = %(kill_delay)s
# Restart the app when it exits on its own, after rerun_delay milliseconds.
rerun = false
rerun_delay = 500

[log]
time = false
main_only = false
silent = false

[color]
main = "magenta"
watcher = "cyan"
build = "yellow"
runner = "green"

[misc]
# Remove tmp_dir when air_std exits.
clean_on_exit = false

[screen]
clear_on_rebuild = false
keep_scroll = true

[proxy]
# Live reload in the browser: open http://127.0.0.1:<proxy_port>, the app listens on app_port.
enabled = false
proxy_port = 0
app_port = 0
"""

# What differs between the two kinds of project.
_GO = {
    "what": "a Go project",
    "include_ext": ["go", "tpl", "tmpl", "html"],
    "exclude_dir": ["assets", "tmp", "vendor", "testdata"],
    "exclude_regex": ["_test\\.go"],
    "send_interrupt": "false", "kill_delay": '"500ms"',
}
_PYTHON = {
    "what": "a Python project",
    "include_ext": ["py", "html", "tmpl", "tpl", "css", "js"],
    "exclude_dir": ["assets", "tmp", "vendor", "testdata", "__pycache__", ".venv", "venv", "node_modules"],
    "exclude_regex": ["_test\\.py$", "(^|/)test_[^/]*\\.py$"],
    # SIGINT lets Python apps run their KeyboardInterrupt/finally clean-up.
    "send_interrupt": "true", "kill_delay": '"1s"',
}


def detect_project(project_dir):
    """("go" | "python", entrypoint list, build cmd) guessed from the files in project_dir."""
    def has(*parts):
        return os.path.exists(os.path.join(project_dir, *parts))

    if has("go.mod"):
        target = "."
        if not has("main.go") and has("cmd"):
            mains = sorted(d for d in os.listdir(os.path.join(project_dir, "cmd"))
                           if has("cmd", d, "main.go"))
            if len(mains) == 1:
                target = "./cmd/" + mains[0]
        return "go", ["./tmp/main"], "go build -o ./tmp/main %s" % target
    python = "python3"
    for venv in (".venv", "venv"):
        if has(venv, "bin", "python"):
            python = "./%s/bin/python" % venv
    if has("manage.py"):
        # Django's own autoreloader would fight air_std's restarts.
        entry = [python, "manage.py", "runserver", "--noreload"]
    else:
        entry = [python, "main.py"]
        for name in ("main.py", "app.py", "server.py", "wsgi.py"):
            if has(name):
                entry = [python, name]
                break
        else:
            packages = sorted(d for d in os.listdir(project_dir) if has(d, "__main__.py"))
            if packages:
                entry = [python, "-m", packages[0]]
    # compileall catches syntax errors before the restart; -x skips virtualenvs etc.
    cmd = "%s -m compileall -q -x '/(\\.venv|venv|\\.git|node_modules|tmp)/' ." % python
    return "python", entry, cmd


def _toml_str(value):
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def _toml_list(values):
    return "[%s]" % ", ".join(_toml_str(v) for v in values)


def init_template(project_dir):
    """A commented .air.toml for the project in project_dir (Go if go.mod exists, else Python)."""
    return _render(*detect_project(project_dir))


def _render(kind, entry, cmd):
    fields = dict(_GO if kind == "go" else _PYTHON, cmd=_toml_str(cmd), entrypoint=_toml_list(entry))
    for name in ("include_ext", "exclude_dir", "exclude_regex"):
        fields[name] = _toml_list(fields[name])
    return _TEMPLATE % fields


def write_config(project_dir):
    """Write project_dir/.air.toml, never over an existing one; returns the line to print.
    Raises AirError when the file exists or cannot be written."""
    path = os.path.join(project_dir, CONFIG_NAME)
    kind, entry, cmd = detect_project(project_dir)
    text = _render(kind, entry, cmd)
    try:
        with open(path, "x", encoding="utf-8") as f:   # "x": never overwrite
            f.write(text)
    except FileExistsError:
        raise AirError("%s already exists; not overwriting it (remove it first to start over)"
                       % CONFIG_NAME) from None
    except OSError as exc:
        raise AirError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
    return ("wrote %s for a %s project (entrypoint: %s); edit it, then run air-std"
            % (path, "Go" if kind == "go" else "Python", " ".join(entry)))
