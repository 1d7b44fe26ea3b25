"""air_std/ must run on Python 3.8: compile it with 3.8 when that interpreter is
here, and scan the source for library calls newer than 3.8 (a compile does not
catch those)."""

import ast
import glob
import os
import subprocess

import pytest

from conftest import REPO

SOURCES = sorted(glob.glob(str(REPO / "air_std" / "*.py")))
# attribute or keyword names that do not exist on 3.8, with the version that added them
NEWER_THAN_38 = {
    "removeprefix": "3.9", "removesuffix": "3.9", "cache": "3.9 (functools.cache)",
    "waitstatus_to_exitcode": "3.9", "pidfd_open": "3.9", "files": "3.9 (importlib.resources.files)",
    "process_group": "3.11", "stdlib_module_names": "3.10", "pairwise": "3.10",
    "kw_only": "3.10", "slots": "3.10 (dataclass slots)", "TaskGroup": "3.11",
    "add_note": "3.11", "exception_group": "3.11", "batched": "3.12",
}
# generic names that are only a problem on a given module
QUALIFIED = {"cache": "functools", "files": "resources"}


def find_py38():
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", "3.8*", "bin", "python")))
    return found[-1] if found else None


def test_compiles_with_python38():
    py38 = find_py38()
    if py38 is None:
        pytest.skip("no Python 3.8 interpreter installed (pyenv)")
    code = "import sys\nfor p in sys.argv[1:]: compile(open(p).read(), p, 'exec')"
    subprocess.run([py38, "-c", code] + SOURCES, check=True, timeout=60)


@pytest.mark.parametrize("path", SOURCES, ids=os.path.basename)
def test_no_library_use_newer_than_38(path):
    tree = ast.parse(open(path).read(), path)
    problems = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.keyword):
            name = node.arg
        if name in QUALIFIED:
            owner = node.value if isinstance(node, ast.Attribute) else None
            owner = getattr(owner, "attr", getattr(owner, "id", None))
            if owner != QUALIFIED[name]:
                name = None
        if name in NEWER_THAN_38:
            problems.append("line %d: %s (Python %s)" % (node.lineno if hasattr(node, "lineno") else 0,
                                                         name, NEWER_THAN_38[name]))
        # PEP 604 unions evaluated at runtime (X | None in an annotation without
        # `from __future__ import annotations`) fail on 3.8
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(node.annotation)):
                if "from __future__ import annotations" not in open(path).read():
                    problems.append("line %d: X | Y annotation" % node.lineno)
    assert not problems, "%s uses newer Python: %s" % (os.path.basename(path), problems)
