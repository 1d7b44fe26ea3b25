"""Which paths count: Air's include/exclude rules, decided from names alone.

Pure functions and small precomputed tables, no I/O, so the watcher can ask
"is this directory walked?" and "is this file watched?" from a scandir entry's
name *before* it spends a stat on it. Called by the watcher thread (and by
tests); a PathFilter is immutable after construction and safe to share.

Semantics follow Air (runner/util.go, runner/engine.go), with paths relative
to the root and "/" as separator:
- include_ext: extensions without the dot; "*" means every file. The
  extension is what follows the last "." of the name (Go's filepath.Ext), so
  ".env" has extension "env" and "Makefile" has none.
- exclude_dir: relative paths, pruned without descending. tmp_dir and
  testdata_dir are always pruned, and so is every hidden directory (a name
  starting with "."), as Air does: .git, .hg, .svn, .idea, .venv ...
- include_dir: when non-empty, only files under those directories are
  watched; their ancestors are walked but their own files are not.
- include_file: relative file paths watched whatever their extension.
- exclude_file: relative paths (Go filepath.Match globs: "*" never crosses
  "/") never watched.
- exclude_regex: `re.search` on the relative path; a match excludes the file.
  Excludes win over includes, as in Air.

Two deliberate differences from Air, both where Air's behaviour is a bug:
include_dir is matched per path component ("src" does not cover "src2"),
and the ancestors of an include_file entry are walked even when include_dir
does not cover them, so the file is actually watched.
"""

import os
import re

__all__ = ["PathFilter", "DirRule", "clean_rel", "file_ext"]

_GLOB_CHARS = frozenset("*?[\\")


def clean_rel(path):
    """A user-written relative path in the form used for matching: "a/b"."""
    p = str(path).strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    p = p.strip("/")
    if not p or p == ".":
        return ""
    return "/".join(part for part in os.path.normpath(p).split(os.sep) if part and part != ".")


def file_ext(name):
    """The extension without the dot, or None when the name has no dot."""
    i = name.rfind(".")
    return None if i < 0 else name[i + 1:]


def _glob_to_regex(pattern):
    """Translate a Go filepath.Match pattern: "*" and "?" never match "/"."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1 if i < n and pattern[i] in "^!" else i)
            if j < 0:
                out.append("\\[")
                continue
            body = pattern[i:j]
            i = j + 1
            if body[:1] in ("^", "!"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out.append("(?!/)[" + body + "]")
        else:
            out.append(re.escape(c))
    return "(?:" + "".join(out) + r")\Z"


class DirRule:
    """What the filter says about one walked directory.

    `accept(name)` decides whether a file directly in this directory is
    watched, from its name only; it is specialised per directory so the hot
    loop pays one call and, usually, one set lookup.
    """

    __slots__ = ("rel", "in_scope", "accept")

    def __init__(self, rel, in_scope, accept):
        self.rel = rel
        self.in_scope = in_scope
        self.accept = accept


def _reject_all(name):
    return False


class PathFilter:
    """Air's path rules, precomputed. Immutable; any thread may use it."""

    def __init__(self, include_ext=("go", "tpl", "tmpl", "html"), include_dir=(), include_file=(),
                 exclude_dir=(), exclude_file=(), exclude_regex=(), tmp_dir="tmp",
                 testdata_dir="testdata"):
        """Each argument is the Air key of the same name (lists of strings;
        exclude_regex may hold compiled patterns too); tmp_dir/testdata_dir are
        relative to the root, None when outside it."""
        exts = set()
        self.all_ext = False
        for e in include_ext:
            e = str(e).strip()
            if e == "*" or e == ".*":
                self.all_ext = True
            elif e:
                exts.add(e[1:] if e.startswith(".") else e)
        self.include_ext = frozenset(exts)

        pruned = set(clean_rel(d) for d in exclude_dir)
        for d in (tmp_dir, testdata_dir):
            if d:
                pruned.add(clean_rel(d))
        pruned.discard("")
        self.exclude_dir = frozenset(pruned)

        self.include_dir = tuple(sorted(set(clean_rel(d) for d in include_dir)))
        # "" (the root itself) in include_dir means "everything", like no include_dir.
        if "" in self.include_dir:
            self.include_dir = ()

        # include_file / exact exclude_file entries grouped by their directory.
        self._include_names = {}  # dir -> names
        self.include_file = frozenset(p for p in (clean_rel(f) for f in include_file) if p)
        for p in self.include_file:
            d, _, n = p.rpartition("/")
            self._include_names.setdefault(d, set()).add(n)

        self._exclude_names = {}  # dir -> names
        globs = []
        for f in exclude_file:
            p = clean_rel(f)
            if not p:
                continue
            if _GLOB_CHARS.intersection(p):
                globs.append(re.compile(_glob_to_regex(p)))
            else:
                d, _, n = p.rpartition("/")
                self._exclude_names.setdefault(d, set()).add(n)
        self._exclude_globs = tuple(globs)

        # Compiled ones come from config.py, which already refused invalid
        # patterns with a message naming the key; strings are for callers
        # that build a filter by hand (tests, benchmarks).
        self._regexes = tuple(p if isinstance(p, re.Pattern) else re.compile(p)
                              for p in exclude_regex)

        # Directories that must be walked to reach include_dir / include_file
        # entries (their ancestors), as a set of relative paths.
        walk = set()
        for p in self.include_dir + tuple(sorted(self.include_file)):
            parts = p.split("/")
            for i in range(1, len(parts)):
                walk.add("/".join(parts[:i]))
        self._walk_only = frozenset(walk)

    @classmethod
    def from_config(cls, cfg):
        """Build from a loaded Config: cfg.root_path, cfg.tmp_path and
        cfg.testdata_path (absolute), and build's include_ext, include_dir,
        include_file, exclude_dir, exclude_file and exclude_regex_compiled."""
        b = cfg.build
        root = cfg.root_path
        return cls(include_ext=b.include_ext, include_dir=b.include_dir,
                   include_file=b.include_file, exclude_dir=b.exclude_dir,
                   exclude_file=b.exclude_file, exclude_regex=b.exclude_regex_compiled,
                   tmp_dir=_rel_under(root, cfg.tmp_path),
                   testdata_dir=_rel_under(root, cfg.testdata_path))

    # -- directories ---------------------------------------------------------

    def _in_scope(self, rel):
        if not self.include_dir:
            return True
        for d in self.include_dir:
            if rel == d or rel.startswith(d + "/"):
                return True
        return False

    def root_rule(self):
        return self._rule("")

    def dir_rule(self, parent, name):
        """The rule for child directory `name` of `parent`, or None if it is pruned.

        Cheap checks on the name come first; this runs once per new directory,
        not once per pass.
        """
        if name[:1] == ".":
            return None
        rel = parent.rel + "/" + name if parent.rel else name
        if rel in self.exclude_dir:
            return None
        if parent.in_scope:
            return self._rule(rel, True)
        if not (self._in_scope(rel) or rel in self._walk_only):
            return None
        return self._rule(rel)

    def _rule(self, rel, in_scope=None):
        if in_scope is None:
            in_scope = self._in_scope(rel)
        return DirRule(rel, in_scope, self._make_accept(rel, in_scope))

    # -- files ---------------------------------------------------------------

    def _make_accept(self, rel, in_scope):
        includes = frozenset(self._include_names.get(rel, ()))
        excludes = frozenset(self._exclude_names.get(rel, ()))
        prefix = rel + "/" if rel else ""
        exts = self.include_ext
        if not in_scope:
            exts = frozenset()
            if not includes:
                return _reject_all
        all_ext = self.all_ext and in_scope

        globs = self._exclude_globs
        regexes = self._regexes
        if globs or regexes:
            def accept(name, _i=includes, _x=excludes, _e=exts, _g=globs, _r=regexes, _p=prefix,
                       _a=all_ext):
                if name in _x:
                    return False
                if not (_a or name in _i):
                    i = name.rfind(".")
                    if i < 0 or name[i + 1:] not in _e:
                        return False
                # The costly checks run last, only for names that passed the others.
                path = _p + name
                for rx in _g:
                    if rx.match(path):
                        return False
                for rx in _r:
                    if rx.search(path):
                        return False
                return True
            return accept

        if all_ext and not excludes:
            return _accept_all
        if all_ext:
            return lambda name, _x=excludes: name not in _x
        if not includes and not excludes:
            def accept_ext(name, _e=exts):
                i = name.rfind(".")
                return i >= 0 and name[i + 1:] in _e
            return accept_ext

        def accept_listed(name, _i=includes, _x=excludes, _e=exts):
            if name in _x:
                return False
            if name in _i:
                return True
            i = name.rfind(".")
            return i >= 0 and name[i + 1:] in _e
        return accept_listed

    def watches(self, rel_path):
        """Whether the file at relative path `rel_path` is watched, walking
        its ancestors too. For tests and callers with a path in hand; the
        watcher itself uses dir_rule()/DirRule.accept per entry."""
        rel = clean_rel(rel_path)
        if not rel:
            return False
        parts = rel.split("/")
        rule = self.root_rule()
        for part in parts[:-1]:
            child = self.dir_rule(rule, part)
            if child is None:
                return False
            rule = child
        return rule.accept(parts[-1])


def _accept_all(name):
    return True


def _rel_under(root, path):
    """path relative to root if it lies under it, else None (nothing to prune)."""
    if not path:
        return None
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return None
    return rel.replace(os.sep, "/")

