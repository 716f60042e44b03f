"""The Redis-shared budget, against a real redis-server started for each test.

The GCRA arithmetic is checked exactly by standing in for the server's clock (the
script's test seam); what depends on real time (several clients, several processes)
is checked by bounds that a slow machine cannot break: an upper bound on what was
admitted, which only a budget that does not share can exceed.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _redis_server import RedisServer, running_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trioclient
from trioclient._redis import RedisError, RedisPool, RedisURL
from trioclient._shared_budget import RedisBudget
from trioclient.testing import open_server

PASSWORD = "s3cret-pw-9f2"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture
def redis_pw() -> Iterator[RedisServer]:
    yield from running_redis(PASSWORD)


def tat(server: RedisServer, key: str, field: str) -> int:
    reply = server.command("HGET", key, field)
    assert reply.startswith(b"$"), reply
    return int(reply.split(b"\r\n")[1])


# -- URLs and secrets ----------------------------------------------------------------


def test_url_parts_and_redaction() -> None:
    url = RedisURL.parse(f"redis://:{PASSWORD}@example.com:6390/3")
    assert (url.host, url.port, url.db, url.password) == ("example.com", 6390, 3, PASSWORD)
    assert url.redacted == "redis://:***@example.com:6390/3"
    assert PASSWORD not in repr(url)
    assert RedisURL.parse("redis://localhost").redacted == "redis://localhost:6379/0"
    user = RedisURL.parse("redis://bob:p%40ss@h/1")
    assert (user.username, user.password, user.redacted) == (
        "bob",
        "p@ss",
        "redis://bob:***@h:6379/1",
    )
    budget = RedisBudget(f"redis://:{PASSWORD}@h/0", key="k", rpm=60)
    assert PASSWORD not in repr(budget)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://:{PASSWORD}@h/0", "must start with redis://"),
        (f"rediss://:{PASSWORD}@h/0", "TLS is not supported"),
        (f"redis://:{PASSWORD}@h/zero", "database number"),
        (f"redis://:{PASSWORD}@h:99999/0", "bad port"),
        (f"redis://:{PASSWORD}@/0", "no host"),
        (f"redis://:{PASSWORD}/x@h/0", "bad port"),  # an unescaped "/" in the password
        (f"redis://:{PASSWORD}@x@h/zero", "database number"),
    ],
)
def test_bad_urls_say_why_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        RedisURL.parse(url)
    assert PASSWORD not in str(info.value)


def test_bad_budget_options() -> None:
    with pytest.raises(ValueError, match="rpm, tpm or both"):
        RedisBudget("redis://h", key="k")
    with pytest.raises(ValueError, match="rpm must be a positive number"):
        RedisBudget("redis://h", key="k", rpm=0)
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        RedisBudget("redis://h", key="", rpm=1)
    with pytest.raises(ValueError, match="on_unreachable"):
        RedisBudget("redis://h", key="k", rpm=1, on_unreachable="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"budget must be a trioclient\.RedisBudget"):
        trioclient.Client(api_key="sk", budget=object())  # type: ignore[arg-type]


async def test_wrong_password_is_a_clear_error_without_the_password(
    redis_pw: RedisServer,
) -> None:
    wrong = f"redis://:{PASSWORD}-wrong@127.0.0.1:{redis_pw.port}/0"
    budget = RedisBudget(wrong, key="k", rpm=60)
    with trio.fail_after(10), pytest.raises(trioclient.SharedBudgetError) as info:
        await budget.acquire(0)
    text = f"{info.value} {info.value.__cause__}"
    assert "AUTH refused" in text and "WRONGPASS" in text
    assert PASSWORD not in text and ":***@" in text
    await budget.aclose()


async def test_password_and_db_from_the_url(redis_pw: RedisServer) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_pw.port}/2"
    budget = RedisBudget(url, key="budget:db2", rpm=60)
    with trio.fail_after(10):
        await budget.acquire(0)
        await budget.aclose()
    assert redis_pw.command("EXISTS", "budget:db2") == b":0\r\n"  # not in db 0
    assert redis_pw.command("SELECT", "2").startswith(b"+OK")  # (separate connection)
    pool = RedisPool(RedisURL.parse(url))
    with trio.fail_after(10):
        assert await pool.execute("EXISTS", "budget:db2") == 1
        await pool.aclose()


# -- GCRA, exactly (the server's clock stood in for) ----------------------------------


async def test_gcra_admits_the_burst_then_exactly_the_rate(redis: RedisServer) -> None:
    # rpm=600: one request every 100 ms, a burst of one second's worth (10).
    budget = RedisBudget(redis.url, key="exact", rpm=600)
    budget._fake_now_us = 1_000_000_000_000
    waits = []
    with trio.fail_after(10):
        for _ in range(40):
            waits.append(await budget._run_script((1, 0, 0, 0), (0, 0, 0, 0)))
        await budget.aclose()
    # The n-th request (from 0) goes at max(0, n - 9) * 100 ms: 10 at once, then one
    # per interval, so any window of w seconds admits at most 10 + 10 * w.
    assert waits == [max(0, n - 9) * 100_000 for n in range(40)]


async def test_two_budgets_on_one_key_get_one_schedule(redis: RedisServer) -> None:
    one = RedisBudget(redis.url, key="shared", rpm=600)
    two = RedisBudget(redis.url, key="shared", rpm=600)
    other = RedisBudget(redis.url, key="elsewhere", rpm=600)
    waits = []
    with trio.fail_after(10):
        for budget in (one, two, other):
            budget._fake_now_us = 5_000_000_000_000
        for n in range(30):
            budget = one if n % 3 else two
            waits.append(await budget._run_script((1, 0, 0, 0), (0, 0, 0, 0)))
        # Another key is another budget: its first request goes at once.
        assert await other._run_script((1, 0, 0, 0), (0, 0, 0, 0)) == 0
        for budget in (one, two, other):
            await budget.aclose()
    assert waits == [max(0, n - 9) * 100_000 for n in range(30)]


async def test_token_corrections_move_the_shared_state(redis: RedisServer) -> None:
    # tpm=60,000: a token is 1,000 µs of budget; burst 1,000 tokens.
    budget = RedisBudget(redis.url, key="tokens", tpm=60_000)
    now = budget._fake_now_us = 7_000_000_000_000
    with trio.fail_after(10):
        await budget.acquire(1500)  # 500 past the burst: waits 0.5 s (real trio sleep)
        assert tat(redis, "tokens", "t") == now + 1500 * 1000
        budget.correct(tokens=-1200)  # the answer cost 300 tokens
        budget.correct(tokens=+100)  # ... no, 400: corrections add up
        await budget.flush()
        assert tat(redis, "tokens", "t") == now + 400 * 1000
        await budget.aclose()
    assert budget.statistics().waited == pytest.approx(0.5)


async def test_cancelled_while_waiting_gives_the_reservation_back(redis: RedisServer) -> None:
    budget = RedisBudget(redis.url, key="cancel", rpm=60)  # one a second, burst 1
    now = budget._fake_now_us = 9_000_000_000_000
    with trio.fail_after(10):
        await budget.acquire(0)
        with trio.move_on_after(0.2):
            await budget.acquire(0)  # would wait 1 s
        assert tat(redis, "cancel", "r") == now + 2_000_000
        await budget.flush()
        assert tat(redis, "cancel", "r") == now + 1_000_000
        await budget.aclose()


async def test_provider_headers_pull_the_shared_state_down_for_everyone(
    redis: RedisServer,
) -> None:
    budget = RedisBudget(redis.url, key="pull", rpm=600, tpm=60_000)
    peer = RedisBudget(redis.url, key="pull", rpm=600, tpm=60_000)
    now = 11_000_000_000_000
    budget._fake_now_us = peer._fake_now_us = now
    with trio.fail_after(10):
        await budget.acquire(10)
        # More left than a burst: nothing we do not already know.
        budget.observe(httpx.Headers({"x-ratelimit-remaining-requests": "5000"}))
        await budget.flush()
        assert tat(redis, "pull", "r") == now + 100_000
        # Two requests and 100 tokens left (someone else uses this key too).
        budget.observe(
            httpx.Headers(
                {"x-ratelimit-remaining-requests": "2", "x-ratelimit-remaining-tokens": "100"}
            )
        )
        await budget.flush()
        # TAT = now + burst - remaining, in time (within the few µs of trio time that
        # passed between reading the headers and sending them).
        assert tat(redis, "pull", "r") == pytest.approx(now + 1_000_000 - 200_000, abs=20_000)
        assert tat(redis, "pull", "t") == pytest.approx(now + 1_000_000 - 100_000, abs=20_000)
        # The peer sees it: two requests go at once, the third waits ~100 ms.
        waits = [await peer._run_script((1, 0, 0, 0), (0, 0, 0, 0)) for _ in range(3)]
        assert waits[:2] == [0, 0] and waits[2] == pytest.approx(100_000, abs=20_000)
        for b in (budget, peer):
            await b.aclose()


async def test_noscript_after_script_flush_sends_the_script_again(redis: RedisServer) -> None:
    budget = RedisBudget(redis.url, key="flush", rpm=6000)
    with trio.fail_after(10):
        await budget.acquire(0)
        assert budget.statistics().script_loads == 1  # a fresh server knows no script
        await budget.acquire(0)
        assert budget.statistics().script_loads == 1
        assert redis.command("SCRIPT", "FLUSH").startswith(b"+OK")
        await budget.acquire(0)
        await budget.acquire(0)
        await budget.aclose()
    stats = budget.statistics()
    assert stats.script_loads == 2 and stats.reservations == 4


# -- through the client --------------------------------------------------------------


async def test_client_charges_estimates_and_corrects_them_by_usage(redis: RedisServer) -> None:
    budget = RedisBudget(redis.url, key="usage", tpm=600_000)  # 100 µs a token
    now = budget._fake_now_us = 13_000_000_000_000
    async with open_server() as server:
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, budget=budget
        ) as client:
            with trio.fail_after(20):
                answer = await client.chat.completions.create(**BODY)
                charged = tat(redis, "usage", "t")
                async with client.chat.completions.stream(
                    **BODY, stream_options={"include_usage": True}
                ) as stream:
                    async for _ in stream:
                        pass
                    streamed = await stream.get_final_completion()
                after_stream = tat(redis, "usage", "t")
        corrected = tat(redis, "usage", "t")  # the client sent the last correction on close
    estimate = trioclient._pacing.estimate_tokens(BODY)
    assert answer.usage is not None and streamed.usage is not None
    refunds = [estimate - answer.usage.total_tokens, estimate - streamed.usage.total_tokens]
    assert all(r > 0 for r in refunds)  # the estimate is high on purpose
    assert charged == now + estimate * 100
    # The stream's reservation carried the first answer's refund with it.
    assert after_stream == charged - refunds[0] * 100 + estimate * 100
    assert corrected == after_stream - refunds[1] * 100


async def test_two_clients_in_one_process_share_one_key(redis: RedisServer) -> None:
    # rpm=1200: burst 20, then 20 a second. 60 requests between two clients take
    # about two seconds; whatever the machine's speed, no more than the budget may go.
    sent: list[float] = []

    async def worker(base_url: str) -> None:
        budget = RedisBudget(redis.url, key="two-clients", rpm=1200)
        async with trioclient.Client(
            api_key="sk-test", base_url=base_url, budget=budget, max_concurrent=8
        ) as client:

            async def one() -> None:
                await client.chat.completions.create(**BODY)
                sent.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(one)

    async with open_server() as server:
        start = trio.current_time()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker, server.base_url)
                nursery.start_soon(worker, server.base_url)
    assert len(sent) == 60
    assert_within_budget(sent, burst=20, rate=20.0)
    assert sent[-1] - start >= 1.9  # 40 past the burst at 20 a second


def assert_within_budget(times: list[float], burst: int, rate: float, slack: int = 2) -> None:
    """No window between two admissions holds more than the budget allows in it.

    ``slack`` units for what a busy machine may do to a schedule that was right: an
    admission delayed after its turn (each worker has at most one pending) lands in a
    later, shorter window than its own.
    """
    times = sorted(times)
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            count = j - i + 1
            allowed = burst + rate * (times[j] - first) + slack
            assert count <= allowed, (
                f"{count} admitted in {times[j] - first:.3f} s; the budget allows {allowed:.1f}"
            )


WORKER = textwrap.dedent(
    """
    import sys, time, trio
    from trioclient import RedisBudget

    async def main(url, key, count):
        budget = RedisBudget(url, key=key, rpm=1200)
        await budget.ping()  # connected
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        for _ in range(count):
            await budget.acquire(0)
            print(time.monotonic(), flush=True)
        await budget.aclose()

    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


def run_workers(url: str, keys: list[str], count: int) -> list[float]:
    """One process per key, started together; the monotonic times of their admissions."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, key, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for key in keys
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        times: list[float] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            times.extend(float(line) for line in out.split())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return times


@pytest.mark.slow
def test_two_processes_share_one_key_without_overshoot(redis: RedisServer) -> None:
    # rpm=1200: a burst of 20, then 20 a second; 80 admissions take about 3 s.
    times = run_workers(redis.url, ["procs", "procs"], 40)
    assert len(times) == 80
    assert_within_budget(times, burst=20, rate=20.0)
    # The same two workers on two keys (each alone, as without a shared budget) do
    # overshoot: so the bound above can fail.
    times = run_workers(redis.url, ["alone-1", "alone-2"], 40)
    with pytest.raises(AssertionError, match="the budget allows"):
        assert_within_budget(times, burst=20, rate=20.0)


# -- Redis unreachable ---------------------------------------------------------------


async def test_redis_killed_mid_run_raises_by_default(redis_pw: RedisServer) -> None:
    async with open_server() as server:
        budget = RedisBudget(redis_pw.url, key="killed", rpm=6000, timeout=2)
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, budget=budget
        ) as client:
            with trio.fail_after(20):
                await client.chat.completions.create(**BODY)
                redis_pw.kill()
                with pytest.raises(trioclient.SharedBudgetError) as info:
                    await client.chat.completions.create(**BODY)
    text = f"{info.value} {info.value.__cause__}"
    assert "unavailable" in text and f"redis://:***@127.0.0.1:{redis_pw.port}/0" in text
    assert PASSWORD not in text
    assert isinstance(info.value.__cause__, RedisError)


async def test_redis_killed_mid_run_paces_locally_then_reconnects(redis: RedisServer) -> None:
    async with open_server() as server:
        budget = RedisBudget(
            redis.url, key="fallback", rpm=6000, on_unreachable="local", retry_interval=0.5
        )
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, budget=budget
        ) as client:
            with trio.fail_after(30):
                await client.chat.completions.create(**BODY)
                redis.kill()
                with pytest.warns(RuntimeWarning, match="pacing this process alone"):
                    await client.chat.completions.create(**BODY)
                await client.chat.completions.create(**BODY)  # still local, no new warning
                assert budget.statistics().local_fallbacks == 1
                redis.start()  # same port, empty: the script must be loaded again
                await trio.sleep(0.6)
                await client.chat.completions.create(**BODY)
    stats = budget.statistics()
    assert stats.local_fallbacks == 1
    assert stats.reservations == 2 and stats.script_loads == 2
    assert stats.connections_opened == 2
    assert redis.command("EXISTS", "fallback") == b":1\r\n"


async def test_nothing_listening_is_a_clear_error() -> None:
    from _redis_server import free_port

    budget = RedisBudget(f"redis://127.0.0.1:{free_port()}/0", key="k", rpm=60)
    with trio.fail_after(10), pytest.raises(trioclient.SharedBudgetError, match="cannot connect"):
        await budget.acquire(0)
    await budget.aclose()


async def test_a_server_that_never_answers_times_out() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    budget = RedisBudget(f"redis://127.0.0.1:{port}/0", key="k", rpm=60, timeout=0.3)
    start = trio.current_time()
    with trio.fail_after(10), pytest.raises(trioclient.SharedBudgetError, match="no reply"):
        await budget.acquire(0)
    assert trio.current_time() - start < 5
    await budget.aclose()
    await listener.aclose()
    assert math.isfinite(start)


# -- the command line ----------------------------------------------------------------


async def test_cli_batch_shares_a_budget_through_redis(
    redis_pw: RedisServer, tmp_path: Path
) -> None:
    from test_cli import run_cli, write_requests

    write_requests(tmp_path / "in.jsonl", 5)
    async with open_server() as server:
        result = await run_cli(
            "batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
            "--base-url", server.base_url, "--redis", redis_pw.url, "--rpm", "600",
            "--redis-key", "cli-budget",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5
    assert PASSWORD not in (result.stdout + result.stderr).decode()
    # Five requests charged on the shared key (a burst of 10: none waited).
    assert redis_pw.command("EXISTS", "cli-budget") == b":1\r\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--redis", "redis://127.0.0.1:1/0"], "give it --rpm N, --tpm N or both"),
        (["--redis-key", "k", "--rpm", "5"], "--redis-key needs --redis URL"),
        (["--redis", f"rediss://:{PASSWORD}@h/0", "--rpm", "5"], "TLS is not supported"),
        (["--redis", f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0", "--rpm", "5"], "unavailable"),
    ],
)
async def test_cli_batch_redis_mistakes_are_one_line(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    from _redis_server import free_port
    from test_cli import one_error_line, run_cli, write_requests

    write_requests(tmp_path / "in.jsonl", 2)
    port = str(free_port())
    async with open_server() as server:
        result = await run_cli(
            "batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
            "--base-url", server.base_url, *[e.replace("{port}", port) for e in extra],
        )  # fmt: skip
        assert server.statistics().chat_requests == 0
    line = one_error_line(result)
    assert message in line and PASSWORD not in line


def charged_pacer(
    redis: RedisServer, key: str, inner: Any = None
) -> tuple[RedisBudget, int, Any, int, httpx.Request]:
    """A budget of 600,000 tokens a minute (100 µs a token) on a frozen clock, one body's
    pacer on it, that body's token estimate and a request: ``(budget, now, pacer,
    estimate, request)``."""
    budget = RedisBudget(redis.url, key=key, tpm=600_000)
    now = budget._fake_now_us = 15_000_000_000_000
    pacer = budget.pacer(BODY, inner)
    estimate = trioclient._pacing.estimate_tokens(BODY)
    return budget, now, pacer, estimate, httpx.Request("POST", "http://x/v1/chat/completions")


async def test_an_attempt_abandoned_before_sending_gives_its_charge_back(
    redis: RedisServer,
) -> None:
    # Charged in Redis, then cancelled while waiting for its slot: it never went.
    budget, now, pacer, estimate, request = charged_pacer(redis, "abandoned")
    with trio.fail_after(10):
        await pacer.before_attempt(request)
        assert tat(redis, "abandoned", "t") == now + estimate * 100
        pacer.abandon(request)  # type: ignore[attr-defined]
        await budget.flush()
        assert tat(redis, "abandoned", "t") == now
        await budget.aclose()


async def test_an_attempt_sent_back_by_its_inner_pacer_is_charged_once(
    redis: RedisServer,
) -> None:
    # The inner (batch) pacer's budget looked spent when the slot came: the attempt
    # waits for the inner pacer again, and Redis is not charged a second time.
    class Inner:
        def __init__(self) -> None:
            self.clear = [False, True]

        async def before_attempt(self, request: httpx.Request) -> None:
            pass

        def after_response(self, response: httpx.Response) -> None:
            pass

        def still_clear(self, request: httpx.Request) -> bool:
            return self.clear.pop(0)

    budget, now, pacer, estimate, request = charged_pacer(redis, "again", Inner())
    with trio.fail_after(10):
        await pacer.before_attempt(request)
        assert not pacer.still_clear(request)  # type: ignore[attr-defined]
        await pacer.before_attempt(request)
        assert pacer.still_clear(request)  # type: ignore[attr-defined]
        await budget.flush()
        assert tat(redis, "again", "t") == now + estimate * 100
        await budget.aclose()


async def test_a_429_gives_its_tokens_back(redis: RedisServer) -> None:
    budget, now, pacer, estimate, request = charged_pacer(redis, "refused")
    with trio.fail_after(10):
        await pacer.before_attempt(request)
        assert tat(redis, "refused", "t") == now + estimate * 100
        pacer.after_response(httpx.Response(429, request=request))
        await budget.flush()
        assert tat(redis, "refused", "t") == now
        await budget.aclose()


async def test_a_restarted_redis_is_reconnected_to(redis: RedisServer) -> None:
    async with open_server() as server:
        budget = RedisBudget(redis.url, key="restart", rpm=6000)
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, budget=budget
        ) as client:
            with trio.fail_after(20):
                await client.chat.completions.create(**BODY)
                redis.kill()
                redis.start()
                # The pooled connection is dead: replaced once, the script loaded again.
                await client.chat.completions.create(**BODY)
    stats = budget.statistics()
    assert (stats.connections_opened, stats.script_loads, stats.reservations) == (2, 2, 2)


async def test_a_batch_stops_with_the_budget_error_when_redis_dies(redis: RedisServer) -> None:
    async with open_server() as server:
        budget = RedisBudget(redis.url, key="batch", rpm=600)  # 10 at once, then 10 a second
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, budget=budget, max_concurrent=4
        ) as client:
            done = 0
            with trio.fail_after(30), pytest.raises(trioclient.BatchError) as info:
                async with client.batch([BODY] * 40) as results:
                    async for result in results:
                        assert result.ok
                        done += 1
                        if done == 5:
                            redis.kill()
    assert 5 <= done < 40
    assert "unavailable" in str(info.value)


# -- the script against a model of GCRA, on random traffic -----------------------------


def gcra_model(steps: list[tuple[int, int, int]], interval: int, tolerance: int) -> list[int]:
    """The waits GCRA gives to (time µs, take, adjust) steps, in plain Python."""
    tat: int | None = None
    waits = []
    for now, take, adjust in steps:
        current = now if tat is None else tat
        current += adjust * interval
        if take:
            current = max(current, now) + take * interval
        waits.append(max(0, current - tolerance - now) if take else 0)
        tat = current
    return waits


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 1_500_000), st.integers(0, 800), st.integers(-300, 300)),
        min_size=1,
        max_size=30,
    )
)
def test_script_matches_a_model_of_gcra(
    redis: RedisServer, steps: list[tuple[int, int, int]]
) -> None:
    # tpm=60,000: 1,000 µs a token, a burst of 1,000 tokens; takes of up to 800 tokens
    # at gaps up to 1.5 s: bursts, queues and idle spells. Time only moves forward.
    start = 20_000_000_000_000
    clock = start
    timed = []
    for gap, take, adjust in steps:
        clock += gap
        timed.append((clock, take, adjust))
    key = f"model-{id(steps)}-{clock}"

    async def run() -> list[int]:
        budget = RedisBudget(redis.url, key=key, tpm=60_000)
        waits = []
        for now, take, adjust in timed:
            budget._fake_now_us = now
            waits.append(await budget._run_script((0, 0, 0, 0), (take, adjust, 0, 0)))
        await budget.aclose()
        return waits

    got = trio.run(run)
    assert got == gcra_model(timed, interval=1000, tolerance=1_000_000)
