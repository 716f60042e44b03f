"""aiohttp on asyncio (C HTTP parser): a reference point outside the httpx family."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from benchmarks.contenders import Unavailable
from benchmarks.contenders._asyncio_driver import on_asyncio, run_asyncio_workers
from benchmarks.contenders._common import (
    API_KEY,
    Result,
    measure_requests,
    measure_streams,
    request_body,
)
from benchmarks.contenders._sse_lines import count_data_lines

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise Unavailable(f"aiohttp is not installed ({exc}); pip install aiohttp") from None

__all__ = ["WORKLOADS"]

_HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency)
    return aiohttp.ClientSession(connector=connector, headers=_HEADERS)


async def _one_request(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url, json=request_body()) as response:
        response.raise_for_status()
        _ = json.loads(await response.read())["choices"][0]["message"]["content"]
    return 1


async def _one_stream(
    session: aiohttp.ClientSession, url: str, timings: list[list[float]] | None
) -> int:
    t0 = time.perf_counter()
    async with session.post(url, json=request_body() | {"stream": True}) as response:
        response.raise_for_status()
        return await count_data_lines(response.content, t0, timings)


async def _nonstream(args: Result) -> Result:
    url = args["base_url"] + "/chat/completions"
    return await measure_requests(
        _session(args["concurrency"]),
        lambda session: _one_request(session, url),
        run_asyncio_workers,
        args,
    )


async def _stream(args: Result) -> Result:
    url = args["base_url"] + "/chat/completions"
    return await measure_streams(
        _session(args["concurrency"]),
        lambda session, timings: _one_stream(session, url, timings),
        run_asyncio_workers,
        args,
    )


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": on_asyncio(_nonstream),
    "stream": on_asyncio(_stream),
}
