"""The head of a request a browser sends through the proxy: the request line
and the header fields, read and checked as RFC 9112 (sections 2 to 5) and
RFC 9110 (section 5) define them.

Runs in the connection thread ("air-proxy-conn-N") that reads the request;
no state is shared.

Why strict: the proxy forwards what it parsed and the app parses it again,
and wherever two parsers read the same bytes differently, a request can
carry something the proxy never saw. The stdlib's reader is lenient: it
ends a line at a bare CR (one header becomes two), joins folded lines, and
keeps NUL and other control characters. Here anything outside the grammar
is refused, with a one-line reason: 400, or 431 for a field section over
its bounds, or 505 for an HTTP version other than 1.x. What is accepted is
what RFC 9112 lets a server accept: empty lines before the request line,
and a bare LF as a line end (the proxy writes CRLF when it forwards).
"""

import re

from air_std.http_fields import Fields

# One line of the head, CRLF included (the stdlib's bound too).
MAX_LINE = 65536
# Header fields in one request (the stdlib's bound too).
MAX_FIELDS = 100
# The whole field section.
MAX_FIELD_SECTION = 1024 * 1024
# Empty lines tolerated before the request line (RFC 9112 section 2.2).
MAX_EMPTY_LINES = 4

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# method SP request-target SP HTTP-version; the target is visible ASCII only
# (browsers percent-encode the rest; http.client could not send it on anyway)
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r?\n\Z" % _TOKEN)
_FIELD_LINE = re.compile(rb"(%s):[ \t]*([^\r\n]*?)[ \t]*\r?\n\Z" % _TOKEN)
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")  # no control character but HTAB
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# uri-host [ ":" port ]: an IP literal in brackets, or a reg-name / IPv4 address
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?\Z")


class BadHead(ValueError):
    """A request head the proxy refuses; `status` is the answer's code and
    str() a one-line reason."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


class RequestHead:
    """A checked request head: method, target, version ("HTTP/1.0" or
    "HTTP/1.1"), `line` (the request line as text) and `headers`, an
    http_fields.Fields (an http.client.HTTPMessage with fast lookups)."""

    def __init__(self, method, target, version, line, headers):
        self.method = method
        self.target = target
        self.version = version
        self.line = line
        self.headers = headers


def shown(value, limit=60):
    """A short one-line repr of bytes a browser sent, for a reason line."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")  # HTTP's own view of bytes on the wire
    text = repr(value[:limit])
    return text + "..." if len(value) > limit else text


def read_head(first_line, rfile):
    """The RequestHead that starts with `first_line` (already read, at most
    MAX_LINE bytes) and goes on in rfile. BadHead if it breaks the grammar
    or the bounds; ConnectionResetError if the browser leaves halfway."""
    line = first_line
    for _ in range(MAX_EMPTY_LINES):
        if line not in (b"\r\n", b"\n"):
            break
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadHead(414, "request line longer than %d bytes" % MAX_LINE)
    method, target, version = _request_line(line)
    headers = _fields(rfile)
    hosts = headers.get_all("Host", [])
    if len(hosts) > 1 or (version == "HTTP/1.1" and not hosts):
        raise BadHead(400, "a request needs exactly one Host header, got %d" % len(hosts))
    if hosts and not _HOST.match(hosts[0]):
        raise BadHead(400, "invalid Host header %s" % shown(hosts[0]))
    return RequestHead(method, target, version, line.decode("latin-1").rstrip("\r\n"), headers)


def _request_line(line):
    if not line.endswith(b"\n"):
        raise ConnectionResetError("the browser closed the connection within the request line")
    m = _REQUEST_LINE.match(line)
    if m is None:
        if _CONTROL.search(line.rstrip(b"\r\n")):
            raise BadHead(400, "control character in the request line %s" % shown(line))
        if any(b > 0x7E for b in line):
            raise BadHead(400, "non-ASCII byte in the request line %s (percent-encode it)" % shown(line))
        raise BadHead(400, "malformed request line %s" % shown(line))
    method, target, major, minor = m.groups()
    if major != b"1":
        raise BadHead(505, "HTTP version %s.%s is not supported; use HTTP/1.1"
                      % (major.decode(), minor.decode()))
    version = "HTTP/1.0" if minor == b"0" else "HTTP/1.1"  # 1.x reads as 1.1 (RFC 9112 section 2.3)
    return method.decode("ascii"), target.decode("ascii"), version


def _fields(rfile):
    headers = Fields()
    count = 0
    total = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadHead(431, "header line longer than %d bytes" % MAX_LINE)
        total += len(line)
        if total > MAX_FIELD_SECTION:
            raise BadHead(431, "header fields longer than %d bytes in all" % MAX_FIELD_SECTION)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line.endswith(b"\n"):
            raise ConnectionResetError("the browser closed the connection within the request's head")
        if line[:1] in (b" ", b"\t"):
            raise BadHead(400, "folded header line (obs-fold) %s" % shown(line))
        m = _FIELD_LINE.match(line)
        if m is None:
            if b"\r" in line.rstrip(b"\r\n"):
                raise BadHead(400, "bare CR in the header line %s" % shown(line))
            raise BadHead(400, "malformed header line %s" % shown(line))
        name, value = m.groups()
        if not _FIELD_VALUE.match(value):
            raise BadHead(400, "control character in the value of %s: %s" % (name.decode(), shown(value)))
        count += 1
        if count > MAX_FIELDS:
            raise BadHead(431, "more than %d header fields" % MAX_FIELDS)
        headers.add(name.decode("ascii"), value.decode("latin-1"))
