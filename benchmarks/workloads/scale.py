# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""6. Concurrency scale: req/s as the number in flight grows, against httpx's pool."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._maths import ratio
from benchmarks._report import Check, fmt, fmt_ratio
from benchmarks.workloads._common import (
    Workload,
    cpu_per,
    ok,
    per_s,
    server_name,
    static_target,
    status_text,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the scale workload is, in a full and a quick run."""

    levels: tuple[int, ...]
    requests: int


FULL = Sizes(
    levels=(10, 100, 1000),
    requests=3000,
)
QUICK = Sizes(
    levels=(10, 100),
    requests=300,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    names = (
        ("trioclient", "httpx-trio", "openai-trio")
        if not ctx.quick
        else ("trioclient", "httpx-trio")
    )
    raw: dict[str, Result] = {}
    with static_target(ctx, stream=False) as base_url:
        for level in s.levels:
            for name in names:
                key = f"{name} · {level}"
                raw[key] = ctx.run(
                    "nonstream",
                    name,
                    {
                        "base_url": base_url,
                        "requests": max(s.requests, 2 * level),
                        "concurrency": level,
                    },
                    key,
                )
                raw[key] |= {"level": level, "contender": name}
    rows = []
    for res in raw.values():
        ref = raw.get(f"httpx-trio · {res['level']}", {})
        rows.append(
            [
                f"{res['level']:,}",
                res["contender"],
                fmt(per_s(res, "ok")) if ok(res) else status_text(res),
                fmt(cpu_per(res, 1e3, "ok")),
                str(res.get("failures", "–")),
                fmt_ratio(ratio(per_s(res, "ok") or 0, per_s(ref, "ok") or 0) if ok(ref) else None),
            ]
        )
    checks = []
    # Measured from 100 in flight where there is such a level: past it is where
    # httpcore's 100-connection pool starts to queue.
    high = max(s.levels)
    low = 100 if 100 in s.levels and high > 100 else min(s.levels)
    retention: dict[str, float | None] = {}
    for name in names:
        a, b = raw.get(f"{name} · {low}", {}), raw.get(f"{name} · {high}", {})
        retention[name] = (
            ratio(per_s(b, "ok") or 0, per_s(a, "ok") or 0) if ok(a) and ok(b) else None
        )
    if high > 100:
        tc, hx = retention.get("trioclient"), retention.get("httpx-trio")
        top = raw.get(f"trioclient · {high}", {})
        checks.append(
            Check(
                "scale",
                f"trioclient keeps more of its {low}-in-flight req/s at {high:,} than httpx does "
                "(retention ÷ httpx's retention ≥ 1)",
                ratio(tc, hx or 0) if tc is not None and hx is not None else None,
                1.0,
                ">=",
            )
        )
        checks.append(
            Check(
                "scale",
                f"trioclient failures at {high:,} in flight = 0",
                float(top.get("failures", 0)) if ok(top) else None,
                0.0,
                "<=",
            )
        )
    retention_text = ", ".join(f"{name} {fmt_ratio(value)}" for name, value in retention.items())
    return {
        "title": "6. Concurrency scale",
        "setup": f"max({s.requests:,}, 2 × in flight) requests per level, {server_name(ctx)}",
        "params": {"levels": list(s.levels), "requests": s.requests},
        "columns": ["in flight", "contender", "req/s", "CPU ms/req", "failures", "÷ httpx-trio"],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            f"Retention (req/s at {high:,} in flight ÷ req/s at {low}): {retention_text}.",
            "httpx uses its defaults (100 connections, 5 s pool timeout): past 100 in flight requests queue in httpcore's pool "
            "and can die of PoolTimeout; those count as failures. The retention check is this suite's reading of issue 8's "
            "'must not degrade the way httpcore's pool does' (the issues set no number).",
        ],
    }


WORKLOAD = Workload("scale", run, needs_nginx=True)
