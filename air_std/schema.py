"""Air's .air.toml keys, each declared once: section, TOML name, kind, default,
unit. Read by the main thread while the config loads and the command line is
parsed.

Everything about a key derives from its line in KEYS: the attributes and
defaults of the frozen config classes (config.py), the kind a --KEY VALUE flag
is converted with, --help's key list, --print-config's keys and their order,
and the candidates for "did you mean". The defaults are Air's defaultConfig();
`watcher`, `stdin` and `bind` are air_std's own keys.

A key with a unit also gets an attribute `<name>_s`: its value in seconds, for
the threads ("ms": value / 1000; "go": Air's kill_delay rule). `zero` says
what 0 means there: "unset" gives None (the watcher then picks its own pace),
"default" gives the default's seconds.
"""

import difflib
import os
from typing import Any, Callable, NamedTuple, Optional

from air_std import kinds
from air_std.errors import ConfigError
from air_std.kinds import COLOR_MODE, COMMAND, DURATION, FLAG, MILLISECONDS, PORT, STRINGS, TEXT, WATCHER

PLATFORMS = ("windows", "linux", "darwin")


def _clean_dirs(dirs):
    # Air's cleanPath plus normpath: "./web/node_modules/ " -> "web/node_modules".
    cleaned = (os.path.normpath(d.strip()) if d.strip() else "" for d in dirs)
    return tuple(d for d in cleaned if d)


def _clean_exts(exts):
    # Entries are extensions without the dot ("go"); ".go" is accepted and cleaned.
    cleaned = (e.strip().lstrip(".") if e.strip() != "*" else "*" for e in exts)
    return tuple(e for e in cleaned if e)


class Key(NamedTuple):
    section: str                 # "" for top-level keys
    name: str                    # the TOML key, as Air spells it
    kind: kinds.Kind
    default: Any
    unit: str = ""               # "ms", "go" (a Go duration or nanoseconds), or none
    zero: str = ""               # with a unit: what 0 means in seconds ("unset", "default")
    clean: Optional[Callable] = None   # tidies the final value (after overrides)

    @property
    def dotted(self):
        return "%s.%s" % (self.section, self.name) if self.section else self.name

    def seconds(self, value):
        if self.zero and value == 0:
            if self.zero == "unset":
                return None
            value = self.default
        if self.unit == "go":
            return kinds.kill_delay_seconds(value)
        return value / 1000.0


KEYS = (
    Key("", "root", TEXT, "."),
    Key("", "tmp_dir", TEXT, "tmp"),
    Key("", "testdata_dir", TEXT, "testdata"),
    Key("", "env_files", STRINGS, ()),

    Key("build", "pre_cmd", STRINGS, ()),
    Key("build", "cmd", TEXT, "go build -o ./tmp/main ."),
    Key("build", "post_cmd", STRINGS, ()),
    Key("build", "bin", TEXT, "./tmp/main"),
    Key("build", "entrypoint", COMMAND, ()),
    Key("build", "full_bin", TEXT, ""),
    Key("build", "args_bin", STRINGS, ()),
    Key("build", "include_ext", STRINGS, ("go", "tpl", "tmpl", "html"), clean=_clean_exts),
    Key("build", "exclude_dir", STRINGS, ("assets", "tmp", "vendor", "testdata"), clean=_clean_dirs),
    Key("build", "include_dir", STRINGS, ()),
    Key("build", "include_file", STRINGS, ()),
    Key("build", "exclude_file", STRINGS, ()),
    Key("build", "exclude_regex", STRINGS, ("_test.go",)),
    Key("build", "exclude_unchanged", FLAG, False),
    Key("build", "follow_symlink", FLAG, False),
    Key("build", "log", TEXT, "build-errors.log"),
    Key("build", "poll", FLAG, False),
    # A value the user did set is kept even below Air's 500 ms minimum: someone
    # who writes poll_interval = 100 wants 100 ms.
    Key("build", "poll_interval", MILLISECONDS, 0, unit="ms", zero="unset"),
    # "auto": inotify events with a slow polling pass as a safety net where the
    # tree is on a local filesystem, else polling; "poll" and "inotify" force one.
    # poll = true (Air's key) wins over it.
    Key("build", "watcher", WATCHER, "auto"),
    Key("build", "delay", MILLISECONDS, 1000, unit="ms"),
    Key("build", "stop_on_error", FLAG, False),
    Key("build", "send_interrupt", FLAG, False),
    Key("build", "kill_delay", DURATION, 0, unit="go"),
    Key("build", "rerun", FLAG, False),
    Key("build", "rerun_delay", MILLISECONDS, 500, unit="ms"),
    Key("build", "ignore_dangerous_root_dir", FLAG, False),
    # air_std's own: the app reads air_std's terminal (interactive apps, pdb)
    Key("build", "stdin", FLAG, False),

    Key("log", "time", FLAG, False),
    Key("log", "main_only", FLAG, False),
    Key("log", "silent", FLAG, False),

    Key("color", "main", TEXT, "magenta"),
    Key("color", "watcher", TEXT, "cyan"),
    Key("color", "build", TEXT, "yellow"),
    Key("color", "runner", TEXT, "green"),
    Key("color", "app", TEXT, ""),           # declared by Air and never read, here too
    Key("color", "mode", COLOR_MODE, ""),    # "": auto

    Key("misc", "clean_on_exit", FLAG, False),
    Key("misc", "startup_banner", TEXT, None),   # None: not set; "": hide the banner

    Key("screen", "clear_on_rebuild", FLAG, False),
    Key("screen", "keep_scroll", FLAG, True),

    Key("proxy", "enabled", FLAG, False),
    Key("proxy", "proxy_port", PORT, 0),
    Key("proxy", "app_port", PORT, 0),
    Key("proxy", "app_start_timeout", MILLISECONDS, 5000, unit="ms", zero="default"),
    Key("proxy", "bind", TEXT, "127.0.0.1"),   # the proxy's listen address
)

# One table of [[build.rules]] (added to Air in 2026; runner/config.go, cfgRule).
# A rule without a name is called rule-<index>; Air's cfgRule.delay() makes a
# delay of 0 (or none) 1000 ms. New rule keys go here, and rules.py and
# rule_runner.py read them. `restart` and `reload` are air_std's own: what
# follows the rule's command (the app restarted without the main build; the
# browser reloaded with nothing restarted); with either, cmd may be left out.
RULE_KEYS = (
    Key("build.rules", "name", TEXT, None),
    Key("build.rules", "cmd", TEXT, ""),
    Key("build.rules", "include_dir", STRINGS, ()),
    Key("build.rules", "include_ext", STRINGS, ()),
    Key("build.rules", "include_file", STRINGS, ()),
    Key("build.rules", "exclude_regex", STRINGS, ()),
    Key("build.rules", "delay", MILLISECONDS, 1000, unit="ms", zero="default"),
    Key("build.rules", "restart", FLAG, False),
    Key("build.rules", "reload", FLAG, False),
)
RULE_KEY = {key.name: key for key in RULE_KEYS}

SECTIONS = tuple(dict.fromkeys(key.section for key in KEYS))   # in .air.toml order
BY_SECTION = {section: {k.name: k for k in KEYS if k.section == section} for section in SECTIONS}


def flag_names():
    """Every dotted key a --KEY VALUE flag accepts, in .air.toml order, then the
    per-platform copies of [build] (build.linux.cmd, ...)."""
    names = [key.dotted for key in KEYS]
    names += ["build.%s.%s" % (p, name) for p in PLATFORMS for name in BY_SECTION["build"]]
    return names


def help_keys():
    """The keys --help lists; the per-platform copies are shown once as a pattern."""
    return [key.dotted for key in KEYS] + ["build.<%s>.<key>" % "|".join(PLATFORMS)]


def file_candidates():
    """Names an unknown key or table in the file is compared with: every key
    and every table, without the per-platform copies."""
    return [key.dotted for key in KEYS] + [s for s in SECTIONS if s]


def flag_key(dotted):
    """The Key a dotted --KEY flag sets; ConfigError (with a did-you-mean) if there is none."""
    parts = dotted.split(".")
    if len(parts) == 3 and parts[0] == "build" and parts[1] in PLATFORMS:
        del parts[1]                                  # build.linux.cmd sets build.cmd
    key = None
    if len(parts) == 1:
        key = BY_SECTION[""].get(parts[0])
    elif len(parts) == 2 and parts[0]:
        key = BY_SECTION.get(parts[0], {}).get(parts[1])
    if key is not None:
        return key
    if dotted == "build.rules":
        raise ConfigError("--build.rules: rules can only be set in the config file ([[build.rules]])")
    raise ConfigError("unknown option --%s%s" % (kinds.printable(dotted),
                                                 did_you_mean(dotted, flag_names(), "--%s")))


def suggest(name, candidates):
    """Closest known key for a misspelt one: a top-level key put in a table, then difflib."""
    leaf = name.rpartition(".")[2]
    if "." in name and leaf in BY_SECTION[""] and leaf in candidates:
        return leaf                                   # build.tmp_dir -> tmp_dir
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    if close:
        return close[0]
    # Compare leaves within the same section ("build.follow_symlinks").
    prefix = name.rpartition(".")[0]
    same = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == prefix]
    close = difflib.get_close_matches(leaf, same, n=1, cutoff=0.7)
    if not close:
        return None
    return "%s.%s" % (prefix, close[0]) if prefix else close[0]


def did_you_mean(name, candidates, fmt="%s"):
    hint = suggest(name, candidates)
    return " (did you mean %s?)" % (fmt % hint) if hint else ""
