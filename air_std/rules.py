"""[[build.rules]] as the watcher sees them: which directories the rules make
it walk, and which rule, if any, a changed file belongs to.

Decided from names alone, like filters.py, which asks this module once per
new directory for the rules' matchers there. No I/O and no thread of its own:
built on the main thread, then used by the watcher thread ("air-watcher");
a RuleSet is immutable once built. The rule commands are run by
rule_runner.py.

Meaning, from Air's runner/rule.go (matchRuleIndex, ruleMatches, isRuleDir,
inRuleDir), runner/config.go (normalizeRules) and runner/engine.go (watching,
watchConfiguredDirs, and the event loop of watchPath):
- Rules are checked in order before the main filters; the first rule that
  matches a file takes it, and that change never starts the main build.
- include_dir: the rule matches only files under these directories (relative
  to root, or absolute; outside root too). A rule's include_dir is walked even
  when exclude_dir lists it (the directory itself is exempt, not what
  exclude_dir lists below it); hidden directories, tmp_dir and testdata_dir
  below it stay pruned. An include_dir that is itself hidden, tmp_dir or
  testdata_dir is never walked, as in Air (config.py warns about it).
- Without include_dir, a rule matches in the directories the main build
  watches and inside every rule's include_dir: the directories Air watches.
- include_ext and include_file: with neither, any file matches; "*" matches
  any extension; include_file entries are paths relative to root.
- exclude_regex: `re.search` on the path relative to root, as air_std does
  for build.exclude_regex (Air matches the absolute path).
One addition: a rule's include_file is watched even in a directory nothing
else makes the watcher watch, as air_std does for build.include_file.
"""

import os
import re

from air_std import filters

__all__ = ["RuleSet", "Rule"]


def under(rel, top):
    """Whether relative path `rel` is `top` or below it ("" is the root:
    everything inside root). Both are in the canonical form filters.py uses,
    so a plain prefix test is right (config.py refuses directories holding
    root, the one case where it would not be)."""
    if top == "":
        return not filters.outside_root(rel)
    return rel == top or rel.startswith(top + "/")


def ancestors(rel):
    """The directories above `rel` that a walk from its tree passes through."""
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts)) if parts[i - 1] != ".."]


class Rule:
    """One rule, compiled for matching. Immutable."""

    __slots__ = ("index", "name", "dirs", "exts", "all_ext", "any_name", "files", "regexes")

    def __init__(self, index, name, dirs, include_ext, include_file, exclude_regex):
        self.index = index
        self.name = name
        self.dirs = tuple(dirs)
        exts = set()
        all_ext = False
        for e in include_ext:
            e = str(e).strip()
            if e in ("*", ".*"):
                all_ext = True
            elif e:
                exts.add(e[1:] if e.startswith(".") else e)
        self.exts = frozenset(exts)
        self.all_ext = all_ext
        files = [p for p in (filters.clean_rel(f) for f in include_file) if p]
        # Air: with neither include_ext nor include_file, every file matches.
        self.any_name = all_ext or not (exts or files)
        by_dir = {}
        for p in files:
            if self.dirs and not any(under(p, d) for d in self.dirs):
                continue  # Air checks include_dir first: this entry can never match
            d, _, n = p.rpartition("/")
            by_dir.setdefault(d, set()).add(n)
        self.files = {d: frozenset(names) for d, names in by_dir.items()}
        self.regexes = tuple(p if isinstance(p, re.Pattern) else re.compile(p) for p in exclude_regex)

    def in_scope(self, rel, main_scope, rule_in):
        """Whether the directory `rel` is one where this rule looks at every
        file name (not only its include_file entries)."""
        if self.dirs:
            return rule_in and any(under(rel, d) for d in self.dirs)
        return main_scope or rule_in

    def matcher(self, rel, in_scope):
        """name -> bool for files directly in directory `rel`, or None when no
        name there can match."""
        names = self.files.get(rel, frozenset())
        if not in_scope and not names:
            return None
        any_name = in_scope and self.any_name
        exts = self.exts if in_scope else frozenset()
        prefix = rel + "/" if rel else ""
        regexes = self.regexes

        def match(name):
            if not (any_name or name in names):
                i = name.rfind(".")
                if i < 0 or name[i + 1:] not in exts:
                    return False
            if regexes:
                path = prefix + name
                for rx in regexes:
                    if rx.search(path):
                        return False
            return True
        return match


class RuleSet:
    """Every rule, in order, with the directories they add to the walk."""

    def __init__(self, rules=(), root=None, tmp_dir=None, testdata_dir=None):
        """rules: mappings with the [[build.rules]] keys (name, include_dir,
        include_ext, include_file, exclude_regex); include_dir entries are
        relative to root, or absolute when `root` (absolute) is given.
        tmp_dir, testdata_dir: relative to root (None when outside it)."""
        self.notes = []   # why an include_dir is not walked, for the log at start
        pruned = {filters.clean_rel(d) for d in (tmp_dir, testdata_dir) if d}
        compiled = []
        for i, rule in enumerate(rules):
            name = rule.get("name") or "rule-%d" % i
            dirs = []
            for rel in _dirs(rule.get("include_dir", ()), root):
                why = _not_walked(rel, pruned)
                if why:
                    self.notes.append("build.rules[%d] (%s): include_dir %s is %s, which Air never "
                                      "watches; not watched" % (i, name, rel or ".", why))
                else:
                    dirs.append(rel)
            compiled.append(Rule(i, name, dirs, rule.get("include_ext", ()),
                                 rule.get("include_file", ()), rule.get("exclude_regex", ())))
        self.rules = tuple(compiled)
        self.dirs = frozenset(d for r in self.rules for d in r.dirs)
        # Directories walked only to reach a rule's include_dir (whatever they
        # are: Air walks each include_dir from itself) or include_file entries.
        self.dir_walk = frozenset(a for d in self.dirs for a in ancestors(d))
        self.file_walk = frozenset(a for r in self.rules for d in r.files
                                   for a in ancestors(d) + [d])

    @classmethod
    def from_config(cls, cfg):
        root = cfg.root_path
        return cls(cfg.build.rules, root, filters.rel_under(root, cfg.tmp_path),
                   filters.rel_under(root, cfg.testdata_path))

    def __bool__(self):
        return bool(self.rules)

    def __len__(self):
        return len(self.rules)

    def outside(self):
        """(relative path, key) of every rule include_dir outside root."""
        return [(d, "build.rules[%d].include_dir" % r.index)
                for r in self.rules for d in r.dirs if filters.outside_root(d)]

    def matchers(self, rel, main_scope, rule_in):
        """((rule index, name -> bool), ...) in rule order, for the rules that
        may match a file directly in directory `rel`."""
        out = []
        for rule in self.rules:
            match = rule.matcher(rel, rule.in_scope(rel, main_scope, rule_in))
            if match is not None:
                out.append((rule.index, match))
        return tuple(out)


def _dirs(entries, root):
    """A rule's include_dir entries as relative paths (Air's cleanPath, then
    Join with root), without repeats."""
    out = []
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        rel = filters.rel_to_root(entry, root) if root else filters.clean_rel(entry)
        if rel not in out:
            out.append(rel)
    return tuple(out)


def _not_walked(rel, pruned):
    """Why Air's walk would skip this include_dir (engine.go, watching: a
    hidden name, tmp_dir, testdata_dir), or None."""
    name = rel.rpartition("/")[2]
    if name.startswith(".") and name != "..":
        return "a hidden directory"
    if rel in pruned:
        return "tmp_dir or testdata_dir"
    return None
