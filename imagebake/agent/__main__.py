"""``python3 -m imagebake_agent`` (on an image) or ``python3 -m imagebake.agent``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
