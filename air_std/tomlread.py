"""TOML reading for .air.toml files (main thread, at start-up).

`loads(text)` returns the document as a dict and raises TomlDecodeError with
a message, line and column on invalid input. It uses `tomllib` where the
Python has it (3.11+). Older Pythons (3.8 to 3.10) get `_fallback_loads`, a
small recursive-descent TOML 1.0 reader in this module (air_std uses the
standard library only, so no TOML package can be installed). It returns what
tomllib returns (same types, datetime objects included) and rejects what
tomllib rejects, at the same line and column; tests/test_tomlread.py checks
this differentially. Tests set `_FORCE_FALLBACK = True` to run the fallback on
any Python.

Depth is bounded, on both paths, because both readers recurse once per
nested array or inline table and a few hundred levels end in RecursionError:
the first bracket deeper than MAX_DEPTH is an error at its line and column
(unless the text has an earlier error, which is reported as tomllib would
report it), and so is a document with a value more than MAX_TREE_DEPTH
levels below the top (dotted keys and headers make levels without brackets).
An .air.toml needs three levels.
"""

import re
from datetime import date, datetime, time, timedelta, timezone

_FORCE_FALLBACK = False

MAX_DEPTH = 32        # arrays and inline tables, one inside the other
MAX_TREE_DEPTH = 64   # any value below the document, whatever made the levels
_TOO_DEEP = "arrays and inline tables nested more than %d deep" % MAX_DEPTH


class TomlDecodeError(ValueError):
    """Invalid TOML: `msg` plus 1-based `lineno` and `colno` (0 when unknown)."""

    def __init__(self, msg, lineno=0, colno=0):
        if not msg.isprintable():  # it may quote the document: keep it to one line
            msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)
        super().__init__("%s (at line %d, column %d)" % (msg, lineno, colno) if lineno else msg)
        self.msg = msg
        self.lineno = lineno
        self.colno = colno


_AT = re.compile(r"^(.*?)\s*\(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)


def loads(text):
    """Parse TOML `text` (str) into a dict; raise TomlDecodeError on invalid TOML."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = None
    if _FORCE_FALLBACK or tomllib is None:
        doc = _fallback_loads(text)  # its own depth check, at the same place
    else:
        deep = _too_deep(text)
        if deep is not None:
            _raise_too_deep(tomllib, text, deep)
        try:
            doc = _tomllib_loads(tomllib, text)
        except RecursionError:  # cannot happen after _too_deep; one line if it ever does
            raise TomlDecodeError(_TOO_DEEP) from None
    _check_table_depth(doc)
    return doc


def _tomllib_loads(tomllib, text, before=None):
    """tomllib.loads with its error as a TomlDecodeError. With `before` (a
    (line, column)): only an error placed before it is raised; one at the end
    of the document is not, since `text` was cut there."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _AT.match(str(exc))
        if not m:
            error = TomlDecodeError(str(exc))
        elif m.group(2):
            error = TomlDecodeError(m.group(1), int(m.group(2)), int(m.group(3)))
        elif before is not None:
            return None
        else:
            src = text.replace("\r\n", "\n")
            error = TomlDecodeError(m.group(1), *_where(src, len(src)))
    except ValueError as exc:  # tomllib lets int()'s digit limit (int_max_str_digits) through
        error = TomlDecodeError(str(exc))
    if before is not None and (error.lineno, error.colno) >= before:
        return None
    raise error from None


def _raise_too_deep(tomllib, text, deep):
    """The error for text whose bracket at index `deep` is too deep: the one
    tomllib finds before it, if any (so both paths report the same), else the
    depth at that bracket."""
    where = _where(text.replace("\r\n", "\n"), deep - text.count("\r\n", 0, deep))
    _tomllib_loads(tomllib, text[:deep], before=where)
    raise TomlDecodeError(_TOO_DEEP, *where)


def _where(src, pos):
    """1-based (line, column) of src[pos] in newline-normalised text.

    Past the end it is just after the last character of the last line (a final
    newline does not start a new line), which is where a user looks for an
    unclosed bracket or string.
    """
    if pos >= len(src):
        src = src[:-1] if src.endswith("\n") else src
        pos = len(src)
    start = src.rfind("\n", 0, pos) + 1
    return src.count("\n", 0, pos) + 1, pos - start + 1


# What the depth scan skips: comments, and strings (with their escapes and,
# for the multi-line ones, up to two quotes before the closing three); the
# last branch takes one character, so that a match never fails.
_SCAN_SKIP = re.compile(r'''
    \#[^\n]*
  | """(?:[^"\\]|\\[\s\S]|"(?!""))*(?:"""\"{0,2}|\\?\Z)
  | \'\'\'[\s\S]*?(?:\'\'\'\'{0,2}|\Z)
  | "(?:[^"\\\n]|\\[^\n])*(?:"|(?=\n)|\\|\Z)
  | \'[^\'\n]*(?:\'|(?=\n)|\Z)
  | [\s\S]
''', re.X)
_SCAN_STOP = re.compile(r"[#\"\'\[\]{}]")


def _too_deep(text):
    """Index of the first '[' or '{' nested deeper than MAX_DEPTH, or None.

    A lexical scan that agrees with TOML on valid text: brackets in comments
    and strings do not count. Table headers count too (they close on their line).
    """
    depth = 0
    pos = 0
    while True:
        m = _SCAN_STOP.search(text, pos)
        if m is None:
            return None
        pos = m.start()
        char = text[pos]
        if char in "#\"\'":
            pos = _SCAN_SKIP.match(text, pos).end()
            continue
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return pos
        elif depth:
            depth -= 1
        pos += 1


def _check_table_depth(doc):
    """TomlDecodeError when a value sits more than MAX_TREE_DEPTH levels below
    the top: walked without recursion, since the depth is not known yet."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise TomlDecodeError("tables and arrays nested more than %d deep (dotted keys "
                                  "like a.b.c, or [a.b.c] headers, count too)" % MAX_TREE_DEPTH)
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))


# ---- the fallback reader -------------------------------------------------

_WS = re.compile(r"[ \t]*")
_WS_NL = re.compile(r"[ \t\n]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-\"'")
# Control characters TOML forbids in comments and strings: all but tab, and in
# multi-line strings all but tab and newline.
_CTRL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CTRL_ML = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Runs of characters a basic string copies as they are.
_BASIC_RUN = re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]*')
_ML_BASIC_RUN = re.compile(r'[^"\\\x00-\x08\x0b-\x1f\x7f]*')
# Up to two quotes right before the closing three of a multi-line string are content.
_EXTRA_QUOTES = {'"': re.compile('"{0,2}'), "'": re.compile("'{0,2}")}
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_HEX = frozenset("0123456789abcdefABCDEF")

# A value is the longest prefix these match; what follows is the caller's
# business (so `07` reads as 0 and then fails on `7`, like tomllib).
_TIME_RE = r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]+))?"
_DATETIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"(?:[Tt ]" + _TIME_RE + r"(?:([Zz])|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))?)?")
_TIME = re.compile(_TIME_RE)
_NUMBER = re.compile(r"""
    0x(?P<hex>[0-9A-Fa-f](?:_?[0-9A-Fa-f])*)
  | 0o(?P<oct>[0-7](?:_?[0-7])*)
  | 0b(?P<bin>[01](?:_?[01])*)
  | [+-]?(?:0|[1-9](?:_?[0-9])*)
    (?P<float>(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?)
""", re.X)
_SPECIAL_FLOAT = re.compile(r"[+-]?(?:inf|nan)")


def _fallback_loads(text):
    """The TOML 1.0 reader used where tomllib is missing: same result, same errors."""
    return _Reader(text).document()


def _dotted(key):
    return ".".join(k if _BARE_KEY.fullmatch(k) else '"%s"' % k for k in key)


class _Reader:
    """One parse: `pos` walks `src`; every method leaves it after what it read.

    Table rules use object identity: `_frozen` holds the inline tables and
    arrays written as values (nothing may be added to them), `_defined` the
    tables a [header] or a finished section's dotted keys defined (no [header]
    may open them again and no dotted key from elsewhere may extend them), and
    `_pending` the tables dotted keys touched in the current section. Every
    object whose id is stored stays in the result, so the ids stay unique.
    """

    def __init__(self, text):
        # TOML allows reading CRLF as LF everywhere, strings included.
        self.src = text.replace("\r\n", "\n")
        self.pos = 0
        self.root = self.table = {}
        self._frozen = set()
        self._defined = set()
        self._pending = set()
        self._depth = 0  # arrays and inline tables open around pos

    def nest(self):
        """Enter an array or inline table; past MAX_DEPTH an error at its bracket."""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self.fail(_TOO_DEEP)

    def fail(self, msg, pos=None):
        line, col = _where(self.src, self.pos if pos is None else pos)
        raise TomlDecodeError(msg, line, col)

    def skip(self, regex):
        m = regex.match(self.src, self.pos)
        self.pos = m.end()
        return m.group()

    def peek(self, n=1):
        return self.src[self.pos:self.pos + n]

    def skip_comment(self):
        if self.peek() == "#":
            end = self.src.find("\n", self.pos)
            end = len(self.src) if end < 0 else end
            self.check_chars(_CTRL, self.pos + 1, end, "a comment")
            self.pos = end

    def check_chars(self, regex, start, end, where):
        bad = regex.search(self.src, start, end)
        if bad:
            self.fail("control character %r is not allowed in %s" % (bad.group(), where), bad.start())

    def document(self):
        while True:
            self.skip(_WS)
            char = self.peek()
            if not char:
                return self.root
            if char == "\n":
                self.pos += 1
                continue
            if char in _KEY_START:
                self.key_value_line()
            elif char == "[":
                self.header()
            elif char != "#":
                self.fail("expected a key, a [table] header or a comment")
            self.skip(_WS)
            self.skip_comment()
            if self.peek() not in ("", "\n"):
                self.fail("expected the end of the line after a statement")

    # -- keys and tables --

    def key(self):
        parts = [self.key_part()]
        self.skip(_WS)
        while self.peek() == ".":
            self.pos += 1
            self.skip(_WS)
            parts.append(self.key_part())
            self.skip(_WS)
        return parts

    def key_part(self):
        bare = _BARE_KEY.match(self.src, self.pos)
        if bare:
            self.pos = bare.end()
            return bare.group()
        if self.peek() == "'":
            return self.literal_string(1)
        if self.peek() == '"':
            return self.basic_string(1)
        self.fail("expected a key (letters, digits, '-', '_' or a quoted string)")

    def key_value(self):
        key = self.key()
        if self.peek() != "=":
            self.fail("expected '=' after the key %s" % _dotted(key))
        self.pos += 1
        self.skip(_WS)
        return key, self.value()

    def key_value_line(self):
        key, value = self.key_value()
        table = self.table
        for i, part in enumerate(key[:-1]):
            child = table.setdefault(part, {})
            if not isinstance(child, dict) or id(child) in self._frozen or id(child) in self._defined:
                self.fail("cannot set %s: %s is %s" % (_dotted(key), _dotted(key[:i + 1]), self.kind(child)))
            self._pending.add(id(child))
            table = child
        if key[-1] in table:
            self.fail("duplicate key %s" % _dotted(key))
        table[key[-1]] = value

    def header(self):
        many = self.peek(2) == "[["
        self.pos += 2 if many else 1
        self.skip(_WS)
        key = self.key()
        # Dotted keys of the section just ended defined their tables for good.
        self._defined |= self._pending
        self._pending = set()
        table = self.root
        for i, part in enumerate(key):
            last = i == len(key) - 1
            child = table.get(part)
            if child is None:
                child = table[part] = [] if many and last else {}
            elif isinstance(child, list) and not last and id(child) not in self._frozen:
                child = child[-1]  # [a.b] after [[a]] means b in the last a
            wanted = list if many and last else dict
            if (not isinstance(child, wanted) or id(child) in self._frozen
                    or (last and not many and id(child) in self._defined)):
                self.fail("cannot open %s: %s is %s" % (
                    ("[[%s]]" if many else "[%s]") % _dotted(key), _dotted(key[:i + 1]), self.kind(child)))
            table = child
        if many:
            self.table = {}
            table.append(self.table)
        else:
            self._defined.add(id(table))
            self.table = table
        close = "]]" if many else "]"
        if self.peek(len(close)) != close:
            self.fail("expected '%s' at the end of the header" % close)
        self.pos += len(close)

    def kind(self, value):
        if isinstance(value, (dict, list)):
            if id(value) in self._frozen:
                return "an inline table" if isinstance(value, dict) else "an array"
            if isinstance(value, list):
                return "an array of tables"
            return "a table defined elsewhere" if id(value) in self._defined else "a table"
        names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
        return names.get(type(value), "a date/time")

    # -- values --

    def value(self):
        src, start = self.src, self.pos
        char = self.peek()
        if char == '"' or char == "'":
            quotes = 3 if self.peek(3) == char * 3 else 1
            return (self.basic_string if char == '"' else self.literal_string)(quotes)
        if char == "[":
            return self.array()
        if char == "{":
            return self.inline_table()
        for word, result in (("true", True), ("false", False)):
            if src.startswith(word, start):
                self.pos += len(word)
                return result
        m = _DATETIME.match(src, start)
        if m:
            try:
                result = _to_datetime(m.groups())
            except ValueError:
                self.fail("invalid date or date-time %r" % m.group())
            self.pos = m.end()
            return result
        m = _TIME.match(src, start)
        if m:
            self.pos = m.end()
            hour, minute, second, frac = m.groups()
            return time(int(hour), int(minute), int(second), _micro(frac))
        m = _NUMBER.match(src, start) or _SPECIAL_FLOAT.match(src, start)
        if m:
            text = m.group().replace("_", "")
            try:
                if m.re is _SPECIAL_FLOAT or m.group("float"):
                    result = float(text)
                else:
                    base = 16 if m.group("hex") else 8 if m.group("oct") else 2 if m.group("bin") else 10
                    result = int(text[2:] if base != 10 else text, base)
            except ValueError:  # more digits than int() accepts (CPython's int_max_str_digits)
                self.fail("integer with too many digits")
            self.pos = m.end()
            return result
        self.fail("expected a value (string, number, true/false, date/time, [array] or {inline table})")

    def array(self):
        self.nest()
        self.pos += 1
        items = []
        self._frozen.add(id(items))
        self.skip_blank()
        while self.peek() != "]":
            items.append(self.value())
            self.skip_blank()
            if self.peek() == ",":
                self.pos += 1
                self.skip_blank()
            elif self.peek() != "]":
                self.fail("expected ',' or ']' in the array")
        self.pos += 1
        self._depth -= 1
        return items

    def skip_blank(self):
        """Whitespace, newlines and comments, as allowed between array items."""
        while True:
            before = self.pos
            self.skip(_WS_NL)
            self.skip_comment()
            if self.pos == before:
                return

    def inline_table(self):
        self.nest()
        self.pos += 1
        result = {}
        self._frozen.add(id(result))
        made_by_dots = set()  # sub-tables dotted keys made here; only those may grow
        self.skip(_WS)
        if self.peek() == "}":
            self.pos += 1
            self._depth -= 1
            return result
        while True:
            key, value = self.key_value()
            table = result
            for part in key[:-1]:
                child = table.get(part)
                if child is None:
                    child = table[part] = {}
                    made_by_dots.add(id(child))
                elif not isinstance(child, dict) or id(child) not in made_by_dots:
                    self.fail("cannot set %s: %s is %s" % (_dotted(key), part, self.kind(child)))
                table = child
            if key[-1] in table:
                self.fail("duplicate key %s in the inline table" % _dotted(key))
            table[key[-1]] = value
            self.skip(_WS)
            if self.peek() == "}":
                self.pos += 1
                self._depth -= 1
                return result
            if self.peek() != ",":
                self.fail("expected ',' or '}' in the inline table (which must fit on one line)")
            self.pos += 1
            self.skip(_WS)

    # -- strings --

    def basic_string(self, quotes):
        multi = quotes == 3
        self.pos += quotes
        if multi and self.peek() == "\n":
            self.pos += 1  # a newline right after the opening quotes is not content
        out = []
        while True:
            out.append(self.skip(_ML_BASIC_RUN if multi else _BASIC_RUN))
            char = self.peek()
            if not char:
                self.fail("unterminated string")
            if char == '"':
                if not multi:
                    self.pos += 1
                    return "".join(out)
                if self.peek(3) == '"""':
                    self.pos += 3
                    return "".join(out) + self.skip(_EXTRA_QUOTES['"'])
                out.append(char)
                self.pos += 1
            elif char == "\\":
                out.append(self.escape(multi))
            else:
                self.fail("control character %r is not allowed in a string" % char)

    def escape(self, multi):
        src, start = self.src, self.pos
        code = src[start + 1:start + 2]
        if multi and code in (" ", "\t", "\n"):
            # Line-ending backslash: drop it, the newline and the blanks after.
            self.pos = start + 1
            self.skip(_WS)
            if self.pos < len(src) and src[self.pos] != "\n":
                self.fail("only whitespace may follow a line-ending backslash")
            self.skip(_WS_NL)
            return ""
        self.pos = start + 2
        if code in ("u", "U"):
            size = 4 if code == "u" else 8
            digits = src[self.pos:self.pos + size]
            if len(digits) != size or not _HEX.issuperset(digits):
                self.fail("expected %d hex digits after \\%s" % (size, code))
            self.pos += size
            point = int(digits, 16)
            if 0xD800 <= point <= 0xDFFF or point > 0x10FFFF:
                self.fail("\\%s%s is not a Unicode scalar value" % (code, digits))
            return chr(point)
        if code not in _ESCAPES:
            self.fail("invalid escape '\\%s' in a string; write '\\\\' for a backslash "
                      "or use a 'literal string'" % code)
        return _ESCAPES[code]

    def literal_string(self, quotes):
        start = self.pos + quotes
        if quotes == 3 and self.src.startswith("\n", start):
            start += 1  # a newline right after the opening quotes is not content
        end = self.src.find("'" * quotes, start)
        if end < 0:
            self.fail("unterminated string", len(self.src))
        self.check_chars(_CTRL if quotes == 1 else _CTRL_ML, start, end, "a string")
        self.pos = end + quotes
        return self.src[start:end] + (self.skip(_EXTRA_QUOTES["'"]) if quotes == 3 else "")


def _micro(frac):
    # TOML keeps at least millisecond precision; digits past microseconds are dropped.
    return int(frac[:6].ljust(6, "0")) if frac else 0


def _to_datetime(groups):
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = groups
    if hour is None:
        return date(int(year), int(month), int(day))
    tz = None
    if zulu:
        tz = timezone.utc
    elif sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                    _micro(frac), tzinfo=tz)
