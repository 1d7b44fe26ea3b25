"""`air_std run CMD [ARGS...]`: the app's command from the command line, no config needed.

Runs in the main thread, called by cli.py before the engine starts. With no
.air.toml, CMD is the app and there is no build step; what is watched
follows from what CMD is (a Python server: its sources, templates, static
files, settings and .env; anything else: Air's defaults). With an .air.toml,
CMD replaces the app command it names, and its build stays.
"""

import dataclasses
import os
import re
import shutil

from air_std.errors import AirError

__all__ = ["run_overrides", "apply_command", "is_python_app"]

# Python servers whose reload is wanted on these files. The interpreter is
# matched with its version (python3.12) and the usual wrappers by name.
_PYTHON = re.compile(r"^(python(\d+(\.\d+)?)?|pypy3?|uvicorn|gunicorn|flask|hypercorn|"
                     r"daphne|waitress-serve|granian|fastapi)$")
PYTHON_EXTS = ("py", "html", "jinja", "jinja2", "j2", "tmpl", "tpl", "css", "js",
               "toml", "yaml", "yml", "json", "ini", "cfg", "txt")
PYTHON_EXCLUDE_DIRS = ("tmp", "vendor", "testdata", "node_modules", "__pycache__",
                       "venv", ".venv", ".tox", ".git")


def is_python_app(command):
    return bool(_PYTHON.match(os.path.basename(command[0])))


def run_overrides(command):
    """The --KEY overrides that stand in for a config, before the user's own:
    no build step, and the watched set for what CMD is."""
    overrides = [("build.cmd", ""), ("build.bin", "")]
    if is_python_app(command):
        overrides += [("build.include_ext", ",".join(PYTHON_EXTS)),
                      ("build.exclude_dir", ",".join(PYTHON_EXCLUDE_DIRS)),
                      ("build.include_file", ".env")]
    return overrides


def apply_command(cfg, command):
    """cfg with CMD as the app's command; raises AirError when CMD cannot be found."""
    exe = command[0]
    if not exe:
        raise AirError("run: the command is empty; e.g. `air_std run python app.py`")
    if os.sep in exe:
        path = os.path.join(cfg.root_path, exe)
        if not os.path.isfile(path):
            raise AirError("run: %s not found (relative paths start at root %s)" % (exe, cfg.root_path))
    elif shutil.which(exe) is None and not os.path.isfile(os.path.join(cfg.root_path, exe)):
        raise AirError("run: %r is not a program on PATH; give its path, e.g. ./%s" % (exe, exe))
    build = dataclasses.replace(cfg.build, entrypoint=tuple(command), full_bin="")
    return dataclasses.replace(cfg, build=build)
