# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""5. Memory against job size: peak RSS as the queued job grows."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._maths import ratio
from benchmarks._report import Check, fmt, fmt_ratio
from benchmarks.workloads._common import (
    Workload,
    ok,
    server_name,
    static_target,
    status_text,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the memory workload is, in a full and a quick run."""

    sizes: tuple[int, ...]
    #: Requests trioclient completes per run (None: all of them).
    complete_trioclient: int | None
    #: Requests the gather pattern completes before its peak RSS is read.
    complete_gather: int
    concurrency: int


FULL = Sizes(
    sizes=(1_000, 10_000, 100_000),
    complete_trioclient=None,
    complete_gather=2000,
    concurrency=64,
)
QUICK = Sizes(
    sizes=(1_000, 10_000),
    complete_trioclient=300,
    complete_gather=100,
    concurrency=64,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    raw: dict[str, Result] = {}
    specs = [
        ("trioclient · batch(lazy generator)", "trioclient", s.complete_trioclient),
        ("openai-asyncio · gather(list of coroutines)", "openai-asyncio", s.complete_gather),
    ]
    with static_target(ctx, stream=False) as base_url:
        for label, name, complete in specs:
            for size in s.sizes:
                key = f"{label} · {size:,}"
                res = ctx.run(
                    "memory",
                    name,
                    {
                        "base_url": base_url,
                        "queued": size,
                        "complete": complete,
                        "concurrency": s.concurrency,
                    },
                    key,
                )
                res["contender_label"] = label
                res.setdefault("queued", size)
                raw[key] = res
    rows = []
    checks = []
    for label, _name, _complete in specs:
        runs = [raw[f"{label} · {size:,}"] for size in s.sizes]
        base = runs[0].get("peak_rss_bytes") if ok(runs[0]) else None
        for size, res in zip(s.sizes, runs, strict=True):
            rows.append(
                [
                    label,
                    f"{size:,}",
                    f"{res['ok']:,}" if ok(res) else status_text(res),
                    fmt(res["peak_rss_bytes"] / 2**20) if ok(res) else "–",
                    fmt_ratio(ratio(res["peak_rss_bytes"], base or 0)) if ok(res) else "–",
                ]
            )
        if label.startswith("trioclient"):
            last = runs[-1]
            growth = ratio(last["peak_rss_bytes"], base or 0) if ok(last) else None
            checks.append(
                Check(
                    "memory",
                    f"trioclient peak RSS {s.sizes[-1]:,} ÷ {s.sizes[0]:,} queued ≤ 1.2",
                    growth,
                    1.2,
                    "<=",
                )
            )
    done_tc = "all" if s.complete_trioclient is None else f"the first {s.complete_trioclient:,}"
    return {
        "title": "5. Memory against job size",
        "setup": f"{', '.join(f'{n:,}' for n in s.sizes)} requests queued, {s.concurrency} in flight, {server_name(ctx)}",
        "params": {"sizes": list(s.sizes)},
        "columns": ["pattern", "queued", "completed", "peak RSS MiB", "÷ smallest job"],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            f"trioclient gets a generator of the whole job and completes {done_tc} of it; the gather pattern builds its whole "
            f"list of coroutines (all tasks exist at once) and its peak RSS is read after {s.complete_gather:,} complete, "
            "then the rest are cancelled (finishing them adds no memory, only minutes).",
        ],
    }


WORKLOAD = Workload("memory", run, needs_nginx=True)
