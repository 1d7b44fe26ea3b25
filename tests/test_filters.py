"""Tests for air_std/filters.py: every filter key, with Air's semantics.

Pure functions, no I/O: each test builds a PathFilter and asks about
relative paths.
"""

import re
from types import SimpleNamespace

from air_std.filters import PathFilter, clean_rel, file_ext


def watched(f, *paths):
    return [p for p in paths if f.watches(p)]


def test_defaults_are_airs():
    f = PathFilter()
    assert watched(f, "main.go", "views/index.html", "a.tpl", "b.tmpl", "x.txt", "Makefile") == [
        "main.go", "views/index.html", "a.tpl", "b.tmpl"]
    # tmp and testdata are pruned even when not listed in exclude_dir
    assert watched(f, "tmp/main.go", "testdata/x.go") == []


def test_include_ext_without_and_with_dot():
    f = PathFilter(include_ext=["go", ".py", " html "])
    assert watched(f, "a.go", "b.py", "c.html", "d.txt") == ["a.go", "b.py", "c.html"]


def test_include_ext_star_watches_everything_even_without_extension():
    f = PathFilter(include_ext=["*"])
    paths = ["a.go", "Makefile", "x.txt", "dir/noext"]
    assert watched(f, *paths) == paths


def test_no_extension_is_not_watched_without_star():
    f = PathFilter(include_ext=["go"])
    assert watched(f, "Makefile", "go", "dir/go") == []


def test_extension_is_after_the_last_dot_like_go():
    assert file_ext("a.tar.gz") == "gz"
    assert file_ext(".env") == "env"
    assert file_ext("Makefile") is None
    f = PathFilter(include_ext=["env", "gz"])
    assert watched(f, ".env", "a.tar.gz", "a.env.bak") == [".env", "a.tar.gz"]


def test_editor_temp_files_are_not_watched():
    f = PathFilter(include_ext=["go"])
    assert watched(f, ".main.go.swp", "main.go~", "#main.go#", "main.go.tmp", "4913") == []


def test_exclude_dir_prunes_relative_paths_and_subtrees():
    f = PathFilter(include_ext=["go"], exclude_dir=["vendor", "frontend/node_modules", "./build/"])
    assert watched(f, "vendor/a.go", "vendor/x/b.go", "frontend/node_modules/c.go",
                   "frontend/d.go", "build/e.go", "node_modules/f.go", "src/vendor/g.go") == [
        "frontend/d.go", "node_modules/f.go", "src/vendor/g.go"]


def test_exclude_dir_matches_whole_components_only():
    f = PathFilter(include_ext=["go"], exclude_dir=["tmp"])
    assert watched(f, "tmp2/a.go", "tmpx/b.go", "tmp/c.go") == ["tmp2/a.go", "tmpx/b.go"]


def test_tmp_and_testdata_dirs_are_pruned_wherever_configured():
    f = PathFilter(include_ext=["go"], exclude_dir=[], tmp_dir="build/out", testdata_dir="fixtures")
    assert watched(f, "build/out/a.go", "fixtures/b.go", "build/c.go", "tmp/d.go") == [
        "build/c.go", "tmp/d.go"]


def test_hidden_directories_are_never_descended():
    f = PathFilter(include_ext=["*"], exclude_dir=[])
    assert watched(f, ".git/config", ".hg/x", ".svn/y", ".idea/z.go", "a/.venv/b.py",
                   ".env", "a/.hidden.go") == [".env", "a/.hidden.go"]


def test_dir_rule_prunes_before_descending():
    f = PathFilter(include_ext=["go"], exclude_dir=["vendor"])
    root = f.root_rule()
    assert f.dir_rule(root, "vendor") is None
    assert f.dir_rule(root, ".git") is None
    assert f.dir_rule(root, "tmp") is None
    src = f.dir_rule(root, "src")
    assert src is not None and src.rel == "src"
    assert f.dir_rule(src, "vendor") is not None  # "vendor" names only the top-level one


def test_include_dir_limits_files_to_those_subtrees():
    f = PathFilter(include_ext=["go"], include_dir=["cmd", "internal/api"])
    assert watched(f, "main.go", "cmd/a.go", "cmd/x/b.go", "internal/c.go", "internal/api/d.go",
                   "internal/api/v1/e.go", "pkg/f.go", "cmd2/g.go") == [
        "cmd/a.go", "cmd/x/b.go", "internal/api/d.go", "internal/api/v1/e.go"]
    root = f.root_rule()
    # ancestors of an include_dir are walked, other directories pruned
    assert f.dir_rule(root, "internal") is not None
    assert f.dir_rule(root, "pkg") is None


def test_include_file_is_watched_whatever_its_extension():
    f = PathFilter(include_ext=["go"], include_file=["Makefile", "config/app.yaml"])
    assert watched(f, "Makefile", "config/app.yaml", "config/other.yaml", "sub/Makefile") == [
        "Makefile", "config/app.yaml"]


def test_include_file_outside_include_dir_is_still_reached():
    f = PathFilter(include_ext=["go"], include_dir=["src"], include_file=["conf/app.toml"])
    assert watched(f, "src/a.go", "conf/app.toml", "conf/b.go", "main.go") == [
        "src/a.go", "conf/app.toml"]


def test_exclude_file_exact_and_glob():
    f = PathFilter(include_ext=["go"], exclude_file=["gen.go", "cmd/*_gen.go", "a/b/c.go"])
    assert watched(f, "gen.go", "sub/gen.go", "cmd/x_gen.go", "cmd/deep/y_gen.go", "x_gen.go",
                   "a/b/c.go", "a/b/d.go") == [
        "sub/gen.go", "cmd/deep/y_gen.go", "x_gen.go", "a/b/d.go"]


def test_exclude_file_glob_star_never_crosses_slash():
    f = PathFilter(include_ext=["go"], exclude_file=["*.go"])
    assert watched(f, "a.go", "dir/b.go") == ["dir/b.go"]


def test_exclude_file_glob_classes():
    f = PathFilter(include_ext=["go"], exclude_file=["v[0-9].go", "w[!a].go", "q?.go"])
    assert watched(f, "v1.go", "vx.go", "wa.go", "wb.go", "q1.go", "q12.go") == [
        "vx.go", "wa.go", "q12.go"]


def test_exclude_wins_over_include_file():
    f = PathFilter(include_ext=["go"], include_file=["Makefile"], exclude_file=["Makefile"])
    assert watched(f, "Makefile") == []


def test_exclude_regex_searches_the_relative_path():
    f = PathFilter(include_ext=["go"], exclude_regex=["_test\\.go$", "^gen/", "mock"])
    assert watched(f, "a_test.go", "pkg/b_test.go", "gen/x.go", "pkg/gen/y.go", "mocks/m.go",
                   "a.go", "a_test.go.go") == ["pkg/gen/y.go", "a.go", "a_test.go.go"]


def test_exclude_regex_applies_with_star_ext():
    f = PathFilter(include_ext=["*"], exclude_regex=[r"\.log$"])
    assert watched(f, "a.log", "b.txt") == ["b.txt"]


def test_exclude_regex_may_be_given_compiled():
    """config.py compiles (and validates) exclude_regex once; the filter uses
    those patterns as they are, flags included."""
    compiled = re.compile(r"^GEN/", re.IGNORECASE)
    f = PathFilter(include_ext=["go"], exclude_regex=[compiled, "_test\\.go$"])
    assert f._regexes[0] is compiled
    assert watched(f, "gen/a.go", "b_test.go", "c.go") == ["c.go"]


def test_clean_rel():
    assert clean_rel("./a/b/") == "a/b"
    assert clean_rel(" a//b ") == "a/b"
    assert clean_rel(".") == ""
    assert clean_rel("a\\b") == "a/b"


def _cfg(root, tmp, testdata, **build):
    b = dict(include_ext=["go"], include_dir=[], include_file=[], exclude_dir=[], exclude_file=[],
             exclude_regex=[], rules=(), bin="./tmp/main", entrypoint=(), full_bin="")
    b.update(build)
    b["exclude_regex_compiled"] = [re.compile(p) for p in b["exclude_regex"]]
    return SimpleNamespace(root_path=str(root), tmp_path=str(tmp), testdata_path=str(testdata),
                           build=SimpleNamespace(**b))


def test_from_config_uses_resolved_paths(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "out", tmp_path / "td", exclude_dir=["vendor"],
               exclude_regex=["_test.go"])
    f = PathFilter.from_config(cfg)
    assert watched(f, "out/a.go", "td/b.go", "vendor/c.go", "d_test.go", "e.go", "tmp/f.go") == [
        "e.go", "tmp/f.go"]
    # the patterns config.py compiled (and validated) are used, not compiled again
    assert f._regexes == tuple(cfg.build.exclude_regex_compiled)
    assert f._regexes[0] is cfg.build.exclude_regex_compiled[0]


def test_from_config_ignores_tmp_outside_root(tmp_path):
    cfg = _cfg(tmp_path / "proj", tmp_path / "elsewhere", tmp_path / "proj" / "testdata")
    f = PathFilter.from_config(cfg)
    assert watched(f, "elsewhere/a.go", "testdata/b.go") == ["elsewhere/a.go"]
