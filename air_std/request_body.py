"""The body of a request a browser sends through the proxy: which framing its
headers announce, and a reader for each framing that checks the bytes as
RFC 9112 defines them (section 6.3 for the length, 7.1 for chunked).

Runs in the connection thread ("air-proxy-conn-N") that forwards the request;
no state is shared. The readers are generators of data pieces, which the
thread sends to the app as they come, so an upload is never held in memory.
A malformed body raises BadBody, whose text is the one-line reason the
browser gets with a 400; a browser that leaves mid-body raises
ConnectionResetError, and one that stops sending hits its connection's timeout.

Why strict: when a proxy and the app disagree on where a body ends, one
connection can carry a request the proxy never saw (request smuggling).
`int(x, 16)` takes "-5", "0x5", "+5" and "1_0" as sizes, and `int(x)` takes
"+5" and "1_0" as a Content-Length; a chunk extension read as data shifts
every later chunk boundary. Extensions and trailer fields are read, checked
and dropped: the app gets the body re-chunked, byte for byte.
"""

import re

from air_std.proxy_http import CHUNK

# 16 hex digits already allow 2**64 - 1 bytes in one chunk.
MAX_SIZE_DIGITS = 16
# Chunk extensions carry nothing a browser sends; this bounds what is read of them.
MAX_EXTENSIONS = 4096
# The whole trailer section, final empty line included.
MAX_TRAILER = 16 * 1024
# Decimal digits of a Content-Length: 10**18 bytes is past any upload.
MAX_LENGTH_DIGITS = 18

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# What may follow the chunk size: *( BWS ";" BWS name [ BWS "=" BWS value ] ) CRLF
_EXTENSIONS = re.compile(
    rb"(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*\r\n\Z" % (_TOKEN, _TOKEN, _QUOTED))
_HEX = re.compile(rb"[0-9A-Fa-f]*")
_FIELD_LINE = re.compile(rb"%s:[\t -~\x80-\xff]*\r\n\Z" % _TOKEN)
_DIGITS = re.compile(r"[0-9]+\Z")
_SIZE_LINE_MAX = MAX_SIZE_DIGITS + MAX_EXTENSIONS + 2


class BadBody(ValueError):
    """The request's body framing breaks HTTP/1.1; str() is a one-line reason."""


def _shown(value, limit=40):
    """A short, one-line repr of what the browser sent, for a reason line."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")  # HTTP's own view of bytes on the wire
    text = repr(value[:limit])
    return text + "..." if len(value) > limit else text


def framing(headers, version="HTTP/1.1"):
    """How the request's body is delimited: ("chunked", None), ("length", n)
    or (None, 0) when it has none. BadBody when the headers are malformed.

    The only transfer coding a browser sends is chunked, alone; with it a
    Content-Length is refused, and so is any Transfer-Encoding in HTTP/1.0
    (RFC 9112 section 6.1 lets a server refuse both: they are how one request
    is made to look like two). Around a Content-Length value only spaces and
    tabs are optional whitespace (RFC 9110 section 5.5); the value itself is
    1*DIGIT.
    """
    encodings = headers.get_all("Transfer-Encoding", [])
    if encodings:
        codings = [t.strip().lower() for v in encodings for t in v.split(",")]
        if codings != ["chunked"]:
            raise BadBody("unsupported Transfer-Encoding %s (only chunked)" % _shown(", ".join(encodings)))
        if headers.get_all("Content-Length"):
            raise BadBody("both Transfer-Encoding and Content-Length")
        if version != "HTTP/1.1":
            raise BadBody("Transfer-Encoding in an %s request" % version)
        return "chunked", None
    lengths = {v.strip(" \t") for v in headers.get_all("Content-Length", [])}
    if not lengths:
        return None, 0
    if len(lengths) > 1:
        raise BadBody("conflicting Content-Length headers")
    value = lengths.pop()
    if not _DIGITS.match(value):
        raise BadBody("Content-Length %s is not a decimal number" % _shown(value))
    if len(value) > MAX_LENGTH_DIGITS:
        raise BadBody("Content-Length has more than %d digits" % MAX_LENGTH_DIGITS)
    length = int(value)
    return ("length", length) if length else (None, 0)


def _browser_left():
    return ConnectionResetError("the browser closed the connection mid-upload")


def read_length(rfile, remaining):
    """Yield the next `remaining` bytes of rfile, as they arrive."""
    while remaining:
        data = rfile.read1(min(CHUNK, remaining))
        if not data:
            raise _browser_left()
        remaining -= len(data)
        yield data


def read_chunked(rfile):
    """Yield the data of a chunked body, chunk by chunk, checking its framing."""
    while True:
        size = read_chunk_size(rfile)
        if size == 0:
            _skip_trailer_section(rfile)
            return
        for piece in read_length(rfile, size):
            yield piece
        end = rfile.read(2)
        if end != b"\r\n":
            if len(end) < 2 and b"\r\n".startswith(end):
                raise _browser_left()
            raise BadBody("chunk data not followed by CRLF")


def read_chunk_size(rfile):
    """The size the next chunk-size line of rfile announces (also read for
    the app's chunked responses, see upstream_response); BadBody if the line
    is malformed (or cut by the read bound), ConnectionResetError if the
    other side left."""
    line = rfile.readline(_SIZE_LINE_MAX)
    complete = line.endswith(b"\n")
    if not complete and len(line) < _SIZE_LINE_MAX:
        raise _browser_left()
    digits = _HEX.match(line).group()
    if not digits:
        raise BadBody("chunk size %s is not hexadecimal digits" % _shown(line))
    if len(digits) > MAX_SIZE_DIGITS:
        raise BadBody("chunk size has more than %d hex digits" % MAX_SIZE_DIGITS)
    if not complete or len(line) - len(digits) - 2 > MAX_EXTENSIONS:
        raise BadBody("chunk extensions longer than %d bytes" % MAX_EXTENSIONS)
    if not _EXTENSIONS.match(line, len(digits)):
        raise BadBody("malformed chunk size line %s" % _shown(line))
    return int(digits, 16)


def _skip_trailer_section(rfile):
    """Read the trailer fields up to the empty line that ends the body."""
    budget = MAX_TRAILER
    while True:
        line = rfile.readline(budget) if budget > 0 else b""
        if not line.endswith(b"\n"):
            if len(line) < budget:
                raise _browser_left()
            raise BadBody("trailer section longer than %d bytes" % MAX_TRAILER)
        budget -= len(line)
        if line == b"\r\n":
            return
        if not _FIELD_LINE.match(line):
            raise BadBody("malformed trailer field %s" % _shown(line))
