"""trioclient, used the way its documentation says: `Client`, `create`, `batch`.

Plain requests and streams run from worker tasks on one `Client` whose limiter is the
concurrency bound. Scheduling, rate limits and memory go through ``client.batch``,
the engine those targets are written for. A wrapper transport around trioclient's
own counts 429s as they arrive (for the over-time plot); it only observes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import trio

from benchmarks.contenders import Unavailable
from benchmarks.contenders._common import (
    API_KEY,
    MESSAGES,
    MODEL,
    Meter,
    Result,
    Tally,
    measure_requests,
    measure_streams,
)
from benchmarks.contenders._trio_driver import on_trio, run_trio_workers

try:
    import trioclient
except ImportError as exc:  # pragma: no cover - depends on the checkout
    raise Unavailable(f"trioclient cannot be imported ({exc})") from None

__all__ = ["WORKLOADS"]


def _client(base_url: str, concurrency: int, **kwargs: Any) -> trioclient.Client:
    return trioclient.Client(
        api_key=API_KEY, base_url=base_url, max_concurrent=concurrency, **kwargs
    )


async def _one_request(client: trioclient.Client) -> int:
    response = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    _ = response.choices[0].message.content
    return 1


async def _one_stream(client: trioclient.Client, timings: list[list[float]] | None) -> int:
    t0 = time.perf_counter()
    first = 0.0
    chunks = 0
    async with await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as stream:
        async for chunk in stream:
            if chunks == 0:
                first = time.perf_counter()
            chunks += 1
            if chunk.choices:
                _ = chunk.choices[0].delta.content
    if timings is not None:
        timings.append([t0, first, time.perf_counter(), chunks])
    return chunks


async def _nonstream(args: Result) -> Result:
    client = _client(args["base_url"], args["concurrency"])
    return await measure_requests(client, _one_request, run_trio_workers, args)


async def _stream(args: Result) -> Result:
    client = _client(args["base_url"], args["concurrency"])
    return await measure_streams(client, _one_stream, run_trio_workers, args)


class _Counting429(httpx.AsyncBaseTransport):
    """Wraps a transport and notes when each 429 arrives; changes nothing else."""

    def __init__(self, inner: httpx.AsyncBaseTransport, t0: float) -> None:
        self.inner = inner
        self.t0 = t0
        self.times: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            self.times.append(time.perf_counter() - self.t0)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _default_transport() -> httpx.AsyncBaseTransport:
    try:
        from trioclient._transport import TrioTransport
    except ImportError as exc:
        raise Unavailable(f"trioclient has no TrioTransport to wrap ({exc})") from None
    transport: httpx.AsyncBaseTransport = TrioTransport()
    return transport


def _bodies(count: int) -> Iterator[dict[str, Any]]:
    """A lazy stream of request bodies: the batch engine must not need a list."""
    for _ in range(count):
        yield {"model": MODEL, "messages": MESSAGES}


def _require_batch(client: trioclient.Client) -> None:
    if not hasattr(client, "batch"):
        raise Unavailable("trioclient.Client has no batch() yet")


async def _batchon_trio(
    client: trioclient.Client,
    count: int,
    batch_kwargs: dict[str, Any],
    tally: Tally,
    t0: float,
    ok_times: list[float] | None = None,
    stop_after: int | None = None,
) -> int:
    """Feed `count` lazy bodies through ``client.batch``; returns total attempts."""
    attempts = 0
    try:
        batch = client.batch(_bodies(count), ordered=False, **batch_kwargs)
    except ModuleNotFoundError as exc:
        # The engine is wired in but its module has not landed yet: not there, not broken.
        if (exc.name or "").startswith("trioclient"):
            raise Unavailable(f"trioclient's batch engine is not there yet ({exc})") from None
        raise
    async with batch as results:
        async for result in results:
            attempts += result.attempts
            if result.error is not None:
                tally.failed(result.error)
            else:
                tally.ok += 1
                tally.units += 1
                tally.latencies.append(result.latency)
                if ok_times is not None:
                    ok_times.append(time.perf_counter() - t0)
            if stop_after is not None and tally.ok + tally.failures >= stop_after:
                break
    return attempts


async def _schedule(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    async with _client(args["base_url"], args["concurrency"]) as client:
        _require_batch(client)
        await _one_request(client)
        meter.start()
        await _batchon_trio(
            client, args["requests"], {"max_concurrent": args["concurrency"]}, tally, 0.0
        )
        out = meter.stop()
    return out | tally.fields(keep_latencies=True)


async def _ratelimit(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    t0 = time.perf_counter()
    counting = _Counting429(_default_transport(), t0)
    ok_times: list[float] = []
    try:
        # No warm-up here: every request spends the server's budget.
        async with _client(args["base_url"], args["concurrency"], transport=counting) as client:
            _require_batch(client)
            meter.start()
            counting.t0 = t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"max_concurrent": args["concurrency"]}
            if args.get("client_rpm"):
                kwargs["rpm"] = args["client_rpm"]
            attempts = await _batchon_trio(client, args["requests"], kwargs, tally, t0, ok_times)
            out = meter.stop()
            stats = client.statistics()
    finally:
        with trio.CancelScope(shield=True):
            await counting.aclose()
    return (
        out
        | tally.fields(keep_latencies=False)
        | {
            "rate_limited": stats.rate_limited,
            "retries": stats.retries,
            "attempts": attempts,
            "lost": 0,
            "ok_times": [round(t, 4) for t in ok_times],
            "rate_limited_times": [round(t, 4) for t in counting.times],
        }
    )


async def _memory(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    queued, complete = args["queued"], args.get("complete")
    async with _client(args["base_url"], args["concurrency"]) as client:
        _require_batch(client)
        await _one_request(client)
        meter.start()
        await _batchon_trio(
            client,
            queued,
            {"max_concurrent": args["concurrency"]},
            tally,
            0.0,
            stop_after=complete,
        )
        out = meter.stop()
    return out | tally.fields(keep_latencies=False) | {"queued": queued}


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": on_trio(_nonstream),
    "stream": on_trio(_stream),
    "schedule": on_trio(_schedule),
    "ratelimit": on_trio(_ratelimit),
    "memory": on_trio(_memory),
}
