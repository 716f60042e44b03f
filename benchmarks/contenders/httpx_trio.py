"""Plain `httpx.AsyncClient` on trio with its default transport (httpcore's pool).

What a trio user gets today without trioclient: default limits (100 connections,
a 5 s pool timeout), ``response.json()``, and ``aiter_lines`` + `json.loads` for SSE.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import httpx
import trio

from benchmarks.contenders._common import API_KEY, Meter, Result, Tally, request_body
from benchmarks.contenders._sse_lines import DONE, parse_data_line
from benchmarks.contenders._trio_driver import run_trio_workers

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
    first = 0.0
    chunks = 0
    done = False
    body = request_body() | {"stream": True}
    async with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        # Read to EOF rather than break at [DONE]: leaving httpx's line iterator early
        # under trio raises ResourceWarning (httpx#3686).
        async for line in response.aiter_lines():
            event = parse_data_line(line)
            if event is None:
                continue
            if event is DONE:
                done = True
                continue
            if chunks == 0:
                first = time.perf_counter()
            chunks += 1
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    if timings is not None:
        timings.append([t0, first, time.perf_counter(), chunks])
    return chunks


async def _nonstream(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    async with _client(args["base_url"]) as client:
        await _one_request(client)  # warm-up: the first connection
        meter.start()
        await run_trio_workers(
            args["requests"], args["concurrency"], lambda: _one_request(client), tally
        )
        out = meter.stop()
    return out | tally.fields(keep_latencies=args.get("keep_latencies", False))


async def _stream(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    timings: list[list[float]] = []
    async with _client(args["base_url"]) as client:
        await _one_stream(client, None)
        meter.start()
        await run_trio_workers(
            args["streams"], args["concurrency"], lambda: _one_stream(client, timings), tally
        )
        out = meter.stop()
    out["stream_timings"] = timings if args.get("keep_timings") else None
    return out | tally.fields(keep_latencies=False)


def _run(fn: Callable[[Result], object]) -> Callable[[Result], Result]:
    def runner(args: Result) -> Result:
        result: Result = trio.run(functools.partial(fn, args))  # type: ignore[arg-type]
        return result

    return runner


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": _run(_nonstream),
    "stream": _run(_stream),
}
