"""The batch engine: completion order, bounded memory, failures, stopping, pacing,
streams and progress.

Most tests script a server behind ``httpx.MockTransport`` on trio's autojump clock
(exact about time, no real waiting); each prompt says how its request behaves
("sleep=3 status=400"). One test runs against the embedded server on real sockets.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from _fakes import FakeAPI

import trioclient
from trioclient import BadRequestError, BatchError, BatchProgress, BatchResult, RetryPolicy
from trioclient.testing import open_server

URL = "http://127.0.0.1:9/v1"
FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=0.5)


def body(prompt: str = "hi", **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], **params}


def make_client(api: FakeAPI, **kwargs: Any) -> trioclient.Client:
    kwargs.setdefault("retry", FAST_RETRY)
    return trioclient.Client(
        api_key="sk-test", base_url=URL, transport=httpx.MockTransport(api), **kwargs
    )


class CountingIterator(Iterator[dict[str, Any]]):
    """Bodies made on demand, counting how many the engine has pulled."""

    def __init__(self, prompts: list[str]) -> None:
        self.prompts = prompts
        self.pulled = 0

    def __next__(self) -> dict[str, Any]:
        if self.pulled >= len(self.prompts):
            raise StopIteration
        prompt = self.prompts[self.pulled]
        self.pulled += 1
        return body(prompt)


# --- order, memory, laziness ----------------------------------------------------------


async def test_results_arrive_as_they_complete(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    delays = [5, 1, 3, 2, 4]
    async with make_client(api) as client:
        seen: list[int] = []
        async with client.batch([body(f"sleep={d}") for d in delays]) as results:
            async for result in results:
                assert result.ok
                seen.append(result.index)
                # Each result is handed over when its own request ends.
                assert trio.current_time() == pytest.approx(delays[result.index], abs=0.01)
        assert seen == [1, 3, 2, 4, 0]
        listed = await client.run_batch([body(f"sleep={d}") for d in delays])
    assert [r.index for r in listed] == [0, 1, 2, 3, 4]
    assert listed[0].response is not None
    assert listed[0].response.content == "echo sleep=5"


async def test_ordered_mode_bounds_the_reorder_buffer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeAPI()
    prompts = ["sleep=100"] + [f"sleep=1 n={i}" for i in range(1, 60)]
    requests = CountingIterator(prompts)
    async with make_client(api) as client:
        got: list[int] = []
        async with client.batch(
            requests, max_concurrent=2, ordered=True, reorder_window=3
        ) as results:
            await trio.sleep(50)
            # The slow first request holds everything behind it: the engine stopped
            # pulling at concurrency (2) + reorder window (3), not at 60.
            assert requests.pulled == 5
            assert results.snapshot().done == 4
            async for result in results:
                got.append(result.index)
                assert result.ok
    assert got == list(range(60))


async def test_input_is_pulled_lazily(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    requests = CountingIterator([f"sleep={1 + i % 7} n={i}" for i in range(500)])
    async with make_client(api) as client:
        received = 0
        async with client.batch(requests, max_concurrent=10) as results:
            async for _ in results:
                received += 1
                # max_concurrent in flight plus as much slack: never the whole input.
                assert requests.pulled <= received + 20
    assert received == 500
    assert api.peak_in_flight == 10


async def test_pairs_and_async_iterables(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()

    async def produce() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        for i in range(5):
            await trio.sleep(0.1)
            yield f"item-{i}", body(f"p{i}")

    async with make_client(api) as client:
        results = await client.run_batch(produce())
    assert [r.custom_id for r in results] == [f"item-{i}" for i in range(5)]
    assert [r.response.content for r in results if r.response] == [f"echo p{i}" for i in range(5)]
    assert all(r.request_id and r.status_code == 200 for r in results)


# --- failures -------------------------------------------------------------------------


async def test_failed_items_are_results(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    items: list[Any] = [
        body("ok"),
        body("status=400"),
        body("fail_first=2"),
        {"model": "m"},  # no messages
        ("id", {"model": "m", "messages": "hello"}),  # messages not a list
        "just a string",
        ("a", "b", "c"),
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "bad": {1, 2}},
    ]
    async with make_client(api) as client:
        results = await client.run_batch(items)
    ok, bad400, retried, no_messages, str_messages, not_a_body, triple, unencodable = results
    assert ok.ok and ok.attempts == 1
    assert isinstance(bad400.error, BadRequestError) and bad400.attempts == 1
    assert bad400.status_code == 400 and not bad400.ok
    assert retried.ok and retried.attempts == 3
    for result, kind in [
        (no_messages, TypeError),
        (str_messages, TypeError),
        (not_a_body, TypeError),
        (triple, TypeError),
        (unencodable, TypeError),
    ]:
        assert isinstance(result.error, kind), result
        assert result.attempts == 0 and result.response is None
    assert str_messages.custom_id == "id"
    assert "not JSON-serializable" in str(unencodable.error)
    # Nothing that was rejected reached the server.
    assert sorted(p for _, p in api.calls) == ["fail_first=2"] * 3 + ["ok", "status=400"]


async def test_stop_on_error_ends_the_batch(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    prompts = [f"sleep=1 n={i}" for i in range(3)] + ["sleep=2 status=400"]
    prompts += [f"sleep=5 n={i}" for i in range(100)]
    async with make_client(api) as client:
        got: list[BatchResult] = []
        async with client.batch(
            CountingIterator(prompts), max_concurrent=4, stop_on_error=True
        ) as results:
            async for result in results:
                got.append(result)
        assert results.failure is not None and results.failure.index == 3
        # What finished before the failure, then the failure, last.
        assert sorted(r.index for r in got[:3]) == [0, 1, 2] and got[3].index == 3
        assert len(got) == 4
        assert trio.current_time() == pytest.approx(2.0, abs=0.05)
        assert len(api.calls) < 10  # the other 100 were never sent

        with pytest.raises(BatchError, match="request 3 failed") as info:
            await client.run_batch([body(p) for p in prompts[:6]], stop_on_error=True)
        assert info.value.failure is not None and info.value.failure.index == 3
        assert [r.index for r in info.value.results] == [0, 1, 2, 3]


async def test_stop_on_error_in_order_skips_the_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeAPI()
    prompts = ["sleep=10", "sleep=1 status=400", "sleep=0.5", "sleep=10 n=3"]
    async with make_client(api) as client:
        async with client.batch(
            [body(p) for p in prompts], ordered=True, stop_on_error=True
        ) as results:
            got = [r async for r in results]
    # 0 and 3 were cancelled at the failure; what finished still comes, in order.
    assert [r.index for r in got] == [1, 2]
    assert results.failure is got[0]
    assert trio.current_time() == pytest.approx(1.0, abs=0.05)


async def test_input_that_raises_is_a_batch_error_after_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def produce() -> Iterator[dict[str, Any]]:
        yield body("a")
        yield body("b")
        raise OSError("disk gone")

    async with make_client(FakeAPI()) as client:
        got = []
        with pytest.raises(BatchError, match="disk gone") as info:
            async with client.batch(produce()) as results:
                async for result in results:
                    got.append(result)
    assert len(got) == 2 and all(r.ok for r in got)
    assert isinstance(info.value.__cause__, OSError)


async def test_the_callers_exception_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeAPI()
    async with make_client(api) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.batch([body(f"sleep=3 n={i}") for i in range(20)]) as results:
                async for _ in results:
                    1 / 0  # noqa: B018
        # Leaving early cancelled the rest at once.
        assert trio.current_time() == pytest.approx(3.0, abs=0.05)


async def test_engine_failure_is_one_clear_error(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    client = make_client(api)
    async with client:
        with pytest.raises(BatchError, match=r"batch engine failed.*RuntimeError") as info:
            async with client.batch([body(f"sleep=1 n={i}") for i in range(5)]) as results:
                await client.aclose()  # the client closes under the running batch
                async for _ in results:
                    pass
    assert isinstance(info.value.__cause__, BaseExceptionGroup)


async def test_callers_cancel_scope_stops_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Autojump clock: time stands still while the CPU works, so "promptly" means no
    # wait of any length between the cancel and the return (on the real clock a busy
    # machine made the same code look slow).
    api = FakeAPI()
    prompts = [f"sleep=0.01 n={i}" for i in range(5)] + [f"sleep=60 n={i}" for i in range(20)]
    async with make_client(api) as client:
        got: list[BatchResult] = []
        started = trio.current_time()
        with trio.fail_after(5):
            with trio.move_on_after(0.3) as scope:
                async with client.batch([body(p) for p in prompts]) as results:
                    async for result in results:
                        got.append(result)
        assert scope.cancelled_caught
        assert trio.current_time() - started < 1.0
        assert trio.current_time() - started == pytest.approx(0.3)
        assert sorted(r.index for r in got) == [0, 1, 2, 3, 4]
        assert client.statistics().in_flight == 0


def test_bad_options_fail_at_once() -> None:
    client = trioclient.Client(api_key="sk-test", base_url=URL)
    with pytest.raises(ValueError, match="max_concurrent"):
        client.batch([], max_concurrent=0)
    with pytest.raises(ValueError, match="rpm"):
        client.batch([], rpm=-5)
    with pytest.raises(TypeError, match="iterable"):
        client.batch({"model": "m"})  # a single body, not a list of them
    with pytest.raises(ValueError, match="reorder_window"):
        client.batch([], ordered=True, reorder_window=0)


# --- pacing ---------------------------------------------------------------------------


async def test_rpm_budget(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    async with make_client(api) as client:
        results = await client.run_batch([body(f"n={i}") for i in range(60)], rpm=120)
    assert all(r.ok for r in results)
    sent = [t for t, _ in api.calls]
    assert sent[-1] - sent[0] == pytest.approx(29.0, abs=0.1)
    # No more than the budget in any window: 2 a second plus the one-second burst.
    for i in range(len(sent) - 10):
        assert sent[i + 10] - sent[i] >= 4.0 - 1e-6


async def test_tpm_budget_is_corrected_by_usage(autojump_clock: trio.testing.MockClock) -> None:
    # Each request is estimated at ~1,010 tokens (max_tokens=1000); the budget is 100
    # tokens a second, so on estimates alone 20 requests need ~190 s.
    async def run(usage: int) -> float:
        api = FakeAPI()
        async with make_client(api) as client:
            start = trio.current_time()
            results = await client.run_batch(
                [body(f"usage={usage} n={i}", max_tokens=1000) for i in range(20)],
                tpm=6000,
                max_concurrent=4,
            )
        assert all(r.ok for r in results)
        return trio.current_time() - start

    honest = await run(usage=1010)
    cheap = await run(usage=10)
    assert honest == pytest.approx(190, rel=0.1)
    assert cheap < 20  # the actual usage gave the estimate back


async def test_headers_pace_before_the_first_429(autojump_clock: trio.testing.MockClock) -> None:
    async def run(follow: bool) -> tuple[FakeAPI, float, list[BatchResult]]:
        api = FakeAPI(rpm=60)
        async with make_client(api, retry=RetryPolicy(max_retries=20)) as client:
            start = trio.current_time()
            results = await client.run_batch(
                [body(f"sleep=0.2 n={i}") for i in range(150)],
                max_concurrent=16,
                follow_rate_limit_headers=follow,
            )
        return api, trio.current_time() - start, results

    api, elapsed, results = await run(follow=True)
    assert all(r.ok for r in results)
    assert api.rate_limited <= 2
    # 60 at once from the full bucket, then one a second: the budget allows 90 s.
    assert 90 <= elapsed <= 90 / 0.95
    # Without the headers, the same batch keeps running into the limit.
    blind, _, _ = await run(follow=False)
    assert blind.rate_limited > 10


# --- streams --------------------------------------------------------------------------


async def test_streams_are_read_whole_and_timed(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    async with make_client(api) as client:
        results = await client.run_batch(
            [body("sleep=0.2 usage=30", stream=True), body("plain sleep=0.2")]
        )
    streamed, plain = results
    assert streamed.ok and streamed.response is not None
    assert streamed.response.content == "Hello sleep=0.2 usage=30"
    assert streamed.usage is not None and streamed.usage.total_tokens == 30
    assert streamed.time_to_first_token == pytest.approx(0.2, abs=0.01)
    # 15 completion tokens over the 1 s between the first chunk and [DONE].
    assert streamed.tokens_per_second == pytest.approx(15.0, rel=0.02)
    assert plain.ok and plain.time_to_first_token is None


@pytest.mark.parametrize("fault", ["cut_first", "error_event_first"])
async def test_a_broken_stream_is_retried(
    autojump_clock: trio.testing.MockClock, fault: str
) -> None:
    api = FakeAPI()
    async with make_client(api) as client:
        [result] = await client.run_batch([body(f"{fault}=2", stream=True)])
        assert result.ok and result.attempts == 3
        assert result.response is not None and result.response.content == f"Hello {fault}=2"
        # Out of attempts: the last error, never the partial answer as a success.
        [failed] = await client.run_batch(
            [body(f"{fault}=9 again", stream=True)], retry=RetryPolicy(max_retries=1)
        )
    assert not failed.ok and failed.attempts == 2
    assert isinstance(failed.error, trioclient.APIError)
    assert failed.error.partial is not None


@attrs.frozen
class FixedBackoff(RetryPolicy):
    """A RetryPolicy whose backoff is always ``wait`` seconds (no jitter), so a test
    knows to the tick when a retry would start."""

    wait: float = 0.0

    def backoff(self, retry_number: int, rng: Any = None) -> float:
        return self.wait


# A stream answered after 0.25 s and cut after two chunks 0.5 s apart ("Hello "): the
# cut is seen 0.75 s after the request (every figure a binary fraction, so sums of
# them on the autojump clock are exact).
CUT_ONCE = "sleep=0.25 cut_first=1"


@pytest.mark.parametrize(
    ("code", "attempts"), [("server_error", 2), ("context_length_exceeded", 1)]
)
async def test_a_mid_stream_error_event_is_retried_as_its_code_says(
    autojump_clock: trio.testing.MockClock, code: str, attempts: int
) -> None:
    # Nobody saw the answer, so an overload half-way is retried; an error that says the
    # request itself is wrong would only fail again, so it is the result at once.
    api = FakeAPI()
    async with make_client(api) as client:
        [result] = await client.run_batch(
            [body(f"error_event_first=1 error_code={code}", stream=True)]
        )
    assert result.attempts == attempts
    assert result.ok == (attempts == 2)
    if not result.ok:
        assert isinstance(result.error, trioclient.APIStreamError)


@pytest.mark.parametrize("fault", ["cut_first", "error_event_first"])
async def test_a_broken_stream_is_not_retried_past_the_callers_deadline(
    autojump_clock: trio.testing.MockClock, fault: str
) -> None:
    # The retry would start 0.75 + 5 s in; the caller gives the batch 3 s. The item
    # fails at once with the stream's error, instead of sleeping into the deadline and
    # taking the whole batch down with it.
    api = FakeAPI()
    prompt = f"sleep=0.25 {fault}=1"
    async with make_client(api, retry=FixedBackoff(max_retries=3, wait=5.0)) as client:
        got: list[BatchResult] = []
        start = trio.current_time()
        with trio.move_on_at(start + 3.0) as scope:
            async with client.batch([body(prompt, stream=True)]) as results:
                async for result in results:
                    got.append(result)
        ended = trio.current_time() - start
    assert not scope.cancelled_caught, "the engine slept into the caller's deadline"
    assert ended == 0.75  # failed when the cut was seen, without the useless wait
    [failed] = got
    assert not failed.ok and failed.attempts == 1
    assert isinstance(failed.error, trioclient.APIError)
    assert failed.error.partial is not None and failed.error.partial.content == "Hello "
    assert any("deadline" in note for note in failed.error.__notes__)
    assert api.attempts == {prompt: 1}


async def test_a_broken_stream_is_retried_when_the_retry_fits_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The same stream and the same 5 s wait under a 30 s deadline: retried, and whole.
    api = FakeAPI()
    async with make_client(api, retry=FixedBackoff(max_retries=3, wait=5.0)) as client:
        start = trio.current_time()
        with trio.fail_after(30):
            [result] = await client.run_batch([body(CUT_ONCE, stream=True)])
        second_attempt_at = api.calls[1][0] - start
    assert result.ok and result.attempts == 2
    assert result.response is not None and result.response.content == f"Hello {CUT_ONCE}"
    assert second_attempt_at == 0.75 + 5.0
    assert api.attempts == {CUT_ONCE: 2}


async def test_a_stream_retry_that_would_start_exactly_at_the_deadline_is_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Cut at 0.75 s, a 2.25 s wait: the retry would start at 3.0 s, exactly when the
    # caller's scope ends. An attempt that starts at its deadline cannot do anything.
    api = FakeAPI()
    async with make_client(api, retry=FixedBackoff(max_retries=3, wait=2.25)) as client:
        start = trio.current_time()
        with trio.move_on_at(start + 3.0) as scope:
            [result] = await client.run_batch([body(CUT_ONCE, stream=True)])
        ended = trio.current_time() - start
    assert not scope.cancelled_caught, "the engine slept until the caller's deadline"
    assert ended == 0.75
    assert not result.ok and result.attempts == 1
    assert isinstance(result.error, trioclient.IncompleteStreamError)
    assert any("deadline" in note for note in result.error.__notes__)
    assert api.attempts == {CUT_ONCE: 1}


# --- progress -------------------------------------------------------------------------


async def test_progress_is_published(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeAPI()
    seen: list[BatchProgress] = []
    items = [body(f"sleep={1 + i % 3} n={i}") for i in range(30)] + [body("status=400")]
    async with make_client(api) as client:
        async with client.batch(items, max_concurrent=5) as results:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for p, _ in results.progress.transitions():
                        seen.append(p)

                nursery.start_soon(watch)
                async for _ in results:
                    pass
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
    final = results.progress.value
    assert final.total == 31 and final.remaining == 0
    assert (final.done, final.succeeded, final.failed) == (31, 30, 1)
    assert final.in_flight == 0 and final.queued == 0
    assert final.prompt_tokens == 5 * 30
    assert final.latency_p50 == pytest.approx(2.0, rel=0.06)
    assert final.latency_p99 == pytest.approx(3.0, rel=0.06)
    assert final.requests_per_second == pytest.approx(31 / final.elapsed)
    # Live updates, not just the last one: counts rise while the batch runs.
    dones = [p.done for p in seen]
    assert dones == sorted(dones) and len(set(dones)) > 5
    assert any(p.in_flight == 5 for p in seen)


# --- the embedded server, real sockets ------------------------------------------------


async def test_against_the_embedded_server() -> None:
    with trio.fail_after(10):
        async with open_server(rpm=3000, ttft="fixed:0.01") as server:
            async with trioclient.Client(api_key="sk-test", base_url=server.base_url) as client:
                bodies = [body(f"question {i}", stream=i % 2 == 0) for i in range(80)]
                results = await client.run_batch(bodies, max_concurrent=16)
            stats = server.statistics()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert stats.chat_requests == 80 and stats.rate_limited == 0
    assert all(r.time_to_first_token is not None for r in results[::2])


async def test_an_unbounded_limiter_needs_an_explicit_batch_size() -> None:

    client = trioclient.Client(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
        limiter=trio.CapacityLimiter(math.inf),
    )
    async with client:
        with trio.fail_after(5), pytest.raises(ValueError, match="max_concurrent"):
            await client.run_batch([{"model": "m", "messages": [{"role": "user", "content": "x"}]}])


async def test_a_stream_that_cannot_open_is_not_retried_by_the_engine() -> None:
    calls = 0

    def json_instead_of_a_stream(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"choices": []})

    client = trioclient.Client(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(json_instead_of_a_stream),
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with client:
        with trio.fail_after(30):
            [result] = await client.run_batch([body])
    assert isinstance(result.error, trioclient.APIResponseValidationError)
    assert "text/event-stream" in str(result.error)
    assert calls == 1
