"""The minimal SSE handling the baseline contenders do by hand: ``data:`` lines only.

Deliberately naive (it is the floor, not a decoder): one event per ``data:`` line,
``[DONE]`` ends the stream, everything else is `json.loads`-ed. trioclient's spec-exact
decoder has to come within 2x of this.
"""

from __future__ import annotations

import json

__all__ = ["DONE", "parse_data_line"]

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
