"""Entry point: ``python -m benchmarks [--quick] [--only WORKLOAD,...] [--out DIR]``."""

import sys

from benchmarks._driver import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
