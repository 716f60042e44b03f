"""Rendering: the bytes of the server's JSON bodies and SSE events.

Pure functions and values, no I/O: a `ChatResponse` is one answer that renders either
as a `chat.completion` object or as the SSE events of a stream, field for field as the
OpenAI API sends them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from ._dialects import Extras, message_object, render_stream

__all__ = [
    "DONE",
    "JSON",
    "SSE",
    "ChatResponse",
    "human_wait",
    "json_dumps",
    "model_object",
    "response_headers",
]

JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"
#: The stream's last event; the sender adds it, so a fault can stop short of it.
DONE = b"data: [DONE]\n\n"


def json_dumps(value: Any) -> bytes:
    """Compact JSON, as the API sends it."""
    return json.dumps(value, separators=(",", ":")).encode()


def model_object(name: str) -> dict[str, Any]:
    """One entry of `GET /v1/models`."""
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "trioclient"}


def human_wait(seconds: float) -> str:
    """A wait as the API words it in a 429 message ("350ms", "1.500s")."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    return f"{seconds:.3f}s"


def response_headers(
    content_type: bytes,
    rate_headers: tuple[tuple[bytes, bytes], ...],
    request_id: str,
    content_length: int | None = None,
) -> list[tuple[bytes, bytes]]:
    """The headers of a chat response: type, length if known, request id, rate limits."""
    headers = [(b"content-type", content_type)]
    if content_length is not None:
        headers.append((b"content-length", b"%d" % content_length))
    headers.append((b"x-request-id", f"req_{request_id}".encode()))
    headers.extend(rate_headers)
    return headers


@attrs.define(eq=False)
class ChatResponse:
    """One answer, rendered as a completion object or as SSE stream steps."""

    id: str
    created: int
    model: str
    fingerprint: str
    choices: list[tuple[tuple[str, ...], str]]
    prompt_tokens: int
    completion_tokens: int
    #: Tool calls, logprobs, refusal, reasoning and the dialect; None for a plain answer.
    extras: Extras | None = None

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def completion_object(self) -> dict[str, Any]:
        if self.extras is not None:
            return self._rich_completion(self.extras)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": index,
                    "message": {
                        "role": "assistant",
                        "content": "".join(pieces),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index, (pieces, finish) in enumerate(self.choices)
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def stream_steps(self, include_usage: bool) -> list[bytes]:
        """The SSE bytes due at each pacing step (step i carries every choice's token i).

        Step 0 also opens each choice with the role delta; a choice's finish chunk rides
        with its last token; the usage chunk (if asked for) rides with the last step.
        `data: [DONE]` is added by the sender, so faults can stop short of it.
        """
        if self.extras is not None:
            return render_stream(
                self.extras, self.chunk_head(), self.choices, self.usage(), include_usage
            )
        head = (
            'data: {"id":"' + self.id + '","object":"chat.completion.chunk","created":'
            f"{self.created},"
            f'"model":{json.dumps(self.model)},"system_fingerprint":{json.dumps(self.fingerprint)},'
            '"choices":[{"index":'
        ).encode()
        tail = b"}]" + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        dumps = json.dumps
        longest = max(len(pieces) for pieces, _ in self.choices)
        steps: list[list[bytes]] = [[] for _ in range(max(longest, 1))]
        for index, (pieces, finish) in enumerate(self.choices):
            prefix = head + b"%d" % index
            steps[0].append(
                prefix + b',"delta":{"role":"assistant","content":"","refusal":null},'
                b'"logprobs":null,"finish_reason":null' + tail
            )
            for position, piece in enumerate(pieces):
                steps[position].append(
                    prefix
                    + b',"delta":{"content":'
                    + dumps(piece).encode()
                    + b'},"logprobs":null,"finish_reason":null'
                    + tail
                )
            steps[max(len(pieces) - 1, 0)].append(
                prefix
                + b',"delta":{},"logprobs":null,"finish_reason":"'
                + finish.encode()
                + b'"'
                + tail
            )
        if include_usage:
            usage_chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": [],
                "usage": self.usage(),
            }
            steps[-1].append(b"data: " + json_dumps(usage_chunk) + b"\n\n")
        return [b"".join(step) for step in steps]

    def chunk_head(self) -> dict[str, Any]:
        """The fields every chunk of this answer's stream starts with."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def _rich_completion(self, extras: Extras) -> dict[str, Any]:
        choices = []
        for index, (pieces, finish) in enumerate(self.choices):
            message, logprobs, finish = message_object(extras, pieces, finish)
            choice: dict[str, Any] = {"index": index, "message": message}
            choice["logprobs"] = logprobs
            choice["finish_reason"] = finish
            choices.append(choice)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "system_fingerprint": self.fingerprint,
        }
