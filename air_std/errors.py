"""Error types that end a run with one clear line instead of a traceback.

cli.main() catches AirError, prints `air_std: error: <message>` and exits 1.
Any other exception is a bug and keeps its traceback.
"""


class AirError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(AirError):
    """A bad .air.toml, CLI override or value."""


class ProxyError(AirError):
    """The live-reload proxy cannot start (for example, its port is taken)."""


def interrupted(exc):
    """True if exc is a Ctrl-C, or an error Python raised because of one: class
    creation turns a KeyboardInterrupt inside __set_name__ into a RuntimeError
    (Python 3.8-3.11), so a Ctrl-C while a module loads can arrive wrapped."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
