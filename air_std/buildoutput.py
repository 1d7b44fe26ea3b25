"""A build's output: split into lines, logged, and its tail kept.

Used by the runner thread only (no thread of its own). The runner reads the
build's pipe and hands each chunk here; this module never blocks, except
`StrayPipes.drain`, which only reads pipes that are ready.

Two things keep air_std from slowing a build down or growing with its output:
- Many lines are logged as one record: a chunk of output (up to 64 KiB, so
  thousands of short lines) is one logging call, which the log formatter
  shows as one prefixed line per line of output.
- A line is kept only up to MAX_LINE_BYTES. A longer one (a minified bundle,
  a progress bar without newlines) is logged in pieces of that size, each
  piece but the last ending with CUT_MARK, so nothing is lost and memory
  stays bounded whatever the build prints.
The last TAIL_BYTES of the raw output are kept for the browser's error
overlay and the build log file.
"""

import logging
import os

from air_std import waitio
from air_std.log import OUTPUT

__all__ = ["LineLog", "BuildOutput", "StrayPipes", "READ_SIZE", "MAX_LINE_BYTES",
           "CUT_MARK", "TAIL_BYTES"]

READ_SIZE = 65536  # one pipe buffer on Linux
MAX_LINE_BYTES = 16 * 1024
CUT_MARK = " [...]"  # ends a piece of a line that goes on in the next log line
TAIL_BYTES = 64 * 1024

build_log = logging.getLogger("air_std.build")


def _is_continuation(byte):
    return byte & 0xC0 == 0x80  # 10xxxxxx: inside a UTF-8 sequence, never its start


def _utf8_cut(data, end):
    """An index in (end - 4, end] where data (longer than end) can be cut without
    splitting a UTF-8 sequence; end itself when data is not UTF-8 there."""
    cut = end
    # a sequence is a lead byte and at most 3 continuation bytes
    while cut > end - 3 and cut > 0 and _is_continuation(data[cut]):
        cut -= 1
    return end if cut == 0 or _is_continuation(data[cut]) else cut


def _lines_fit(block):
    """True if no line of block (newline-separated, none at the end) is longer
    than MAX_LINE_BYTES. Jumps from the last newline of one window to the next,
    so it looks at each byte about twice and loops len/MAX_LINE_BYTES times."""
    pos, size = 0, len(block)
    while size - pos > MAX_LINE_BYTES:
        newline = block.rfind(b"\n", pos, pos + MAX_LINE_BYTES + 1)
        if newline < 0:
            return False
        pos = newline + 1
    return True


def _strip_cr(text):
    """Drop the carriage returns that end each line (CRLF output, `\\r\\n`)."""
    if "\r" not in text:
        return text
    return "\n".join(line.rstrip("\r") for line in text.split("\n"))


class LineLog:
    """Bytes in, log lines out, for one stream of output.

    `feed()` logs every line completed by the chunk (and pieces of a line
    that grew past MAX_LINE_BYTES) in one logging call; `flush()` logs the
    unfinished line, for the end of the stream.
    """

    def __init__(self, logger=build_log):
        self.logger = logger
        self._partial = b""  # the unfinished line; never more than MAX_LINE_BYTES

    def feed(self, chunk):
        out = []
        end = chunk.rfind(b"\n")
        if end < 0:
            self._partial += chunk
        else:
            block = self._partial + chunk[:end] if self._partial else chunk[:end]
            self._partial = chunk[end + 1:]
            self._add_lines(block, out)
        if len(self._partial) > MAX_LINE_BYTES:
            self._partial = self._add_pieces(self._partial, out)
        self._log(out)

    def flush(self):
        if self._partial:
            partial, self._partial = self._partial, b""
            self._log([_strip_cr(partial.decode("utf-8", "replace"))])

    def _add_lines(self, block, out):
        if _lines_fit(block):  # the usual case: decoded and logged in one piece
            out.append(_strip_cr(block.decode("utf-8", "replace")))
            return
        for line in block.split(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                line = self._add_pieces(line, out)
            out.append(_strip_cr(line.decode("utf-8", "replace")))

    @staticmethod
    def _add_pieces(data, out):
        """Append full pieces of data to out; return what is left (<= MAX_LINE_BYTES)."""
        start = 0
        while len(data) - start > MAX_LINE_BYTES:
            cut = _utf8_cut(data, start + MAX_LINE_BYTES)
            out.append(data[start:cut].decode("utf-8", "replace") + CUT_MARK)
            start = cut
        return data[start:]

    def _log(self, texts):
        if texts:
            # marked as output: log.silent and log.main_only never hide it (see log.py)
            self.logger.info("%s", "\n".join(texts), extra=OUTPUT)


class BuildOutput:
    """One build command's output: logged line by line, its tail kept as text."""

    def __init__(self, logger=build_log):
        self.lines = LineLog(logger)
        self._tail = bytearray()
        self._cut = False  # the tail lost its start

    def feed(self, chunk):
        self._tail += chunk
        if len(self._tail) > TAIL_BYTES:
            del self._tail[:-TAIL_BYTES]
            self._cut = True
        self.lines.feed(chunk)

    def text(self):
        """The last TAIL_BYTES of the output (from a whole character on)."""
        start = 0
        if self._cut:  # skip the end of a character whose start was dropped
            while start < min(3, len(self._tail)) and _is_continuation(self._tail[start]):
                start += 1
        return self._tail[start:].decode("utf-8", "replace")


class StrayPipes:
    """Output pipes still held open by something a build left running (`cmd &`).

    Like Air, air_std leaves such a background job running, and its output
    is still shown: the runner calls `drain()` on each turn of its loop.
    """

    def __init__(self):
        self._pipes = {}  # file object -> its LineLog

    def __bool__(self):
        return bool(self._pipes)

    def add(self, pipe, lines):
        """Keep reading pipe; lines goes on from the build's unfinished line."""
        self._pipes[pipe] = lines

    def drain(self):
        """Log what is ready on every pipe (never blocks); close those at end of file."""
        if not self._pipes:
            return
        for pipe in waitio.readable(list(self._pipes), 0):
            chunk = os.read(pipe.fileno(), READ_SIZE)
            if chunk:
                self._pipes[pipe].feed(chunk)
            else:
                self._pipes.pop(pipe).flush()
                pipe.close()

    def close(self):
        """Stop reading (air_std is stopping): log what was unfinished, close every pipe."""
        pipes, self._pipes = self._pipes, {}
        for pipe, lines in pipes.items():
            lines.flush()
            pipe.close()
