"""The official `openai` SDK under trio (it runs on anyio), semaphore + nursery.

This is the baseline the issues name for trioclient's speed targets: the same SDK a
trio program would use today, in the seeds' semaphore pattern said the trio way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import trio

from benchmarks.contenders._common import Meter, Result, Tally
from benchmarks.contenders._openai_common import make_client, one_request, one_stream
from benchmarks.contenders._trio_driver import semaphore_nursery

__all__ = ["WORKLOADS"]


async def _nonstream(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    async with make_client(args["base_url"]) as client:
        await one_request(client)  # warm-up: connection and the SDK's lazy imports
        meter.start()
        await semaphore_nursery(
            args["requests"], args["concurrency"], lambda: one_request(client), tally
        )
        out = meter.stop()
    return out | tally.fields(keep_latencies=args.get("keep_latencies", False))


async def _stream(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    timings: list[list[float]] = []
    async with make_client(args["base_url"]) as client:
        await one_stream(client, None)
        meter.start()
        await semaphore_nursery(
            args["streams"], args["concurrency"], lambda: one_stream(client, timings), tally
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
