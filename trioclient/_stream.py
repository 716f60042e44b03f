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
closes the response and gives the token back at once: use ``async with``. A stream read
to its end closes itself. A stream dropped unfinished and unclosed (the openai idiom
``async for chunk in stream: break`` without ``async with``) gives its token and its
connection back when it is garbage-collected, with a :class:`ResourceWarning`, as trio
and httpx warn of what was not closed: late, but never leaked for good.

:func:`read_stream` is the other way in, for callers that want the whole answer and no
chunk (the batch engine): it opens and reads a stream to its end as one attempt of the
requester's retry loop, so a stream cut half-way is retried like any failed attempt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
import trio

from ._accumulator import ChunkAccumulator
from ._attempt import (
    Sender,
    close_stream,
    open_stream_once,
    read_stream_piece,
    timeout_error,
)
from ._config import Timeout
from ._exceptions import (
    APIError,
    APIResponseValidationError,
    APIStreamError,
    describe_provider_error,
)
from ._models import ChatCompletion, ChatCompletionChunk, provider_error_object
from ._pacer import Pacer
from ._retry import RetryPolicy
from ._sse import _RawEvent
from ._stream_token import StreamToken
from .sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["ChatCompletionStream", "ChunkAccumulator", "open_stream", "read_stream"]


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

    def __init__(
        self, requester: Requester, request: httpx.Request, timeout: Timeout, *, counted: bool = True
    ) -> None:
        self._requester = requester
        self._max_bytes = requester.max_response_bytes
        self._counted = counted  # False: read whole by read_stream, which counts the request
        self._request = request
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._body: Any = None  # the response's byte iterator
        self._decoder = SSEDecoder(max_event_size=self._max_bytes)
        self._received = 0
        # Events read but not yet turned into chunks, last one first (``pop()`` is next).
        self._events: list[_RawEvent] = []
        self._held: ChatCompletionChunk | None = None  # the first chunk, read while opening
        self._accumulator = ChunkAccumulator()
        self._deadline = math.inf
        self._done = False
        self._closed = False
        # The limiter token, lent to this small object rather than to the stream, so
        # that a stream dropped unclosed can still be collected (see _stream_token).
        self._token = StreamToken(requester)
        self._opened_at = 0.0
        self.first_chunk_at: float | None = None
        """``trio.current_time()`` when the first chunk arrived (time to first token)."""
        self.finished_at: float | None = None
        """``trio.current_time()`` when ``[DONE]`` was read."""
        self.content_chunks = 0  # chunks with text, counted by read_stream

    # -- opening (retried by the client until the first chunk) ---------------------

    async def _open_attempt(self, sender: Sender, request: httpx.Request, timeout: Timeout) -> Self:
        self._reset()
        try:
            self._deadline = await open_stream_once(
                sender, request, timeout, self._max_bytes, self._read_first_chunk
            )
        except BaseException:
            await self._drop_response()
            raise
        return self

    async def _read_first_chunk(self, response: httpx.Response) -> None:
        self._response = response
        if "content-encoding" in response.headers:
            self._body = response.aiter_bytes()  # decoded (gzip, br...), closed on drop
        else:
            self._body = response.stream.__aiter__()  # type: ignore[union-attr]
        # Any failure up to the first chunk (a bad event too) is retried.
        while self._held is None and not self._done:
            await self._receive()
            self._held = self._take()

    def _reset(self) -> None:
        self._decoder = SSEDecoder(max_event_size=self._max_bytes)
        self._received = 0
        self._events = []
        self._held = None
        self._accumulator = ChunkAccumulator()
        self._done = False
        self.first_chunk_at = self.finished_at = None

    # -- reading --------------------------------------------------------------------

    async def _receive(self) -> None:
        """Read once from the network and decode what came (may yield no chunk)."""
        data = await read_stream_piece(
            self._body, self._received, self._max_bytes, self._progress, "'data: [DONE]'", self._error
        )
        self._received += len(data)
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
        garbage collector (the benchmarks' README has the profile). It also keeps
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
            if event_type == "error":  # an error event whose data is plain text
                raise self._stream_error({"message": data[:1000]}) from None
            raise self._error(
                APIResponseValidationError,
                f"invalid stream: chunk {self._accumulator.chunks + 1} is not JSON: {data[:200]!r}",
            ) from None
        if event_type == "error" or (
            type(obj) is dict
            and ("error" in obj or "choices" not in obj)
            and provider_error_object(obj) is not None
        ):
            raise self._stream_error(obj)
        try:
            chunk = ChatCompletionChunk.from_dict(obj)
        except APIResponseValidationError as exc:
            raise self._error(APIResponseValidationError, str(exc), body=obj) from None
        if self.first_chunk_at is None:
            self.first_chunk_at = trio.current_time()
        self._accumulator.add(chunk)
        if self._accumulator.failed:  # a choice ended with finish_reason "error"
            raise self._stream_error(obj)
        return chunk

    def _stream_error(self, obj: Any) -> APIError:
        """An :class:`APIStreamError` for an error event, after keeping whatever
        content the event itself carried (OpenRouter's has ``choices`` too)."""
        if type(obj) is dict and obj.get("choices") and not self._accumulator.failed:
            try:
                self._accumulator.add(ChatCompletionChunk.from_dict(obj))
            except APIResponseValidationError:
                pass
        error = provider_error_object(obj)
        if error is None and self._accumulator.failed:
            error = {"message": "a choice ended with finish_reason 'error', no error object"}
        elif error is None:
            error = obj if type(obj) is dict else {"message": str(obj)}
        return self._error(
            APIStreamError,
            f"the server sent an error mid-stream: {describe_provider_error(error)}",
            body=obj,
        )

    def _progress(self) -> str:
        return f"{self._accumulator.chunks} chunks"

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
                    raise timeout_error(
                        self._request,
                        "total" if deadline == self._deadline else "idle",
                        None,
                        chunks=self._accumulator.chunks,
                        partial=self.current_completion(),
                    )
                chunk = self._take()
                if chunk is not None:
                    return chunk
                if self._done:
                    raise StopAsyncIteration
        except APIError:
            if self._counted:
                self._requester.counters.failed += 1
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
    def response(self) -> httpx.Response | None:
        """The HTTP response of the stream (status and headers: ``x-request-id``, the
        ``x-ratelimit-*`` headers); ``None`` before it opened."""
        return self._response

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
        await close_stream(response, body)

    async def aclose(self) -> None:
        """Close the response and give back the limiter token (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._events = []  # chunks not yet asked for are not delivered after a close
        self._held = None
        if self._done:
            if self._counted:
                self._requester.succeeded(self._request, self._accumulator.usage)
            await self._drain()
        await self._drop_response()
        self._token.release()

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

    def __del__(self) -> None:
        # Dropped unfinished and unclosed: the token and the connection go back from
        # the trio thread, with a ResourceWarning (see _stream_token).
        if not self._closed:
            self._closed = True
            self._token.abandon(
                f"a stream from {self._request.url}", self._response, self._body
            )


def _stream_request(
    requester: Requester,
    body: Mapping[str, Any],
    extra_headers: Mapping[str, str] | None,
    extra_query: Mapping[str, Any] | None,
    pacer: Pacer | None,
) -> httpx.Request:
    headers = {"Accept": "text/event-stream", **(extra_headers or {})}
    return requester.build_request(
        "chat/completions", body, extra_headers=headers, extra_query=extra_query, pacer=pacer
    )


async def open_stream(
    requester: Requester,
    body: Mapping[str, Any],
    timeout: Timeout,
    retry: RetryPolicy,
    extra_headers: Mapping[str, str] | None = None,
    extra_query: Mapping[str, Any] | None = None,
) -> ChatCompletionStream:
    """Send a streaming request and wait for its first chunk (retrying until then)."""
    request = _stream_request(requester, body, extra_headers, extra_query, None)
    stream = ChatCompletionStream(requester, request, timeout)
    # The token is held for the stream (it outlives this call), taken after any wait
    # for pace or budget.
    hold = stream._token.hold()
    try:
        await requester.call(request, stream._open_attempt, timeout, retry, hold)
    except BaseException:
        await stream._drop_response()
        hold.give_back()
        raise
    stream._token.opened()
    return stream


#: Errors raised by a stream after it opened that :func:`read_stream` retries although
#: the policy alone would not: a malformed chunk is a failed attempt like any other when
#: nobody has seen any part of the answer. (A provider's error event goes by the policy,
#: which reads its code: an overload is retried, a request that is wrong is not.)
_MID_STREAM_RETRYABLE = (APIResponseValidationError,)


async def read_stream(
    requester: Requester,
    body: Mapping[str, Any],
    timeout: Timeout,
    retry: RetryPolicy,
    pacer: Pacer | None = None,
) -> tuple[ChatCompletion, ChatCompletionStream]:
    """Read a whole stream, retrying it whole, and return the completion.

    For a caller that wants the answer, not the chunks (the batch engine). Opening the
    stream and reading it to ``[DONE]`` is **one** attempt of the requester's retry
    loop, so the limiter, the 429 gate, the pacer, the retry budget and the caller's
    deadline apply exactly as to a non-streamed request. Nobody has seen a partial
    answer, so a stream cut or malformed after it opened is retried too, and so is an
    error event whose code says "try again"; a stream that cannot open (a 4xx, a wrong
    content type) or whose error event says the request is wrong is not.

    Returns:
        The completion, and the (closed) stream of the attempt that succeeded, for its
        timings (``first_chunk_at``, ``finished_at``).
    """
    request = _stream_request(requester, body, None, None, pacer)
    opened = False

    async def whole(sender: Sender, request: httpx.Request, timeout: Timeout) -> ChatCompletionStream:
        nonlocal opened
        opened = False
        stream = ChatCompletionStream(requester, request, timeout, counted=False)
        async with stream:
            await stream._open_attempt(sender, request, timeout)
            opened = True
            async for chunk in stream:
                if chunk.content:
                    stream.content_chunks += 1
        return stream

    def retryable(error: Exception) -> bool:
        return retry.is_retryable(error) or (opened and isinstance(error, _MID_STREAM_RETRYABLE))

    hold = requester.token_hold()
    try:
        stream = await requester.call(request, whole, timeout, retry, hold, retryable)
    finally:
        hold.give_back()
    completion = stream.current_completion()
    requester.succeeded(request, completion.usage)
    return completion, stream
