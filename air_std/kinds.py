"""What a config key may hold: the kinds of value, how a value read from TOML
and a --KEY VALUE string are checked, and Go's duration syntax.

Runs in the main thread while the config loads. `check` takes what the TOML
reader returned, `parse` the text of a command-line flag; both return the
value as the config stores it (arrays become tuples, since the config is
immutable once loaded) or raise ConfigError with one line naming the label
(file and key, or the flag), the value and what would be right.
"""

import re

from air_std.errors import ConfigError

MAX_MS = 2 ** 31 - 1          # ~24.8 days; larger waits overflow some timers
MAX_NS = 2 ** 63 - 1          # Go's time.Duration is an int64 of nanoseconds
_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")
# Digits beyond these cannot change a result (every number here is far below
# 10**30), and int() of a long digit string is slow, or refused on 3.11+.
_MAX_INT_DIGITS = 30
_MAX_FRACTION_DIGITS = 30


def show(value):
    """A value the way the user wrote it (TOML-ish), short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > 200:
        value = value[:200]                       # repr only what is shown
    try:
        text = repr(value)
    except (RecursionError, ValueError):          # a deep table; an int past 3.11's digit limit
        return "(a %s too large to show)" % type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def printable(text):
    """text with every character that would break a one-line message (newline,
    tab, other control characters, Unicode line separators) escaped as Python
    writes it in a string: key and file names come from the user."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def refuse_nul(value, label):
    """The one rule for NUL bytes: no string of the config may hold one.

    Every string becomes a path, a command, an argument or an address, and
    none of those can carry a NUL to the system. Python would refuse it only
    when a process starts, in the runner, long after the config was accepted.
    """
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, str) and "\0" in item:
            raise ConfigError("%s: %s holds a NUL byte (\\0), which no path, command or "
                              "argument can contain" % (label, show(item)))


def _int(text):
    """int(text) for a string of digits (sign allowed); None past _MAX_INT_DIGITS digits."""
    digits = text.lstrip("+-").lstrip("0")
    return None if len(digits) > _MAX_INT_DIGITS else int(text)


def _is_int(value):
    # Python's bool is an int subclass; TOML's true is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class Kind:
    """One kind of value. Subclasses override `accept` and, where the command
    line spells values differently from TOML, `parse`."""

    expected = ""        # what the error message says the value should be
    many = False         # an array: a repeated command-line flag extends it
    annotation = str     # the attribute's type in the config classes

    def error(self, label, value, detail=""):
        return ConfigError("%s: expected %s, got %s%s" % (label, self.expected, show(value), detail))

    def accept(self, value, label):
        """The stored value, or None when `value` has the wrong type."""
        raise NotImplementedError

    def check(self, value, label):
        """A value read from TOML, as stored; ConfigError when it does not fit."""
        stored = self.accept(value, label)
        if stored is None:
            raise self.error(label, value)
        refuse_nul(stored, label)
        return stored

    def parse(self, text, label):
        """A command-line string, converted and then checked like a file value."""
        return self.check(text, label)


class Text(Kind):
    expected = "a string"

    def accept(self, value, label):
        return value if isinstance(value, str) else None


class Choice(Kind):
    """One of a few words; with empty_ok, "" is taken too (it means the default)."""

    def __init__(self, *words, empty_ok=False):
        self.words = words + (("",) if empty_ok else ())
        quoted = ['"%s"' % w for w in words]
        self.expected = " or ".join(quoted) if len(quoted) < 3 else \
            "%s or %s" % (", ".join(quoted[:-1]), quoted[-1])

    def accept(self, value, label):
        return value if isinstance(value, str) and value in self.words else None


class Flag(Kind):
    expected = "true or false"
    annotation = bool
    # The command line also takes 1/0 and yes/no, as Go's flag package does.
    # Go's strconv.ParseBool, which Air's flags use, also takes t and f.
    WORDS = {"true": True, "1": True, "yes": True, "t": True,
             "false": False, "0": False, "no": False, "f": False}

    def accept(self, value, label):
        return value if isinstance(value, bool) else None

    def parse(self, text, label):
        word = text.strip().lower()
        if word not in self.WORDS:
            raise ConfigError("%s: expected true or false (or 1/0, yes/no), got %s" % (label, show(text)))
        return self.WORDS[word]


class Strings(Kind):
    """An array of strings; on the command line, comma-separated."""

    expected = "an array of strings"
    many = True
    annotation = tuple

    def accept(self, value, label):
        return tuple(value) if _strings(value) else None

    def parse(self, text, label):
        return self.check([item.strip() for item in text.split(",") if item.strip()], label)


class Command(Strings):
    """entrypoint: Air takes one string (the program) or an array (program and arguments)."""

    expected = "a string or an array of strings"

    def accept(self, value, label):
        if isinstance(value, str):
            return (value,) if value else ()
        return super().accept(value, label)


class Integer(Kind):
    """A non-negative integer up to `top`; `range_detail` is added to an out-of-range error."""

    annotation = int

    def __init__(self, expected, top, range_detail=""):
        self.expected = expected
        self.top = top
        self.range_detail = range_detail

    def accept(self, value, label):
        if not _is_int(value):
            return None
        if not 0 <= value <= self.top:
            raise self.error(label, value, self.range_detail)
        return value

    def parse(self, text, label):
        if not _INT_TEXT.match(text.strip()):
            raise self.error(label, text)
        number = _int(text.strip())
        if number is None:
            raise self.error(label, text, self.range_detail)
        return self.check(number, label)


class Duration(Kind):
    """kill_delay as Air reads it: a Go duration string or an integer of nanoseconds.
    The value is stored as written, so that --print-config shows it unchanged."""

    expected = "a duration like '500ms' or '2s'"
    annotation = object

    def accept(self, value, label):
        if _is_int(value):
            ns = value
        elif isinstance(value, str):
            ns = parse_go_duration(value, label)
        else:
            return None
        if ns < 0:
            raise self.error(label, value, " (must not be negative)")
        if ns > MAX_NS:
            raise self.error(label, value, " (out of range)")
        return value

    def parse(self, text, label):
        stripped = text.strip()
        if not _INT_TEXT.match(stripped):
            return self.check(stripped, label)
        number = _int(stripped)
        if number is None:
            raise self.error(label, text, " (out of range)")
        return self.check(number, label)


TEXT = Text()
FLAG = Flag()
STRINGS = Strings()
COMMAND = Command()
MILLISECONDS = Integer("an integer (milliseconds)", MAX_MS, " (must be from 0 to %d)" % MAX_MS)
PORT = Integer("a port number (0-65535)", 65535)
DURATION = Duration()
WATCHER = Choice("auto", "poll", "inotify")
# [color] mode and --color: Air's words; "" (Air's default) means auto.
COLOR_MODE = Choice("auto", "always", "never", empty_ok=True)


# ---------------------------------------------------------------- Go durations

_DURATION_UNITS = {
    "ns": 1, "us": 10 ** 3, "\u00b5s": 10 ** 3, "\u03bcs": 10 ** 3,
    "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9,
}
_DURATION_PART = re.compile("([0-9]*)(?:\\.([0-9]*))?([a-z\u00b5\u03bc]*)")


def parse_go_duration(text, key="build.kill_delay"):
    """Go's time.ParseDuration: "500ms", "1m30s", "1.5s", "-2h", "0" -> nanoseconds (int).

    Raises ConfigError naming `key` on anything Go would reject.
    """
    def bad(why=""):
        return DURATION.error(key, text, " (%s)" % why if why else "")

    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad()
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        whole, frac, unit = m.groups()
        if not whole and not frac:
            raise bad()                       # no digits: ".s", "ms", "1h.m"
        if not unit:
            raise bad("missing unit; use ns, us, ms, s, m or h")
        if unit not in _DURATION_UNITS:
            raise bad("unknown unit %r" % unit)
        mult = _DURATION_UNITS[unit]
        if len(whole.lstrip("0")) > _MAX_INT_DIGITS:
            raise bad("out of range")
        total += int(whole or "0") * mult
        if frac:
            # Go truncates below 1ns; digits past the 30th cannot reach a nanosecond
            frac = frac[:_MAX_FRACTION_DIGITS]
            total += int(frac) * mult // 10 ** len(frac)
        pos = m.end()
    if total > MAX_NS + (1 if sign < 0 else 0):
        raise bad("out of range")
    return sign * total


def kill_delay_seconds(value):
    """Air's killDelay(): below 1ms the number counts milliseconds, else it is truncated to ms.

    So 500 -> 0.5 s, 2000 -> 2 s, 15000000000 (ns) -> 15 s, "2s" -> 2 s, "1.5s" -> 1.5 s.
    """
    ns = parse_go_duration(value) if isinstance(value, str) else int(value)
    if ns < 10 ** 6:
        return ns / 1000.0
    return (ns // 10 ** 6) / 1000.0


def compile_patterns(patterns, label):
    """exclude_regex entries compiled with `re`; ConfigError naming the first bad one."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError("%s: %s is not a valid regular expression (%s)"
                              % (label, show(pattern), exc)) from None
        except (RecursionError, OverflowError) as exc:  # re's parser recurses per group
            raise ConfigError("%s: %s is not a usable regular expression (%s)"
                              % (label, show(pattern), "groups nested too deeply"
                                 if isinstance(exc, RecursionError) else exc)) from None
    return tuple(compiled)
