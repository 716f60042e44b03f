"""The 429 gate: one pause for the whole client, then a paced return, not a herd.

A mock server enforces a token bucket (as the real APIs do: it starts full and refills
continuously) and answers 429 with the exact wait, on trio's autojump clock.
"""

from __future__ import annotations

import itertools
import math

import httpx
import pytest
import trio
import trio.testing
from _fakes import completion

import trioclient
from trioclient._gate import RateLimitGate

BODY = completion("ok", id="c", created=0, tokens=None)
MESSAGES = [{"role": "user", "content": "hi"}]


class BucketServer:
    """Admits ``per_minute`` requests a minute from a bucket that starts full."""

    def __init__(self, per_minute: float, latency: float = 0.05) -> None:
        self.rate = per_minute / 60.0
        self.capacity = per_minute
        self.level = float(per_minute)
        self.updated = 0.0
        self.latency = latency
        self.answered = 0
        self.refused = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        now = trio.current_time()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level < 1:
            self.refused += 1
            wait_ms = math.ceil((1 - self.level) / self.rate * 1000)
            return httpx.Response(
                429,
                json={"error": {"message": "slow down"}},
                headers={"retry-after-ms": str(wait_ms)},
            )
        self.level -= 1
        await trio.sleep(self.latency)
        self.answered += 1
        return httpx.Response(200, json=BODY)


async def run_burst(
    server: BucketServer, requests: int, concurrency: int
) -> trioclient.ClientStatistics:
    async with trioclient.Client(
        api_key="sk-gate",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(server),
        max_concurrent=concurrency,
    ) as client:
        with trio.fail_after(3600):
            async with trio.open_nursery() as nursery:
                for _ in range(requests):
                    nursery.start_soon(
                        lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                    )
        return client.statistics()


async def test_a_burst_past_the_budget_all_succeeds_with_few_429s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = BucketServer(per_minute=60)
    start = trio.current_time()
    stats = await run_burst(server, requests=100, concurrency=16)
    elapsed = trio.current_time() - start
    assert stats.requests_succeeded == 100 and stats.requests_failed == 0
    # 60 at once, then 40 at the refill rate of one a second: about 40 s is the floor.
    assert 39 < elapsed < 40 * 1.25
    # A herd would earn ~15 429s per refill (~600 in all); the paced gate earns few.
    assert stats.rate_limited == server.refused
    assert server.refused <= 40


async def test_an_isolated_429_slows_the_client_only_briefly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = RateLimitGate()
    gate.close_for(1.0)
    assert not gate.is_open() and gate.closures == 1
    passes: list[float] = []

    async def sender() -> None:
        for _ in range(80):
            await gate.wait_open()
            passes.append(trio.current_time())
            if gate.interval:
                gate.record_success()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
    assert passes[0] == 1.0  # the pause
    assert gate.is_open()  # ...then back to full speed after a run of successes
    # The paced stretch costs about ten intervals' worth (1 + 0.9 + 0.81 + ...).
    assert passes[-1] < 1.0 + 11.0
    gaps = [b - a for a, b in itertools.pairwise(passes)]
    assert gaps[0] > gaps[10] > gaps[20]  # the interval shrinks with each success


async def test_a_429_while_pacing_slows_down_further(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = RateLimitGate()
    gate.close_for(0.5)
    first = gate.interval
    await gate.wait_open()
    gate.close_for(0.4, sent_at=trio.current_time())  # sent at the pace: too fast
    assert gate.interval == 2 * first
    assert gate.reopens_at == trio.current_time() + 0.4


async def test_random_429s_cannot_drive_the_pace_down_without_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = RateLimitGate()
    for _ in range(50):  # a server that says "0.2 s" fifty times running
        gate.close_for(0.2)
    assert gate.interval == pytest.approx(0.8)  # at most four times the server's word


async def test_429s_of_requests_already_in_flight_do_not_slow_the_pace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A budget of one request a second that starts empty: ten requests in flight all
    # meet the limit at once. Their ten 429s say nothing about the pace the gate will
    # set; only 429s of attempts sent through that pace do.
    server = BucketServer(per_minute=60)
    server.level = 0.0
    start = trio.current_time()
    stats = await run_burst(server, requests=10, concurrency=10)
    elapsed = trio.current_time() - start
    assert stats.requests_succeeded == 10
    assert elapsed < 10 * 1.3  # ten requests at one a second
    assert server.refused <= 10 + 3


async def test_a_429_that_ends_a_request_still_pauses_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sent_at: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        if len(sent_at) == 1:
            return httpx.Response(
                429, json={"error": {"message": "wait"}}, headers={"retry-after": "3"}
            )
        return httpx.Response(200, json=BODY)

    async with trioclient.Client(
        api_key="sk-gate",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(handler),
        retry=trioclient.RetryPolicy(max_retries=0),
    ) as client:
        with pytest.raises(trioclient.RateLimitError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        with trio.fail_after(10):
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert sent_at[1] >= 3.0


async def test_a_long_stretch_at_the_limit_with_many_in_flight_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 200 requests, 64 in flight, a budget of 60 a minute: 140 of them must wait for
    # the refill, one a second, and every task keeps within its retry budget.
    server = BucketServer(per_minute=60)
    start = trio.current_time()
    stats = await run_burst(server, requests=200, concurrency=64)
    assert stats.requests_succeeded == 200 and stats.requests_failed == 0
    assert trio.current_time() - start < 140 * 1.1
