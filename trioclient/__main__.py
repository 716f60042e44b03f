"""``python -m trioclient``: the same as the ``trioclient`` command."""

import sys

from trioclient.cli import main

if __name__ == "__main__":
    sys.exit(main())
