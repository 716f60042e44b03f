"""`python -m trioclient.testing`: the embedded server's command line (see `_cli`)."""

import sys

from ._cli import main

sys.exit(main())
