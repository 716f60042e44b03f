"""Plain `httpx.AsyncClient` on trio with its default transport (httpcore's pool).

What a trio user gets today without trioclient: default limits (100 connections,
a 5 s pool timeout), ``response.json()``, and ``aiter_lines`` + `json.loads` for SSE.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from benchmarks.contenders._common import (
    API_KEY,
    Result,
    measure_requests,
    measure_streams,
    request_body,
)
from benchmarks.contenders._sse_lines import count_data_lines
from benchmarks.contenders._trio_driver import on_trio, run_trio_workers

__all__ = ["WORKLOADS"]


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"})


async def _one_request(client: httpx.AsyncClient) -> int:
    response = await client.post("/chat/completions", json=request_body())
    response.raise_for_status()
    _ = response.json()["choices"][0]["message"]["content"]
    return 1


async def _one_stream(client: httpx.AsyncClient, timings: list[list[float]] | None) -> int:
    t0 = time.perf_counter()
    body = request_body() | {"stream": True}
    async with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        # Read to EOF rather than break at [DONE]: leaving httpx's line iterator early
        # under trio raises ResourceWarning (httpx#3686).
        return await count_data_lines(response.aiter_lines(), t0, timings)


async def _nonstream(args: Result) -> Result:
    return await measure_requests(_client(args["base_url"]), _one_request, run_trio_workers, args)


async def _stream(args: Result) -> Result:
    return await measure_streams(_client(args["base_url"]), _one_stream, run_trio_workers, args)


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": on_trio(_nonstream),
    "stream": on_trio(_stream),
}
