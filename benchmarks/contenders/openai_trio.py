"""The official `openai` SDK under trio (it runs on anyio), semaphore + nursery.

This is the baseline the issues name for trioclient's speed targets: the same SDK a
trio program would use today, in the seeds' semaphore pattern said the trio way.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.contenders._common import Result, measure_requests, measure_streams
from benchmarks.contenders._openai_common import make_client, one_request, one_stream
from benchmarks.contenders._trio_driver import on_trio, semaphore_nursery

__all__ = ["WORKLOADS"]


async def _nonstream(args: Result) -> Result:
    return await measure_requests(
        make_client(args["base_url"]), one_request, semaphore_nursery, args
    )


async def _stream(args: Result) -> Result:
    return await measure_streams(make_client(args["base_url"]), one_stream, semaphore_nursery, args)


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": on_trio(_nonstream),
    "stream": on_trio(_stream),
}
