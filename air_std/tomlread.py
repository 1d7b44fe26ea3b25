"""TOML reading for .air.toml files (main thread, at start-up).

`loads(text)` returns the document as a dict and raises TomlDecodeError with
a message, line and column on invalid input. It uses `tomllib` where the
Python has it (3.11+). Older Pythons need a fallback reader (issue 6).
"""

import re


class TomlDecodeError(ValueError):
    """Invalid TOML: `msg` plus 1-based `lineno` and `colno` (0 when unknown)."""

    def __init__(self, msg, lineno=0, colno=0):
        super().__init__("%s (at line %d, column %d)" % (msg, lineno, colno) if lineno else msg)
        self.msg = msg
        self.lineno = lineno
        self.colno = colno


_AT = re.compile(r"^(.*?)\s*\(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)


def loads(text):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        raise TomlDecodeError("no TOML reader for this Python yet")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _AT.match(str(exc))
        if not m:
            raise TomlDecodeError(str(exc)) from None
        if m.group(2):
            raise TomlDecodeError(m.group(1), int(m.group(2)), int(m.group(3))) from None
        lines = text.splitlines() or [""]
        raise TomlDecodeError(m.group(1), len(lines), len(lines[-1]) + 1) from None
