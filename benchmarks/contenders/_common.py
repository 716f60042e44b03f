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
from typing import Any

import attrs

__all__ = [
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
