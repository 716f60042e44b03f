"""The official SDK used the way the seed documents use it, shared by asyncio and trio.

`AsyncOpenAI` runs on either loop (it is built on anyio), so the request, stream and
retry code lives here once and ``openai_asyncio`` / ``openai_trio`` only choose the
loop and the concurrency pattern.

Retries: the SDK's own retries (``max_retries=2`` by default) stay on where the seed
code relies on them; wherever the seed code wraps calls in its ``robust_request`` loop
the SDK gets ``max_retries=0``, so each 429 is seen, counted and handled by the loop
the seeds wrote, not hidden inside the SDK.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from benchmarks.contenders import Unavailable
from benchmarks.contenders._common import API_KEY, MESSAGES, MODEL

__all__ = ["RetryCounts", "make_client", "one_request", "one_stream", "robust_request"]

try:
    import openai
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise Unavailable(f"the openai package is not installed ({exc})") from None


def make_client(base_url: str, *, max_retries: int = 2) -> openai.AsyncOpenAI:
    """An `AsyncOpenAI` as the seeds build it: long timeout for reasoning models."""
    return openai.AsyncOpenAI(
        api_key=API_KEY, base_url=base_url, timeout=3600.0, max_retries=max_retries
    )


async def one_request(client: openai.AsyncOpenAI) -> int:
    """One non-streaming completion, its content read as the seeds read it."""
    response = await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    _ = response.choices[0].message.content
    return 1


async def one_stream(client: openai.AsyncOpenAI, timings: list[list[float]] | None) -> int:
    """One stream read to its end; appends [start, first chunk, end, chunks] if asked."""
    t0 = time.perf_counter()
    first = 0.0
    chunks = 0
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    assert isinstance(stream, openai.AsyncStream)
    async for chunk in stream:
        if chunks == 0:
            first = time.perf_counter()
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            _ = chunk.choices[0].delta.content
    if timings is not None:
        timings.append([t0, first, time.perf_counter(), chunks])
    return chunks


@attrs.define
class RetryCounts:
    """What the seeds' retry loop went through: 429s, lost requests, and when."""

    t0: float = attrs.field(factory=time.perf_counter)
    rate_limited: int = 0
    lost: int = 0
    ok_times: list[float] = attrs.field(factory=list)
    rate_limited_times: list[float] = attrs.field(factory=list)

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0


async def robust_request(
    create: Callable[[], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[None]],
    counts: RetryCounts,
    max_retries: int = 3,
) -> int:
    """The seeds' ``robust_request``: retry on "429" in the message, 2**attempt s apart.

    Faithful to the document, including its flaw: after `max_retries` rate-limited
    attempts the loop simply ends and the request is lost without an error. That
    case is counted in ``counts.lost`` and reported as a failure.
    """
    for attempt in range(max_retries):
        try:
            await create()
        except Exception as e:
            if "429" in str(e):  # rate limit, as the seed checks it
                counts.rate_limited += 1
                counts.rate_limited_times.append(counts.now())
                await sleep(2**attempt)
            elif attempt == max_retries - 1:
                raise
            else:
                await sleep(1)
        else:
            counts.ok_times.append(counts.now())
            return 1
    counts.lost += 1
    raise RuntimeError(f"lost after {max_retries} rate-limited attempts (seed loop fell through)")
