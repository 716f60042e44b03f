"""pytest fixtures for the embedded server (registered as the `trioclient` pytest11 plugin).

    async def test_my_client(trioclient_server):
        client = MyClient(base_url=trioclient_server.base_url, api_key="sk-test")
        ...

    async def test_rate_limited(trioclient_server_factory):
        server = await trioclient_server_factory(rpm=5, api_key="sk-test")

Both need pytest-trio (they run in its `nursery` fixture, so the servers stop when
the test ends). This module is imported by every pytest run in an environment where
trioclient is installed, so it imports nothing but pytest at import time; the
server is imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import trio

    from ._server import Server

__all__ = ["trioclient_server", "trioclient_server_factory"]


@pytest.fixture
def trioclient_server_factory(
    nursery: trio.Nursery,
) -> Callable[..., Awaitable[Server]]:
    """An async factory: `await trioclient_server_factory(**config)` starts a server."""
    from ._server import serve

    async def start(config: Any = None, **changes: Any) -> Server:
        server: Server = await nursery.start(_bind(serve, config, changes))
        return server

    return start


def _bind(serve: Any, config: Any, changes: dict[str, Any]) -> Any:
    async def run(task_status: Any) -> None:
        await serve(config, task_status=task_status, **changes)

    return run


@pytest.fixture
async def trioclient_server(
    trioclient_server_factory: Callable[..., Awaitable[Server]],
) -> Server:
    """A started server with the default config (any API key, no latency, no faults)."""
    return await trioclient_server_factory()
