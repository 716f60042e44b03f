"""The client-wide 429 gate: where the rate controller's decisions are waited for.

Every attempt of a client passes the gate before it is sent. The gate holds no task of
its own: it is a "not before" time (a client-wide pause) and a pace (one pass per
interval, in arrival order), both set by the :class:`~trioclient._ratecontrol.RateController`
it feeds with every answer. The controller decides *whether* 429s call for slowing
down (a budget) or not (noise: random refusals, another program on the same key); the
gate only makes tasks wait accordingly.

Waiting never holds a limiter token. A task about to wait for the gate, for the batch
engine's ``rpm``/``tpm`` budgets or for the server's ``x-ratelimit-*`` budget gives its
token back first and takes one again when it may send (:func:`wait_to_send`), so an
interactive request on a client whose batch is being paced is not stuck behind paced
items, and ``max_concurrent`` bounds attempts on the wire, not tasks asleep. After a
budget wait the gate is checked again: a pause that began meanwhile still applies.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._ratecontrol import RateController, RateControlState

if TYPE_CHECKING:
    import httpx

    from ._pacer import Pacer
    from ._retry import RetryPolicy

__all__ = ["RateLimitGate", "TokenHold", "backoff_ceiling", "wait_to_send"]


class RateLimitGate:
    """A shared pause and pace for every attempt of a client, set by its controller."""

    def __init__(self) -> None:
        self.controller = RateController()
        self.sent = 0  # attempts sent: each one's number orders its answer
        self._last_pass = -math.inf
        self._lock = trio.Lock()

    # -- what the controller decided -------------------------------------------------

    @property
    def reopens_at(self) -> float:
        """The trio time the current client-wide pause ends (``-inf``: none)."""
        return self.controller.paused_until

    @property
    def interval(self) -> float:
        """Seconds between passes at the current pace (0: unpaced)."""
        return self.controller.interval()

    @property
    def closures(self) -> int:
        """Client-wide pauses so far."""
        return self.controller.pauses

    def state(self) -> RateControlState:
        return self.controller.state()

    # -- feeding it ------------------------------------------------------------------

    def on_sent(self) -> int:
        """An attempt goes now; returns its number, to give back with its answer."""
        self.sent += 1
        return self.sent

    def on_answer(
        self, sent_at: float, refused: bool = False, wait: float = 0.0, number: int | None = None
    ) -> None:
        """An answer (any HTTP status) to attempt ``number``, sent at ``sent_at``; a
        429 is ``refused``, with the server's ``wait`` (or the backoff ceiling)."""
        self.controller.on_answer(trio.current_time(), sent_at, refused, wait, number)

    # -- passing it ------------------------------------------------------------------

    def is_open(self) -> bool:
        """No pause and no pace: an attempt may go at once without taking a slot."""
        controller = self.controller
        now = trio.current_time()
        if controller.unjudged_refusals:
            # Refusals whose time to be judged may have come: a herd of retries waking
            # together must meet the verdict before the first of them is sent.
            controller.poll(now)
        return controller.pace == math.inf and controller.paused_until <= now

    def earliest_pass(self) -> float:
        """The earliest time a task arriving now could pass (its place in line aside)."""
        interval = self.interval
        if interval:
            return max(self.reopens_at, self._last_pass + interval)
        return self.reopens_at

    def try_pass(self) -> bool:
        """Pass now if that needs no wait (taking a paced slot if pacing)."""
        now = trio.current_time()
        controller = self.controller
        if not controller.idle:  # the common case, open and no 429, has nothing to judge
            controller.poll(now)
        if self.reopens_at > now or self._lock.locked():
            return False
        interval = self.interval
        if not interval:
            return True
        if self._last_pass + interval > now:
            return False
        self._last_pass = now
        return True

    async def wait_pass(self) -> None:
        """Sleep until this task may send: after any pause, and at the current pace."""
        # Not a polling loop: each sleep ends exactly when something may have changed.
        while True:
            self.controller.poll(trio.current_time())
            until = self.reopens_at
            if until > trio.current_time():
                await trio.sleep_until(until)
                continue
            if not self.interval:
                return
            async with self._lock:
                slot = self._last_pass + self.interval
                if slot > trio.current_time():
                    # The pace may change while we sleep: wake at the nearer of the
                    # slot and a pause ending, and look again.
                    await trio.sleep_until(slot)
                    if self._last_pass + self.interval > trio.current_time():
                        continue
                if self.reopens_at > trio.current_time():
                    continue  # a pause began while we waited for our slot
                self._last_pass = trio.current_time()
                return


class TokenHold:
    """A limiter token that a request may give back while it waits, and take again.

    ``borrower`` is whom the token is held for (the task, or a stream that outlives
    the call that opened it). :attr:`held` says whether it is held now, so the
    ``finally`` that ends the request releases it only if so.
    """

    __slots__ = ("borrower", "held", "limiter")

    def __init__(self, limiter: trio.CapacityLimiter, borrower: object) -> None:
        self.limiter = limiter
        self.borrower = borrower
        self.held = False

    async def take(self) -> None:
        # A free token is taken without a trip through the scheduler (the send that
        # follows is a schedule point anyway); only a full limiter makes us wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.limiter.acquire_on_behalf_of_nowait(self.borrower)
        except trio.WouldBlock:
            await self.limiter.acquire_on_behalf_of(self.borrower)
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.limiter.release_on_behalf_of(self.borrower)


async def wait_to_send(
    gate: RateLimitGate, pacer: Pacer | None, request: httpx.Request, hold: TokenHold
) -> None:
    """Wait until an attempt may go: the gate, the pacer's budgets, then a token.

    Each wait is made without a limiter token (see the module docstring); the token is
    taken last, and the gate is looked at again after every wait, so a pause that
    began meanwhile is honoured before sending.
    """
    controller = gate.controller
    passed = False
    paced = pacer is None
    still_clear = getattr(pacer, "still_clear", None)
    try:
        while True:
            if not passed:
                if not gate.try_pass():
                    hold.give_back()
                    await gate.wait_pass()
                passed = True
                version = controller.version
            if not paced:
                assert pacer is not None
                # The budgets may wait a long time: never with a token in hand.
                hold.give_back()
                await pacer.before_attempt(request)
                paced = True
                if controller.version != version or gate.reopens_at > trio.current_time():
                    passed = False  # a pause or a new pace began during the budget wait
                    continue
            if not hold.held:
                await hold.take()
                if controller.version != version:
                    passed = False  # a pause or a new pace began while we waited for it
                    continue
            if still_clear is not None and not still_clear(request):
                # The budget the pacer passed looks spent now (fresher readings came
                # while we waited for the token): back to waiting, without the token.
                hold.give_back()
                paced = False
                continue
            return
    except BaseException:
        # Cancelled (or failed) before sending: what the pacer reserved is given back.
        abandon = getattr(pacer, "abandon", None)
        if abandon is not None:
            abandon(request)
        raise


def backoff_ceiling(policy: RetryPolicy, retry_number: int) -> float:
    """The most a retry's backoff could be: what a 429 without ``Retry-After`` pauses for.

    A jittered sample can be close to zero; a client-wide pause that short would let
    every task straight back into the limit.
    """
    return min(policy.max_delay, policy.base_delay * 2.0 ** min(retry_number, 62))
