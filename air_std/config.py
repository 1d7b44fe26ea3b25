"""Air's .air.toml: the Config dataclasses, Air's defaults, loading, validation,
platform blocks, dotted CLI overrides and --print-config.

Runs once, in the main thread, before any other thread starts; the Config it
returns is then only read (never mutated) by the watcher, runner and proxy.

Values keep Air's TOML names and units (milliseconds, Go durations); the
seconds the threads need are derived properties whose names end in `_s`.
Every bad value raises ConfigError with one line naming the file (or the
command-line flag), the key, the value and what is expected.
"""

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

from air_std.errors import ConfigError

CONFIG_NAME = ".air.toml"
LEGACY_CONFIG_NAME = ".air.conf"
PLATFORMS = ("windows", "linux", "darwin")

# Value kinds. "ms" and "port" are non-negative integers (Python's bool is an int
# subclass, so True/False are refused explicitly); "duration" is kill_delay.
_KIND_TEXT = {
    "str": "a string",
    "bool": "true or false",
    "list": "an array of strings",
    "entrypoint": "a string or an array of strings",
    "ms": "an integer (milliseconds)",
    "port": "a port number (0-65535)",
    "watcher": '"poll" or "inotify"',
    "duration": "a duration like '500ms' or '2s'",
    "banner": "a string",
}
_MAX_MS = 2 ** 31 - 1          # ~24.8 days; larger waits overflow some timers
_MAX_NS = 2 ** 63 - 1          # Go's time.Duration is an int64 of nanoseconds

# Air's defaultConfig(), section by section, in .air.toml order. Key -> (kind, default).
_SCHEMA = {
    "": {
        "root": ("str", "."),
        "tmp_dir": ("str", "tmp"),
        "testdata_dir": ("str", "testdata"),
        "env_files": ("list", []),
    },
    "build": {
        "pre_cmd": ("list", []),
        "cmd": ("str", "go build -o ./tmp/main ."),
        "post_cmd": ("list", []),
        "bin": ("str", "./tmp/main"),
        "entrypoint": ("entrypoint", []),
        "full_bin": ("str", ""),
        "args_bin": ("list", []),
        "include_ext": ("list", ["go", "tpl", "tmpl", "html"]),
        "exclude_dir": ("list", ["assets", "tmp", "vendor", "testdata"]),
        "include_dir": ("list", []),
        "include_file": ("list", []),
        "exclude_file": ("list", []),
        "exclude_regex": ("list", ["_test.go"]),
        "exclude_unchanged": ("bool", False),
        "follow_symlink": ("bool", False),
        "log": ("str", "build-errors.log"),
        "poll": ("bool", False),
        "poll_interval": ("ms", 0),
        "watcher": ("watcher", "poll"),   # air_std extension: "inotify" opts into native events
        "delay": ("ms", 1000),
        "stop_on_error": ("bool", False),
        "send_interrupt": ("bool", False),
        "kill_delay": ("duration", 0),
        "rerun": ("bool", False),
        "rerun_delay": ("ms", 500),
        "ignore_dangerous_root_dir": ("bool", False),
    },
    "log": {"time": ("bool", False), "main_only": ("bool", False), "silent": ("bool", False)},
    "color": {
        "main": ("str", "magenta"), "watcher": ("str", "cyan"), "build": ("str", "yellow"),
        "runner": ("str", "green"), "app": ("str", ""), "mode": ("str", ""),
    },
    "misc": {"clean_on_exit": ("bool", False), "startup_banner": ("banner", None)},
    "screen": {"clear_on_rebuild": ("bool", False), "keep_scroll": ("bool", True)},
    "proxy": {
        "enabled": ("bool", False), "proxy_port": ("port", 0), "app_port": ("port", 0),
        "app_start_timeout": ("ms", 5000),
        "bind": ("str", "127.0.0.1"),   # air_std extension: the proxy's listen address
    },
}
_RULE_KEYS = {
    "name": "str", "cmd": "str", "include_dir": "list", "include_ext": "list",
    "include_file": "list", "exclude_regex": "list", "delay": "ms",
}


def _dotted(section, key):
    return "%s.%s" % (section, key) if section else key


def _all_keys():
    """Every settable dotted key (what --print-config shows and CLI flags accept)."""
    keys = [_dotted(s, k) for s, table in _SCHEMA.items() for k in table]
    keys += ["build.%s.%s" % (p, k) for p in PLATFORMS for k in _SCHEMA["build"]]
    return keys


def current_platform():
    """Air's GOOS name for this Python: the [build.<platform>] block that applies."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("linux"):
        return "linux"
    return sys.platform


# ---------------------------------------------------------------- dataclasses

@dataclass
class BuildConfig:
    """[build]. Defaults are Air's defaultConfig()."""

    pre_cmd: List[str] = field(default_factory=list)
    cmd: str = "go build -o ./tmp/main ."
    post_cmd: List[str] = field(default_factory=list)
    bin: str = "./tmp/main"
    entrypoint: List[str] = field(default_factory=list)
    full_bin: str = ""
    args_bin: List[str] = field(default_factory=list)
    include_ext: List[str] = field(default_factory=lambda: ["go", "tpl", "tmpl", "html"])
    exclude_dir: List[str] = field(default_factory=lambda: ["assets", "tmp", "vendor", "testdata"])
    include_dir: List[str] = field(default_factory=list)
    include_file: List[str] = field(default_factory=list)
    exclude_file: List[str] = field(default_factory=list)
    exclude_regex: List[str] = field(default_factory=lambda: ["_test.go"])
    exclude_unchanged: bool = False
    follow_symlink: bool = False
    log: str = "build-errors.log"
    poll: bool = False
    poll_interval: int = 0
    watcher: str = "poll"
    delay: int = 1000
    stop_on_error: bool = False
    send_interrupt: bool = False
    kill_delay: Any = 0          # as written: Go duration string or int (nanoseconds)
    rerun: bool = False
    rerun_delay: int = 500
    ignore_dangerous_root_dir: bool = False
    rules: List[dict] = field(default_factory=list)
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def exclude_regex_compiled(self):
        """exclude_regex compiled with `re` (cached; recompiled if the list changes)."""
        key = tuple(self.exclude_regex)
        if self._compiled is None or self._compiled[0] != key:
            self._compiled = (key, [re.compile(p) for p in key])
        return self._compiled[1]

    @property
    def delay_s(self):
        return self.delay / 1000.0

    @property
    def rerun_delay_s(self):
        return self.rerun_delay / 1000.0

    @property
    def poll_interval_s(self):
        # None = unset: the watcher applies Air's 500 ms default. A value the user
        # did set is kept even below 500 ms (Air's minimum only covers the unset
        # case here): someone who writes poll_interval = 100 wants 100 ms.
        if not self.poll_interval:
            return None
        return self.poll_interval / 1000.0

    @property
    def kill_delay_s(self):
        return kill_delay_seconds(self.kill_delay)


@dataclass
class LogConfig:
    time: bool = False
    main_only: bool = False
    silent: bool = False


@dataclass
class ColorConfig:
    main: str = "magenta"
    watcher: str = "cyan"
    build: str = "yellow"
    runner: str = "green"
    app: str = ""
    mode: str = ""


@dataclass
class MiscConfig:
    clean_on_exit: bool = False
    startup_banner: Optional[str] = None   # None = not set; "" = hide the banner


@dataclass
class ScreenConfig:
    clear_on_rebuild: bool = False
    keep_scroll: bool = True


@dataclass
class ProxyConfig:
    enabled: bool = False
    proxy_port: int = 0
    app_port: int = 0
    app_start_timeout: int = 5000
    bind: str = "127.0.0.1"

    @property
    def app_start_timeout_s(self):
        return (self.app_start_timeout or 5000) / 1000.0


@dataclass
class Config:
    """The effective configuration. Built once in the main thread, then read-only."""

    root: str = "."
    tmp_dir: str = "tmp"
    testdata_dir: str = "testdata"
    env_files: List[str] = field(default_factory=list)
    build: BuildConfig = field(default_factory=BuildConfig)
    log: LogConfig = field(default_factory=LogConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    misc: MiscConfig = field(default_factory=MiscConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    config_path: Optional[str] = None
    root_path: str = ""
    tmp_path: str = ""
    testdata_path: str = ""
    warnings: List[str] = field(default_factory=list)

    def __post_init__(self):
        # Lets tests build Config(root=...) by hand; load_config passes all three.
        if not self.root_path:
            self.root_path = os.path.abspath(os.path.expanduser(self.root))
        if not self.tmp_path:
            self.tmp_path = os.path.normpath(os.path.join(self.root_path, self.tmp_dir))
        if not self.testdata_path:
            self.testdata_path = os.path.normpath(os.path.join(self.root_path, self.testdata_dir))


# ---------------------------------------------------------------- durations

_DURATION_UNITS = {
    "ns": 1, "us": 10 ** 3, "\u00b5s": 10 ** 3, "\u03bcs": 10 ** 3,
    "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9,
}
_DURATION_PART = re.compile("([0-9]*)(?:\\.([0-9]*))?([a-z\u00b5\u03bc]*)")


def parse_go_duration(text, key="build.kill_delay"):
    """Go's time.ParseDuration: "500ms", "1m30s", "1.5s", "-2h", "0" -> nanoseconds (int).

    Raises ConfigError naming `key` on anything Go would reject.
    """
    def bad(why=""):
        return ConfigError("%s: expected %s, got %s%s" % (
            key, _KIND_TEXT["duration"], _show(text), " (%s)" % why if why else ""))

    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad()
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        whole, frac, unit = m.groups()
        if not whole and not frac:
            raise bad()                       # no digits: ".s", "ms", "1h.m"
        if not unit:
            raise bad("missing unit; use ns, us, ms, s, m or h")
        if unit not in _DURATION_UNITS:
            raise bad("unknown unit %r" % unit)
        mult = _DURATION_UNITS[unit]
        total += int(whole or "0") * mult
        if frac:
            total += int(frac) * mult // 10 ** len(frac)   # Go truncates below 1ns
        pos = m.end()
    if total > _MAX_NS + (1 if sign < 0 else 0):
        raise bad("out of range")
    return sign * total


def kill_delay_seconds(value):
    """Air's killDelay(): below 1ms the number counts milliseconds, else it is truncated to ms.

    So 500 -> 0.5 s, 2000 -> 2 s, 15000000000 (ns) -> 15 s, "2s" -> 2 s, "1.5s" -> 1.5 s.
    """
    ns = parse_go_duration(value) if isinstance(value, str) else int(value)
    if ns < 10 ** 6:
        return ns / 1000.0
    return (ns // 10 ** 6) / 1000.0


# ---------------------------------------------------------------- value checks

def _show(value):
    """A value the way the user wrote it (TOML-ish), short enough for one line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_error(label, kind, value, detail=""):
    return ConfigError("%s: expected %s, got %s%s" % (label, _KIND_TEXT[kind], _show(value), detail))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check(kind, value, label):
    """Check one value read from TOML (or converted from a CLI string); return it typed."""
    if kind in ("str", "banner"):
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "watcher":
        if value in ("poll", "inotify"):
            return value
    elif kind == "list":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif kind == "entrypoint":
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif kind == "ms":
        if _is_int(value):
            if 0 <= value <= _MAX_MS:
                return value
            raise _type_error(label, kind, value, " (must be from 0 to %d)" % _MAX_MS)
    elif kind == "port":
        if _is_int(value):
            if 0 <= value <= 65535:
                return value
            raise _type_error(label, kind, value)
    elif kind == "duration":
        if _is_int(value):
            ns = value
        elif isinstance(value, str):
            ns = parse_go_duration(value, label)
        else:
            raise _type_error(label, kind, value)
        if ns < 0:
            raise _type_error(label, kind, value, " (must not be negative)")
        if ns > _MAX_NS:
            raise _type_error(label, kind, value, " (out of range)")
        return value
    raise _type_error(label, kind, value)


def _zero(value):
    return value == "" or value == [] or (_is_int(value) and value == 0)


def _clean_dir(path):
    """Air's cleanPath plus normpath: "./web/node_modules/ " -> "web/node_modules"."""
    path = path.strip()
    return os.path.normpath(path) if path else path


def _suggest(name, candidates):
    """Closest known key for a misspelt one: a top-level key put in a table, then difflib."""
    leaf = name.rpartition(".")[2]
    if "." in name and leaf in _SCHEMA[""] and leaf in candidates:
        return leaf                                   # build.tmp_dir -> tmp_dir
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    if close:
        return close[0]
    # Compare leaves within the same section ("build.follow_symlinks").
    prefix = name.rpartition(".")[0]
    same = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == prefix]
    close = difflib.get_close_matches(leaf, same, n=1, cutoff=0.7)
    return _dotted(prefix, close[0]) if close else None


def _did_you_mean(name, candidates, fmt="%s"):
    hint = _suggest(name, candidates)
    return " (did you mean %s?)" % (fmt % hint) if hint else ""


# ---------------------------------------------------------------- loading

class _Loader:
    """One load_config() call: collects typed values, where each came from, and warnings."""

    def __init__(self, display):
        self.display = display                      # file name for messages, or None
        self.values = {s: {} for s in _SCHEMA}      # section -> key -> typed value (as set)
        self.origin = {}                            # (section, key) -> label for errors
        self.warnings = []                          # type: List[str]
        self.rules = []                             # type: List[dict]
        self.platform_blocks = {}                   # platform -> {key: value}

    def label(self, dotted):
        return "%s: %s" % (self.display, dotted) if self.display else dotted

    def warn_unknown(self, dotted, value, candidates):
        what = "unknown table" if isinstance(value, dict) else "unknown key"
        name = "[%s]" % dotted if isinstance(value, dict) else dotted
        self.warnings.append("%s: %s in %s%s; ignored" % (
            name, what, self.display, _did_you_mean(dotted, candidates)))

    def read_document(self, doc):
        # Candidates for did-you-mean: keys and table names, without the platform copies.
        known = [k for k in _all_keys() if k.count(".") < 2] + [s for s in _SCHEMA if s]
        for key, value in doc.items():
            if key in _SCHEMA[""]:
                self.values[""][key] = _check(_SCHEMA[""][key][0], value, self.label(key))
                self.origin[("", key)] = self.label(key)
            elif key in _SCHEMA and key:
                if not isinstance(value, dict):
                    _raise_not_table(self.label(key), key, value)
                self.read_section(key, value, known)
            else:
                self.warn_unknown(key, value, known)

    def read_section(self, section, table, known):
        schema = _SCHEMA[section]
        for key, value in table.items():
            dotted = _dotted(section, key)
            if key in schema:
                self.values[section][key] = _check(schema[key][0], value, self.label(dotted))
                self.origin[(section, key)] = self.label(dotted)
            elif section == "build" and key in PLATFORMS:
                self.read_platform(key, value)
            elif section == "build" and key == "rules":
                self.read_rules(value)
            else:
                self.warn_unknown(dotted, value, known)

    def read_platform(self, platform, table):
        prefix = "build.%s" % platform
        if not isinstance(table, dict):
            _raise_not_table(self.label(prefix), prefix, table)
        block = {}
        candidates = ["%s.%s" % (prefix, k) for k in _SCHEMA["build"]]
        for key, value in table.items():
            dotted = "%s.%s" % (prefix, key)
            if key in _SCHEMA["build"]:
                block[key] = (_check(_SCHEMA["build"][key][0], value, self.label(dotted)), self.label(dotted))
            else:
                self.warn_unknown(dotted, value, candidates)
        self.platform_blocks[platform] = block

    def read_rules(self, value):
        # [[build.rules]] (added to Air in 2026) is only loaded and checked here; a
        # single [build.rules] table is taken as one rule rather than refused.
        tables = [value] if isinstance(value, dict) else value
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError("%s: expected an array of tables [[build.rules]], got %s"
                              % (self.label("build.rules"), _show(value)))
        for index, table in enumerate(tables):
            prefix = "build.rules[%d]" % index
            rule = {"name": "rule-%d" % index, "cmd": "", "include_dir": [], "include_ext": [],
                    "include_file": [], "exclude_regex": [], "delay": 0}
            candidates = ["%s.%s" % (prefix, k) for k in _RULE_KEYS]
            for key, item in table.items():
                dotted = "%s.%s" % (prefix, key)
                if key in _RULE_KEYS:
                    rule[key] = _check(_RULE_KEYS[key], item, self.label(dotted))
                else:
                    self.warn_unknown(dotted, item, candidates)
            if not rule["cmd"].strip():
                raise ConfigError("%s: cmd is required (the command to run when a matched file changes)"
                                  % self.label(prefix))
            _compile_all(rule["exclude_regex"], self.label(prefix + ".exclude_regex"))
            self.rules.append(rule)

    def apply_platform(self, platform):
        for key, (value, label) in self.platform_blocks.get(platform, {}).items():
            self.values["build"][key] = value
            self.origin[("build", key)] = label

    def apply_mergo_defaults(self):
        # Air merges the file into defaultConfig() with mergo (Overwrite on), and
        # mergo never copies a zero value: a key set to "" or [] in the file keeps
        # Air's default when that default is not empty (cmd = "" -> "go build ...",
        # include_ext = [] -> the Go list). Numbers and booleans are the exception
        # here: in Air `delay = 0` silently becomes 1000 ms and keep_scroll = false
        # becomes true, which only surprises, so air_std takes them as written.
        for section, table in _SCHEMA.items():
            for key, (kind, default) in table.items():
                value = self.values[section].get(key)
                if not isinstance(value, (str, list)):
                    continue
                if _zero(value) and not _zero(default) and default is not None:
                    self.values[section][key] = _copy(default)

    def apply_overrides(self, overrides, platform):
        seen = set()
        for dotted, raw in overrides:
            kind = override_kind(dotted)
            label = "--" + dotted
            value = _from_string(kind, raw if isinstance(raw, str) else str(raw), label)
            parts = dotted.split(".")
            if len(parts) == 3:                       # build.<platform>.<key>
                if parts[1] != platform:
                    continue                          # checked, but not for this OS
                section, key = "build", parts[2]
            elif len(parts) == 2:
                section, key = parts
            else:
                section, key = "", dotted
            if kind in ("list", "entrypoint") and dotted in seen:
                value = list(self.values[section].get(key, [])) + value
            seen.add(dotted)
            self.values[section][key] = value
            self.origin[(section, key)] = label

    def get(self, section, key):
        if key in self.values[section]:
            return self.values[section][key]
        return _copy(_SCHEMA[section][key][1])

    def where(self, section, key):
        return self.origin.get((section, key)) or self.label(_dotted(section, key))


def _raise_not_table(label, dotted, value):
    raise ConfigError("%s: expected a table [%s], got %s" % (label, dotted, _show(value)))


def _copy(value):
    return list(value) if isinstance(value, list) else value


def _compile_all(patterns, label):
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError("%s: %s is not a valid regular expression (%s)"
                              % (label, _show(pattern), exc)) from None


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")


def _from_string(kind, raw, label):
    """Convert a CLI override string to the key's type, then check it like a file value."""
    text = raw.strip()
    if kind == "bool":
        if text.lower() not in _BOOL_WORDS:
            raise ConfigError("%s: expected true or false (or 1/0, yes/no), got %s" % (label, _show(raw)))
        return _BOOL_WORDS[text.lower()]
    if kind in ("ms", "port"):
        if not _INT_TEXT.match(text):
            raise _type_error(label, kind, raw)
        return _check(kind, int(text), label)
    if kind in ("list", "entrypoint"):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind == "duration":
        return _check(kind, int(text) if _INT_TEXT.match(text) else text, label)
    return _check(kind, raw, label)


def override_kind(dotted):
    """The value kind of a dotted CLI key; ConfigError (with a did-you-mean) if unknown."""
    parts = dotted.split(".")
    if len(parts) == 1 and dotted in _SCHEMA[""]:
        return _SCHEMA[""][dotted][0]
    if len(parts) == 2 and parts[0] in _SCHEMA and parts[0] and parts[1] in _SCHEMA[parts[0]]:
        return _SCHEMA[parts[0]][parts[1]][0]
    if len(parts) == 3 and parts[0] == "build" and parts[1] in PLATFORMS and parts[2] in _SCHEMA["build"]:
        return _SCHEMA["build"][parts[2]][0]
    if dotted == "build.rules":
        raise ConfigError("--build.rules: rules can only be set in the config file ([[build.rules]])")
    raise ConfigError("unknown option --%s%s" % (dotted, _did_you_mean(dotted, _all_keys(), "--%s")))


def override_keys():
    """Dotted keys accepted as --KEY VALUE overrides (for --help)."""
    return _all_keys()


def _find_file(path, cwd, base, warnings):
    """(absolute path or None, name to show in messages), like Air's lookup."""
    if path:
        full = os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))
        if not os.path.exists(full):
            raise ConfigError("%s: config file not found" % path)
        if os.path.isdir(full):
            raise ConfigError("%s: is a directory, expected a .air.toml file" % path)
        return full, path
    for name in (CONFIG_NAME, LEGACY_CONFIG_NAME):
        full = os.path.join(base, name)
        if os.path.isfile(full):
            display = name if os.path.samefile(base, cwd) else full
            if name == LEGACY_CONFIG_NAME:
                warnings.append("%s: .air.conf is Air's deprecated config name; rename it to %s"
                                % (display, CONFIG_NAME))
            return full, display
    return None, None


def _read_toml(full, display):
    from air_std import tomlread   # imported here: TOML parsing costs a few ms at start-up

    try:
        # utf-8-sig: a BOM written by some Windows editors is not a TOML error.
        with open(full, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: not UTF-8 text (byte %d); save it as UTF-8" % (display, exc.start)) from None
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (display, exc.strerror or exc)) from None
    try:
        return tomlread.loads(text)
    except tomlread.TomlDecodeError as exc:
        where = "%s:%d:%d" % (display, exc.lineno, exc.colno) if exc.lineno else display
        raise ConfigError("%s: invalid TOML: %s" % (where, exc.msg)) from None


def load_config(path=None, overrides=None, cwd=None, env=None):
    """Load the effective Config: file (or Air's defaults), platform block, then overrides.

    path: `-c FILE` (relative to cwd); else .air.toml, then .air.conf, in $air_wd or cwd.
    overrides: [(dotted_key, raw_string), ...] in command-line order.
    Relative paths (root, tmp_dir) resolve against $air_wd when set, else cwd; air_std
    never chdirs, so the engine runs commands with cwd=cfg.root_path.
    """
    cwd = os.path.abspath(os.getcwd() if cwd is None else cwd)
    env = os.environ if env is None else env
    base = cwd
    air_wd = env.get("air_wd", "")
    if air_wd:
        base = os.path.normpath(os.path.join(cwd, os.path.expanduser(air_wd)))
        if not os.path.isdir(base):
            raise ConfigError("air_wd=%s: no such directory" % air_wd)
    warnings = []  # type: List[str]
    full, display = _find_file(path, cwd, base, warnings)
    loader = _Loader(display)
    loader.warnings.extend(warnings)
    if full is not None:
        doc = _read_toml(full, display)
        loader.read_document(doc)
    platform = current_platform()
    loader.apply_platform(platform)
    loader.apply_mergo_defaults()
    loader.apply_overrides(overrides or [], platform)
    # Air's preprocess() runs after the CLI flags and restores these two.
    for key in ("tmp_dir", "testdata_dir"):
        if loader.get("", key) == "":
            loader.values[""][key] = _SCHEMA[""][key][1]
    return _build(loader, full, base)


def _build(loader, full, base):
    g = loader.get
    build = {k: g("build", k) for k in _SCHEMA["build"]}
    build["exclude_dir"] = [d for d in (_clean_dir(d) for d in build["exclude_dir"]) if d]
    # Entries are extensions without the dot ("go"); ".go" is accepted and cleaned.
    build["include_ext"] = [e.strip().lstrip(".") if e.strip() != "*" else "*" for e in build["include_ext"]]
    build["include_ext"] = [e for e in build["include_ext"] if e]
    _compile_all(build["exclude_regex"], loader.where("build", "exclude_regex"))
    proxy = {k: g("proxy", k) for k in _SCHEMA["proxy"]}
    if proxy["enabled"]:
        for key in ("proxy_port", "app_port"):
            if not proxy[key]:
                raise ConfigError("%s: must be set (1-65535) when proxy.enabled is true"
                                  % loader.where("proxy", key))
        if proxy["proxy_port"] == proxy["app_port"]:
            raise ConfigError("%s: must differ from proxy.app_port (both are %d)"
                              % (loader.where("proxy", "proxy_port"), proxy["app_port"]))
    root = g("", "root")
    root_path = os.path.normpath(os.path.join(base, os.path.expanduser(root)))
    tmp_dir, testdata_dir = g("", "tmp_dir"), g("", "testdata_dir")
    return Config(
        root=root, tmp_dir=tmp_dir, testdata_dir=testdata_dir, env_files=g("", "env_files"),
        build=BuildConfig(rules=loader.rules, **build),
        log=LogConfig(**{k: g("log", k) for k in _SCHEMA["log"]}),
        color=ColorConfig(**{k: g("color", k) for k in _SCHEMA["color"]}),
        misc=MiscConfig(**{k: g("misc", k) for k in _SCHEMA["misc"]}),
        screen=ScreenConfig(**{k: g("screen", k) for k in _SCHEMA["screen"]}),
        proxy=ProxyConfig(**proxy),
        config_path=full,
        root_path=root_path,
        tmp_path=os.path.normpath(os.path.join(root_path, tmp_dir)),
        testdata_path=os.path.normpath(os.path.join(root_path, testdata_dir)),
        warnings=loader.warnings,
    )


def config_to_dict(cfg):
    """The effective config as .air.toml-shaped, JSON-serialisable dicts (--print-config)."""
    out = {}
    for key in _SCHEMA[""]:
        out[key] = _copy(getattr(cfg, key))
    for section in ("build", "log", "color", "misc", "screen", "proxy"):
        obj = getattr(cfg, section)
        out[section] = {key: _copy(getattr(obj, key)) for key in _SCHEMA[section]}
    out["build"]["rules"] = [dict(rule) for rule in cfg.build.rules]
    return out
