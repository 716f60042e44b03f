# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""1. Non-streaming requests: every contender against a static JSON body, and wrk as the ceiling."""

from __future__ import annotations

import subprocess

import attrs

from benchmarks._bodies import MODEL
from benchmarks._context import Context, Result
from benchmarks._maths import percentile
from benchmarks._report import fmt
from benchmarks._wrk import run_wrk
from benchmarks.workloads._common import (
    NONSTREAM_CONTENDERS,
    QUICK_CONTENDERS,
    Workload,
    cpu_per,
    interleaved_rounds,
    ok,
    per_s,
    server_name,
    speed_targets,
    static_target,
    status_text,
    vs_references,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the nonstream workload is, in a full and a quick run."""

    requests: int
    concurrency: int
    #: How long wrk runs against nginx (0: not at all).
    wrk_seconds: int


FULL = Sizes(
    requests=5000,
    concurrency=64,
    wrk_seconds=10,
)
QUICK = Sizes(
    requests=300,
    concurrency=64,
    wrk_seconds=0,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    with static_target(ctx, stream=False) as base_url:
        raw, round_notes = interleaved_rounds(
            ctx,
            "nonstream",
            QUICK_CONTENDERS if ctx.quick else NONSTREAM_CONTENDERS,
            {
                "base_url": base_url,
                "requests": s.requests,
                "concurrency": s.concurrency,
                "keep_latencies": True,
            },
            "ok",
        )
        if ctx.nginx is not None and s.wrk_seconds:
            print(f"  {'wrk (C, the server ceiling)':<48}", end="", flush=True)
            try:
                wrk = run_wrk(
                    ctx.nginx.base_url + "/chat/completions",
                    connections=s.concurrency,
                    seconds=s.wrk_seconds,
                    body={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                )
                raw["wrk"] = {"status": "ok"} | wrk
                print(f" {fmt(wrk['requests_per_s'])} req/s")
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                raw["wrk"] = {"status": "crashed", "reason": str(exc)}
                ctx.crashed.append(f"nonstream/wrk: {exc}")
                print(f" CRASHED: {exc}")
    rates = {name: per_s(res, "ok") for name, res in raw.items()}
    if "wrk" in raw and ok(raw["wrk"]):
        rates["wrk"] = raw["wrk"]["requests_per_s"]
    rows = []
    for name, res in raw.items():
        lat = res.get("latencies") or []
        rows.append(
            [
                name if name != "wrk" else "wrk (C, server ceiling)",
                fmt(rates.get(name)) if ok(res) else status_text(res),
                fmt(cpu_per(res, 1e3, "ok")),
                fmt(percentile(lat, 50) * 1e3) if lat else "–",
                fmt(percentile(lat, 99) * 1e3) if lat else "–",
                str(res.get("failures", "–")),
                *vs_references(rates, name),
            ]
        )
    # Issue 12 raised the floor target from 0.5 to 0.6 for plain requests.
    checks = speed_targets("nonstream", rates, "req/s", 5.0, "bare h11 floor", of_floor=0.6)
    return {
        "title": "1. Non-streaming requests",
        "setup": f"{s.requests:,} requests, {s.concurrency} in flight, {server_name(ctx)}",
        "params": {
            "requests": s.requests,
            "concurrency": s.concurrency,
            "rounds": ctx.sizes.throughput_rounds,
        },
        "columns": [
            "contender",
            "req/s",
            "CPU ms/req",
            "p50 ms",
            "p99 ms",
            "failures",
            "÷ openai-trio",
            "÷ h11-trio",
        ],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            *round_notes,
            "CPU is the contender process's own (`time.process_time`); the server's is not counted.",
        ],
    }


WORKLOAD = Workload("nonstream", run, needs_nginx=True)
