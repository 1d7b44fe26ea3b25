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
