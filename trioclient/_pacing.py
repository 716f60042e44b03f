"""Pacing: keeping a crowd of tasks from running into the server's rate limit together.

The :class:`RateLimitGate` is the client-wide answer to a 429. Without it, each of N
tasks that meets the limit backs off on its own, and the other N - 1 tasks keep sending
into the wall meanwhile, each earning its own 429. With it, the first 429 closes the gate
for the server's requested wait; every task checks the gate before it sends, so the
whole client makes one pause, not N, and resumes together when the server said it could.
"""

from __future__ import annotations

import math
from typing import Protocol

import attrs
import httpx
import trio

__all__ = ["PACER_EXTENSION", "Pacer", "RateLimitGate"]

#: The ``httpx.Request.extensions`` key under which a request carries its :class:`Pacer`.
PACER_EXTENSION = "trioclient.pacer"


class Pacer(Protocol):
    """What the request path asks of a pacer (the batch engine's rpm/tpm budgets).

    A request carries its pacer in ``request.extensions[PACER_EXTENSION]``, so the
    client's hot path pays one dictionary lookup when there is none.
    """

    async def before_attempt(self, request: httpx.Request) -> None:
        """Wait until this attempt may be sent (every attempt, retries included)."""

    def after_response(self, response: httpx.Response) -> None:
        """See every response's headers (any status) as soon as they arrive."""


@attrs.define
class RateLimitGate:
    """A shared "not before" time for every request of a client.

    It holds no task and no lock: closing it moves a timestamp, and waiting at it is
    a ``trio.sleep_until`` that ends early only if the caller is cancelled.
    """

    reopens_at: float = -math.inf
    closures: int = 0

    def close_for(self, seconds: float) -> None:
        """Keep everyone from sending for ``seconds`` from now (never shortens a pause)."""
        until = trio.current_time() + seconds
        if until > self.reopens_at:
            if self.reopens_at <= trio.current_time():
                self.closures += 1
            self.reopens_at = until

    def is_open(self) -> bool:
        return self.reopens_at <= trio.current_time()

    async def wait_open(self) -> None:
        """Sleep until the gate is open (the gate may be pushed back while we sleep)."""
        # Not a polling loop: each pass sleeps exactly to the reopening time, and loops
        # only if another 429 pushed that time back meanwhile.
        while (until := self.reopens_at) > trio.current_time():  # noqa: ASYNC110
            await trio.sleep_until(until)
