"""aiohttp on asyncio (C HTTP parser): a reference point outside the httpx family."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks.contenders import Unavailable
from benchmarks.contenders._asyncio_driver import run_asyncio_workers
from benchmarks.contenders._common import API_KEY, Meter, Result, Tally, request_body
from benchmarks.contenders._sse_lines import DONE, parse_data_line

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
    first = 0.0
    chunks = 0
    done = False
    async with session.post(url, json=request_body() | {"stream": True}) as response:
        response.raise_for_status()
        async for line in response.content:
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
    url = args["base_url"] + "/chat/completions"
    async with _session(args["concurrency"]) as session:
        await _one_request(session, url)
        meter.start()
        await run_asyncio_workers(
            args["requests"], args["concurrency"], lambda: _one_request(session, url), tally
        )
        out = meter.stop()
    return out | tally.fields(keep_latencies=args.get("keep_latencies", False))


async def _stream(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    timings: list[list[float]] = []
    url = args["base_url"] + "/chat/completions"
    async with _session(args["concurrency"]) as session:
        await _one_stream(session, url, None)
        meter.start()
        await run_asyncio_workers(
            args["streams"],
            args["concurrency"],
            lambda: _one_stream(session, url, timings),
            tally,
        )
        out = meter.stop()
    out["stream_timings"] = timings if args.get("keep_timings") else None
    return out | tally.fields(keep_latencies=False)


def _run(fn: Callable[[Result], Coroutine[Any, Any, Result]]) -> Callable[[Result], Result]:
    def runner(args: Result) -> Result:
        return asyncio.run(fn(args))

    return runner


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": _run(_nonstream),
    "stream": _run(_stream),
}
