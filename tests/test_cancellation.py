"""Cancelling from outside: a request, a stream, a whole batch, and Ctrl-C on the CLI.

What each test pins: the cancelled call returns within a second of the cancel (measured
on trio's clock), gives back every limiter token, closes the connections it was using,
and leaves the client usable: the next request succeeds.

Real loopback sockets; the server is slow on purpose (a long time to first token, or a
slow stream) so that the cancel lands while work is in flight. The tests in this
process run on ``thread_safe_autojump_clock``: time stands still while the CPU works,
so "within a second" means no wait hides in the cancel path, whatever the machine's
load (on the real clock a busy machine made prompt code look slow). Ctrl-C on the
command line is a child process on the real clock: there the server is made to hang
for an hour first, so that a generous bound still tells prompt from stuck. The
client talks to the server through the fault proxy (forwarding faithfully): a server
handler asleep in a 30 s time-to-first-token notices a closed connection only when it
wakes, the proxy notices at once, so the proxy is where "its connection dropped" is seen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _faultproxy import FaultProxy, count_tasks, open_fault_proxy, wait_until_quiet

import trioclient
from trioclient import RetryPolicy
from trioclient.testing import Server, open_server

KEY = "sk-cancel-0123456789abcdef"
MODEL = "trioclient-sim"
MESSAGES = [{"role": "user", "content": "Count slowly to a hundred."}]
ROOT = Path(__file__).resolve().parent.parent
PROMPTLY = 1.0  # seconds of trio's clock a cancelled call may take to return
# Seconds of real time a child process may take to stop after Ctrl-C: generous for a
# busy machine, and far below the hour the server has been told to hang by then.
PROMPTLY_IN_REAL_TIME = 10.0
HANG = 3600.0


async def wait_for(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``condition()`` holds (bounded): the server is in the state we want."""
    with trio.fail_after(limit):
        # The server's counters have no event to wait on: poll them.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.002)


async def cancel_when(
    server: Server,
    in_flight: int,
    call: Callable[[], Awaitable[Any]],
    also: Callable[[], bool] = lambda: True,
) -> float:
    """Run ``call`` until the server has ``in_flight`` requests (and ``also()``), then
    cancel it.

    Returns the seconds from the cancel to the call's return.
    """
    returned_at = cancelled_at = 0.0
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            nonlocal returned_at
            try:
                await call()
            finally:
                returned_at = trio.current_time()

        nursery.start_soon(run)
        await wait_for(lambda: server.statistics().in_flight_requests >= in_flight and also())
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel()
    return returned_at - cancelled_at


@asynccontextmanager
async def slow_server(**config: Any) -> AsyncIterator[tuple[Server, FaultProxy]]:
    async with open_server(**config) as server, open_fault_proxy(server.port) as proxy:
        yield server, proxy


async def still_usable(client: trioclient.Client, server: Server) -> None:
    """The client is whole after a cancel: nothing borrowed, and a new request works."""
    assert client.limiter.borrowed_tokens == 0
    stats = client.statistics()
    assert (stats.in_flight, stats.waiting) == (0, 0)
    server.set_config(ttft=0.0, tps=None)
    with trio.fail_after(5):
        answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.content


async def test_cancelling_a_request_returns_promptly_and_releases_everything(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    async with slow_server(ttft=30.0) as (server, proxy):
        tasks = count_tasks()
        async with trioclient.Client(api_key=KEY, base_url=proxy.base_url) as client:
            took = await cancel_when(
                server,
                1,
                lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES),
            )
            assert took < PROMPTLY
            assert client.statistics().requests_failed == 0  # a cancel is not a failure
            await wait_until_quiet(proxy)  # the abandoned connection was closed
            await still_usable(client, server)
        server.set_config(ttft=0.0)
        await wait_until_quiet(proxy, tasks=tasks + 1)  # + the server's task still asleep


async def test_cancelling_many_requests_and_the_ones_waiting_for_a_token(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    async with slow_server(ttft=30.0) as (server, proxy):
        async with trioclient.Client(
            api_key=KEY, base_url=proxy.base_url, max_concurrent=4
        ) as client:

            async def twenty() -> None:
                async with trio.open_nursery() as nursery:
                    for _ in range(20):
                        nursery.start_soon(
                            lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES)
                        )

            took = await cancel_when(server, 4, twenty)
            assert took < PROMPTLY
            assert server.statistics().peak_in_flight_requests == 4
            await wait_until_quiet(proxy)
            await still_usable(client, server)


@pytest.mark.parametrize("where", ["before-first-chunk", "mid-stream", "unread"])
async def test_cancelling_a_stream_returns_promptly_and_releases_everything(
    thread_safe_autojump_clock: trio.testing.MockClock, where: str
) -> None:
    # ttft 30 s: stuck before the first chunk; tps 2: chunks every half second.
    config = {"ttft": 30.0} if where == "before-first-chunk" else {"tps": 2.0}
    async with slow_server(**config) as (server, proxy):
        async with trioclient.Client(api_key=KEY, base_url=proxy.base_url) as client:
            got: list[str] = []

            async def read() -> None:
                async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as s:
                    if where == "unread":
                        # Opened, holding its token and connection, nobody reading it.
                        got.append((await s.__anext__()).content)
                        await trio.sleep_forever()
                    async for chunk in s:
                        got.append(chunk.content)

            took = await cancel_when(
                server,
                1,
                read,
                also=lambda: (
                    len(got) >= {"before-first-chunk": 0, "mid-stream": 2, "unread": 1}[where]
                ),
            )
            assert took < PROMPTLY
            if where != "before-first-chunk":
                assert got  # the cancel landed after chunks had arrived
            await wait_until_quiet(proxy)
            await still_usable(client, server)


async def test_cancelling_during_a_retry_wait_returns_at_once(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    # Every answer is a 503 asking for a 20 s wait: the cancel lands in that wait.
    async with open_server(faults={"http_503": 1.0}) as server:
        retry = RetryPolicy(max_retries=5, base_delay=20.0, max_delay=20.0)
        async with trioclient.Client(api_key=KEY, base_url=server.base_url, retry=retry) as client:
            returned_at = 0.0
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    nonlocal returned_at
                    try:
                        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                    finally:
                        returned_at = trio.current_time()

                nursery.start_soon(run)
                await wait_for(lambda: client.statistics().requests_sent == 1)
                await wait_for(lambda: client.statistics().in_flight == 0)  # now waiting
                cancelled_at = trio.current_time()
                nursery.cancel_scope.cancel()
            assert returned_at - cancelled_at < PROMPTLY
            assert server.statistics().chat_requests == 1
            server.set_config(faults={})
            await still_usable(client, server)


async def test_cancelling_a_whole_batch_returns_promptly_and_releases_everything(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    bodies = [
        (f"q{i}", {"model": MODEL, "messages": [{"role": "user", "content": f"Q{i}"}]})
        for i in range(1000)
    ]
    async with slow_server(ttft=0.05) as (server, proxy):
        tasks = count_tasks()
        async with trioclient.Client(api_key=KEY, base_url=proxy.base_url) as client:
            seen: list[str] = []
            with trio.CancelScope() as scope:
                async with client.batch(bodies, max_concurrent=32) as results:
                    async for result in results:
                        assert result.ok, result.error
                        seen.append(result.custom_id or "")
                        if len(seen) == 50:
                            # From outside the batch's own tasks: a cancel scope around it.
                            cancelled_at = trio.current_time()
                            scope.cancel()
            took = trio.current_time() - cancelled_at
            assert scope.cancelled_caught
            assert took < PROMPTLY
            assert 50 <= len(set(seen)) == len(seen) < 1000
            assert server.statistics().chat_requests < 1000  # it did stop sending
            # No request in flight any more; idle keep-alive connections may stay.
            await wait_for(lambda: server.statistics().in_flight_requests == 0)
            await still_usable(client, server)
        await wait_until_quiet(proxy, server, tasks=tasks)


# --- Ctrl-C on the command line ------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_API_KEY", "OPENAI_API_KEY")}
    env.pop("TRIOCLIENT_BASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["XAI_API_KEY"] = KEY
    return env


def answered(server: Server) -> int:
    return server.statistics().responses_by_status.get(200, 0)


async def test_ctrl_c_during_a_10000_request_batch(tmp_path: Path) -> None:
    n = 10_000
    source, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.txt"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"req-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Q{i}"}]},
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    async with open_server(ttft="uniform:0.01,0.05") as server:
        args = [sys.executable, "-m", "trioclient", "batch", str(source), "-o", str(out)]
        args += ["--base-url", server.base_url, "--max-concurrent", "64"]
        with err.open("wb") as stderr, trio.fail_after(30):
            process = await trio.lowlevel.open_process(
                args,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=cli_env(),
                # A child inherits an ignored SIGINT (pytest started in the background
                # by a non-interactive shell): give it the default, as a terminal would.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            try:
                # The batch is under way once the server has answered some requests.
                await wait_for(lambda: answered(server) >= 300, limit=20)
                # From now on every new request hangs: a child that waited for its
                # requests instead of cancelling them would take an hour to stop.
                server.set_config(ttft=HANG)
                process.send_signal(signal.SIGINT)
                interrupted_at = trio.current_time()
                answered_before = answered(server)
                await process.wait()
                took = trio.current_time() - interrupted_at
            finally:
                if process.poll() is None:
                    process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
        answered_after = answered(server)
    assert process.returncode == 130, err.read_text()
    assert took < PROMPTLY_IN_REAL_TIME, f"Ctrl-C took {took:.2f} s"
    text = out.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line whole JSON
    ids = [r["custom_id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in records)
    # Every answer the server had sent was written, bar those still on their way in
    # when the signal came (at most one per request in flight).
    assert answered_before - 64 <= len(records) <= answered_after < n
    stderr_text = err.read_text()
    assert "Traceback" not in stderr_text
    assert f"{n - len(records)} remain" in stderr_text
