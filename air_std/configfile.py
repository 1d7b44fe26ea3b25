"""Where the config file is, as Air looks for it: `-c FILE`, else .air.toml,
.config/air.toml or the deprecated .air.conf in the directory `$air_wd` names
or the current one. Reading and checking the file is config.py's.

Kept apart from config.py so that `-v`, which prints the config's
startup_banner as Air's printVersionOutput does, can tell that there is no
file to read without importing the config machinery (dataclasses, the
schema). Main thread only.
"""

import os

from air_std.errors import ConfigError

__all__ = ["CONFIG_NAME", "locate"]

CONFIG_NAME = ".air.toml"
# Air's defaultPathConfig (runner/config.go) reads this one when .air.toml is absent.
SECOND_CONFIG_NAME = os.path.join(".config", "air.toml")
LEGACY_CONFIG_NAME = ".air.conf"


def locate(path, cwd, env):
    """(base directory, absolute path or None, name to show in messages, warnings).
    base is where a relative root is resolved: $air_wd's directory, else cwd."""
    base = cwd
    air_wd = env.get("air_wd", "")
    if air_wd:
        base = os.path.normpath(os.path.join(cwd, os.path.expanduser(air_wd)))
        if not os.path.isdir(base):
            raise ConfigError("air_wd=%s: no such directory" % air_wd)
    if path:
        full = os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))
        if not os.path.exists(full):
            raise ConfigError("%s: config file not found" % path)
        if os.path.isdir(full):
            raise ConfigError("%s: is a directory, expected a .air.toml file" % path)
        return base, full, path, []
    for name in (CONFIG_NAME, SECOND_CONFIG_NAME, LEGACY_CONFIG_NAME):
        full = os.path.join(base, name)
        if os.path.lexists(full):  # not a file (a FIFO, a broken link): an error when read
            display = name if os.path.samefile(base, cwd) else full
            warnings = []
            if name == LEGACY_CONFIG_NAME:
                warnings.append("%s: .air.conf is Air's deprecated config name; rename it to %s"
                                % (display, CONFIG_NAME))
            return base, full, display, warnings
    return base, None, None, []
