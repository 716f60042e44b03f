# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""2. Streaming: every contender reads a static SSE body, decoding each chunk's JSON."""

from __future__ import annotations

import attrs

from benchmarks._bodies import STREAM_CHUNKS
from benchmarks._context import Context, Result
from benchmarks._report import fmt
from benchmarks.workloads._common import (
    NONSTREAM_CONTENDERS,
    QUICK_CONTENDERS,
    Workload,
    cpu_per,
    interleaved_rounds,
    ok,
    per_s,
    speed_targets,
    static_target,
    status_text,
    vs_references,
)

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the stream workload is, in a full and a quick run."""

    streams: int
    concurrency: int


FULL = Sizes(
    streams=200,
    concurrency=32,
)
QUICK = Sizes(
    streams=12,
    concurrency=8,
)


def run(ctx: Context) -> Result:
    s = ctx.pick(FULL, QUICK)
    names = QUICK_CONTENDERS if ctx.quick else NONSTREAM_CONTENDERS
    with static_target(ctx, stream=True) as base_url:
        raw, round_notes = interleaved_rounds(
            ctx,
            "stream",
            names,
            {
                "base_url": base_url,
                "streams": s.streams,
                "concurrency": s.concurrency,
            },
            "units",
        )
    rates = {name: per_s(res) for name, res in raw.items()}
    rows = []
    notes = []
    for name, res in raw.items():
        rows.append(
            [
                name,
                fmt(rates[name]) if ok(res) else status_text(res),
                fmt(cpu_per(res, 1e6)),
                str(res.get("ok", "–")),
                str(res.get("failures", "–")),
                *vs_references(rates, name),
            ]
        )
        if ok(res) and ctx.nginx is not None and res["units"] != res["ok"] * STREAM_CHUNKS:
            notes.append(
                f"{name} delivered {res['units']} chunks for {res['ok']} streams (expected {STREAM_CHUNKS} each)"
            )
    checks = speed_targets("stream", rates, "chunks/s", 10.0, "bare h11 + json.loads")
    chunks = STREAM_CHUNKS if ctx.nginx is not None else ctx.sizes.stream_tokens
    return {
        "title": "2. Streaming (static SSE body)",
        "setup": f"{s.streams} streams × ~{chunks} chunks, {s.concurrency} in flight, "
        + ("nginx static SSE file" if ctx.nginx else "embedded server, unpaced"),
        "params": {
            "streams": s.streams,
            "concurrency": s.concurrency,
            "rounds": ctx.sizes.throughput_rounds,
        },
        "columns": [
            "contender",
            "chunks/s",
            "CPU µs/chunk",
            "streams ok",
            "failures",
            "÷ openai-trio",
            "÷ h11-trio",
        ],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [
            *round_notes,
            *notes,
            "Every contender decodes each chunk's JSON; trioclient and openai also build typed chunk objects.",
        ],
    }


WORKLOAD = Workload("stream", run, needs_nginx=True)
