"""The openai SDK's request options, as trioclient takes them.

``extra_body``/``extra_query``/``extra_headers`` per call; ``max_retries``,
``default_query``, ``organization``/``project`` and a float ``timeout`` per client;
``with_options`` copies; ``with_raw_response``; ``client.models``; and answers that go
back into ``messages`` as they are. The server side is ``httpx.MockTransport`` on
trio's autojump clock: exact, and no real waiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import trioclient
from trioclient import RetryPolicy, Timeout

URL = "http://127.0.0.1:9/v1"
MESSAGES = [{"role": "user", "content": "hi"}]

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
TOOL_COMPLETION = {
    **COMPLETION,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
}


class Recorder:
    """A MockTransport handler that keeps every request and answers from a script."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(200, json=COMPLETION))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def client_for(handler: Any, **options: Any) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test", base_url=URL, transport=httpx.MockTransport(handler), **options
    )


# -- per call: extra_body, extra_query, extra_headers ---------------------------------


async def test_extra_body_is_merged_into_the_top_level_of_the_body() -> None:
    server = Recorder()
    async with client_for(server) as client:
        await client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            temperature=0.5,
            extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}},
        )
    body = server.body()
    assert body["top_k"] == 20
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["temperature"] == 0.5
    assert "extra_body" not in body


async def test_extra_query_goes_to_the_url_and_default_query_to_every_url() -> None:
    server = Recorder()
    async with client_for(server, default_query={"api-version": "2024-10-21"}) as client:
        await client.chat.completions.create(
            model="m", messages=MESSAGES, extra_query={"trace": "1"}
        )
        await client.chat.completions.create(model="m", messages=MESSAGES)
    first, second = server.requests
    assert dict(first.url.params) == {"api-version": "2024-10-21", "trace": "1"}
    assert dict(second.url.params) == {"api-version": "2024-10-21"}
    assert "extra_query" not in server.body(0)


async def test_extra_headers_are_sent_for_that_call_only() -> None:
    server = Recorder()
    async with client_for(server) as client:
        await client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"X-Trace": "abc"}
        )
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert server.requests[0].headers["x-trace"] == "abc"
    assert "x-trace" not in server.requests[1].headers


async def test_extra_options_of_the_wrong_type_are_refused_before_sending() -> None:
    server = Recorder()
    async with client_for(server) as client:
        for option in ("extra_body", "extra_query", "extra_headers"):
            with pytest.raises(TypeError, match=option):
                await client.chat.completions.create(
                    model="m", messages=MESSAGES, **{option: ["not", "a", "dict"]}
                )
    assert server.requests == []


async def test_organization_and_project_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Recorder()
    async with client_for(server, organization="org-1", project="proj-1") as client:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    async with client_for(server) as client:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    explicit, from_env = server.requests
    assert (explicit.headers["openai-organization"], explicit.headers["openai-project"]) == (
        "org-1",
        "proj-1",
    )
    assert (from_env.headers["openai-organization"], from_env.headers["openai-project"]) == (
        "org-env",
        "proj-env",
    )


# -- retries: max_retries ---------------------------------------------------------------


def failing(status: int = 500) -> Recorder:
    return Recorder(lambda request: httpx.Response(status, json={"error": {"message": "no"}}))


@pytest.mark.parametrize(("max_retries", "attempts"), [(0, 1), (2, 3)])
async def test_client_max_retries(
    autojump_clock: trio.testing.MockClock, max_retries: int, attempts: int
) -> None:
    server = failing()
    async with client_for(server, max_retries=max_retries) as client:
        with trio.fail_after(600), pytest.raises(trioclient.InternalServerError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(server.requests) == attempts


async def test_per_call_max_retries_overrides_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = failing()
    async with client_for(server, max_retries=5) as client:
        with trio.fail_after(600), pytest.raises(trioclient.InternalServerError):
            await client.chat.completions.create(model="m", messages=MESSAGES, max_retries=1)
    assert len(server.requests) == 2


def test_retry_and_max_retries_together_are_refused() -> None:
    with pytest.raises(ValueError, match="retry or max_retries"):
        client_for(Recorder(), retry=RetryPolicy(), max_retries=2)
    with pytest.raises(ValueError, match="max_retries"):
        client_for(Recorder(), max_retries=-1)


# -- a float timeout bounds each wait, not the whole answer -----------------------------


def chunk(content: str) -> bytes:
    obj = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class PacedBody(httpx.AsyncByteStream):
    """Bytes with pauses between them (seconds of trio time)."""

    def __init__(self, script: list[bytes | float]) -> None:
        self.script = script

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for step in self.script:
            if isinstance(step, float):
                await trio.sleep(step)
            else:
                yield step


def paced_stream(script: list[bytes | float]) -> Recorder:
    return Recorder(
        lambda request: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=PacedBody(script)
        )
    )


async def test_a_float_timeout_does_not_cut_a_stream_that_keeps_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 40 chunks a quarter second apart: ten seconds in all, against timeout=1.
    script: list[bytes | float] = [chunk("a")]
    for _ in range(40):
        script += [0.25, chunk("b")]
    server = paced_stream([*script, b"data: [DONE]\n\n"])
    async with client_for(server, timeout=1) as client:
        with trio.fail_after(600):
            start = trio.current_time()
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True
            )
            async with stream:
                final = await stream.get_final_completion()
            assert trio.current_time() - start >= 10
    assert final.choices[0].message.content == "a" + "b" * 40


async def test_a_float_timeout_still_fails_a_stream_that_stalls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = paced_stream([chunk("a"), 0.25, chunk("b"), 2.0, chunk("c"), b"data: [DONE]\n\n"])
    async with client_for(server, timeout=1, max_retries=0) as client:
        with trio.fail_after(600):
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True
            )
            with pytest.raises(trioclient.APITimeoutError, match=r"Timeout\.idle") as caught:
                async with stream:
                    async for _ in stream:
                        pass
    assert caught.value.partial is not None
    assert caught.value.partial.choices[0].message.content == "ab"


async def test_a_float_timeout_bounds_the_wait_for_the_first_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(5)
        return httpx.Response(200, json=COMPLETION)

    async with client_for(slow, max_retries=0) as client:
        with trio.fail_after(600), pytest.raises(trioclient.APITimeoutError, match="first_byte"):
            await client.chat.completions.create(model="m", messages=MESSAGES, timeout=1)


def test_timeout_numbers_and_none() -> None:
    assert Timeout.coerce(2) == Timeout(total=None, connect=2.0, first_byte=2.0, idle=2.0)
    assert Timeout.coerce(None) == Timeout(total=None, connect=None, first_byte=None, idle=None)
    with pytest.raises(TypeError, match="timeout"):
        Timeout.coerce("5")  # type: ignore[arg-type]


# -- with_options ---------------------------------------------------------------------


async def test_with_options_shares_the_limiter_and_counters_and_changes_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Recorder()
    async with client_for(server, max_concurrent=3) as client:
        quick = client.with_options(
            timeout=5, max_retries=0, default_headers={"X-Copy": "1"}, default_query={"q": "1"}
        )
        assert quick.limiter is client.limiter
        assert quick.timeout == Timeout.coerce(5) and client.timeout == Timeout()
        assert quick.retry.max_retries == 0 and client.retry.max_retries == 4
        await quick.chat.completions.create(model="m", messages=MESSAGES)
        assert client.statistics().requests_succeeded == 1
        await quick.aclose()  # a copy closes nothing
        await client.chat.completions.create(model="m", messages=MESSAGES)
    copied, original = server.requests
    assert copied.headers["x-copy"] == "1" and dict(copied.url.params) == {"q": "1"}
    assert "x-copy" not in original.headers and not original.url.params
    with pytest.raises(RuntimeError, match="closed"):
        await quick.chat.completions.create(model="m", messages=MESSAGES)


async def test_with_options_copy_of_a_new_client_is_not_open_until_its_client_is() -> None:
    client = client_for(Recorder())
    copy = client.with_options(max_retries=1)
    with pytest.raises(RuntimeError, match="not open"):
        await copy.chat.completions.create(model="m", messages=MESSAGES)
    async with client, copy:
        await copy.chat.completions.create(model="m", messages=MESSAGES)


def test_with_options_refuses_what_a_copy_cannot_change() -> None:
    client = client_for(Recorder())
    with pytest.raises(TypeError, match="max_concurrent"):
        client.with_options(max_concurrent=5)
    with pytest.raises(ValueError, match="retry or max_retries"):
        client.with_options(retry=RetryPolicy(), max_retries=1)


# -- the response behind an answer ----------------------------------------------------


async def test_with_raw_response_gives_headers_and_request_id() -> None:
    server = Recorder(
        lambda request: httpx.Response(
            200,
            json=COMPLETION,
            headers={"x-request-id": "req_42", "x-ratelimit-remaining-requests": "99"},
        )
    )
    async with client_for(server) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, extra_body={"top_k": 1}
        )
        assert client.statistics().requests_succeeded == 1
    assert raw.request_id == "req_42"
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content == "ok"
    assert server.body()["top_k"] == 1


async def test_a_stream_shows_its_http_response() -> None:
    server = Recorder(
        lambda request: httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "x-request-id": "req_7"},
            content=chunk("x") + b"data: [DONE]\n\n",
        )
    )
    async with client_for(server) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async with stream:
            assert stream.response is not None
            assert stream.response.headers["x-request-id"] == "req_7"


# -- what trioclient returned goes back in --------------------------------------------


async def test_a_returned_message_with_tool_calls_goes_back_into_messages() -> None:
    answers = iter([TOOL_COMPLETION, COMPLETION])
    server = Recorder(lambda request: httpx.Response(200, json=next(answers)))
    async with client_for(server) as client:
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = await client.chat.completions.create(model="m", messages=messages)
        message = first.choices[0].message
        messages.append(message)  # as it is: no .to_dict()
        messages.append(
            {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "18 C"}
        )
        second = await client.chat.completions.create(model="m", messages=messages)
    assert second.choices[0].message.content == "ok"
    sent = server.body()["messages"]
    assert sent[1] == TOOL_COMPLETION["choices"][0]["message"]  # type: ignore[index]
    assert sent[2]["tool_call_id"] == "call_1"


# -- client.models --------------------------------------------------------------------


async def test_models_list_and_retrieve() -> None:
    def models(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [
                        {"id": "grok-4", "object": "model", "created": 1, "owned_by": "xai"},
                        {"id": "grok-3", "object": "model", "extra": True},
                    ],
                },
            )
        if request.url.path == "/v1/models/grok-4":
            return httpx.Response(200, json={"id": "grok-4", "object": "model"})
        return httpx.Response(404, json={"error": {"message": "no such model"}})

    server = Recorder(models)
    async with client_for(server, default_query={"api-version": "1"}) as client:
        listed = await client.models.list()
        one = await client.models.retrieve("grok-4")
        with pytest.raises(trioclient.NotFoundError):
            await client.models.retrieve("nope")
    assert [m.id for m in listed] == ["grok-4", "grok-3"]
    assert listed.data[0].owned_by == "xai" and listed.data[1].data["extra"] is True
    assert one.id == "grok-4"
    assert all(r.method == "GET" and r.url.params["api-version"] == "1" for r in server.requests)


async def test_models_list_refuses_what_is_not_a_list() -> None:
    server = Recorder(lambda request: httpx.Response(200, json={"models": []}))
    async with client_for(server) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="'data' list"):
            await client.models.list()


async def test_models_go_through_the_callers_http_client() -> None:
    server = Recorder(lambda request: httpx.Response(200, json={"data": []}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        async with trioclient.Client(api_key="sk-test", base_url=URL, http_client=http) as client:
            assert len(await client.models.list()) == 0
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
