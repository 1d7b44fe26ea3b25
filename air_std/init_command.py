"""`air-std init`: writes a commented .air.toml suited to the project in the
current directory (what it holds is found by init_detect.py: Go, or Python
with Django, FastAPI/Starlette, Flask or a plain script), never over an
existing file.

Runs in the main thread, instead of the engine; cli.py calls write_config().
"""

import os

from air_std.config import CONFIG_NAME
from air_std.errors import AirError
from air_std.init_detect import ENTRY_NAMES, detect

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
# The build command (a shell command line; `make` works too).%(cmd_note)s
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
# Milliseconds to wait after a change before building (changes in between join it;
# a change during a build cancels it and builds again, so this can stay short).
delay = %(delay)s
# When a build fails: true stops the app until a build succeeds (with the proxy on,
# the browser shows the error); false restarts the app from what the last good
# build left (for an interpreted app, that is the new, broken code).
stop_on_error = true
# Stop the app with SIGINT (else SIGTERM), wait kill_delay, then SIGKILL.%(interrupt_note)s
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
enabled = %(proxy)s
proxy_port = %(proxy_port)d
app_port = %(app_port)d
%(rules)s"""

# Served from disk, so a change needs no restart: the page reloads, and
# swaps its stylesheets in place when only .css files changed.
_STATIC_RULE = """
# Files the app serves from disk: no restart, only a browser reload (reload =
# true is air_std's own key; a change of .css files alone swaps the page's
# stylesheets in place, keeping scroll position and form state).
[[build.rules]]
name = "static"
include_dir = %(dirs)s
include_ext = ["css", "js"]
reload = true
delay = 50
"""

# What differs between the two kinds of project.
_GO = {
    "what": "a Go project", "delay": 1000, "cmd_note": "", "interrupt_note": "",
    "include_ext": ["go", "tpl", "tmpl", "html"],
    "exclude_dir": ["assets", "tmp", "vendor", "testdata"],
    "exclude_regex": ["_test\\.go"],
    "send_interrupt": "false", "kill_delay": '"500ms"',
}
_PYTHON = {
    "what": "a Python project", "delay": 100,
    "cmd_note": ("\n# Python needs no build step: `true` does nothing (an empty cmd would be"
                 "\n# Air's default, go build)."),
    "include_ext": ["py", "html", "tmpl", "tpl", "css", "js"],
    "exclude_dir": ["assets", "tmp", "vendor", "testdata", "__pycache__", ".venv", "venv", "node_modules"],
    "exclude_regex": ["_test\\.py$", "(^|/)test_[^/]*\\.py$"],
    "kill_delay": '"1s"',
}
_FRAMEWORK_NAMES = {"django": "Django", "fastapi": "FastAPI/Starlette (uvicorn)", "flask": "Flask"}


def detect_project(project_dir):
    """("go" | "python", entrypoint list or None, build cmd), from init_detect."""
    found = detect(project_dir)
    return found.kind, found.entry, found.build_cmd


def _toml_str(value):
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def _toml_list(values):
    return "[%s]" % ", ".join(_toml_str(v) for v in values)


def init_template(project_dir):
    """The commented .air.toml for the project in project_dir; AirError when
    a Python project has no entry file to run."""
    return _render(_detected(project_dir))


def _detected(project_dir):
    found = detect(project_dir)
    if found.entry is None:
        raise AirError("no app to run here: none of %s, a package with __main__.py, or a single "
                       "script with `if __name__ == \"__main__\"`; create the app's entry file "
                       "first, or write %s by hand" % (", ".join(ENTRY_NAMES), CONFIG_NAME))
    return found


def _render(found):
    fields = dict(_GO if found.kind == "go" else _PYTHON, cmd=_toml_str(found.build_cmd),
                  entrypoint=_toml_list(found.entry), proxy="false", proxy_port=0, app_port=0,
                  rules="")
    if found.kind == "python":
        web = found.framework is not None
        if web:
            fields["what"] = "a %s project" % _FRAMEWORK_NAMES[found.framework]
            fields.update(proxy="true", proxy_port=found.proxy_port, app_port=found.app_port)
        if found.static:
            fields["rules"] = _STATIC_RULE % {"dirs": _toml_list(found.static)}
        # A web server ends cleanly on SIGINT (its shutdown runs); a plain script
        # would print a KeyboardInterrupt traceback on every restart, and SIGTERM
        # ends it quietly.
        fields["send_interrupt"] = "true" if web else "false"
        fields["interrupt_note"] = ("\n# SIGINT: the server's own clean shutdown." if web else
                                    "\n# SIGTERM: a script ends without a KeyboardInterrupt traceback.")
    for name in ("include_ext", "exclude_dir", "exclude_regex"):
        fields[name] = _toml_list(fields[name])
    return _TEMPLATE % fields


def write_config(project_dir):
    """Write project_dir/.air.toml, never over an existing one; returns the line to print.
    Raises AirError when the file exists, cannot be written, or there is no app to run."""
    path = os.path.join(project_dir, CONFIG_NAME)
    if os.path.lexists(path):
        raise AirError("%s already exists; not overwriting it (remove it first to start over)"
                       % CONFIG_NAME)
    found = _detected(project_dir)
    text = _render(found)
    try:
        with open(path, "x", encoding="utf-8") as f:   # "x": never overwrite
            f.write(text)
    except FileExistsError:
        raise AirError("%s already exists; not overwriting it (remove it first to start over)"
                       % CONFIG_NAME) from None
    except OSError as exc:
        raise AirError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
    what = ("Go" if found.kind == "go" else
            _FRAMEWORK_NAMES.get(found.framework, "plain Python"))
    line = "wrote %s for a %s project (entrypoint: %s)" % (path, what, " ".join(found.entry))
    if found.framework:
        line += "; open http://127.0.0.1:%d once air-std runs" % found.proxy_port
    return line + "; edit it, then run air-std"
