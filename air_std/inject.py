"""HTML injection for the live-reload proxy: put the client's <script> tag
before the last `</body>` of a page, whole or streamed, in its own charset,
and decode gzip/deflate pages first.

Used by one proxy handler thread at a time (an HTMLInjector or StreamDecoder is
per response); no thread of its own, no shared state.
"""

import codecs
import re
import zlib

SCRIPT_TAG = b'<script src="/__air_internal/livereload.js"></script>'


def script_tag(generation):
    """The tag for a page served while app start number `generation` was current:
    the client compares it with the server's number to notice a missed reload."""
    return b'<script src="/__air_internal/livereload.js" data-air-gen="%d"></script>' % generation


# Content-Encodings of an HTML page the proxy can decode to inject into it.
DECODABLE = frozenset(("identity", "gzip", "x-gzip", "deflate"))

_BODY_END = re.compile(rb"</body\s{0,8}>", re.IGNORECASE)
_BODY_END_TEXT = re.compile(r"</body\s{0,8}>", re.IGNORECASE)
_TAIL = 16  # "</body" plus whitespace can straddle two reads: hold this much back
_HOLD_MAX = 1024 * 1024  # a </body> followed by this much more is taken as the last one
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _codec(charset):
    """Python's codec name for an HTTP charset, or None when unknown or absent."""
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except LookupError:
        return None


def _ascii_compatible(codec):
    try:
        return "</body>".encode(codec) == b"</body>" and "</BODY>".encode(codec) == b"</BODY>"
    except UnicodeError:
        return False


class HTMLInjector:
    """Inserts `tag` before the last `</body>` (any case) of an HTML body fed in
    pieces; a page without one passes unchanged. Used by one handler thread.

    For ASCII-compatible charsets (UTF-8, Latin-1, windows-125x... and unknown
    ones) it works on bytes and holds back only what follows the latest
    `</body>` seen, so big or slowly streamed pages still flow. UTF-16/32 pages
    (by header charset or BOM) are decoded whole, injected and re-encoded.
    """

    def __init__(self, charset=None, tag=SCRIPT_TAG):
        self.tag = tag
        self.injected = False
        self._held = bytearray()
        self._done = False
        self._first = True
        codec = _codec(charset)
        self._wide = codec if codec and not _ascii_compatible(codec) else None

    def feed(self, data):
        """Bytes that can be sent now (possibly b"")."""
        if self._done:
            return bytes(data)
        if self._first:
            self._first = False
            for bom, codec in _BOMS:  # the HTML standard: a BOM beats the header
                if data.startswith(bom):
                    self._wide = codec
                    break
        self._held += data
        if self._wide:
            return b""
        last = None
        for last in _BODY_END.finditer(self._held):
            pass
        cut = last.start() if last else max(0, len(self._held) - _TAIL)
        out = bytes(self._held[:cut])
        del self._held[:cut]
        if last and len(self._held) > _HOLD_MAX:
            out += self.finish()
        return out

    def finish(self):
        """The rest of the body, injected if a `</body>` was found."""
        if self._done:
            return b""
        self._done = True
        data, self._held = bytes(self._held), bytearray()
        if self._wide:
            return self._inject_text(data)
        last = None
        for last in _BODY_END.finditer(data):
            pass
        if last is None:
            return data
        self.injected = True
        return data[:last.start()] + self.tag + data[last.start():]

    def _inject_text(self, data):
        try:
            text = data.decode(self._wide)
        except UnicodeError:
            return data
        last = None
        for last in _BODY_END_TEXT.finditer(text):
            pass
        if last is None:
            return data
        self.injected = True
        text = text[:last.start()] + self.tag.decode("ascii") + text[last.start():]
        return text.encode(self._wide)


def inject_html(body, charset=None, tag=SCRIPT_TAG):
    """The whole-body form of HTMLInjector (tests, small pages)."""
    injector = HTMLInjector(charset, tag)
    return injector.feed(body) + injector.finish()


class StreamDecoder:
    """Streaming gzip/deflate decoder for HTML the proxy injects into."""

    def __init__(self, encoding):
        self._deflate = encoding == "deflate"
        self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
        self._first = True

    def feed(self, data):
        first, self._first = self._first, False
        try:
            return self._z.decompress(data)
        except zlib.error:
            if not (first and self._deflate):
                raise
            # some servers send "deflate" without the zlib header (raw deflate)
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._z.decompress(data)

    def finish(self):
        return self._z.flush()
