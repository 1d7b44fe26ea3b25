"""Reading `env_files` (dotenv format) for the app's environment.

Called by the runner thread before each build, app start and post_cmd, so
edits to .env take effect at the next restart (configwatch.py restarts the
app when one is edited). Air's rules: missing files are skipped, later files
override earlier ones, and a variable already set in air_std's own
environment wins over every file.

Only regular files of at most MAX_ENV_BYTES are read, opened without
blocking: an entry naming a FIFO would otherwise wait for a writer forever,
and the runner with it (then no restart and no shutdown). Anything else is
one warning line naming the file and the app starts without it.
"""

import logging
import os
import re

from air_std import smallfile

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


# A .env of a real project is a few hundred bytes; the bound keeps a wrong entry
# (a log, /dev/zero) from filling memory.
MAX_ENV_BYTES = 256 * 1024


class NotReadable(Exception):
    """An env file that is not a regular file, or too large: the message says which."""


def _check(st, full):
    what = smallfile.file_kind(st)
    if what is not None:
        raise NotReadable("%s is %s, not a regular file; env_files must name .env files" % (full, what))
    if st.st_size > MAX_ENV_BYTES:
        raise NotReadable("%s has %d bytes; an env file may have at most %d"
                          % (full, st.st_size, MAX_ENV_BYTES))


def read_text(full):
    """The file's text: a regular file, at most MAX_ENV_BYTES (smallfile.py). Raises
    FileNotFoundError, NotReadable, OSError or UnicodeDecodeError; never blocks."""
    data = smallfile.read_bounded(full, MAX_ENV_BYTES, lambda st: _check(st, full))
    if len(data) > MAX_ENV_BYTES:  # it grew while read
        raise NotReadable("%s has more than %d bytes; an env file may have at most that"
                          % (full, MAX_ENV_BYTES))
    return data.decode("utf-8")


def check(paths, root):
    """Before the app first runs (and before a reloaded config is used):
    ConfigError naming the entry when an existing env file is not a regular
    file of at most MAX_ENV_BYTES. Missing files are fine (Air skips them)."""
    from air_std.errors import ConfigError
    from air_std.kinds import printable  # file names come from the user: one line, always
    for path in paths:
        full = os.path.join(root, path)
        try:
            _check(os.stat(full), full)
        except FileNotFoundError:
            continue
        except NotReadable as exc:
            raise ConfigError(printable("env_files entry %r: %s" % (path, exc))) from None
        except OSError as exc:
            raise ConfigError(printable("env_files entry %r: cannot read %s: %s"
                                        % (path, full, exc.strerror or exc))) from None


def load(paths, root, environ=None):
    """The environment for the app: environ plus the files' values it does not set."""
    environ = dict(os.environ if environ is None else environ)
    from_files = {}
    for path in paths:
        full = os.path.join(root, path)
        try:
            from_files.update(parse(read_text(full)))
        except FileNotFoundError:
            continue
        except NotReadable as exc:
            log.warning("env file skipped: %s", exc)
        except UnicodeDecodeError as exc:
            log.warning("env file skipped: %s is not UTF-8 text (byte %d)", full, exc.start)
        except OSError as exc:
            log.warning("env file skipped: cannot read %s: %s", full, exc.strerror or exc)
    for key, value in from_files.items():
        environ.setdefault(key, value)
    return environ
