"""What the embedded server counts, and the frozen snapshot a test reads.

The connection loop, the HTTP layer and the chat behaviour all bump one mutable
`Counters`; `Server.statistics()` turns it into a `ServerStatistics` value.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping

import attrs

__all__ = ["Counters", "ServerStatistics", "snapshot"]

#: How many paced-send lags the percentiles look back over.
LAG_SAMPLES = 200_000


@attrs.frozen
class ServerStatistics:
    """A snapshot of what the server has seen and done since it started.

    Attributes:
        requests_by_path: request count per known path (unknown paths count as "other").
        requests_total: all requests, whatever their path or outcome.
        chat_requests: requests to the chat completions endpoint.
        responses_by_status: responses sent per HTTP status (resets are not responses).
        rate_limited: 429 responses sent (rate limits, quota, the `rate_limited` fault).
        faults_injected: faults applied per kind.
        connections_accepted: TCP connections accepted.
        connections_open: connections open now.
        peak_connections: most connections open at once.
        in_flight_requests: requests being handled now.
        peak_in_flight_requests: most requests handled at once: what a test checks to
            prove a client's concurrency limiter held.
        prompt_tokens: prompt tokens of the chat requests answered.
        completion_tokens: completion tokens of the answers fully sent.
        stream_lag_p50, stream_lag_p99, stream_lag_max: how late paced stream chunks
            were sent against their schedule, in seconds (0 when nothing was paced).
        paced_chunks: how many paced sends those figures cover (the last 200,000).
        handler_errors: connections that ended because the handler raised.
    """

    requests_by_path: Mapping[str, int]
    requests_total: int
    chat_requests: int
    responses_by_status: Mapping[int, int]
    rate_limited: int
    faults_injected: Mapping[str, int]
    connections_accepted: int
    connections_open: int
    peak_connections: int
    in_flight_requests: int
    peak_in_flight_requests: int
    prompt_tokens: int
    completion_tokens: int
    stream_lag_p50: float
    stream_lag_p99: float
    stream_lag_max: float
    paced_chunks: int
    handler_errors: int


@attrs.define
class Counters:
    """The server's running tallies (mutable; read them through `snapshot`)."""

    requests_by_path: Counter[str] = attrs.field(factory=Counter)
    requests_total: int = 0
    chat_requests: int = 0
    responses_by_status: Counter[int] = attrs.field(factory=Counter)
    rate_limited: int = 0
    faults_injected: Counter[str] = attrs.field(factory=Counter)
    connections_accepted: int = 0
    connections_open: int = 0
    peak_connections: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lags: deque[float] = attrs.field(factory=lambda: deque(maxlen=LAG_SAMPLES))
    handler_errors: int = 0


def snapshot(c: Counters) -> ServerStatistics:
    """Freeze the counters into a `ServerStatistics`."""
    lags = sorted(c.lags)
    return ServerStatistics(
        requests_by_path=dict(c.requests_by_path),
        requests_total=c.requests_total,
        chat_requests=c.chat_requests,
        responses_by_status=dict(c.responses_by_status),
        rate_limited=c.rate_limited,
        faults_injected=dict(c.faults_injected),
        connections_accepted=c.connections_accepted,
        connections_open=c.connections_open,
        peak_connections=c.peak_connections,
        in_flight_requests=c.in_flight,
        peak_in_flight_requests=c.peak_in_flight,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        stream_lag_p50=_percentile(lags, 0.5),
        stream_lag_p99=_percentile(lags, 0.99),
        stream_lag_max=lags[-1] if lags else 0.0,
        paced_chunks=len(lags),
        handler_errors=c.handler_errors,
    )


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[max(0, index)]
