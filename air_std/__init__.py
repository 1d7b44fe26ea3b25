"""air_std: live reload for server apps, a standard-library port of Air.

Nothing is imported here on purpose: `python air_std.pyz -v` must stay fast,
so each mode imports only the modules it needs.
"""

__version__ = "0.1.0"


def version_line():
    """air_std's version line: `-v` ends with it, and it is the default start-up banner."""
    import sys
    return "air_std %s (python %d.%d.%d)" % ((__version__,) + tuple(sys.version_info[:3]))
