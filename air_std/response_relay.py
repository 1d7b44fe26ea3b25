"""The relay of one app response to the browser: the status line and headers
(hop-by-hop ones dropped, Via added), then the body, streamed as it arrives,
with the live-reload script tag put into HTML pages (decoded from
gzip/deflate first, see inject.py).

Runs in the connection thread ("air-proxy-conn-N") that forwarded the
request; a relay object lives for one response.

Bounds: an HTML page announced with a Content-Length up to HTML_BUFFER_MAX
is held until it ends, so that it goes out with a corrected Content-Length;
once what is held passes HTML_BUFFER_MAX (a compressed page that inflates
past it, say) the page streams on instead. Everything else streams from the
first byte, so the proxy never holds more than about HTML_BUFFER_MAX plus
one read per response, and a browser that has gone is noticed at the next
write, which ends the reading from the app.
"""

import http.client
import logging
import re
import zlib

from air_std.inject import DECODABLE, HTMLInjector, StreamDecoder, script_tag
from air_std.proxy_http import CHUNK, HOP_BY_HOP, AppGone, tokens

log = logging.getLogger("air_std.proxy")

# A page announced with a Content-Length up to this size is injected in one
# piece and sent with a corrected Content-Length; longer or chunked pages stream.
HTML_BUFFER_MAX = 4 * 1024 * 1024
# The charset parameter of a Content-Type: token or quoted string.
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)', re.IGNORECASE)


class ResponseRelay:
    """Sends one `UpstreamResponse` to the browser.

    `handler` is the browser connection's BaseHTTPRequestHandler: the relay
    writes through its send_response_only / send_header / end_headers /
    log_request and wfile, reads its request's command, path and version,
    and sets its close_connection when a body must end with the connection
    (an HTTP/1.0 browser and no length). `generation` is the app start number
    the script tag of an HTML page carries. With `head_only`, `resp` answers
    a GET sent for the browser's HEAD: the browser gets the head the GET
    would get (its Content-Length counts the tag) and no body.

    send() raises AppGone when the app breaks off the response; `head_sent`
    then says whether the browser already has a status line (if not, the
    handler can still answer with its 502 page). `body_unread` is true when
    the relay stopped before the end of the app's body.

    `on_read_all` is called once the app's response has been read to its end
    (a short body raises AppGone instead), always before the browser is sent
    its last byte: the app's connection can then be idle again by the time the
    browser, having the whole answer, asks its next question, perhaps on
    another of its connections. (Given back after it, that request could find
    the pool empty and open a second connection, which an app serving one
    connection at a time, http.server's HTTPServer with HTTP/1.1, leaves
    unanswered while it waits on the first.)
    """

    def __init__(self, handler, resp, generation, head_only=False, on_read_all=None):
        self.handler = handler
        self.resp = resp
        self.generation = generation
        self.head_only = head_only
        self._on_read_all = on_read_all
        self.head_sent = False
        self.body_unread = False
        self._length = resp.length  # as announced; resp.length counts down as the body is read
        ctype = resp.getheader("Content-Type") or ""
        self._ctype = ctype.split(";")[0].strip().lower()
        # the charset read here: email's get_content_charset() parses every
        # parameter, and cost a page more than the injection itself
        match = _CHARSET.search(ctype)
        self._charset = match.group(1) if match else None
        self._encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()

    def injects(self):
        """True if this response is a page the script goes into (as a GET)."""
        status = self.resp.status
        # a 206 is a slice of the page: a tag put into it would land mid-file
        return (self._ctype == "text/html" and self._encoding in DECODABLE
                and status >= 200 and status not in (204, 206, 304))

    def send(self):
        resp = self.resp
        drop = HOP_BY_HOP | tokens(resp.msg.get_all("Connection", []))
        headers = [(k, v) for k, v in resp.msg.items() if k.lower() not in drop]
        headers.append(("Via", ", ".join(resp.msg.get_all("Via", []) + ["1.1 air_std"])))
        method = "GET" if self.head_only else self.handler.command
        has_body = method != "HEAD" and resp.status >= 200 and resp.status not in (204, 304)
        if not has_body or resp.length == 0:
            self._read_all()
        if has_body and self.injects():
            self._relay_html(headers)
        elif has_body:
            self._relay_stream(headers)
        else:
            self._send_head(headers)

    def _send_head(self, headers):
        handler = self.handler
        handler.send_response_only(self.resp.status, self.resp.reason)
        for name, value in headers:
            handler.send_header(name, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        self.head_sent = True
        handler.log_request(self.resp.status)

    def _read_all(self):
        callback, self._on_read_all = self._on_read_all, None
        if callback is not None:
            callback()

    def _app_body(self):
        """The app's body, read by read1() as it arrives; AppGone if the app
        fails or its body ends short of its Content-Length."""
        resp = self.resp
        while True:
            try:
                data = resp.read1(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise AppGone(exc) from exc
            if not data:
                break
            if resp.length == 0:
                self._read_all()  # the last piece of a Content-Length body, not yet sent
            yield data
        if resp.length:  # read1() ends quietly when the app closes before its Content-Length
            exc = http.client.IncompleteRead(b"", resp.length)
            raise AppGone(exc) from exc
        self._read_all()  # a chunked or close-delimited body: its end is not yet sent

    def _relay_stream(self, headers):
        self._send_rest(_Body(self, headers, self._length))

    def _send_rest(self, body):
        """The rest of the app's body through `body`, unless the client went away
        (then the app's unread rest marks the upstream connection unusable)."""
        if not body.discarding:
            for data in self._app_body():
                body.write(data)
                if body.discarding:
                    break
        if body.discarding:
            self.body_unread = True
            return
        body.close()

    def _relay_html(self, headers):
        encoding = self._encoding
        tag = script_tag(self.generation, self.handler.command)
        injector = HTMLInjector(self._charset, tag)
        decoder = None if encoding == "identity" else StreamDecoder(encoding)
        if decoder:
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        small = self._length is not None and self._length <= HTML_BUFFER_MAX
        body = _Body(self, headers, None, HTML_BUFFER_MAX if small else 0)
        raw = [] if decoder and small else None  # sent as it came if it will not decode
        try:
            for data in self._app_body():
                if raw is not None and body.committed:
                    raw = None
                elif raw is not None:
                    raw.append(data)
                for piece in (decoder.feed(data) if decoder else (data,)):
                    body.write(injector.feed(piece))
                if body.discarding:
                    self.body_unread = True
                    return
            for piece in (decoder.finish() if decoder else ()):
                body.write(injector.feed(piece))
        except zlib.error as exc:
            if raw is None or body.committed:
                raise AppGone(exc) from exc
            log.debug("cannot decode %s HTML from %s: %s; sent as is", encoding, self.handler.path, exc)
            self._relay_undecoded(headers, encoding, raw)
            return
        body.write(injector.finish())
        body.close()

    def _relay_undecoded(self, headers, encoding, raw):
        """The page as the app sent it, for a body that is not in its Content-Encoding."""
        headers.append(("Content-Encoding", encoding))
        body = _Body(self, headers, self._length)
        for data in raw:
            body.write(data)
        self._send_rest(body)


class _Body:
    """The browser's side of one response body.

    With a known `length`, the head goes out at once with that Content-Length.
    Without one, up to `hold` bytes are held: a body that ends within them goes
    out with its exact Content-Length, a longer one (or any, with hold=0)
    streams, chunked for an HTTP/1.1 browser, ended by the close for HTTP/1.0.
    For a HEAD (relay.head_only) nothing is written after the head, and
    `discarding` tells the relay to stop reading.
    """

    def __init__(self, relay, headers, length, hold=0):
        self.relay = relay
        self.headers = headers
        self.hold = hold
        self.held = []
        self.size = 0
        self.committed = False
        self.chunked = False
        if length is not None:
            self._commit(length)

    @property
    def discarding(self):
        return self.committed and self.relay.head_only

    def write(self, data):
        if not data:
            return
        if self.committed:
            self._out(data)
            return
        self.held.append(data)
        self.size += len(data)
        if self.size > self.hold:
            self._commit(None)  # too big to hold: the rest streams

    def close(self):
        if not self.committed:
            self._commit(self.size)
        elif self.chunked and not self.relay.head_only:
            self.relay.handler.wfile.write(b"0\r\n\r\n")

    def _commit(self, length):
        relay, handler = self.relay, self.relay.handler
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        elif handler.request_version >= "HTTP/1.1":
            headers.append(("Transfer-Encoding", "chunked"))
            self.chunked = True
        else:
            handler.close_connection = True  # HTTP/1.0 browser: the end of the body is the close
        relay._send_head(headers)
        self.committed = True
        held, self.held = self.held, []
        if held:
            self._out(b"".join(held))  # one write: one segment for a small page, not one per piece

    def _out(self, data):
        if self.relay.head_only:
            return
        wfile = self.relay.handler.wfile
        wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data)
