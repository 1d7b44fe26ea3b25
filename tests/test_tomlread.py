"""Tests for air_std.tomlread: the fallback TOML reader, checked against tomllib.

On Python 3.11+ every comparison is differential: the fallback must return
exactly what tomllib returns (same types, same key order) and reject exactly
what it rejects, at the same line and column. On 3.8 to 3.10 there is no
tomllib; the differential tests skip and the fallback-only tests (hand-written
expectations, serialise-then-parse round trips) still run.
"""

import math
import re
import struct
from datetime import date, datetime, time, timedelta, timezone

import pytest

from air_std import tomlread
from air_std.tomlread import TomlDecodeError, _fallback_loads
from conftest import CORPUS, corpus_files
from seeded import check_cases, integer, sized

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

needs_tomllib = pytest.mark.skipif(
    tomllib is None, reason="tomllib (Python 3.11+) is the reference for differential tests")

VALID_FILES = corpus_files()
INVALID_FILES = corpus_files("invalid")
# tomllib's line and column for each invalid file of the .air.toml corpus.
INVALID_AT = {"004": (6, 13), "060": (9, 30), "086": (15, 13)}


def read_text(path):
    # Like tomllib.load: UTF-8, no newline translation (CRLF files stay CRLF).
    return path.read_bytes().decode("utf-8")


def outcome(parse, text):
    try:
        return ("ok", parse(text))
    except TomlDecodeError as exc:
        assert exc.msg and exc.lineno >= 1 and exc.colno >= 1, exc
        return ("error", exc.lineno, exc.colno)


def reference(text):
    """tomllib's outcome, through the public wrapper (positions parsed from its message)."""
    assert not tomlread._FORCE_FALLBACK
    return outcome(tomlread.loads, text)


def same(a, b, ordered=True):
    """Deep equality that also checks types (True is not 1), key order, NaN and -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if (list(a) != list(b)) if ordered else (set(a) != set(b)):
            return False
        return all(same(a[k], b[k], ordered) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y, ordered) for x, y in zip(a, b))
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b) and math.copysign(1, a) == math.copysign(1, b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (datetime, time)):
        return a == b and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)
    return a == b


def assert_agrees(text):
    """Both accept `text` with identical results, or both reject it at the same line and column."""
    expected, got = reference(text), outcome(_fallback_loads, text)
    if expected[0] == "ok" and got[0] == "ok":
        assert same(expected[1], got[1]), (text, expected, got)
    else:
        assert expected == got, text


# ---- the corpus -------------------------------------------------------------

@needs_tomllib
@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_corpus_file_parses_like_tomllib(path, corpus):
    text = read_text(path)
    expected = tomllib.loads(text)
    assert same(expected, _fallback_loads(text))


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_corpus_file_is_rejected_where_tomllib_rejects_it(path, corpus):
    with pytest.raises(TomlDecodeError) as info:
        _fallback_loads(read_text(path))
    assert (info.value.lineno, info.value.colno) == INVALID_AT[path.name[:3]]
    if tomllib is not None:
        assert_agrees(read_text(path))


def test_corpus_is_there(corpus):
    assert len(VALID_FILES) >= 100 and len(INVALID_FILES) == 3, CORPUS


def test_every_corpus_file_parses_with_the_fallback(corpus):
    # Runs on every Python, 3.8 included (the exact comparison with tomllib is above).
    docs = {path.name[:3]: _fallback_loads(read_text(path)) for path in VALID_FILES}
    assert docs["088"] == {}  # the empty file
    assert docs["110"]["build"]["bin"] == "tmp\\sudjoo.exe"  # CRLF file, escaped backslash
    assert docs["069"]["build"]["windows"]["entrypoint"] == ["tmp\\graft.exe", "dev", "notify"]
    assert docs["026"]["build"]["cmd"].startswith("CGO_ENABLED=0 go build -gcflags=all=\"-N -l\" -ldflags")


# ---- hand-written cases -------------------------------------------------------

UTC = timezone.utc
VALID = [
    # tables, arrays of tables, dotted keys and headers
    ("root = 1\n[build]\ncmd = 'go'\n[build.windows]\nbin = 'x'",
     {"root": 1, "build": {"cmd": "go", "windows": {"bin": "x"}}}),
    ("[ a . b ]\n[a]\nc = 1", {"a": {"b": {}, "c": 1}}),
    ("[a.b.c]\n[a]\nb.x = 1", {"a": {"b": {"c": {}, "x": 1}}}),
    ("[a]\nb.c = 1\n[a.b.d]", {"a": {"b": {"c": 1, "d": {}}}}),
    ("a.b.c = 1\na.b.d = 2\na.e = 3", {"a": {"b": {"c": 1, "d": 2}, "e": 3}}),
    ("[[r]]\nx = 1\n[r.s]\ny = 1\n[[r]]\n[r.s]\ny = 2\n[[r.t]]\n[[r.t]]",
     {"r": [{"x": 1, "s": {"y": 1}}, {"s": {"y": 2}, "t": [{}, {}]}]}),
    ("[[build.rules]]\nname = 'a'\n[[build.rules]]\nname = 'b'",
     {"build": {"rules": [{"name": "a"}, {"name": "b"}]}}),
    # bare and quoted keys
    ('"" = 1\n\'lit key\' = 2\n"a.b" = 3\n1234 = 4\n-_ = 5\ntrue = 6\n"\\u00e9" = 7',
     {"": 1, "lit key": 2, "a.b": 3, "1234": 4, "-_": 5, "true": 6, "\u00e9": 7}),
    ("a . 'b.c' . \"d\" = 1", {"a": {"b.c": {"d": 1}}}),
    # strings
    (r'a = "\b\t\n\f\r\"\\ \u00e9 \U0001F600"', {"a": "\b\t\n\f\r\"\\ \u00e9 \U0001F600"}),
    (r"bin = 'tmp\main.exe'", {"bin": "tmp\\main.exe"}),
    ('a = "tab\there"', {"a": "tab\there"}),
    ('a = """\nfirst\n  second"""', {"a": "first\n  second"}),
    ('a = """one \\\n     two \\   \n\n   three"""', {"a": "one two three"}),
    ('a = """say ""hi"" """', {"a": 'say ""hi"" '}),
    ('a = """x""""', {"a": 'x"'}), ('a = """x"""""', {"a": 'x""'}),
    ("a = '''\nC:\\dir\\\n'quoted' '''", {"a": "C:\\dir\\\n'quoted' "}),
    ("a = '''x''''", {"a": "x'"}), ("a = ''''''''", {"a": "''"}),
    ('a = ""\nb = \'\'', {"a": "", "b": ""}),
    # integers
    ("a = +99\nb = -17\nc = 1_000\nd = 0\ne = -0\nf = +0",
     {"a": 99, "b": -17, "c": 1000, "d": 0, "e": 0, "f": 0}),
    ("h = 0xDEAD_beef\no = 0o755\nb = 0b1101\nz = 0x00", {"h": 0xDEADBEEF, "o": 0o755, "b": 13, "z": 0}),
    ("big = 123456789012345678901234567890", {"big": 123456789012345678901234567890}),
    # floats
    ("a = 3.14\nb = -0.01\nc = 5e+22\nd = 1e06\ne = -2E-2\nf = 224_617.445_991\ng = -0.0\nh = 1e400",
     {"a": 3.14, "b": -0.01, "c": 5e22, "d": 1e6, "e": -0.02, "f": 224617.445991, "g": -0.0, "h": math.inf}),
    ("a = inf\nb = +inf\nc = -inf\nd = nan\ne = +nan\nf = -nan",
     {"a": math.inf, "b": math.inf, "c": -math.inf, "d": math.nan, "e": math.nan, "f": -math.nan}),
    # booleans, arrays, inline tables
    ("a = true\nb = false", {"a": True, "b": False}),
    ("a = [\n  'go', # comment\n  # another\n  \"tpl\",\n]\n"
     "b = []\nc = [ [1, 2], ['x'], [] ]\nd = [1, 'two', 3.0]",
     {"a": ["go", "tpl"], "b": [], "c": [[1, 2], ["x"], []], "d": [1, "two", 3.0]}),
    ("a = { x = 1, y.z = 2, y.w = { } }\nb = {}\nc = [{ n = 1 }, {n=2}]",
     {"a": {"x": 1, "y": {"z": 2, "w": {}}}, "b": {}, "c": [{"n": 1}, {"n": 2}]}),
    # comments, blank lines, CRLF, indentation, odd spacing
    ("# top\r\n\r\n[build] # t\r\n\tcmd=\"go\"\r\n  delay =1000 # ms\r\n",
     {"build": {"cmd": "go", "delay": 1000}}),
    ('a = """x\r\ny"""\r\n', {"a": "x\ny"}),
    ("#:schema x\n", {}), ("", {}), (" \t\n\n", {}), ("a = 1 #", {"a": 1}),
    # dates and times
    ("a = 1979-05-27T07:32:00Z\nb = 1979-05-27t00:32:00-07:00\nc = 1979-05-27 07:32:00.5\nd = 1979-05-27\n"
     "e = 07:32:00\nf = 00:32:00.1234567\ng = 1979-05-27T00:32:00.999999+07:30\nh = 2000-02-29T00:00:00z",
     {"a": datetime(1979, 5, 27, 7, 32, tzinfo=UTC),
      "b": datetime(1979, 5, 27, 0, 32, tzinfo=timezone(timedelta(hours=-7))),
      "c": datetime(1979, 5, 27, 7, 32, 0, 500000), "d": date(1979, 5, 27), "e": time(7, 32),
      "f": time(0, 32, 0, 123456),
      "g": datetime(1979, 5, 27, 0, 32, 0, 999999, tzinfo=timezone(timedelta(hours=7, minutes=30))),
      "h": datetime(2000, 2, 29, tzinfo=UTC)}),
]

# (text, (line, column)): tomllib's position for each (checked differentially on 3.11+).
INVALID = [
    ("a = 1\na = 2", (2, 6)), ("[a]\n[a]", (2, 3)), ("[a]\nb = 1\n[a.b]", (3, 5)),
    ("a = {}\n[a]", (2, 3)), ("a = {b=1}\na.c = 2", (2, 8)), ("a = [1]\n[[a]]", (2, 4)),
    ("[a.b]\nx = 1\n[a]\nb.c = 1", (4, 8)), ("a.b = 1\n[a]", (2, 3)), ("[[a]]\n[a]", (2, 3)),
    ("[a]\n[[a]]", (2, 4)), ("a = [{}]\n[a.b]", (2, 5)), ("[a]\nb.c = 1\n[a.b]", (3, 5)),
    ("a = 1\n[a.b]", (2, 5)), ("a.b = 1\na.b.c = 2", (2, 10)), ("a = {b = {}, b.c = 1}", (1, 21)),
    ("a = {b.c = 1, b = 3}", (1, 20)), ("a = {b = 1, b = 2}", (1, 18)),
    # strings and escapes
    ('bin = "tmp\\main.exe"', (1, 13)), ('a = "\\x41"', (1, 8)), ('a = "\\u12"', (1, 8)),
    ('a = "\\uD800"', (1, 12)), ('a = "\\U00110000"', (1, 16)), ('a = "\\', (1, 7)),
    ('a = "x\ny"', (1, 7)), ('a = """x\\  y"""', (1, 12)), ("a = 'open", (1, 10)), ('a = "open', (1, 10)),
    ('a = """x', (1, 9)), ("a = '''x", (1, 9)), ('"""a""" = 1', (1, 3)), ('a = "x" "y"', (1, 9)),
    ("a = '''x''''''", (1, 14)), ('a = """x""""""', (1, 14)), ('a = "\\ "', (1, 8)),
    # control characters
    ('a = "x\x01"', (1, 7)), ("a = 1 # \x7f", (1, 9)), ("a = 1\rb = 2", (1, 6)), ("a = 'x\x00'", (1, 7)),
    ("a = '''\x0c'''", (1, 8)), ("# \x00\na = 1", (1, 3)), ("\ufeffa = 1", (1, 1)),
    # arrays and inline tables
    ("a = [1, 2", (1, 10)), ('a = ["go", "tmp" "tmpl"]', (1, 18)), ("a = [1,,2]", (1, 8)),
    ("a = [,]", (1, 6)), ("a = [1\n2]", (2, 1)), ("a = {b = 1", (1, 11)), ("a = {b = 1,}", (1, 12)),
    ("a = {b = 1,\nc = 2}", (1, 12)),
    ("a = {\n}", (1, 6)),
    # numbers, booleans, dates
    ("a = 012", (1, 6)), ("a = 00", (1, 6)), ("a = -01", (1, 7)), ("a = 1__2", (1, 6)), ("a = _1", (1, 5)),
    ("a = 1_", (1, 6)), ("a = 0x", (1, 6)), ("a = +0x1", (1, 7)), ("a = 0X1", (1, 6)), ("a = 1.", (1, 6)),
    ("a = .5", (1, 5)), ("a = 1e", (1, 6)), ("a = 1.e5", (1, 6)), ("a = inf1", (1, 8)),
    ("a = -infinity", (1, 9)),
    ("a = NaN", (1, 5)), ("a = tru", (1, 5)), ("a = True", (1, 5)), ("a = 2023-02-30", (1, 5)),
    ("a = 0000-01-01", (1, 5)), ("a = 1979-05-27T07:32", (1, 15)), ("a = 24:00:00", (1, 7)),
    ("a = 1979-05-27T07:32:00+24:00", (1, 24)), ("a = 1979-05-27T07:32:60", (1, 15)),
    # statements and headers
    ("a = 1 b = 2", (1, 7)), ("a = ", (1, 5)), ("a =\nb = 1", (1, 4)), ("= 1", (1, 1)), ("a", (1, 2)),
    ("[a", (1, 3)), ("[[a]", (1, 4)), ("[]", (1, 2)), ("a. = 1", (1, 4)), ("[a]]", (1, 4)), ("[a b]", (1, 4)),
    ("[ [a]]", (1, 3)), ("a = 1\n\n[table]\nkey = \"value\" junk", (4, 15)), ("a = [1,\n", (1, 8)),
]


@pytest.mark.parametrize("text, expected", VALID, ids=[t[:30] for t, _ in VALID])
def test_valid(text, expected):
    assert same(_fallback_loads(text), expected, ordered=False)
    if tomllib is not None:
        assert_agrees(text)


@pytest.mark.parametrize("text, where", INVALID, ids=[t[:30] for t, _ in INVALID])
def test_invalid(text, where):
    with pytest.raises(TomlDecodeError) as info:
        _fallback_loads(text)
    assert (info.value.lineno, info.value.colno) == where
    assert str(info.value) == "%s (at line %d, column %d)" % ((info.value.msg,) + where)
    if tomllib is not None:
        assert_agrees(text)


def test_messages_say_what_is_wrong():
    cases = {
        'bin = "tmp\\main.exe"': "invalid escape '\\m'",
        "a = 1\na = 2": "duplicate key a",
        "[build]\n[build]": "cannot open [build]",
        "a = [1, 2": "expected ',' or ']'",
        'a = "x': "unterminated string",
        "a = {b = 1}\na.c = 2": "a is an inline table",
    }
    for text, part in cases.items():
        with pytest.raises(TomlDecodeError, match=re.escape(part)):
            _fallback_loads(text)


def test_loads_uses_the_fallback_when_forced(monkeypatch):
    monkeypatch.setattr(tomlread, "_FORCE_FALLBACK", True)
    assert tomlread.loads("[build]\ncmd = 'go'\n") == {"build": {"cmd": "go"}}
    with pytest.raises(TomlDecodeError, match="invalid escape") as info:
        tomlread.loads('bin = "tmp\\main.exe"')
    assert (info.value.lineno, info.value.colno) == (1, 13)


def test_loads_works_on_this_python():
    # tomllib on 3.11+, the fallback below; the same answer either way.
    assert tomlread.loads("a = [1, 2] # c\n") == {"a": [1, 2]}
    with pytest.raises(TomlDecodeError) as info:
        tomlread.loads("a = 1\n[a]\n")
    assert (info.value.lineno, info.value.colno) == (2, 3)


def test_rejects_bytes_like_tomllib():
    with pytest.raises(TypeError):
        _fallback_loads(b"a = 1")


def test_an_integer_too_long_for_int_is_a_decode_error():
    # CPython limits int() to 4300 digits; tomllib lets that ValueError through, loads() must not.
    text = "a = " + "1" * 5000
    with pytest.raises(TomlDecodeError) as info:
        _fallback_loads(text)
    assert (info.value.lineno, info.value.colno) == (1, 5)
    with pytest.raises(TomlDecodeError):
        tomlread.loads(text)


# ---- property-based: generated documents ------------------------------------------

BARE = re.compile(r"[A-Za-z0-9_-]+\Z")
CTRL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")        # not allowed raw in one-line strings
CTRL_ML = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\r]")   # nor (CR too: CRLF would be folded) in '''...'''
SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
COMMENT_CHARS = "abc xyz#=[]{}\"'\\.,\t\u00e9\u2028\U0001F600"
TRICKY = "\"'\\\n\r\t \x00\x01\x1f\x7f#=[]{}.,ab\u00e9\u2028\U0001F600"

# Generated data (seeded; see seeded.py): what a TOML document can hold.
SPECIAL_CHARS = "\x00\x7f\x85\xa0\u2028\u2029\ufeff\ufffe\uffff\U0001F600\U0010FFFF"
KEY_NAMES = ["a", "b", "build", "x-y", "1", "_", "true"]
SPECIAL_FLOATS = [0.0, -0.0, math.inf, -math.inf, math.nan, math.copysign(math.nan, -1), 5e-324, -5e-324,
                  2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 0.1, 0.5,
                  1.0, -1.0, 1e16, 9007199254740993.0, 1e-7, 1e22, -123456789.125]
MAX_OFFSET_MIN = 23 * 60 + 59


def any_char(rnd):
    """Any code point but a surrogate (a str that UTF-8 cannot carry)."""
    pick = rnd.random()
    if pick < 0.4:
        return chr(rnd.randint(0x20, 0x7E))
    if pick < 0.55:
        return chr(rnd.choice([rnd.randrange(0x20), 0x7F]))
    if pick < 0.65:
        return rnd.choice(SPECIAL_CHARS)
    if pick < 0.75:
        return chr(rnd.randint(0x80, 0x7FF))
    if pick < 0.9:
        code = rnd.randint(0x800, 0xFFFF - 0x800)
        return chr(code + 0x800 if code >= 0xD800 else code)
    return chr(rnd.randint(0x10000, 0x10FFFF))


def gen_text(rnd):
    if rnd.random() < 0.5:
        return "".join(any_char(rnd) for _ in range(sized(rnd, 0, 12)))
    return "".join(rnd.choice(TRICKY) for _ in range(sized(rnd, 0, 12)))


def gen_key(rnd):
    return rnd.choice(KEY_NAMES) if rnd.random() < 0.5 else gen_text(rnd)


def gen_float(rnd):
    pick = rnd.random()
    if pick < 0.3:
        return rnd.choice(SPECIAL_FLOATS)
    if pick < 0.6:  # any bit pattern: subnormals, huge, NaNs with payloads
        return struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
    if pick < 0.8:
        return rnd.uniform(-1e6, 1e6)
    if pick < 0.9:
        return float(integer(rnd, -2 ** 70, 2 ** 70))
    return rnd.choice([1, -1]) * rnd.random() * 10.0 ** rnd.randint(-300, 300)


def gen_date(rnd):
    year = rnd.choice([1, 1970, 2000, 2024, 9999]) if rnd.random() < 0.2 else rnd.randint(1, 9999)
    month = rnd.randint(1, 12)
    last = 31 if month == 12 else (date(year, month + 1, 1) - timedelta(days=1)).day
    return date(year, month, last if rnd.random() < 0.2 else rnd.randint(1, last))


def gen_time(rnd):
    micro = 0 if rnd.random() < 0.3 else rnd.choice([rnd.randint(0, 999999), 999999, 1, 500000])
    return time(rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59), micro)


def gen_datetime(rnd):
    d, t = gen_date(rnd), gen_time(rnd)
    pick = rnd.randrange(3)
    tz = None if pick == 0 else UTC if pick == 1 else timezone(
        timedelta(minutes=integer(rnd, -MAX_OFFSET_MIN, MAX_OFFSET_MIN)))
    return datetime(d.year, d.month, d.day, t.hour, t.minute, t.second, t.microsecond, tzinfo=tz)


SCALARS = [lambda rnd: rnd.random() < 0.5, lambda rnd: integer(rnd, -2 ** 70, 2 ** 70), gen_float,
           gen_text, gen_datetime, gen_date, gen_time]


def gen_value(rnd, leaves=None, depth=0):
    """A scalar, or lists and tables (up to 4 items) of values, with at most 8 leaves."""
    leaves = [8] if leaves is None else leaves
    if depth >= 5 or leaves[0] <= 1 or rnd.random() < 0.5:
        leaves[0] -= 1
        return rnd.choice(SCALARS)(rnd)
    n = min(sized(rnd, 0, 4), leaves[0])
    if rnd.random() < 0.5:
        return [gen_value(rnd, leaves, depth + 1) for _ in range(n)]
    return {gen_key(rnd): gen_value(rnd, leaves, depth + 1) for _ in range(n)}


def gen_document_data(rnd):
    """Up to 5 top-level keys, each a value or an array of 1 or 2 tables (up to 3 keys each)."""
    data = {}
    for _ in range(rnd.randint(0, 5) if rnd.random() < 0.1 else rnd.randint(1, 5)):
        if rnd.random() < 0.5:
            data[gen_key(rnd)] = gen_value(rnd)
        else:
            data[gen_key(rnd)] = [{gen_key(rnd): gen_value(rnd) for _ in range(sized(rnd, 0, 3))}
                                  for _ in range(rnd.randint(1, 2))]
    return data


class TomlWriter:
    """Writes Python data as TOML text, choosing styles at random (the point is variety):
    [tables] or dotted keys or inline tables, [[arrays of tables]], four string kinds with
    escapes and line continuations, integer bases, float spellings, comments, blanks, CRLF."""

    def __init__(self, rnd):
        self.rnd = rnd

    def chance(self, p):
        return self.rnd.random() < p

    def ws(self):
        return self.rnd.choice(["", " ", " ", "  ", "\t"])

    def comment(self):
        return "#" + "".join(self.rnd.choice(COMMENT_CHARS) for _ in range(self.rnd.randrange(6)))

    def gap(self):
        """Whatever may separate array items: blanks, newlines, comments."""
        return self.rnd.choice([self.ws(), self.ws() + "\n" + self.ws(),
                                self.ws() + self.comment() + "\n" + self.ws()])

    def document(self, data):
        lines = []
        self.section(data, [], None, lines)
        text = "\n".join(lines) + ("\n" if self.chance(0.5) else "")
        mode = self.rnd.choice(["lf", "lf", "crlf", "mixed"])
        if mode == "crlf":
            return text.replace("\n", "\r\n")
        if mode == "mixed":
            return "".join(c + "\r\n" if self.chance(0.5) else c + "\n" for c in text.split("\n")[:-1]) \
                + text.split("\n")[-1]
        return text

    def section(self, table, path, header, lines, force=False):
        body, subs = [], []
        for k, v in table.items():
            if isinstance(v, dict) and self.chance(0.4):
                subs.append((k, v, False))
            elif isinstance(v, dict) and v and self.chance(0.5):
                body.extend(self.dotted([k], v))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and self.chance(0.6):
                subs.append((k, v, True))
            else:
                body.append(self.key([k]) + self.ws() + "=" + self.ws() + self.value(v))
        if header is not None and (force or body or not subs or self.chance(0.5)):
            lines.append(self.ws() + header + self.end_of_line())
        for statement in body:
            if self.chance(0.1):
                lines.append(self.rnd.choice(["", self.ws(), self.ws() + self.comment()]))
            lines.append(self.ws() + statement + self.end_of_line())
        for k, v, many in subs:
            name = self.ws() + self.key(path + [k]) + self.ws()
            if many:
                for item in v:
                    self.section(item, path + [k], "[[%s]]" % name, lines, force=True)
            else:
                self.section(v, path + [k], "[%s]" % name, lines)

    def end_of_line(self):
        return self.ws() + self.comment() if self.chance(0.2) else self.ws()

    def dotted(self, path, table):
        """`a.b.c = v` statements for a non-empty table (its sub-tables dotted or inline)."""
        out = []
        for k, v in table.items():
            if isinstance(v, dict) and v and self.chance(0.6):
                out.extend(self.dotted(path + [k], v))
            else:
                out.append(self.key(path + [k]) + self.ws() + "=" + self.ws() + self.value(v))
        return out

    def key(self, path):
        return (self.ws() + "." + self.ws()).join(self.key_part(k) for k in path)

    def key_part(self, k):
        if BARE.match(k) and self.chance(0.8):
            return k
        if "'" not in k and not CTRL.search(k) and self.chance(0.4):
            return "'%s'" % k
        return '"%s"' % self.escaped(k, multiline=False)

    def value(self, v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return self.integer(v)
        if isinstance(v, float):
            return self.float(v)
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, (datetime, date, time)):
            return self.datetime(v)
        if isinstance(v, list):
            if not v:
                return "[" + self.gap() + "]"
            items = [self.gap() + self.value(x) + self.gap() for x in v]
            return "[" + ",".join(items) + ("," + self.gap() if self.chance(0.3) else "") + "]"
        pairs = []
        for k, x in v.items():
            if isinstance(x, dict) and x and self.chance(0.4):
                pairs.extend(self.dotted([k], x))
            else:
                pairs.append(self.key([k]) + self.ws() + "=" + self.ws() + self.value(x))
        return "{" + self.ws() + (self.ws() + "," + self.ws()).join(pairs) + self.ws() + "}"

    def digits(self, text):
        """Single underscores between some digits of every digit run."""
        def spread(m):
            return "".join(d + ("_" if self.chance(0.15) else "") for d in m.group()[:-1]) + m.group()[-1]
        return re.sub(r"[0-9A-Fa-f]+", spread, text) if self.chance(0.3) else text

    def integer(self, n):
        base = self.rnd.choice(["dec", "dec", "x", "o", "b"]) if n >= 0 else "dec"
        if base == "dec":
            return ("+" if n >= 0 and self.chance(0.2) else "") + self.digits(str(n))
        body = "0" * self.rnd.randrange(3) + format(n, base)
        body = "".join(c.upper() if self.chance(0.5) else c for c in body)
        return "0" + base + self.digits(body)

    def float(self, f):
        if math.isnan(f):
            return "-nan" if math.copysign(1, f) < 0 else self.rnd.choice(["nan", "+nan"])
        if math.isinf(f):
            return "-inf" if f < 0 else self.rnd.choice(["inf", "+inf"])
        text = self.rnd.choice([repr(f), "%.17e" % f, ("%.17e" % f).upper()])
        text = re.sub(r"[0-9]+", lambda m: self.digits(m.group()), text)
        return ("+" if f >= 0 and math.copysign(1, f) > 0 and self.chance(0.2) else "") + text

    def string(self, s):
        kinds = ["basic", "ml_basic"]
        if "'" not in s and not CTRL.search(s):
            kinds.append("literal")
        if "'''" not in s and not CTRL_ML.search(s):
            kinds.append("ml_literal")
        kind = self.rnd.choice(kinds)
        if kind == "literal":
            return "'%s'" % s
        if kind == "ml_literal":
            return "'''" + ("\n" if s.startswith("\n") or self.chance(0.3) else "") + s + "'''"
        if kind == "basic":
            return '"%s"' % self.escaped(s, multiline=False)
        body = self.escaped(s, multiline=True)
        return '"""' + ("\n" if body.startswith("\n") or self.chance(0.3) else "") + body + '"""'

    def escaped(self, s, multiline):
        out, raw_quote_before = [], False
        for c in s:
            code = ord(c)
            if c == '"':
                # Two raw quotes in a row could end a multi-line string early.
                piece = '"' if multiline and not raw_quote_before and self.chance(0.6) else '\\"'
            elif c == "\\":
                piece = "\\\\"
            elif c == "\n" and multiline and self.chance(0.8):
                piece = "\n"
            elif c == "\t" and self.chance(0.7):
                piece = "\t"
            elif code < 0x20 or code == 0x7F:
                piece = SHORT_ESCAPES[c] if c in SHORT_ESCAPES and self.chance(0.7) else "\\u%04x" % code
            elif self.chance(0.1):
                piece = "\\u%04X" % code if code <= 0xFFFF and self.chance(0.5) else "\\U%08x" % code
            else:
                piece = c
            raw_quote_before = piece == '"'
            if multiline and piece[0] not in " \t\n" and self.chance(0.08):
                # Line-ending backslash: it eats the newline and the blanks up to `piece`.
                piece = "\\" + self.ws() + "\n" + self.rnd.choice(["", "\n", " \n\t"]) + self.ws() + piece
            out.append(piece)
        return "".join(out)

    def datetime(self, v):
        if isinstance(v, datetime):
            text = self.datetime(v.date()) + self.rnd.choice("Tt ") + self.datetime(v.time())
        elif isinstance(v, date):
            return "%04d-%02d-%02d" % (v.year, v.month, v.day)
        else:
            text = "%02d:%02d:%02d" % (v.hour, v.minute, v.second)
            if v.microsecond or self.chance(0.2):
                frac = "%06d" % v.microsecond
                if self.chance(0.2):
                    frac += "987"  # digits past microseconds are dropped
                elif self.chance(0.5):
                    frac = frac.rstrip("0") or "0"
                text += "." + frac
        offset = v.utcoffset()
        if offset is None:
            return text
        if not offset:
            return text + self.rnd.choice(["Z", "z", "+00:00", "-00:00"])
        minutes = int(offset.total_seconds()) // 60
        return text + "%s%02d:%02d" % ("-" if minutes < 0 else "+", abs(minutes) // 60, abs(minutes) % 60)


def gen_document(rnd):
    """(data, the TOML text a TomlWriter made of it)."""
    data = gen_document_data(rnd)
    return data, TomlWriter(rnd).document(data)


def show_document(doc):
    return "data %r\ntext %r" % doc


def test_generated_documents_round_trip():
    def check(doc):
        data, text = doc
        assert same(_fallback_loads(text), data, ordered=False)

    check_cases("test_generated_documents_round_trip", 3000, gen_document, check, show_document)


@needs_tomllib
def test_generated_documents_parse_like_tomllib():
    check_cases("test_generated_documents_parse_like_tomllib", 3000, gen_document,
                lambda doc: assert_agrees(doc[1]), show_document)


MUTATION_CHARS = "[]{}=,.\"'#\\\n\r\t _-+:0123456789xobeEtrufalsinZz\x00\x1f\x7f\u00e9"
# Pieces of TOML syntax too, so that mutations and garbage also make longer tokens.
TOKEN_PIECES = ['"""', "'''", '""', "''", "\\u", "\\U", "[[", "]]", "0x", "0o", "0b", "1e", "inf", "nan",
                "true", "2024-02-29", "T12:00:00", "12:00:00", ".5", "+01:00", "a.b", " = ", "\\\n", "\r\n",
                "# \x7f", "{ }"]


def gen_token(rnd):
    return rnd.choice(MUTATION_CHARS) if rnd.random() < 0.5 else rnd.choice(TOKEN_PIECES)


def gen_mutated_document(rnd):
    """A generated document with 1 to 3 edits: characters or tokens put in, taken
    out or replaced, the text cut short, lines doubled, dropped or swapped."""
    text = gen_document(rnd)[1]
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randint(0, len(text))
        op = rnd.choice(["insert", "delete", "replace", "truncate", "dup_line", "drop_line", "swap_lines"])
        if op in ("insert", "replace"):
            text = text[:i] + gen_token(rnd) + text[i + (op == "replace"):]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "truncate":
            text = text[:i]
        else:
            lines = text.split("\n")
            j = rnd.randrange(len(lines))
            k = rnd.randrange(len(lines))
            if op == "dup_line":
                lines.insert(k, lines[j])
            elif op == "drop_line":
                del lines[j]
            else:
                lines[j], lines[k] = lines[k], lines[j]
            text = "\n".join(lines)
    return text


@needs_tomllib
def test_mutated_documents_are_rejected_exactly_when_tomllib_rejects():
    check_cases("test_mutated_documents_are_rejected_exactly_when_tomllib_rejects", 4000,
                gen_mutated_document, assert_agrees)


def gen_garbage(rnd):
    return rnd.choice(["", "a = ", "a = [", "[a]\nb = {"]) + "".join(
        gen_token(rnd) for _ in range(sized(rnd, 0, 25)))


@needs_tomllib
def test_garbage_is_rejected_exactly_when_tomllib_rejects():
    check_cases("test_garbage_is_rejected_exactly_when_tomllib_rejects", 6000, gen_garbage, assert_agrees)


# Short documents over a few keys: they hit the table rules (redefinition,
# dotted keys versus headers, arrays of tables, inline tables) much more often.
TABLE_KEYS = ["a", "b", "a.b", "b.c", "a.b.c", "a . 'b'", '"a".c', "a.b.c.d"]
TABLE_VALUES = ["1", "{}", "{ x = 1 }", "{ x.y = 1, x.z = 2 }", "[]", "[{}]", "[[1]]"]


def gen_statement(rnd):
    kind = rnd.randrange(3)
    key = rnd.choice(TABLE_KEYS)
    if kind == 0:
        return "[%s]" % key
    if kind == 1:
        return "[[%s]]" % key
    return "%s = %s" % (key, rnd.choice(TABLE_VALUES))


@needs_tomllib
def test_table_rules_match_tomllib():
    check_cases("test_table_rules_match_tomllib", 10000,
                lambda rnd: "\n".join(gen_statement(rnd) for _ in range(sized(rnd, 0, 8))), assert_agrees)


# ---- the depth bound ------------------------------------------------------------

DEEP = "[" * 40 + "]" * 40
DEPTH_CASES = [
    "a = " + DEEP,
    "a = " + "{b=" * 40 + "1" + "}" * 40,
    "a = [\n" + "[\n" * 40,                      # unclosed, deep: the depth is the first error
    "x = 1 y\na = " + DEEP,                      # an error before the deep bracket comes first
    "a = '[[[[[[' # [[[[[[\nb = \"\"\"[[\\\"\"\"[[\"\"\"\"\nc = " + "[" * 32 + "]" * 32,
    "s = '''[[[[[[''''\nc = " + "[" * 33 + "]" * 33,
    "[[t]]\n[t.u]\nv = " + "[" * 31 + "{}" + "]" * 31,
    "a = [\r\n" + "[\r\n" * 40,
]


@needs_tomllib
@pytest.mark.parametrize("text", DEPTH_CASES)
def test_the_depth_bound_is_met_at_the_same_place_on_both_paths(text):
    assert_agrees(text)


@pytest.mark.parametrize("text, where", list(zip(DEPTH_CASES, [
    (1, 37), (1, 101), (33, 1), (1, 7), None, (2, 37), None, (33, 1)])))
def test_the_depth_bound_on_the_fallback(text, where):
    # Runs on every Python: 32 levels load; deeper is an error at the 33rd bracket,
    # unless an earlier error comes first.
    got = outcome(_fallback_loads, text)
    assert got[0] == "ok" if where is None else got == ("error",) + where


def test_deep_nesting_is_one_error_not_a_recursion_error(monkeypatch):
    for forced in (False, True):
        monkeypatch.setattr(tomlread, "_FORCE_FALLBACK", forced)
        with pytest.raises(TomlDecodeError, match="nested more than 32 deep") as info:
            tomlread.loads("a = " + "[" * 5000 + "]" * 5000)
        assert (info.value.lineno, info.value.colno) == (1, 37)
        with pytest.raises(TomlDecodeError, match="nested more than 64 deep"):
            tomlread.loads("a.%s = 1" % ".".join(["b"] * 5000))
        assert tomlread.loads("a = %s1%s" % ("[" * 32, "]" * 32))["a"]
