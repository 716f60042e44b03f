# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""3. Scheduling under lognormal latency: makespan against the ideal."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._embedded import open_embedded
from benchmarks._maths import ideal_makespan, ratio
from benchmarks._report import Check, fmt, fmt_ratio
from benchmarks.workloads._common import (
    Workload,
    ok,
    status_text,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the schedule workload is, in a full and a quick run."""

    requests: int
    concurrency: int
    ttft: str


FULL = Sizes(
    requests=2000,
    concurrency=50,
    ttft="lognormal:0.2,0.5",
)
QUICK = Sizes(
    requests=40,
    concurrency=20,
    ttft="lognormal:0.05,0.5",
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    specs = [
        ("trioclient · batch", "trioclient", {}),
        ("openai-asyncio · semaphore + gather", "openai-asyncio", {"pattern": "semaphore-gather"}),
        (
            f"openai-asyncio · chunks of {s.concurrency} + sleep(1)",
            "openai-asyncio",
            {"pattern": "chunked-gather"},
        ),
    ]
    raw: dict[str, Result] = {}
    for label, name, extra in specs:
        # A fresh seeded server per contender: each sees the same latency draws.
        with open_embedded(ttft=s.ttft, seed=12345) as server:
            raw[label] = ctx.run(
                "schedule",
                name,
                {
                    "base_url": server.base_url,
                    "requests": s.requests,
                    "concurrency": s.concurrency,
                }
                | extra,
                label,
            )
    rows = []
    checks = []
    for label, res in raw.items():
        lat = res.get("latencies") or []
        ideal = ideal_makespan(lat, s.concurrency) if ok(res) and lat else None
        res["ideal_s"] = ideal
        over = ratio(res["wall_s"], ideal) if ideal else None
        res["makespan_over_ideal"] = over
        rows.append(
            [
                label,
                fmt(res.get("wall_s")) if ok(res) else status_text(res),
                fmt(sum(lat)) if lat else "–",
                fmt(max(lat)) if lat else "–",
                fmt(ideal),
                fmt_ratio(over),
                str(res.get("failures", "–")),
            ]
        )
        if label.startswith("trioclient"):
            checks.append(Check("schedule", "trioclient makespan ≤ 1.10× ideal", over, 1.10, "<="))
    return {
        "title": "3. Scheduling under lognormal latency",
        "setup": f"{s.requests:,} requests, {s.concurrency} in flight, embedded server ttft {s.ttft} (median s, σ), seeded",
        "params": {
            "requests": s.requests,
            "concurrency": s.concurrency,
            "ttft": s.ttft,
        },
        "columns": [
            "pattern",
            "makespan s",
            "Σ latency s",
            "longest s",
            "ideal s",
            "makespan ÷ ideal",
            "failures",
        ],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            "ideal = max(Σ latency ÷ concurrency, longest latency), from the latencies this contender measured per request "
            "(the server is seeded and restarted per contender, so all draw the same latencies).",
        ],
    }


WORKLOAD = Workload("schedule", run)
