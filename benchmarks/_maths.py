"""The arithmetic behind the figures, kept pure so the smoke tests can pin it.

Two definitions matter most and are spelled out in ``benchmarks/README.md``:

* **ideal makespan** of a job of requests with latencies ``l_i`` at concurrency
  ``c``: ``max(sum(l_i) / c, max(l_i))``. No scheduler can beat it: ``c`` slots can
  do at most ``c`` seconds of waiting per second, and no job ends before its longest
  request. A scheduler that keeps every slot busy comes within one request of it.
* **allowed** requests under a token bucket of ``capacity`` refilled at ``rate`` per
  second, over a run of ``duration`` seconds: ``capacity + rate * duration``. That is
  every request the server could have admitted in the run's window; a client's
  throughput ÷ allowed is the share of the budget it used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = [
    "allowed_requests",
    "median",
    "ideal_makespan",
    "percentile",
    "ratio",
    "stream_lags",
]


def ideal_makespan(latencies: Sequence[float], concurrency: int) -> float:
    """The lower bound on finishing all `latencies` with `concurrency` slots.

    Raises:
        ValueError: if there are no latencies, a negative one, or `concurrency` < 1.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not latencies:
        raise ValueError("ideal makespan of no requests is undefined")
    if min(latencies) < 0:
        raise ValueError("latencies must be >= 0")
    return max(math.fsum(latencies) / concurrency, max(latencies))


def allowed_requests(*, capacity: float, rate_per_s: float, duration: float) -> float:
    """Requests a full token bucket admits in `duration` seconds.

    Raises:
        ValueError: if any argument is negative.
    """
    if capacity < 0 or rate_per_s < 0 or duration < 0:
        raise ValueError("capacity, rate and duration must all be >= 0")
    return capacity + rate_per_s * duration


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation between order statistics.

    Raises:
        ValueError: for no values or `q` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values is undefined")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value: float, reference: float) -> float | None:
    """`value` ÷ `reference`, or None when the reference is zero or missing."""
    if not reference or not math.isfinite(reference):
        return None
    return value / reference


def stream_lags(timings: Sequence[Sequence[float]], *, tokens: int, tps: float) -> list[float]:
    """How late each paced stream ended, beyond the server's own pacing.

    Each timing is ``[start, first chunk, end, chunks]`` (``start`` when the client
    began the request). The embedded server (with no time to first token) sends token
    ``i`` of an answer of `tokens` at ``request arrival + i / tps`` without drift, so a
    client that keeps up has the whole answer ``(tokens - 1) / tps`` after it asked,
    plus one round trip. Lag is the time beyond that: a millisecond or so for a client
    that keeps up, growing when the client falls behind the stream. It is measured
    from the start, not the first chunk, so a late first chunk counts as lag too.

    Raises:
        ValueError: if `tps` is not positive or `tokens` is below 1.
    """
    if tps <= 0:
        raise ValueError(f"tps must be > 0, got {tps}")
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    span = (tokens - 1) / tps
    return [(end - start) - span for start, _first, end, _chunks in timings]


def median(values: Sequence[float]) -> float:
    """The median (a thin alias so callers import their maths from one place)."""
    return statistics.median(values)
