"""What every contender shares: the request it sends and how it measures itself.

All contenders send the same body with the same bearer key, and all report the same
fields, measured the same way inside their own process: wall seconds on
`time.perf_counter`, CPU seconds on `time.process_time` (user + system of this
process only, so the server's CPU is never counted), and peak RSS from
``getrusage(RUSAGE_SELF).ru_maxrss``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import attrs

__all__ = [
    "Drive",
    "measure_requests",
    "measure_streams",
    "API_KEY",
    "MESSAGES",
    "MODEL",
    "Meter",
    "Result",
    "current_rss_bytes",
    "peak_rss_bytes",
    "raise_nofile_limit",
    "request_body",
]

API_KEY = "sk-bench"
MODEL = "bench-model"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "What is Python?"}]

#: One contender's results: a JSON object.
Result = dict[str, Any]


def request_body() -> dict[str, Any]:
    """A fresh chat request body (fresh so no contender can share one object)."""
    return {"model": MODEL, "messages": [dict(m) for m in MESSAGES]}


def peak_rss_bytes() -> int:
    """The highest resident set size this process has had (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    """The resident set size right now, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def raise_nofile_limit() -> None:
    """Lift the soft open-file limit to the hard one: 1,000 sockets in flight need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@attrs.define
class Meter:
    """Wall and CPU time from `start` to `stop`, plus the process's peak RSS."""

    wall0: float = 0.0
    cpu0: float = 0.0
    rss0: int = 0

    def start(self) -> None:
        """Note the starting point; call it right before the first request."""
        self.rss0 = current_rss_bytes()
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def stop(self) -> Result:
        """The measured figures since `start`, as JSON fields."""
        return {
            "wall_s": time.perf_counter() - self.wall0,
            "cpu_s": time.process_time() - self.cpu0,
            "rss_start_bytes": self.rss0,
            "peak_rss_bytes": peak_rss_bytes(),
        }


@attrs.define
class Tally:
    """Counts for one run: successes, failures, units (requests or chunks), latencies."""

    ok: int = 0
    failures: int = 0
    units: int = 0
    latencies: list[float] = attrs.field(factory=list)
    first_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        """Count a failed request, keeping the first error's text for the report."""
        self.failures += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]

    def fields(self, *, keep_latencies: bool) -> Result:
        """The tally as JSON fields; latencies only when the report will plot them."""
        out: Result = {
            "ok": self.ok,
            "failures": self.failures,
            "units": self.units,
            "first_error": self.first_error,
        }
        if keep_latencies:
            out["latencies"] = [round(x, 6) for x in self.latencies]
        return out


C = TypeVar("C")
#: How a contender keeps N requests in flight (``run_trio_workers``, ``semaphore_gather``...).
Drive = Callable[[int, int, Callable[[], Awaitable[int]], Tally], Awaitable[None]]


async def measure_requests(
    open_client: AbstractAsyncContextManager[C],
    one_request: Callable[[C], Awaitable[int]],
    drive: Drive,
    args: Result,
) -> Result:
    """The non-streaming workload for any contender: one untimed warm-up request (the
    connection, a library's lazy imports), then ``args["requests"]`` driven by ``drive``."""
    tally, meter = Tally(), Meter()
    async with open_client as client:
        await one_request(client)
        meter.start()
        await drive(args["requests"], args["concurrency"], lambda: one_request(client), tally)
        out = meter.stop()
    return out | tally.fields(keep_latencies=args.get("keep_latencies", False))


async def measure_streams(
    open_client: AbstractAsyncContextManager[C],
    one_stream: Callable[[C, list[list[float]] | None], Awaitable[int]],
    drive: Drive,
    args: Result,
) -> Result:
    """The streaming workload for any contender, with per-stream timings kept on request."""
    tally, meter = Tally(), Meter()
    timings: list[list[float]] = []
    async with open_client as client:
        await one_stream(client, None)
        meter.start()
        await drive(
            args["streams"], args["concurrency"], lambda: one_stream(client, timings), tally
        )
        out = meter.stop()
    out["stream_timings"] = timings if args.get("keep_timings") else None
    return out | tally.fields(keep_latencies=False)
