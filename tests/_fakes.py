"""Fakes shared by the tests: the OpenAI wire format's shapes, and a scripted API.

One place for what many tests need to pretend to be a server, so that a change to the
wire format is made once and every test speaks the same dialect:

* :func:`completion` and :func:`usage` build a ``chat.completion`` body (a dict, for
  ``httpx.Response(json=...)`` or respx);
* :func:`chunk_object` builds a ``chat.completion.chunk``; :func:`sse` frames any JSON
  value as one server-sent event; :func:`chunk` is the two together, the bytes of one
  streamed chunk; :data:`DONE` ends a stream;
* :class:`ScriptedBody` plays a response body from a script of bytes, pauses (in trio
  time) and exceptions;
* :class:`FakeAPI` is a whole chat-completions endpoint for ``httpx.MockTransport``
  whose behaviour each prompt spells out in words (``"sleep=3 status=400"``).

Defaults are deliberately plain (model ``"m"``, fixed ids and timestamps); a test that
checks a value passes it explicitly.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import trio

from trioclient.testing import format_duration

__all__ = [
    "DONE",
    "FakeAPI",
    "ScriptedBody",
    "chunk",
    "chunk_object",
    "completion",
    "sse",
    "usage",
]

#: The event that ends an OpenAI-style stream.
DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """A ``usage`` object; the total is the sum, as the API reports it."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    content: str | None = "ok",
    *,
    id: str = "chatcmpl-1",
    model: str = "m",
    created: int = 1700000000,
    tokens: tuple[int, int] | None = (5, 5),
    finish_reason: str | None = "stop",
    message: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice.

    Args:
        content: The assistant's text.
        tokens: ``(prompt_tokens, completion_tokens)`` for ``usage``; None leaves
            ``usage`` out.
        message: More fields of the message (``tool_calls``, ``refusal``, ...).
        **extra: More top-level fields (a test of fields the client does not know).
    """
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **(message or {})},
                "finish_reason": finish_reason,
            }
        ],
    }
    if tokens is not None:
        body["usage"] = usage(*tokens)
    body.update(extra)
    return body


def chunk_object(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    index: int = 0,
    id: str = "chatcmpl-s",
    model: str = "m",
    created: int = 1700000000,
    choices: list[dict[str, Any]] | None = None,
    **delta: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: one choice whose delta holds ``role``, ``content``
    and any other ``delta`` fields given; or exactly ``choices`` (``[]`` for the usage
    chunk at the end of a stream, with ``usage=`` passed through ``delta``)."""
    top: dict[str, Any] = {}
    if "usage" in delta:
        top["usage"] = delta.pop("usage")
    if choices is None:
        d: dict[str, Any] = dict(delta)
        if role is not None:
            d["role"] = role
        if content is not None:
            d["content"] = content
        choices = [{"index": index, "delta": d, "finish_reason": finish}]
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **top,
    }


def sse(obj: object) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(content: str | None = None, **fields: Any) -> bytes:
    """The bytes of one streamed chunk (see :func:`chunk_object` for the fields)."""
    return sse(chunk_object(content, **fields))


class ScriptedBody(httpx.AsyncByteStream):
    """A response body played from a script: bytes are sent, numbers are pauses
    (seconds of trio time), exceptions are raised where they stand. ``closed`` says
    whether the client closed it."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for step in self.script:
            if isinstance(step, int | float):
                await trio.sleep(step)
            elif isinstance(step, BaseException):
                raise step
            else:
                yield step

    async def aclose(self) -> None:
        self.closed = True


@attrs.define
class FakeAPI:
    """A chat-completions endpoint for ``httpx.MockTransport``, scripted by the words of
    each prompt (its last message):

    * ``sleep=S``: the answer takes S seconds (default 0.01);
    * ``status=N``: answer status N with an error body (unless ``fixed`` is set);
    * ``fail_first=K``: a 503 on the first K attempts of this prompt;
    * ``usage=T``: report T tokens in all (default 10);
    * ``cut_first=K`` (streams): the first K attempts end cleanly mid-answer;
    * ``error_event_first=K`` (streams): the first K attempts carry an error event
      (with ``error_code=CODE``, that code)
      mid-answer.

    A plain answer is ``echo <prompt>``; a stream is ``Hello <prompt>`` in three chunks
    half a second apart, then a usage chunk and ``[DONE]``. The model is echoed.

    With ``rpm`` set it enforces a server bucket that starts full, answering 429 with
    ``retry-after-ms`` when empty, and sends ``x-ratelimit-*`` headers on every answer.

    Attributes:
        rpm: The bucket's requests per minute, or None for no limit.
        fixed: Ignore ``status=N``: every such request succeeds (the server was fixed).
        prompts: Each request's prompt, in arrival order.
        calls: Each request's ``(trio time, prompt)``, in arrival order.
        attempts: Requests per prompt.
        rate_limited: 429s answered.
        peak_in_flight: The most requests being answered at once.
    """

    rpm: int | None = None
    fixed: bool = False
    prompts: list[str] = attrs.field(factory=list)
    calls: list[tuple[float, str]] = attrs.field(factory=list)
    attempts: dict[str, int] = attrs.field(factory=dict)
    rate_limited: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    level: float = 0.0
    updated: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.level = float(self.rpm or 0)

    def _limit_headers(self) -> dict[str, str]:
        assert self.rpm is not None
        rate = self.rpm / 60
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(math.floor(self.level)),
            "x-ratelimit-reset-requests": format_duration((self.rpm - self.level) / rate),
        }

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)
        prompt = data["messages"][-1]["content"]
        now = trio.current_time()
        self.prompts.append(prompt)
        self.calls.append((now, prompt))
        n = self.attempts[prompt] = self.attempts.get(prompt, 0) + 1
        words = dict(w.split("=", 1) for w in prompt.split() if "=" in w)
        headers: dict[str, str] = {"x-request-id": f"req-{len(self.calls)}"}
        if self.rpm is not None:
            rate = self.rpm / 60
            if self.updated == 0.0:
                self.updated = now
            self.level = min(self.rpm, self.level + (now - self.updated) * rate)
            self.updated = now
            if self.level < 1:
                self.rate_limited += 1
                headers.update(self._limit_headers())
                headers["retry-after-ms"] = str(math.ceil((1 - self.level) / rate * 1000))
                return httpx.Response(
                    429, json={"error": {"message": "slow down"}}, headers=headers
                )
            self.level -= 1
            headers.update(self._limit_headers())
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await trio.sleep(float(words.get("sleep", 0.01)))
        finally:
            self.in_flight -= 1
        if n <= int(words.get("fail_first", 0)):
            return httpx.Response(503, json={"error": {"message": "busy"}}, headers=headers)
        if "status" in words and not self.fixed:
            return httpx.Response(
                int(words["status"]),
                json={"error": {"message": "nope", "code": "bad_thing"}},
                headers=headers,
            )
        total = int(words.get("usage", 10))
        tokens = (total // 2, total - total // 2)
        model = data["model"]
        if data.get("stream"):
            script: list[Any] = [
                chunk("Hel", model=model),
                0.5,
                chunk("lo ", model=model),
                0.5,
                chunk(prompt, model=model),
            ]
            if n <= int(words.get("cut_first", 0)):
                script = script[:3]  # a clean end before [DONE]: the answer is cut
            elif n <= int(words.get("error_event_first", 0)):
                error = {"message": "overloaded"}
                if "error_code" in words:
                    error["code"] = words["error_code"]
                script = [*script[:3], sse({"error": error})]
            else:
                script += [chunk(choices=[], model=model, usage=usage(*tokens)), DONE]
            headers["content-type"] = "text/event-stream"
            return httpx.Response(200, headers=headers, stream=ScriptedBody(script))
        return httpx.Response(
            200, json=completion(f"echo {prompt}", model=model, tokens=tokens), headers=headers
        )
