"""What the watcher watches, through the real CLI: the built binary is never
a change (include_ext = ["*"]), and an include_dir outside root is watched
with the same filters as root, or named at start when it does not exist.

Each test waits for a state (a line in a log file the build writes, a line
of air_std's output), never for a time window. A change that must *not*
start a build is followed by one that must, so that its absence is checked
once the watcher has certainly seen it.
"""

import signal
import sys
import textwrap

import pytest

from air_std.filters import PathFilter
from conftest import wait_until

e2e = pytest.mark.e2e  # through the CLI; the tests without a thread are unit tests

PY = sys.executable

# The build: note it in ../out/builds, then write the "binary" (a shell
# script running app.py) in place, with the build's number in it, so every
# build changes its content, size and mtime.
BUILD = textwrap.dedent('''
    import os, sys
    out, binary = sys.argv[1], sys.argv[2]
    with open(out, "a") as f:
        f.write("build\\n")
    n = sum(1 for _ in open(out))
    with open(binary, "w") as f:
        f.write("#!/bin/sh\\n# build %d\\nexec %s app.py\\n" % (n, sys.executable))
    os.chmod(binary, 0o755)
''')
APP = "import time\nwhile True:\n    time.sleep(1)\n"


def project(tmp_path, build):
    tools, out, proj = tmp_path / "tools", tmp_path / "out", tmp_path / "proj"
    for d in (tools, out, proj):
        d.mkdir()
    (tools / "build.py").write_text(BUILD)
    (proj / "app.py").write_text(APP)
    (proj / ".air.toml").write_text(textwrap.dedent(build).format(py=PY, tools=tools, out=out))
    return proj, out


def builds(out):
    try:
        return len((out / "builds").read_text().splitlines())
    except FileNotFoundError:
        return 0


def rebuild_lines(air):
    """The main build's "... changed; rebuilding" lines, without the part's prefix."""
    return [line.split("| ", 1)[-1] for line in air.stderr().splitlines()
            if line.endswith("changed; rebuilding")]


def stop(air):
    air.signal(signal.SIGINT)
    assert air.wait(15) == 0, air.output()
    assert "Traceback" not in air.stderr(), air.output()


@e2e
@pytest.mark.parametrize("run_it", [
    'bin = "./server"',
    'entrypoint = ["./server"]',
    'full_bin = "APP_MODE=dev ./server --verbose"',
], ids=["bin", "entrypoint", "full_bin"])
def test_the_built_binary_never_starts_a_build(tmp_path, run_air, run_it):
    proj, out = project(tmp_path, '''
        [build]
        cmd = "{py} {tools}/build.py {out}/builds server"
        %s
        include_ext = ["*"]
        delay = 50
        poll_interval = 100
        ''' % run_it)
    air = run_air([], proj)
    for n, trigger in enumerate(["one.txt", "two.txt"], start=2):
        # The previous build rewrote ./server before the app started; this
        # file is written after that, so the watcher sees both by the time it
        # reports this one.
        air.wait_for("running ", count=n - 1, timeout=20)
        (proj / trigger).write_text("x\n")
        wait_until(lambda: builds(out) >= n, timeout=20, what="build %d" % n, output=air.output)
    air.wait_for("running ", count=3, timeout=20)
    assert rebuild_lines(air) == ["one.txt changed; rebuilding", "two.txt changed; rebuilding"], \
        air.output()
    assert builds(out) == 3, air.output()
    stop(air)


@e2e
@pytest.mark.parametrize("watcher", ["poll", "inotify"])
def test_an_include_dir_outside_root_is_watched(tmp_path, run_air, watcher):
    shared = tmp_path / "shared"
    (shared / "gen").mkdir(parents=True)
    proj, out = project(tmp_path, '''
        [build]
        cmd = "{py} {tools}/build.py {out}/builds server"
        bin = "./server"
        include_ext = ["py"]
        include_dir = ["../shared", "../missing"]
        exclude_dir = ["../shared/gen"]
        delay = 50
        poll_interval = 100
        watcher = "%s"
        ''' % watcher)
    air = run_air([], proj)
    air.wait_for("running ", timeout=20)
    err = air.stderr()
    assert "build.include_dir: ../missing does not exist or is not a directory; not watched" in err
    assert "also watching %s (outside root)" % shared in err
    (shared / "gen" / "skipped.py").write_text("x = 1\n")  # exclude_dir holds there too
    (shared / "lib.py").write_text("x = 1\n")
    wait_until(lambda: builds(out) >= 2, timeout=20, what="the rebuild", output=air.output)
    air.wait_for("running ", count=2, timeout=20)
    # root itself is still watched whole: include_dir outside root does not narrow it
    (proj / "main.py").write_text("x = 1\n")
    wait_until(lambda: builds(out) >= 3, timeout=20, what="the rebuild", output=air.output)
    assert rebuild_lines(air) == ["../shared/lib.py changed; rebuilding",
                                  "main.py changed; rebuilding"], air.output()
    stop(air)


@e2e
def test_an_include_dir_holding_root_is_refused(tmp_path, run_air):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".air.toml").write_text('[build]\ninclude_dir = ["src", "/"]\n')
    air = run_air([], proj)
    assert air.wait(10) == 1, air.output()
    err = air.stderr().strip()
    assert err.startswith("air_std: error: .air.toml: build.include_dir: '/' holds root") and \
        len(err.splitlines()) == 1, err


# ---------------------------------------------------------------- the filter, no thread

def test_outside_trees_use_the_same_filters():
    f = PathFilter(include_ext=["go"], include_dir=["../shared", "../shared/sub", "src", "../.hidden"],
                   exclude_dir=["../shared/vendor"], exclude_file=["../shared/skip.go"],
                   exclude_regex=["_test\\.go$"])
    assert [t.rel for t in f.trees] == ["", "../shared"]  # ../shared/sub is walked from ../shared
    assert f.notes == ["build.include_dir: ../.hidden is a hidden directory, which Air never "
                       "watches; not watched"]
    watched = [p for p in ("../shared/a.go", "../shared/sub/b.go", "../shared/vendor/c.go",
                           "../shared/skip.go", "../shared/a_test.go", "../shared/.git/d.go",
                           "../shared/e.txt", "src/f.go", "g.go", "../other/h.go")
               if f.watches(p)]
    # inside root, include_dir still narrows the walk to src
    assert watched == ["../shared/a.go", "../shared/sub/b.go", "src/f.go"]


def test_the_binary_is_left_out_only_by_the_wildcard():
    everything = PathFilter(include_ext=["*"], bin_files=["server", "bin/app"], include_file=["bin/app"])
    assert [everything.watches(p) for p in ("server", "bin/app", "sub/server", "main.go")] == [
        False, True, True, True]   # include_file still names it
    listed = PathFilter(include_ext=["py"], bin_files=["server.py"])
    assert listed.watches("server.py")  # Air's isIncludeExt: only "*" leaves the binary out
