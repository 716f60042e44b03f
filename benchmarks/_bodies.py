"""The fixed OpenAI-shaped bodies nginx serves: one chat completion and one SSE stream.

They follow the real API's shapes exactly (``chat.completion`` and
``chat.completion.chunk`` objects, a role-only first delta, a final chunk carrying
``finish_reason``, then ``data: [DONE]``), so every contender parses what it would parse
from a real server and none gets away with a shortcut.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MODEL", "chat_completion_body", "sse_stream_body", "STREAM_CHUNKS"]

MODEL = "bench-model"
CREATED = 1_700_000_000
COMPLETION_ID = "chatcmpl-bench0000000000000000000000"
#: Chunks in the static stream, the ``[DONE]`` marker not counted.
STREAM_CHUNKS = 500


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def chat_completion_body() -> bytes:
    """A complete ``chat.completion`` object of a realistic size (about 600 bytes)."""
    body = {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": (
                        "Python is a high-level, general-purpose programming language. "
                        "Its design philosophy emphasizes code readability with the use "
                        "of significant indentation."
                    ),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 28, "total_tokens": 40},
    }
    return (_dumps(body) + "\n").encode()


def _chunk(delta: dict[str, Any], finish_reason: str | None) -> str:
    return _dumps(
        {
            "id": COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
    )


def sse_stream_body(chunks: int = STREAM_CHUNKS) -> bytes:
    """An SSE body of `chunks` ``chat.completion.chunk`` events, then ``data: [DONE]``.

    The first chunk carries the role, the last one the ``finish_reason``; the ones
    between carry one short word of content each, as a token stream does.

    Raises:
        ValueError: if `chunks` is below 2 (a stream needs a first and a last chunk).
    """
    if chunks < 2:
        raise ValueError(f"a stream needs at least 2 chunks, got {chunks}")
    events = [_chunk({"role": "assistant", "content": ""}, None)]
    events += [_chunk({"content": f"tok{i} "}, None) for i in range(1, chunks - 1)]
    events.append(_chunk({}, "stop"))
    return "".join(f"data: {event}\n\n" for event in events).encode() + b"data: [DONE]\n\n"
