"""Pacing maths: reset-duration parsing, token estimates, the shared token bucket, and
the server's limits read from ``x-ratelimit-*`` headers. Timing runs on trio's
autojump clock, so a minute of budget costs no real time."""

from __future__ import annotations

import itertools
import math

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trioclient._pacing import (
    Budgets,
    TokenBucket,
    describes_a_budget,
    estimate_tokens,
    parse_reset_duration,
    reset_resolution,
)
from trioclient.testing import format_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("1h2m3s", 3723.0),
        ("2h0m0s", 7200.0),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("250ns", 2.5e-7),
        ("0s", 0.0),
        ("2", 2.0),
        ("0.75", 0.75),
        (" 3s ", 3.0),
    ],
)
def test_reset_durations_parse(text: str, seconds: float) -> None:
    assert parse_reset_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "abc", "1x", "1s2", "-1s", "1..2s", "nan", "inf", "1 s", "1" + "0" * 400 + "s"]
)
def test_unreadable_reset_durations_are_none(text: str) -> None:
    assert parse_reset_duration(text) is None


@given(st.floats(min_value=0, max_value=200_000, allow_nan=False))
def test_reset_parser_reads_what_the_embedded_server_writes(seconds: float) -> None:
    # The server formats durations with its own (independent) code.
    parsed = parse_reset_duration(format_duration(seconds))
    assert parsed is not None
    assert parsed == pytest.approx(seconds, abs=1e-3)


@pytest.mark.parametrize(
    ("text", "rounding"),
    [
        ("1s", 1.0),
        ("6m0s", 1.0),
        ("1.25s", 0.01),
        ("59.425s", 0.001),
        ("1m30.5s", 0.1),
        ("20ms", 0.001),
        ("0.5ms", 0.0001),
        ("2", 1.0),
        ("1.5", 0.1),
        ("", 1.0),
        ("soon", 1.0),
        ("1x", 1.0),
    ],
)
def test_reset_resolution_is_the_last_digit(text: str, rounding: float) -> None:
    assert reset_resolution(text) == pytest.approx(rounding)


@given(st.floats(min_value=0, max_value=200_000, allow_nan=False))
def test_reset_resolution_covers_the_embedded_servers_rounding(seconds: float) -> None:
    text = format_duration(seconds)
    parsed = parse_reset_duration(text)
    assert parsed is not None
    assert abs(parsed - seconds) <= reset_resolution(text) * (1 + 1e-9) + 1e-12


def body(content: str = "hello", **params: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **params}


def test_token_estimate_counts_text_and_answer_budget() -> None:
    short = estimate_tokens(body("hi", max_tokens=100))
    long = estimate_tokens(body("x" * 4000, max_tokens=100))
    assert 100 < short < 120
    assert long - short == pytest.approx(1000, abs=2)
    # max_completion_tokens wins over max_tokens; n multiplies the answer budget.
    assert estimate_tokens(body("hi", max_tokens=100, max_completion_tokens=10)) < 30
    assert estimate_tokens(body("hi", max_tokens=100, n=3)) == pytest.approx(3 * short, abs=25)
    assert estimate_tokens(body("hi")) > 500  # the default answer budget
    assert estimate_tokens(body("hi"), default_completion_tokens=7) < 30


async def test_rpm_budget_paces_requests(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets(rpm=120)  # two a second, one second's worth up front
    sent: list[float] = []

    async def one() -> None:
        await budgets.acquire(10)
        sent.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(60):
            nursery.start_soon(one)
    sent = [t - start for t in sent]
    assert sent[:2] == [0.0, 0.0]
    assert sent[-1] == pytest.approx(29.0, abs=0.01)
    gaps = [b - a for a, b in itertools.pairwise(sent[1:])]
    assert all(g == pytest.approx(0.5, abs=1e-6) for g in gaps)


async def test_idle_bucket_does_not_store_more_than_its_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budgets = Budgets(rpm=120)
    await trio.sleep(600)  # ten idle minutes must not bank 1,200 requests
    start = trio.current_time()
    for _ in range(6):
        await budgets.acquire(1)
    assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)


async def test_tpm_refund_wakes_waiters_early(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets(tpm=600)  # 10 tokens a second, 10 up front
    await budgets.acquire(10)
    finished = trio.Event()

    async def waiter() -> None:
        await budgets.acquire(100)  # would wait 10 s
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        assert not finished.is_set()
        budgets.refund_tokens(100)  # the first request's estimate was far too high
        with trio.fail_after(0.01):
            await finished.wait()


async def test_usage_above_the_estimate_charges_the_difference(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budgets = Budgets(tpm=600)
    await budgets.acquire(10)
    budgets.refund_tokens(-50)  # the answer cost 50 more than estimated
    start = trio.current_time()
    await budgets.acquire(10)
    assert trio.current_time() - start == pytest.approx(6.0, abs=1e-6)


async def test_cancelled_waiter_gives_its_reservation_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budgets = Budgets(rpm=60)  # one a second
    await budgets.acquire(1)
    with trio.move_on_after(0.5):
        await budgets.acquire(1)  # reserved the slot at t=1, then gave up
    start = trio.current_time()
    await budgets.acquire(1)
    # Had the abandoned reservation been kept, this would wait until t=2.
    assert trio.current_time() - start == pytest.approx(0.5, abs=1e-6)


async def test_token_bucket_serves_in_order(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket.starting_at(rate=1.0, capacity=1.0, level=0.0)
    order: list[int] = []

    async def take(i: int, ticket: float) -> None:
        await bucket.wait(ticket)
        order.append(i)

    async with trio.open_nursery() as nursery:
        # Reserved in this order (3 tokens, then 1, then 1): served in this order.
        for i, cost in enumerate([3, 1, 1]):
            nursery.start_soon(take, i, bucket.reserve(cost))
    assert order == [0, 1, 2]
    assert trio.current_time() == pytest.approx(5.0, abs=1e-6)


def test_budgets_reject_bad_numbers() -> None:
    for bad in (0, -1, math.inf, math.nan, True, "10"):
        with pytest.raises(ValueError, match="rpm must be a positive number"):
            Budgets(rpm=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tpm"):
        Budgets(tpm=0)


def headers(limit: int, remaining: int, reset: str) -> httpx.Headers:
    return httpx.Headers(
        {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": reset,
        }
    )


def response(h: httpx.Headers, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers=h)


async def test_headers_teach_rate_and_level(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets()
    # Nothing known yet: no waiting at all.
    reservation = await budgets.acquire(1)
    sent = budgets.sent(1, reservation)
    # The server (60 rpm: 1 per second) has 10 left of 60, full again in 50 s.
    budgets.observe(response(headers(60, 10, "50s")), sent)
    limit = budgets.header_requests
    assert limit.bucket is not None
    assert limit.bucket.rate == pytest.approx(1.0, rel=0.02)
    start = trio.current_time()
    for _ in range(20):
        reservation = await budgets.acquire(1)
        budgets.sent(1, reservation)
    # ~9.75 go at once (10 less the quarter-token margin), the rest at one a second.
    assert trio.current_time() - start == pytest.approx(10.25, abs=0.3)


async def test_stale_header_reading_is_ignored(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets()
    reservation = await budgets.acquire(1)
    first = budgets.sent(1, reservation)
    reservation = await budgets.acquire(1)
    second = budgets.sent(1, reservation)
    budgets.observe(response(headers(60, 30, "30s")), second)
    level = budgets.header_requests.bucket.level()  # type: ignore[union-attr]
    # The second reading counted the first attempt (not over when the second went) as
    # still to come. The first's answer, older, must not set the level from its 50
    # left; it only shows that the first reached the server before the second (50 >
    # 30), so it is not to come after all: one request back, no more.
    budgets.observe(response(headers(60, 50, "10s")), first)
    assert budgets.header_requests.bucket.level() == pytest.approx(level + 1)  # type: ignore[union-attr]


async def test_headers_count_requests_sent_after_the_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budgets = Budgets()
    reservation = await budgets.acquire(1)
    early = budgets.sent(1, reservation)
    for _ in range(5):  # five more leave before the first answer comes back
        reservation = await budgets.acquire(1)
        budgets.sent(1, reservation)
    budgets.observe(response(headers(600, 100, "50s")), early)  # 10 per second
    bucket = budgets.header_requests.bucket
    assert bucket is not None
    # 100 left when the server answered, less the 5 sent since, less the margin
    # (a quarter of a token).
    assert bucket.level() == pytest.approx(94.75, abs=0.01)


async def test_headers_off_means_no_header_pacing(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets(follow_headers=False)
    reservation = await budgets.acquire(1)
    budgets.observe(response(headers(60, 0, "60s")), budgets.sent(1, reservation))
    start = trio.current_time()
    await budgets.acquire(1)
    assert trio.current_time() == start


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["x-ratelimit-remaining-requests"], True),
        (["X-RateLimit-Remaining-Tokens"], True),  # as some providers spell it
        (["x-ratelimit-limit-requests", "x-ratelimit-reset-requests"], False),
        (["content-type", "x-ratelimit-remaining"], False),
        ([], False),
    ],
)
def test_a_budget_is_recognised_in_the_raw_head(names: list[str], expected: bool) -> None:
    headers = httpx.Headers([(name, "1") for name in names])
    assert describes_a_budget(headers) is expected


class ProviderBucket:
    """A provider's requests bucket on trio's clock, read as it admits an attempt:
    ``remaining`` rounded down, the time to full to the millisecond (``coarse`` or
    ``written="rounded"``: to the second; ``written="cut"``: the second, cut)."""

    def __init__(
        self, limit: int, rate: float, level: float, coarse: bool = False, written: str = "ms"
    ) -> None:
        self.limit, self.rate, self.level = limit, rate, level
        self.written = "rounded" if coarse else written
        self.updated = trio.current_time()

    def admit(self) -> httpx.Response:
        """Take a token, or refuse (429) with less than one left."""
        now = trio.current_time()
        self.level = min(self.limit, self.level + self.rate * (now - self.updated))
        self.updated = now
        status = 429 if self.level < 1 else 200
        if status == 200:
            self.level -= 1
        seconds = (self.limit - self.level) / self.rate
        if self.written == "rounded":
            reset = f"{round(seconds)}s"
        elif self.written == "cut":
            reset = f"{math.floor(seconds)}s"
        else:
            reset = format_duration(seconds)
        return response(headers(self.limit, math.floor(self.level), reset), status)


async def wait_for_a_fraction(server: ProviderBucket, fraction: float) -> None:
    """Sleep until the level after the next admission ends in ``fraction``."""
    after = server.level - 1
    target = math.floor(after) + fraction
    await trio.sleep((target + (target < after) - after) / server.rate)


async def send_one(budgets: Budgets, server: ProviderBucket) -> None:
    sent = budgets.sent(1, await budgets.acquire(1))
    budgets.observe(server.admit(), sent)


async def send_each_second(
    budgets: Budgets, server: ProviderBucket, seconds: int, others: float = 0.0
) -> None:
    """One attempt a second for ``seconds``, while another program spends ``others``
    tokens a second."""
    for _ in range(seconds):
        await trio.sleep(1)
        server.level -= others
        await send_one(budgets, server)


async def test_readings_together_pin_the_refill_rate(autojump_clock: trio.testing.MockClock) -> None:
    # One reading bounds the rate within a token of its deficit (about 1 in 80 here);
    # the readings of one bucket, each at its own fraction of a token, pin it together.
    budgets = Budgets()
    server = ProviderBucket(120, rate=1.37, level=40.0)
    await send_each_second(budgets, server, 12)
    limit = budgets.header_requests
    assert limit.rate_low <= 1.37 <= limit.rate_high
    assert limit.rate == pytest.approx(1.37, rel=0.001)
    # The bucket changes its refill (a new tier): a reading the pinned rate cannot
    # explain starts the estimate again from that reading.
    await trio.sleep(1)
    server.rate = 0.5
    await send_one(budgets, server)
    assert limit.rate == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize("coarse", [False, True])
async def test_the_reset_tells_what_remaining_rounded_away(
    autojump_clock: trio.testing.MockClock, coarse: bool
) -> None:
    # With the rate pinned by earlier readings, a reading of `remaining: 43` whose
    # reset says 43.9 gives the next attempts most of that 0.9 of a token (never more
    # than the server has): rounded down, each would wait about 0.65 s longer than it
    # must. A reset written to the second ("59s") cannot tell a fraction of a token
    # over a minute: `remaining` alone sets the level.
    budgets = Budgets()
    server = ProviderBucket(120, rate=1.37, level=40.0, coarse=coarse)
    await send_each_second(budgets, server, 12)
    await wait_for_a_fraction(server, 0.9)
    await send_one(budgets, server)
    assert server.level == pytest.approx(43.9)
    bucket = budgets.header_requests.bucket
    assert bucket is not None
    seen = bucket.level() + 0.25  # (the margin)
    if coarse:
        assert seen == pytest.approx(43.0)
    else:
        assert 43.75 <= seen <= 43.9


@pytest.mark.parametrize("written", ["ms", "rounded", "cut"])
async def test_a_level_read_from_the_reset_is_never_above_the_servers(
    autojump_clock: trio.testing.MockClock, written: str
) -> None:
    # However the reset is written (to the millisecond, or to the second, rounded or
    # cut) and whatever the bucket's level (near empty, or full again: "0s"), the
    # level projected right after a reading never exceeds what the server has.
    import random

    for seed in range(4):
        rng = random.Random(seed)
        budgets = Budgets()
        server = ProviderBucket(180, rate=3.0, level=180.0, written=written)
        for _ in range(300):
            await trio.sleep(rng.choice([0.0, 0.05, 0.3, 1.0, 5.0, 70.0]))
            await send_one(budgets, server)
            bucket = budgets.header_requests.bucket
            if bucket is not None:
                assert bucket.level() + 0.25 <= server.level + 1e-9


async def test_refusals_of_a_burst_sent_before_the_budget_was_known_teach_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Six attempts go before any answer describes the budget; the server has four
    # left (and a fraction) and refuses two. The projection let none of them go, so the refusals say
    # nothing of when the server reads its bucket: the refill still counts from the
    # send. (A server that reads as it answers is learnt from the refusal of an
    # attempt the projection let go: see test_header_budget.py.)
    budgets = Budgets()
    server = ProviderBucket(120, rate=2.0, level=4.5)
    attempts = [(budgets.sent(1, await budgets.acquire(1)), server.admit()) for _ in range(6)]
    assert [answer.status_code for _, answer in attempts] == [200] * 4 + [429] * 2
    await trio.sleep(0.5)
    for sent, answer in attempts:
        budgets.observe(answer, sent)
    assert not budgets.header_requests.read_at_answer


async def test_with_others_on_the_key_the_reset_fraction_is_not_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Another program spends two tokens a second beside this client's one: the share
    # this client measures is below one, and what the other spends between readings
    # is not known to a fraction of a token. A reading whose reset shows 0.99 of a
    # token beyond `remaining` gives this client its share of `remaining` alone.
    budgets = Budgets()
    server = ProviderBucket(120, rate=2.0, level=100.0)
    await send_each_second(budgets, server, 12, others=2)
    limit = budgets.header_requests
    assert limit.share < 0.8
    await wait_for_a_fraction(server, 0.99)
    await send_one(budgets, server)
    assert server.level % 1 == pytest.approx(0.99)
    assert limit.bucket is not None
    # Its share of what `remaining` says, less the margin (a quarter of a token).
    expected = limit.share * math.floor(server.level) - 0.25
    assert limit.bucket.level() == pytest.approx(expected)


async def test_a_refusal_that_leaves_this_budget_covering_the_attempt_teaches_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A 429 whose reading shows a hundred requests left was not this budget's doing (the
    # tokens budget, or overload): the requests budget keeps counting its refill from
    # the send.
    budgets = Budgets()
    server = ProviderBucket(120, rate=2.0, level=100.0)
    await send_each_second(budgets, server, 3)
    await trio.sleep(1)
    sent = budgets.sent(1, await budgets.acquire(1))
    refused = server.admit()
    assert int(refused.headers["x-ratelimit-remaining-requests"]) > 50
    budgets.observe(response(refused.headers, 429), sent)
    assert not budgets.header_requests.read_at_answer
    # The same refusal with the budget spent does teach it.
    await trio.sleep(1)
    sent = budgets.sent(1, await budgets.acquire(1))
    budgets.observe(response(headers(120, 0, "59.5s"), 429), sent)
    assert budgets.header_requests.read_at_answer


async def test_a_give_back_never_fills_a_bucket_past_its_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket.starting_at(rate=1.0, capacity=10.0, level=10.0)
    bucket.adjust(5)  # an attempt counted as spent turns out not to have been
    assert bucket.level() == 10.0
    bucket.adjust(-4)
    bucket.adjust(5)
    assert bucket.level() == 10.0
    bucket.adjust(-4)
    bucket.adjust(3)
    assert bucket.level() == 9.0
