"""The client core: API surface, errors, retries, deadlines, the 429 gate, the limiter.

Status paths go through respx (``Client(transport=respx.MockTransport(...))``) on trio's
autojump clock, so backoff timing is exact and takes no real time.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx
import trio
from _fakes import completion

import trioclient
from trioclient import RetryPolicy, Timeout

URL = "http://127.0.0.1:9/v1"
KEY = "sk-test-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Tell me a joke"}]


JOKE = "Why did the trio cross the road?"


def answer_body(content: str = JOKE, **extra: Any) -> dict[str, Any]:
    """The completion these tests expect back: grok-4's, 11 + 7 tokens, no refusal."""
    return completion(content, model="grok-4", tokens=(11, 7), message={"refusal": None}, **extra)


def make_client(router: respx.Router, **kwargs: Any) -> trioclient.Client:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("base_url", URL)
    return trioclient.Client(transport=httpx.MockTransport(router.async_handler), **kwargs)


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False)


# --- the happy path and the public surface -------------------------------------------


async def test_create_returns_a_typed_completion_and_keeps_unknown_fields(
    router: respx.Router,
) -> None:
    body = answer_body(future_field={"kept": True})
    body["choices"][0]["message"]["annotations"] = [{"type": "url"}]
    route = router.post(f"{URL}/chat/completions").respond(200, json=body)
    async with make_client(router) as client:
        answer = await client.chat.completions.create(
            model="grok-4", messages=MESSAGES, temperature=0.3, seed=7, tools=[{"type": "function"}]
        )
    assert isinstance(answer, trioclient.ChatCompletion)
    assert answer.choices[0].message.content == body["choices"][0]["message"]["content"]
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage == trioclient.Usage(11, 7, 18)
    assert (answer.id, answer.model, answer.created) == ("chatcmpl-1", "grok-4", 1700000000)
    assert answer.to_dict() == body
    assert answer.choices[0].message.to_dict()["annotations"] == [{"type": "url"}]
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "grok-4",
        "messages": MESSAGES,
        "temperature": 0.3,
        "seed": 7,
        "tools": [{"type": "function"}],
    }
    headers = route.calls.last.request.headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"


async def test_a_compressed_answer_is_decoded(router: respx.Router) -> None:
    import gzip

    packed = gzip.compress(json.dumps(answer_body()).encode())
    router.post(f"{URL}/chat/completions").respond(
        200,
        content=packed,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    async with make_client(router) as client:
        answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.choices[0].message.content == JOKE


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    router: respx.Router,
) -> None:
    # The Content-Length says too much; the body itself would fit.
    router.post(f"{URL}/chat/completions").respond(
        200, content=b"{}", headers={"content-length": "4096"}
    )
    async with make_client(router, max_response_bytes=1000, max_retries=0) as client:
        with pytest.raises(trioclient.ResponseTooLargeError, match=r"^response of 4096 bytes"):
            await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_models_are_frozen(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(200, json=answer_body())
    async with make_client(router) as client:
        answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(AttributeError):
        answer.id = "other"  # type: ignore[misc]


async def test_xai_style_chat_sample_appends_nothing_by_itself(router: respx.Router) -> None:
    route = router.post(f"{URL}/chat/completions").respond(200, json=answer_body("Ha."))
    async with make_client(router) as client:
        chat = client.chat.create(model="grok-4", max_tokens=100)
        chat.append(trioclient.system("Be brief."))
        chat.append(trioclient.user("Tell me a joke"))
        response = await chat.sample()
        assert response.content == "Ha."
        assert response.usage.total_tokens == 18
        assert len(chat.messages) == 2
        chat.append(response)
        chat.append(trioclient.user("Another"))
        await chat.sample()
    sent = json.loads(route.calls.last.request.content)
    assert sent["max_tokens"] == 100
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][2]["content"] == "Ha."


async def test_api_key_and_base_url_fall_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert trioclient.Client().base_url == httpx.URL("https://api.x.ai/v1/")
    monkeypatch.setenv("XAI_API_KEY", "sk-xai")
    monkeypatch.setenv("TRIOCLIENT_BASE_URL", "http://localhost:8000/v1")
    client = trioclient.Client()
    assert client.base_url == httpx.URL("http://localhost:8000/v1/")
    request = client.build_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert request.headers["authorization"] == "Bearer sk-xai"


async def test_using_a_client_outside_its_block_is_a_runtime_error(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(200, json=answer_body())
    client = make_client(router)
    with pytest.raises(RuntimeError, match="not open"):
        await client.chat.completions.create(model="m", messages=MESSAGES)
    async with client:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(RuntimeError, match="already closed"):
        async with client:
            pass


async def test_a_callers_http_client_is_used_and_not_closed(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(200, json=answer_body())
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as http:
        async with trioclient.Client(api_key=KEY, base_url=URL, http_client=http) as client:
            answer = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert answer.content
        assert not http.is_closed
        request = router.calls.last.request
        # The caller's pool must never time out a request the limiter admitted.
        assert request.extensions["timeout"]["pool"] is None


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"base_url": "not a url"}, ValueError, "not an http"),
        ({"base_url": "ftp://example.com/v1"}, ValueError, "not an http"),
        ({"base_url": "http://api.openai.com/v1"}, ValueError, "plain http"),
        ({"max_concurrent": 0}, ValueError, "max_concurrent"),
        ({"max_concurrent": 2.5}, ValueError, "max_concurrent"),
        ({"api_key": ""}, ValueError, "empty"),
        ({"timeout": "soon"}, TypeError, "timeout"),
        ({"timeout": Timeout(total=5)}, None, None),
        ({"base_url": "http://api.openai.com/v1", "allow_insecure_http": True}, None, None),
        ({"base_url": "http://vllm:8000/v1"}, None, None),
    ],
)
def test_bad_configuration_is_rejected_up_front(
    kwargs: dict[str, Any], error: type[Exception] | None, match: str | None
) -> None:
    kwargs.setdefault("api_key", KEY)
    if error is None:
        trioclient.Client(**kwargs)
    else:
        with pytest.raises(error, match=match):
            trioclient.Client(**kwargs)


def test_a_missing_key_says_where_keys_come_from() -> None:
    with pytest.raises(ValueError, match="XAI_API_KEY"):
        trioclient.Client(base_url=URL)


def _circular() -> dict[str, Any]:
    looped: dict[str, Any] = {"a": [1, 2]}
    looped["a"].append(looped)
    return looped


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"messages": []}, ValueError, "empty"),
        ({"messages": ["hello"]}, TypeError, r"messages\[0\]"),
        ({"messages": "hello"}, TypeError, "list"),
        ({"messages": [{"content": "no role"}]}, ValueError, "role"),
        ({"messages": MESSAGES, "model": ""}, ValueError, "model"),
        ({"messages": MESSAGES, "stop": object()}, TypeError, "JSON"),
        ({"messages": MESSAGES, "stop": [1, {"deep": {1j}}]}, TypeError, "type set is not"),
        ({"messages": MESSAGES, "metadata": _circular()}, TypeError, "Circular reference"),
    ],
)
async def test_bad_requests_fail_before_anything_is_sent(
    router: respx.Router, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(200, json=answer_body())
    kwargs.setdefault("model", "m")
    async with make_client(router) as client:
        with pytest.raises(error, match=match):
            await client.chat.completions.create(**kwargs)
    assert route.call_count == 0


async def test_the_key_never_appears_in_reprs_or_errors(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(
        401,
        json={
            "error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}
        },
    )
    async with make_client(router) as client:
        with pytest.raises(trioclient.AuthenticationError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
        texts = [repr(client), str(caught.value), repr(caught.value), repr(client.statistics())]
        texts.append(repr(caught.value.request.headers))
    assert all(KEY not in text for text in texts), texts
    assert "[redacted]" in str(caught.value)


# --- errors and what is retried -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, trioclient.BadRequestError),
        (401, trioclient.AuthenticationError),
        (403, trioclient.PermissionDeniedError),
        (404, trioclient.NotFoundError),
        (422, trioclient.UnprocessableEntityError),
        (418, trioclient.APIStatusError),
    ],
)
async def test_client_errors_map_to_their_class_and_are_not_retried(
    router: respx.Router, status: int, error: type[trioclient.APIStatusError]
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(
        status,
        json={"error": {"message": "nope", "type": "invalid_request_error", "code": "bad"}},
        headers={"x-request-id": "req-42"},
    )
    async with make_client(router) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert caught.value.request_id == "req-42"
    assert caught.value.body == {
        "error": {"message": "nope", "type": "invalid_request_error", "code": "bad"}
    }
    assert "nope" in str(caught.value) and "req-42" in str(caught.value)
    assert route.call_count == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_until_success(
    router: respx.Router, autojump_clock: trio.testing.MockClock, status: int
) -> None:
    route = router.post(f"{URL}/chat/completions").mock(
        side_effect=[
            httpx.Response(status, json={"error": {"message": "busy"}}),
            httpx.Response(status, text="<html>bad gateway</html>"),
            httpx.Response(200, json=answer_body()),
        ]
    )
    async with make_client(router) as client:
        with trio.fail_after(120):
            answer = await client.chat.completions.create(model="m", messages=MESSAGES)
        stats = client.statistics()
    assert answer.content
    assert route.call_count == 3
    assert (stats.requests_sent, stats.retries, stats.requests_succeeded) == (3, 2, 1)
    assert stats.rate_limited == (3 - 1 if status == 429 else 0)


async def test_retries_give_up_after_max_retries_with_the_last_error(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(503, json={"error": {"message": "down"}})
    async with make_client(router, retry=RetryPolicy(max_retries=2)) as client:
        with trio.fail_after(120), pytest.raises(trioclient.InternalServerError, match="down"):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert client.statistics().requests_failed == 1
    assert route.call_count == 3


async def test_insufficient_quota_is_not_retried(router: respx.Router) -> None:
    route = router.post(f"{URL}/chat/completions").respond(
        429,
        json={
            "error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}
        },
    )
    async with make_client(router) as client:
        with pytest.raises(trioclient.RateLimitError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.code == "insufficient_quota"
    assert route.call_count == 1


async def test_connection_errors_and_timeouts_are_retried(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    calls = 0

    async def refuse_then_hang_then_answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls == 2:
            await trio.sleep_forever()
        return httpx.Response(200, json=answer_body())

    router.post(f"{URL}/chat/completions").mock(side_effect=refuse_then_hang_then_answer)
    async with make_client(router, timeout=Timeout(total=30)) as client:
        with trio.fail_after(300):
            start = trio.current_time()
            answer = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.content
    assert calls == 3  # respx does not record calls whose side effect raised
    assert trio.current_time() - start >= 30  # the hung attempt ran its whole deadline


async def test_a_timeout_that_is_never_retried_names_the_deadline(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    router.post(f"{URL}/chat/completions").mock(side_effect=hang)
    async with make_client(
        router, timeout=Timeout(total=5), retry=RetryPolicy(max_retries=0)
    ) as client:
        with (
            trio.fail_after(60),
            pytest.raises(trioclient.APITimeoutError, match=r"Timeout\.total"),
        ):
            await client.chat.completions.create(model="m", messages=MESSAGES)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"object": "chat.completion"}',
        b'{"choices": "nope"}',
        b'{"choices": [{"index": 0, "message": "hi"}]}',
        b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}',
        b'{"choices": [{"message": {"role": "assistant", "tool_calls": "get_weather"}}]}',
        b"[1, 2, 3]",
    ],
)
async def test_a_malformed_body_is_a_validation_error_naming_the_problem(
    router: respx.Router, body: bytes
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(
        200, content=body, headers={"content-type": "application/json"}
    )
    async with make_client(router) as client:
        with pytest.raises(trioclient.APIResponseValidationError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert str(caught.value).startswith("invalid response:")
    assert caught.value.request is not None
    assert route.call_count == 1


async def test_redirects_are_errors_naming_the_location(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(
        307, headers={"location": "https://elsewhere.example/v1/chat/completions"}
    )
    async with make_client(router) as client:
        with pytest.raises(trioclient.APIStatusError, match=r"elsewhere\.example"):
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert router.calls.call_count == 1


async def test_a_body_over_the_bound_is_refused(router: respx.Router) -> None:
    router.post(f"{URL}/chat/completions").respond(200, json=answer_body("x" * 5000))
    async with make_client(router, max_response_bytes=1000) as client:
        with pytest.raises(trioclient.ResponseTooLargeError, match="1000"):
            await client.chat.completions.create(model="m", messages=MESSAGES)


# --- backoff timing, deadlines, the 429 gate ---------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "1000"}, 120.0),  # capped at RetryPolicy.max_retry_after
    ],
)
async def test_the_servers_wait_is_honoured(
    router: respx.Router,
    autojump_clock: trio.testing.MockClock,
    headers: dict[str, str],
    expected: float,
) -> None:
    router.post(f"{URL}/chat/completions").mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "slow"}}, headers=headers),
            httpx.Response(200, json=answer_body()),
        ]
    )
    async with make_client(router) as client:
        with trio.fail_after(600):
            start = trio.current_time()
            await client.chat.completions.create(model="m", messages=MESSAGES)
            assert trio.current_time() - start == pytest.approx(expected, abs=1e-6)


def test_retry_after_http_date_is_relative_to_now() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    headers = httpx.Headers({"retry-after": later})
    assert trioclient._retry.retry_after_seconds(headers, now=now.timestamp()) == pytest.approx(7)
    assert trioclient._retry.retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert trioclient._retry.retry_after_seconds(httpx.Headers({"retry-after-ms": "-5"})) is None


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    import random

    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for n, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (200, 4.0)]:
        delays = [policy.backoff(n, rng) for _ in range(2000)]
        assert all(0 <= d <= ceiling for d in delays)
        # Spread over the whole range, not clustered at the ceiling.
        assert min(delays) < ceiling * 0.05 and max(delays) > ceiling * 0.95


async def test_no_sleep_past_the_callers_deadline(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(
        503, json={"error": {"message": "down"}}, headers={"retry-after": "30"}
    )
    async with make_client(router) as client:
        start = trio.current_time()
        with trio.move_on_after(10), pytest.raises(trioclient.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert trio.current_time() == start  # failed at once, without sleeping
    assert route.call_count == 1
    assert any("deadline" in note for note in caught.value.__notes__)


async def test_a_callers_cancel_scope_works_and_the_client_stays_usable(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    slow = True

    async def handler(request: httpx.Request) -> httpx.Response:
        if slow:
            await trio.sleep(1000)
        return httpx.Response(200, json=answer_body())

    router.post(f"{URL}/chat/completions").mock(side_effect=handler)
    async with make_client(router) as client:
        with trio.move_on_after(5) as scope:
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert scope.cancelled_caught
        stats = client.statistics()
        assert stats.in_flight == 0 and stats.retries == 0
        assert client.limiter.borrowed_tokens == 0
        slow = False
        with trio.fail_after(5):
            assert (await client.chat.completions.create(model="m", messages=MESSAGES)).content


async def test_cancellation_and_keyboard_interrupt_are_never_retried(router: respx.Router) -> None:
    calls = 0

    def interrupt(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    router.post(f"{URL}/chat/completions").mock(side_effect=interrupt)
    async with make_client(router) as client:
        with pytest.raises(KeyboardInterrupt):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        assert client.limiter.borrowed_tokens == 0
    assert calls == 1


async def test_one_429_delays_its_own_request_not_the_others(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    # One 429 is no evidence of a budget this client spent (the rate controller in
    # trioclient._gate tells the two apart): the refused request waits the 2 s it was
    # told, the nine that arrive meanwhile go at once.
    sent_at: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        if len(sent_at) == 1:
            return httpx.Response(
                429, json={"error": {"message": "wait"}}, headers={"retry-after": "2"}
            )
        await trio.sleep(0.5)
        return httpx.Response(200, json=answer_body())

    router.post(f"{URL}/chat/completions").mock(side_effect=handler)
    async with make_client(router, max_concurrent=10) as client:

        async def later_request() -> None:
            await trio.sleep(0.1)  # arrives after the 429
            await client.chat.completions.create(model="m", messages=MESSAGES)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                )
                for _ in range(9):
                    nursery.start_soon(later_request)
        stats = client.statistics()
    assert len(sent_at) == 11  # 10 requests, one retry
    assert sent_at[1:10] == [pytest.approx(0.1)] * 9, sent_at
    assert sent_at[10] >= 2.0
    assert stats.rate_limited == 1 and stats.retries == 1
    assert stats.rate_limit_pauses == 0


# --- the limiter -----------------------------------------------------------------------


class SlowServer:
    """Answers after one second, counting the requests it is handling at once."""

    def __init__(self) -> None:
        self.active = self.peak = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await trio.sleep(1)
        self.active -= 1
        return httpx.Response(200, json=answer_body())


async def test_max_concurrent_bounds_requests_in_flight_and_can_change(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    server = SlowServer()
    router.post(f"{URL}/chat/completions").mock(side_effect=server)
    async with make_client(router, max_concurrent=3) as client:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(
                        lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                    )
                await trio.sleep(0.5)
                assert client.statistics().waiting == 9
            assert server.peak == 3
            server.peak = 0
            client.max_concurrent = 6
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(
                        lambda: client.chat.completions.create(model="m", messages=MESSAGES)
                    )
        assert server.peak == 6
        assert client.statistics().requests_succeeded == 24


async def test_a_shared_limiter_bounds_several_clients_together(
    router: respx.Router, autojump_clock: trio.testing.MockClock
) -> None:
    server = SlowServer()
    router.post(f"{URL}/chat/completions").mock(side_effect=server)
    limiter = trio.CapacityLimiter(4)
    with pytest.raises(ValueError, match="not both"):
        make_client(router, limiter=limiter, max_concurrent=3)
    async with make_client(router, limiter=limiter) as a, make_client(router, limiter=limiter) as b:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                for client in (a, b) * 6:
                    nursery.start_soon(
                        lambda c=client: c.chat.completions.create(model="m", messages=MESSAGES)
                    )
    assert server.peak == 4


def test_import_is_lazy_about_the_cli_the_server_and_rich() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trioclient; "
        "heavy = [m for m in ('trioclient.testing', 'trioclient.cli', 'rich', 'openai', 'trioclient._batch') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_max_concurrent_reports_infinity_as_a_large_number() -> None:
    client = trioclient.Client(api_key=KEY, base_url=URL, limiter=trio.CapacityLimiter(math.inf))
    assert client.max_concurrent >= 2**31 - 1


async def test_default_headers_merge_case_insensitively_and_the_key_wins(
    router: respx.Router,
) -> None:
    route = router.post(f"{URL}/chat/completions").respond(200, json=answer_body())
    async with make_client(
        router, default_headers={"authorization": "Bearer other", "x-team": "search"}
    ) as client:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    headers = route.calls.last.request.headers
    assert headers.get_list("authorization") == [f"Bearer {KEY}"]
    assert headers["x-team"] == "search"


async def test_an_illegal_header_is_bad_input_not_a_connection_error() -> None:
    from trioclient.testing import open_server

    async with open_server() as server:
        async with trioclient.Client(api_key=KEY, base_url=server.base_url) as client:
            with trio.fail_after(10), pytest.raises(ValueError, match="Illegal header name"):
                await client.chat.completions.create(
                    model="m", messages=MESSAGES, extra_headers={"Bad Header": "x"}
                )
            assert client.statistics().retries == 0
        assert server.statistics().requests_total == 0


@pytest.mark.parametrize("key", ["sk-caf\u00e9-zq9", "sk-\u201czq9\u201d", "sk-zq9\nzq9"])
def test_a_key_with_non_ascii_or_control_characters_is_refused_without_echo(key: str) -> None:
    with pytest.raises(ValueError, match="non-ASCII or control") as caught:
        trioclient.Client(api_key=key, base_url=URL)
    assert "zq9" not in repr(caught.value)


@pytest.mark.parametrize(
    ("default_headers", "extra_headers"),
    [(None, None), ({"Content-Length": "5"}, None), (None, {"content-length": "5"})],
)
def test_each_request_carries_one_content_length_its_own(
    default_headers: dict[str, str] | None, extra_headers: dict[str, str] | None
) -> None:
    # The length is added to each request's own copy of the client's head: never to
    # the head itself (the next request would carry two), and a length given among
    # the headers is replaced, not sent beside it.
    client = trioclient.Client(api_key=KEY, base_url=URL, default_headers=default_headers)
    for content in ("x", "x" * 100, "xy"):
        body = {"model": "m", "messages": [{"role": "user", "content": content}]}
        request = client.build_request(body, extra_headers=extra_headers)
        assert request.headers.get_list("content-length") == [str(len(request.content))]
        if not (default_headers or extra_headers):  # last, where the transport looks
            assert request.headers.raw[-1][0].lower() == b"content-length"
