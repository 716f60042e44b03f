"""Pacing: sending at the rate a budget allows, before the server has to say no.

The answer *after* a 429 is the client-wide gate (:mod:`trioclient._gate`). This module
is the answer before it: the batch engine's ``rpm``/``tpm`` budgets, and the server's
own budgets as its ``x-ratelimit-*`` headers describe them, all as token buckets that
the request path consults through a :class:`Pacer` before every attempt.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import httpx
import trio

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "Budgets",
    "TokenBucket",
    "estimate_tokens",
    "parse_reset_duration",
]

# The request path's side of the hook (PACER_EXTENSION, Pacer) lives in _attempt, so
# that `import trioclient` does not load the budgets below.

# --- budgets: token buckets the batch engine paces with -----------------------------
#
# One bucket model serves three purposes: the caller's `rpm`/`tpm` budgets, and the
# server's own buckets as its `x-ratelimit-*` headers describe them. It is kept as a
# *supply line* rather than a level, because many tasks reserve at once:
#
#     supply(t) = base + rate * (t - updated)      tokens made available so far
#     demand    = sum of every reservation         tokens asked for so far
#     level     = supply - demand                  (negative: a queue of debt)
#
# A reservation adds its cost to `demand` and remembers the new total, its *ticket*;
# its task may go once `supply(t) >= ticket`. So reservations are served first come,
# first served, and a hundred waiting tasks wake one after another at the refill rate,
# not together. A correction (a refund, the actual usage, a fresher reading of the
# server's headers) moves `base`; waiters re-read it when they wake, and an upward move
# wakes them early, so a budget freed by a correction is used at once.


def parse_reset_duration(text: str) -> float | None:
    """Seconds in a rate-limit reset header: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1m30.5s"``.

    The OpenAI-style ``x-ratelimit-reset-*`` values are Go ``time.Duration`` strings:
    a sequence of number+unit pairs (``h``, ``m``, ``s``, ``ms``, ``us``/``µs``, ``ns``).
    A bare number is taken as seconds, as some compatible servers send it. Anything
    else gives ``None``: a header we cannot read must never break a request.
    """
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total = 0.0
    pos = 0
    n = len(text)
    while pos < n:
        start = pos
        while pos < n and (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        if pos == start:
            return None
        try:
            number = float(text[start:pos])
        except ValueError:
            return None
        unit_start = pos
        while pos < n and not (text[pos].isdigit() or text[pos] == "."):
            pos += 1
        scale = _DURATION_UNITS.get(text[unit_start:pos])
        if scale is None:
            return None
        total += number * scale
    return total


_DURATION_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}

#: Completion tokens assumed for a request that sets no ``max_tokens``.
DEFAULT_COMPLETION_TOKENS = 512


def estimate_tokens(
    body: Any, default_completion_tokens: int = DEFAULT_COMPLETION_TOKENS, kind: str = "chat"
) -> int:
    """What a request will cost against a tokens-per-minute budget, before it is sent.

    The same rule the APIs use to admit a request: the prompt (about four characters a
    token, plus a few tokens per message) plus the most the answer may take
    (``max_completion_tokens``, else ``max_tokens``, else ``default_completion_tokens``),
    times ``n``. It over-estimates on purpose: the ``usage`` that comes back corrects
    the budget, and a late refund costs less throughput than an early 429.

    ``kind`` is the endpoint: ``"chat"``; ``"embeddings"`` (the input only: an
    embedding writes no tokens; a token id counts one); ``"responses"`` (the input
    items and ``instructions``, plus ``max_output_tokens`` or the default).
    """
    if not isinstance(body, dict):
        return default_completion_tokens
    if kind == "embeddings":
        return _estimate_input(body.get("input"))
    if kind == "responses":
        prompt = _estimate_input(body.get("input")) + _estimate_input(body.get("instructions"))
        if body.get("tools"):
            prompt += (len(str(body["tools"])) + 3) // 4
        answer = body.get("max_output_tokens")
        if not isinstance(answer, int) or isinstance(answer, bool) or answer < 0:
            answer = default_completion_tokens
        return prompt + answer
    chars = 0
    messages = body.get("messages")
    extra = 3
    if isinstance(messages, list):
        for message in messages:
            extra += 4
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        chars += len(part["text"])
                    else:
                        extra += 85  # an image or other part: OpenAI's low-detail price
            calls = message.get("tool_calls")
            if calls:
                chars += len(str(calls))
    tools = body.get("tools")
    if tools:
        chars += len(str(tools))
    answer = body.get("max_completion_tokens")
    if not isinstance(answer, int) or isinstance(answer, bool) or answer < 0:
        answer = body.get("max_tokens")
    if not isinstance(answer, int) or isinstance(answer, bool) or answer < 0:
        answer = default_completion_tokens
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return extra + (chars + 3) // 4 + answer * choices


def _estimate_input(value: Any) -> int:
    """Tokens of an ``input``: text at four characters a token, a token id as one, and
    a few tokens of overhead per item (messages, parts)."""
    if isinstance(value, str):
        return (len(value) + 3) // 4
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, list):
        return sum(_estimate_input(item) for item in value) + (4 if value and isinstance(value[0], dict) else 0)
    if isinstance(value, dict):
        content = value.get("content", value.get("text", value.get("output")))
        return 4 + _estimate_input(content)
    return 0


@attrs.define(eq=False)
class TokenBucket:
    """A budget of ``capacity`` tokens refilled at ``rate`` per second, shared by many tasks.

    Reservations may run the level below zero: that debt is the queue, served in
    order (see the comment above). Time is trio's clock.

    Attributes:
        rate: Tokens added per second.
        capacity: The most the bucket holds (the burst an idle budget allows).
    """

    rate: float
    capacity: float
    _base: float = 0.0
    _updated: float = 0.0
    _demand: float = 0.0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @classmethod
    def starting_at(cls, rate: float, capacity: float, level: float) -> TokenBucket:
        bucket = cls(rate, capacity)
        bucket._base = level
        bucket._updated = trio.current_time()
        return bucket

    def level(self) -> float:
        """Tokens available now (negative while tasks are queued for them)."""
        now = trio.current_time()
        supply = self._base + self.rate * (now - self._updated)
        return min(supply - self._demand, max(self.capacity, self._base - self._demand))

    def _catch_up(self) -> None:
        # Fold the refill into `base`, clamped: an idle bucket stops filling at capacity.
        now = trio.current_time()
        self._base = self._demand + self.level()
        self._updated = now

    def reserve(self, cost: float) -> float:
        """Queue for ``cost`` tokens; returns the ticket to pass to :meth:`wait`."""
        self._catch_up()
        self._demand += cost
        return self._demand

    def ready_at(self, ticket: float) -> float:
        """The trio time at which ``ticket``'s tokens will have been supplied."""
        short = ticket - self._base
        if short <= 0:
            return -math.inf
        if self.rate <= 0:
            return math.inf
        return self._updated + short / self.rate

    async def wait(self, ticket: float) -> None:
        """Sleep until ``ticket`` is served (early if a correction frees tokens)."""
        while (at := self.ready_at(ticket)) > trio.current_time():
            changed = self._changed
            with trio.move_on_at(at):
                await changed.wait()

    def adjust(self, tokens: float) -> None:
        """Give back (positive) or take (negative) tokens, e.g. the actual usage's
        difference from the estimate; a give-back wakes the waiters to use it now."""
        if tokens == 0:
            return
        self._catch_up()
        self._base += tokens
        if tokens > 0:
            self._wake()

    def set_level(self, level: float) -> None:
        """Say how many tokens are available now (a fresher reading of the server's)."""
        self._catch_up()
        old = self._base
        self._base = self._demand + level
        self._updated = trio.current_time()
        if self._base > old:
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@attrs.define(eq=False)
class _HeaderLimit:
    """One of the server's limits (requests or tokens) as its headers describe it."""

    name: str
    sent: float = 0.0  # cost of the attempts sent so far (all, known limit or not)
    unsent: float = 0.0  # cost reserved in `bucket` by attempts not yet sent
    limit: float = 0.0
    best_deficit: float = 0.0
    freshest: float = -1.0  # `sent` ticket of the response last applied
    bucket: TokenBucket | None = None

    def observe(
        self, headers: httpx.Headers, sent_ticket: float, sent_at: float, margin: float
    ) -> None:
        limit = _header_number(headers.get(f"x-ratelimit-limit-{self.name}"))
        remaining = _header_number(headers.get(f"x-ratelimit-remaining-{self.name}"))
        reset_text = headers.get(f"x-ratelimit-reset-{self.name}")
        reset = None if reset_text is None else parse_reset_duration(reset_text)
        if limit is None or remaining is None or limit <= 0:
            return
        remaining = min(remaining, limit)
        if limit != self.limit:
            self.limit, self.best_deficit = limit, 0.0
        # The refill rate is the deficit over the time to refill it. `remaining` is
        # rounded down (by up to one token), so a small deficit gives a poor rate: take
        # a reading that is precise (deficit >= 50) or better than any seen before.
        deficit = limit - remaining
        if reset is not None and reset > 0 and deficit > 0:
            if deficit >= 50 or deficit >= self.best_deficit:
                self.best_deficit = max(deficit, self.best_deficit if deficit < 50 else 0)
                rate = max(deficit - 0.5, 0.5) / reset
                if self.bucket is None:
                    self.bucket = TokenBucket.starting_at(rate, limit, limit)
                else:
                    self.bucket.rate = rate
                    self.bucket.capacity = limit
        bucket = self.bucket
        if bucket is None or sent_ticket <= self.freshest:
            return  # no rate known yet, or an older reading than one already applied
        self.freshest = sent_ticket
        now = trio.current_time()
        # The server's level when it answered, refilled since, less what we sent after
        # that request and what is reserved to go: the level the next attempt meets.
        level = min(limit, remaining + bucket.rate * max(0.0, now - sent_at))
        level -= self.sent - sent_ticket
        bucket.set_level(level - self.unsent - margin)


def _header_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@attrs.define(eq=False)
class Budgets:
    """Everything that paces a batch's attempts: the caller's ``rpm``/``tpm`` budgets
    and the server's limits read from its ``x-ratelimit-*`` headers.

    The caller's budgets start with one second's worth of tokens (at least one request
    and one request's cost), and hold at most that much: ``rpm=120`` means two
    requests a second from the start, never a burst of 120 that a fresh server bucket
    might take but a shared key would not. The server's buckets start unknown: until a
    response describes them, only ``max_concurrent`` and the 429 gate hold the batch
    back, which is right for a server bucket that starts full, as real ones do.

    Args:
        rpm: Requests per minute, or ``None``.
        tpm: Tokens per minute (estimated, then corrected by ``usage``), or ``None``.
        follow_headers: Pace from the server's ``x-ratelimit-*`` headers.
        header_margin: Fraction of the server's limit left unused as slack, for the
            requests in flight the headers cannot show yet (at least a quarter of a
            token: the in-flight attempts are counted already, and the `remaining`
            figure, rounded down, errs on the safe side by half a token on average).
    """

    rpm: float | None = None
    tpm: float | None = None
    follow_headers: bool = True
    header_margin: float = 0.002
    rpm_bucket: TokenBucket | None = attrs.field(init=False, default=None)
    tpm_bucket: TokenBucket | None = attrs.field(init=False, default=None)
    header_requests: _HeaderLimit = attrs.field(
        init=False, factory=lambda: _HeaderLimit("requests")
    )
    header_tokens: _HeaderLimit = attrs.field(init=False, factory=lambda: _HeaderLimit("tokens"))

    def __attrs_post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.rpm is not None:
            per_second = self.rpm / 60.0
            burst = max(1.0, per_second)
            self.rpm_bucket = TokenBucket.starting_at(per_second, burst, burst)
        if self.tpm is not None:
            per_second = self.tpm / 60.0
            self.tpm_bucket = TokenBucket.starting_at(per_second, per_second, per_second)

    async def acquire(self, tokens: int) -> None:
        """Wait until an attempt costing ``tokens`` may be sent.

        Every budget is reserved at the same moment, then waited for in turn (so the
        wait is the longest of them, not their sum). Cancelled while waiting, the
        reservations are given back.
        """
        reserved: list[tuple[TokenBucket, float, float]] = []
        if self.rpm_bucket is not None:
            reserved.append((self.rpm_bucket, self.rpm_bucket.reserve(1), 1.0))
        if self.tpm_bucket is not None:
            # A request larger than the whole bucket waits for its debt, never forever.
            reserved.append((self.tpm_bucket, self.tpm_bucket.reserve(tokens), float(tokens)))
        header_reserved: list[tuple[_HeaderLimit, float]] = []
        if self.follow_headers:
            for limit, cost in ((self.header_requests, 1.0), (self.header_tokens, float(tokens))):
                if limit.bucket is not None:
                    reserved.append((limit.bucket, limit.bucket.reserve(cost), cost))
                    limit.unsent += cost
                    header_reserved.append((limit, cost))
        try:
            for bucket, ticket, _ in reserved:
                await bucket.wait(ticket)
        except BaseException:
            for bucket, _, cost in reserved:
                bucket.adjust(cost)
            for limit, cost in header_reserved:
                limit.unsent -= cost
            raise
        for limit, cost in header_reserved:
            limit.unsent -= cost

    def sent(self, tokens: int) -> tuple[float, float, float]:
        """Count an attempt as sent now; returns ``(requests_ticket, tokens_ticket, time)``."""
        self.header_requests.sent += 1
        self.header_tokens.sent += tokens
        return (self.header_requests.sent, self.header_tokens.sent, trio.current_time())

    def observe(self, response: httpx.Response, sent: tuple[float, float, float]) -> None:
        """Read a response's rate-limit headers (any status) against the attempt's send."""
        if not self.follow_headers:
            return
        headers = response.headers
        if "x-ratelimit-remaining-requests" in headers:
            limit = self.header_requests
            margin = max(0.25, self.header_margin * limit.limit)
            limit.observe(headers, sent[0], sent[2], margin)
        if "x-ratelimit-remaining-tokens" in headers:
            limit = self.header_tokens
            margin = max(0.25, self.header_margin * limit.limit)
            limit.observe(headers, sent[1], sent[2], margin)

    def refund_tokens(self, tokens: float) -> None:
        """Correct the caller's token budget by ``tokens`` (positive: the estimate was
        too high; negative: the answer cost more than estimated)."""
        if self.tpm_bucket is not None:
            self.tpm_bucket.adjust(tokens)
