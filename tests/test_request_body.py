"""Tests for air_std/request_body.py: the framing a request's headers announce,
and the readers of a chunked or Content-Length body, on a real buffered
reader over the bytes a browser would send. test_proxy.py sends the same
cases through a running proxy with real sockets.
"""

import email.message
import io

import pytest

from air_std.request_body import (MAX_EXTENSIONS, MAX_TRAILER, BadBody, framing, read_chunked,
                                  read_length)
from seeded import check_cases, sized


def headers(*pairs):
    msg = email.message.Message()
    for name, value in pairs:
        msg[name] = value
    return msg


def reader(data):
    # the handler's rfile is a BufferedReader over the socket; this one is over bytes
    return io.BufferedReader(io.BytesIO(data), buffer_size=8192)


def dechunk(data):
    return b"".join(read_chunked(reader(data)))


# --- framing -------------------------------------------------------------------


@pytest.mark.parametrize("pairs, expected", [
    ((), (None, 0)),
    ((("Content-Length", "0"),), (None, 0)),
    ((("Content-Length", "12"),), ("length", 12)),
    ((("Content-Length", " \t12\t "),), ("length", 12)),
    ((("Content-Length", "12"), ("Content-Length", "12")), ("length", 12)),
    ((("Transfer-Encoding", "chunked"),), ("chunked", None)),
    ((("Transfer-Encoding", " Chunked "),), ("chunked", None)),
])
def test_framing(pairs, expected):
    assert framing(headers(*pairs)) == expected


@pytest.mark.parametrize("pairs, reason", [
    ((("Content-Length", "+5"),), "Content-Length '+5' is not a decimal number"),
    ((("Content-Length", "1_0"),), "Content-Length '1_0' is not a decimal number"),
    ((("Content-Length", "\x0b5"),), "Content-Length '\\x0b5' is not a decimal number"),
    ((("Content-Length", "\u0665"),), "is not a decimal number"),  # an Arabic-Indic 5: int() takes it
    ((("Content-Length", "5"), ("Content-Length", "6")), "conflicting Content-Length headers"),
    ((("Content-Length", "9" * 19),), "Content-Length has more than 18 digits"),
    ((("Transfer-Encoding", "gzip"),), "unsupported Transfer-Encoding 'gzip' (only chunked)"),
    # only chunked, alone: a coding the proxy cannot undo would reach the app unannounced
    ((("Transfer-Encoding", "gzip, chunked"),), "unsupported Transfer-Encoding 'gzip, chunked'"),
    ((("Transfer-Encoding", "chunked, gzip"),), "unsupported Transfer-Encoding 'chunked, gzip'"),
    ((("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")),
     "unsupported Transfer-Encoding 'chunked, chunked'"),
    ((("Transfer-Encoding", "chunked"), ("Content-Length", "5")), "both Transfer-Encoding and Content-Length"),
])
def test_malformed_framing(pairs, reason):
    with pytest.raises(BadBody) as info:
        framing(headers(*pairs))
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_transfer_encoding_in_http10_is_refused():
    with pytest.raises(BadBody, match="Transfer-Encoding in an HTTP/1.0 request"):
        framing(headers(("Transfer-Encoding", "chunked")), "HTTP/1.0")
    assert framing(headers(("Content-Length", "3")), "HTTP/1.0") == ("length", 3)


# --- readers ---------------------------------------------------------------------


def test_read_length_yields_pieces_and_notices_a_browser_that_left():
    assert b"".join(read_length(reader(b"abcdef" * 30000), 180000)) == b"abcdef" * 30000
    with pytest.raises(ConnectionResetError):
        b"".join(read_length(reader(b"abc"), 4))


def test_extensions_and_trailers_are_read_and_dropped():
    body = (b"3;a=b;c;d=\"quoted ; \\\" =\"\r\nabc\r\n"
            b"00000A \t; x = y\r\n0123456789\r\n"
            b"0;end=1\r\nX-Sum: abc\r\nX-Empty:\r\n\r\n")
    assert dechunk(body) == b"abc0123456789"


def test_the_body_ends_at_its_last_chunk():
    r = reader(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
    assert b"".join(read_chunked(r)) == b"abc"
    assert r.read() == b"GET / HTTP/1.1\r\n"  # the next request on the connection is untouched


@pytest.mark.parametrize("body, reason", [
    (b"-5\r\nhello\r\n0\r\n\r\n", "chunk size '-5\\r\\n' is not hexadecimal digits"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "malformed chunk size line '0x5\\r\\n'"),
    (b"+5\r\nhello\r\n0\r\n\r\n", "chunk size '+5\\r\\n' is not hexadecimal digits"),
    (b"1_0\r\n", "malformed chunk size line '1_0\\r\\n'"),
    (b"\r\n", "chunk size '\\r\\n' is not hexadecimal digits"),
    (b"5 \r\nhello\r\n0\r\n\r\n", "malformed chunk size line '5 \\r\\n'"),
    (b"5;\r\nhello\r\n", "malformed chunk size line"),
    (b"5;a=\r\nhello\r\n", "malformed chunk size line"),
    (b"5;a=b c\r\nhello\r\n", "malformed chunk size line"),
    (b"5\rhello\r\n", "malformed chunk size line"),
    (b"1" * 17 + b"\r\n", "chunk size has more than 16 hex digits"),
    (b"5;" + b"e" * (MAX_EXTENSIONS + 1) + b"\r\nhello\r\n", "chunk extensions longer than 4096 bytes"),
    (b"5\r\nhelloX\r\n", "chunk data not followed by CRLF"),
    (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
    (b"0\r\nX: " + b"p" * MAX_TRAILER + b"\r\n\r\n", "trailer section longer than 16384 bytes"),
    (b"0\r\n" + b"X: y\r\n" * (MAX_TRAILER // 6 + 1) + b"\r\n", "trailer section longer than 16384 bytes"),
    (b"0\r\n folded\r\n\r\n", "malformed trailer field ' folded\\r\\n'"),
    (b"0\r\nX: y\n\r\n", "malformed trailer field"),
    (b"0\r\n\n", "malformed trailer field '\\n'"),
])
def test_malformed_chunked_bodies(body, reason):
    with pytest.raises(BadBody) as info:
        dechunk(body)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_longest_allowed_extensions_and_size_pass():
    ext = b";" + b"e" * (MAX_EXTENSIONS - 1)
    assert dechunk(b"0000000000000005" + ext + b"\r\nhello\r\n0\r\n\r\n") == b"hello"


@pytest.mark.parametrize("body", [
    b"", b"5", b"5\r", b"5\r\nhel", b"5\r\nhello", b"5\r\nhello\r", b"5\r\nhello\r\n0\r\n",
    b"5\r\nhello\r\n0\r\nX: y\r\n", b"5;ext", b"0\r\nX: y",
])
def test_a_body_cut_short_is_a_browser_that_left(body):
    with pytest.raises(ConnectionResetError):
        dechunk(body)


# ---- property: any valid chunked body decodes to its data (seeded; see seeded.py) ----

TCHAR = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-"
QUOTED_CHARS = " abcdefghijklmnopqrstuvwxyz;=,"
TRAILER_NAME = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))
TRICKY_BYTES = b"\r\n0123456789abcdefABCDEF;=\" \t\x00\xff"


def _text(rnd, alphabet, low, high):
    return "".join(rnd.choice(alphabet) for _ in range(sized(rnd, low, high)))


def _ext_value(rnd):
    kind = rnd.randrange(3)
    if kind == 0:
        return None
    if kind == 1:
        return _text(rnd, "abcdefghijklmnopqrstuvwxyz0123456789", 1, 8)
    # a quoted string: the characters above, or an escaped quote
    return '"%s"' % "".join(rnd.choice(QUOTED_CHARS) if rnd.random() < 0.8 else '\\"'
                            for _ in range(sized(rnd, 0, 12)))


def _chunk_ext(rnd):
    return [(rnd.choice(["", " ", "\t "]), _text(rnd, TCHAR, 1, 8), _ext_value(rnd))
            for _ in range(sized(rnd, 0, 3))]


def _chunk_data(rnd):
    size = sized(rnd, 1, 300)
    kind = rnd.randrange(3)
    if kind == 0:
        return bytes(rnd.getrandbits(8) for _ in range(size))
    if kind == 1:  # bytes that look like framing: CR, LF, hex digits, ';'
        return bytes(rnd.choice(TRICKY_BYTES) for _ in range(size))
    return bytes([rnd.getrandbits(8)]) * size


def _chunked_case(rnd):
    chunks = [(_chunk_data(rnd), rnd.randint(0, 3), rnd.random() < 0.5, _chunk_ext(rnd))
              for _ in range(sized(rnd, 0, 8))]
    trailers = ["%s: %s" % (_text(rnd, TRAILER_NAME, 1, 10), _text(rnd, PRINTABLE, 0, 20))
                for _ in range(sized(rnd, 0, 3))]
    return chunks, trailers


def _encode(size, pad, upper, ext):
    digits = ("%x" % size).upper() if upper else "%x" % size
    text = "0" * pad + digits
    for ws, name, value in ext:
        text += ws + ";" + ws + name + ("" if value is None else ws + "=" + ws + value)
    return text.encode() + b"\r\n"


def _wire(chunks, trailers):
    wire = b"".join(_encode(len(data), pad, upper, ext) + data + b"\r\n" for data, pad, upper, ext in chunks)
    return wire + b"0\r\n" + b"".join(t.encode() + b"\r\n" for t in trailers) + b"\r\n"


def test_any_valid_chunked_body_decodes_to_its_data():
    def check(case):
        chunks, trailers = case
        assert dechunk(_wire(chunks, trailers)) == b"".join(data for data, _, _, _ in chunks)

    check_cases("test_any_valid_chunked_body_decodes_to_its_data", 5000, _chunked_case, check,
                show=lambda case: "chunks %r, trailers %r\nwire %r" % (case + (_wire(*case),)))
