"""Pacing by the server's ``x-ratelimit-*`` headers: the share of a budget this client
measures as its own, the plain calls that wait for the budget, and the bookkeeping of
attempts that are paced but never sent.

The shares are worked out against a simulated server bucket on the autojump clock: the
readings are the server's, the spending beside ours is a second program's.
"""

from __future__ import annotations

import math
import statistics

import httpx
import pytest
import trio
import trio.testing
from _fakes import completion

import trioclient
from trioclient._pacing import Budgets
from trioclient.testing import open_server

MESSAGES = [{"role": "user", "content": "hi"}]


class ServerBucket:
    """A requests-per-minute budget as a provider keeps it, answering with its headers."""

    def __init__(self, per_minute: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.updated = 0.0
        self.admitted = 0
        self.refused = 0

    def _refill(self) -> None:
        now = trio.current_time()
        self.level = min(self.limit, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def spend(self) -> bool:
        self._refill()
        if self.level < 1:
            self.refused += 1
            return False
        self.level -= 1
        self.admitted += 1
        return True

    def answer(self, admitted: bool) -> httpx.Response:
        self._refill()
        remaining = math.floor(self.level)
        reset = (self.limit - self.level) / self.rate
        headers = {
            "x-ratelimit-limit-requests": str(int(self.limit)),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset:.3f}s",
        }
        return httpx.Response(200 if admitted else 429, headers=headers)


async def paced_client(
    server: ServerBucket, budgets: Budgets, until: float, latency: float = 0.1
) -> int:
    """Send as fast as ``budgets`` allows until ``until``; returns the attempts sent."""
    sent = 0
    while trio.current_time() < until:
        reservation = await budgets.acquire(1)
        attempt = budgets.sent(1, reservation)
        sent += 1
        admitted = server.spend()
        await trio.sleep(latency)  # the answer's latency
        budgets.observe(server.answer(admitted), attempt)
    return sent


async def other_program(server: ServerBucket, per_second: float, until: float) -> None:
    while trio.current_time() < until:
        server.spend()
        await trio.sleep(1 / per_second)


async def test_a_lone_client_measures_the_whole_budget_as_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = ServerBucket(per_minute=120)
    budgets = Budgets()
    with trio.fail_after(600):
        await paced_client(server, budgets, until=60.0)
    assert budgets.header_requests.share == 1.0
    # The 120 at once, then two a second: all of the budget, none refused.
    assert server.refused == 0
    assert server.admitted >= 120 + 2 * 60 * 0.95


async def test_a_server_reading_its_bucket_as_it_answers_is_learnt_from_a_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # This server reads its bucket as it answers, 0.5 s after admitting: its reading
    # holds that refill already. Counted again from the send, the projection is a
    # token high (at 2 a second), and four callers at once find it out: without what
    # the refusal teaches, some 24 of them in two minutes. The first such refusal
    # teaches the client to count the refill from the answer.
    server = ServerBucket(per_minute=120)
    budgets = Budgets()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(paced_client, server, budgets, 120.0, 0.5)
    assert budgets.header_requests.read_at_answer
    assert server.refused <= 3, server.refused
    assert server.admitted >= (120 + 240) * 0.95


async def test_a_second_program_on_the_key_is_measured_and_left_its_share(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Another program spends one request a second of the two the budget refills. A
    # client that counted the whole refill as its own would reach for the other's
    # tokens and be refused about every other second; this one measures its share
    # (about half) and spends what is left.
    server = ServerBucket(per_minute=120)
    budgets = Budgets()
    shares: list[float] = []

    async def watch_the_share() -> None:
        # Read while both spend (the last readings, as the other program stops, are
        # of a key no longer shared).
        await trio.sleep(60)
        while trio.current_time() < 115:
            shares.append(budgets.header_requests.share)
            await trio.sleep(0.5)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_program, server, 1.0, 120.0)
            nursery.start_soon(watch_the_share)
            sent = await paced_client(server, budgets, until=120.0)
    share = statistics.median(shares)
    assert 0.35 < share < 0.65, share
    assert server.refused <= 0.03 * sent, (server.refused, sent)
    # The budget was used, not left idle: 120 + 240 refilled, less the other's 120.
    assert server.admitted >= (120 + 240) * 0.9


async def test_plain_calls_wait_for_a_token_budget_instead_of_earning_429s(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    # Three tokens a minute: the first call spends them all (its answer says so), the
    # second waits about 20 s for the one token its input costs, then succeeds.
    async with (
        open_server(tpm=3) as server,
        trioclient.Client(
            api_key="sk-tpm",
            base_url=server.base_url,
            retry=trioclient.RetryPolicy(max_retries=0),
        ) as client,
    ):
        with trio.fail_after(600):
            await client.embeddings.create(model="emb", input="one two three")
            start = trio.current_time()
            await client.embeddings.create(model="emb", input="four")
            waited = trio.current_time() - start
        stats = client.statistics()
    assert stats.rate_limited == 0 and stats.requests_succeeded == 2
    assert 15 < waited < 60, waited


async def test_a_call_cancelled_after_passing_the_budget_gives_its_reservation_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One slot. The first call holds it for 10 s; the second passes the budget (ample)
    # and waits for the slot, and is cancelled there: its attempt never goes, so what
    # it reserved of the budget must not stay reserved.
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-slow"):
            await trio.sleep(10)
        return httpx.Response(
            200,
            json=completion("ok", id="c", created=0, tokens=None),
            headers={
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-requests": "50",
                "x-ratelimit-reset-requests": "50s",
            },
        )

    async with trioclient.Client(
        api_key="sk-x",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(handler),
        max_concurrent=1,
    ) as client:
        await client.chat.completions.create(model="m", messages=MESSAGES)  # the budget
        limit = client._requester.connection.header_budget._budgets.header_requests  # type: ignore[union-attr]
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: client.chat.completions.create(
                        model="m", messages=MESSAGES, extra_headers={"x-slow": "1"}
                    )
                )
                await trio.sleep(1)
                with trio.move_on_after(1):
                    await client.chat.completions.create(model="m", messages=MESSAGES)
                assert limit.unsent == 0
                assert client.statistics().requests_sent == 2


@pytest.mark.parametrize("value", [None, 1, "yes"])
def test_follow_rate_limit_headers_must_be_true_or_false(value: object) -> None:
    with pytest.raises(TypeError, match="follow_rate_limit_headers"):
        trioclient.Client(
            api_key="sk-x",
            base_url="http://127.0.0.1:9/v1",
            follow_rate_limit_headers=value,  # type: ignore[arg-type]
        )
