"""Reading `env_files` (dotenv format) for the app's environment.

Called by the runner thread before each build, app start and post_cmd, so
edits to .env take effect at the next restart. Air's rules: missing files
are skipped, later files override earlier ones, and a variable already set
in air_std's own environment wins over every file.
"""

import logging
import os
import re

log = logging.getLogger("air_std.runner")

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unquote(raw):
    raw = raw.strip()
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return raw[1:end] if end > 0 else raw[1:]
    if raw[:1] == '"':
        out, i = [], 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            else:
                out.append(raw[i])
                i += 1
        return "".join(out)
    # unquoted: an inline comment starts at " #"
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def parse(text):
    """dotenv text -> dict; lines that are not assignments are ignored."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            value = _unquote(m.group(2))
            if "\0" in value:  # no environment can hold it; the app would not start
                log.warning("env file: %s has a NUL byte in its value; skipped", m.group(1))
                continue
            values[m.group(1)] = value
    return values


def load(paths, root, environ=None):
    """The environment for the app: environ plus the files' values it does not set."""
    environ = dict(os.environ if environ is None else environ)
    from_files = {}
    for path in paths:
        full = os.path.join(root, path)
        try:
            with open(full, encoding="utf-8") as f:
                from_files.update(parse(f.read()))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read env file %s: %s", full, exc)
    for key, value in from_files.items():
        environ.setdefault(key, value)
    return environ
