"""The client-wide 429 gate: one pause for the whole client, then a paced return.

Without a gate, each of N tasks that meets the rate limit backs off on its own, and
the other N - 1 keep sending into the wall meanwhile, each earning its own 429. With
it, the first 429 closes the gate for the wait the server asked for; every task checks
the gate before it sends, so the client makes **one** pause, not N.

Reopening matters as much as closing. If every waiting task went at once when the
pause ended, they would meet a bucket that has refilled by one request and earn N - 1
new 429s: the herd again, one pause later. So the gate reopens *paced*: one task
passes per interval (at first the server's own wait, which is what it takes the
bucket to refill), and each success shortens the interval by a tenth until the gate is
fully open again. A 429 for an attempt sent at the current pace closes the gate and doubles the
interval, up to a few times the server's own wait; the 429s of attempts that were
already in flight when the gate closed say nothing about the pace and change nothing.
This is additive-increase/multiplicative-decrease, applied to the sending rate.

The gate holds no task: closing it moves a timestamp; passing it is a sleep. While
pacing, tasks pass in arrival order (a fair :class:`trio.Lock`).
"""

from __future__ import annotations

import math

import trio

__all__ = ["RateLimitGate"]

#: Below this interval (seconds) pacing is pointless: the gate opens fully.
_OPEN_BELOW = 0.005
#: Each success shortens the interval by this factor: fast enough to reopen within a
#: few dozen answers, gentle enough not to overshoot a bucket that is just refilling.
_SPEED_UP = 0.9
#: Each 429 while pacing lengthens the interval by this factor...
_SLOW_DOWN = 2.0
#: ...up to this many times the wait the server asked for.
_MAX_OVER_SERVER = 4.0


class RateLimitGate:
    """A shared "not before" time, and a pace, for every request of a client."""

    def __init__(self) -> None:
        self.reopens_at = -math.inf
        self.interval = 0.0  # 0: fully open; > 0: pacing, one pass per interval
        self.closures = 0
        self._paced_since = -math.inf  # when the current interval was set
        self._last_pass = -math.inf
        self._lock = trio.Lock()

    @property
    def pacing(self) -> bool:
        return self.interval > 0.0

    def close_for(self, seconds: float, sent_at: float = math.inf) -> None:
        """A 429 asked everyone to wait ``seconds``; then resume one per interval.

        Args:
            seconds: The server's wait (or the backoff, when it named none).
            sent_at: When the refused attempt was sent. Only an attempt sent through
                the current pace is evidence that the pace is too fast; the 429s of
                attempts that were already on the wire when the gate closed are not.
        """
        now = trio.current_time()
        until = now + seconds
        if self.reopens_at <= now:
            self.closures += 1
        if until > self.reopens_at:
            self.reopens_at = until
        if not self.interval:
            self.interval = max(seconds, _OPEN_BELOW)
            self._paced_since = now
        elif sent_at >= self._paced_since:
            # The server's wait says when the *next* request fits, not how fast the
            # budget refills: a 429 for an attempt that went out at the current pace
            # means the pace is too fast. Slow down, but never past a few times the
            # server's own word (a server answering 429 at random, not from a bucket,
            # must not drive the interval up without bound).
            slower = min(self.interval * _SLOW_DOWN, _MAX_OVER_SERVER * seconds)
            self.interval = max(slower, seconds, _OPEN_BELOW)
            self._paced_since = now

    def record_success(self) -> None:
        """An answer came back: speed up a little (only called while pacing)."""
        self.interval *= _SPEED_UP
        if self.interval < _OPEN_BELOW:
            self.interval = 0.0

    def earliest_pass(self) -> float:
        """The earliest time a task arriving now could pass (its place in line aside)."""
        if self.interval:
            return max(self.reopens_at, self._last_pass + self.interval)
        return self.reopens_at

    def is_open(self) -> bool:
        return self.interval == 0.0 and self.reopens_at <= trio.current_time()

    async def wait_open(self) -> None:
        """Sleep until this task may send: after any pause, and at the current pace."""
        # Not a polling loop: each sleep ends exactly when something may have changed.
        while True:
            until = self.reopens_at
            if until > trio.current_time():
                await trio.sleep_until(until)
                continue
            if not self.interval:
                return
            async with self._lock:
                slot = self._last_pass + self.interval
                if slot > trio.current_time():
                    await trio.sleep_until(slot)
                if self.reopens_at > trio.current_time():
                    continue  # a 429 closed the gate while we waited for our slot
                self._last_pass = trio.current_time()
                return
