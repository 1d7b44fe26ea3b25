"""Prefixed, coloured log lines per part (main, watcher, build, runner, proxy).

Any thread may log; the handler is set up once by the engine or the CLI
(`setup()`), never at import time. Each part has its own stdlib logger named
`air_std.<part>` so modules just do `logging.getLogger("air_std.watcher")`.

Air prints each part in its own colour (`[color]` in .air.toml); the app's own
output is not touched by this module: the app writes straight to air_std's
stdout/stderr (Air's "raw app log").
"""

import logging
import os
import sys
import time

PARTS = ("main", "watcher", "build", "runner", "proxy")

# Air's colour names (fatih/color); an unknown or empty name means "no colour".
_ANSI = {
    "black": "30", "red": "31", "green": "32", "yellow": "33", "blue": "34",
    "magenta": "35", "cyan": "36", "white": "37",
    "hiblack": "90", "hired": "91", "higreen": "92", "hiyellow": "93",
    "hiblue": "94", "himagenta": "95", "hicyan": "96", "hiwhite": "97",
}
_LEVEL_TAGS = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


def colour_enabled(stream, env=None):
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PartFormatter(logging.Formatter):
    """`part | message`, optionally coloured per part and prefixed with the time."""

    def __init__(self, colours=None, add_time=False, use_colour=False):
        super().__init__()
        self.colours = colours or {}
        self.add_time = add_time
        self.use_colour = use_colour

    def format(self, record):
        part = record.name.rpartition(".")[2] if record.name.startswith("air_std.") else "main"
        prefix = "%-8s| " % part
        if self.add_time:
            prefix = time.strftime("%H:%M:%S ", time.localtime(record.created)) + prefix
        code = _ANSI.get(str(self.colours.get(part, "")).lower().replace("_", ""))
        colour = self.use_colour and code
        message = record.getMessage()
        if "\n" in message:
            # Several lines in one record (the runner logs a build's output a chunk
            # at a time, to keep up with it): each line gets the prefix and the
            # colour, as if logged alone (log viewers reset colours at newlines).
            joint = "\x1b[0m\n\x1b[%sm%s" % (code, prefix) if colour else "\n" + prefix
            message = message.replace("\n", joint)
        text = prefix + _LEVEL_TAGS.get(record.levelno, "") + message
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if colour:
            text = "\x1b[%sm%s\x1b[0m" % (code, text)
        return text


class _MainOnly(logging.Filter):
    """log.main_only: Air silences watcher, build and runner; errors still show."""

    def filter(self, record):
        return record.name in ("air_std", "air_std.main") or record.levelno >= logging.ERROR


_handler = None


def setup(colours=None, add_time=False, main_only=False, silent=False, debug=False, stream=None):
    """Install the one handler on the `air_std` logger (idempotent: replaces the previous one)."""
    global _handler
    stream = sys.stderr if stream is None else stream
    root = logging.getLogger("air_std")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream)
    _handler.setFormatter(PartFormatter(colours, add_time, colour_enabled(stream)))
    if main_only:
        _handler.addFilter(_MainOnly())
    root.addHandler(_handler)
    root.propagate = False
    if silent:
        root.setLevel(logging.CRITICAL + 1)
    else:
        root.setLevel(logging.DEBUG if debug else logging.INFO)
    return _handler


def setup_from_config(cfg, debug=False, stream=None):
    """Apply a loaded Config's [log] and [color] sections."""
    colours = {
        "main": cfg.color.main, "watcher": cfg.color.watcher, "build": cfg.color.build,
        "runner": cfg.color.runner, "proxy": cfg.color.main,
    }
    return setup(colours, cfg.log.time, cfg.log.main_only, cfg.log.silent, debug, stream)


def clear_screen(stream=None, keep_scroll=True):
    """screen.clear_on_rebuild: clear the terminal (and its scroll-back unless keep_scroll)."""
    stream = sys.stdout if stream is None else stream
    if not getattr(stream, "isatty", lambda: False)():
        return
    stream.write("\x1b[2J\x1b[H" if keep_scroll else "\x1b[3J\x1b[2J\x1b[H")
    stream.flush()
