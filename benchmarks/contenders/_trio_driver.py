"""The trio side of driving a workload: N workers pulling from one shared count.

Workers rather than one task per request: it is how a trio program bounds
concurrency without holding every pending request in memory, and it gives every
trio contender the same shape, so the figures compare the clients, not the loops.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from benchmarks.contenders._common import Result, Tally

__all__ = ["on_trio", "run_trio_workers", "semaphore_nursery"]


async def run_trio_workers(
    total: int, concurrency: int, one: Callable[[], Awaitable[int]], tally: Tally
) -> None:
    """Run `one` `total` times with `concurrency` in flight, counting into `tally`.

    `one` returns how many units it delivered (1 for a request, chunks for a stream);
    an `Exception` from it is one failure and the worker carries on.
    """
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                units = await one()
            except Exception as exc:
                tally.failed(exc)
                continue
            tally.latencies.append(time.perf_counter() - t0)
            tally.ok += 1
            tally.units += units

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, total)):
            nursery.start_soon(worker)


async def semaphore_nursery(
    total: int, concurrency: int, one: Callable[[], Awaitable[int]], tally: Tally
) -> None:
    """The seeds' semaphore + gather, said in trio: one task per request in a nursery."""
    semaphore = trio.Semaphore(concurrency)

    async def limited() -> None:
        async with semaphore:
            t0 = time.perf_counter()
            try:
                units = await one()
            except Exception as exc:
                tally.failed(exc)
                return
            tally.latencies.append(time.perf_counter() - t0)
            tally.ok += 1
            tally.units += units

    async with trio.open_nursery() as nursery:
        for _ in range(total):
            nursery.start_soon(limited)


def on_trio(fn: Callable[[Result], Awaitable[Result]]) -> Callable[[Result], Result]:
    """A workload coroutine as the plain function ``run_contender`` calls."""

    def runner(args: Result) -> Result:
        result: Result = trio.run(fn, args)
        return result

    return runner
