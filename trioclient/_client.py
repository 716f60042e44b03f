"""The client: one object per endpoint, opened with ``async with``.

:class:`Client` is the public face: its lifecycle, its knobs, its statistics and the
namespaces (``client.chat.completions``). The request path behind it, one retry loop
shared by every kind of call, is :class:`~trioclient._requester.Requester`; read that
module for a request's life step by step.

The client starts no background task, so it needs no nursery of its own: every request
runs in the task that awaits it, and a caller's cancel scope around any call just works.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

import attrs
import httpx
import trio

from ._attempt import client_sender, parse_chat_completion, transport_sender
from ._body import build_body
from ._config import (
    DEFAULT_KEEPALIVE_EXPIRY,
    Timeout,
    check_keepalive_expiry,
    resolve_api_key,
    resolve_base_url,
)
from ._options import UNSET, CallOptions, check_mapping, retry_policy
from ._requester import Connection, Requester
from ._retry import RetryPolicy
from ._stream_token import StreamManager
from ._version import __version__

if TYPE_CHECKING:
    from ._batch import BatchResults
    from ._batch_results import BatchResult
    from ._chat import Chat
    from ._embeddings import Embeddings
    from ._models import ChatCompletion
    from ._responses import Responses
    from ._shared_budget import RedisBudget
    from ._stream import ChatCompletionStream

__all__ = ["Client", "ClientStatistics", "RawResponse"]

T = TypeVar("T")

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@attrs.frozen
class ClientStatistics:
    """A snapshot of a client's counters (``client.statistics()``).

    A client and its :meth:`Client.with_options` copies share one set of counters.

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
        header_pace: Requests a second the server's ``x-ratelimit-*`` headers allow
            this client's plain calls now: the budget's refill times
            :attr:`header_share`. ``None`` until an answer has described a requests
            budget, and always with ``follow_rate_limit_headers=False``.
        header_share: The share of the server's budget this client measured as its
            own (1.0 alone on its key; about 0.5 beside one other client as busy), or
            ``None`` as for :attr:`header_pace`.
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
    header_pace: float | None = None
    header_share: float | None = None


@attrs.frozen
class RawResponse(Generic[T]):
    """An answer together with the HTTP response it came in
    (``client.chat.completions.with_raw_response.create(...)``), as in the openai SDK.

    Attributes:
        http_response: The :class:`httpx.Response`: status and headers (its body was
            consumed into the answer: use :meth:`parse`).
    """

    http_response: httpx.Response
    _parsed: T = attrs.field(alias="parsed", repr=False)

    @property
    def headers(self) -> httpx.Headers:
        """The response headers (``x-ratelimit-*`` among them)."""
        return self.http_response.headers

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id``, to quote when you report a problem."""
        request_id: str | None = self.http_response.headers.get("x-request-id")
        return request_id

    def parse(self) -> T:
        """The typed answer."""
        return self._parsed


#: Options a :meth:`Client.with_options` copy may change; the rest is shared.
_COPY_OPTIONS = frozenset(
    {
        "api_key",
        "base_url",
        "timeout",
        "retry",
        "max_retries",
        "default_headers",
        "default_query",
        "organization",
        "project",
        "allow_insecure_http",
        "max_response_bytes",
    }
)


def request_path(client: Client) -> Requester:
    """The client's :class:`~trioclient._requester.Requester`: the internal interface
    for trioclient's own layers above the client that need more than its public methods
    (the remote batch runner's file uploads). Not public API."""
    return client._requester


def _check_max_concurrent(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_concurrent must be a whole number >= 1, got {value!r}")


def _usage(completion: ChatCompletion) -> Any:
    return completion.usage


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
            ``https://api.x.ai/v1``. Plain ``http://`` is accepted for any host (a
            self-hosted server) except the public providers' API hosts, where the key
            must travel over https (see docs/network.md).
        max_concurrent: How many requests may be in progress at once (adjustable later
            through the attribute of the same name).
        limiter: A :class:`trio.CapacityLimiter` to share one budget among several
            clients; replaces ``max_concurrent``.
        timeout: A :class:`Timeout`; or, as in the openai SDK, a number of seconds that
            bounds each wait (connecting, the first byte, every gap between bytes) but
            not the whole answer, so a long stream that keeps sending is never cut.
        retry: A :class:`RetryPolicy`; ``RetryPolicy(max_retries=0)`` turns retries off.
        max_retries: The openai SDK's shorthand: the default policy with this many
            retries (pass this or ``retry``).
        http_client: Your own :class:`httpx.AsyncClient` (custom TLS, hooks). It is
            used through ``send`` and is not closed by trioclient.
        transport: Your own :class:`httpx.AsyncBaseTransport` (respx, ``MockTransport``).
            Not closed by trioclient.
        default_headers: Extra headers sent with every request.
        default_query: Query parameters added to every URL (Azure's ``api-version``).
        organization: Sent as ``OpenAI-Organization`` (default ``OPENAI_ORG_ID``).
        project: Sent as ``OpenAI-Project`` (default ``OPENAI_PROJECT_ID``).
        allow_insecure_http: Allow ``http://`` even to a public provider's API host.
        proxy: A proxy URL (``http://[user:password@]host:port``) for every request of
            trioclient's own transport; https goes through it with ``CONNECT``.
        trust_env: Honour ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
            ``NO_PROXY`` (the default, as httpx does); ``False`` ignores them.
        keepalive_expiry: Seconds an idle connection may wait to be reused before it
            is closed instead (``None``: no limit).
        max_response_bytes: Refuse a response body larger than this.
        budget: A :class:`RedisBudget` every attempt waits for, shared with the other
            processes on its key; the client closes it when it closes.
        follow_rate_limit_headers: Pace every call by the server's budgets, as its
            ``x-ratelimit-*`` headers describe them (the default): once an answer has
            described one, an attempt that would overspend it waits (holding no
            ``max_concurrent`` slot) instead of earning a 429. A batch paces its own
            requests (its option of the same name). ``False`` ignores the headers.

    Raises:
        ValueError: no key, a ``base_url`` that is not a URL, a bad ``max_concurrent``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        *,
        max_concurrent: int = UNSET,
        limiter: trio.CapacityLimiter | None = None,
        timeout: Timeout | float | None = UNSET,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, Any] | None = None,
        organization: str | None = None,
        project: str | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
        budget: RedisBudget | None = None,
        follow_rate_limit_headers: bool = True,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        # Settings of the transport __aenter__ builds, checked here so that a bad proxy
        # URL (given or from the environment) fails at construction.
        if proxy is not None and (http_client is not None or transport is not None):
            raise ValueError(
                "proxy= configures trioclient's own transport: set the proxy on your "
                "http_client or transport instead"
            )
        # What only a client's construction needs loads with the first client, not
        # with `import trioclient`: proxy routing, the header budget, the models list.
        from ._header_budget import HeaderBudget
        from ._model_list import Models
        from ._proxy import resolve_proxy_routes

        if http_client is None and transport is None:
            resolve_proxy_routes(proxy, trust_env=trust_env)
        check_keepalive_expiry(keepalive_expiry)
        self._transport_options: dict[str, Any] = {
            "proxy": proxy,
            "trust_env": trust_env,
            "keepalive_expiry": keepalive_expiry,
        }
        if limiter is not None and max_concurrent is not UNSET:
            raise ValueError("pass max_concurrent or limiter, not both")
        if limiter is None:
            if max_concurrent is UNSET:
                max_concurrent = 64
            _check_max_concurrent(max_concurrent)
            limiter = trio.CapacityLimiter(max_concurrent)
        self._http_client = http_client
        self._transport = transport
        self._owns_transport = False
        self._owns_connection = True
        self._options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": Timeout() if timeout is UNSET else Timeout.coerce(timeout),
            "retry": retry_policy(retry, max_retries, RetryPolicy()),
            "default_headers": default_headers,
            "default_query": default_query,
            "organization": organization,
            "project": project,
            "allow_insecure_http": allow_insecure_http,
            "max_response_bytes": max_response_bytes,
        }
        if budget is not None and not callable(getattr(budget, "pacer", None)):
            raise TypeError(f"budget must be a trioclient.RedisBudget, got {type(budget).__name__}")
        if not isinstance(follow_rate_limit_headers, bool):
            raise TypeError(
                "follow_rate_limit_headers must be True or False, got "
                f"{follow_rate_limit_headers!r}"
            )
        header_budget = HeaderBudget() if follow_rate_limit_headers else None
        self._requester = self._make_requester(
            Connection(limiter, budget, header_budget), self._options
        )
        self.chat = ChatNamespace(self)
        self.models = Models(self._requester)

    @staticmethod
    def _make_requester(connection: Connection, options: dict[str, Any]) -> Requester:
        key = resolve_api_key(options["api_key"])
        base_url = resolve_base_url(
            options["base_url"], allow_insecure_http=options["allow_insecure_http"]
        )
        max_response_bytes = options["max_response_bytes"]
        if (
            not isinstance(max_response_bytes, int)
            or isinstance(max_response_bytes, bool)
            or max_response_bytes < 1
        ):
            raise ValueError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        check_mapping("default_headers", options["default_headers"])
        check_mapping("default_query", options["default_query"])
        headers = httpx.Headers(
            {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"trioclient/{__version__}",
            }
        )
        for header, option, variable in (
            ("OpenAI-Organization", "organization", "OPENAI_ORG_ID"),
            ("OpenAI-Project", "project", "OPENAI_PROJECT_ID"),
        ):
            value = options[option]
            if value is None:
                value = os.environ.get(variable) or None
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"{option} must be a string, got {type(value).__name__}")
                headers[header] = value
        headers.update(options["default_headers"] or {})  # case-insensitive: one of each
        headers["Authorization"] = f"Bearer {key}"
        return Requester(
            connection,
            base_url=base_url,
            headers=headers,
            default_query=options["default_query"],
            timeout=options["timeout"],
            retry=options["retry"],
            max_response_bytes=max_response_bytes,
        )

    def with_options(self, **changes: Any) -> Client:
        """A copy of this client with other options, sharing its connections, limiter,
        429 gate and counters (as the openai SDK's ``with_options``)::

            quick = client.with_options(timeout=5, max_retries=0)

        The copy is open while this client is; closing it closes nothing. It takes
        ``api_key``, ``base_url``, ``timeout``, ``retry`` or ``max_retries``,
        ``default_headers``, ``default_query``, ``organization``, ``project``,
        ``allow_insecure_http`` and ``max_response_bytes``; ``default_headers`` and
        ``default_query`` are merged into this client's.
        """
        unknown = sorted(set(changes) - _COPY_OPTIONS)
        if unknown:
            raise TypeError(
                f"with_options() cannot change {', '.join(unknown)}: a copy shares its "
                f"client's connections and limiter (it can change: {', '.join(sorted(_COPY_OPTIONS))})"
            )
        options = dict(self._options)
        if "timeout" in changes:
            options["timeout"] = Timeout.coerce(changes.pop("timeout"))
        if "retry" in changes or "max_retries" in changes:
            options["retry"] = retry_policy(
                changes.pop("retry", None), changes.pop("max_retries", None), options["retry"]
            )
        for merged in ("default_headers", "default_query"):
            if merged in changes:
                check_mapping(merged, changes[merged])
                options[merged] = {**(options[merged] or {}), **(changes.pop(merged) or {})}
        options.update(changes)
        copy = object.__new__(Client)
        copy._http_client = self._http_client
        copy._transport = self._transport
        copy._owns_transport = False
        copy._owns_connection = False
        copy._options = options
        copy._requester = self._make_requester(self._requester.connection, options)
        copy.chat = ChatNamespace(copy)
        from ._model_list import Models  # (loaded by the first client already)

        copy.models = Models(copy._requester)
        return copy

    # The other endpoints' namespaces are made on first use (their modules load then),
    # from this client's requester, so a with_options copy gets its own.

    @functools.cached_property
    def embeddings(self) -> Embeddings:
        """``client.embeddings``: ``create(model=..., input=...)`` (see :mod:`trioclient._embeddings`)."""
        from ._embeddings import Embeddings

        return Embeddings(self._requester)

    @functools.cached_property
    def responses(self) -> Responses:
        """``client.responses``: the Responses API, ``create(model=..., input=...)``,
        whole or streamed (see :mod:`trioclient._responses`)."""
        from ._responses import Responses

        return Responses(self._requester)

    @property
    def base_url(self) -> httpx.URL:
        """The API root, ending in ``/``."""
        return self._requester.base_url

    @property
    def timeout(self) -> Timeout:
        """The :class:`Timeout` of a call that names none."""
        return self._requester.timeout

    @property
    def retry(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of a call that names none."""
        return self._requester.retry

    @property
    def max_response_bytes(self) -> int:
        """The largest response body (or stream) accepted."""
        return self._requester.max_response_bytes

    def __repr__(self) -> str:
        return (
            f"<trioclient.Client {self.base_url} state={self._requester.connection.state} "
            f"max_concurrent={self.max_concurrent}>"
        )

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        connection = self._requester.connection
        if not self._owns_connection:
            connection.check_open()  # a copy is used within its client's block
            return self
        if connection.state != "new":
            raise RuntimeError(f"this Client was already {connection.state}; create a new one")
        if self._http_client is not None:
            connection.sender = client_sender(self._http_client)
        else:
            if self._transport is None:
                from ._transport import TrioTransport

                self._transport = TrioTransport(
                    connect_timeout=self.timeout.connect, **self._transport_options
                )
                self._owns_transport = True
            connection.sender = transport_sender(self._transport)
        connection.state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and the transport it made (never one you passed in).

        Requests still running when it closes fail as their connections close; close
        the client after the work that uses it (the ``async with`` form does). On a
        :meth:`with_options` copy this does nothing: the copy's client owns the
        connections.
        """
        connection = self._requester.connection
        if not self._owns_connection or connection.state == "closed":
            return
        connection.state = "closed"
        if self._owns_transport and self._transport is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._transport.aclose()
        budget = connection.budget
        if budget is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await budget.aclose()

    # -- knobs and numbers ----------------------------------------------------------

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter bounding requests in progress (shared, if you passed one)."""
        return self._requester.connection.limiter

    @property
    def max_concurrent(self) -> int:
        """Requests in progress at most; assign to change it while requests run."""
        total = self.limiter.total_tokens
        return int(total) if total != math.inf else 2**31

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        _check_max_concurrent(value)
        self.limiter.total_tokens = value

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client's counters."""
        connection = self._requester.connection
        c = connection.counters
        rate = connection.gate.state()  # the rate controller's state
        header_budget = connection.header_budget
        header_pace, header_share = (
            (None, None) if header_budget is None else header_budget.state()
        )
        return ClientStatistics(
            requests_sent=c.sent,
            requests_succeeded=c.succeeded,
            requests_failed=c.failed,
            in_flight=c.in_flight,
            waiting=connection.limiter.statistics().tasks_waiting,
            max_concurrent=self.max_concurrent,
            retries=c.retries,
            rate_limited=c.rate_limited,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            total_tokens=c.total_tokens,
            rate_limit_pace=rate.pace,
            rate_limit_pauses=rate.pauses,
            rate_limit_noise=rate.noise,
            header_pace=header_pace,
            header_share=header_share,
        )

    def build_request(
        self, body: Mapping[str, Any], extra_headers: Mapping[str, str] | None = None
    ) -> httpx.Request:
        """The HTTP request this client would send for a chat-completion ``body`` (for
        inspection and tests: headers, URL, the encoded body)."""
        return self._requester.build_request("chat/completions", body, extra_headers=extra_headers)

    # -- jobs -----------------------------------------------------------------------

    def batch(self, requests: Any, **options: Any) -> contextlib.AbstractAsyncContextManager[BatchResults]:
        """Run many requests, yielding results as they finish (see :func:`open_batch`)::

        async with client.batch(requests, max_concurrent=50) as results:
            async for result in results:
                ...
        """
        from ._batch import open_batch

        return open_batch(self._requester, requests, **options)

    async def run_batch(self, requests: Any, **options: Any) -> list[BatchResult]:
        """Run a small batch to the end and return its results in input order."""
        from ._batch import run_batch

        return await run_batch(self._requester, requests, **options)


class ChatNamespace:
    """``client.chat``: ``completions`` (OpenAI style) and ``create`` (xAI style)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.completions = Completions(client._requester)

    def create(self, model: str, **params: Any) -> Chat:
        """Start an xAI-SDK-style conversation: ``append`` messages, then ``sample()``."""
        from ._chat import Chat

        return Chat(self.completions, model, params)


def _chat_body(
    model: object,
    messages: object,
    stream: object,
    extra_body: Mapping[str, Any] | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    body = build_body(model, messages, params)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be True or False, got {stream!r}")
    if stream:
        body["stream"] = True
    if extra_body is not None:
        check_mapping("extra_body", extra_body)
        body.update(extra_body)  # merged into the top level, as the openai SDK does
    return body


class Completions:
    """``client.chat.completions``: the OpenAI-style entry point.

    Besides the chat parameters, every call takes the openai SDK's request options:
    ``timeout``, ``max_retries`` (or trioclient's ``retry``), ``extra_headers``,
    ``extra_query`` (added to the URL) and ``extra_body`` (merged into the top level of
    the JSON body: vLLM's ``top_k``, ``guided_json``, ``chat_template_kwargs``...).
    """

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        self.with_raw_response = _RawCompletions(requester)

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: Literal[False] = False,
        timeout: Timeout | float | None = ...,
        retry: RetryPolicy | None = ...,
        max_retries: int | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        extra_query: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
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
        max_retries: int | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        extra_query: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        **params: Any,
    ) -> ChatCompletionStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        stream: bool = False,
        timeout: Timeout | float | None = UNSET,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion | ChatCompletionStream:
        """Create a chat completion.

        Every OpenAI chat parameter (``max_tokens``, ``temperature``, ``tools``,
        ``response_format``, ``n``, ``seed``...) passes through to the server untouched.

        Args:
            model: The model name.
            messages: The conversation, as dicts with a ``role`` (a message an earlier
                answer returned may be appended as it is).
            stream: ``True`` returns a :class:`ChatCompletionStream`; use it with
                ``async with``.
            timeout: This call's :class:`Timeout` or seconds (default: the client's).
            retry: This call's :class:`RetryPolicy` (default: the client's).
            max_retries: This call's retries, the client's policy otherwise.
            extra_headers: Headers for this call only.
            extra_query: Query parameters for this call only.
            extra_body: Keys merged into the top level of the JSON body.

        Raises:
            APIStatusError: the server refused (after retries, where retryable).
            APIConnectionError: no answer could be had (after retries).
            APIResponseValidationError: the answer was not a chat completion.
            ValueError, TypeError: bad arguments, before anything is sent.
        """
        requester = self._requester
        requester.check_open()
        body = _chat_body(model, messages, stream, extra_body, params)
        call = CallOptions(requester, timeout, retry, max_retries, extra_headers, extra_query)
        if stream:
            from ._stream import open_stream

            return await open_stream(
                requester, body, call.timeout, call.retry, call.extra_headers, call.extra_query
            )
        request = requester.build_request(
            "chat/completions",
            body,
            extra_headers=call.extra_headers,
            extra_query=call.extra_query,
        )
        return await requester.request_json(
            request, parse_chat_completion, call.timeout, call.retry, _usage
        )

    def stream(
        self, *, model: str, messages: Iterable[Mapping[str, Any]], **params: Any
    ) -> StreamManager[ChatCompletionStream]:
        """The ``async with`` form of ``create(..., stream=True)``::

        async with client.chat.completions.stream(model=m, messages=msgs) as stream:
            async for chunk in stream:
                ...
        """
        return StreamManager(
            lambda: self.create(model=model, messages=messages, stream=True, **params)
        )


class _RawCompletions:
    """``client.chat.completions.with_raw_response``: the same call, answered with a
    :class:`RawResponse` (headers, status, request id) around the completion."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        timeout: Timeout | float | None = UNSET,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> RawResponse[ChatCompletion]:
        """Like ``chat.completions.create`` (non-streaming; a stream has ``.response``)."""
        requester = self._requester
        requester.check_open()
        if params.get("stream"):
            raise ValueError(
                "with_raw_response does not stream: a stream's HTTP response is its "
                "`.response` attribute"
            )
        params.pop("stream", None)
        body = _chat_body(model, messages, False, extra_body, params)
        call = CallOptions(requester, timeout, retry, max_retries, extra_headers, extra_query)
        request = requester.build_request(
            "chat/completions", body, extra_headers=call.extra_headers, extra_query=call.extra_query
        )

        def parse(response: httpx.Response, data: Any) -> RawResponse[ChatCompletion]:
            return RawResponse(response, parse_chat_completion(response, data))

        def usage(raw: RawResponse[ChatCompletion]) -> Any:
            return raw.parse().usage

        return await requester.request_json(request, parse, call.timeout, call.retry, usage)
