"""Streamed completions: typed chunks as they arrive, and a cut stream never passed off as whole.

A :class:`ChatCompletionStream` is opened by ``create(..., stream=True)`` (or the
``async with client.chat.completions.stream(...)`` form). Opening it sends the request,
checks the status, and reads up to the **first chunk**; any failure up to there is
retried like any request, because the caller has seen nothing yet. After that a failure
is raised, never silently restarted: the caller may already have printed half an answer.

The stream ends on ``data: [DONE]``. Anything else that ends it (EOF, a reset, a chunk
that is not JSON, an error event, a deadline) raises a trioclient error whose
``.partial`` holds the completion assembled from what did arrive.

Deadlines are cancel scopes inside each ``__anext__`` call, never held across a
``yield`` to the caller: ``Timeout.first_byte`` until the first chunk, ``Timeout.idle``
between network reads, ``Timeout.total`` for the whole stream.

The stream owns its limiter token (taken with ``acquire_on_behalf_of``), so it may be
consumed, or closed, from any task. Leaving it early (``break``, an exception, a cancel)
closes the response and gives the token back at once: use ``async with``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
import trio

from ._attempt import Pacer, Sender, close_response, raise_for_status, read_body, send
from ._config import Timeout
from ._exceptions import (
    APIError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    IncompleteStreamError,
    ResponseTooLargeError,
)
from ._gate import TokenHold
from ._models import ChatCompletion, ChatCompletionChunk
from ._retry import RetryPolicy
from ._sse import _RawEvent
from .sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ChatCompletionStream", "ChunkAccumulator", "StreamManager", "open_stream"]


class _ChoiceParts:
    __slots__ = ("content", "finish_reason", "reasoning", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.finish_reason: str | None = None
        # tool-call index -> {"id", "type", "name", "arguments": [parts]}
        self.tool_calls: dict[int, dict[str, Any]] = {}


class ChunkAccumulator:
    """Merges chunks into the :class:`ChatCompletion` they add up to.

    Content, reasoning and refusal deltas are concatenated per choice; tool-call deltas
    are merged by their ``index`` (the id, type and name come once, the arguments in
    fragments); the usage chunk's ``usage`` is kept.
    """

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.usage: Any = None
        self.chunks = 0
        self._choices: dict[int, _ChoiceParts] = {}

    def add(self, chunk: ChatCompletionChunk) -> None:
        if not self.chunks:
            self.id, self.model, self.created = chunk.id, chunk.model, chunk.created
            self.system_fingerprint = chunk.system_fingerprint
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        choices = self._choices
        for choice in chunk.choices:
            parts = choices.get(choice.index)
            if parts is None:
                parts = choices[choice.index] = _ChoiceParts()
            delta = choice.delta
            if delta.content:
                parts.content.append(delta.content)
            if delta.role:
                parts.role = delta.role
            if delta.reasoning_content:
                parts.reasoning.append(delta.reasoning_content)
            if delta.refusal:
                parts.refusal.append(delta.refusal)
            for call in delta.tool_calls:
                merged = parts.tool_calls.setdefault(
                    call.index, {"id": None, "type": None, "name": None, "arguments": []}
                )
                if call.id:
                    merged["id"] = call.id
                if call.type:
                    merged["type"] = call.type
                if call.function_name:
                    merged["name"] = (merged["name"] or "") + call.function_name
                if call.function_arguments:
                    merged["arguments"].append(call.function_arguments)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason

    def text(self, index: int = 0) -> str:
        """The content so far of choice ``index``."""
        parts = self._choices.get(index)
        return "".join(parts.content) if parts else ""

    def completion(self) -> ChatCompletion:
        """The completion the chunks so far add up to (built fresh on each call)."""
        choices = []
        for index in sorted(self._choices):
            parts = self._choices[index]
            message: dict[str, Any] = {
                "role": parts.role or "assistant",
                "content": "".join(parts.content)
                if parts.content or not parts.tool_calls
                else None,
            }
            if parts.reasoning:
                message["reasoning_content"] = "".join(parts.reasoning)
            if parts.refusal:
                message["refusal"] = "".join(parts.refusal)
            if parts.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call["id"] or "",
                        "type": call["type"] or "function",
                        "function": {
                            "name": call["name"] or "",
                            "arguments": "".join(call["arguments"]),
                        },
                    }
                    for _, call in sorted(parts.tool_calls.items())
                ]
            choices.append(
                {"index": index, "message": message, "finish_reason": parts.finish_reason}
            )
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.system_fingerprint is not None:
            body["system_fingerprint"] = self.system_fingerprint
        if self.usage is not None:
            body["usage"] = self.usage.to_dict()
        return ChatCompletion.from_dict(body)


_DONE = "[DONE]"
_scan_json: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


def _loads(text: str) -> Any:
    """``json.loads(text)``, minus its Python wrapper on the common path.

    One chunk per token makes the wrapper (``loads`` -> ``decode`` -> ``raw_decode``,
    two regex calls) a measurable share of a stream's CPU; the C scanner underneath
    does the work. Anything the scanner does not take whole in one go (whitespace
    around the value, trailing data, invalid JSON) goes to ``json.loads`` itself, so
    values and errors are exactly ``json.loads``'s.
    """
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


class ChatCompletionStream:
    """An open streamed completion: an async iterator of :class:`ChatCompletionChunk`.

    ::

        async with await client.chat.completions.create(..., stream=True) as stream:
            async for chunk in stream:
                print(chunk.choices[0].delta.content or "", end="")
        print((await stream.get_final_completion()).usage)
    """

    def __init__(self, client: Client, request: httpx.Request, timeout: Timeout) -> None:
        self._client = client
        self._request = request
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._body: Any = None  # the response's byte iterator
        self._decoder = SSEDecoder(max_event_size=client.max_response_bytes)
        self._received = 0
        # Events read but not yet turned into chunks, last one first (``pop()`` is next).
        self._events: list[_RawEvent] = []
        self._held: ChatCompletionChunk | None = None  # the first chunk, read while opening
        self._accumulator = ChunkAccumulator()
        self._deadline = math.inf
        self._done = False
        self._closed = False
        self._holds_token = False
        self._opened_at = 0.0
        self.first_chunk_at: float | None = None
        """``trio.current_time()`` when the first chunk arrived (time to first token)."""
        self.finished_at: float | None = None
        """``trio.current_time()`` when ``[DONE]`` was read."""

    # -- opening (retried by the client until the first chunk) ---------------------

    async def _open_attempt(self, sender: Sender, request: httpx.Request, timeout: Timeout) -> Self:
        self._reset()
        self._opened_at = now = trio.current_time()
        self._deadline = now + (math.inf if timeout.total is None else timeout.total)
        first_byte = math.inf if timeout.first_byte is None else timeout.first_byte
        try:
            await self._open_within(sender, request, timeout, min(self._deadline, now + first_byte))
        except BaseException:
            await self._drop_response()
            raise
        return self

    async def _open_within(
        self, sender: Sender, request: httpx.Request, timeout: Timeout, deadline: float
    ) -> None:
        now = self._opened_at
        with trio.CancelScope(deadline=deadline) as scope:
            response = await send(sender, request)
            if not 200 <= response.status_code < 300:
                raise_for_status(
                    response, await read_body(response, timeout, self._client.max_response_bytes)
                )
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                body = await read_body(response, timeout, self._client.max_response_bytes)
                raise APIResponseValidationError(
                    f"invalid response: expected a stream (text/event-stream), got "
                    f"{kind or 'no content type'}: {body[:200].decode('utf-8', 'replace')}",
                    request=request,
                )
            self._response = response
            if "content-encoding" in response.headers:
                self._body = response.aiter_bytes()  # decoded (gzip, br...), closed on drop
            else:
                self._body = response.stream.__aiter__()  # type: ignore[union-attr]
            # Any failure up to the first chunk (a bad event too) is retried.
            while self._held is None and not self._done:
                await self._receive()
                self._held = self._take()
        if scope.cancelled_caught:
            which = "Timeout.total" if deadline == self._deadline else "Timeout.first_byte"
            raise APITimeoutError(
                f"no first chunk from {request.url} within {deadline - now:g} s ({which})",
                request=request,
            )

    def _reset(self) -> None:
        self._decoder = SSEDecoder(max_event_size=self._client.max_response_bytes)
        self._received = 0
        self._events = []
        self._held = None
        self._accumulator = ChunkAccumulator()
        self._done = False
        self.first_chunk_at = self.finished_at = None

    # -- reading --------------------------------------------------------------------

    async def _receive(self) -> None:
        """Read once from the network and decode what came (may yield no chunk)."""
        try:
            data = await self._body.__anext__()
        except StopAsyncIteration:
            raise self._error(
                IncompleteStreamError,
                "stream ended before 'data: [DONE]' "
                f"(after {self._accumulator.chunks} chunks): the answer is incomplete",
            ) from None
        except APIError:
            raise
        except (httpx.HTTPError, OSError, trio.BrokenResourceError) as exc:
            kind = (
                APITimeoutError
                if isinstance(exc, httpx.TimeoutException)
                else IncompleteStreamError
            )
            raise self._error(
                kind,
                f"connection lost mid-stream after {self._accumulator.chunks} chunks "
                f"({exc or type(exc).__name__}): the answer is incomplete",
            ) from exc
        self._received += len(data)
        if self._received > self._client.max_response_bytes:
            raise self._error(
                ResponseTooLargeError,
                f"stream exceeds max_response_bytes={self._client.max_response_bytes}",
            )
        try:
            events = self._decoder.feed_raw(data)
        except SSEError as exc:
            raise self._error(APIResponseValidationError, f"invalid stream: {exc}") from None
        events.reverse()
        self._events = events

    def _take(self) -> ChatCompletionChunk | None:
        """The next chunk among the events already read; None at ``[DONE]`` or when
        there are none left.

        Chunks are built one at a time, as the caller asks for them, not all at once
        when a read brings hundreds: then each chunk's dicts and objects are freed
        before the next is built, instead of piling up and setting off the cyclic
        garbage collector (15 % of a fast stream's CPU under perf, 4 % now). It also keeps
        the order of things simple: a bad event is raised after every chunk before
        it was delivered, however TCP split the bytes.
        """
        events = self._events
        if not events:
            return None
        event_type, data, _, _ = events.pop()
        if data == _DONE:
            self._done = True
            self._events = []  # anything after [DONE] is ignored
            self.finished_at = trio.current_time()
            return None
        return self._chunk(event_type, data)

    def _chunk(self, event_type: str, data: str) -> ChatCompletionChunk:
        try:
            obj = _loads(data)
        except ValueError:
            raise self._error(
                APIResponseValidationError,
                f"invalid stream: chunk {self._accumulator.chunks + 1} is not JSON: {data[:200]!r}",
            ) from None
        if event_type == "error" or (type(obj) is dict and "error" in obj and "choices" not in obj):
            error = obj.get("error", obj) if type(obj) is dict else obj
            detail = error.get("message") if type(error) is dict else None
            raise self._error(
                APIStreamError,
                f"the server sent an error mid-stream: {detail or json.dumps(error)[:200]}",
                body=obj,
            )
        try:
            chunk = ChatCompletionChunk.from_dict(obj)
        except APIResponseValidationError as exc:
            raise self._error(APIResponseValidationError, str(exc)) from None
        if self.first_chunk_at is None:
            self.first_chunk_at = trio.current_time()
        self._accumulator.add(chunk)
        return chunk

    def _error(self, kind: type[APIError], message: str, body: object = None) -> APIError:
        return kind(message, request=self._request, body=body, partial=self.current_completion())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        try:
            # The common case: the chunk is among the events the last read brought.
            held = self._held
            if held is not None:
                self._held = None
                return held
            if self._events:
                chunk = self._take()
                if chunk is not None:
                    return chunk
            if self._done or self._closed:
                raise StopAsyncIteration
            idle = self._timeout.idle
            while True:
                deadline = self._deadline
                if idle is not None:
                    deadline = min(deadline, trio.current_time() + idle)
                with trio.CancelScope(deadline=deadline) as scope:
                    await self._receive()
                if scope.cancelled_caught:
                    which = "Timeout.total" if deadline == self._deadline else "Timeout.idle"
                    raise self._error(
                        APITimeoutError,
                        f"stream from {self._request.url} stalled ({which}) after "
                        f"{self._accumulator.chunks} chunks",
                    )
                chunk = self._take()
                if chunk is not None:
                    return chunk
                if self._done:
                    raise StopAsyncIteration
        except APIError:
            self._client._counters.failed += 1
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise

    # -- results --------------------------------------------------------------------

    def current_completion(self) -> ChatCompletion:
        """The completion assembled from the chunks received so far."""
        return self._accumulator.completion()

    async def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream and return the whole :class:`ChatCompletion`."""
        async for _ in self:
            pass
        if not self._done:
            raise RuntimeError("this stream was closed before it finished")
        return self.current_completion()

    @property
    def chunks_received(self) -> int:
        """How many chunks have been delivered so far.

        Chunks are decoded as they are asked for, so this counts the chunks the
        caller has had, not every chunk already sitting in a network read.
        """
        return self._accumulator.chunks

    @property
    def done(self) -> bool:
        """Whether ``data: [DONE]`` has been read: the stream is whole.

        It turns true when iteration reaches it, just after the last chunk.
        """
        return self._done

    # -- closing --------------------------------------------------------------------

    async def _drop_response(self) -> None:
        response, body = self._response, self._body
        self._response = self._body = None
        if body is not None and hasattr(body, "aclose"):
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                try:
                    await body.aclose()
                except Exception:
                    pass
        if response is not None:
            await close_response(response)

    async def aclose(self) -> None:
        """Close the response and give back the limiter token (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._events = []  # chunks not yet asked for are not delivered after a close
        self._held = None
        client = self._client
        if self._done:
            client._counters.succeeded += 1
            client._counters.add_usage(self._accumulator.usage)
            await self._drain()
        await self._drop_response()
        if self._holds_token:
            self._holds_token = False
            client._counters.in_flight -= 1
            client.limiter.release_on_behalf_of(self)

    async def _drain(self) -> None:
        # After [DONE] the server ends the body; reading that end lets the connection be
        # reused instead of dropped. Bounded: a server that keeps talking is cut off.
        body = self._body
        if body is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                for _ in range(16):
                    await body.__anext__()
            except StopAsyncIteration:
                return
            except Exception:
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_stream(
    client: Client,
    body: Mapping[str, Any],
    timeout: Timeout,
    retry: RetryPolicy,
    extra_headers: Mapping[str, str] | None = None,
    pacer: Pacer | None = None,
) -> ChatCompletionStream:
    """Send a streaming request and wait for its first chunk (retrying until then)."""
    headers = {"Accept": "text/event-stream", **(extra_headers or {})}
    request = client.build_request(body, headers, pacer)
    stream = ChatCompletionStream(client, request, timeout)
    # [rate control] The token (held for the stream) is taken in _call after any pace
    # or budget wait, and may be given back while waiting again.
    hold = TokenHold(client.limiter, stream)
    try:
        await client._call(request, stream._open_attempt, timeout, retry, hold)
    except BaseException:
        await stream._drop_response()
        hold.give_back()
        raise
    stream._holds_token = True
    client._counters.in_flight += 1
    return stream


class StreamManager:
    """``async with client.chat.completions.stream(...) as stream:``: opens on enter,
    closes on exit, whatever happened in between."""

    def __init__(self, client: Client, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._kwargs = kwargs
        self._stream: ChatCompletionStream | None = None

    async def __aenter__(self) -> ChatCompletionStream:
        self._stream = await self._client.chat.completions.create(stream=True, **self._kwargs)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()
