"""The official `openai` SDK on asyncio, in the seed documents' own patterns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from benchmarks.contenders._asyncio_driver import chunked_gather, on_asyncio, semaphore_gather
from benchmarks.contenders._common import Meter, Result, Tally, measure_requests, measure_streams
from benchmarks.contenders._openai_common import (
    RetryCounts,
    make_client,
    one_request,
    one_stream,
    robust_request,
)

__all__ = ["WORKLOADS"]


async def _nonstream(args: Result) -> Result:
    return await measure_requests(
        make_client(args["base_url"]), one_request, semaphore_gather, args
    )


async def _stream(args: Result) -> Result:
    return await measure_streams(make_client(args["base_url"]), one_stream, semaphore_gather, args)


async def _schedule(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    async with make_client(args["base_url"]) as client:
        await one_request(client)
        meter.start()
        if args["pattern"] == "chunked-gather":
            await chunked_gather(
                args["requests"], args["concurrency"], lambda: one_request(client), tally
            )
        else:
            await semaphore_gather(
                args["requests"], args["concurrency"], lambda: one_request(client), tally
            )
        out = meter.stop()
    return out | tally.fields(keep_latencies=True)


async def _ratelimit(args: Result) -> Result:
    tally, meter = Tally(), Meter()
    # No warm-up here: every request spends the server's budget.
    async with make_client(args["base_url"], max_retries=0) as client:
        meter.start()
        counts = RetryCounts()

        def one() -> Awaitable[int]:
            return robust_request(lambda: one_request(client), asyncio.sleep, counts)

        if args["pattern"] == "chunked-gather":
            await chunked_gather(args["requests"], args["concurrency"], one, tally)
        else:
            await semaphore_gather(args["requests"], args["concurrency"], one, tally)
        out = meter.stop()
    return (
        out
        | tally.fields(keep_latencies=False)
        | {
            "rate_limited": counts.rate_limited,
            "lost": counts.lost,
            "ok_times": [round(t, 4) for t in counts.ok_times],
            "rate_limited_times": [round(t, 4) for t in counts.rate_limited_times],
        }
    )


async def _memory(args: Result) -> Result:
    """`queued` coroutines into one gather; stop once `complete` have finished.

    The whole queue is real: every coroutine exists (gather wraps each in a task at
    once), which is exactly the memory the pattern costs. Only the number completed
    is bounded, to keep the run short; peak RSS is read before the rest is cancelled.
    """
    tally, meter = Tally(), Meter()
    queued, complete = args["queued"], args.get("complete") or args["queued"]
    done = asyncio.Event()
    async with make_client(args["base_url"]) as client:
        await one_request(client)
        semaphore = asyncio.Semaphore(args["concurrency"])

        async def limited() -> None:
            async with semaphore:
                try:
                    await one_request(client)
                except Exception as exc:
                    tally.failed(exc)
                    return
                tally.ok += 1
                if tally.ok >= complete:
                    done.set()

        meter.start()
        gathered = asyncio.gather(*[limited() for _ in range(queued)], return_exceptions=True)
        waiter: asyncio.Future[bool] = asyncio.ensure_future(done.wait())
        await asyncio.wait([gathered, waiter], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        out = meter.stop()
        gathered.cancel()
        waiter.cancel()
        await asyncio.gather(gathered, waiter, return_exceptions=True)
    return out | tally.fields(keep_latencies=False) | {"queued": queued}


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": on_asyncio(_nonstream),
    "stream": on_asyncio(_stream),
    "schedule": on_asyncio(_schedule),
    "ratelimit": on_asyncio(_ratelimit),
    "memory": on_asyncio(_memory),
}
