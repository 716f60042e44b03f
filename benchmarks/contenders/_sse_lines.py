"""The minimal SSE handling the baseline contenders do by hand: ``data:`` lines only.

Deliberately naive (it is the floor, not a decoder): one event per ``data:`` line,
``[DONE]`` ends the stream, everything else is `json.loads`-ed. trioclient's spec-exact
decoder has to come within 2x of this.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable

__all__ = ["DONE", "count_data_lines", "parse_data_line"]

DONE = object()


def parse_data_line(line: bytes | str) -> object | None:
    """The decoded JSON of a ``data:`` line, `DONE` for ``[DONE]``, None for other lines."""
    if isinstance(line, str):
        line = line.encode()
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return DONE
    decoded: object = json.loads(payload)
    return decoded


async def count_data_lines(
    lines: AsyncIterable[bytes] | AsyncIterable[str],
    t0: float,
    timings: list[list[float]] | None,
) -> int:
    """Read a stream's lines to their end and count its chunks (``data:`` events).

    Appends ``[t0, first chunk, end, chunks]`` to `timings` if given.

    Raises:
        RuntimeError: the lines ended without ``data: [DONE]``.
    """
    first = 0.0
    chunks = 0
    done = False
    async for line in lines:
        event = parse_data_line(line)
        if event is None:
            continue
        if event is DONE:
            done = True
            continue
        if chunks == 0:
            first = time.perf_counter()
        chunks += 1
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    if timings is not None:
        timings.append([t0, first, time.perf_counter(), chunks])
    return chunks
