"""Faults a careless user or an attacker brings about, and what air_std does:
config files that are too big, too deep, not files at all, or hold a NUL
byte; a build log aimed outside the project; an app that daemonizes; the
project root deleted while air_std runs. Each ends in one clear line (and
exit 1 where the run cannot go on), never a traceback, and nothing outside
the project is written."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from air_std import config, tomlread
from air_std.build import Builder
from air_std.buildoutput import StrayPipes
from air_std.config import load_config
from air_std.errors import ConfigError
from conftest import REPO, free_port, http_get, wait_until


def write_config(tmp_path, text):
    (tmp_path / ".air.toml").write_text(text, encoding="utf-8")


def config_error(tmp_path, text=None, overrides=None):
    if text is not None:
        write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides, cwd=str(tmp_path), env={})
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_one_line_error(air, *words):
    code = air.wait(15)
    err = air.stderr()
    assert code == 1, air.output()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("air_std: error:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), err
    return lines[0]


# ---------------------------------------------------------------- NUL bytes

@pytest.mark.parametrize("key, value", [
    ("root", '"a\\u0000b"'),
    ("tmp_dir", '"tmp\\u0000"'),
    ("env_files", '[".env", "x\\u0000y"]'),
    ("build.cmd", '"go build\\u0000"'),
    ("build.pre_cmd", '["echo \\u0000"]'),
    ("build.entrypoint", '["./app", "--flag=\\u0000"]'),
    ("build.entrypoint", '"./a\\u0000pp"'),
    ("build.args_bin", '["\\u0000"]'),
    ("build.full_bin", '"./app\\u0000"'),
    ("build.log", '"a\\u0000.log"'),
    ("build.exclude_dir", '["vendor\\u0000"]'),
    ("build.include_file", '["main\\u0000.go"]'),
    ("proxy.bind", '"127.0.0.1\\u0000"'),
    ("misc.startup_banner", '"hi\\u0000"'),
])
def test_a_nul_byte_in_any_string_is_a_config_error(tmp_path, key, value):
    section, _, name = key.rpartition(".")
    text = ("[%s]\n" % section if section else "") + "%s = %s\n" % (name, value)
    message = config_error(tmp_path, text)
    assert message.startswith(".air.toml: %s: " % key) and "NUL byte" in message


def test_a_nul_byte_in_a_rule_or_a_flag_is_a_config_error(tmp_path):
    message = config_error(tmp_path, '[[build.rules]]\ncmd = "make\\u0000"\n')
    assert "build.rules[0].cmd" in message and "NUL byte" in message
    write_config(tmp_path, "")
    for dotted in ("build.cmd", "build.pre_cmd", "root"):
        message = config_error(tmp_path, overrides=[(dotted, "a\0b")])
        assert message.startswith("--%s: " % dotted) and "NUL byte" in message


def test_print_config_refuses_a_nul_byte_through_the_real_cli(tmp_path, run_air):
    write_config(tmp_path, '[build]\npre_cmd = ["echo a\\u0000b"]\n')
    air = run_air(["--print-config"], tmp_path)
    assert_one_line_error(air, ".air.toml: build.pre_cmd", "NUL byte")
    assert air.stdout() == ""
