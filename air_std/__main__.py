"""Entry point for `python -m air_std` and, copied to the top of the zipapp,
for `python air_std.pyz` (main thread).

The import of the CLI is inside the same guard as main(): a Ctrl-C while
air_std's own modules are still loading ends the run with 130 and one quiet
exit, not a KeyboardInterrupt traceback (and one that Python swallows is
still acted on: see air_std.catch_early_signals).
"""

import sys

if __name__ == "__main__":
    try:
        import air_std
        air_std.catch_early_signals()
        from air_std.cli import main
        code = main()
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a Ctrl-C that Python wrapped in another error
        from air_std.errors import interrupted
        if not interrupted(exc):
            raise
        code = 130
    sys.exit(code)
