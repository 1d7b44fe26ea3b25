"""The config fuzzer: mutations of the .air.toml corpus (byte flips, type swaps,
deep nesting, NUL bytes, huge numbers, spliced and dropped lines, hostile
paths and flags), each loaded with load_config() and printed with
--print-config. Every case must end in a config or in one line naming the
file or flag, with exit status 0 or 1: never another exception, never a hang.

`make test` runs AIR_FUZZ_CASES (default 300) cases from a fixed seed, in
process, on both TOML paths (tomllib where the Python has it, and air_std's
own reader, which must agree with it), and a few through the real CLI.
`make fuzz` runs many more from a fresh seed. A failure names the seed and
the case number: AIR_FUZZ_SEED=S AIR_FUZZ_ONLY=N replays that one case.
"""

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import traceback

import pytest

from air_std import cli, tomlread
from air_std.config import load_config
from air_std.errors import ConfigError
from conftest import REPO

SEED = int(os.environ.get("AIR_FUZZ_SEED", "20261130"))
CASES = int(os.environ.get("AIR_FUZZ_CASES", "300"))
ONLY = os.environ.get("AIR_FUZZ_ONLY")
# The real CLI gets one case of each of these mutations: the first case the seed
# makes with that mutation alone.
CLI_MUTATIONS = ("deep", "nul", "huge", "hostile", "flip", "dotted")
# A bound on one case, not a measure of speed: a config loads in milliseconds,
# so a case still running after this long is a hang, whatever the machine's load.
HANG_S = 20

try:
    import tomllib  # noqa: F401
    PATHS = ("tomllib", "fallback")
except ImportError:  # Python < 3.11: the fallback is the only reader
    PATHS = ("fallback",)


# ---------------------------------------------------------------- the mutator

SCALARS = ['""', '"x"', "0", "-1", "1.5", "true", "false", "[]", "{}", '["a", 1]', "1979-05-27",
           "07:32:00", "1979-05-27T07:32:00Z", "inf", "nan", "-0.0", "'''\nmulti\n'''", "{ a = 1 }",
           "[[1], [2]]", '[{ cmd = "x" }]', '"500ms"', '"1h2m3.5s"', '"-5s"', '"1e3s"', "0x7f", "0o17",
           "0b101", "1_000", "+42"]
HOSTILE_STRINGS = ["../../elsewhere/notes.txt", "/etc/passwd", "/", ".", "..", "~", "~/x", "a/../../b",
                   "\\u0000", "a\\u0000b", "\\u001b[31m", "\\ud7ff", "\\U0001F600", "$(rm -rf /)", "`id`",
                   "*", "**/*", "(((", "[a-", "\\\\", "tmp/", " ", "\\t\\n", "C:\\\\x"]
TOKENS = ["[", "]", "{", "}", "=", ",", ".", '"', "'", "#", "\\", "\n", "\r\n", "\r", "\t", " ", "\x00",
          "\x7f", "\ufeff", "\u2028", '"""', "'''", "[[", "]]", "[build]", "[proxy]", "[[build.rules]]",
          "[build.linux]", "true", "1e999", "-", "+", "_", "0x", "\xe9"]
KEYS = ["root", "tmp_dir", "testdata_dir", "env_files", "cmd", "pre_cmd", "post_cmd", "bin", "entrypoint",
        "full_bin", "args_bin", "include_ext", "exclude_dir", "include_dir", "include_file", "exclude_file",
        "exclude_regex", "log", "delay", "kill_delay", "rerun_delay", "poll_interval", "watcher",
        "proxy_port", "app_port", "app_start_timeout", "bind", "enabled", "clean_on_exit", "main_only",
        "startup_banner", "keep_scroll", "rules", "linux", "name", "x"]
FLAGS = ["root", "tmp_dir", "env_files", "build.cmd", "build.pre_cmd", "build.entrypoint", "build.log",
         "build.delay", "build.kill_delay", "build.exclude_regex", "build.include_ext", "build.poll",
         "build.watcher", "build.linux.cmd", "build.windows.delay", "proxy.enabled", "proxy.proxy_port",
         "proxy.app_port", "proxy.bind", "misc.clean_on_exit", "color.mode", "build.rules", "nope.key"]
FLAG_VALUES = ["", "0", "-1", "1", "true", "maybe", "9" * 40, "9" * 5000, "1.5", "500ms", "1e400s",
               "a\0b", "../../x", "/abs", "(" * 1200 + ")" * 1200, "a,,b,", ",", "x" * 100000,
               "inotify", "poll", "0x10", "\u00e9", " 42 "]


def huge_number(rnd):
    digits = rnd.choice([19, 20, 30, 31, 400, 4300, 4301, 20000])
    sign = rnd.choice(["", "-", "+"])
    kind = rnd.randrange(4)
    if kind == 0:
        return sign + "9" * digits
    if kind == 1:
        return sign + "1" + "0" * digits + ".5e" + rnd.choice(["999", "-999", "308", "309"])
    if kind == 2:
        return '"%s%s%s"' % (sign, "9" * digits, rnd.choice(["ms", "s", "h", "ns", ".9s", "us"]))
    return '"0.%ss"' % ("9" * digits)


def deep_value(rnd):
    depth = rnd.choice([2, 31, 32, 33, 64, 65, 200, 600, 3000])
    opening, closing = rnd.choice([("[", "]"), ("{a=", "}"), ("[{a=", "}]"), ("{a=[", "]}")])
    inner = rnd.choice(['"x"', "1", "", "[]"])
    closed = rnd.random() < 0.8
    return opening * depth + inner + (closing * depth if closed else "")


def value_lines(lines):
    return [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]


def replace_value(rnd, lines, new):
    candidates = value_lines(lines)
    if not candidates:
        lines.append("%s = %s" % (rnd.choice(KEYS), new))
        return
    i = rnd.choice(candidates)
    key = lines[i].split("=", 1)[0]
    lines[i] = "%s= %s" % (key, new)


def mutate(rnd, text, other):
    """One mutated document (bytes) and the names of the mutations applied."""
    applied = []
    for _ in range(rnd.choice([1, 1, 2, 3, 5])):
        op = rnd.choice(["flip", "bytes", "token", "type", "deep", "nul", "huge", "hostile", "key",
                         "dup", "drop", "swap", "splice", "truncate", "header", "dotted", "long"])
        applied.append(op)
        lines = text.split("\n")
        if op == "flip" and text:
            data = bytearray(text.encode("utf-8", "surrogatepass"))
            for _ in range(rnd.randint(1, 8)):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
            return mutate_bytes_done(rnd, bytes(data), applied)
        if op == "bytes":
            data = bytearray(text.encode("utf-8", "surrogatepass"))
            pos = rnd.randint(0, len(data))
            data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 6)))
            return mutate_bytes_done(rnd, bytes(data), applied)
        if op == "token":
            pos = rnd.randint(0, len(text))
            text = text[:pos] + rnd.choice(TOKENS) + text[pos + rnd.choice([0, 0, 1]):]
            continue
        if op == "type":
            replace_value(rnd, lines, rnd.choice(SCALARS))
        elif op == "deep":
            replace_value(rnd, lines, deep_value(rnd))
        elif op == "nul":
            if rnd.random() < 0.5:
                replace_value(rnd, lines, '"%s"' % rnd.choice(["\\u0000", "a\\u0000b", "./\\u0000x"]))
            else:
                pos = rnd.randint(0, len(text))
                text = text[:pos] + "\x00" + text[pos:]
                continue
        elif op == "huge":
            replace_value(rnd, lines, huge_number(rnd))
        elif op == "hostile":
            value = rnd.choice(HOSTILE_STRINGS)
            replace_value(rnd, lines, rnd.choice(['"%s"' % value, '["%s"]' % value, "'%s'" % value]))
        elif op == "key":
            line = "%s = %s" % (rnd.choice(KEYS), rnd.choice(SCALARS + ['"%s"' % rnd.choice(HOSTILE_STRINGS)]))
            lines.insert(rnd.randint(0, len(lines)), line)
        elif op in ("dup", "drop", "swap") and lines:
            i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            if op == "dup":
                lines.insert(j, lines[i])
            elif op == "drop":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
        elif op == "splice":
            theirs = other.split("\n")
            start = rnd.randrange(len(theirs))
            lines[rnd.randint(0, len(lines)):0] = theirs[start:start + rnd.randint(1, 10)]
        elif op == "truncate":
            text = text[:rnd.randint(0, len(text))]
            continue
        elif op == "header":
            header = rnd.choice(["[build]", "[build.linux]", "[build.darwin]", "[[build.rules]]", "[proxy]",
                                 "[build.rules]", "[[build]]", "[color]", "[misc]", "[log]", "[screen]",
                                 "[build.linux.x]", "[root]", "[ build . windows ]"])
            lines.insert(rnd.randint(0, len(lines)), header)
        elif op == "dotted":
            key = rnd.choice(["build", "proxy", "root", "build.rules", "x"]) + "." + ".".join(
                rnd.choice(KEYS) for _ in range(rnd.choice([1, 2, 3, 70, 2000])))
            lines.insert(rnd.randint(0, len(lines)), "%s = %s" % (key, rnd.choice(SCALARS)))
        elif op == "long":
            replace_value(rnd, lines, '"%s"' % ("x" * rnd.choice([1000, 100000, 2000000])))
        text = "\n".join(lines)
    return text.encode("utf-8", "surrogatepass"), applied


def mutate_bytes_done(rnd, data, applied):
    if rnd.random() < 0.1:
        data = b"\xef\xbb\xbf" + data  # a BOM
    return data, applied


def overrides(rnd):
    """A few hostile --KEY VALUE flags (as cli.parse_args would give them)."""
    return [(rnd.choice(FLAGS), rnd.choice(FLAG_VALUES)) for _ in range(rnd.choice([0, 0, 0, 1, 2]))]


def make_case(number, sources):
    rnd = random.Random("%d:%d" % (SEED, number))
    source = rnd.choice(sources)
    other = rnd.choice(sources)
    text = source.read_bytes().decode("utf-8", "replace")
    data, applied = mutate(rnd, text, other.read_bytes().decode("utf-8", "replace"))
    return data, overrides(rnd), "%s via %s" % (source.name, "+".join(applied))


def case_numbers():
    return [int(ONLY)] if ONLY is not None else range(CASES)


def cli_case_numbers(sources):
    numbers = []
    for mutation in CLI_MUTATIONS:
        numbers.append(next(n for n in range(10000)
                            if make_case(n, sources)[2].endswith(" via " + mutation)))
    return numbers


# ---------------------------------------------------------------- running a case

class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds):
    def on_alarm(signum, frame):
        raise Hang("still running after %ds" % seconds)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def load_outcome(path, flags, cwd):
    """("ok", None) or ("error", message); any other exception escapes."""
    try:
        cfg = load_config(str(path), flags, cwd=str(cwd), env={})
        assert all(warning.isprintable() for warning in cfg.warnings), cfg.warnings
        return ("ok", None)
    except ConfigError as exc:
        message = str(exc)
        assert message and message.isprintable(), repr(message)  # one line, whatever it quotes
        return ("error", message)


def print_config(path, flags, cwd):
    argv = ["-c", str(path), "--print-config"]
    argv += ["--%s=%s" % flag for flag in flags]  # one word each: a value never becomes an app argument
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(str(cwd))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        os.chdir(old)
    errors = [line for line in err.getvalue().splitlines() if not line.startswith("air_std: warning: ")]
    if code == 0:
        assert not errors, err.getvalue()
        json.loads(out.getvalue())
    else:
        assert code == 1 and out.getvalue() == "", (code, out.getvalue()[:200])
        assert len(errors) == 1 and errors[0].startswith("air_std: error: "), err.getvalue()[:2000]
    return code


def run_case(number, sources, tmp_path, monkeypatch):
    data, flags, what = make_case(number, sources)
    path = tmp_path / ("case-%d.toml" % number)
    path.write_bytes(data)
    outcomes = {}
    with bounded(HANG_S):
        for reader in PATHS:
            monkeypatch.setattr(tomlread, "_FORCE_FALLBACK", reader == "fallback")
            outcomes[reader] = load_outcome(path, flags, tmp_path)
        code = print_config(path, flags, tmp_path)
    kinds = {reader: outcome[0] for reader, outcome in outcomes.items()}
    assert len(set(kinds.values())) == 1, "the TOML paths disagree: %s" % outcomes
    assert code == (0 if kinds[PATHS[-1]] == "ok" else 1)
    path.unlink()
    return what


def sources_of(corpus):
    return sorted(corpus.glob("*.toml")) + sorted((corpus / "invalid").glob("*.toml"))


def test_mutated_configs_load_or_fail_in_one_line(corpus, tmp_path, monkeypatch):
    sources = sources_of(corpus)
    failures = []
    for number in case_numbers():
        try:
            run_case(number, sources, tmp_path, monkeypatch)
        except (AssertionError, Exception, Hang) as exc:  # collect them all, report the first few
            data, flags, what = make_case(number, sources)
            failures.append("case %d (%s; flags %r): %s\n%s" % (
                number, what, [(k, v[:40]) for k, v in flags], type(exc).__name__,
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])[-1500:]))
    assert not failures, "%d of %d cases failed (AIR_FUZZ_SEED=%d; replay one with AIR_FUZZ_ONLY=N):\n%s" % (
        len(failures), len(case_numbers()), SEED, "\n".join(failures[:5]))


@pytest.mark.e2e
def test_mutated_configs_through_the_real_cli(corpus, tmp_path):
    sources = sources_of(corpus)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for number in cli_case_numbers(sources):
        data, flags, what = make_case(number, sources)
        path = tmp_path / ("case-%d.toml" % number)
        path.write_bytes(data)
        argv = [sys.executable, "-m", "air_std", "-c", str(path), "--print-config"]
        for dotted, value in flags:
            argv.append("--%s=%s" % (dotted, value.replace("\0", "")))  # argv cannot carry NUL
        done = subprocess.run(argv, cwd=str(tmp_path), env=env, capture_output=True, timeout=60)
        err = done.stderr.decode("utf-8", "replace")
        assert done.returncode in (0, 1), (what, done.returncode, err[-2000:])
        assert "Traceback" not in err, (what, err[-2000:])
        assert all(line.startswith("air_std: ") for line in err.splitlines()), (what, err[-2000:])

