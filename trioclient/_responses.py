"""``client.responses``: the Responses API (``POST /responses``), whole or streamed.

The Responses API is xAI's recommended interface for new work and OpenAI's newest: a
request takes ``input`` (a string, or a list of input items such as
``{"role": "user", "content": "..."}``) and optional ``instructions``; the answer is a
``response`` object whose ``output`` is a list of items (messages, function calls,
reasoning). A conversation continues server-side with ``previous_response_id``.

The answer is a :class:`ResponseObject` (``trioclient.ResponseObject``: the name
``trioclient.Response`` already belongs to the xAI-style chat's answer). Its
``output_text`` joins the text of every ``output_text`` part of every message item,
as the openai SDK's property does.

**Streams.** ``create(..., stream=True)`` returns a :class:`ResponseStream` of typed
:class:`ResponseStreamEvent`\\ s (``response.created``, ``response.output_text.delta``,
..., ``response.completed``) with the guarantees of a chat stream:

* opening it (the request, the status, the content type, the first event) is retried
  like any request, because nobody has seen anything yet; after that a failure is
  raised, never silently restarted;
* the stream is whole only when its terminal event arrived: ``response.completed`` or
  ``response.incomplete`` (the model stopped early, e.g. at ``max_output_tokens``:
  the answer's ``status`` says so). A stream that ends without one (EOF, a reset, a
  ``[DONE]`` too early) raises :class:`~trioclient.IncompleteStreamError`;
  ``response.failed`` and an ``error`` event raise
  :class:`~trioclient.APIStreamError`. Each error's ``.partial`` is the
  :class:`ResponseObject` assembled from the events that did arrive;
* the stream owns its limiter token; leaving it early (``break``, an exception, a
  cancel) closes the connection and gives the token back: use ``async with``.

The deadlines are the chat stream's: ``Timeout.first_byte`` until the first event,
``Timeout.idle`` between network reads, ``Timeout.total`` for the whole stream.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, overload

import attrs
import httpx
import trio

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
    IncompleteStreamError,
)
from ._models import Usage
from ._options import UNSET, CallOptions, check_mapping
from ._retry import RetryPolicy
from ._stream_token import StreamManager, StreamToken
from .sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = [
    "ResponseObject",
    "ResponseStream",
    "ResponseStreamEvent",
    "ResponseUsage",
    "Responses",
    "build_response_body",
    "parse_response_object",
]

JSONObject = dict[str, Any]

#: The events that end a stream; only the first two make it an answer.
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _invalid(message: str) -> APIResponseValidationError:
    return APIResponseValidationError(f"invalid response: {message}")


def _int_or(value: object, default: int = 0) -> int:
    return value if type(value) is int else default


@attrs.frozen
class ResponseUsage:
    """Token counts of one response (details stay in ``to_dict()``).

    Attributes:
        input_tokens: Tokens read (the whole conversation, with
            ``previous_response_id``).
        output_tokens: Tokens written (reasoning included).
        total_tokens: Their sum.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: object) -> ResponseUsage:
        if type(obj) is not dict:
            raise _invalid(f"usage: expected an object, got {type(obj).__name__}")
        read = _int_or(obj.get("input_tokens"))
        written = _int_or(obj.get("output_tokens"))
        return cls(read, written, _int_or(obj.get("total_tokens"), read + written), obj)

    def as_usage(self) -> Usage:
        """The same counts as a chat :class:`~trioclient.Usage` (prompt = input,
        completion = output), as the client's statistics add them up."""
        return Usage(self.input_tokens, self.output_tokens, self.total_tokens, data=self.data)

    def to_dict(self) -> JSONObject:
        return copy.deepcopy(self.data)


@attrs.frozen
class ResponseObject:
    """A Responses API answer (the ``response`` object).

    Attributes:
        id: Its id: pass it as ``previous_response_id`` to continue the conversation.
        model: The model that answered.
        status: ``"completed"``, ``"incomplete"`` (stopped early: see
            ``incomplete_details``), ``"failed"`` (see ``error``), ``"in_progress"``...
        output: The output items as the server sent them (dicts with a ``type``:
            ``"message"``, ``"function_call"``, ``"reasoning"``...).
        usage: Token counts, if the server says.
        error: The error object of a failed response, else ``None``.
        incomplete_details: Why a response is incomplete (``{"reason":
            "max_output_tokens"}``), else ``None``.
        previous_response_id: The response this one continues, if any.
        created_at: When it was made (Unix seconds), if the server says.
        data: The whole JSON object, unknown fields included.
    """

    id: str
    model: str
    status: str | None
    output: tuple[JSONObject, ...] = ()
    usage: ResponseUsage | None = None
    error: JSONObject | None = None
    incomplete_details: JSONObject | None = None
    previous_response_id: str | None = None
    created_at: int | float | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of every message, joined."""
        parts = []
        for item in self.output:
            if item.get("type") == "message":
                for part in item.get("content") or ():
                    if type(part) is dict and part.get("type") == "output_text":
                        text = part.get("text")
                        if type(text) is str:
                            parts.append(text)
        return "".join(parts)

    @property
    def function_calls(self) -> list[JSONObject]:
        """The ``function_call`` output items (``name``, ``arguments``, ``call_id``)."""
        return [item for item in self.output if item.get("type") == "function_call"]

    def to_dict(self) -> JSONObject:
        """The whole JSON object this value was parsed from, as a deep copy."""
        return copy.deepcopy(self.data)

    @classmethod
    def from_dict(cls, obj: object) -> ResponseObject:
        if type(obj) is not dict:
            raise _invalid(f"expected a response object, got {type(obj).__name__}")
        if "error" in obj and obj.get("object") != "response" and "output" not in obj:
            detail = obj["error"]
            if type(detail) is dict:
                detail = detail.get("message", detail)
            raise _invalid(f"a 200 carrying an error: {str(detail)[:200]!r}")
        rid = obj.get("id")
        if type(rid) is not str:
            raise _invalid("a response needs a string 'id'")
        output = obj.get("output", [])
        if type(output) is not list or any(type(item) is not dict for item in output):
            raise _invalid("response.output: expected a list of objects")
        usage = obj.get("usage")
        error = obj.get("error")
        details = obj.get("incomplete_details")
        previous = obj.get("previous_response_id")
        created = obj.get("created_at")
        model = obj.get("model")
        status = obj.get("status")
        return cls(
            rid,
            model if type(model) is str else "",
            status if type(status) is str else None,
            tuple(output),
            ResponseUsage.from_dict(usage) if usage is not None else None,
            error if type(error) is dict else None,
            details if type(details) is dict else None,
            previous if type(previous) is str else None,
            created if type(created) in (int, float) else None,
            obj,
        )


def parse_response_object(response: httpx.Response, data: Any) -> ResponseObject:
    """The JSON of a 2xx ``/responses`` answer as a :class:`ResponseObject`."""
    return ResponseObject.from_dict(data)


@attrs.frozen
class ResponseStreamEvent:
    """One event of a streamed response.

    Attributes:
        type: ``"response.created"``, ``"response.output_text.delta"``,
            ``"response.completed"``... (the event's ``type`` field).
        sequence_number: Its place in the stream, if the server numbers events.
        delta: The text of a ``*.delta`` event, else ``None``.
        response: The response object that ``response.created``,
            ``response.in_progress`` and the terminal events carry, else ``None``.
        data: The whole event object.
    """

    type: str
    sequence_number: int | None = None
    delta: str | None = None
    response: ResponseObject | None = None
    data: JSONObject = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_dict(cls, obj: JSONObject, event_name: str | None = None) -> ResponseStreamEvent:
        kind = obj.get("type", event_name)
        if type(kind) is not str or not kind:
            raise _invalid("a stream event needs a string 'type'")
        snapshot = obj.get("response")
        delta = obj.get("delta")
        number = obj.get("sequence_number")
        return cls(
            kind,
            number if type(number) is int else None,
            delta if type(delta) is str else None,
            ResponseObject.from_dict(snapshot) if type(snapshot) is dict else None,
            obj,
        )


class _Assembly:
    """What the events so far add up to: the last response snapshot, the output items
    done, and the text of the items still being written (for ``.partial``)."""

    def __init__(self) -> None:
        self.snapshot: ResponseObject | None = None
        self.items: dict[int, JSONObject] = {}
        self.texts: dict[int, list[str]] = {}
        self.events = 0

    def add(self, event: ResponseStreamEvent) -> None:
        self.events += 1
        if event.response is not None:
            self.snapshot = event.response
        data = event.data
        index = _int_or(data.get("output_index"), -1)
        if event.type == "response.output_text.delta" and event.delta is not None:
            self.texts.setdefault(index, []).append(event.delta)
        elif event.type in ("response.output_item.added", "response.output_item.done"):
            item = data.get("item")
            if type(item) is dict:
                self.items[index] = item

    def text(self) -> str:
        return "".join("".join(self.texts[i]) for i in sorted(self.texts))

    def partial(self) -> ResponseObject:
        """The response so far: the last snapshot, its output rebuilt from the events."""
        base = self.snapshot.to_dict() if self.snapshot is not None else {}
        output = []
        for index in sorted(set(self.items) | set(self.texts)):
            item = dict(self.items.get(index) or {"type": "message", "role": "assistant"})
            if index in self.texts and item.get("type") == "message":
                item["content"] = [{"type": "output_text", "text": "".join(self.texts[index])}]
            output.append(item)
        base["output"] = output
        base.setdefault("id", "")
        base["status"] = "incomplete"
        return ResponseObject.from_dict(base)


@attrs.frozen
class _Failure:
    """A stream error found while decoding, raised when its turn comes."""

    kind: type[APIError]
    message: str


class ResponseStream:
    """An open streamed response: an async iterator of :class:`ResponseStreamEvent`.

    ::

        async with await client.responses.create(model=m, input="Hi", stream=True) as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    print(event.delta, end="")
        print(stream.final_response().usage)
    """

    def __init__(self, requester: Requester, request: httpx.Request, timeout: Timeout) -> None:
        self._requester = requester
        self._max_bytes = requester.max_response_bytes
        self._request = request
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._body: Any = None
        self._deadline = math.inf
        self._token = StreamToken(requester)  # the limiter token (see _stream_token)
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._decoder = SSEDecoder(max_event_size=self._max_bytes)
        self._received = 0
        # Decoded, not yet delivered, the next one last (``pop()``).
        self._pending: list[ResponseStreamEvent | _Failure] = []
        self._terminal_read = False  # the terminal event has been decoded
        self._assembly = _Assembly()
        self._final: ResponseObject | None = None
        self._terminal = False

    # -- opening (retried until the first event) -----------------------------------

    async def _open_attempt(self, sender: Sender, request: httpx.Request, timeout: Timeout) -> Self:
        self._reset()
        try:
            self._deadline = await open_stream_once(
                sender, request, timeout, self._max_bytes, self._read_first_event
            )
        except BaseException:
            await self._drop_response()
            raise
        return self

    async def _read_first_event(self, response: httpx.Response) -> None:
        self._response = response
        if "content-encoding" in response.headers:
            self._body = response.aiter_bytes()
        else:
            self._body = response.stream.__aiter__()  # type: ignore[union-attr]
        while not self._pending:
            await self._receive()
        first = self._pending[-1]
        # A failure before the first event belongs to this attempt (and may be retried).
        if isinstance(first, _Failure) or first.type in ("error", "response.failed"):
            self._deliver(self._pending.pop())

    # -- reading --------------------------------------------------------------------

    async def _receive(self) -> None:
        """Read once from the network; decode the events it completed into ``_pending``."""
        data = await read_stream_piece(
            self._body,
            self._received,
            self._max_bytes,
            lambda: f"{self._assembly.events} events",
            "its terminal event (response.completed, response.incomplete or response.failed)",
            self._error,
        )
        self._received += len(data)
        try:
            events = self._decoder.feed(data)
        except SSEError as exc:
            raise self._error(APIResponseValidationError, f"invalid stream: {exc}") from None
        pending: list[ResponseStreamEvent | _Failure] = []
        for sse in events:
            failure = self._decode(sse.event, sse.data, pending)
            if failure is not None:
                # Delivered after every event before it, however TCP split the bytes.
                pending.append(failure)
                break
        pending.reverse()
        self._pending = pending

    def _decode(
        self, name: str, data: str, pending: list[ResponseStreamEvent | _Failure]
    ) -> _Failure | None:
        if data == "[DONE]":
            # Some servers end with it; before the terminal event it ends nothing.
            if self._terminal_read:
                return None
            return _Failure(
                IncompleteStreamError,
                "response stream sent [DONE] before its terminal event: the answer is incomplete",
            )
        if self._terminal_read:
            return None  # nothing after the terminal event is part of the answer
        try:
            obj = json.loads(data)
        except ValueError:
            return _Failure(
                APIResponseValidationError,
                f"invalid stream: an event is not JSON: {data[:200]!r}",
            )
        if type(obj) is not dict:
            return _Failure(APIResponseValidationError, "invalid stream: an event is not an object")
        try:
            event = ResponseStreamEvent.from_dict(obj, name or None)
        except APIResponseValidationError as exc:
            return _Failure(APIResponseValidationError, str(exc))
        if event.type in TERMINAL_EVENTS:
            self._terminal_read = True
        pending.append(event)
        return None

    def _deliver(self, event: ResponseStreamEvent | _Failure) -> ResponseStreamEvent:
        """Account for an event handed to the caller; raise for an error or a failure."""
        if isinstance(event, _Failure):
            raise self._error(event.kind, event.message)
        kind = event.type
        if kind == "error" or (kind == "response.failed"):
            self._assembly.add(event)
            if kind == "error":
                detail = event.data.get("message") or event.data.get("error") or event.data
            else:
                error = event.response.error if event.response is not None else None
                detail = (error or {}).get("message") or "the response failed"
            raise self._error(
                APIStreamError,
                f"the server sent {kind!r} mid-stream: {str(detail)[:200]}",
                body=event.data,
            )
        self._assembly.add(event)
        if kind in TERMINAL_EVENTS:
            self._terminal = True
            self._final = event.response
            self._pending = []  # nothing after the terminal event is an answer
            if self._final is None:
                raise self._error(
                    APIResponseValidationError,
                    f"invalid stream: {kind} carries no response object",
                )
        return event

    def _error(self, kind: type[APIError], message: str, body: object = None) -> APIError:
        return kind(message, request=self._request, body=body, partial=self._assembly.partial())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ResponseStreamEvent:
        try:
            if self._pending:
                return self._deliver(self._pending.pop())
            if self._terminal or self._closed:
                raise StopAsyncIteration
            idle = self._timeout.idle
            while not self._pending:
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
                        chunks=self._assembly.events,
                        partial=self._assembly.partial(),
                    )
            return self._deliver(self._pending.pop())
        except APIError:
            self._requester.counters.failed += 1
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise

    # -- results --------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the terminal event has been delivered: the stream is whole."""
        return self._terminal

    @property
    def text(self) -> str:
        """The ``output_text`` deltas delivered so far, joined."""
        return self._assembly.text()

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response of the stream (status, headers); ``None`` before it opened."""
        return self._response

    def final_response(self) -> ResponseObject:
        """The response the terminal event carried (after the stream was read whole)."""
        if self._final is None:
            raise RuntimeError(
                "the stream has not delivered its terminal event: read it to the end "
                "(or use get_final_response())"
            )
        return self._final

    async def get_final_response(self) -> ResponseObject:
        """Read the rest of the stream and return the final :class:`ResponseObject`."""
        async for _ in self:
            pass
        if self._final is None:
            raise RuntimeError("this stream was closed before it finished")
        return self._final

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
        self._pending = []
        if self._terminal and self._final is not None:
            usage = self._final.usage
            self._requester.succeeded(self._request, usage.as_usage() if usage else None)
        await self._drop_response()
        self._token.release()

    def __del__(self) -> None:
        # Dropped unfinished and unclosed: see _stream_token.
        if not getattr(self, "_closed", True):
            self._closed = True
            self._token.abandon(
                f"a response stream from {self._request.url}", self._response, self._body
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def build_response_body(
    model: object,
    input: object,
    params: Mapping[str, Any],
    *,
    stream: bool = False,
) -> dict[str, Any]:
    """The JSON body of a ``/responses`` request, checked: a model name, and an ``input``
    that is a non-empty string or a non-empty list of items (dicts)."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if isinstance(input, str):
        if not input:
            raise ValueError("input is an empty string: there is nothing to answer")
        sent: Any = input
    elif isinstance(input, Sequence) and not isinstance(input, bytes):
        if not input:
            raise ValueError("input is an empty list: there is nothing to answer")
        for i, item in enumerate(input):
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"input[{i}] must be a dict like {{'role': 'user', 'content': '...'}}, "
                    f"got {type(item).__name__}"
                )
        sent = list(input)
    else:
        raise TypeError(
            f"input must be a string or a list of input items, got {type(input).__name__}"
        )
    body: dict[str, Any] = {"model": model, "input": sent}
    for name, value in params.items():
        if value is not None:
            body[name] = value
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise ValueError(f"previous_response_id must be a response id (a string), got {previous!r}")
    if stream:
        body["stream"] = True
    return body


def _usage(result: ResponseObject) -> Usage | None:
    return result.usage.as_usage() if result.usage is not None else None


class Responses:
    """``client.responses``: ``create()``, whole or streamed, through the same request
    path as every call (limiter, 429 gate, deadlines, retries, statistics, options)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    @overload
    async def create(
        self,
        *,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        instructions: str | None = ...,
        previous_response_id: str | None = ...,
        tools: Sequence[Mapping[str, Any]] | None = ...,
        stream: Literal[False] = False,
        timeout: Timeout | float | None = ...,
        retry: RetryPolicy | None = ...,
        max_retries: int | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        extra_query: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ResponseObject: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        instructions: str | None = ...,
        previous_response_id: str | None = ...,
        tools: Sequence[Mapping[str, Any]] | None = ...,
        stream: Literal[True],
        timeout: Timeout | float | None = ...,
        retry: RetryPolicy | None = ...,
        max_retries: int | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        extra_query: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ResponseStream: ...

    async def create(
        self,
        *,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        instructions: str | None = None,
        previous_response_id: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
        timeout: Timeout | float | None = UNSET,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ResponseObject | ResponseStream:
        """Create a response.

        Every other Responses parameter (``max_output_tokens``, ``temperature``,
        ``store``, ``include``, ``reasoning``, ``text``...) passes through untouched.

        Args:
            model: The model name.
            input: A string, or a list of input items (``{"role": "user",
                "content": "..."}``, function-call outputs...).
            instructions: A system (developer) message for this response.
            previous_response_id: Continue the conversation of an earlier response.
            tools: The tools the model may call.
            stream: ``True`` returns a :class:`ResponseStream`; use it with
                ``async with``.
            timeout, retry, max_retries, extra_headers, extra_query, extra_body: The
                request options, as in ``chat.completions.create``.

        Raises:
            APIStatusError: the server refused (``NotFoundError`` for an unknown
                ``previous_response_id``), after retries where retryable.
            APIConnectionError: no answer could be had (after retries).
            APIResponseValidationError: the answer was not a response object.
            ValueError, TypeError: bad arguments, before anything is sent.
        """
        requester = self._requester
        requester.check_open()
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        params.pop("stream", None)
        named = {
            "instructions": instructions,
            "previous_response_id": previous_response_id,
            "tools": None if tools is None else list(tools),
        }
        body = build_response_body(model, input, {**named, **params}, stream=stream)
        if extra_body is not None:
            check_mapping("extra_body", extra_body)
            body.update(extra_body)
        call = CallOptions(requester, timeout, retry, max_retries, extra_headers, extra_query)
        if stream:
            headers = {"Accept": "text/event-stream", **(call.extra_headers or {})}
            request = requester.build_request(
                "responses", body, extra_headers=headers, extra_query=call.extra_query
            )
            return await _open_response_stream(requester, request, call.timeout, call.retry)
        request = requester.build_request(
            "responses", body, extra_headers=call.extra_headers, extra_query=call.extra_query
        )
        return await requester.request_json(
            request, parse_response_object, call.timeout, call.retry, _usage
        )

    def stream(
        self, *, model: str, input: str | Sequence[Mapping[str, Any]], **params: Any
    ) -> StreamManager[ResponseStream]:
        """The ``async with`` form of ``create(..., stream=True)``::

        async with client.responses.stream(model=m, input="Hi") as stream:
            async for event in stream:
                ...
        """
        return StreamManager(lambda: self.create(model=model, input=input, stream=True, **params))


async def _open_response_stream(
    requester: Requester, request: httpx.Request, timeout: Timeout, retry: RetryPolicy
) -> ResponseStream:
    """Send a streaming request and wait for its first event (retrying until then); the
    stream holds the limiter token from here until it is closed."""
    stream = ResponseStream(requester, request, timeout)
    hold = stream._token.hold()  # held for the stream, after any pace wait
    try:
        await requester.call(request, stream._open_attempt, timeout, retry, hold)
    except BaseException:
        await stream._drop_response()
        hold.give_back()
        raise
    stream._token.opened()
    return stream


