"""Run one contender on one workload in this process and print one JSON line.

Usage: ``python -m benchmarks.run_contender WORKLOAD CONTENDER 'JSON-ARGS'``

The driver starts one such process per measurement, so each contender has the
interpreter to itself: its imports, threads, caches and allocator state cannot touch
another's figures, and its peak RSS is its own. The last line of stdout is the
result: ``{"status": "ok", ...figures}``, ``{"status": "unavailable", "reason": ...}``
(exit code 3: a package or feature that is not there), or exit code 1 with a
traceback on stderr if the run crashed.
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.contenders import CONTENDER_MODULES, Unavailable
from benchmarks.contenders._common import raise_nofile_limit

EXIT_UNAVAILABLE = 3


def main(argv: list[str]) -> int:
    """Parse ``WORKLOAD CONTENDER JSON``, run it, print the JSON result line."""
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    workload, contender, raw_args = argv
    if contender not in CONTENDER_MODULES:
        print(
            f"unknown contender {contender!r}; known: {sorted(CONTENDER_MODULES)}", file=sys.stderr
        )
        return 2
    args = json.loads(raw_args)
    raise_nofile_limit()
    try:
        module = importlib.import_module(f"benchmarks.contenders.{CONTENDER_MODULES[contender]}")
        workloads = module.WORKLOADS
        if workload not in workloads:
            raise Unavailable(f"{contender} has no {workload!r} workload")
        result = workloads[workload](args)
    except Unavailable as exc:
        print(json.dumps({"status": "unavailable", "reason": str(exc)}))
        return EXIT_UNAVAILABLE
    print(json.dumps({"status": "ok"} | result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
