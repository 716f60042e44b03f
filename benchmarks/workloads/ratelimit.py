# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""4. Rate limits: answered requests against what the server's bucket allowed, and 429s."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._embedded import open_embedded
from benchmarks._maths import allowed_requests, ratio
from benchmarks._report import Check, fmt
from benchmarks.workloads._common import (
    Workload,
    ok,
    status_text,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the ratelimit workload is, in a full and a quick run."""

    rpm: int
    requests: int
    concurrency: int


FULL = Sizes(
    rpm=1200,
    # capacity 1,200 at once, then 20/s: 2,200 requests take about 50 s at best.
    requests=2200,
    concurrency=50,
)
QUICK = Sizes(
    rpm=120,
    requests=124,
    concurrency=20,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    rpm = s.rpm
    specs = [
        ("trioclient · batch (paced by x-ratelimit headers)", "trioclient", {}),
        (
            "openai-asyncio · semaphore + gather + robust_request",
            "openai-asyncio",
            {"pattern": "semaphore-gather"},
        ),
    ]
    if not ctx.quick:
        specs.append(
            (
                f"openai-asyncio · chunks of {s.concurrency} + sleep(1) + robust_request",
                "openai-asyncio",
                {"pattern": "chunked-gather"},
            )
        )
    raw: dict[str, Result] = {}
    for label, name, extra in specs:
        with open_embedded(rpm=rpm, seed=1) as server:
            res = ctx.run(
                "ratelimit",
                name,
                {
                    "base_url": server.base_url,
                    "requests": s.requests,
                    "concurrency": s.concurrency,
                    "rpm": rpm,
                }
                | extra,
                label,
            )
        res["server_stats"] = server.stats
        raw[label] = res
    rows = []
    checks = []
    for label, res in raw.items():
        if not ok(res):
            rows.append([label, status_text(res), *["–"] * 7])
            continue
        ok_times = res.get("ok_times") or []
        duration = max(ok_times) if ok_times else res["wall_s"]
        allowed = allowed_requests(capacity=rpm, rate_per_s=rpm / 60, duration=duration)
        share = ratio(res["ok"], allowed)
        server_stats = res.get("server_stats") or {}
        sent_429 = int(server_stats.get("rate_limited", res.get("rate_limited")) or 0)
        answered_429 = ratio(sent_429, s.requests)
        failures = res["failures"]
        res |= {"allowed": allowed, "ok_over_allowed": share, "server_429s": sent_429}
        rows.append(
            [
                label,
                f"{s.requests:,}",
                f"{res['ok']:,}",
                fmt(duration),
                fmt(allowed),
                fmt(share),
                f"{sent_429:,}",
                f"{fmt((answered_429 or 0) * 100)}%",
                str(failures),
            ]
        )
        if label.startswith("trioclient"):
            checks += [
                Check("ratelimit", "trioclient answered ÷ allowed ≥ 0.95", share, 0.95, ">="),
                Check("ratelimit", "trioclient 429s ÷ requests < 2%", answered_429, 0.02, "<"),
                Check("ratelimit", "trioclient failed requests = 0", float(failures), 0.0, "<="),
            ]
    return {
        "title": "4. Rate limits",
        "setup": f"{s.requests:,} requests, {s.concurrency} in flight, embedded server {rpm} rpm (bucket of {rpm}, starts full, refills {rpm / 60:g}/s)",
        "params": {
            "requests": s.requests,
            "concurrency": s.concurrency,
            "rpm": rpm,
        },
        "columns": [
            "pattern",
            "requests",
            "answered",
            "duration s",
            "allowed",
            "answered ÷ allowed",
            "429s",
            "429s ÷ requests",
            "failed",
        ],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            "allowed = bucket capacity + refill rate × duration, duration = first send to last answer: "
            "everything the server could have admitted in that window.",
            "429s are counted by the server; 'failed' counts requests that never got an answer "
            "(for the seeds' robust_request this includes requests its loop drops after three 429s).",
            "trioclient is given no rpm of its own: a caller's rpm budget starts with one second's worth (no burst, by design, "
            "for keys shared with others), so it could not use the fresh bucket's burst; the engine paces from the server's "
            "x-ratelimit-* headers and its client-wide 429 gate instead.",
        ],
    }


WORKLOAD = Workload("ratelimit", run)
