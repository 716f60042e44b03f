"""The request path every call shares: one retry loop, one limiter, one 429 gate.

:class:`Requester` is the small internal interface between the public face (the
:class:`~trioclient.Client` and its namespaces) and the parts that make requests: the
non-streaming path, streams, and the batch engine. None of them reaches into another's
private attributes; each asks the requester.

A client and its :meth:`~trioclient.Client.with_options` copies each have a requester
of their own (their own base URL, headers, query, timeout and retry policy) around one
shared :class:`Connection`: the transport, the limiter, the 429 gate and the counters.
So the copies share connections and the concurrency budget, and one 429 pauses them all.

A request's life, in order:

1. the body is checked and encoded once (:mod:`trioclient._body`), before anything is
   sent;
2. a token from the limiter (``max_concurrent``), held for the whole request, its
   retries and their waits included, so a retry never needs a new slot nor jumps the
   queue;
3. the 429 gate (:mod:`trioclient._gate`), and the request's pacer if a batch gave it
   one, else the server's budgets as its ``x-ratelimit-*`` headers describe them
   (:mod:`trioclient._header_budget`), once an answer has;
4. one attempt (:mod:`trioclient._attempt`) under its own deadlines;
5. on a retryable error, a sleep as the :class:`~trioclient.RetryPolicy` says (a 429
   closes the gate for everyone instead), unless the next attempt would start after the
   caller's deadline: then the last error is raised at once.

Nothing here starts a task: every request runs in the task that awaits it, so a
caller's cancel scope around any call just works.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
import trio

from ._attempt import Sender, complete_once
from ._body import encode_body
from ._config import Timeout
from ._exceptions import APIError, APIStatusError, RateLimitError
from ._gate import RateLimitGate, TokenHold, backoff_ceiling, wait_to_send
from ._pacer import HEADER_BUDGET_EXTENSION, PACER_EXTENSION, Pacer
from ._retry import RetryPolicy, retry_after_seconds

if TYPE_CHECKING:
    from ._header_budget import HeaderBudget
    from ._models import Usage
    from ._shared_budget import RedisBudget

__all__ = ["Connection", "Counters", "Requester"]

T = TypeVar("T")

#: An attempt: given the sender, the request and the timeout, one try at an answer.
Attempt = Callable[[Sender, httpx.Request, Timeout], Awaitable[T]]


class Counters:
    """The live counters behind ``client.statistics()`` (a plain class: it is touched
    on every request)."""

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

    def succeed(self, usage: Usage | None) -> None:
        """A request ended with an answer (its usage, if any, is added up)."""
        self.succeeded += 1
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            self.total_tokens += usage.total_tokens


class Connection:
    """What a client and its ``with_options`` copies share: the sender (transport), the
    limiter, the 429 gate, the counters, a shared (Redis) budget if any, the server's
    budgets as its headers describe them (unless the client ignores them), and whether
    it is open."""

    __slots__ = (
        "budget",
        "counters",
        "gate",
        "header_budget",
        "limiter",
        "rng",
        "sender",
        "state",
    )

    def __init__(
        self,
        limiter: trio.CapacityLimiter,
        budget: RedisBudget | None = None,
        header_budget: HeaderBudget | None = None,
    ) -> None:
        self.limiter = limiter
        self.budget = budget
        self.header_budget = header_budget
        self.gate = RateLimitGate()
        self.counters = Counters()
        self.rng = random.Random()
        self.sender: Sender | None = None
        self.state: Literal["new", "open", "closed"] = "new"

    def check_open(self) -> Sender:
        """The sender, or a clear error saying how to open (or why not to use) the client."""
        sender = self.sender
        if self.state == "open" and sender is not None:
            return sender
        if self.state == "new":
            raise RuntimeError(
                "this Client is not open: use it inside `async with trioclient.Client(...) "
                "as client:`"
            )
        raise RuntimeError("this Client is closed: use it inside its `async with` block")


class Requester:
    """One client's way of making requests (see the module docstring).

    Attributes:
        base_url: The API root, ending in ``/``.
        timeout: The default :class:`Timeout` of a call.
        retry: The default :class:`RetryPolicy` of a call.
        max_response_bytes: The largest body (or stream) accepted.
        connection: The shared :class:`Connection`.
    """

    __slots__ = (
        "_chat_url",
        "_head",
        "_head_unframed",
        "_timeout_extension",
        "_urls",
        "base_url",
        "connection",
        "default_query",
        "max_response_bytes",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        connection: Connection,
        *,
        base_url: httpx.URL,
        headers: httpx.Headers,
        default_query: Mapping[str, Any] | None,
        timeout: Timeout,
        retry: RetryPolicy,
        max_response_bytes: int,
    ) -> None:
        self.connection = connection
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry
        self.max_response_bytes = max_response_bytes
        self.default_query = dict(default_query or {})
        self._chat_url = self.url("chat/completions")
        self._urls: dict[str, httpx.URL] = {"chat/completions": self._chat_url}
        # Normalised once: a request built from an httpx.Headers copies its list
        # instead of checking and lower-casing every header again.
        self._head = httpx.Headers([(b"Host", self._chat_url.netloc), *headers.raw])
        #: No Content-Length in the head already (default headers may hold anything).
        self._head_unframed = "content-length" not in self._head
        # Our own transport has no pool to wait for; a caller's AsyncClient does, and its
        # pool timeout must never kill a request the limiter already admitted.
        self._timeout_extension = {
            "connect": timeout.connect,
            "read": None,
            "write": None,
            "pool": None,
        }

    @property
    def counters(self) -> Counters:
        return self.connection.counters

    @property
    def limiter(self) -> trio.CapacityLimiter:
        return self.connection.limiter

    def check_open(self) -> Sender:
        return self.connection.check_open()

    def url(self, path: str, extra_query: Mapping[str, Any] | None = None) -> httpx.URL:
        """``base_url`` joined with ``path``, with the default and the extra query."""
        url = self.base_url.join(path)
        if self.default_query or extra_query:
            url = url.copy_merge_params({**self.default_query, **(extra_query or {})})
        return url

    # -- building ---------------------------------------------------------------------

    def build_request(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        pacer: Pacer | None = None,
    ) -> httpx.Request:
        """The HTTP request for ``path`` (relative to ``base_url``), its JSON body encoded
        once and kept, so every retry sends the same bytes."""
        if extra_query:
            url = self.url(path, extra_query)
        else:
            # Joined once per path and client (a join parses two URLs):
            # every endpoint's hot path, not only chat's. Bounded: ids in paths vary.
            cached = self._urls.get(path)
            if cached is None:
                cached = self.url(path)
                if len(self._urls) < 64:
                    self._urls[path] = cached
            url = cached
        head = self._head
        if extra_headers:
            head = httpx.Headers(head)
            head.update(extra_headers)  # case-insensitive: a header given twice is replaced
        extensions: dict[str, Any] = {"timeout": self._timeout_extension}
        budget = self.connection.budget
        if budget is not None and body is not None:
            pacer = budget.pacer(body, pacer)  # wraps a batch's own pacer, if any
        if pacer is not None:
            extensions[PACER_EXTENSION] = pacer
        elif self.connection.header_budget is not None:
            # No pacer of its own: the client's reading of the server's headers paces it.
            self.connection.header_budget.tag(extensions, path, body)
        # The `stream=` form takes the headers as given (httpx adds none), so the
        # complete head is built here once, not re-derived per request. The body is
        # kept as the request's content, replayable (for retries and respx): what
        # `Request.read()` would store after iterating the stream to join its one
        # piece (private, pinned by tests/test_transport_heads.py).
        if body is None:
            request = httpx.Request(method, url, headers=head, extensions=extensions)
        else:
            content = encode_body(body)
            request = httpx.Request(
                method, url, headers=head, stream=httpx.ByteStream(content), extensions=extensions
            )
            request._content = content
            # Last in the head, where the transport looks for it.
            if head is self._head and self._head_unframed:
                # Added straight to httpx's (raw, lower-case, value) list: the setter
                # would look for an earlier Content-Length and encode the value again.
                length = b"%d" % len(content)
                request.headers._list.append((b"Content-Length", b"content-length", length))
            else:
                request.headers["Content-Length"] = str(len(content))
        return request

    # -- running ----------------------------------------------------------------------

    def token_hold(self, borrower: object | None = None) -> TokenHold:
        """The limiter token of one request, not yet taken: :meth:`call` takes it after
        any wait for pace or budget, and gives it back while waiting again. The caller
        releases it at the end (``hold.give_back()`` in ``finally``).

        Args:
            borrower: Whom the token is held for: by default the current task; a
                stream that outlives the call that opened it passes its own borrower.
        """
        if borrower is None:
            borrower = trio.lowlevel.current_task()
        return TokenHold(self.connection.limiter, borrower)

    async def call(
        self,
        request: httpx.Request,
        attempt: Attempt[T],
        timeout: Timeout,
        retry: RetryPolicy,
        hold: TokenHold,
        retryable: Callable[[Exception], bool] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying as ``retry`` says: **the** retry
        loop, for every kind of request.

        ``hold`` is the request's limiter token (:meth:`token_hold`): taken before each
        attempt, after the waits for the 429 gate and the pacer's budgets, and given
        back while waiting for them, so a paced request never holds a slot another
        request could use. It is kept through a retry's own backoff sleep.
        Only :class:`APIError` is retried (and only
        what ``retryable``, by default ``retry.is_retryable``, accepts): anything else,
        ``Cancelled`` and ``KeyboardInterrupt`` above all, goes straight up. A request
        that ends in an error is counted as failed here; a success is the caller's to
        count, since only it knows when the answer is whole.
        """
        connection = self.connection
        sender = connection.check_open()
        counters = connection.counters
        gate = connection.gate
        is_retryable = retry.is_retryable if retryable is None else retryable
        retries = 0
        pacer = request.extensions.get(PACER_EXTENSION)
        header_budget: HeaderBudget | None = None
        if pacer is None:
            header_budget = request.extensions.get(HEADER_BUDGET_EXTENSION)
        while True:
            # The gate, the budgets, then a token: no token is held while waiting. A
            # plain call waits for the server's budget once its headers described one.
            paced = pacer
            if header_budget is not None and header_budget.known:
                paced = header_budget
            if paced is not None or not hold.held or not gate.is_open():
                await wait_to_send(gate, paced, request, hold)
                if paced is None and header_budget is not None and header_budget.known:
                    continue  # an answer described the budget while we waited
            if header_budget is not None and paced is None:
                header_budget.on_sent(request)  # (a paced one is counted in still_clear)
            counters.sent += 1
            counters.in_flight += 1
            sent_at = trio.current_time()
            number = gate.on_sent()  # orders the answers (many share a timestamp)
            try:
                result = await attempt(sender, request, timeout)
            except APIError as exc:
                error = exc
            else:
                gate.on_answer(sent_at, number=number)  # every answer feeds the controller
                return result
            finally:
                counters.in_flight -= 1
                after_attempt = getattr(pacer or header_budget, "after_attempt", None)
                if after_attempt is not None:
                    after_attempt(request)
            will_retry = is_retryable(error)
            delay = retry.delay(retries, error, connection.rng) if will_retry else 0.0
            if isinstance(error, RateLimitError):
                counters.rate_limited += 1
                if will_retry:
                    # Even when this request gives up, the controller hears of it.
                    # Without a server wait, a client-wide pause lasts the backoff
                    # ceiling, not the jittered sample (which may be near zero).
                    if retry_after_seconds(error.headers) is None:
                        wait = backoff_ceiling(retry, retries)
                    else:
                        wait = delay
                    gate.on_answer(sent_at, True, wait, number=number)
            elif isinstance(error, APIStatusError):
                gate.on_answer(sent_at, number=number)  # an answer, not a refusal
            if retries >= retry.max_retries or not will_retry:
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
            # Only this request's own wait is slept here (with its token); the gate's
            # part of resume_at is waited in wait_to_send, without the token.
            await trio.sleep(delay)

    async def request_json(
        self,
        request: httpx.Request,
        parse: Callable[[httpx.Response, Any], T],
        timeout: Timeout,
        retry: RetryPolicy,
        usage: Callable[[T], Usage | None] = lambda _: None,
    ) -> T:
        """A whole JSON request: a limiter token, :meth:`call` with
        :func:`~trioclient._attempt.complete_once`, the answer counted."""
        max_bytes = self.max_response_bytes

        def attempt(sender: Sender, request: httpx.Request, timeout: Timeout) -> Awaitable[T]:
            return complete_once(sender, request, timeout, max_bytes, parse)

        hold = self.token_hold()
        try:
            result = await self.call(request, attempt, timeout, retry, hold)
        finally:
            hold.give_back()
        self.succeeded(request, usage(result))
        return result

    def succeeded(self, request: httpx.Request, usage: Usage | None) -> None:
        """Count a request that ended with an answer, and tell its pacer the true usage
        (a shared budget corrects the tokens it charged by estimate)."""
        self.connection.counters.succeed(usage)
        if usage is not None:
            hook = getattr(request.extensions.get(PACER_EXTENSION), "after_usage", None)
            if hook is not None:
                hook(usage)
