"""What `air-std init` finds in a project directory: Go, or Python and which
web framework (Django, FastAPI/Starlette under uvicorn, Flask, or a plain
script), the real entry file, the app's port and its static directories.

Decided from the files alone (nothing is imported or run): manage.py, the
imports of the top-level modules (and of those one package deep), and the
dependencies in pyproject.toml (read with tomlread: tomllib where Python has
it) and requirements*.txt. Runs on the main thread, for init_command.py.
"""

import os
import re

from air_std import tomlread

__all__ = ["Project", "detect"]

# Frameworks in the order they are preferred when a project names several
# (a Django project may list Starlette for channels; FastAPI brings Starlette).
FRAMEWORKS = ("django", "fastapi", "flask")
# The distribution names that mean each framework.
_DEPENDS = {"django": ("django",), "fastapi": ("fastapi", "starlette", "uvicorn"), "flask": ("flask",)}
_IMPORTS = {"django": ("django",), "fastapi": ("fastapi", "starlette"), "flask": ("flask",)}
# Entry files looked for, in order, when nothing names one.
ENTRY_NAMES = ("main.py", "app.py", "server.py", "run.py", "wsgi.py", "asgi.py")
# Where a framework's own app object is made: name = Flask(...) / FastAPI(...).
_APP_CALL = {"flask": r"Flask", "fastapi": r"(?:FastAPI|Starlette)"}
PORTS = {"django": 8000, "fastapi": 8000, "flask": 5000}
PROXY_PORT = 8090
_SKIP_DIRS = {"tmp", "vendor", "node_modules", "venv", "testdata", "__pycache__", "site-packages"}
_MAX_READ = 256 * 1024  # a module larger than this is not read: generated, not an app's entry


class Project:
    """What detect() found. kind: "go" or "python"; framework: one of
    FRAMEWORKS or None; entry: the app's command (a list) or None when no
    entry file exists; app_port: None without a web framework; static:
    directories (relative) served from disk."""

    def __init__(self, kind, entry, build_cmd, framework=None, app_port=None, static=()):
        self.kind = kind
        self.entry = entry
        self.build_cmd = build_cmd
        self.framework = framework
        self.app_port = app_port
        self.static = tuple(static)

    @property
    def proxy_port(self):
        return PROXY_PORT if self.app_port != PROXY_PORT else PROXY_PORT + 1


def detect(project_dir):
    """The Project in project_dir."""
    def has(*parts):
        return os.path.exists(os.path.join(project_dir, *parts))

    if has("go.mod"):
        target = "."
        if not has("main.go") and has("cmd"):
            mains = sorted(d for d in _listdir(os.path.join(project_dir, "cmd"))
                           if has("cmd", d, "main.go"))
            if len(mains) == 1:
                target = "./cmd/" + mains[0]
        return Project("go", ["./tmp/main"], "go build -o ./tmp/main %s" % target)
    python = "python3"
    for venv in (".venv", "venv"):
        if has(venv, "bin", "python"):
            python = "./%s/bin/python" % venv
    sources, scripts = _modules(project_dir)
    framework = _framework(project_dir, sources)
    # Python needs no build: `true` is the shell's command that does nothing
    # (an empty cmd would be Air's default, go build); a syntax check such as
    # compileall would write __pycache__ into the project.
    build = "true"
    entry = _entry(project_dir, python, framework, sources, scripts)
    port = PORTS.get(framework) if entry else None
    static = _static_dirs(project_dir, framework, sources) if framework else ()
    return Project("python", entry, build, framework if entry else None, port, static)


def _modules(project_dir):
    """({module name: source}, names of the top-level .py files) of the .py
    files at the top and one package deep."""
    found, scripts = {}, set()
    for name in _listdir(project_dir):
        path = os.path.join(project_dir, name)
        if name.endswith(".py") and os.path.isfile(path):
            found[name[:-3]] = _read(path)
            scripts.add(name)
        elif (os.path.isdir(path) and not name.startswith(".") and name not in _SKIP_DIRS
              and (os.path.isfile(os.path.join(path, "__init__.py"))
                   or os.path.isfile(os.path.join(path, "__main__.py")))):
            for sub in _listdir(path):
                if sub.endswith(".py"):
                    module = name if sub == "__init__.py" else "%s.%s" % (name, sub[:-3])
                    found.setdefault(module, _read(os.path.join(path, sub)))
    return found, scripts


def _listdir(path):
    """Sorted names in `path`; none where it cannot be listed (init then
    finds less, and says what it wrote)."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _read(path):
    try:
        if os.path.getsize(path) > _MAX_READ:
            return ""
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _imports(source, names):
    pattern = r"^\s*(?:import|from)\s+(?:%s)\b" % "|".join(names)
    return re.search(pattern, source, re.M) is not None


def _framework(project_dir, sources):
    if os.path.isfile(os.path.join(project_dir, "manage.py")):
        return "django"
    deps = _dependencies(project_dir)
    for framework in FRAMEWORKS:
        if any(_imports(src, _IMPORTS[framework]) for src in sources.values()):
            return framework
    for framework in FRAMEWORKS:
        if deps & set(_DEPENDS[framework]):
            return framework
    return None


def _dependencies(project_dir):
    """Lower-case distribution names from pyproject.toml and requirements*.txt."""
    names = []
    path = os.path.join(project_dir, "pyproject.toml")
    try:
        with open(path, encoding="utf-8") as f:
            doc = tomlread.loads(f.read())
    except (OSError, ValueError, UnicodeDecodeError):
        doc = {}
    project = _table(doc, "project")
    names += _strings(project.get("dependencies"))
    for extra in _table(project, "optional-dependencies").values():
        names += _strings(extra)
    names += list(_table(_table(_table(doc, "tool"), "poetry"), "dependencies"))
    for name in _listdir(project_dir):
        if name.startswith("requirements") and name.endswith(".txt"):
            names += _read(os.path.join(project_dir, name)).splitlines()
    out = set()
    for entry in names:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", entry)
        if match:
            out.add(match.group(1).lower().replace("_", "-"))
    return out


def _table(doc, name):
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _strings(value):
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _entry(project_dir, python, framework, sources, scripts):
    """The app's command, or None when no entry file exists."""
    if framework == "django":
        if not os.path.isfile(os.path.join(project_dir, "manage.py")):
            return None
        # Django's own autoreloader would restart the app behind air_std's back
        return [python, "manage.py", "runserver", "--noreload", "127.0.0.1:%d" % PORTS["django"]]
    if framework in _APP_CALL:
        found = _app_object(sources, _APP_CALL[framework])
        if found is None and framework == "flask":
            found = _app_factory(sources)
        if found is not None:
            module, name = found
            if framework == "flask":
                target = module if name == "app" else "%s:%s" % (module, name)
                # flask's reloader is on only with --debug; --no-reload says so anyway
                return [python, "-m", "flask", "--app", target, "run", "--no-reload",
                        "--port", str(PORTS["flask"])]
            # uvicorn reloads only with --reload, which is left out
            return [python, "-m", "uvicorn", "%s:%s" % (module, name),
                    "--host", "127.0.0.1", "--port", str(PORTS["fastapi"])]
    for name in ENTRY_NAMES:
        if name in scripts:
            return [python, name]
    packages = sorted(m.split(".")[0] for m in sources if m.endswith(".__main__"))
    if packages:
        return [python, "-m", packages[0]]
    mains = [name for name in sorted(scripts) if "__main__" in sources[name[:-3]]]
    if len(mains) == 1:
        return [python, mains[0]]
    return None


def _app_object(sources, call):
    """(module, variable) of the first `name = Flask(...)`-like line, top-level modules first."""
    pattern = re.compile(r"^(\w+)\s*=\s*(?:\w+\.)?%s\(" % call, re.M)
    for module in sorted(sources, key=lambda m: (m.count("."), m)):
        match = pattern.search(sources[module])
        if match:
            return module, match.group(1)
    return None


def _app_factory(sources):
    """(module, "app") for a module with Flask's application factory
    (`def create_app`), which `flask --app module` finds by itself."""
    for module in sorted(sources, key=lambda m: (m.count("."), m)):
        if re.search(r"^def create_app\(", sources[module], re.M):
            return module, "app"
    return None


def _static_dirs(project_dir, framework, sources):
    """Directories the app serves files from: the ones its code names
    (StaticFiles(directory=...), static_folder=..., STATICFILES_DIRS) that
    exist, else `static` at the top and, for Django, <app>/static."""
    named = set()
    for src in sources.values():
        for match in re.finditer(r"""(?:directory|static_folder)\s*=\s*["']([^"']+)["']""", src):
            named.add(match.group(1))
    candidates = sorted(named) + ["static"]
    if framework == "django":
        candidates += ["%s/static" % d for d in _listdir(project_dir)]
    out = []
    for rel in candidates:
        rel = os.path.normpath(rel.strip("/")) if rel.strip("/") else ""
        if rel and not rel.startswith("..") and os.path.isdir(os.path.join(project_dir, rel)) \
                and rel not in out:
            out.append(rel)
    return out
