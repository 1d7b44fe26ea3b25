"""air_std: live reload for server apps, a standard-library port of Air.

Nothing is imported here on purpose: `python air_std.pyz -v` must stay fast,
so each mode imports only the modules it needs.
"""

__version__ = "0.1.0"
