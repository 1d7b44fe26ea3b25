"""The effective configuration: frozen classes generated from schema.KEYS, and
load_config(), which reads .air.toml (or Air's defaults), applies the
platform block and the command-line overrides, and validates everything once.

Runs once, in the main thread, before any other thread starts. The Config it
returns cannot be changed (frozen dataclasses, tuples for arrays, read-only
mappings for [[build.rules]]), so the watcher, runner and proxy threads read
it without locks, and none of them needs to check a value again: ports,
exclude_regex (compiled here, kept as `exclude_regex_compiled`) and
build.watcher are checked here.

Values keep Air's TOML names and units (milliseconds, Go durations); the
seconds the threads need are attributes whose names end in `_s`. Every bad
value raises ConfigError with one line naming the file (or the command-line
flag), the key, the value and what is expected. Tests that need a variant of
a config use dataclasses.replace(); hand-built ones (Config(root=...)) get
their paths resolved and their lists turned into tuples.
"""

import os
import sys
import types
from dataclasses import field, make_dataclass
from typing import Optional

from air_std import configfile, kinds, schema, smallfile
from air_std.errors import ConfigError
from air_std.schema import BY_SECTION, KEYS, PLATFORMS, RULE_KEY, RULE_KEYS

CONFIG_NAME = configfile.CONFIG_NAME
# The largest config file read. The biggest .air.toml of the corpus is a few KiB;
# the bound keeps a wrong -c (a log, an image) from filling memory.
MAX_CONFIG_BYTES = 1024 * 1024


def current_platform():
    """Air's GOOS name for this Python: the [build.<platform>] block that applies."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("linux"):
        return "linux"
    return sys.platform


# ---------------------------------------------------------------- the classes

class _Section:
    """What every config class shares: arrays given as lists (by a test building
    a config by hand) are stored as tuples, so that nothing in it can change."""

    _section = ""   # the schema section whose keys are the fields

    def __post_init__(self):
        for key in BY_SECTION[self._section].values():
            value = getattr(self, key.name)
            if isinstance(value, list):
                object.__setattr__(self, key.name, tuple(value))


def new_rule(index):
    """A [[build.rules]] entry with every key at its default."""
    rule = {key.name: key.default for key in RULE_KEYS}
    rule["name"] = "rule-%d" % index
    return rule


def _frozen_rule(index, given):
    # A rule built by hand (tests) gets the defaults of the keys it leaves out.
    rule = new_rule(index)
    rule.update((name, tuple(v) if isinstance(v, list) else v) for name, v in dict(given).items())
    return types.MappingProxyType(rule)


class _Build(_Section):
    def __post_init__(self):
        super().__post_init__()
        rules = tuple(_frozen_rule(i, rule) for i, rule in enumerate(self.rules))
        object.__setattr__(self, "rules", rules)
        # load_config() passes the patterns it compiled (and checked, with the file
        # or flag in the message); anything else is compiled here, once.
        compiled = self.exclude_regex_compiled
        if compiled is None or tuple(p.pattern for p in compiled) != self.exclude_regex:
            compiled = kinds.compile_patterns(self.exclude_regex, "build.exclude_regex")
        object.__setattr__(self, "exclude_regex_compiled", compiled)


class _Top(_Section):
    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "warnings", tuple(kinds.printable(w) for w in self.warnings))
        # load_config() resolves the three paths against air_wd or cwd; a config
        # built by hand resolves them here. dataclasses.replace() carries them over,
        # so a variant with another root must pass root_path="" to have it redone.
        if not self.root_path:
            object.__setattr__(self, "root_path", os.path.abspath(os.path.expanduser(self.root)))
        for attr, rel in (("tmp_path", self.tmp_dir), ("testdata_path", self.testdata_dir)):
            if not getattr(self, attr):
                object.__setattr__(self, attr, os.path.normpath(os.path.join(self.root_path, rel)))


def _seconds(key):
    return property(lambda self: key.seconds(getattr(self, key.name)),
                    doc="%s in seconds" % key.dotted)


def _config_class(name, section, doc, base=_Section, extra=()):
    """A frozen dataclass with one field per key of `section`, defaulting to Air's
    default, plus a read-only `<key>_s` for each key with a unit."""
    keys = BY_SECTION[section].values()
    fields = [(k.name, k.kind.annotation, field(default=k.default)) for k in keys]
    namespace = {"__doc__": doc, "__module__": __name__, "_section": section}
    namespace.update((k.name + "_s", _seconds(k)) for k in keys if k.unit)
    return make_dataclass(name, fields + list(extra), bases=(base,), frozen=True, namespace=namespace)


BuildConfig = _config_class(
    "BuildConfig", "build", "[build]: what to watch, how to build, how to run the app.", _Build, [
        ("rules", tuple, field(default=())),
        ("exclude_regex_compiled", tuple, field(default=None, repr=False, compare=False)),
    ])
LogConfig = _config_class("LogConfig", "log", "[log]: what the log lines show.")
ColorConfig = _config_class("ColorConfig", "color", "[color]: the colour of each part's log lines.")
MiscConfig = _config_class("MiscConfig", "misc", "[misc]: clean-up at exit, the start-up banner.")
ScreenConfig = _config_class("ScreenConfig", "screen", "[screen]: clearing the terminal on rebuild.")
ProxyConfig = _config_class("ProxyConfig", "proxy", "[proxy]: the live-reload proxy.")
SECTION_CLASSES = {"build": BuildConfig, "log": LogConfig, "color": ColorConfig,
                   "misc": MiscConfig, "screen": ScreenConfig, "proxy": ProxyConfig}
assert set(SECTION_CLASSES) == set(schema.SECTIONS) - {""}, "a schema section has no class"

Config = _config_class(
    "Config", "", "The effective configuration: the top-level keys, one object per table, "
    "and the paths resolved from root.", _Top,
    [(section, cls, field(default_factory=cls)) for section, cls in SECTION_CLASSES.items()] + [
        ("config_path", Optional[str], field(default=None)),
        ("root_path", str, field(default="")),
        ("tmp_path", str, field(default="")),
        ("testdata_path", str, field(default="")),
        ("warnings", tuple, field(default=())),
    ])


def config_to_dict(cfg):
    """The effective config as .air.toml-shaped, JSON-serialisable dicts (--print-config)."""
    out = {}
    for key in KEYS:
        value = getattr(getattr(cfg, key.section) if key.section else cfg, key.name)
        value = list(value) if isinstance(value, tuple) else value
        if key.section:
            out.setdefault(key.section, {})[key.name] = value
        else:
            out[key.name] = value
    out["build"]["rules"] = [{name: list(value) if isinstance(value, tuple) else value
                              for name, value in rule.items()} for rule in cfg.build.rules]
    return out


# ---------------------------------------------------------------- loading

class _Loader:
    """One load_config() call: collects typed values, where each came from, and warnings."""

    def __init__(self, display):
        self.display = display                      # file name for messages, or None
        self.values = {}                            # Key -> value as set (file, block, flag)
        self.origin = {}                            # Key -> label for errors
        self.warnings = []
        self.rules = []
        self.platform_blocks = {}                   # platform -> {Key: (value, label)}

    def label(self, dotted):
        return "%s: %s" % (self.display, dotted) if self.display else dotted

    def set(self, key, value, label):
        self.values[key] = value
        self.origin[key] = label

    def get(self, key):
        return self.values.get(key, key.default)

    def where(self, key):
        return self.origin.get(key) or self.label(key.dotted)

    def warn_unknown(self, dotted, value, candidates):
        what = "unknown table" if isinstance(value, dict) else "unknown key"
        name = "[%s]" % dotted if isinstance(value, dict) else dotted
        self.warnings.append("%s: %s in %s%s; ignored" % (
            name, what, self.display, schema.did_you_mean(dotted, candidates)))

    def read_document(self, doc):
        known = schema.file_candidates()
        for name, value in doc.items():
            key = BY_SECTION[""].get(name)
            if key is not None:
                self.set(key, key.kind.check(value, self.label(name)), self.label(name))
            elif name in BY_SECTION and name:
                if not isinstance(value, dict):
                    _raise_not_table(self.label(name), name, value)
                self.read_section(name, value, known)
            else:
                self.warn_unknown(name, value, known)

    def read_section(self, section, table, known):
        for name, value in table.items():
            dotted = "%s.%s" % (section, name)
            key = BY_SECTION[section].get(name)
            if key is not None:
                self.set(key, key.kind.check(value, self.label(dotted)), self.label(dotted))
            elif section == "build" and name in PLATFORMS:
                self.read_platform(name, value)
            elif section == "build" and name == "rules":
                self.read_rules(value)
            else:
                self.warn_unknown(dotted, value, known)

    def read_platform(self, platform, table):
        prefix = "build.%s" % platform
        if not isinstance(table, dict):
            _raise_not_table(self.label(prefix), prefix, table)
        block = {}
        candidates = ["%s.%s" % (prefix, name) for name in BY_SECTION["build"]]
        for name, value in table.items():
            dotted = "%s.%s" % (prefix, name)
            key = BY_SECTION["build"].get(name)
            if key is not None:
                block[key] = (key.kind.check(value, self.label(dotted)), self.label(dotted))
            else:
                self.warn_unknown(dotted, value, candidates)
        self.platform_blocks[platform] = block

    def read_rules(self, value):
        # Checked as Air's normalizeRules (runner/config.go) checks them; a
        # single [build.rules] table is taken as one rule rather than refused.
        tables = [value] if isinstance(value, dict) else value
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError("%s: expected an array of tables [[build.rules]], got %s"
                              % (self.label("build.rules"), kinds.show(value)))
        for index, table in enumerate(tables):
            prefix = "build.rules[%d]" % index
            rule = new_rule(index)
            candidates = ["%s.%s" % (prefix, name) for name in RULE_KEY]
            for name, item in table.items():
                dotted = "%s.%s" % (prefix, name)
                if name in RULE_KEY:
                    rule[name] = RULE_KEY[name].kind.check(item, self.label(dotted))
                else:
                    self.warn_unknown(dotted, item, candidates)
            if not rule["name"]:
                rule["name"] = "rule-%d" % index
            if not (rule["cmd"].strip() or rule["restart"] or rule["reload"]):
                raise ConfigError("%s: cmd is required (the command to run when a matched file "
                                  "changes), unless restart = true or reload = true" % self.label(prefix))
            if not (rule["include_dir"] or rule["include_ext"] or rule["include_file"]):
                raise ConfigError("%s: needs at least one of include_dir, include_ext or include_file "
                                  "(the files that run it)" % self.label(prefix))
            kinds.compile_patterns(rule["exclude_regex"], self.label(prefix + ".exclude_regex"))
            self.rules.append(rule)

    def warn_reload_without_proxy(self, proxy_on):
        """reload = true reloads the browser through the proxy: without it the
        rule's changes reach no page, which is said once, at load time."""
        if proxy_on:
            return
        for index, rule in enumerate(self.rules):
            if rule["reload"] and not rule["restart"]:
                self.warnings.append(
                    "%s: reload = true, but proxy.enabled is false: no browser is reloaded for "
                    "this rule (%s); set proxy.enabled = true with proxy_port and app_port"
                    % (self.label("build.rules[%d].reload" % index),
                       "its cmd still runs" if rule["cmd"].strip() else "its files do nothing"))

    def apply_platform(self, platform):
        for key, (value, label) in self.platform_blocks.get(platform, {}).items():
            self.set(key, value, label)

    def apply_mergo_defaults(self):
        # Air merges the file into defaultConfig() with mergo (Overwrite on), and
        # mergo never copies a zero value: a key set to "" or [] in the file keeps
        # Air's default when that default is not empty (cmd = "" -> "go build ...",
        # include_ext = [] -> the Go list). Numbers and booleans are the exception
        # here: in Air `delay = 0` silently becomes 1000 ms and keep_scroll = false
        # becomes true, which only surprises, so air_std takes them as written.
        for key, value in list(self.values.items()):
            if value in ("", ()) and key.default not in ("", (), 0, None):
                self.values[key] = key.default

    def apply_overrides(self, overrides, platform):
        seen = set()
        for dotted, raw in overrides:
            key = schema.flag_key(dotted)
            label = "--" + dotted
            value = key.kind.parse(raw if isinstance(raw, str) else str(raw), label)
            if dotted.count(".") == 2 and dotted.split(".")[1] != platform:
                continue                              # checked, but not for this OS
            if key.kind.many and dotted in seen:
                value = self.values[key] + value      # a repeated list flag extends the list
            seen.add(dotted)
            self.set(key, value, label)

    def adjust_defaults_for_tmp_dir(self):
        """Air's adjustDefaultsForTmpDir (runner/config.go): with another tmp_dir,
        build.cmd, build.bin and build.exclude_dir that still hold their default
        values follow it (tmp_dir = "out": "go build -o ./out/main .", "./out/main",
        "out" instead of "tmp" in the default exclude_dir). Values are compared, not
        origins, as Air compares them."""
        top, build = BY_SECTION[""], BY_SECTION["build"]
        tmp = self.get(top["tmp_dir"])
        if tmp == top["tmp_dir"].default:
            return
        new_bin = os.path.normpath(os.path.join(tmp, "main"))
        if not os.path.isabs(tmp):
            new_bin = "./" + new_bin
        cmd, bin_, exclude = build["cmd"], build["bin"], build["exclude_dir"]
        if self.get(cmd) == cmd.default:
            self.values[cmd] = "go build -o %s ." % new_bin
        if self.get(bin_) == bin_.default:
            self.values[bin_] = new_bin
        if self.get(exclude) == exclude.default:
            self.values[exclude] = tuple(tmp if d == top["tmp_dir"].default else d for d in exclude.default)

    def deprecated_bin(self, from_file, overrides):
        """Air's warnDeprecatedBin: build.bin without build.entrypoint, when a
        config file was read or --build.bin given (so plain `air_std` with no
        file stays quiet). Not with full_bin, which runs instead of bin."""
        build = BY_SECTION["build"]
        if not (from_file or any(dotted == "build.bin" for dotted, _ in overrides)):
            return
        if self.get(build["entrypoint"]) or not self.get(build["bin"]) or self.get(build["full_bin"]):
            return
        self.warnings.append("%s is deprecated in Air; set build.entrypoint instead "
                             "(entrypoint = [%s])" % (self.where(build["bin"]),
                                                      kinds.show(self.get(build["bin"])).replace("'", '"')))

    def finish(self):
        """Checks that involve the final values, then the values for the classes:
        {section: {name: value}}."""
        # Air's preprocess() runs after the CLI flags and restores these two.
        for name in ("tmp_dir", "testdata_dir"):
            key = BY_SECTION[""][name]
            if self.get(key) == "":
                self.values[key] = key.default
        self.adjust_defaults_for_tmp_dir()
        final = {section: {} for section in schema.SECTIONS}
        for key in KEYS:
            value = self.get(key)
            final[key.section][key.name] = key.clean(value) if key.clean else value
        _check_build_log(final["build"]["log"], self.where(BY_SECTION["build"]["log"]))
        regex = BY_SECTION["build"]["exclude_regex"]
        final["build"]["exclude_regex_compiled"] = kinds.compile_patterns(
            final["build"]["exclude_regex"], self.where(regex))
        final["build"]["rules"] = self.rules
        proxy = final["proxy"]
        self.warn_reload_without_proxy(proxy["enabled"])
        if proxy["enabled"]:
            for name in ("proxy_port", "app_port"):
                if not proxy[name]:
                    raise ConfigError("%s: must be set (1-65535) when proxy.enabled is true"
                                      % self.where(BY_SECTION["proxy"][name]))
            if proxy["proxy_port"] == proxy["app_port"]:
                raise ConfigError("%s: must differ from proxy.app_port (both are %d)"
                                  % (self.where(BY_SECTION["proxy"]["proxy_port"]), proxy["app_port"]))
        return final


def _refuse_dirs_holding_root(loader, root_path, build):
    """An include_dir outside root is watched as a tree of its own (Air's
    normalizeIncludeDirs); one that holds root ("..", "/") would watch root
    twice over and everything beside it, so it is refused, naming the key."""
    entries = [(loader.where(BY_SECTION["build"]["include_dir"]), d) for d in build["include_dir"]]
    for index, rule in enumerate(build["rules"]):
        entries += [(loader.label("build.rules[%d].include_dir" % index), d)
                    for d in rule["include_dir"]]
    for label, entry in entries:
        if not entry.strip():
            continue
        full = os.path.normpath(os.path.join(root_path, entry.strip()))
        if full != root_path and os.path.relpath(root_path, full).split(os.sep)[0] != "..":
            raise ConfigError("%s: %r holds root (%s), so it would watch root twice and all beside it; "
                              "name the directories beside root instead (for example '../shared')"
                              % (label, entry, root_path))


def _raise_not_table(label, dotted, value):
    raise ConfigError("%s: expected a table [%s], got %s" % (label, dotted, kinds.show(value)))


def _log_in_tmp(name):
    """build.log as a path relative to tmp_dir, the way Air joins the two (Go's
    filepath.Join: a leading '/' does not leave tmp_dir, so "/tmp/air.log" is
    tmp_dir/tmp/air.log), or None when it climbs out of tmp_dir ('../x') or
    names tmp_dir itself."""
    rel = os.path.normpath(name.lstrip("/"))
    if rel == "." or rel == ".." or rel.startswith("../"):
        return None
    return rel


def _check_build_log(name, label):
    """A failed build writes its output to build.log: it must stay inside tmp_dir."""
    if name and _log_in_tmp(name) is None:
        raise ConfigError("%s: expected a file name inside tmp_dir, like 'build-errors.log', got %s "
                          "(the build log is written only inside tmp_dir)" % (label, kinds.show(name)))


def _inside(path, parent):
    """Is `path` strictly below `parent` (both absolute and resolved)?"""
    return path != parent and os.path.commonpath([path, parent]) == parent


def build_log_path(cfg):
    """Where a failed build's output may be written: (path, None), or (None,
    why not) -- (None, None) when build.log is empty.

    Only inside tmp_dir, and only while tmp_dir is inside root: tmp_dir may
    name a shared place such as /tmp, where another user can put a symlink
    under the log's name. The real paths are compared when the log is about
    to be written, so a symlink in the project cannot lead it elsewhere either.
    """
    if not cfg.build.log:
        return None, None
    rel = _log_in_tmp(cfg.build.log)
    if rel is None:  # a config built by hand; load_config() refuses it
        return None, "build.log %s leads out of tmp_dir" % kinds.show(cfg.build.log)
    path = os.path.join(cfg.tmp_path, rel)
    root = os.path.realpath(cfg.root_path)
    tmp = os.path.realpath(cfg.tmp_path)
    if not _inside(tmp, root):
        return None, "tmp_dir %s is not inside root %s (air_std writes only inside the project)" % (
            cfg.tmp_path, cfg.root_path)
    if not _inside(os.path.realpath(path), tmp):
        return None, "%s leads out of tmp_dir %s (a symlink?)" % (path, cfg.tmp_path)
    return path, None


def _check_regular(st, display):
    what = smallfile.file_kind(st)
    if what is not None:
        raise ConfigError("%s: is %s; expected a .air.toml file" % (display, what))
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError("%s: %d bytes; a config file may have at most %d (is it the right file?)"
                          % (display, st.st_size, MAX_CONFIG_BYTES))


def _read_config_bytes(full, display):
    """The file's bytes: a regular file only, at most MAX_CONFIG_BYTES (smallfile.py)."""
    try:
        data = smallfile.read_bounded(full, MAX_CONFIG_BYTES, lambda st: _check_regular(st, display))
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and os.path.islink(full):
            raise ConfigError("%s: a symbolic link to %s, which does not exist"
                              % (display, os.readlink(full))) from None
        raise ConfigError("%s: cannot read: %s" % (display, exc.strerror or exc)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("%s: more than %d bytes; a config file may have at most that (is it the "
                          "right file?)" % (display, MAX_CONFIG_BYTES))
    return data


def _read_toml(full, display):
    from air_std import tomlread   # imported here: TOML parsing costs a few ms at start-up

    try:
        # utf-8-sig: a BOM written by some Windows editors is not a TOML error.
        text = _read_config_bytes(full, display).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: not UTF-8 text (byte %d); save it as UTF-8" % (display, exc.start)) from None
    # what reading in text mode did before: universal newlines
    text = text.replace("\r\n", "\n").replace("\r", "\n")
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
    try:
        return _load_config(path, overrides, cwd, env)
    except ConfigError as exc:
        # One rule for every message: a file or key name holding a newline or a
        # control character must not break the one line (warnings: in Config).
        message = str(exc)
        if message.isprintable():
            raise
        raise ConfigError(kinds.printable(message)) from None


def _load_config(path, overrides, cwd, env):
    cwd = os.path.abspath(os.getcwd() if cwd is None else cwd)
    env = os.environ if env is None else env
    base, full, display, warnings = configfile.locate(path, cwd, env)
    loader = _Loader(display)
    loader.warnings.extend(warnings)
    if full is not None:
        loader.read_document(_read_toml(full, display))
    platform = current_platform()
    loader.apply_platform(platform)
    loader.apply_mergo_defaults()
    loader.apply_overrides(overrides or [], platform)
    final = loader.finish()
    loader.deprecated_bin(full is not None, overrides or [])
    top = final.pop("")
    root_path = os.path.normpath(os.path.join(base, os.path.expanduser(top["root"])))
    _refuse_dirs_holding_root(loader, root_path, final["build"])
    return Config(
        config_path=full, root_path=root_path, warnings=loader.warnings,
        tmp_path=os.path.normpath(os.path.join(root_path, top["tmp_dir"])),
        testdata_path=os.path.normpath(os.path.join(root_path, top["testdata_dir"])),
        **top, **{section: SECTION_CLASSES[section](**values) for section, values in final.items()})
