"""HTML injection for the live-reload proxy: put the client's <script> tag
before the last `</body>` of a page as it streams through, in the page's own
charset, and decode gzip/deflate pages first, in bounded pieces.

Used by one proxy handler thread at a time (an HTMLInjector or StreamDecoder is
per response); no thread of its own, no shared state.

Memory is bounded whatever the page: the injector holds at most what follows
the latest `</body>` (up to HOLD_MAX, after which that tag is taken as the last
one) or a few bytes that may be the start of one; the decoder hands out at most
DECODED_PIECE bytes per step, so a small compressed body that inflates to
gigabytes streams through in pieces instead of being inflated whole.
"""

import codecs
import re
import zlib

SCRIPT_TAG = b'<script src="/__air_internal/livereload.js"></script>'

# Content-Encodings of an HTML page the proxy can decode to inject into it.
DECODABLE = frozenset(("identity", "gzip", "x-gzip", "deflate"))

# A </body> followed by this much more of the page is taken as the last one.
HOLD_MAX = 1024 * 1024
# The most one StreamDecoder step returns.
DECODED_PIECE = 256 * 1024

_TAIL_UNITS = 16  # "</body" plus up to 8 spaces and ">" fits in 16 characters
_SPACES = " \t\n\r\f"  # the HTML standard's whitespace
# A byte order mark beats the header's charset (the HTML standard). UTF-32's
# mark starts with UTF-16's, so it is looked for first.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Without a mark, "utf-16" means little-endian (the WHATWG Encoding standard);
# "utf-32" is read the same way. "utf-8-sig" is UTF-8 that may start with a mark.
_PLAIN = {"utf-16": "utf-16-le", "utf-32": "utf-32-le", "utf-8-sig": "utf-8"}


def script_tag(generation, method="GET"):
    """The tag for a page served while app start number `generation` was current:
    the client compares it with the server's number to notice a missed reload.
    A page that answered another method than GET (a form's POST) says so:
    the client then reloads it with a GET of its address, never by sending
    the form again."""
    extra = b""
    if method not in ("GET", "HEAD"):
        extra = b' data-air-method="%s"' % re.sub(r"[^A-Za-z0-9_-]", "", method).encode("ascii")
    return b'<script src="/__air_internal/livereload.js" data-air-gen="%d"%s></script>' % (generation, extra)


def _codec(charset):
    """Python's codec name for an HTTP charset, or None when unknown or absent."""
    if not charset:
        return None
    try:
        name = codecs.lookup(charset.strip().strip('"')).name
    except LookupError:
        return None
    return _PLAIN.get(name, name)


class _Syntax:
    """How `</body>` looks in one charset: the byte pattern and the width of
    one character (2 or 4 in UTF-16/32: a match must start on a character
    boundary). One per charset, shared by every response (immutable)."""

    def __init__(self, codec):
        self.codec = codec
        self.unit = len("<".encode(codec))
        if self.unit == 1:
            # ASCII-compatible: a literal prefix, which the regex engine finds fast
            self.pattern = re.compile(rb"</body[ \t\n\r\f]{0,8}>", re.IGNORECASE)
        else:
            def either(c):
                variants = sorted({re.escape(c.lower().encode(codec)), re.escape(c.upper().encode(codec))})
                return variants[0] if len(variants) == 1 else b"(?:%s)" % b"|".join(variants)

            spaces = b"(?:%s)" % b"|".join(re.escape(c.encode(codec)) for c in _SPACES)
            self.pattern = re.compile(b"".join(either(c) for c in "</body") + spaces + b"{0,8}"
                                      + re.escape(">".encode(codec)))
        self.tail = _TAIL_UNITS * self.unit

    def last_end(self, data, start=0):
        """Where the last `</body>` at or after `start` begins, or None."""
        last = None
        while True:
            m = self.pattern.search(data, start)
            if m is None:
                return last
            if m.start() % self.unit == 0:
                last = m.start()
                start = m.end()
            else:  # inside a character (the high byte of some UTF-16 unit)
                start = m.start() + 1


_SYNTAXES = {}  # codec name -> _Syntax, or None for a charset the tag cannot be written in


def _syntax_for(codec):
    """The _Syntax of a codec, or None for one that cannot carry the tag as
    text the way a browser reads it (EBCDIC...): such pages pass unchanged."""
    codec = codec or "latin-1"  # no charset or an unknown one: ASCII bytes are enough
    if codec not in _SYNTAXES:
        try:
            if "</body>".encode(codec) == b"</body>" and "</BODY>".encode(codec) == b"</BODY>":
                syntax = _Syntax("latin-1")  # ASCII-compatible: bytes are matched as they are
            elif codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
                syntax = _Syntax(codec)
            else:
                syntax = None
        except (UnicodeError, LookupError):
            syntax = None
        _SYNTAXES[codec] = syntax  # a race computes the same value twice: harmless
    return _SYNTAXES[codec]


class HTMLInjector:
    """Inserts `tag` before the last `</body>` (any case) of an HTML body fed in
    pieces; a page without one passes unchanged. Used by one handler thread.

    Works on bytes in every charset a browser reads (ASCII-compatible ones and
    UTF-16/32, by header charset or byte order mark), so big or slowly
    streamed pages flow: it holds back only what follows the latest `</body>`
    seen (at most HOLD_MAX) or the last few bytes, which may begin one.
    """

    def __init__(self, charset=None, tag=SCRIPT_TAG):
        self.tag = tag
        self.injected = False
        self._held = bytearray()
        self._done = False
        self._sniffing = True  # until 4 bytes are in: a byte order mark may decide the charset
        self._found = False  # _held starts with a </body>
        self._syntax = _syntax_for(_codec(charset))

    def feed(self, data):
        """Bytes that can be sent now (possibly b"")."""
        if self._done:
            return bytes(data)
        scan_from = max(0, len(self._held) - self._syntax.tail) if self._syntax else 0
        self._held += data
        if self._sniffing:
            if len(self._held) < 4:
                return b""
            self._sniff()
            scan_from = 0
            if self._syntax is None:  # a charset the tag cannot be written in
                return self.finish()
        syntax = self._syntax
        last = syntax.last_end(self._held, scan_from)
        if last is not None:
            self._found = True
            cut = last
        elif self._found:
            cut = 0  # everything since that </body> waits: a later one would be the last
        else:
            cut = len(self._held) - syntax.tail
            cut -= cut % syntax.unit  # whole characters only
        if cut <= 0:
            out = b""
        else:
            out = bytes(self._held[:cut])
            del self._held[:cut]
        if self._found and len(self._held) > HOLD_MAX:
            out += self.finish()
        return out

    def _sniff(self):
        self._sniffing = False
        for bom, codec in _BOMS:
            if self._held.startswith(bom):
                self._syntax = _syntax_for(codec)
                return

    def finish(self):
        """The rest of the body, injected if a `</body>` was found."""
        if self._done:
            return b""
        self._done = True
        data, self._held = bytes(self._held), bytearray()
        if self._sniffing:
            self._sniffing = False
            self._held = bytearray(data)
            self._sniff()
            self._held = bytearray()
        if self._syntax is None:
            return data
        last = self._syntax.last_end(data)
        if last is None:
            return data
        self.injected = True
        return data[:last] + self.tag.decode("ascii").encode(self._syntax.codec) + data[last:]


def inject_html(body, charset=None, tag=SCRIPT_TAG):
    """The whole-body form of HTMLInjector (tests, small pages)."""
    injector = HTMLInjector(charset, tag)
    return injector.feed(body) + injector.finish()


class StreamDecoder:
    """Streaming gzip/deflate decoder for HTML the proxy injects into.

    feed() and finish() are generators of pieces of at most DECODED_PIECE
    bytes: each piece is inflated only when the caller asks for it, after it
    has sent the previous one on, because a few bytes of input can stand for
    megabytes of output. They raise zlib.error when the body is not what its
    Content-Encoding says.
    """

    def __init__(self, encoding):
        self._deflate = encoding == "deflate"
        self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
        self._first = True
        self._ended = False  # the stream is over: the rest of the body is ignored

    def feed(self, data):
        if self._ended:
            return
        first, self._first = self._first, False
        try:
            piece = self._z.decompress(data, DECODED_PIECE)
        except zlib.error:
            if not (first and self._deflate):
                raise
            # some servers send "deflate" without the zlib header (raw deflate)
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = self._z.decompress(data, DECODED_PIECE)
        while True:
            if piece:
                yield piece
            z = self._z
            if z.eof:  # what follows the end is in unused_data (unconsumed_tail may repeat it)
                if not z.unused_data:
                    return
                if not b"\x1f\x8b".startswith(z.unused_data[:2]):
                    # bytes after the end are ignored, as browsers do; not kept
                    # either (zlib would pile them up in unused_data)
                    self._ended = True
                    return
                # gzip allows several members one after the other
                self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)
                piece = self._z.decompress(z.unused_data, DECODED_PIECE)
            elif z.unconsumed_tail:
                tail = z.unconsumed_tail
                piece = z.decompress(tail, DECODED_PIECE)
                if not piece and z.unconsumed_tail == tail:
                    return  # no progress: zlib wants more input
            else:
                return

    def finish(self):
        rest = self._z.flush()
        if rest:
            yield rest
