"""The one piece of plumbing the examples share: where their requests go.

* With ``XAI_API_KEY`` set, to the xAI API (``grok-4``), exactly as in the seeds.
* Without it, to trioclient's embedded OpenAI-compatible server, started in-process
  in the same nursery as the client (``trioclient.testing.open_server``). It speaks
  real HTTP on a loopback socket, with latency, rate limits and faults on request, so
  every example runs offline and still shows the real behaviour.

Each example opens its client with::

    async with open_client(max_concurrent=10) as client:
        ...

and passes the embedded server's settings (``server={"rpm": 60}``) when it needs a
particular situation, such as 429s or a slow answer.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trioclient

#: The model the seeds use; the embedded server answers to any name.
MODEL = os.environ.get("TRIOCLIENT_MODEL", "grok-4")

#: True when the examples talk to a real endpoint (costs money, takes longer).
REAL = bool(os.environ.get("XAI_API_KEY"))

#: A little latency by default, so concurrency is visible in the timings.
DEFAULT_SERVER = {"ttft": "uniform:0.05,0.15"}


@asynccontextmanager
async def open_client(
    *, server: Mapping[str, Any] | None = None, **client_options: Any
) -> AsyncIterator[trioclient.Client]:
    """An open :class:`trioclient.Client` for the real API, or for an embedded server.

    Args:
        server: Embedded-server settings (``trioclient.testing.ServerConfig`` fields),
            ignored against the real API.
        **client_options: Passed to :class:`trioclient.Client`.
    """
    if REAL:
        async with trioclient.Client(**client_options) as client:
            yield client
        return
    from trioclient.testing import open_server

    # The server runs in a nursery inside open_server; it stops when this block ends.
    async with open_server(**{**DEFAULT_SERVER, **(server or {})}) as local:
        async with trioclient.Client(
            api_key="sk-local", base_url=local.base_url, **client_options
        ) as client:
            yield client
