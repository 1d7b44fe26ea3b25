"""Prefixed, coloured log lines per part (main, watcher, build, runner, proxy).

Any thread may log; the handler is set up once by the engine or the CLI
(`setup()`), never at import time. Each part has its own stdlib logger named
`air_std.<part>` so modules just do `logging.getLogger("air_std.watcher")`.

Air prints each part in its own colour (`[color]` in .air.toml); the app's own
output is not touched by this module: the app writes straight to air_std's
stdout/stderr (Air's "raw app log").

What `[log]` hides follows Air's per-part log functions (runner/util.go,
mainLog, buildLog, runnerLog, watcherLog): `silent` hides every line air_std
writes about itself, `main_only` hides the watcher, build and runner lines
unless `-d` is given. Neither hides the output of the build commands: Air
copies that straight to its stdout, past its loggers, so a failed build
always shows why. Here those records carry `air_output` and always pass,
and so does a crash report (CRITICAL), as Go's fatal errors print in Air.
"""

import logging
import os
import sys
import time

PARTS = ("main", "watcher", "build", "runner", "proxy")

# `--color` and `[color] mode`: Air's values (main.go, runner/config.go preprocess).
COLOUR_MODES = ("auto", "always", "never")
# The colour names Air knows (runner/logger.go colorMap); "raw" means no colour.
AIR_COLOURS = ("red", "green", "yellow", "blue", "magenta", "cyan", "white")
RAW = "raw"
_ANSI = {
    "black": "30", "red": "31", "green": "32", "yellow": "33", "blue": "34",
    "magenta": "35", "cyan": "36", "white": "37",
    # air_std also knows fatih/color's bright names, which Air shows in white
    "hiblack": "90", "hired": "91", "higreen": "92", "hiyellow": "93",
    "hiblue": "94", "himagenta": "95", "hicyan": "96", "hiwhite": "97",
}
# Air's getColor(): a name it does not know is shown in white.
_UNKNOWN = _ANSI["white"]
_LEVEL_TAGS = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}
# Marks a record that carries a build command's output (see the module docstring).
OUTPUT = {"air_output": True}


def _colour_key(name):
    return str(name).strip().lower().replace("_", "")


def colour_code(name):
    """The ANSI code for a [color] name: None for "raw", white for a name Air
    would not know (its getColor falls back to white)."""
    key = _colour_key(name)
    if key == RAW:
        return None
    return _ANSI.get(key, _UNKNOWN)


def unknown_colours(cfg):
    """One warning per [color] entry whose name is unknown (shown in white, as Air does)."""
    known = ", ".join(AIR_COLOURS + (RAW,))
    warnings = []
    for part in ("main", "watcher", "build", "runner"):
        name = getattr(cfg.color, part)
        key = _colour_key(name)
        if key != RAW and key not in _ANSI:
            warnings.append("color.%s: unknown colour %r, shown in white as Air does (known: %s)"
                            % (part, name, known))
    return warnings


def colour_enabled(stream, env=None, mode="auto"):
    """Whether to colour: "always" and "never" decide alone (an explicit choice
    wins over NO_COLOR, as no-color.org allows); "auto" colours a terminal
    unless NO_COLOR is set or TERM is dumb, as fatih/color does for Air.
    FORCE_COLOR, which Air does not read, colours in "auto" off a terminal too."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
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
        code = colour_code(self.colours[part]) if part in self.colours else None
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


class _Shown(logging.Filter):
    """log.silent and log.main_only, as the module docstring says."""

    def __init__(self, main_only, silent, debug):
        super().__init__()
        self.main_only = main_only and not debug  # Air: -d shows every part again
        self.silent = silent

    def filter(self, record):
        if getattr(record, "air_output", False) or record.levelno >= logging.CRITICAL:
            return True
        if self.silent:
            return False
        if self.main_only:
            return record.name.rpartition(".")[2] not in ("watcher", "build", "runner")
        return True


_handler = None
_silent = False


def setup(colours=None, add_time=False, main_only=False, silent=False, debug=False, stream=None,
          colour_mode="auto"):
    """Install the one handler on the `air_std` logger (idempotent: replaces the previous one)."""
    global _handler, _silent
    stream = sys.stderr if stream is None else stream
    root = logging.getLogger("air_std")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream)
    _handler.setFormatter(PartFormatter(colours, add_time, colour_enabled(stream, mode=colour_mode)))
    _handler.addFilter(_Shown(main_only, silent, debug))
    _silent = silent
    root.addHandler(_handler)
    root.propagate = False
    root.setLevel(logging.DEBUG if debug and not silent else logging.INFO)
    return _handler


def setup_from_config(cfg, debug=False, stream=None, colour_mode=None):
    """Apply a loaded Config's [log] and [color] sections. colour_mode: `--color`,
    which wins over [color] mode (None: not given)."""
    colours = {
        "main": cfg.color.main, "watcher": cfg.color.watcher, "build": cfg.color.build,
        "runner": cfg.color.runner, "proxy": cfg.color.main,
    }
    mode = colour_mode or cfg.color.mode or "auto"
    return setup(colours, cfg.log.time, cfg.log.main_only, cfg.log.silent, debug, stream, mode)


def write_raw(text):
    """Write text as it is (Air's start-up banner) where the log goes, unless log.silent."""
    if _silent:
        return
    stream = _handler.stream if _handler is not None else sys.stderr
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


def clear_screen(stream=None, keep_scroll=True):
    """screen.clear_on_rebuild: clear the terminal (and its scroll-back unless keep_scroll)."""
    stream = sys.stdout if stream is None else stream
    if not getattr(stream, "isatty", lambda: False)():
        return
    stream.write("\x1b[2J\x1b[H" if keep_scroll else "\x1b[3J\x1b[2J\x1b[H")
    stream.flush()
