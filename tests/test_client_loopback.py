"""The client on real loopback sockets against the embedded server.

respx never exercises a connection pool, so what only real sockets show is tested here:
hundreds of requests in flight on trioclient's own transport, a caller's
``httpx.AsyncClient`` whose pool is smaller than the limiter, connection reuse, and the
limiter holding as the server counts it. Waits of seconds run on
``thread_safe_autojump_clock``: virtual time stands still while the CPU works and leaps
to the next deadline only after 20 ms of real idleness (the server sleeps on the same
clock). So a busy machine cannot turn slow work into virtual seconds that fire a
deadline, and a wait of seconds costs no real time.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import trioclient
from trioclient.testing import open_server

MESSAGES = [{"role": "user", "content": "What is Python?"}]


async def test_hundreds_in_flight_on_the_default_transport(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_server(ttft=6.0) as server:  # longer than httpcore's 5 s pool timeout
        async with trioclient.Client(
            api_key="sk-loop", base_url=server.base_url, max_concurrent=200
        ) as client:
            answers: list[str | None] = []

            async def ask() -> None:
                answers.append(
                    (await client.chat.completions.create(model="m", messages=MESSAGES)).content
                )

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for _ in range(300):
                        nursery.start_soon(ask)
            stats = client.statistics()
        server_stats = server.statistics()
    assert len(answers) == 300 and len(set(answers)) == 1 and answers[0]
    assert stats.requests_sent == 300 and stats.retries == 0
    assert server_stats.peak_in_flight_requests == 200  # the limiter held, and was used fully
    # 300 requests through at most 200 connections: the rest reused a kept-alive one.
    assert server_stats.connections_accepted == 200


async def test_a_callers_small_pool_never_times_out_an_admitted_request(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with open_server(ttft=8.0) as server:
        # First, the failure this guards against: plain httpx, 16 requests through a
        # 4-connection pool whose answers take 8 s, dies of PoolTimeout after 5 s. (No
        # read timeout: httpx's default of 5 s would fire at the same virtual instant
        # as the pool's on an autojump clock, and race it.)
        no_read_timeout = httpx.Timeout(5.0, read=None)
        async with httpx.AsyncClient(limits=limits, timeout=no_read_timeout) as plain:
            with pytest.raises(ExceptionGroup) as caught:
                async with trio.open_nursery() as nursery:
                    for _ in range(16):
                        nursery.start_soon(
                            lambda: plain.post(
                                f"{server.base_url}/chat/completions",
                                json={"model": "m", "messages": MESSAGES},
                                headers={"authorization": "Bearer sk-loop"},
                            )
                        )
        timed_out, others = caught.value.split(httpx.PoolTimeout)
        assert timed_out is not None and others is None
        async with httpx.AsyncClient(limits=limits) as http:
            async with trioclient.Client(
                api_key="sk-loop", base_url=server.base_url, http_client=http, max_concurrent=16
            ) as client:
                with trio.fail_after(120):
                    async with trio.open_nursery() as nursery:
                        for _ in range(16):
                            nursery.start_soon(
                                lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                            )
                stats = client.statistics()
    assert stats.requests_succeeded == 16 and stats.requests_failed == 0 and stats.retries == 0


async def test_streams_and_plain_requests_share_connections(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_server(tps=50.0) as server:
        async with trioclient.Client(
            api_key="sk-loop", base_url=server.base_url, max_concurrent=4
        ) as client:
            with trio.fail_after(60):
                for _ in range(3):
                    async with client.chat.completions.stream(
                        model="m", messages=MESSAGES, stream_options={"include_usage": True}
                    ) as stream:
                        streamed = await stream.get_final_completion()
                    plain = await client.chat.completions.create(model="m", messages=MESSAGES)
            stats = client.statistics()
        server_stats = server.statistics()
    assert streamed.content == plain.content
    assert streamed.usage == plain.usage
    assert server_stats.connections_accepted == 1  # every request reused the one connection
    assert stats.requests_succeeded == 6 and stats.in_flight == 0


async def test_a_key_the_server_refuses_is_an_authentication_error() -> None:
    async with open_server(api_key="sk-right") as server:
        async with trioclient.Client(
            api_key="sk-wrong-key-123", base_url=server.base_url
        ) as client:
            with trio.fail_after(10), pytest.raises(trioclient.AuthenticationError) as caught:
                await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert "sk-wrong-key-123" not in str(caught.value)


async def test_the_server_rate_limit_is_met_with_one_pause(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    # A bucket of 60 requests per minute that starts full: the 61st request of a burst
    # meets the limit; the gate makes the client wait once, then all succeed. (The
    # client ignores the server's x-ratelimit-* headers, which would keep it from the
    # limit altogether: test_gate and test_header_budget.)
    # Time stands still while the CPU works and jumps only when everything is idle: on
    # fast_clock a loaded machine turned slow work into virtual seconds, and the gate's
    # paced reopening (scheduled in virtual time) then released tasks in bursts.
    async with open_server(rpm=60) as server:
        async with trioclient.Client(
            api_key="sk-loop",
            base_url=server.base_url,
            max_concurrent=8,
            follow_rate_limit_headers=False,
        ) as client:
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for _ in range(70):
                        nursery.start_soon(
                            lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                        )
            stats = client.statistics()
        server_stats = server.statistics()
    assert stats.requests_succeeded == 70 and stats.requests_failed == 0
    assert stats.rate_limited == server_stats.rate_limited
    # Without the gate every one of the 8 tasks would keep earning 429s; with it, the
    # 429s are few: those already in flight when the first one arrived, plus a handful.
    assert 1 <= stats.rate_limited <= 8 * 3
