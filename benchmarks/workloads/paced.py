# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""2b. Paced streams: how late each stream ends against the embedded server's schedule."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._embedded import open_embedded
from benchmarks._maths import percentile, ratio, stream_lags
from benchmarks._report import fmt, fmt_ratio
from benchmarks.workloads._common import (
    QUICK_CONTENDERS,
    Workload,
    cpu_per,
    ok,
    per_s,
    status_text,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the paced workload is, in a full and a quick run."""

    streams: int
    concurrency: int
    tps: float
    tokens: int


FULL = Sizes(
    streams=100,
    concurrency=32,
    tps=50.0,
    tokens=50,
)
QUICK = Sizes(
    streams=8,
    concurrency=8,
    tps=50.0,
    tokens=25,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    names = ("trioclient", "h11-trio") if ctx.quick else QUICK_CONTENDERS
    raw: dict[str, Result] = {}
    for name in names:
        with open_embedded(tps=s.tps, answer_tokens=s.tokens, seed=1) as server:
            res = ctx.run(
                "stream",
                name,
                {
                    "base_url": server.base_url,
                    "streams": s.streams,
                    "concurrency": s.concurrency,
                    "keep_timings": True,
                },
            )
        res["server_stats"] = server.stats
        raw[name] = res
    rates = {name: per_s(res) for name, res in raw.items()}
    rows = []
    for name, res in raw.items():
        lags = (
            stream_lags(res.get("stream_timings") or [], tokens=s.tokens, tps=s.tps)
            if ok(res)
            else []
        )
        res["lags"] = lags
        server_p99 = (res.get("server_stats") or {}).get("stream_lag_p99")
        rows.append(
            [
                name,
                fmt(rates[name]) if ok(res) else status_text(res),
                fmt(cpu_per(res, 1e6)),
                fmt(percentile(lags, 50) * 1e3) if lags else "–",
                fmt(percentile(lags, 99) * 1e3) if lags else "–",
                fmt(server_p99 * 1e3) if server_p99 is not None else "–",
                str(res.get("failures", "–")),
                fmt_ratio(ratio(rates[name] or 0, rates.get("h11-trio") or 0)),
            ]
        )
    return {
        "title": "2b. Paced streams (embedded server)",
        "setup": f"{s.streams} streams × {s.tokens} tokens at {s.tps:g} tokens/s, {s.concurrency} in flight",
        "params": {"streams": s.streams, "tokens": s.tokens, "tps": s.tps},
        "columns": [
            "contender",
            "chunks/s",
            "CPU µs/chunk",
            "lag p50 ms",
            "lag p99 ms",
            "server lag p99 ms",
            "failures",
            "÷ h11-trio",
        ],
        "rows": rows,
        "checks": [],
        "raw": raw,
        "notes": [
            "Lag: how much later than the server's schedule the stream ended, (end − request start) − (tokens − 1)/tps; "
            "server lag: how late the server itself sent (its own statistics).",
        ],
    }


WORKLOAD = Workload("paced", run)
