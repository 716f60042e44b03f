"""The asyncio side: the seeds' own patterns, semaphore + gather and chunked gather.

These are written the way the xAI and OpenAI documents show them (see
the project's two seed documents), because that is what people run: every request becomes a
coroutine up front, a semaphore bounds how many are in flight, `asyncio.gather` waits
for all. The chunked form gathers fixed-size chunks with ``asyncio.sleep(1)`` between
them, as the documents suggest "to avoid rate limits".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from benchmarks.contenders._common import Result, Tally

__all__ = ["chunked_gather", "on_asyncio", "run_asyncio_workers", "semaphore_gather"]


async def _timed(one: Callable[[], Awaitable[int]], tally: Tally) -> None:
    t0 = time.perf_counter()
    try:
        units = await one()
    except Exception as exc:
        tally.failed(exc)
        return
    tally.latencies.append(time.perf_counter() - t0)
    tally.ok += 1
    tally.units += units


async def semaphore_gather(
    total: int, concurrency: int, one: Callable[[], Awaitable[int]], tally: Tally
) -> None:
    """Every request a coroutine, a semaphore of `concurrency`, one gather over all."""
    semaphore = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        async with semaphore:
            await _timed(one, tally)

    tasks = [limited() for _ in range(total)]
    await asyncio.gather(*tasks, return_exceptions=True)


async def chunked_gather(
    total: int, chunk_size: int, one: Callable[[], Awaitable[int]], tally: Tally
) -> None:
    """Gather `chunk_size` requests at a time, sleeping one second between chunks."""
    for start in range(0, total, chunk_size):
        size = min(chunk_size, total - start)
        await asyncio.gather(*[_timed(one, tally) for _ in range(size)])
        await asyncio.sleep(1)


async def run_asyncio_workers(
    total: int, concurrency: int, one: Callable[[], Awaitable[int]], tally: Tally
) -> None:
    """`concurrency` workers pulling from one shared count (the trio drivers' shape)."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _timed(one, tally)

    await asyncio.gather(*[worker() for _ in range(min(concurrency, total))])


def on_asyncio(fn: Callable[[Result], Coroutine[Any, Any, Result]]) -> Callable[[Result], Result]:
    """A workload coroutine as the plain function ``run_contender`` calls."""

    def runner(args: Result) -> Result:
        return asyncio.run(fn(args))

    return runner
