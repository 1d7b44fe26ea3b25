"""The app's response head, as the proxy reads it: the status line (interim
1xx responses skipped), the header fields, and the framing of the body.

Used by the connection threads ("air-proxy-conn-N") through http.client,
which makes an `UpstreamResponse` for each request sent on an app
connection (upstream.py sets it as the connection's response_class) and
reads the body with its own code, from the framing decided here.

What differs from http.client's own HTTPResponse, and why:
- Interim responses are read and dropped. http.client takes any 1xx but 100
  for the final response: a 103 Early Hints would be relayed as the answer,
  and the real one read as the answer to the next request. (Browsers use 103
  only over HTTP/2.) A 101 is left for the handler to refuse: the proxy never
  forwards an Upgrade outside its WebSocket tunnel.
- The fields go into http_fields.Fields, read line by line here, not through
  email's MIME parser (the cost of which is in http_fields' docstring).
- The body's framing follows RFC 9112 section 6.3, which a relay has to get
  right so that one response is never read as part of another: chunked when
  it is the last transfer coding, else the body ends when the app closes; a
  Content-Length that is not digits, or a list of different ones, is an
  invalid response (502) where http.client took "1_0" as 10 and a bad one as
  "until the app closes". Chunk sizes are read as strictly as a browser's
  upload's (request_body). Line folding (obs-fold) is replaced by a space, as
  that section's rules for a proxy allow.
"""

import http.client
import logging
import re

from air_std.http_fields import Fields
from air_std.proxy_http import tokens
from air_std.request_body import BadBody, read_chunk_size

log = logging.getLogger("air_std.proxy")

# Interim (1xx) responses an app may send before its final one.
MAX_INTERIM = 32
MAX_LINE = 65536
MAX_FIELDS = 100
# name ":" value, the name a token (RFC 9110 section 5.1)
_FIELD = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):(.*)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
# in a value, only HTAB of the controls: a CR or NUL relayed could split or cut the browser's head
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class BadReply(http.client.HTTPException):
    """The app's answer breaks HTTP/1.1; str() says how."""


class UpstreamResponse(http.client.HTTPResponse):
    """An app's response; see the module docstring for what differs from
    http.client's. Its attributes are HTTPResponse's."""

    def begin(self):
        if self.headers is not None:  # already read
            return
        version, status, reason = self._read_status()
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _read_fields(self.fp)
        self.chunked, self.length, self.will_close = _framing(
            self.msg, status, self.version, self._method)
        self.chunk_left = None

    def _read_next_chunk_size(self):
        # as strict as for a browser's upload: http.client took "-5" and "0x5"
        # for sizes, and relayed what came next as data
        try:
            return read_chunk_size(self.fp)
        except BadBody as exc:
            self._close_conn()
            raise BadReply(str(exc)) from None
        except ConnectionResetError:  # request_body's words are about a browser
            raise http.client.RemoteDisconnected(
                "the app closed the connection within a chunk size line") from None

    def _read_status(self):
        for _ in range(MAX_INTERIM + 1):
            version, status, reason = super()._read_status()
            if status >= 200 or status == 101:
                return version, status, reason
            _skip_fields(self.fp)
            log.debug("dropped the app's interim response %d %s", status, reason.strip())
        raise BadReply("more than %d interim (1xx) responses" % MAX_INTERIM)


def _head_lines(fp, what):
    """The lines of a head after its status line, up to the empty line, with
    their line ends cut off."""
    for _ in range(MAX_FIELDS + 1):
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("%s field" % what)
        if line in (b"\r\n", b"\n"):
            return
        if not line.endswith(b"\n"):
            raise http.client.RemoteDisconnected("the app closed the connection within its %s's head" % what)
        yield line.rstrip(b"\r\n")
    raise BadReply("the app's %s has more than %d header fields" % (what, MAX_FIELDS))


def _skip_fields(fp):
    for _ in _head_lines(fp, "interim response"):
        pass


def _read_fields(fp):
    pairs = []
    for raw in _head_lines(fp, "response"):
        line = raw.decode("latin-1")
        if line[:1] in (" ", "\t"):  # obs-fold: the value goes on
            if not pairs:
                raise BadReply("a continuation line before any header field: %r" % line[:60])
            name, value = pairs.pop()
            value = (value + " " + line.strip(" \t")).strip(" \t")
        else:
            m = _FIELD.match(line)
            if m is None:
                raise BadReply("malformed header line %r" % line[:60])
            name, value = m.group(1), m.group(2).strip(" \t")
        if _CONTROL.search(value):
            raise BadReply("control character in the value of %s: %r" % (name, value[:60]))
        pairs.append((name, value))
    fields = Fields()
    for name, value in pairs:
        fields.add(name, value)
    return fields


def _framing(fields, status, version, method):
    """(chunked, length, will_close) of a response's body, RFC 9112 section 6.3.
    length None: the body ends when the app closes (will_close is then true)."""
    connection = tokens(fields.get_all("Connection", []))
    if version == 11:
        close = "close" in connection
    else:  # an HTTP/1.0 app keeps the connection only when it says so
        close = "keep-alive" not in connection and "keep-alive" not in fields
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return False, 0, close
    codings = fields.get_all("Transfer-Encoding")
    if codings:
        last = [t.strip().lower() for v in codings for t in v.split(",") if t.strip()][-1:]
        if last == ["chunked"]:
            # with a Content-Length beside it the reply is suspect: no reuse after it
            return True, None, close or "content-length" in fields
        return False, None, True
    lengths = fields.get_all("Content-Length")
    values = {v.strip(" \t") for line in lengths or () for v in line.split(",")}
    if values and values != {""}:  # an empty one says nothing, as no Content-Length
        if len(values) != 1 or not _DIGITS.match(next(iter(values))):
            raise BadReply("invalid Content-Length %r" % ", ".join(lengths)[:60])
        return False, int(values.pop()), close
    return False, None, True
