"""Tests for air_std.config, schema and kinds: the corpus, Air's defaults and merge
rules, kill_delay, platform blocks, unknown keys, type errors, overrides, air_wd, the
frozen config objects and the one declaration per key they derive from."""

import dataclasses
import json
import os
import re

import pytest

from conftest import CORPUS, corpus_files
from air_std import config, schema
from air_std.config import Config, config_to_dict, load_config
from air_std.errors import ConfigError
from air_std.kinds import kill_delay_seconds, parse_go_duration

VALID = corpus_files()
INVALID = corpus_files("invalid")
ON_LINUX = config.current_platform() == "linux"



def other_warnings(cfg):
    """The warnings besides Air's build.bin deprecation (which most files here get)."""
    return tuple(w for w in cfg.warnings if "build.bin is deprecated" not in w)

def write(tmp_path, text, name=".air.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path, text, overrides=None, env=None):
    """Write text as tmp_path/.air.toml and load it the way the CLI does (found in cwd)."""
    write(tmp_path, text)
    return load_config(overrides=overrides, cwd=str(tmp_path), env=env or {})


def error_of(tmp_path, text, overrides=None):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- corpus

def test_corpus_is_present(corpus):
    assert len(VALID) >= 100 and len(INVALID) == 3


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_corpus_file_loads(path, tmp_path, corpus):
    cfg = load_config(str(path), cwd=str(tmp_path), env={})
    assert cfg.config_path == str(path)
    for warning in cfg.warnings:
        assert str(path) in warning and ("unknown" in warning or "build.bin is deprecated" in warning)
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert list(data)[:4] == ["root", "tmp_dir", "testdata_dir", "env_files"]
    assert cfg.build.kill_delay_s >= 0
    assert os.path.isabs(cfg.root_path) and os.path.isabs(cfg.tmp_path)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_corpus_files_fail_with_line_and_column(path, tmp_path, corpus):
    with pytest.raises(ConfigError) as info:
        load_config(str(path), cwd=str(tmp_path), env={})
    message = str(info.value)
    assert re.match(r"^%s:\d+:\d+: invalid TOML: \S" % re.escape(str(path)), message), message
    assert "\n" not in message


def test_invalid_toml_positions_match_the_corpus_notes(tmp_path, corpus):
    messages = {p.name: "" for p in INVALID}
    for path in INVALID:
        try:
            load_config(str(path), cwd=str(tmp_path), env={})
        except ConfigError as exc:
            messages[path.name] = str(exc)
    assert ":6:13: invalid TOML:" in messages["004_air-verse__air.toml"]
    assert ":9:30: invalid TOML:" in messages["060_dsxwk__gin.toml"]
    assert ":15:13: invalid TOML:" in messages["086_LLiuHuan__gin-vue-element-admin-typescript.toml"]


def test_air_example_values(tmp_path, corpus):
    cfg = load_config(str(CORPUS / "001_air-verse__air.toml"), cwd=str(tmp_path), env={})
    b = cfg.build
    assert b.pre_cmd == ("echo 'hello air' > pre_cmd.txt",)
    assert b.entrypoint == ("./tmp/main",) and b.args_bin == ("hello", "world")
    assert b.full_bin == "APP_ENV=dev APP_USER=air ./tmp/main"
    assert b.exclude_dir == ("assets", "tmp", "vendor", "frontend/node_modules")
    assert b.exclude_regex == ("_test\\.go",)
    assert b.exclude_regex_compiled[0].search("x/main_test.go")
    assert b.kill_delay == 500 and b.kill_delay_s == 0.5
    assert b.poll_interval_s == 0.5
    assert b.delay == 0             # as written (Air's mergo would turn it into 1000)
    assert cfg.env_files == (".env",)
    assert cfg.proxy.enabled and (cfg.proxy.proxy_port, cfg.proxy.app_port) == (8090, 8080)
    assert cfg.misc.clean_on_exit and cfg.screen.clear_on_rebuild
    assert cfg.warnings == ()


# ---------------------------------------------------------------- defaults

def test_defaults_without_a_file(tmp_path):
    cfg = load_config(cwd=str(tmp_path), env={})
    assert cfg.config_path is None and cfg.warnings == ()
    assert cfg.root == "." and cfg.root_path == str(tmp_path)
    assert cfg.tmp_path == str(tmp_path / "tmp") and cfg.testdata_path == str(tmp_path / "testdata")
    b = cfg.build
    assert b.cmd == "go build -o ./tmp/main ." and b.bin == "./tmp/main"
    assert b.include_ext == ("go", "tpl", "tmpl", "html")
    assert b.exclude_dir == ("assets", "tmp", "vendor", "testdata")
    assert b.exclude_regex == ("_test.go",) and b.entrypoint == () and b.rules == ()
    assert (b.delay_s, b.rerun_delay_s, b.kill_delay_s, b.poll_interval_s) == (1.0, 0.5, 0.0, None)
    assert b.log == "build-errors.log" and not b.stop_on_error and not b.poll
    assert (cfg.color.main, cfg.color.watcher, cfg.color.build, cfg.color.runner) == (
        "magenta", "cyan", "yellow", "green")
    assert cfg.screen.keep_scroll and not cfg.screen.clear_on_rebuild
    assert cfg.misc.startup_banner is None
    assert cfg.proxy.app_start_timeout == 5000 and cfg.proxy.app_start_timeout_s == 5.0
    assert cfg.proxy.bind == "127.0.0.1"
    assert config_to_dict(cfg) == config_to_dict(Config(root_path=str(tmp_path)))


def test_config_built_by_hand_fills_paths(tmp_path):
    cfg = Config(root=str(tmp_path), tmp_dir="out")
    assert cfg.root_path == str(tmp_path) and cfg.tmp_path == str(tmp_path / "out")


def test_empty_file_gives_defaults(tmp_path):
    cfg = load(tmp_path, "")
    assert cfg.config_path == str(tmp_path / ".air.toml")
    assert config_to_dict(cfg) == config_to_dict(load_config(cwd=str(tmp_path / "nowhere"), env={}))


def test_zero_values_fall_back_to_airs_defaults_like_mergo(tmp_path):
    cfg = load(tmp_path, """
tmp_dir = ""
testdata_dir = ""
[build]
cmd = ""
bin = ""
include_ext = []
exclude_dir = []
exclude_regex = []
delay = 0
rerun_delay = 0
pre_cmd = []
[color]
main = ""
app = ""
[screen]
keep_scroll = false
[proxy]
app_start_timeout = 0
""")
    b = cfg.build
    assert (cfg.tmp_dir, cfg.testdata_dir) == ("tmp", "testdata")
    assert b.cmd == "go build -o ./tmp/main ." and b.bin == "./tmp/main"
    assert b.include_ext == ("go", "tpl", "tmpl", "html")
    assert b.exclude_dir == ("assets", "tmp", "vendor", "testdata")
    assert b.exclude_regex == ("_test.go",)
    # numbers and booleans are taken as written (Air's mergo would make delay 1000)
    assert (b.delay, b.rerun_delay, b.pre_cmd) == (0, 0, ())
    assert (cfg.color.main, cfg.color.app) == ("magenta", "")
    assert cfg.screen.keep_scroll is False
    assert cfg.proxy.app_start_timeout_s == 5.0   # 0 means Air's default wait


def test_lists_and_paths_are_cleaned(tmp_path):
    cfg = load(tmp_path, """
[build]
exclude_dir = ["./web/node_modules/", " tmp ", "a//b"]
include_ext = [".go", "*", "py"]
""")
    assert cfg.build.exclude_dir == ("web/node_modules", "tmp", "a/b")
    assert cfg.build.include_ext == ("go", "*", "py")


def test_root_is_relative_to_cwd_and_tilde_expands(tmp_path):
    cfg = load(tmp_path, 'root = "src"\ntmp_dir = "build/tmp"\n')
    assert cfg.root_path == str(tmp_path / "src")
    assert cfg.tmp_path == str(tmp_path / "src" / "build" / "tmp")
    cfg = load(tmp_path, 'root = "~/proj"\n')
    assert cfg.root_path == os.path.join(os.path.expanduser("~"), "proj")


def test_bom_and_crlf_are_accepted(tmp_path):
    (tmp_path / ".air.toml").write_bytes(b'\xef\xbb\xbfroot = "."\r\n[build]\r\ncmd = "make"\r\n')
    cfg = load_config(cwd=str(tmp_path), env={})
    assert cfg.build.cmd == "make"


def test_non_utf8_file_is_a_clean_error(tmp_path):
    (tmp_path / ".air.toml").write_bytes(b'root = "\xff"\n')
    with pytest.raises(ConfigError, match=r"^\.air\.toml: not UTF-8"):
        load_config(cwd=str(tmp_path), env={})


# ---------------------------------------------------------------- kill_delay

# Every kill_delay the .air.toml corpus holds (up to 15000000000), then more forms Go
# accepts. Air's rule makes any value below 1ms a count of milliseconds, so "500us"
# (500000ns) means 500 seconds.
KILL_DELAYS = [
    ('"0s"', 0.0), ("500", 0.5), ('"2s"', 2.0), ('"1s"', 1.0), ('"500ms"', 0.5), ("2000", 2.0),
    ("1000", 1.0), ("100", 0.1), ('"200ms"', 0.2), ("0", 0.0), ("15000000000", 15.0),
    ('"1.5s"', 1.5), ('"1m30s"', 90.0), ('"0"', 0.0), ('"500us"', 500.0), ('"+3s"', 3.0),
    ('"2000000ns"', 0.002), ('"1h"', 3600.0),
]


@pytest.mark.parametrize("toml_value,seconds", KILL_DELAYS)
def test_kill_delay_forms(tmp_path, toml_value, seconds):
    cfg = load(tmp_path, "[build]\nkill_delay = %s\n" % toml_value)
    assert cfg.build.kill_delay_s == pytest.approx(seconds)
    shown = config_to_dict(cfg)["build"]["kill_delay"]
    assert json.dumps(shown) == toml_value          # shown as written


@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("-0", 0), ("1ns", 1), ("1us", 1000), ("1\u00b5s", 1000), ("1\u03bcs", 1000),
    ("1.5s", 1500000000), (".5s", 500000000), ("1.s", 1000000000), ("2h45m", 9900000000000),
    ("-1.5h", -5400000000000), ("1m0.5s", 60500000000), ("1.0000000009s", 1000000000),
])
def test_parse_go_duration(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "5", "1x", ".s", "s", "1.5", "+", "1s2", "1 s",
                                  "3000000h", "- 1s"])
def test_parse_go_duration_rejects(text):
    with pytest.raises(ConfigError, match=r"^build\.kill_delay: expected a duration like '500ms' or '2s', got "):
        parse_go_duration(text)


def test_kill_delay_seconds_follows_air_rule():
    assert kill_delay_seconds(999999) == pytest.approx(999.999)   # below 1ms: counts ms
    assert kill_delay_seconds(1000000) == 0.001
    assert kill_delay_seconds(1234567890) == 1.234                  # truncated to ms


@pytest.mark.parametrize("value,expect", [
    ('"abc"', "build.kill_delay: expected a duration like '500ms' or '2s', got 'abc'"),
    ("-5", "build.kill_delay: expected a duration like '500ms' or '2s', got -5 (must not be negative)"),
    ('"-1s"', "got '-1s' (must not be negative)"),
    ("true", "got true"),
    ("1.5", "got 1.5"),
])
def test_kill_delay_errors(tmp_path, value, expect):
    message = error_of(tmp_path, "[build]\nkill_delay = %s\n" % value)
    assert message.startswith(".air.toml: build.kill_delay: ")
    assert expect in message


# ---------------------------------------------------------------- entrypoint, types

def test_entrypoint_string_or_array(tmp_path):
    assert load(tmp_path, '[build]\nentrypoint = "./tmp/web"\n').build.entrypoint == ("./tmp/web",)
    cfg = load(tmp_path, '[build]\nentrypoint = ["./tmp/main", "serve", "-v"]\n')
    assert cfg.build.entrypoint == ("./tmp/main", "serve", "-v")
    assert load(tmp_path, '[build]\nentrypoint = ""\n').build.entrypoint == ()


@pytest.mark.parametrize("text,expect", [
    ('[build]\ndelay = "abc"', ".air.toml: build.delay: expected an integer (milliseconds), got 'abc'"),
    ('[build]\ndelay = true', ".air.toml: build.delay: expected an integer (milliseconds), got true"),
    ('[build]\ndelay = 1.5', ".air.toml: build.delay: expected an integer (milliseconds), got 1.5"),
    ('[build]\ndelay = -1', ".air.toml: build.delay: expected an integer (milliseconds), got -1"),
    ('[build]\nrerun_delay = "500"', ".air.toml: build.rerun_delay: expected an integer (milliseconds), got '500'"),
    ('[build]\ncmd = ["make"]', ".air.toml: build.cmd: expected a string, got ['make']"),
    ('[build]\npoll = "yes"', ".air.toml: build.poll: expected true or false, got 'yes'"),
    ('[build]\nexclude_dir = "tmp"', ".air.toml: build.exclude_dir: expected an array of strings, got 'tmp'"),
    ('[build]\ninclude_ext = ["go", 1]', ".air.toml: build.include_ext: expected an array of strings, got ['go', 1]"),
    ('[build]\nentrypoint = 5', ".air.toml: build.entrypoint: expected a string or an array of strings, got 5"),
    ('[build]\nentrypoint = ["a", 1]', ".air.toml: build.entrypoint: expected a string or an array of strings"),
    ('[proxy]\nproxy_port = 70000', ".air.toml: proxy.proxy_port: expected a port number (0-65535), got 70000"),
    ('[proxy]\napp_port = -1', ".air.toml: proxy.app_port: expected a port number (0-65535), got -1"),
    ('root = 5', ".air.toml: root: expected a string, got 5"),
    ('env_files = ".env"', ".air.toml: env_files: expected an array of strings, got '.env'"),
    ('build = "make"', ".air.toml: build: expected a table [build], got 'make'"),
    ('[misc]\nstartup_banner = false', ".air.toml: misc.startup_banner: expected a string, got false"),
    ('[screen]\nkeep_scroll = 1', ".air.toml: screen.keep_scroll: expected true or false, got 1"),
])
def test_type_errors_name_file_key_and_value(tmp_path, text, expect):
    assert expect in error_of(tmp_path, text + "\n")


def test_bad_exclude_regex_names_the_entry(tmp_path):
    message = error_of(tmp_path, '[build]\nexclude_regex = ["ok", "(unclosed"]\n')
    assert message.startswith(".air.toml: build.exclude_regex: '(unclosed' is not a valid regular expression (")


def test_proxy_ports_required_and_distinct_when_enabled(tmp_path):
    message = error_of(tmp_path, "[proxy]\nenabled = true\napp_port = 8080\n")
    assert message == ".air.toml: proxy.proxy_port: must be set (1-65535) when proxy.enabled is true"
    message = error_of(tmp_path, "[proxy]\nenabled = true\nproxy_port = 8080\napp_port = 8080\n")
    assert "proxy.proxy_port: must differ from proxy.app_port (both are 8080)" in message
    cfg = load(tmp_path, "[proxy]\nenabled = false\nproxy_port = 0\napp_port = 0\n")
    assert not cfg.proxy.enabled


def test_app_start_timeout(tmp_path):
    assert load(tmp_path, "[proxy]\napp_start_timeout = 2500\n").proxy.app_start_timeout_s == 2.5
    cfg = load(tmp_path, "", overrides=[("proxy.app_start_timeout", "0")])
    assert cfg.proxy.app_start_timeout == 0 and cfg.proxy.app_start_timeout_s == 5.0


def test_poll_interval_keeps_small_values(tmp_path):
    assert load(tmp_path, "[build]\npoll_interval = 100\n").build.poll_interval_s == 0.1
    assert load(tmp_path, "[build]\npoll_interval = 0\n").build.poll_interval_s is None


# ---------------------------------------------------------------- platform blocks, rules

@pytest.mark.skipif(not ON_LINUX, reason="the [build.linux] block applies on Linux only")
def test_platform_block_applies_on_linux(tmp_path):
    cfg = load(tmp_path, """
[build]
cmd = "go build -o ./tmp/main ."
bin = "./tmp/main"
[build.linux]
cmd = "make linux"
exclude_dir = ["dist"]
[build.windows]
cmd = "go build -o ./tmp/main.exe ."
bin = "tmp\\\\main.exe"
""")
    assert cfg.build.cmd == "make linux" and cfg.build.exclude_dir == ("dist",)
    assert cfg.build.bin == "./tmp/main"          # the windows block is not applied
    assert other_warnings(cfg) == ()
    assert "windows" not in config_to_dict(cfg)["build"]


def test_a_rule_delay_of_zero_is_air_s_default(tmp_path):
    # Air's cfgRule.delay(): 0 or unset is 1000 ms
    rules = load(tmp_path, '[[build.rules]]\ncmd = "x"\ninclude_ext = ["css"]\ndelay = 0\n'
                           '[[build.rules]]\ncmd = "y"\ninclude_ext = ["js"]\ndelay = 5\n').build.rules
    assert [schema.RULE_KEY["delay"].seconds(r["delay"]) for r in rules] == [1.0, 0.005]
    # a rule built by hand gets the defaults of the keys it leaves out
    assert dict(config.BuildConfig(rules=[{"cmd": "z"}]).rules[0]) == {
        "name": "rule-0", "cmd": "z", "include_dir": (), "include_ext": (), "include_file": (),
        "exclude_regex": (), "delay": 1000, "restart": False, "reload": False}


def test_include_dirs_holding_root_are_refused(tmp_path):
    assert error_of(tmp_path, '[build]\ninclude_dir = ["..", "src"]\n').startswith(
        ".air.toml: build.include_dir: '..' holds root (%s)" % tmp_path)
    message = error_of(tmp_path, '[[build.rules]]\ncmd = "x"\ninclude_dir = ["%s"]\n' % tmp_path.parent)
    assert message.startswith(".air.toml: build.rules[0].include_dir: '%s' holds root" % tmp_path.parent)
    cfg = load(tmp_path, '[build]\ninclude_dir = [".", "../shared", "%s/src"]\n' % tmp_path)
    assert cfg.build.include_dir == (".", "../shared", "%s/src" % tmp_path)


def test_platform_blocks_are_checked_and_warn(tmp_path):
    message = error_of(tmp_path, '[build.darwin]\ndelay = "x"\n')
    assert message == ".air.toml: build.darwin.delay: expected an integer (milliseconds), got 'x'"
    cfg = load(tmp_path, '[build.windows]\ncmdd = "x"\n')
    assert other_warnings(cfg) == (
        "build.windows.cmdd: unknown key in .air.toml (did you mean build.windows.cmd?); ignored",)


def test_build_rules_load_and_are_checked(tmp_path):
    cfg = load(tmp_path, """
[[build.rules]]
name = "assets"
cmd = "npm run build"
include_dir = ["web"]
include_ext = ["js", "css"]
delay = 200
[[build.rules]]
cmd = "go generate ./..."
include_file = ["api.proto"]
name = ""
""")
    assert [r["name"] for r in cfg.build.rules] == ["assets", "rule-1"]
    assert cfg.build.rules[0]["include_ext"] == ("js", "css") and cfg.build.rules[0]["delay"] == 200
    assert cfg.build.rules[1]["include_dir"] == () and cfg.build.rules[1]["delay"] == 1000
    assert config_to_dict(cfg)["build"]["rules"][1]["cmd"] == "go generate ./..."
    message = error_of(tmp_path, '[[build.rules]]\nname = "x"\n')
    assert message.startswith(".air.toml: build.rules[0]: cmd is required")
    # Air's normalizeRules: a rule must say which files run it
    message = error_of(tmp_path, '[[build.rules]]\ncmd = "x"\nexclude_regex = ["a"]\n')
    assert message == (".air.toml: build.rules[0]: needs at least one of include_dir, include_ext "
                       "or include_file (the files that run it)")
    message = error_of(tmp_path, '[[build.rules]]\ncmd = "x"\ninclude_ext = ["go"]\nexclude_regex = ["["]\n')
    assert message.startswith(".air.toml: build.rules[0].exclude_regex: '[' is not a valid regular expression")
    cfg = load(tmp_path, '[[build.rules]]\ncmd = "x"\ninclude_dir = ["web"]\nincludes = []\n')
    assert "build.rules[0].includes: unknown key" in cfg.warnings[0]
    assert len(load(tmp_path, '[build.rules]\ncmd = "x"\ninclude_ext = ["*"]\n').build.rules) == 1
    assert "expected an array of tables" in error_of(tmp_path, "[build]\nrules = 3\n")


def test_startup_banner(tmp_path):
    assert load(tmp_path, '[misc]\nstartup_banner = "hi"\n').misc.startup_banner == "hi"
    assert load(tmp_path, '[misc]\nstartup_banner = ""\n').misc.startup_banner == ""


# ---------------------------------------------------------------- unknown keys

def test_unknown_keys_warn_with_did_you_mean(tmp_path):
    cfg = load(tmp_path, """
tmp_folder = "."
watch_dir = ""
[build]
follow_symlinks = false
tmp_dir = "tmp"
pre_cmds = ["x"]
[build.extra]
a = 1
[log]
color = true
[coalor]
main = "x"
[watch]
delay = 1000
[proxy]
bind = "0.0.0.0"
""")
    assert other_warnings(cfg) == (
        "tmp_folder: unknown key in .air.toml (did you mean tmp_dir?); ignored",
        "watch_dir: unknown key in .air.toml; ignored",
        "build.follow_symlinks: unknown key in .air.toml (did you mean build.follow_symlink?); ignored",
        "build.tmp_dir: unknown key in .air.toml (did you mean tmp_dir?); ignored",
        "build.pre_cmds: unknown key in .air.toml (did you mean build.pre_cmd?); ignored",
        "[build.extra]: unknown table in .air.toml; ignored",
        "log.color: unknown key in .air.toml; ignored",
        "[coalor]: unknown table in .air.toml (did you mean color?); ignored",
        "[watch]: unknown table in .air.toml; ignored",
    )
    assert cfg.proxy.bind == "0.0.0.0"
    assert other_warnings(load(tmp_path, '[log]\ncolor = "auto"\n')) == (
        "log.color: unknown key in .air.toml; ignored",)


# ---------------------------------------------------------------- overrides

def test_overrides_convert_each_type(tmp_path):
    cfg = load(tmp_path, '[build]\ncmd = "go build"\nexclude_dir = ["x"]\n', overrides=[
        ("build.cmd", "make"), ("build.poll", "YES"), ("build.stop_on_error", "0"),
        ("build.delay", "0"), ("build.kill_delay", "2s"), ("build.rerun_delay", " 250 "),
        ("build.entrypoint", "python3,app.py"), ("build.args_bin", "a, b"),
        ("proxy.enabled", "true"), ("proxy.proxy_port", "8090"), ("proxy.app_port", "8080"),
        ("root", "src"), ("tmp_dir", ""), ("misc.startup_banner", "hello"), ("color.app", "white"),
    ])
    b = cfg.build
    assert b.cmd == "make" and b.poll is True and b.stop_on_error is False
    assert b.delay == 0                      # overrides come after the mergo fallback, as in Air
    assert b.kill_delay == "2s" and b.kill_delay_s == 2.0 and b.rerun_delay == 250
    assert b.entrypoint == ("python3", "app.py") and b.args_bin == ("a", "b")
    assert b.exclude_dir == ("x",)
    assert cfg.proxy.enabled and cfg.proxy.proxy_port == 8090
    assert cfg.root_path == str(tmp_path / "src") and cfg.tmp_dir == "tmp"
    assert cfg.misc.startup_banner == "hello" and cfg.color.app == "white"
    assert load(tmp_path, "", overrides=[("build.kill_delay", "1500")]).build.kill_delay == 1500


def test_list_overrides_replace_then_extend(tmp_path):
    cfg = load(tmp_path, '[build]\nexclude_dir = ["from_file"]\n', overrides=[
        ("build.exclude_dir", "a,b"), ("build.include_ext", "py"), ("build.exclude_dir", "c"),
        ("build.exclude_dir", ""), ("build.include_ext", "html,css"),
    ])
    assert cfg.build.exclude_dir == ("a", "b", "c")
    assert cfg.build.include_ext == ("py", "html", "css")
    assert load(tmp_path, "", overrides=[("build.exclude_dir", "")]).build.exclude_dir == ()


@pytest.mark.parametrize("key,raw,expect", [
    ("build.delay", "abc", "--build.delay: expected an integer (milliseconds), got 'abc'"),
    ("build.delay", "-5", "--build.delay: expected an integer (milliseconds), got -5"),
    ("build.poll", "maybe", "--build.poll: expected true or false (or 1/0, yes/no), got 'maybe'"),
    ("proxy.app_port", "99999", "--proxy.app_port: expected a port number (0-65535), got 99999"),
    ("build.kill_delay", "soon", "--build.kill_delay: expected a duration like '500ms' or '2s', got 'soon'"),
    ("build.exclude_regex", "(", "--build.exclude_regex: '(' is not a valid regular expression"),
    ("build.cmdd", "x", "unknown option --build.cmdd (did you mean --build.cmd?)"),
    ("build.follow_symlinks", "true", "unknown option --build.follow_symlinks (did you mean --build.follow_symlink?)"),
    ("cmd", "x", "unknown option --cmd"),
    ("frobnicate", "x", "unknown option --frobnicate"),
    ("build.rules", "x", "--build.rules: rules can only be set in the config file"),
])
def test_override_errors(tmp_path, key, raw, expect):
    assert expect in error_of(tmp_path, "", overrides=[(key, raw)])


def test_proxy_check_runs_after_overrides(tmp_path):
    text = "[proxy]\nenabled = true\nproxy_port = 8090\napp_port = 8080\n"
    message = error_of(tmp_path, text, overrides=[("proxy.app_port", "8090")])
    assert message.startswith(".air.toml: proxy.proxy_port: must differ")
    assert not load(tmp_path, text, overrides=[("proxy.enabled", "false")]).proxy.enabled


def test_platform_overrides(tmp_path):
    other = "windows" if ON_LINUX else "linux"
    cfg = load(tmp_path, "", overrides=[("build.%s.cmd" % other, "other")])
    assert cfg.build.cmd == "go build -o ./tmp/main ."
    with pytest.raises(ConfigError, match="--build.%s.delay: expected an integer" % other):
        load(tmp_path, "", overrides=[("build.%s.delay" % other, "x")])
    here = config.current_platform()
    cfg = load(tmp_path, "[build.%s]\ncmd = \"file\"\n" % here,
               overrides=[("build.%s.cmd" % here, "flag")])
    assert cfg.build.cmd == "flag"


# ---------------------------------------------------------------- file lookup, air_wd

def test_explicit_file_relative_to_cwd(tmp_path):
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", '[build]\ncmd = "make"\n', name="dev.toml")
    cfg = load_config("conf/dev.toml", cwd=str(tmp_path), env={})
    assert cfg.build.cmd == "make" and cfg.config_path == str(tmp_path / "conf" / "dev.toml")
    assert cfg.root_path == str(tmp_path)     # root is relative to cwd, like Air


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^nope\.toml: config file not found$"):
        load_config("nope.toml", cwd=str(tmp_path), env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(".", cwd=str(tmp_path), env={})


def test_legacy_air_conf_with_warning(tmp_path):
    write(tmp_path, '[build]\ncmd = "legacy"\n', name=".air.conf")
    cfg = load_config(cwd=str(tmp_path), env={})
    assert cfg.build.cmd == "legacy"
    assert len(other_warnings(cfg)) == 1 and "deprecated" in cfg.warnings[0]
    write(tmp_path, '[build]\ncmd = "new"\n')
    cfg = load_config(cwd=str(tmp_path), env={})
    assert cfg.build.cmd == "new" and other_warnings(cfg) == ()


def test_air_wd_env_var(tmp_path):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    write(project, 'root = "."\n[build]\ncmd = "from air_wd"\n')
    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other, '[build]\ncmd = "from cwd"\n')
    cfg = load_config(cwd=str(other), env={"air_wd": str(project)})
    assert cfg.build.cmd == "from air_wd"
    assert cfg.config_path == str(project / ".air.toml")
    assert cfg.root_path == str(project) and cfg.tmp_path == str(project / "tmp")
    cfg = load_config(cwd=str(tmp_path), env={"air_wd": "project/sub"})
    assert cfg.config_path is None and cfg.root_path == str(project / "sub")
    with pytest.raises(ConfigError, match="air_wd=missing: no such directory"):
        load_config(cwd=str(tmp_path), env={"air_wd": "missing"})


def test_warning_names_the_explicit_path(tmp_path):
    write(tmp_path, "[build]\nfollow_symlinks = true\n", name="dev.toml")
    cfg = load_config("dev.toml", cwd=str(tmp_path), env={})
    assert cfg.warnings[0].startswith("build.follow_symlinks: unknown key in dev.toml")


# ---------------------------------------------------------------- config_to_dict

def test_config_to_dict_shape(tmp_path):
    data = config_to_dict(load(tmp_path, '[build]\nkill_delay = "0s"\n'))
    assert list(data) == ["root", "tmp_dir", "testdata_dir", "env_files",
                          "build", "log", "color", "misc", "screen", "proxy"]
    assert data["build"]["kill_delay"] == "0s"
    assert "kill_delay_s" not in data["build"] and "root_path" not in data
    assert set(data["proxy"]) == {"enabled", "proxy_port", "app_port", "app_start_timeout", "bind"}
    assert data["misc"] == {"clean_on_exit": False, "startup_banner": None}


def test_watcher_backend_key(tmp_path):
    """build.watcher is air_std's own key: "auto" (default), "poll" or "inotify"."""
    assert load(tmp_path, "").build.watcher == "auto"
    assert config_to_dict(load(tmp_path, ""))["build"]["watcher"] == "auto"  # --print-config
    assert load(tmp_path, '[build]\nwatcher = "inotify"\n').build.watcher == "inotify"
    assert load(tmp_path, '[build]\nwatcher = "poll"\n').build.watcher == "poll"
    assert load_config(cwd=str(tmp_path), overrides=[("build.watcher", "poll")]).build.watcher == "poll"
    with pytest.raises(ConfigError, match=r'build.watcher: expected "auto", "poll" or "inotify", '
                                          r'got \'fsevents\''):
        load(tmp_path, '[build]\nwatcher = "fsevents"\n')
    with pytest.raises(ConfigError, match="build.watcher"):
        load_config(cwd=str(tmp_path), overrides=[("build.watcher", "bad")])


# ---------------------------------------------------------------- one declaration per key

def test_each_key_is_declared_once_and_the_classes_follow_it():
    names = [(key.section, key.name) for key in schema.KEYS]
    assert len(names) == len(set(names)) == 49
    for section, cls in [("", Config)] + list(config.SECTION_CLASSES.items()):
        declared = schema.BY_SECTION[section]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert list(fields)[:len(declared)] == list(declared)
        for name, key in declared.items():
            assert fields[name].default == key.default, key.dotted
        seconds = {name[:-2] for name in dir(cls) if name.endswith("_s") and not name.startswith("_")}
        assert seconds == {name for name, key in declared.items() if key.unit}, section
    assert set(config_to_dict(Config())["build"]) == set(schema.BY_SECTION["build"]) | {"rules"}


def test_flags_and_help_come_from_the_declaration():
    for key in schema.KEYS:
        assert schema.flag_key(key.dotted) is key
    build_cmd = schema.BY_SECTION["build"]["cmd"]
    assert all(schema.flag_key("build.%s.cmd" % p) is build_cmd for p in schema.PLATFORMS)
    assert schema.help_keys()[:-1] == [key.dotted for key in schema.KEYS]
    for dotted in ("build.linux", "build.linux.linux.cmd", ".root", "log.linux.time", "build..cmd"):
        with pytest.raises(ConfigError, match="^unknown option --"):
            schema.flag_key(dotted)


# ---------------------------------------------------------------- frozen config objects

def test_the_loaded_config_cannot_be_changed(tmp_path):
    cfg = load(tmp_path, '[build]\nexclude_dir = ["a"]\n[[build.rules]]\ncmd = "x"\ninclude_ext = ["go"]\n',
               overrides=[("build.entrypoint", "python3,app.py")])
    for obj, attr in [(cfg, "root_path"), (cfg, "build"), (cfg.build, "cmd"), (cfg.build, "exclude_dir"),
                      (cfg.proxy, "app_port"), (cfg.log, "silent"), (cfg.misc, "startup_banner")]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, getattr(obj, attr))
    assert isinstance(cfg.build.exclude_dir, tuple) and isinstance(cfg.build.entrypoint, tuple)
    assert isinstance(cfg.warnings, tuple) and isinstance(cfg.env_files, tuple)
    with pytest.raises(TypeError):
        cfg.build.rules[0]["cmd"] = "y"
    with pytest.raises(AttributeError):
        cfg.build.delay_s = 1


def test_exclude_regex_is_compiled_once_and_kept(tmp_path):
    b = load(tmp_path, '[build]\nexclude_regex = ["_test\\\\.go$", "^gen/"]\n').build
    assert [p.pattern for p in b.exclude_regex_compiled] == ["_test\\.go$", "^gen/"]
    assert all(isinstance(p, re.Pattern) for p in b.exclude_regex_compiled)
    assert b.exclude_regex_compiled is b.exclude_regex_compiled


def test_variants_for_tests_with_dataclasses_replace(tmp_path):
    b = load(tmp_path, "").build
    variant = dataclasses.replace(b, exclude_regex=["^vendor/"], delay=0)
    assert variant.exclude_regex == ("^vendor/",) and variant.delay_s == 0.0
    assert [p.pattern for p in variant.exclude_regex_compiled] == ["^vendor/"]
    assert [p.pattern for p in b.exclude_regex_compiled] == ["_test.go"] and b.delay == 1000
    with pytest.raises(ConfigError, match=r"^build\.exclude_regex: '\(' is not a valid regular expression"):
        dataclasses.replace(b, exclude_regex=["("])


def test_configs_built_by_hand_store_tuples(tmp_path):
    cfg = Config(root=str(tmp_path), env_files=[".env"],
                 build=config.BuildConfig(exclude_dir=["a"], rules=[{"name": "r", "cmd": "x"}]),
                 proxy=config.ProxyConfig(enabled=True, proxy_port=8090, app_port=8080))
    assert cfg.env_files == (".env",) and cfg.build.exclude_dir == ("a",)
    assert cfg.build.rules[0]["cmd"] == "x"
    assert (cfg.proxy.app_start_timeout_s, cfg.build.poll_interval_s) == (5.0, None)
    assert config_to_dict(cfg)["env_files"] == [".env"]


def test_a_variant_with_another_root_resolves_its_paths_again(tmp_path):
    cfg = Config(root=str(tmp_path))
    other = dataclasses.replace(cfg, root=str(tmp_path / "sub"), root_path="", tmp_path="", testdata_path="")
    assert other.root_path == str(tmp_path / "sub") and other.tmp_path == str(tmp_path / "sub" / "tmp")
    assert cfg.root_path == str(tmp_path)
    assert "exclude_regex_compiled" not in repr(cfg.build) and "BuildConfig(" in repr(cfg)
