"""The client: one object per endpoint, opened with ``async with``.

A request's life, in order (each step is a module of its own):

1. **validate and encode** the body once (:mod:`json`), before anything is sent;
2. wait at the :class:`~trioclient._gate.RateLimitGate` (a client-wide pause, or the
   pace its rate controller sets) and for any pacer's budgets, *then* take a token from
   the client's :class:`trio.CapacityLimiter` (``max_concurrent``): no token is held
   while waiting for pace or budget. The token is kept through the retries' own
   backoff sleeps;
3. (the gate is looked at again after every wait, so a pause that began meanwhile holds);
4. one **attempt** (:mod:`trioclient._attempt`) under its own deadlines;
5. on a retryable error, sleep as the :class:`~trioclient.RetryPolicy` says (a 429
   closes the gate for everyone instead), unless the sleep would pass the caller's
   deadline, in which case the last error is raised at once;
6. the body parsed into a frozen :class:`~trioclient.ChatCompletion`.

The client starts no background task, so it needs no nursery of its own: every request
runs in the task that awaits it, and a caller's cancel scope around any call just works.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, overload

import attrs
import httpx
import trio

from ._attempt import (
    PACER_EXTENSION,
    Pacer,
    Sender,
    client_sender,
    error_detail,
    parse_json,
    raise_for_status,
    read_body,
    send,
    transport_sender,
)
from ._config import Timeout, resolve_api_key, resolve_base_url
from ._exceptions import (
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
)
from ._gate import RateLimitGate, TokenHold, backoff_ceiling, wait_to_send
from ._retry import RetryPolicy, retry_after_seconds
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._chat import Chat
    from ._models import ChatCompletion, Usage
    from ._stream import ChatCompletionStream, StreamManager

__all__ = ["Client", "ClientStatistics"]

T = TypeVar("T")

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@attrs.frozen
class ClientStatistics:
    """A snapshot of a client's counters (``client.statistics()``).

    Attributes:
        requests_sent: Attempts put on the wire (a retried request counts each time).
        requests_succeeded: Requests that ended with an answer.
        requests_failed: Requests that ended with an error, after any retries.
        in_flight: Attempts on the wire now.
        waiting: Tasks waiting for a limiter token now.
        max_concurrent: The limiter's size now.
        retries: Attempts that were retries.
        rate_limited: 429 answers received.
        prompt_tokens: Sum of ``usage.prompt_tokens`` over answers.
        completion_tokens: Sum of ``usage.completion_tokens`` over answers.
        total_tokens: Sum of ``usage.total_tokens`` over answers.
        rate_limit_pace: Attempts per second the rate controller lets through now, or
            ``None`` while it does not pace (see ``docs/retries.md``).
        rate_limit_pauses: Client-wide pauses the rate controller made so far (one per
            429 judged to come from a budget this client exceeded).
        rate_limit_noise: The share of 429s the controller judged not caused by this
            client's rate (random refusals, another program on the same key).
    """

    requests_sent: int
    requests_succeeded: int
    requests_failed: int
    in_flight: int
    waiting: int
    max_concurrent: int
    retries: int
    rate_limited: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    rate_limit_pace: float | None = None
    rate_limit_pauses: int = 0
    rate_limit_noise: float = 0.0


class _Counters:
    """The live counters behind :meth:`Client.statistics` (a plain class: it is
    touched on every request, and built on import)."""

    __slots__ = (
        "completion_tokens",
        "failed",
        "in_flight",
        "prompt_tokens",
        "rate_limited",
        "retries",
        "sent",
        "succeeded",
        "total_tokens",
    )

    def __init__(self) -> None:
        self.sent = self.succeeded = self.failed = self.in_flight = 0
        self.retries = self.rate_limited = 0
        self.prompt_tokens = self.completion_tokens = self.total_tokens = 0

    def add_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            self.total_tokens += usage.total_tokens


_UNSET: Any = object()


def _encode_body(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request body is not JSON-serializable: {exc}") from None


def _check_max_concurrent(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_concurrent must be a whole number >= 1, got {value!r}")


def validate_messages(messages: object) -> None:
    """Reject what no server would accept, before anything is sent."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a chat completion needs at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(
                f"messages[{i}] must be a dict like {{'role': 'user', 'content': '...'}}, "
                f"got {type(message).__name__}"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}] has no 'role' (expected 'system', 'user', ...)")


def build_body(model: object, messages: object, params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a chat completion, checked: every other parameter passes through."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    validate_messages(messages)
    body = {"model": model, "messages": list(messages)}  # type: ignore[call-overload]
    body.update(params)
    return body


class Client:
    """An OpenAI-compatible chat-completion client for trio programs.

    ::

        async with trioclient.Client(max_concurrent=32) as client:
            async with trio.open_nursery() as nursery:
                for prompt in prompts:
                    nursery.start_soon(ask, client, prompt)

    Args:
        api_key: The key; by default ``XAI_API_KEY``, then ``OPENAI_API_KEY``. It is
            sent as a bearer token and never appears in any repr, log or error.
        base_url: The API root; by default ``TRIOCLIENT_BASE_URL``, then
            ``https://api.x.ai/v1``. Plain ``http://`` is accepted for loopback hosts
            only, unless ``allow_insecure_http=True``.
        max_concurrent: How many requests may be in progress at once (adjustable later
            through the attribute of the same name).
        limiter: A :class:`trio.CapacityLimiter` to share one budget among several
            clients; replaces ``max_concurrent``.
        timeout: A :class:`Timeout`, or a number of seconds for ``Timeout.total``.
        retry: A :class:`RetryPolicy`; ``RetryPolicy(max_retries=0)`` turns retries off.
        http_client: Your own :class:`httpx.AsyncClient` (proxies, custom TLS). It is
            used through ``send`` and is not closed by trioclient.
        transport: Your own :class:`httpx.AsyncBaseTransport` (respx, ``MockTransport``).
            Not closed by trioclient.
        default_headers: Extra headers sent with every request.
        allow_insecure_http: Allow ``http://`` to a host that is not loopback.
        max_response_bytes: Refuse a response body larger than this.

    Raises:
        ValueError: no key, a ``base_url`` that is not a URL, a bad ``max_concurrent``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        *,
        max_concurrent: int = _UNSET,
        limiter: trio.CapacityLimiter | None = None,
        timeout: Timeout | float | None = _UNSET,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        if limiter is not None and max_concurrent is not _UNSET:
            raise ValueError("pass max_concurrent or limiter, not both")
        if limiter is None:
            if max_concurrent is _UNSET:
                max_concurrent = 64
            _check_max_concurrent(max_concurrent)
            limiter = trio.CapacityLimiter(max_concurrent)
        if (
            not isinstance(max_response_bytes, int)
            or isinstance(max_response_bytes, bool)
            or max_response_bytes < 1
        ):
            raise ValueError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        self._limiter = limiter
        self.timeout = Timeout() if timeout is _UNSET else Timeout.coerce(timeout)
        self.retry = RetryPolicy() if retry is None else retry
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        self.max_response_bytes = max_response_bytes
        self._http_client = http_client
        self._transport = transport
        self._owns_transport = False
        self._sender: Sender | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        self._counters = _Counters()
        self._gate = RateLimitGate()
        self._rng = random.Random()
        merged = httpx.Headers(
            {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"trioclient/{__version__}",
            }
        )
        merged.update(default_headers or {})  # case-insensitive: one of each name
        merged["Authorization"] = f"Bearer {key}"
        self._completions_url = self.base_url.join("chat/completions")
        self._headers = httpx.Headers([(b"Host", self._completions_url.netloc), *merged.raw])
        self._raw_headers = self._headers.raw
        # Our own transport has no pool to wait for; a caller's AsyncClient does, and its
        # pool timeout must never kill a request the limiter already admitted.
        self._timeout_extension = {
            "connect": self.timeout.connect,
            "read": None,
            "write": None,
            "pool": None,
        }
        self.chat = ChatNamespace(self)

    def __repr__(self) -> str:
        return (
            f"<trioclient.Client {self.base_url} state={self._state} "
            f"max_concurrent={self.max_concurrent}>"
        )

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"this Client was already {self._state}; create a new one")
        if self._http_client is not None:
            self._sender = client_sender(self._http_client)
        else:
            if self._transport is None:
                from ._transport import TrioTransport

                self._transport = TrioTransport(connect_timeout=self.timeout.connect)
                self._owns_transport = True
            self._sender = transport_sender(self._transport)
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (and the transport it made; never one you passed in)."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._owns_transport and self._transport is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._transport.aclose()

    def _check_open(self) -> Sender:
        if self._state == "open" and self._sender is not None:
            return self._sender
        if self._state == "new":
            raise RuntimeError(
                "this Client is not open: use it inside `async with trioclient.Client(...) "
                "as client:`"
            )
        raise RuntimeError("this Client is closed: use it inside its `async with` block")

    # -- knobs and numbers ----------------------------------------------------------

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter bounding requests in progress (shared, if you passed one)."""
        return self._limiter

    @property
    def max_concurrent(self) -> int:
        """Requests in progress at most; assign to change it while requests run."""
        total = self._limiter.total_tokens
        return int(total) if total != math.inf else 2**31

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        _check_max_concurrent(value)
        self._limiter.total_tokens = value

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client's counters."""
        c = self._counters
        rate = self._gate.state()  # [rate control] the controller's state
        return ClientStatistics(
            requests_sent=c.sent,
            requests_succeeded=c.succeeded,
            requests_failed=c.failed,
            in_flight=c.in_flight,
            waiting=self._limiter.statistics().tasks_waiting,
            max_concurrent=self.max_concurrent,
            retries=c.retries,
            rate_limited=c.rate_limited,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            total_tokens=c.total_tokens,
            rate_limit_pace=rate.pace,
            rate_limit_pauses=rate.pauses,
            rate_limit_noise=rate.noise,
        )

    # -- jobs -----------------------------------------------------------------------

    def batch(self, requests: Any, **options: Any) -> Any:
        """Run many requests, yielding results as they finish (see :mod:`trioclient._batch`)::

        async with client.batch(requests, max_concurrent=50) as results:
            async for result in results:
                ...
        """
        from ._batch import open_batch

        return open_batch(self, requests, **options)

    async def run_batch(self, requests: Any, **options: Any) -> Any:
        """Run a small batch to the end and return its results in input order."""
        from ._batch import run_batch

        return await run_batch(self, requests, **options)

    # -- the request path -----------------------------------------------------------

    def build_request(
        self,
        body: Mapping[str, Any],
        extra_headers: Mapping[str, str] | None = None,
        pacer: Pacer | None = None,
    ) -> httpx.Request:
        """The HTTP request for a chat-completion body (encoded once, replayable)."""
        content = _encode_body(body)
        if extra_headers:
            merged = self._headers.copy()
            merged.update(extra_headers)
            head = merged.raw
        else:
            head = self._raw_headers
        extensions: dict[str, Any] = {"timeout": self._timeout_extension}
        if pacer is not None:
            extensions[PACER_EXTENSION] = pacer
        # The `stream=` form takes the headers as given (httpx adds none), so the
        # complete head is built here once, not re-derived per request; `read()` makes
        # the body replayable (for retries, the transport's keep-alive retry, respx).
        request = httpx.Request(
            "POST",
            self._completions_url,
            headers=[*head, (b"Content-Length", str(len(content)).encode())],
            stream=httpx.ByteStream(content),
            extensions=extensions,
        )
        request.read()
        return request

    async def _call(
        self,
        request: httpx.Request,
        attempt: Callable[[Sender, httpx.Request, Timeout], Awaitable[T]],
        timeout: Timeout,
        retry: RetryPolicy,
        hold: TokenHold,
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying as ``retry`` says.

        ``hold`` is the request's limiter token: taken before each attempt, given back
        while waiting for pace or budget; the caller releases it at the end if held.
        Only :class:`APIError` is retried: anything else, ``Cancelled`` and
        ``KeyboardInterrupt`` above all, goes straight up.
        """
        sender = self._check_open()
        counters = self._counters
        gate = self._gate
        retries = 0
        pacer = request.extensions.get(PACER_EXTENSION)
        while True:
            # [rate control] Gate, budgets, then a token; no token held while waiting.
            if pacer is not None or not hold.held or not gate.is_open():
                await wait_to_send(gate, pacer, request, hold)
            counters.sent += 1
            counters.in_flight += 1
            sent_at = trio.current_time()
            number = gate.on_sent()  # [rate control] orders the answers
            try:
                result = await attempt(sender, request, timeout)
            except APIError as exc:
                error = exc
            else:
                gate.on_answer(sent_at, number=number)  # [rate control] every answer counts
                return result
            finally:
                counters.in_flight -= 1
            retryable = retry.is_retryable(error)
            delay = retry.delay(retries, error, self._rng) if retryable else 0.0
            if isinstance(error, RateLimitError):
                counters.rate_limited += 1
                if retryable:
                    # [rate control] Even when this request gives up, the controller
                    # hears of it. Without a server wait, a client-wide pause lasts the
                    # backoff ceiling, not the jittered sample (which may be near zero).
                    if retry_after_seconds(error.headers) is None:
                        gate.on_answer(sent_at, True, backoff_ceiling(retry, retries), number)
                    else:
                        gate.on_answer(sent_at, True, delay, number)
            elif isinstance(error, APIStatusError):
                gate.on_answer(sent_at, number=number)  # [rate control] not a refusal
            if retries >= retry.max_retries or not retryable:
                counters.failed += 1
                raise error
            # The gate may hold the retry longer than its own wait (a pause, or a place
            # in the paced line): the deadline check counts that too.
            resume_at = max(trio.current_time() + delay, gate.earliest_pass())
            if resume_at >= trio.current_effective_deadline():
                counters.failed += 1
                error.add_note(
                    f"not retried: the next attempt would start after the caller's "
                    f"deadline (wait {resume_at - trio.current_time():.3g} s)"
                )
                raise error
            retries += 1
            counters.retries += 1
            # [rate control] Sleep only this request's own wait (with its token); the
            # gate's part of resume_at is waited in wait_to_send, without the token.
            await trio.sleep(delay)

    async def _complete(
        self,
        body: Mapping[str, Any],
        timeout: Timeout,
        retry: RetryPolicy,
        extra_headers: Mapping[str, str] | None = None,
        pacer: Pacer | None = None,
    ) -> ChatCompletion:
        request = self.build_request(body, extra_headers, pacer)
        # [rate control] The token is taken in _call after any pace or budget wait, and
        # may be given back while waiting again; released here only if held.
        hold = TokenHold(self._limiter, trio.lowlevel.current_task())
        try:
            completion = await self._call(request, self._complete_once, timeout, retry, hold)
        finally:
            hold.give_back()
        self._counters.succeeded += 1
        self._counters.add_usage(completion.usage)
        return completion

    async def _complete_once(
        self, sender: Sender, request: httpx.Request, timeout: Timeout
    ) -> ChatCompletion:
        # One cancel scope for the whole attempt: its deadline is the nearer of the
        # total and first-byte deadlines until the headers arrive, then the nearer of
        # the total and idle deadlines, renewed at each read of the body.
        start = trio.current_time()
        total_at = math.inf if timeout.total is None else start + timeout.total
        first_byte_at = math.inf if timeout.first_byte is None else start + timeout.first_byte
        response: httpx.Response | None = None
        with trio.CancelScope(deadline=min(total_at, first_byte_at)) as scope:
            response = await send(sender, request)
            body = await read_body(response, timeout, self.max_response_bytes, scope, total_at)
        if scope.cancelled_caught:
            if trio.current_time() >= total_at:
                message = (
                    f"no complete answer from {request.url} within {timeout.total:g} s "
                    "(Timeout.total)"
                )
            elif response is None:
                message = (
                    f"no response from {request.method} {request.url} within "
                    f"{timeout.first_byte:g} s (Timeout.first_byte)"
                )
            else:
                message = (
                    f"response body from {request.url} stalled for {timeout.idle:g} s "
                    "(Timeout.idle)"
                )
            raise APITimeoutError(message, request=request)
        assert response is not None
        raise_for_status(response, body)
        from ._models import ChatCompletion  # loaded with the first answer, not on import

        data = parse_json(response, body)
        try:
            if type(data) is dict and "error" in data and "choices" not in data:
                # Some servers and proxies report a failure inside a 200; say what it was.
                raise APIResponseValidationError(
                    f"invalid response: a 200 carrying an error: {error_detail(data) or data['error']!r}"
                )
            return ChatCompletion.from_dict(data)
        except APIResponseValidationError as error:
            error.request = request
            raise


class ChatNamespace:
    """``client.chat``: ``completions`` (OpenAI style) and ``create`` (xAI style)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.completions = Completions(client)

    def create(self, model: str, **params: Any) -> Chat:
        """Start an xAI-SDK-style conversation: ``append`` messages, then ``sample()``."""
        from ._chat import Chat

        return Chat(self._client, model, params)


class Completions:
    """``client.chat.completions``: the OpenAI-style entry point."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        timeout: Timeout | float | None = ...,
        retry: RetryPolicy | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[True],
        timeout: Timeout | float | None = ...,
        retry: RetryPolicy | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        **params: Any,
    ) -> ChatCompletionStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        timeout: Timeout | float | None = _UNSET,
        retry: RetryPolicy | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatCompletion | ChatCompletionStream:
        """Create a chat completion.

        Every OpenAI chat parameter (``max_tokens``, ``temperature``, ``tools``,
        ``response_format``, ``n``, ``seed``...) passes through to the server untouched.

        Args:
            model: The model name.
            messages: The conversation, as dicts with a ``role``.
            stream: ``True`` returns a :class:`ChatCompletionStream`; use it with
                ``async with``.
            timeout: This call's :class:`Timeout` (default: the client's).
            retry: This call's :class:`RetryPolicy` (default: the client's).
            extra_headers: Headers for this call only.

        Raises:
            APIStatusError: the server refused (after retries, where retryable).
            APIConnectionError: no answer could be had (after retries).
            APIResponseValidationError: the answer was not a chat completion.
            ValueError, TypeError: bad arguments, before anything is sent.
        """
        client = self._client
        client._check_open()
        body = build_body(model, messages, params)
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        if stream:
            body["stream"] = True
        the_timeout = client.timeout if timeout is _UNSET else Timeout.coerce(timeout)
        the_retry = client.retry if retry is None else retry
        if stream:
            from ._stream import open_stream

            return await open_stream(client, body, the_timeout, the_retry, extra_headers)
        return await client._complete(body, the_timeout, the_retry, extra_headers)

    def stream(
        self, *, model: str, messages: Iterable[Mapping[str, Any]], **params: Any
    ) -> StreamManager:
        """The ``async with`` form of ``create(..., stream=True)``::

        async with client.chat.completions.stream(model=m, messages=msgs) as stream:
            async for chunk in stream:
                ...
        """
        from ._stream import StreamManager

        return StreamManager(self._client, {"model": model, "messages": messages, **params})
