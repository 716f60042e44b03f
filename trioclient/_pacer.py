"""The pacer hook: how a batch (or a shared budget) paces the attempts of a request.

A leaf: the request path (:mod:`trioclient._requester`, :mod:`trioclient._attempt`)
calls the hook, and the pacers that implement it (the batch engine's budgets in
:mod:`trioclient._pacing`, the Redis budget in :mod:`trioclient._shared_budget`) know
nothing of the request path. A request carries its pacer in
``request.extensions[PACER_EXTENSION]``, so the hot path pays one dictionary lookup
when there is none.
"""

from __future__ import annotations

from typing import Protocol

import httpx

__all__ = ["HEADER_BUDGET_EXTENSION", "PACER_EXTENSION", "Pacer"]

#: The ``httpx.Request.extensions`` key under which a request carries its :class:`Pacer`.
PACER_EXTENSION = "trioclient.pacer"
#: The key under which a request without a pacer of its own carries its client's
#: :class:`~trioclient._header_budget.HeaderBudget` (a pacer too, consulted only once
#: the server's headers have described a budget).
HEADER_BUDGET_EXTENSION = "trioclient.header_budget"


class Pacer(Protocol):
    """What the request path asks of a pacer.

    A pacer may also have these; the request path calls each when it is there:

    - ``still_clear(request) -> bool``: right before the attempt is sent, a
      ``max_concurrent`` slot in hand (which may have taken a while). ``True``: the
      attempt goes now, and the pacer counts it as sent. ``False``: the budget looks
      spent after all; the slot is given back and ``before_attempt`` is awaited again.
    - ``abandon(request)``: the attempt ``before_attempt`` let through will not be sent
      (cancelled while it waited for its slot): give back what it reserved.
    - ``after_attempt(request)``: the attempt sent is over, answered or not (after
      ``after_response``, if there was an answer).
    - ``after_usage(usage)``: the true token usage of an answer (a shared budget
      corrects what it charged by estimate).
    """

    async def before_attempt(self, request: httpx.Request) -> None:
        """Wait until this attempt may be sent (every attempt, retries included)."""

    def after_response(self, response: httpx.Response) -> None:
        """See every response's headers (any status) as soon as they arrive."""
