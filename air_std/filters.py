"""Which paths count: Air's include/exclude rules, decided from names alone.

Pure functions and small precomputed tables, no I/O, so the watcher can ask
"is this directory walked?" and "is this file watched?" from a scandir entry's
name *before* it spends a stat on it. Called by the watcher thread (and by
tests); a PathFilter is built on the main thread, is immutable after that and
safe to share.

Semantics follow Air (runner/util.go, runner/engine.go, runner/config.go),
with paths relative to the root and "/" as separator:
- include_ext: extensions without the dot; "*" means every file but the
  built binary (bin, entrypoint, full_bin's command: util.go, isIncludeExt),
  which each build rewrites. The extension is what follows the last "." of
  the name (Go's filepath.Ext), so ".env" has extension "env" and "Makefile"
  has none.
- exclude_dir: relative paths, pruned without descending. An entry is
  compared with a directory's whole path relative to root, as Air does
  (util.go, isExcludeDir: equality): "vendor" prunes vendor/, not vendor2/
  nor src/vendor/. tmp_dir and testdata_dir are always pruned, and so is
  every hidden directory (a name starting with "."), as Air does: .git, .hg,
  .svn, .idea, .venv ...
- include_dir: entries inside root narrow the walk of root: only files under
  them are watched; their ancestors are walked but their own files are not.
  "Under" goes by whole path components, as in Air (util.go, checkIncludeDir
  and isSubPath, through filepath.Rel): "src" covers src/ and src/x/, not
  src2/.
  Entries outside root ("../shared", or absolute) are walked as trees of
  their own (`trees`), wholly, with the same filters, and leave root whole
  (config.go, normalizeIncludeDirs; util.go, checkIncludeDir).
- include_file: relative file paths watched whatever their extension.
- exclude_file: relative paths (Go filepath.Match globs: "*" never crosses
  "/") never watched.
- exclude_regex: `re.search` on the relative path; a match excludes the file.
  Excludes win over includes, as in Air.
- [[build.rules]] (rules.py) add their own directories and files; each
  directory's DirRule then says which rule, if any, takes a file before the
  main build does (`route`).

One deliberate difference from Air, where Air's behaviour is a bug: the
ancestors of an include_file entry are walked even when include_dir does not
cover them, so the file is actually watched (Air's walk skips them, and the
file with them).
"""

import os
import re
import shlex
from typing import NamedTuple

__all__ = ["PathFilter", "DirRule", "Tree", "MAIN", "clean_rel", "file_ext", "outside_root",
           "rel_to_root", "rel_under", "built_files"]

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


MAIN = -1   # DirRule.route(): the file belongs to the main build


class DirRule:
    """What the filter says about one walked directory.

    `accept(name)` decides whether a file directly in this directory is
    watched, from its name only; it is specialised per directory so the hot
    loop pays one call and, usually, one set lookup. Without rules it is the
    main build's own test (`main`). `route(name)` says who a change of that
    file goes to: the first rule that matches (its index), MAIN, or None.
    """

    __slots__ = ("rel", "in_scope", "accept", "main", "matchers", "rule_in", "main_walked")

    def __init__(self, rel, in_scope, accept, main=None, matchers=(), rule_in=False,
                 main_walked=True):
        self.rel = rel
        self.in_scope = in_scope          # the main build watches every file here
        self.accept = accept
        self.main = accept if main is None else main
        self.matchers = matchers          # ((rule index, name -> bool), ...) in rule order
        self.rule_in = rule_in            # inside a rule's include_dir
        self.main_walked = main_walked    # the main build walks this directory

    def route(self, name):
        for index, match in self.matchers:
            if match(name):
                return index
        return MAIN if self.main(name) else None


def _reject_all(name):
    return False


class Tree(NamedTuple):
    """One directory the watcher walks from: the root (rel "") or an
    include_dir outside it, with the key that asked for it."""
    rel: str
    key: str


class PathFilter:
    """Air's path rules, precomputed. Immutable; any thread may use it."""

    def __init__(self, include_ext=("go", "tpl", "tmpl", "html"), include_dir=(), include_file=(),
                 exclude_dir=(), exclude_file=(), exclude_regex=(), tmp_dir="tmp",
                 testdata_dir="testdata", rules=None, bin_files=(), ignore_files=()):
        """Each argument is the Air key of the same name (lists of strings;
        exclude_regex may hold compiled patterns too); paths are relative to
        the root ("../shared" lies beside it); tmp_dir/testdata_dir are None
        when outside it. rules: a rules.RuleSet, or None. bin_files: the
        built binary's paths, which include_ext = ["*"] leaves out.
        ignore_files: files air_std acts on itself (the config file it
        reloads), never a change for the main build."""
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

        dirs = set(clean_rel(d) for d in include_dir)
        # Air (config.go, normalizeIncludeDirs): entries inside root narrow the
        # walk of root; those outside it are walked as trees of their own and
        # leave root as it is.
        self.extra_dirs = tuple(sorted(d for d in dirs if outside_root(d)))
        self.include_dir = tuple(sorted(d for d in dirs if not outside_root(d)))
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
        for p in (clean_rel(f) for f in ignore_files):
            if p:  # by name, never as a glob: a file name may hold [ or *
                d, _, n = p.rpartition("/")
                self._exclude_names.setdefault(d, set()).add(n)

        # Air (util.go, isIncludeExt): "*" matches every file but the built
        # binary, or every build would rewrite a watched file and start the next.
        self._bin_names = {}  # dir -> names
        for p in (clean_rel(f) for f in bin_files):
            if p:
                d, _, n = p.rpartition("/")
                self._bin_names.setdefault(d, set()).add(n)

        # Compiled ones come from config.py, which already refused invalid
        # patterns with a message naming the key; strings are for callers
        # that build a filter by hand (tests, benchmarks).
        self._regexes = tuple(p if isinstance(p, re.Pattern) else re.compile(p)
                              for p in exclude_regex)

        # Directories that must be walked to reach include_dir / include_file
        # entries (their ancestors), as a set of relative paths.
        walk = set()
        for p in self.include_dir + self.extra_dirs + tuple(sorted(self.include_file)):
            parts = p.split("/")
            for i in range(1, len(parts)):
                walk.add("/".join(parts[:i]))
        self._walk_only = frozenset(walk)

        self.rules = rules if rules else None
        self.notes = list(rules.notes) if rules is not None else []
        self.trees = self._trees()

    @classmethod
    def from_config(cls, cfg, rules=None, ignore_files=()):
        """Build from a loaded Config: cfg.root_path, cfg.tmp_path and
        cfg.testdata_path (absolute), build's include_ext, include_dir,
        include_file, exclude_dir, exclude_file and exclude_regex_compiled,
        and the binary's paths (bin, entrypoint, full_bin). rules: the
        rules.RuleSet of cfg.build.rules, built here when not given.
        ignore_files: absolute paths (those outside root need nothing)."""
        b = cfg.build
        root = cfg.root_path
        if rules is None and b.rules:
            from air_std.rules import RuleSet
            rules = RuleSet.from_config(cfg)
        return cls(include_ext=b.include_ext,
                   include_dir=[rel_to_root(d, root) for d in b.include_dir if d.strip()],
                   include_file=b.include_file, exclude_dir=b.exclude_dir,
                   exclude_file=b.exclude_file, exclude_regex=b.exclude_regex_compiled,
                   tmp_dir=rel_under(root, cfg.tmp_path),
                   testdata_dir=rel_under(root, cfg.testdata_path), rules=rules,
                   bin_files=[rel_to_root(p, root) for p in built_files(cfg)],
                   ignore_files=[r for r in (rel_under(root, p) for p in ignore_files) if r])

    # -- trees ---------------------------------------------------------------

    def _trees(self):
        """Root, then every include_dir outside it (main build's and rules'),
        without those inside another one (walked from it) and without hidden
        ones (Air's walk skips a hidden directory, even one named here)."""
        extra = [(d, "build.include_dir") for d in self.extra_dirs]
        if self.rules is not None:
            extra += self.rules.outside()
        trees = [Tree("", "root")]
        for rel, key in sorted(extra, key=lambda item: (len(item[0]), item[0])):
            name = rel.rpartition("/")[2]
            if name.startswith(".") and name != "..":
                self.notes.append("%s: %s is a hidden directory, which Air never watches; not watched"
                                  % (key, rel))
            elif not any(t.rel and (rel == t.rel or rel.startswith(t.rel + "/")) for t in trees):
                trees.append(Tree(rel, key))
        return tuple(trees)

    def tree_rule(self, rel):
        """The rule for the top directory of a tree (see `trees`)."""
        if rel == "":
            return self._rule("", self._in_scope(""), "" in self._rule_dirs(), True)
        in_scope = self._in_scope(rel)
        return self._rule(rel, in_scope, rel in self._rule_dirs(),
                          in_scope or rel in self._walk_only)

    def _rule_dirs(self):
        return self.rules.dirs if self.rules is not None else frozenset()

    # -- directories ---------------------------------------------------------

    def _in_scope(self, rel):
        """Whether the main build watches every file of directory `rel`."""
        if outside_root(rel):
            # Air (util.go, checkIncludeDir): all of an include_dir outside root
            for d in self.extra_dirs:
                if rel == d or rel.startswith(d + "/"):
                    return True
            return False
        if not self.include_dir:
            return True
        for d in self.include_dir:
            if rel == d or rel.startswith(d + "/"):
                return True
        return False

    def root_rule(self):
        return self.tree_rule("")

    def dir_rule(self, parent, name):
        """The rule for child directory `name` of `parent`, or None if it is pruned.

        Cheap checks on the name come first; this runs once per new directory,
        not once per pass.
        """
        rel = parent.rel + "/" + name if parent.rel else name
        hidden = name[:1] == "."
        pruned = hidden or rel in self.exclude_dir
        main_walked = (parent.main_walked and not pruned
                       and (parent.in_scope or self._in_scope(rel) or rel in self._walk_only))
        in_scope = main_walked and (parent.in_scope or self._in_scope(rel))
        rules = self.rules
        if rules is None:
            return self._rule(rel, in_scope, False, True) if main_walked else None
        # Air (engine.go, watching): a rule's include_dir is walked even when
        # exclude_dir lists it; below it, hidden directories, tmp_dir,
        # testdata_dir and exclude_dir entries are still pruned.
        if rel in rules.dirs:
            rule_in = True
        else:
            rule_in = parent.rule_in and not pruned
        if not (main_walked or rule_in or rel in rules.dir_walk
                or (rel in rules.file_walk and not pruned)):
            return None
        return self._rule(rel, in_scope, rule_in, main_walked)

    def _rule(self, rel, in_scope, rule_in, main_walked):
        main = self._make_accept(rel, in_scope) if main_walked else _reject_all
        if self.rules is None:
            return DirRule(rel, in_scope, main, main, (), False, main_walked)
        matchers = self.rules.matchers(rel, in_scope, rule_in)
        accept = main
        if matchers:
            tests = (main,) + tuple(match for _, match in matchers)

            def accept(name, _t=tests):
                for test in _t:
                    if test(name):
                        return True
                return False
        return DirRule(rel, in_scope, accept, main, matchers, rule_in, main_walked)

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
        if all_ext and rel in self._bin_names:
            excludes = excludes | (self._bin_names[rel] - includes)

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
        found = self._dir_and_name(rel_path)
        return found is not None and found[0].accept(found[1])

    def route(self, rel_path):
        """Who a change of the file at `rel_path` goes to: a rule's index,
        MAIN, or None (not watched). For tests and tools, like watches()."""
        found = self._dir_and_name(rel_path)
        return None if found is None else found[0].route(found[1])

    def _dir_and_name(self, rel_path):
        rel = clean_rel(rel_path)
        if not rel:
            return None
        parts = rel.split("/")
        tree = ""
        for t in self.trees:
            if t.rel and len(t.rel) > len(tree) and rel.startswith(t.rel + "/"):
                tree = t.rel
        if not tree and outside_root(rel):
            return None
        rule = self.tree_rule(tree)
        for part in parts[len(tree.split("/")) if tree else 0:-1]:
            rule = self.dir_rule(rule, part)
            if rule is None:
                return None
        return rule, parts[-1]


def _accept_all(name):
    return True


def outside_root(rel):
    """Whether a relative path (in clean_rel's form) leads out of root."""
    return rel == ".." or rel.startswith("../")


def rel_to_root(path, root):
    """A path from the config (relative to root, or absolute) in clean_rel's
    form: "" for root itself, "../shared" for a directory beside it."""
    full = os.path.normpath(os.path.join(root, str(path).strip()))
    rel = os.path.relpath(full, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


def rel_under(root, path):
    """path relative to root if it lies under it, else None (nothing to prune)."""
    if not path:
        return None
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return None
    return rel.replace(os.sep, "/")


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def built_files(cfg):
    """The paths (relative to root, or absolute) where the built binary may
    be: bin, the first item of entrypoint, and the first word of full_bin
    after any VAR=value. Air (util.go, isBinPath; config.go, binPath) leaves
    out the entrypoint, else bin (which full_bin replaces); all of them are
    left out here, because `full_bin = "APP_ENV=dev ./tmp/main"` names a
    binary as much as bin does."""
    b = cfg.build
    paths = []
    if b.bin.strip():
        paths.append(b.bin.strip())
    if b.entrypoint and b.entrypoint[0].strip():
        paths.append(b.entrypoint[0].strip())
    if b.full_bin.strip():
        try:
            words = shlex.split(b.full_bin)
        except ValueError:  # an unclosed quote: the shell would refuse it too
            words = b.full_bin.split()
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)
        if words:
            paths.append(words[0])
    return paths
