"""Token buckets per API key and OpenAI-style rate-limit headers.

OpenAI-compatible APIs limit requests per minute (RPM) and tokens per minute (TPM)
per key. We model each as a token bucket that starts full (a fresh key may burst up
to its limit at once, as real APIs allow) and refills continuously at limit/60 per
second. A request needs 1 request token and `prompt_tokens + max_tokens` (or the
default answer length) TPM tokens, which is how OpenAI estimates a request's cost
before it runs; a rejected request takes nothing.

Every chat response carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`;
the reset values are durations in OpenAI's (Go-like) format: `"1s"`, `"6m0s"`,
`"20ms"`, `"1m30.5s"`.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["KeyLimits", "RateDecision", "RateLimiter", "TokenBucket", "format_duration"]


def _trim(number: float, decimals: int) -> str:
    text = f"{number:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_duration(seconds: float) -> str:
    """Format a duration as OpenAI's rate-limit headers do (Go's `time.Duration` style).

    Under a second it is milliseconds (`"20ms"`, `"0.5ms"`); from a second up it is
    hours/minutes/seconds with the seconds' fraction trimmed (`"1s"`, `"1m30.5s"`,
    `"6m0s"`, `"1h0m0s"`). Seconds are rounded to the millisecond first, so the text
    never claims more precision than a client could use.

    >>> format_duration(90.5)
    '1m30.5s'
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be finite and >= 0, got {seconds}")
    if seconds == 0:
        return "0s"
    if seconds < 1:
        millis = round(seconds * 1000, 3)
        if millis >= 1000:
            return "1s"
        return f"{_trim(millis, 3)}ms"
    millis_total = round(seconds * 1000)
    hours, rest = divmod(millis_total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = _trim(rest / 1000, 3)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@attrs.define
class TokenBucket:
    """A bucket of `capacity` tokens refilled continuously at `rate` tokens per second.

    Time is passed in (trio.current_time() from the server) so the bucket is plain,
    synchronous and testable with made-up clocks.
    """

    capacity: float
    rate: float
    level: float
    updated: float

    @classmethod
    def per_minute(cls, limit: int, now: float) -> TokenBucket:
        """A full bucket for a per-minute limit."""
        return cls(capacity=float(limit), rate=limit / 60.0, level=float(limit), updated=now)

    def refill(self, now: float) -> None:
        """Bring `level` up to date."""
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` tokens are available (0 if they are now; inf if never)."""
        self.refill(now)
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        """Remove `amount` tokens (call `wait_for` first; the level may not go below 0)."""
        self.level = max(0.0, self.level - amount)

    def time_to_full(self) -> float:
        """Seconds until the bucket is full again: OpenAI's `x-ratelimit-reset-*`."""
        return (self.capacity - self.level) / self.rate


@attrs.frozen
class RateDecision:
    """The verdict on one request.

    Attributes:
        limited: None if allowed, else `"requests"` or `"tokens"` (the error's `type`).
        retry_after: seconds until the request would fit (inf: it never will).
        headers: the x-ratelimit-* headers to send, as (name, value) byte pairs.
        used: for the error message, how much of the exhausted limit is in use.
        limit: the exhausted limit.
        requested: what this request asked of it.
    """

    limited: str | None
    retry_after: float
    headers: tuple[tuple[bytes, bytes], ...]
    used: int = 0
    limit: int = 0
    requested: int = 0


@attrs.define
class KeyLimits:
    """The two buckets of one API key."""

    requests: TokenBucket | None
    tokens: TokenBucket | None


@attrs.define
class RateLimiter:
    """RPM and TPM buckets per API key; `check` decides and charges one request."""

    rpm: int | None
    tpm: int | None
    keys: dict[str, KeyLimits] = attrs.field(factory=dict, repr=False)

    @property
    def active(self) -> bool:
        """Whether any limit is configured (otherwise no headers are sent)."""
        return self.rpm is not None or self.tpm is not None

    def _limits_for(self, key: str, now: float) -> KeyLimits:
        limits = self.keys.get(key)
        if limits is None:
            limits = KeyLimits(
                requests=None if self.rpm is None else TokenBucket.per_minute(self.rpm, now),
                tokens=None if self.tpm is None else TokenBucket.per_minute(self.tpm, now),
            )
            self.keys[key] = limits
        return limits

    def check(self, key: str, cost_tokens: int, now: float) -> RateDecision:
        """Admit one request costing `cost_tokens` for `key`, or say why not and how long.

        Both buckets are checked before either is charged, so a request refused for
        tokens does not also burn a request slot.
        """
        if not self.active:
            return RateDecision(None, 0.0, ())
        limits = self._limits_for(key, now)
        requests, tokens = limits.requests, limits.tokens
        wait_requests = 0.0 if requests is None else requests.wait_for(1, now)
        wait_tokens = 0.0 if tokens is None else tokens.wait_for(cost_tokens, now)
        limited: str | None = None
        retry_after = 0.0
        used = limit = requested = 0
        if requests is not None and wait_requests > 0:
            limited, retry_after = "requests", wait_requests
            limit, requested = int(requests.capacity), 1
            used = limit - math.floor(requests.level)
        elif tokens is not None and wait_tokens > 0:
            limited, retry_after = "tokens", wait_tokens
            limit, requested = int(tokens.capacity), cost_tokens
            used = limit - math.floor(tokens.level)
        else:
            if requests is not None:
                requests.take(1)
            if tokens is not None:
                tokens.take(cost_tokens)
        return RateDecision(
            limited, retry_after, self._headers(limits), used=used, limit=limit, requested=requested
        )

    def _headers(self, limits: KeyLimits) -> tuple[tuple[bytes, bytes], ...]:
        headers: list[tuple[bytes, bytes]] = []
        for name, bucket in (("requests", limits.requests), ("tokens", limits.tokens)):
            if bucket is None:
                continue
            headers.append((b"x-ratelimit-limit-" + name.encode(), b"%d" % bucket.capacity))
            headers.append(
                (b"x-ratelimit-remaining-" + name.encode(), b"%d" % math.floor(bucket.level))
            )
            headers.append(
                (
                    b"x-ratelimit-reset-" + name.encode(),
                    format_duration(bucket.time_to_full()).encode(),
                )
            )
        return tuple(headers)
