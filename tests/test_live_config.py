"""What users forget to list, and crash loops, through the real CLI: an
edited env file restarts the app (no build), an edited .air.toml is loaded
and used (a bad edit changes nothing), env_files entries that are not
regular files, and `rerun` backing off an app that fails at once."""

import os
import re
import signal
import threading

import pytest

from air_std import envfile
from conftest import http_get, wait_until
from test_integration import assert_clean_exit, make_project, serves

pytestmark = pytest.mark.e2e


def count_lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_editing_an_env_file_restarts_the_app_without_a_build(tmp_path, run_air):
    proj, port = make_project(tmp_path, top='env_files = [".env"]',
                              extra_build='pre_cmd = ["echo b >> builds.log"]')
    (proj / ".env").write_text("FROM_ENV=first\nPORT=%d\n" % port)
    air = run_air([], proj)
    wait_until(lambda: serves(port, "one first"), timeout=15, what="the app", output=air.output)
    (proj / ".env").write_text("FROM_ENV=second\nPORT=%d\n" % port)
    wait_until(lambda: serves(port, "one second"), timeout=15, what="the new value",
               output=air.output)
    assert ".env changed: restarting the app (no build)" in air.stderr()
    assert count_lines(proj / "builds.log") == 1
    air.signal(signal.SIGINT)
    assert_clean_exit(air)


def test_editing_the_config_reloads_it_and_a_bad_edit_keeps_the_old_one(tmp_path, run_air):
    proj, port = make_project(tmp_path, extra_build='post_cmd = ["echo bye >> post.txt"]')
    config = proj / ".air.toml"
    good = config.read_text()
    air = run_air([], proj, env={"PORT": str(port)})
    wait_until(lambda: serves(port, "one -"), timeout=15, what="the app", output=air.output)
    # a bad edit: one line, and the app goes on under the old config
    config.write_text(good + "\nthis is = = not toml\n")
    air.wait_for("still running with the config loaded before")
    err = [l for l in air.stderr().splitlines() if "still running" in l]
    assert len(err) == 1 and ".air.toml:" in err[0] and "invalid TOML" in err[0], err
    assert serves(port, "one -")
    # a good edit: the new config's args reach the app
    config.write_text(good.replace("[build]", "[build]\nargs_bin = [\"reloaded\"]"))
    wait_until(lambda: serves(port, "one - reloaded"), timeout=15, what="the app under the new config",
               output=air.output)
    assert ".air.toml changed; restarting with the new config" in air.stderr()
    assert not (proj / "post.txt").exists()  # a reload is not an exit
    # the new parts watch as the old did
    src = (proj / "app.py").read_text()
    (proj / "app.py").write_text(re.sub(r'VALUE = ".*"', 'VALUE = "two"', src))
    wait_until(lambda: serves(port, "two - reloaded"), timeout=15, what="the rebuilt app",
               output=air.output)
    air.signal(signal.SIGINT)
    assert_clean_exit(air)
    assert count_lines(proj / "post.txt") == 1


def test_an_edited_config_that_is_also_a_watched_file_is_reloaded_not_also_built(tmp_path, run_air):
    # include_ext lists toml: the edit is the config's reload (one build, from the
    # new parts), not also a change for the old parts' build
    proj, port = make_project(tmp_path, extra_build='pre_cmd = ["echo b >> builds.log"]')
    config = proj / ".air.toml"
    config.write_text(config.read_text().replace('include_ext = ["py", "txt"]',
                                                 'include_ext = ["py", "txt", "toml"]'))
    air = run_air([], proj, env={"PORT": str(port)})
    wait_until(lambda: serves(port, "one -"), timeout=15, what="the app", output=air.output)
    assert count_lines(proj / "builds.log") == 1
    config.write_text(config.read_text().replace("[build]", "[build]\nargs_bin = [\"reloaded\"]"))
    wait_until(lambda: serves(port, "one - reloaded"), timeout=15, what="the app under the new config",
               output=air.output)
    # the old parts were stopped before the new ones started: every build is counted by now
    assert count_lines(proj / "builds.log") == 2, air.output()
    assert ".air.toml changed; rebuilding" not in air.stderr()
    air.signal(signal.SIGINT)
    assert_clean_exit(air)


def test_clean_on_exit_removes_every_tmp_dir_after_a_reload_moved_it(tmp_path, run_air):
    proj, port = make_project(tmp_path, top='tmp_dir = "out1"\n[misc]\nclean_on_exit = true\n')
    (proj / "kept").mkdir()  # a tmp_dir the user made is not air_std's to remove
    (proj / "kept" / "mine.txt").write_text("mine\n")
    config = proj / ".air.toml"
    air = run_air([], proj, env={"PORT": str(port)})
    wait_until(lambda: serves(port, "one -"), timeout=15, what="the app", output=air.output)
    assert (proj / "out1").is_dir()
    config.write_text(config.read_text().replace('"out1"', '"out2"'))
    wait_until(lambda: (proj / "out2").is_dir() and serves(port, "one -"), timeout=15,
               what="the app under the new tmp_dir", output=air.output)
    config.write_text(config.read_text().replace('"out2"', '"kept"'))
    air.wait_for("restarting with the new config", count=2)
    wait_until(lambda: serves(port, "one -"), timeout=15, what="the app under the third config",
               output=air.output)
    air.signal(signal.SIGINT)
    assert_clean_exit(air)
    assert not (proj / "out1").exists() and not (proj / "out2").exists(), air.output()
    assert (proj / "kept" / "mine.txt").read_text() == "mine\n"


def test_a_reload_restarts_the_proxy_on_its_new_port(tmp_path, run_air):
    from conftest import free_port
    app_port, first, second = free_port(), free_port(), free_port()
    proj, _ = make_project(tmp_path, top='[proxy]\nenabled = true\nproxy_port = %d\napp_port = %d\n'
                           % (first, app_port))
    config = proj / ".air.toml"
    air = run_air([], proj, env={"PORT": str(app_port)})
    wait_until(lambda: serves(first, "one"), timeout=15, what="the proxy", output=air.output)
    # the same port again: the new proxy binds where the old one listened
    config.write_text(config.read_text().replace("[build]", "[build]\nargs_bin = [\"again\"]"))
    wait_until(lambda: serves(first, "one - again"), timeout=15, what="the proxy after a reload",
               output=air.output)
    config.write_text(config.read_text().replace("proxy_port = %d" % first, "proxy_port = %d" % second))
    wait_until(lambda: serves(second, "one"), timeout=15, what="the proxy on its new port",
               output=air.output)
    assert http_get(first, timeout=1.0) is None  # the old listener is closed
    air.signal(signal.SIGINT)
    assert_clean_exit(air)


def test_an_env_file_that_is_a_fifo_is_refused_at_start(tmp_path, run_air):
    proj, port = make_project(tmp_path, top='env_files = ["pipe.env"]')
    os.mkfifo(str(proj / "pipe.env"))
    air = run_air([], proj, env={"PORT": str(port)})
    assert air.wait(10) == 1, air.output()
    err = air.stderr().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("air_std: error: env_files entry 'pipe.env'"), err
    assert "is a FIFO (named pipe), not a regular file" in err[0]


def test_reading_env_files_never_blocks_on_a_fifo(tmp_path, caplog):
    os.mkfifo(str(tmp_path / "pipe.env"))
    (tmp_path / "big.env").write_text("A=%s\n" % ("x" * envfile.MAX_ENV_BYTES))
    (tmp_path / "ok.env").write_text("B=1\n")
    result = []
    reader = threading.Thread(target=lambda: result.append(
        envfile.load(["pipe.env", "big.env", "ok.env"], str(tmp_path), environ={})), daemon=True)
    reader.start()
    reader.join(5)
    assert result, "envfile.load blocked on a FIFO"
    assert result[0] == {"B": "1"}
    assert "pipe.env is a FIFO (named pipe)" in caplog.text and "big.env has" in caplog.text


# Fails at once on its first three runs, then runs for a while before failing,
# then fails at once again: the count starts afresh after the long run.
CRASHING_APP = '''
import sys, time
with open("runs.log", "a") as f:
    f.write("x")
runs = len(open("runs.log").read())
if runs == 4:
    time.sleep(3.5)
sys.exit(3)
'''


def test_rerun_backs_off_a_crash_loop_and_a_long_run_resets_it(tmp_path, run_air):
    proj, _ = make_project(tmp_path, app=CRASHING_APP, extra_build="rerun = true\nrerun_delay = 100")
    air = run_air([], proj)
    air.wait_for("app crashed 3 times; waiting 0.4s", timeout=15)
    assert "app crashed 1 time; waiting 0.1s" in air.stderr()
    assert "app crashed 2 times; waiting 0.2s" in air.stderr()
    # run 4 lasts 3.5 s: its failure is not a crash in a row; run 5 starts the count again
    wait_until(lambda: len((proj / "runs.log").read_text()) >= 6,
               timeout=20, what="six runs", output=air.output)
    air.wait_for("app crashed 1 time; waiting 0.1s", count=2, timeout=10)
    assert "crashed 4 times" not in air.stderr()
    air.signal(signal.SIGINT)
    assert_clean_exit(air)


def test_an_env_file_replaced_by_a_fifo_while_running_is_skipped_not_waited_for(tmp_path, run_air):
    proj, port = make_project(tmp_path, top='env_files = [".env"]')
    (proj / ".env").write_text("FROM_ENV=file\n")
    air = run_air([], proj, env={"PORT": str(port)})
    wait_until(lambda: serves(port, "one file"), timeout=15, what="the app", output=air.output)
    (proj / ".env").unlink()
    os.mkfifo(str(proj / ".env"))
    # before the fix, the restart opened the FIFO and waited for a writer forever
    wait_until(lambda: serves(port, "one -"), timeout=15, what="the app without the FIFO's values",
               output=air.output)
    assert "env file skipped: %s is a FIFO (named pipe)" % (proj / ".env") in air.stderr()
    air.signal(signal.SIGINT)
    assert_clean_exit(air)


def test_a_reloaded_config_that_cannot_start_stops_air_std_in_one_line(tmp_path, run_air):
    import socket
    from conftest import free_port
    app_port, first = free_port(), free_port()
    proj, _ = make_project(tmp_path, top='[proxy]\nenabled = true\nproxy_port = %d\napp_port = %d\n'
                           % (first, app_port))
    config = proj / ".air.toml"
    air = run_air([], proj, env={"PORT": str(app_port)})
    wait_until(lambda: serves(first, "one"), timeout=15, what="the proxy", output=air.output)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        config.write_text(config.read_text().replace("proxy_port = %d" % first, "proxy_port = %d" % busy))
        assert air.wait(15) == 1, air.output()
    err = air.stderr()
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if "cannot start with the new config" in l]
    assert len(lines) == 1 and str(busy) in lines[0], err


# Ignores SIGTERM, so stopping it takes the whole kill_delay: a reload is still
# stopping it when the test's Ctrl-C arrives.
STUBBORN_APP = '''
import os, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("starts.log", "a") as f:
    f.write("%d\\n" % os.getpid())
signal.sigwait([signal.SIGUSR2])
'''


def test_ctrl_c_during_a_reload_stops_everything_and_runs_post_cmd(tmp_path, run_air):
    proj, _ = make_project(tmp_path, app=STUBBORN_APP, kill_delay="2s",
                           extra_build='post_cmd = ["echo bye >> post.log"]')
    config = proj / ".air.toml"
    air = run_air([], proj)
    wait_until(lambda: count_lines(proj / "starts.log") == 1, timeout=15, what="the app",
               output=air.output)
    config.write_text(config.read_text().replace("[build]", "[build]\nargs_bin = [\"new\"]"))
    air.wait_for("restarting with the new config")
    air.signal(signal.SIGINT)
    assert air.wait(15) == 0, air.output()
    err = air.stderr()
    assert "shutting down (SIGINT)" in err and "Traceback" not in err, err
    assert count_lines(proj / "starts.log") == 1  # no app from the new config
    assert count_lines(proj / "post.log") == 1  # air_std exited: post_cmd ran, once


def test_a_config_change_counts_once_the_file_has_settled(tmp_path):
    from air_std.configwatch import ConfigWatch
    config, env = tmp_path / ".air.toml", tmp_path / ".env"
    config.write_text("[build]\ncmd = 'make'\n")
    wakes = []
    watch = ConfigWatch(str(config), [str(env)], lambda: wakes.append(1))
    config.write_text("")  # an editor's first half of a save: truncated
    watch.check()
    config.write_text("[build]\ncmd = 'make all'\n")
    watch.check()
    assert watch.events.empty() and not wakes  # still moving: nothing yet
    watch.check()
    assert watch.events.get_nowait() == ("config", str(config)) and wakes == [1]
    watch.check()
    assert watch.events.empty()  # one event per change
    env.write_text("A=1\n")  # an env file created after start counts too
    watch.check()
    watch.check()
    assert watch.events.get_nowait() == ("env", str(env))
