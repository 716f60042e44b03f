"""Process entry for the embedded server: ``python -m benchmarks._serve 'JSON-CONFIG'``.

Runs `trioclient.testing.open_server(**config)` in its own process (so the server
never shares an interpreter, and a GIL, with the contender it serves), prints one
JSON line ``{"base_url": ...}`` once it listens, and when its stdin closes prints one
more line, the server's statistics, and exits. That last line is how the driver
learns server-side facts such as the 429s sent and the server's own pacing lag.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
import trio


async def _serve(config: dict[str, Any]) -> None:
    from trioclient.testing import open_server

    async with open_server(**config) as server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        # The driver closes our stdin when it is done with us.
        await trio.to_thread.run_sync(sys.stdin.read)
        stats = attrs.asdict(server.statistics())
        print(json.dumps(stats, default=str), flush=True)


def main(argv: list[str]) -> int:
    """Serve with the JSON config in ``argv[0]`` until stdin closes."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    trio.run(_serve, json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
