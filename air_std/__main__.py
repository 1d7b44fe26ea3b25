"""Entry point for `python -m air_std` and `python air_std.pyz` (main thread)."""

import sys

from air_std.cli import main

if __name__ == "__main__":
    sys.exit(main())
