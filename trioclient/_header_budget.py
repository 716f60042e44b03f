"""The server's budgets, read from its ``x-ratelimit-*`` headers, for every plain call.

A server that limits a key per minute says so on every answer: ``x-ratelimit-limit-*``,
``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*``, for requests and for tokens.
The batch engine has always paced by them (:class:`~trioclient._pacing.Budgets`). A
:class:`HeaderBudget` does the same for a client's plain calls
(``client.chat.completions.create`` in a nursery, embeddings, Responses): it is shared
by the client and its ``with_options`` copies, learns the budget from the first answer
that describes it, and from then on every attempt reserves its cost before it is sent,
waiting (without a limiter token) when the budget is spent. So a burst of calls against
a known budget is paced before the server has to refuse anything, and clients in other
processes on the same key take their share of it rather than all of it (see
:class:`~trioclient._pacing._HeaderLimit`).

A request that carries its own pacer (a batch's item, a Redis budget) is paced by that
pacer alone; its spending shows here as another client's, which is what it is to this
budget. Until an answer describes a budget, an attempt waits for nothing: it is only
counted as it goes and as it ends (so the first readings know which attempts were
still on their way), and each answer is looked at for the headers.
"""

from __future__ import annotations

from typing import Any

import httpx

from ._pacer import HEADER_BUDGET_EXTENSION
from ._pacing import BudgetPass, Budgets, estimate_tokens

__all__ = ["HeaderBudget"]

# Per request: its estimated token cost, and its BudgetPass once an attempt was paced.
_TOKENS = "trioclient.header_budget.tokens"
_PASS = "trioclient.header_budget.pass"
# Per attempt: what `Budgets.sent` returned, for reading its answer's headers.
_SENT = "trioclient.header_budget.sent"

# Which estimate of `estimate_tokens` a path's body takes (the last path segment).
_KINDS = {"completions": "chat", "embeddings": "embeddings", "responses": "responses"}


class HeaderBudget:
    """The server's request and token budgets as its headers describe them, shared by
    every plain call of a client (see the module docstring).

    It is a :class:`~trioclient._pacer.Pacer` that the request path consults only once
    :attr:`known` is true; until then it only counts attempts (:meth:`on_sent`) and
    reads answers.
    """

    __slots__ = ("_budgets", "known", "tokens_known")

    def __init__(self) -> None:
        self._budgets = Budgets(follow_headers=True)
        #: Whether an answer has described a budget: only then do attempts wait.
        self.known = False
        #: Whether a token budget is known: only then is a body's cost estimated.
        self.tokens_known = False

    def tag(self, request_extensions: dict[str, Any], path: str, body: Any) -> None:
        """Mark a request (its extensions, as it is built) as paced by this budget."""
        request_extensions[HEADER_BUDGET_EXTENSION] = self
        if self.tokens_known and body is not None:
            kind = _KINDS.get(path.rstrip("/").rpartition("/")[2], "chat")
            request_extensions[_TOKENS] = estimate_tokens(body, kind=kind)

    async def before_attempt(self, request: httpx.Request) -> None:
        """Wait until the budget has room for this attempt (the Pacer hook)."""
        extensions = request.extensions
        budget_pass = extensions.get(_PASS)
        if budget_pass is None:
            budget_pass = extensions[_PASS] = BudgetPass(self._budgets, extensions.get(_TOKENS, 0))
        await budget_pass.wait()

    def still_clear(self, request: httpx.Request) -> bool:
        """Right before sending (a slot in hand): whether the budget still covers this
        attempt, which then counts as sent. A burst of calls passes a budget that looks
        ample, then waits for ``max_concurrent`` slots while the answers of the first
        show it spent; sent then, they would all be refused. ``False`` sends it back to
        :meth:`before_attempt`, without the slot."""
        budget_pass: BudgetPass | None = request.extensions.get(_PASS)
        if budget_pass is None or budget_pass.pending is None:
            return True  # not paced (sent before the budget was known): counted already
        sent = budget_pass.go()
        if sent is None:
            return False
        request.extensions[_SENT] = sent
        return True

    def abandon(self, request: httpx.Request) -> None:
        """The paced attempt will not be sent (cancelled): give back its reservation."""
        budget_pass: BudgetPass | None = request.extensions.get(_PASS)
        if budget_pass is not None:
            budget_pass.abandon()

    def after_attempt(self, request: httpx.Request) -> None:
        """The attempt is over, answered or not: no longer awaited (see
        :meth:`~trioclient._pacing.Budgets.unanswered`)."""
        sent = request.extensions.get(_SENT)
        if sent is not None:
            self._budgets.unanswered(sent)

    def on_sent(self, request: httpx.Request) -> None:
        """An attempt of ``request`` goes now, unpaced: count it against the budget."""
        request.extensions[_SENT] = self._budgets.sent(request.extensions.get(_TOKENS, 0))

    def state(self) -> tuple[float | None, float | None]:
        """``(pace, share)``: the requests a second the server's budget allows this
        client now (its share of the refill), and that share; ``None`` for both until
        an answer has described a requests budget."""
        limit = self._budgets.header_requests
        if limit.bucket is None:
            return None, None
        return limit.rate * limit.share, limit.share

    def after_response(self, response: httpx.Response) -> None:
        """Read the answer's headers, if it has any (the Pacer hook)."""
        sent = response.request.extensions.get(_SENT)
        if sent is None:
            return  # not counted as sent here (cannot happen through the request path)
        budgets = self._budgets
        budgets.observe(response, sent)
        self.known = budgets.header_requests.bucket is not None or (
            budgets.header_tokens.bucket is not None
        )
        self.tokens_known = budgets.header_tokens.bucket is not None
