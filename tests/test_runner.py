"""runner.py, envfile.py and log.py: a real Runner thread with a real queue,
real build commands and a real app; the log formatter on real streams."""

import io
import logging
import os
import queue
import re
import sys
import threading

import pytest

from air_std import envfile, log as airlog, process
from air_std.app import App
from air_std.build import BuildCancelled, Builder
from air_std.buildoutput import StrayPipes
from air_std.config import load_config
from air_std.messages import ChangeBatch
from air_std.runner import Runner
from conftest import pid_alive, wait_until


class Recorder:
    """A listener like the proxy: records what the runner tells it."""

    def __init__(self):
        self.events = []

    def app_started(self):
        self.events.append("started")

    def build_failed(self, command, output, error):
        self.events.append(("failed", command, output, error))


def project(tmp_path, toml):
    (tmp_path / ".air.toml").write_text(toml.format(py=sys.executable))
    return load_config(cwd=str(tmp_path))


class Inbox(queue.Queue):
    """The runner's queue, plus a burst: several messages put in one step, so the
    runner cannot take the first before the test has put the last."""

    def put_burst(self, items):
        with self.not_full:
            for item in items:
                self._put(item)
            self.unfinished_tasks += len(items)
            self.not_empty.notify()


def start_runner(cfg):
    shutdown = threading.Event()
    inbox = Inbox()
    listener = Recorder()
    runner = Runner(cfg, inbox, shutdown, listener=listener)
    runner.start()
    return runner, inbox, listener


def stop_runner(runner):
    runner.stop()
    runner.join(10)
    assert not runner.is_alive()


def builds(tmp_path):
    path = tmp_path / "builds.txt"
    return len(path.read_text()) if path.exists() else 0


APP_SLEEPS = 'entrypoint = ["{py}", "-c", "import time; time.sleep(60)"]\n'


def test_changes_within_the_delay_make_one_build(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = "printf x >> builds.txt"\n' + APP_SLEEPS + "delay = 300\n")
    runner, inbox, listener = start_runner(cfg)
    try:
        wait_until(lambda: listener.events == ["started"], what="the first start")
        assert builds(tmp_path) == 1
        # a burst of saves, all inside the 300 ms window whatever the machine's load
        inbox.put_burst([ChangeBatch(modified=(str(tmp_path / ("f%d.go" % i)),)) for i in range(5)])
        wait_until(lambda: listener.events.count("started") == 2, what="the rebuild")
        assert builds(tmp_path) == 2
    finally:
        stop_runner(runner)


def test_failed_build_with_stop_on_error_tells_the_listener_and_stops_the_app(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = "test ! -e broken || (echo \'<b>bad</b>\'; exit 3)"\n'
                  + APP_SLEEPS + "delay = 0\nstop_on_error = true\n")
    runner, inbox, listener = start_runner(cfg)
    try:
        wait_until(lambda: runner.app is not None, what="the app")
        app_pid = runner.app.pid
        (tmp_path / "broken").write_text("")
        inbox.put(ChangeBatch(created=(str(tmp_path / "broken"),)))
        wait_until(lambda: len(listener.events) == 2, what="the failure")
        _, command, output, error = listener.events[1]
        assert "exit 3" in command and output.strip() == "<b>bad</b>" and "exit status 3" in error
        wait_until(lambda: runner.app is None and not pid_alive(app_pid), what="the app stopped")
        log = (tmp_path / "tmp" / "build-errors.log").read_text()
        assert "exit status 3" in log and "<b>bad</b>" in log
    finally:
        stop_runner(runner)


def test_stop_on_error_false_restarts_the_old_app_without_the_overlay(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = "test ! -e broken"\n' + APP_SLEEPS
                  + "delay = 0\nstop_on_error = false\n")
    runner, inbox, listener = start_runner(cfg)
    try:
        wait_until(lambda: runner.app is not None, what="the app")
        first = runner.app.pid
        (tmp_path / "broken").write_text("")
        inbox.put(ChangeBatch(created=(str(tmp_path / "broken"),)))
        # the listener hears of a start just after runner.app is set: wait for what it heard
        wait_until(lambda: len(listener.events) >= 2, what="the restart")
        assert runner.app is not None and runner.app.pid != first
        assert listener.events == ["started", "started"]  # Air's buildRun sends no overlay here
    finally:
        stop_runner(runner)


def test_stop_ends_a_build_in_progress(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = "echo $$ > build.pid; exec sleep 60"\n' + APP_SLEEPS)
    runner, inbox, listener = start_runner(cfg)
    wait_until(lambda: (tmp_path / "build.pid").exists(), what="the build")
    stop_runner(runner)
    assert listener.events == []


# --- the runner's pieces on their own: Builder and App, with real processes ---

def make_builder(tmp_path, cmd="true"):
    cfg = project(tmp_path, '[build]\ncmd = "%s"\n' % cmd + APP_SLEEPS)
    strays = StrayPipes()
    return Builder(cfg, threading.Event(), strays, tick_s=0.05), strays


def test_a_build_is_cancelled_between_reads_and_its_whole_group_stopped(tmp_path):
    # as air_std does: the build's orphans come back to this process, so stop()
    # can see them until they are gone
    assert process.make_subreaper()
    builder, _ = make_builder(tmp_path)
    command = "sleep 30 & echo $! > child.pid; echo started; wait"
    with pytest.raises(BuildCancelled):
        builder.run_command(command, dict(os.environ), lambda: (tmp_path / "child.pid").exists())
    assert not pid_alive(int((tmp_path / "child.pid").read_text()))


def test_a_background_job_of_the_build_is_left_running_and_its_output_shown(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="air_std.build")
    builder, strays = make_builder(tmp_path)
    # the job waits for the test's go file (bounded: 10 s), then ends the build's last line
    command = ('printf "built, "; (i=0; while [ ! -e go ] && [ $i -lt 500 ]; do sleep 0.02; '
               'i=$((i+1)); done; echo "late line") &')
    code, output = builder.run_command(command, dict(os.environ), lambda: False)
    assert code == 0 and output == "built, " and strays  # over, while the job holds the pipe
    (tmp_path / "go").write_text("")
    wait_until(lambda: (strays.drain(), not strays)[1], what="the end of the job's output")
    assert "built, late line" in [r.getMessage() for r in caplog.records]


def test_a_failed_build_reports_its_output_and_writes_the_build_log(tmp_path):
    builder, _ = make_builder(tmp_path, cmd="echo broken; exit 4")
    assert builder.run(lambda: False) is False
    command, output, error = builder.failure
    assert command == "echo broken; exit 4" and output == "broken\n" and error.endswith("exit status 4")
    assert builder.written_files == [str(tmp_path / "tmp" / "build-errors.log")]


def test_the_app_reruns_after_it_exits_and_never_starts_once_stopping(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = ""\nrerun = true\nrerun_delay = 0\n'
                  'entrypoint = ["{py}", "-c", "open(\'runs\', \'a\').write(\'x\')"]\n')
    stopping = threading.Event()
    starts = []
    app = App(cfg, stopping, threading.Event(), on_started=lambda: starts.append(1))
    try:
        assert app.start()
        wait_until(lambda: (app.check(), len(starts) >= 3)[1], what="two reruns")
        stopping.set()
        wait_until(lambda: (app.check(), app.proc is None)[1], what="the last run to end")
        app.check()
        assert app.proc is None and app.start() is False
    finally:
        app.stop()
    assert len((tmp_path / "runs").read_text()) == len(starts)


def test_the_app_command_names_what_is_missing(tmp_path):
    cfg = project(tmp_path, '[build]\ncmd = ""\nbin = "./tmp/server"\nargs_bin = ["-v"]\n')
    app = App(cfg, threading.Event(), threading.Event(), app_args=["x y"])
    with pytest.raises(FileNotFoundError, match="build.bin './tmp/server' not found"):
        app.command()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "server").write_text("")
    assert app.command() == ("%s -v 'x y'" % (tmp_path / "tmp" / "server"), True)


def test_env_files_parse_and_precedence(tmp_path):
    (tmp_path / "a.env").write_text(
        "# comment\nexport A=1\nB = 'two words'\nC=\"line\\nnext\"\nD=plain # trailing\nnot a line\n")
    (tmp_path / "b.env").write_text("A=overridden\nE=5\n")
    env = envfile.load(["a.env", "missing.env", "b.env"], str(tmp_path), environ={"E": "shell"})
    assert env["A"] == "overridden"          # later files win over earlier ones
    assert env["B"] == "two words" and env["C"] == "line\nnext" and env["D"] == "plain"
    assert env["E"] == "shell"               # the shell wins over every file


def test_log_lines_per_part_colour_and_filters():
    out = io.StringIO()
    airlog.setup({"watcher": "cyan"}, stream=out)
    try:
        logging.getLogger("air_std.watcher").info("a %s", "change")
        logging.getLogger("air_std.runner").warning("slow")
        assert out.getvalue() == "watcher | a change\nrunner  | warning: slow\n"  # no colour off a TTY

        fmt = airlog.PartFormatter({"watcher": "cyan"}, add_time=True, use_colour=True)
        rec = logging.LogRecord("air_std.watcher", logging.INFO, "", 0, "x", (), None)
        line = fmt.format(rec)
        assert line.startswith("\x1b[36m") and line.endswith("watcher | x\x1b[0m")

        # Air's util.go: main_only hides watcher, build and runner (their errors too)
        # unless -d; silent hides everything; a build's output always shows
        out.truncate(0), out.seek(0)
        airlog.setup(stream=out, main_only=True)
        logging.getLogger("air_std.runner").info("hidden")
        logging.getLogger("air_std.build").error("hidden too")
        logging.getLogger("air_std.main").info("shown")
        logging.getLogger("air_std.proxy").info("not a part Air names")
        logging.getLogger("air_std.build").info("compiler says", extra=airlog.OUTPUT)
        assert out.getvalue().splitlines() == [
            "main    | shown", "proxy   | not a part Air names", "build   | compiler says"]

        out.truncate(0), out.seek(0)
        airlog.setup(stream=out, main_only=True, debug=True)
        logging.getLogger("air_std.runner").info("-d shows it")
        assert out.getvalue() == "runner  | -d shows it\n"

        out.truncate(0), out.seek(0)
        airlog.setup(stream=out, silent=True, debug=True)
        logging.getLogger("air_std.main").error("nothing")
        logging.getLogger("air_std.watcher").debug("nothing either")
        logging.getLogger("air_std.build").info("compiler says", extra=airlog.OUTPUT)
        logging.getLogger("air_std.main").critical("a crash")
        assert out.getvalue().splitlines() == ["build   | compiler says", "main    | error: a crash"]
    finally:
        airlog.setup(stream=sys.stderr)


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color():
    assert airlog.colour_enabled(Tty(), env={})
    assert not airlog.colour_enabled(Tty(), env={"NO_COLOR": "1"})
    assert not airlog.colour_enabled(Tty(), env={"TERM": "dumb"})
    assert not airlog.colour_enabled(io.StringIO(), env={})
    assert airlog.colour_enabled(io.StringIO(), env={"FORCE_COLOR": "1"})
    # an explicit mode decides alone, NO_COLOR or not (no-color.org allows it)
    assert airlog.colour_enabled(io.StringIO(), env={"NO_COLOR": "1"}, mode="always")
    assert not airlog.colour_enabled(Tty(), env={"FORCE_COLOR": "1"}, mode="never")


def test_colour_names_follow_air():
    assert airlog.colour_code("magenta") == "35" and airlog.colour_code("raw") is None
    assert airlog.colour_code("purple") == "37"  # Air's getColor: unknown names are white
    assert airlog.colour_code("hiblue") == "94"  # air_std's own extra names


def test_a_record_of_several_lines_shows_as_that_many_prefixed_lines():
    """The runner logs a chunk of build output as one record: each of its lines
    must look as if it had been logged alone (prefix, time, colour)."""
    rec = logging.LogRecord("air_std.build", logging.INFO, "", 0, "%s", ("one\n\nthree",), None)
    plain = airlog.PartFormatter().format(rec)
    assert plain.split("\n") == ["build   | one", "build   | ", "build   | three"]
    timed = airlog.PartFormatter(add_time=True).format(rec).split("\n")
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in timed] == plain.split("\n")
    coloured = airlog.PartFormatter({"build": "yellow"}, use_colour=True).format(rec).split("\n")
    assert coloured == ["\x1b[33mbuild   | %s\x1b[0m" % s for s in ("one", "", "three")]
