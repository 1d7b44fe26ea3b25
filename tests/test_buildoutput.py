"""buildoutput.py: lines split and logged in batches, long lines in pieces, the
tail bounded, stray pipes; and a real air_std passing 50 MB of build output on
with bounded memory (throughput: bench/bench_build_output.py)."""

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from air_std import waitio
from air_std.buildoutput import CUT_MARK, MAX_LINE_BYTES, TAIL_BYTES, BuildOutput, LineLog, StrayPipes
from conftest import REPO, wait_until


class Lines:
    """A real logger whose records are kept: what the user would see, record by record."""

    def __init__(self):
        self.records = []
        self.logger = logging.getLogger("air_std.build.test%d" % id(self))
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(io.StringIO())
        handler.emit = lambda record: self.records.append(record.getMessage())
        self.logger.addHandler(handler)

    def lines(self):
        return "\n".join(self.records).split("\n") if self.records else []


def test_lines_across_chunks_crlf_and_the_unfinished_last_line():
    seen = Lines()
    out = LineLog(seen.logger)
    for chunk in (b"fir", b"st\r\nsec", b"ond\n\nthi", b"rd\r\n", b"no newline"):
        out.feed(chunk)
    assert seen.lines() == ["first", "second", "", "third"]
    out.flush()
    assert seen.lines() == ["first", "second", "", "third", "no newline"]
    out.flush()  # nothing left: nothing logged
    assert len(seen.lines()) == 5


def test_many_short_lines_are_one_logging_call_per_chunk():
    seen = Lines()
    out = LineLog(seen.logger)
    out.feed(b"x\n" * 30000)
    assert len(seen.records) == 1 and seen.lines() == ["x"] * 30000


def test_a_line_without_end_is_logged_in_marked_pieces_and_never_kept_whole():
    seen = Lines()
    out = LineLog(seen.logger)
    data = bytes(range(97, 123)) * 20000  # 520,000 bytes, no newline
    for start in range(0, len(data), 65536):
        out.feed(data[start:start + 65536])
        assert len(out._partial) <= MAX_LINE_BYTES  # memory stays bounded
    out.feed(b"\nnext\n")
    lines = seen.lines()
    assert lines[-1] == "next"
    pieces = lines[:-1]
    assert all(p.endswith(CUT_MARK) for p in pieces[:-1]) and not pieces[-1].endswith(CUT_MARK)
    assert all(len(p) <= MAX_LINE_BYTES + len(CUT_MARK) for p in pieces)
    whole = "".join(p[:-len(CUT_MARK)] if p.endswith(CUT_MARK) else p for p in pieces)
    assert whole == data.decode()  # nothing lost


def test_a_long_finished_line_among_short_ones_is_cut_too():
    seen = Lines()
    out = LineLog(seen.logger)
    out.feed(b"short\n" + b"y" * (MAX_LINE_BYTES + 10) + b"\nafter\n")
    assert seen.lines() == ["short", "y" * MAX_LINE_BYTES + CUT_MARK, "y" * 10, "after"]


def test_pieces_never_split_a_character():
    seen = Lines()
    out = LineLog(seen.logger)
    text = "é" * MAX_LINE_BYTES  # 2 bytes each: piece boundaries fall inside characters
    out.feed(text.encode() + b"\n")
    pieces = seen.lines()
    assert "\ufffd" not in "".join(pieces)
    assert "".join(p.replace(CUT_MARK, "") for p in pieces) == text


def test_the_tail_is_bounded_and_starts_at_a_whole_character():
    seen = Lines()
    out = BuildOutput(seen.logger)
    out.feed(b"a" * 10 + "€".encode() * 40000)  # 120,010 bytes; 3 bytes per character
    tail = out.text()
    assert len(tail.encode()) <= TAIL_BYTES and "\ufffd" not in tail
    assert set(tail) == {"€"} and len(tail) == TAIL_BYTES // 3
    small = BuildOutput(seen.logger)
    small.feed(b"error: x\n")
    assert small.text() == "error: x\n"


def test_stray_pipes_pass_output_on_until_end_of_file():
    seen = Lines()
    lines = LineLog(seen.logger)
    lines.feed(b"started by the build, unfinished ")
    r, w = os.pipe()
    strays = StrayPipes()
    strays.add(os.fdopen(r, "rb", buffering=0), lines)
    assert strays
    os.write(w, b"line\nand more")
    wait_until(lambda: (strays.drain(), seen.lines())[1] == ["started by the build, unfinished line"],
               what="the stray's line")
    os.close(w)
    wait_until(lambda: (strays.drain(), not strays)[1], what="the end of the stray pipe")
    assert seen.lines()[-1] == "and more"


def test_closing_stray_pipes_logs_what_was_unfinished():
    seen = Lines()
    r, w = os.pipe()
    strays = StrayPipes()
    strays.add(os.fdopen(r, "rb", buffering=0), LineLog(seen.logger))
    os.write(w, b"half a line")
    wait_until(lambda: waitio.readable([r], 0), what="the pipe to be readable")
    strays.drain()
    assert seen.records == []  # no line ended yet
    strays.close()
    os.close(w)
    assert not strays and seen.lines() == ["half a line"]


# --- a real air_std, a real build printing 50 MB -------------------------------------

WRITERS = {
    "no newline": "b'x' * 65536",
    "2-byte lines": "b'x\\n' * 32768",
}


def peak_rss_of_air_std(proj, writer_block, mb):
    """air_std's VmHWM (KiB) once a build printing `mb` MB of blocks is over and the app runs."""
    proj.mkdir()
    writer = proj.parent / ("writer-%s.py" % proj.name)
    writer.write_text("import sys\nfor _ in range(%d * 1024 * 1024 // len(%s)): sys.stdout.buffer.write(%s)\n"
                      % (mb, writer_block, writer_block))
    (proj / ".air.toml").write_text(textwrap.dedent('''
        [build]
        cmd = "{py} {writer}"
        entrypoint = ["{py}", "-c", "import time; open('started', 'w').close(); time.sleep(60)"]
        include_ext = ["nothing"]
        ''').format(py=sys.executable, writer=writer))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # air_std's log goes to /dev/null: what is measured is air_std, not a disk
    air = subprocess.Popen([sys.executable, "-m", "air_std"], cwd=str(proj), env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: (proj / "started").exists() or air.poll() is not None, timeout=90,
                   what="the build to end and the app to start")
        assert air.poll() is None, "air_std exited: %s" % air.returncode
        with open("/proc/%d/status" % air.pid) as f:
            hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
        air.send_signal(signal.SIGINT)
        assert air.wait(15) == 0
        return hwm
    finally:
        if air.poll() is None:
            os.killpg(air.pid, signal.SIGKILL)
            air.wait(5)


@pytest.mark.e2e
@pytest.mark.parametrize("shape", sorted(WRITERS))
def test_a_build_printing_50_mb_completes_in_bounded_memory(tmp_path, shape):
    quiet = peak_rss_of_air_std(tmp_path / "quiet", "b'x'", 0)
    loud = peak_rss_of_air_std(tmp_path / "loud", WRITERS[shape], 50)
    # before the line cap, one 50 MB line took air_std to about 265 MB
    assert loud - quiet < 24 * 1024, "air_std's peak RSS grew by %d KiB" % (loud - quiet)
