"""The retry policy: what is retried, and how long to wait before the next attempt.

What is retried, and why:

* **Timeouts and connection errors** (:class:`~trioclient.APIConnectionError`): the
  request may never have reached the server, or its answer was lost on the way.
* **408, 409, 429, 500, 502, 503, 504**: the server says "not now", not "never".
* **A provider's error inside a 2xx answer** (:class:`~trioclient.ProviderError`, a
  stream's error event among them) whose code is an overload, a rate limit, a 5xx, or
  says nothing; not one that says the request itself is wrong (context length, an
  invalid argument: a 4xx-like code). A stream's error event is retried only where it
  can be at all: before the first chunk reached the caller (the client retries it
  there), or inside a batch, where no caller ever sees a partial answer.
* **Not** other 4xx (the request itself is wrong: sending it again gives the same
  answer), **nor** a 429 whose code is ``insufficient_quota`` (no credit left: waiting
  does not help), nor a malformed 2xx body (the server answered; its answer is the bug).
* **Never** ``Cancelled`` or ``KeyboardInterrupt``: only :class:`Exception` subclasses
  reach the policy at all.

How long to wait:

1. the server's ``retry-after-ms`` header, else its ``Retry-After`` (seconds or an HTTP
   date), capped at ``max_retry_after``;
2. otherwise "full jitter" exponential backoff: uniform in
   ``0 .. min(max_delay, base_delay * 2**n)`` for the n-th retry, so that a crowd of
   clients that failed together does not come back together.

The caller's own deadline always wins: the client never starts a sleep that would end
past ``trio.current_effective_deadline()`` and fails at once with the last error instead.
"""

from __future__ import annotations

import math
import random
import time

import attrs
import httpx

from ._exceptions import APIConnectionError, APIError, APIStatusError, ProviderError

__all__ = ["RetryPolicy", "retry_after_seconds"]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be a number >= 0, got {value!r}")


def _attempts(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """When to try a failed request again, and how long to wait first.

    Attributes:
        max_retries: Attempts after the first one (so ``max_retries + 1`` in all).
        base_delay: The first backoff ceiling, in seconds; it doubles each retry.
        max_delay: The ceiling of the exponential backoff.
        max_retry_after: The longest server-requested wait honoured; a longer
            ``Retry-After`` is cut to this.
        retry_statuses: The statuses that are retried.
    """

    max_retries: int = attrs.field(default=4, validator=_attempts)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    retry_statuses: frozenset[int] = attrs.field(default=RETRYABLE_STATUSES, converter=frozenset)

    def is_retryable(self, error: Exception) -> bool:
        """Whether ``error`` is worth another attempt (see the module docstring)."""
        if isinstance(error, APIStatusError):
            if error.status_code not in self.retry_statuses:
                return False
            if error.status_code == 429 and error.code == "insufficient_quota":
                return False
            # A server may say outright whether a retry is worthwhile (OpenAI does).
            return bool(error.headers.get("x-should-retry", "") != "false")
        if isinstance(error, ProviderError):
            # An error inside a 2xx answer (a stream's error event among them): its
            # code says whether the request itself is wrong; no code, try again.
            status = error.implied_status
            return status is None or status in self.retry_statuses
        return isinstance(error, APIConnectionError)

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter delay before retry ``retry_number`` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry_number, 62))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, retry_number: int, error: APIError, rng: random.Random | None = None) -> float:
        """The wait before the next attempt after ``error``: the server's word, else backoff."""
        if isinstance(error, APIStatusError):
            asked = retry_after_seconds(error.headers)
            if asked is not None:
                return min(asked, self.max_retry_after)
        return self.backoff(retry_number, rng)


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After``.

    ``Retry-After`` may be seconds (``"2"``, also ``"1.5"`` as some servers send) or an
    HTTP date (RFC 9110), taken relative to ``now`` (the wall clock by default). A value
    that parses to nothing sensible is ignored (``None``), never an error: a bad header
    must not turn a retryable answer into a crash.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only for the rare HTTP-date form; keeps `import trioclient` lean

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if math.isfinite(seconds) and seconds >= 0:
        return seconds
    return None
