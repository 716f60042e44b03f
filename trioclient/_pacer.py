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

__all__ = ["PACER_EXTENSION", "Pacer"]

#: The ``httpx.Request.extensions`` key under which a request carries its :class:`Pacer`.
PACER_EXTENSION = "trioclient.pacer"


class Pacer(Protocol):
    """What the request path asks of a pacer.

    A pacer may also have ``after_usage(usage)``: the request path calls it, when it is
    there, with the true token usage of an answer (a shared budget corrects what it
    charged by estimate).
    """

    async def before_attempt(self, request: httpx.Request) -> None:
        """Wait until this attempt may be sent (every attempt, retries included)."""

    def after_response(self, response: httpx.Response) -> None:
        """See every response's headers (any status) as soon as they arrive."""
