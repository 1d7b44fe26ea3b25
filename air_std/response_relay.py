"""The relay of one app response to the browser: the status line and headers
(hop-by-hop ones dropped, Via added), then the body, streamed as it arrives,
with the live-reload script tag put into HTML pages (decoded from
gzip/deflate first, see inject.py).

Runs in the connection thread ("air-proxy-conn-N") that forwarded the
request; a relay object lives for one response.
"""

import http.client
import logging
import zlib

from air_std.inject import DECODABLE, HTMLInjector, StreamDecoder, script_tag
from air_std.proxy_http import CHUNK, HOP_BY_HOP, AppGone, tokens

log = logging.getLogger("air_std.proxy")

# A page announced with a Content-Length up to this size is injected in one
# piece and sent with a corrected Content-Length; longer or chunked pages stream.
HTML_BUFFER_MAX = 4 * 1024 * 1024


class ResponseRelay:
    """Sends one `http.client.HTTPResponse` to the browser.

    `handler` is the browser connection's BaseHTTPRequestHandler: the relay
    writes through its send_response_only / send_header / end_headers /
    log_request and wfile, reads its request's command, path and version,
    and sets its close_connection when a body must end with the connection
    (an HTTP/1.0 browser and no length). `generation` is the app start number
    the script tag of an HTML page carries.

    send() raises AppGone when the app breaks off the response; `head_sent`
    then says whether the browser already has a status line (if not, the
    handler can still answer with its 502 page).
    """

    def __init__(self, handler, resp, generation):
        self.handler = handler
        self.resp = resp
        self.generation = generation
        self.head_sent = False

    def send(self):
        resp = self.resp
        drop = HOP_BY_HOP | tokens(resp.msg.get_all("Connection", []))
        headers = [(k, v) for k, v in resp.msg.items() if k.lower() not in drop]
        headers.append(("Via", ", ".join(resp.msg.get_all("Via", []) + ["1.1 air_std"])))
        status = resp.status
        has_body = self.handler.command != "HEAD" and status >= 200 and status not in (204, 304)
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        # a 206 is a slice of the page: a tag put into it would land mid-file
        if has_body and status != 206 and ctype == "text/html" and encoding in DECODABLE:
            self._relay_html(headers, encoding)
        elif not has_body:
            self._send_head(headers)
        else:
            self._relay_stream(headers)

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

    def _framing(self, headers, length):
        """Add the body framing header; True if the body must be chunked."""
        headers[:] = [(k, v) for k, v in headers if k.lower() != "content-length"]
        if length is not None:
            headers.append(("Content-Length", str(length)))
            return False
        if self.handler.request_version >= "HTTP/1.1":
            headers.append(("Transfer-Encoding", "chunked"))
            return True
        self.handler.close_connection = True  # HTTP/1.0 browser: the end of the body is the close
        return False

    def _read_app(self, whole=False):
        try:
            return self.resp.read() if whole else self.resp.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise AppGone(exc) from exc

    def _write(self, data, chunked):
        if data:
            self.handler.wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if chunked else data)

    def _relay_stream(self, headers, transform=None):
        chunked = self._framing(headers, self.resp.length if transform is None else None)
        self._send_head(headers)
        while True:
            data = self._read_app()
            if not data:
                break
            self._write(transform(data) if transform else data, chunked)
        if transform:
            self._write(transform(None), chunked)
        if chunked:
            self.handler.wfile.write(b"0\r\n\r\n")

    def _relay_html(self, headers, encoding):
        injector = HTMLInjector(self.resp.msg.get_content_charset(), script_tag(self.generation))
        decoder = None if encoding == "identity" else StreamDecoder(encoding)
        if decoder:
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        if self.resp.length is not None and self.resp.length <= HTML_BUFFER_MAX:
            self._relay_whole_html(headers, encoding, injector, decoder)
            return

        def transform(data):
            if data is None:  # end of the body
                return injector.feed(decoder.finish() if decoder else b"") + injector.finish()
            try:
                return injector.feed(decoder.feed(data) if decoder else data)
            except zlib.error as exc:
                raise AppGone(exc) from exc

        self._relay_stream(headers, transform)

    def _relay_whole_html(self, headers, encoding, injector, decoder):
        raw = self._read_app(whole=True)
        try:
            body = decoder.feed(raw) + decoder.finish() if decoder else raw
            body = injector.feed(body) + injector.finish()
        except zlib.error as exc:
            log.debug("cannot decode %s HTML from %s: %s; sent as is", encoding, self.handler.path, exc)
            headers.append(("Content-Encoding", encoding))
            body = raw
        self._framing(headers, len(body))
        self._send_head(headers)
        self.handler.wfile.write(body)
