"""Pacing: sending at the rate a budget allows, before the server has to say no.

The answer *after* a 429 is the client-wide gate (:mod:`trioclient._gate`). This module
is the answer before it: the batch engine's ``rpm``/``tpm`` budgets, and the server's
own budgets as its ``x-ratelimit-*`` headers describe them, all as token buckets that
the request path consults through a :class:`Pacer` before every attempt.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import attrs
import httpx
import trio

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "BudgetPass",
    "Budgets",
    "Reservation",
    "Sent",
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
    parsed = parse_reset(text)
    return None if parsed is None else parsed[0]


def reset_resolution(text: str) -> float:
    """The unit of the last digit of a reset header, in seconds: how far the true
    duration may be from the one written (``"1s"``: 1 s, ``"1.25s"``: 10 ms, ``"20ms"``:
    1 ms).

    Servers write the reset as they like (OpenAI's examples read ``"1s"`` and
    ``"6m0s"``), rounded or cut to that digit, and a rate or a level worked out from it
    is only as good as that. Anything unreadable is taken as written to the second.
    """
    parsed = parse_reset(text)
    return 1.0 if parsed is None else parsed[1]


def parse_reset(text: str) -> tuple[float, float] | None:
    """A reset header as ``(seconds, the unit of its last digit in seconds)`` (see
    :func:`parse_reset_duration` and :func:`reset_resolution`), or ``None``."""
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not (math.isfinite(seconds) and seconds >= 0):
            return None
        return seconds, _last_digit(text, 1.0)
    total = 0.0
    last_digit = 1.0
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
        last_digit = _last_digit(text[start:unit_start], scale)
    return (total, last_digit) if math.isfinite(total) else None


def _last_digit(number: str, scale: float) -> float:
    """The unit of ``number``'s last digit, times ``scale`` (an exponent: a whole unit)."""
    if "e" in number or "E" in number:
        return scale
    point = number.find(".")
    return scale if point < 0 else scale * 10.0 ** -(len(number) - point - 1)


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
        if tokens > 0:
            # Never past capacity: a give-back to a full bucket (an attempt found to
            # have come first after all) would otherwise hold tokens no server has.
            held = self._base - self._demand
            self._base = self._demand + min(held + tokens, max(self.capacity, held))
            self._wake()
        else:
            self._base += tokens

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


#: The share of a server budget this client spends is measured over the readings of
#: at least this long (seconds)...
SHARE_WINDOW_SECONDS = 4.0
#: ...and of at least this many tokens' refill: the ``remaining`` headers are whole
#: numbers, so a window of a few tokens would measure little but rounding.
SHARE_WINDOW_TOKENS = 8.0
#: The least share of the refill a client projects for itself, however much of the
#: budget others spend (fresh readings still show it every token left).
MIN_SHARE = 0.05
#: What each client is credited beyond its spending when the share is worked out, as a
#: share of the window's refill: it lets a client that spends little now claim more
#: (a newcomer on a key another client has been draining), so clients converge on
#: equal shares rather than keeping whatever split they started with.
SHARE_PROBE = 0.2
#: How far the refill rate worked out from the headers may be off (a share of it):
#: spending by others that small is not told apart from the estimate's error.
SHARE_RATE_ERROR = 0.05


@attrs.define(eq=False)
class _HeaderLimit:
    """One of the server's limits (requests or tokens) as its headers describe it.

    **The latest reading.** Each answer says what the server had left when it admitted
    that attempt. Attempts do not reach the server in the order they were sent (one
    waits for a new connection while a later one takes an idle one; tasks woken together
    run in any order), and their answers come back in yet another order. So the reading
    that describes the server best is not the last to arrive but the one admitted last:
    the lowest level once the refill between them is allowed for, or one whose attempt
    went after the answer of the reading applied before had come. From it the bucket is
    projected forward: its level, refilled since, less what may have reached the server
    after it (every attempt still on its way) and less what is reserved to go. An
    attempt counted as on its way whose answer then shows it reached the server first
    gives its cost back.

    **Others on the same key.** Another program spending the same key is invisible to
    that projection: two clients on one key would each count the whole refill as
    theirs, and together send twice what it allows. So the readings are also used to
    measure who spends the budget. Between two readings the server's own level fell by
    what was spent (refill aside); what this client spent of it is known within the
    attempts on their way (less those refused). Over a window of a few seconds, this
    client's **share** of the spending is ``own / (own + others)``, and the projection
    refills at the server's rate times that share. Clients that all do this settle on
    splitting the refill between them; a share credit (:data:`SHARE_PROBE`) moves them
    towards equal shares, and a client left alone measures a share of one again within
    a window.
    """

    name: str
    sent: float = 0.0  # cost of the attempts sent so far (all, known limit or not)
    unsent: float = 0.0  # cost reserved in `bucket` by attempts not yet sent
    refused: float = 0.0  # cost of the attempts answered 429 so far (they spent nothing)
    limit: float = 0.0
    rate: float = 0.0  # the server's refill, tokens a second
    rate_low: float = 0.0  # the rate is known to lie in [rate_low, rate_high]
    rate_high: float = math.inf
    # Whether a refusal showed the server reads its bucket as it answers, not as it
    # admits (see `observe`): then no refill is counted between the two.
    read_at_answer: bool = False
    known_since: float = math.inf  # when the first reading taught the rate
    share: float = 1.0  # this client's share of the spending (see the class docstring)
    bucket: TokenBucket | None = None
    # The readings applied in the share window: (sent_at, spent in all since the first
    # reading, the least and the most of our attempts the server may have seen by it,
    # refused so far); and the last applied reading's (remaining, sent_at, answered_at).
    _window: collections.deque[tuple[float, float, float, float, float]] = attrs.field(
        factory=collections.deque
    )
    _last: tuple[float, float, float] | None = None

    def observe(
        self,
        headers: httpx.Headers,
        sent_at: float,
        margin: float,
        on_the_way: float,
        cost: float,
        refused: bool,
    ) -> None:
        """Apply one answer's reading. ``sent_at`` is when its attempt went, ``cost``
        the attempt's own, ``on_the_way`` the cost of this client's other attempts sent
        and not answered yet; ``refused``: answered 429."""
        limit = _header_number(headers.get(f"x-ratelimit-limit-{self.name}"))
        remaining = _header_number(headers.get(f"x-ratelimit-remaining-{self.name}"))
        reset_text = headers.get(f"x-ratelimit-reset-{self.name}")
        reset = None if reset_text is None else parse_reset(reset_text)  # (seconds, digit)
        if limit is None or remaining is None or limit <= 0:
            return
        remaining = min(remaining, limit)
        if limit != self.limit:
            self.limit, self.rate_low, self.rate_high = limit, 0.0, math.inf
            self.read_at_answer = False
            self._window.clear()
            self._last = None
        # The refill rate is the deficit over the time to refill it. `remaining` is
        # rounded down (the true level is up to a token more) and the reset to its last
        # digit, so one reading bounds the rate within an interval; the readings'
        # intervals together bound it closely (see `_narrow_rate`).
        deficit = limit - remaining
        if reset is not None and reset[0] > 0 and deficit > 0:
            self._narrow_rate(deficit, *reset)
            if self.bucket is None:
                self.bucket = TokenBucket.starting_at(self.rate, limit, limit)
                self.known_since = trio.current_time()
            self.bucket.capacity = limit
        bucket = self.bucket
        if bucket is None:
            return  # no rate known yet
        now = trio.current_time()
        if (
            refused
            and sent_at > self.known_since
            and remaining < max(cost, 1.0) + self.rate * max(0.0, now - sent_at)
        ):
            # The projection let this attempt go and the server refused it: the level
            # was taken too high. Read as the server admitted the attempt, the level
            # and the refill since are exact; read as it answered, that refill is
            # counted twice. From this refusal on, the refill counts from the answer.
            # (Attempts sent before the budget was known prove nothing, nor does a
            # refusal whose reading shows this budget covering the attempt even less
            # what it refilled while the answer came: the other budget, or something
            # else, refused it.)
            self.read_at_answer = True
        last = self._last
        if last is not None and sent_at <= last[2]:
            # Sent before the applied reading's answer came: either may have reached the
            # server first. Its level, brought to the applied one's send by the refill,
            # tells: lower, it is the later; higher (beyond a token of rounding), it came
            # first, so it was not on its way after all.
            last_remaining, last_sent_at, _ = last
            brought = remaining + self.rate * (last_sent_at - sent_at)
            if brought >= last_remaining:
                if cost and (refused or brought > last_remaining + 1):
                    bucket.adjust(cost)
                return
        self._measure_share(remaining, sent_at, on_the_way)
        self._last = (remaining, sent_at, now)
        share = self.share
        bucket.rate = self.rate * share
        # The server's level when it admitted that attempt, refilled since, less what may
        # have reached it after: the level the next attempt meets, less what is reserved
        # to go. Others on the key see the same tokens left and the same refill: of both,
        # this client counts its share only, or they would all reach for the same token.
        since = now if self.read_at_answer else sent_at
        level = min(limit, remaining + self.rate * max(0.0, now - since))
        if share == 1.0 and reset is not None and self.rate_high < math.inf:
            # The reset tells the level to a fraction of a token, once the rate is known
            # closely. Taken at its least: the longest the reset may be (its rounding)
            # at the fastest the rate may be, and as of now (the server may have read
            # its bucket as it answered rather than as it admitted the attempt). Often
            # more than what is left of `remaining` rounded down; never more than the
            # server has. (Not with others on the key: what they spend is not known to
            # a fraction of a token.)
            seconds, rounding = reset
            level = max(level, limit - (seconds + rounding) * self.rate_high)
        level *= share
        bucket.set_level(level - on_the_way - self.unsent - margin)

    def _narrow_rate(self, deficit: float, reset: float, rounding: float) -> None:
        """Bound the server's refill rate by one more reading, and take the middle.

        The server's true deficit is in ``(deficit - 1, deficit]`` (``remaining`` is
        rounded down) and the true reset within ``rounding`` of the one given (a digit
        of the reset, rounded or cut: see :func:`reset_resolution`), so the rate lies
        in ``[(deficit - 1) / (reset + rounding), deficit / (reset - rounding)]``. Every
        reading of one bucket holds the same rate: the intersection of their intervals
        narrows with each, far below a token of error over a whole minute's refill. A
        reading whose interval misses the running one says the rate is not what it was
        (or the server rounds otherwise): the estimate starts again from that reading.
        """
        low = max(deficit - 1.0, 0.0) / (reset + rounding)
        high = deficit / (reset - rounding) if reset > rounding else math.inf
        if low > self.rate_high or high < self.rate_low:
            self.rate_low, self.rate_high = low, high
        else:
            self.rate_low, self.rate_high = max(low, self.rate_low), min(high, self.rate_high)
        low, high = self.rate_low, self.rate_high
        if high < math.inf and high - low <= 0.01 * high:
            self.rate = (low + high) / 2
        else:  # still wide: this reading's own middle, held within the bounds
            self.rate = min(high, max(low, max(deficit - 0.5, 0.5) / reset))

    def _measure_share(self, remaining: float, sent_at: float, on_the_way: float) -> None:
        """Add a reading to the share window and work out this client's share."""
        window = self._window
        # What of ours the server may have seen by this reading: at least what was sent
        # and is not on its way, at most all that was sent.
        seen_least, seen_most = self.sent - on_the_way, self.sent
        last = self._last
        if last is None or not window:
            window.append((sent_at, 0.0, seen_least, seen_most, self.refused))
            return
        last_remaining, last_at, _ = last
        # What the server's level lost between the two readings (it cannot refill past
        # its limit).
        spent = min(self.limit, last_remaining + self.rate * max(0.0, sent_at - last_at)) - remaining
        window.append((sent_at, window[-1][1] + spent, seen_least, seen_most, self.refused))
        span = max(SHARE_WINDOW_SECONDS, SHARE_WINDOW_TOKENS / self.rate if self.rate else 0.0)
        while len(window) > 2 and window[1][0] <= sent_at - span:
            window.popleft()
        first_at, first_spent, first_least, _, first_refused = window[0]
        # Ours, counted generously (a client alone must not take the order its
        # attempts arrived in for another's spending): the most the server may have
        # seen by the last reading less the least by the first, less those refused (a
        # refusal spends nothing).
        ours = max(0.0, seen_most - first_least - (self.refused - first_refused))
        # Beyond what the readings' own error explains: each `remaining` is rounded
        # down (a token at either end of the window) and the refill rate is an
        # estimate.
        noise = 1.0 + SHARE_RATE_ERROR * self.rate * (sent_at - first_at)
        others = max(0.0, window[-1][1] - first_spent - ours - noise)
        # Each side is credited a little (only once others are seen at all, so a client
        # alone keeps a share of exactly one), unless this client met a 429 in the window:
        # the credit is the additive increase, and a refusal says the clients together
        # claim too much already.
        refused = self.refused > first_refused
        credit = SHARE_PROBE * self.rate * max(sent_at - first_at, 1.0) * (0.5 if refused else 1.0)
        share = (ours + credit) / (ours + credit + others + min(others, credit))
        self.share = max(MIN_SHARE, min(1.0, share))


def describes_a_budget(headers: httpx.Headers) -> bool:
    """Whether ``headers`` carry an ``x-ratelimit-remaining-*`` header.

    One pass over the lower-case names httpx keeps beside the raw ones (private, pinned
    by tests/test_transport_heads.py): an ``in`` test on :class:`httpx.Headers` first
    works out the head's encoding by decoding every header, and ``Headers.raw`` builds
    a new list; on a hot path either costs more than the rest of the bookkeeping.
    """
    for _, name, _ in headers._list:
        if name[:22] == b"x-ratelimit-remaining-":  # (cheaper than a startswith call)
            return True
    return False


def _header_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


#: One attempt as :meth:`Budgets.sent` counted it: ``(requests_ticket, tokens_ticket,
#: sent_at, tokens)``; the tickets are the running totals sent so far, this attempt
#: included (the first names the attempt).
Sent = tuple[float, float, float, float]


@attrs.define(eq=False)
class Reservation:
    """What :meth:`Budgets.acquire` reserved for one attempt, until the attempt is sent
    (:meth:`Budgets.sent`) or given up (:meth:`Budgets.abandon`).

    Between passing its budgets and going on the wire, an attempt may wait a while
    longer (for a ``max_concurrent`` slot). Until it goes, its cost stays *reserved*
    in the header budgets, not counted as sent: the server has not seen it, and a
    reading of an answer meanwhile must neither count it as spent (which would
    project the server's budget too high: the reading's own ticket is later than
    ours, so ours would be taken as already in that reading) nor offer its share to
    another attempt.
    """

    #: Each bucket, the ticket reserved in it, and the cost.
    buckets: list[tuple[TokenBucket, float, float]] = attrs.Factory(list)
    #: Each header limit and the cost held in its ``unsent``.
    held: list[tuple[_HeaderLimit, float]] = attrs.Factory(list)

    def covered(self) -> bool:
        """Whether every bucket still covers its ticket now: a fresher reading of the
        server's headers, while the attempt waited for its slot, may have shown the
        budget lower than projected (sent then, the attempt would earn a 429)."""
        now = trio.current_time()
        return all(bucket.ready_at(ticket) <= now for bucket, ticket, _ in self.buckets)

    def settle(self) -> None:
        """The attempt is sent or given up: its cost is no longer reserved to go."""
        for limit, cost in self.held:
            limit.unsent -= cost
        self.buckets.clear()
        self.held.clear()

    async def wait_again(self) -> None:
        """Wait, without reserving anew, until every bucket covers its ticket again."""
        for bucket, ticket, _ in self.buckets:
            await bucket.wait(ticket)


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
            token: the in-flight attempts are counted already, and the level is never
            taken above what the server's figures allow).
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
    # The attempts sent and not over yet (requests ticket -> tokens), and their tokens.
    _unanswered: dict[float, float] = attrs.field(init=False, factory=dict)
    _unanswered_tokens: float = attrs.field(init=False, default=0.0)

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

    async def acquire(self, tokens: int) -> Reservation:
        """Wait until an attempt costing ``tokens`` may be sent.

        Every budget is reserved at the same moment, then waited for in turn (so the
        wait is the longest of them, not their sum). Cancelled while waiting, the
        reservations are given back. Returns them: pass the :class:`Reservation` to
        :meth:`sent` when the attempt goes, or to :meth:`abandon` if it never does.
        """
        reservation = Reservation()
        reserved = reservation.buckets
        if self.rpm_bucket is not None:
            reserved.append((self.rpm_bucket, self.rpm_bucket.reserve(1), 1.0))
        if self.tpm_bucket is not None:
            # A request larger than the whole bucket waits for its debt, never forever.
            reserved.append((self.tpm_bucket, self.tpm_bucket.reserve(tokens), float(tokens)))
        if self.follow_headers:
            for limit, cost in ((self.header_requests, 1.0), (self.header_tokens, float(tokens))):
                if limit.bucket is not None:
                    reserved.append((limit.bucket, limit.bucket.reserve(cost), cost))
                    limit.unsent += cost
                    reservation.held.append((limit, cost))
        try:
            for bucket, ticket, _ in reserved:
                await bucket.wait(ticket)
        except BaseException:
            self.abandon(reservation)
            raise
        return reservation

    def abandon(self, reservation: Reservation) -> None:
        """Give back what ``reservation`` holds: its attempt will not be sent."""
        for bucket, _, cost in reservation.buckets:
            bucket.adjust(cost)
        reservation.settle()

    def sent(self, tokens: int, reservation: Reservation | None = None) -> Sent:
        """Count an attempt as sent now (settling its ``reservation``, if it was paced);
        returns its :data:`Sent`, to give back to :meth:`observe` with its answer, or
        to :meth:`unanswered` if none comes."""
        if reservation is not None:
            reservation.settle()
        self.header_requests.sent += 1
        self.header_tokens.sent += tokens
        sent = (self.header_requests.sent, self.header_tokens.sent, trio.current_time(), tokens)
        if self.follow_headers:
            self._unanswered[sent[0]] = tokens
            self._unanswered_tokens += tokens
        return sent

    def unanswered(self, sent: Sent) -> None:
        """The attempt ``sent`` is over (answered or not): no longer on its way."""
        if self._unanswered.pop(sent[0], None) is not None:
            self._unanswered_tokens -= sent[3]

    def observe(self, response: httpx.Response, sent: Sent) -> None:
        """Read a response's rate-limit headers (any status) against the attempt's send."""
        if not self.follow_headers:
            return
        self.unanswered(sent)
        refused = response.status_code == 429
        if refused:
            # A refused attempt spent nothing of either budget (servers check both
            # before charging either): what this client spent is counted without it.
            self.header_requests.refused += 1
            self.header_tokens.refused += sent[3]
        headers = response.headers
        if not describes_a_budget(headers):
            return
        if "x-ratelimit-remaining-requests" in headers:
            limit = self.header_requests
            margin = max(0.25, self.header_margin * limit.limit)
            limit.observe(headers, sent[2], margin, len(self._unanswered), 1.0, refused)
        if "x-ratelimit-remaining-tokens" in headers:
            limit = self.header_tokens
            margin = max(0.25, self.header_margin * limit.limit)
            limit.observe(headers, sent[2], margin, self._unanswered_tokens, sent[3], refused)

    def refund_tokens(self, tokens: float) -> None:
        """Correct the caller's token budget by ``tokens`` (positive: the estimate was
        too high; negative: the answer cost more than estimated)."""
        if self.tpm_bucket is not None:
            self.tpm_bucket.adjust(tokens)


@attrs.define(eq=False)
class BudgetPass:
    """One request's way through :class:`Budgets`, attempt by attempt.

    A pacer (:class:`~trioclient._pacer.Pacer`) drives it: :meth:`wait` in
    ``before_attempt``; :meth:`go` in ``still_clear``, right before the attempt is sent
    (a ``max_concurrent`` slot in hand), which counts it as sent if the budgets still
    cover it; :meth:`abandon` in ``abandon``, if it will not be sent after all. Sent
    back to :meth:`wait` (``go`` said no), it waits on the reservation it has instead
    of queueing again at the back.
    """

    budgets: Budgets
    tokens: int
    pending: Reservation | None = None

    async def wait(self) -> None:
        """Wait until the budgets have room for the next attempt."""
        if self.pending is not None:
            await self.pending.wait_again()
        else:
            self.pending = await self.budgets.acquire(self.tokens)

    def go(self) -> Sent | None:
        """The attempt goes now, if the budgets still cover it: what
        :meth:`Budgets.sent` returns (for :meth:`Budgets.observe`), or ``None`` to wait
        again. An attempt not paced by :meth:`wait` simply goes."""
        pending = self.pending
        if pending is not None:
            if not pending.covered():
                return None
            self.pending = None
        return self.budgets.sent(self.tokens, pending)

    def abandon(self) -> None:
        """The attempt will not be sent: give back what it reserved."""
        if self.pending is not None:
            self.budgets.abandon(self.pending)
            self.pending = None
