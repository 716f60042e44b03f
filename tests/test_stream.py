"""Streams: typed chunks, accumulation, cut streams, deadlines, and leaving early.

The server side here is a scripted body (bytes, pauses, failures) behind
``httpx.MockTransport``, on trio's autojump clock: exact about timing, no real waiting.
The same behaviours on real sockets against the embedded server are in
``test_stream_server.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from _fakes import DONE, ScriptedBody, chunk, usage

import trioclient
from trioclient import RetryPolicy, Timeout

URL = "http://127.0.0.1:9/v1"
MESSAGES = [{"role": "user", "content": "hi"}]


USAGE = chunk(choices=[], usage=usage(5, 3))  # the last chunk: no choices, the usage
HAPPY = [
    chunk("", role="assistant"),
    chunk("Hello"),
    chunk(", "),
    chunk("world"),
    chunk(finish="stop"),
    USAGE,
    DONE,
]


class Server:
    """Answers each request with the next script (the last one repeats)."""

    def __init__(self, *scripts: list[Any] | Callable[[], httpx.Response]) -> None:
        self.scripts = list(scripts)
        self.bodies: list[ScriptedBody] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.scripts[min(len(self.requests), len(self.scripts)) - 1]
        if callable(script):
            return script()
        body = ScriptedBody(script)
        self.bodies.append(body)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


def client_for(server: Server, **kwargs: Any) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test", base_url=URL, transport=httpx.MockTransport(server), **kwargs
    )


async def test_chunks_arrive_typed_and_add_up_to_the_final_completion() -> None:
    server = Server(HAPPY)
    async with client_for(server) as client:
        stream = await client.chat.completions.create(
            model="grok-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [c async for c in stream]
        final = await stream.get_final_completion()
        stats = client.statistics()
    assert all(isinstance(c, trioclient.ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello, world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage == trioclient.Usage(5, 3, 8) and chunks[-1].choices == ()
    assert final.content == "Hello, world"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage == trioclient.Usage(5, 3, 8)
    assert final.id == "chatcmpl-s"
    sent = json.loads(server.requests[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert server.requests[0].headers["accept"] == "text/event-stream"
    assert (stats.requests_succeeded, stats.total_tokens, stats.in_flight) == (1, 8, 0)
    assert client.limiter.borrowed_tokens == 0


async def test_tool_call_deltas_are_merged_by_index() -> None:
    calls_script = [
        chunk(
            role="assistant",
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        ),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
        chunk(
            tool_calls=[
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        ),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
        chunk(finish="tool_calls"),
        DONE,
    ]
    async with client_for(Server(calls_script)) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
            final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_n_choices_are_accumulated_separately() -> None:
    script = [
        chunk("a", index=0),
        chunk("x", index=1),
        chunk("b", index=0),
        chunk("y", index=1),
        DONE,
    ]
    async with client_for(Server(script)) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES, n=2) as stream:
            final = await stream.get_final_completion()
    assert [c.message.content for c in final.choices] == ["ab", "xy"]


async def test_xai_style_stream_pairs_the_answer_so_far_with_each_chunk() -> None:
    async with client_for(Server(HAPPY)) as client:
        chat = client.chat.create(model="grok-4")
        chat.append(trioclient.user("hi"))
        seen = []
        async with chat.stream() as pairs:
            async for response, piece in pairs:
                seen.append((response.content, piece.content))
    assert seen[-1][0] == "Hello, world"
    assert [new for _, new in seen if new] == ["Hello", ", ", "world"]
    assert seen[2] == ("Hello, ", ", ")
    assert len(chat.messages) == 1  # streaming appends nothing either


@pytest.mark.parametrize(
    ("tail", "error", "match"),
    [
        ([], trioclient.IncompleteStreamError, r"before 'data: \[DONE\]'"),
        ([b"data: {not json}\n\n"], trioclient.APIResponseValidationError, "not JSON"),
        (
            [b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'],
            trioclient.APIStreamError,
            "model overloaded",
        ),
        ([b'event: error\ndata: {"message": "boom"}\n\n'], trioclient.APIStreamError, "boom"),
        ([b"event: error\ndata: model crashed\n\n"], trioclient.APIStreamError, "model crashed"),
        (
            [
                b'data: {"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": null}],'
                b' "error": {"message": "upstream gone", "code": 502}}\n\n',
                DONE,
            ],
            trioclient.APIStreamError,
            "upstream gone",
        ),
        (
            [b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}\n\n', DONE],
            trioclient.APIStreamError,
            "finish_reason 'error'",
        ),
        (
            [b'data: {"object": "error", "message": "bad input", "code": 400}\n\n'],
            trioclient.APIStreamError,
            "bad input",
        ),
        ([httpx.ReadError("connection reset by peer")], trioclient.IncompleteStreamError, "reset"),
        (
            [b'data: {"choices": [{"delta": {"content": 5}}]}\n\n'],
            trioclient.APIResponseValidationError,
            r"delta\.content",
        ),
    ],
)
async def test_a_cut_or_broken_stream_is_an_error_carrying_what_arrived(
    tail: list[Any], error: type[trioclient.APIError], match: str
) -> None:
    server = Server([chunk("Hello", role="assistant"), chunk(" there"), *tail])
    async with client_for(server) as client:
        received = []
        with pytest.raises(error, match=match) as caught:
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    received.append(piece.content)
        assert client.limiter.borrowed_tokens == 0
        assert client.statistics().requests_failed == 1
    assert received == ["Hello", " there"]
    assert caught.value.partial is not None
    assert caught.value.partial.content == "Hello there"
    assert len(server.requests) == 1  # never silently restarted after the first chunk
    assert server.bodies[0].closed


async def test_failures_before_the_first_chunk_are_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(
        lambda: httpx.Response(503, json={"error": {"message": "busy"}}),
        [b": keep-alive comment\n\n", httpx.ReadError("reset")],
        [b'data: {"error": {"message": "try later"}}\n\n'],
        HAPPY,
    )
    async with client_for(server) as client:
        with trio.fail_after(100):
            stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async with stream:
                final = await stream.get_final_completion()
        stats = client.statistics()
    assert final.content == "Hello, world"
    assert len(server.requests) == 4
    assert stats.retries == 3 and stats.requests_succeeded == 1


async def test_a_server_error_before_any_chunk_is_raised_after_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(
        lambda: httpx.Response(
            429, json={"error": {"message": "slow down"}}, headers={"retry-after": "1"}
        )
    )
    async with client_for(server, retry=RetryPolicy(max_retries=2)) as client:
        with trio.fail_after(100), pytest.raises(trioclient.RateLimitError):
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert client.limiter.borrowed_tokens == 0
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "asked",
    [{"retry-after": "3600"}, {"retry-after-ms": "3600000"}],
    ids=["retry-after", "retry-after-ms"],
)
async def test_a_streams_retry_waits_no_longer_than_max_retry_after(
    autojump_clock: trio.testing.MockClock, asked: dict[str, str]
) -> None:
    # The server asks for an hour; the policy honours at most 2.5 s of it.
    server = Server(
        lambda: httpx.Response(429, json={"error": {"message": "slow down"}}, headers=asked),
        HAPPY,
    )
    retry = RetryPolicy(max_retries=1, max_retry_after=2.5)
    async with client_for(server, retry=retry) as client:
        with trio.fail_after(100):
            start = trio.current_time()
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                final = await stream.get_final_completion()
            waited = trio.current_time() - start
        stats = client.statistics()
    assert waited == pytest.approx(2.5, abs=1e-9)
    assert final.content == "Hello, world"
    assert len(server.requests) == 2 and (stats.rate_limited, stats.retries) == (1, 1)


async def test_a_stream_retry_that_would_start_exactly_at_the_deadline_is_not_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Retry-After 10 s under a 10 s scope: the retry would begin as the scope ends.
    server = Server(
        lambda: httpx.Response(
            503, json={"error": {"message": "busy"}}, headers={"retry-after": "10"}
        ),
        HAPPY,
    )
    async with client_for(server) as client:
        start = trio.current_time()
        with (
            trio.move_on_after(10) as scope,
            pytest.raises(trioclient.InternalServerError) as caught,
        ):
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                await stream.get_final_completion()
        assert trio.current_time() == start  # failed at once, without the useless wait
        assert not scope.cancelled_caught
        assert client.limiter.borrowed_tokens == 0
    assert len(server.requests) == 1
    assert any("deadline" in note for note in caught.value.__notes__)


@pytest.mark.parametrize(
    ("script", "timeout", "match"),
    [
        ([30.0, *HAPPY], Timeout(first_byte=10), "first_byte"),
        ([chunk("a"), 30.0, *HAPPY], Timeout(idle=10), "Timeout.idle"),
        (
            [chunk("a"), *[x for _ in range(10) for x in (5.0, chunk("b"))], DONE],
            Timeout(total=20, idle=10),
            "Timeout.total",
        ),
    ],
)
async def test_stream_deadlines(
    autojump_clock: trio.testing.MockClock, script: list[Any], timeout: Timeout, match: str
) -> None:
    server = Server(script)
    async with client_for(server, timeout=timeout, retry=RetryPolicy(max_retries=0)) as client:
        with trio.fail_after(1000), pytest.raises(trioclient.APITimeoutError, match=match):
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
        assert client.limiter.borrowed_tokens == 0


async def test_leaving_early_closes_the_response_and_returns_the_token() -> None:
    server = Server([chunk("a"), chunk("b"), chunk("c"), 1000.0, DONE])
    async with client_for(server, max_concurrent=1) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                break
        assert server.bodies[0].closed
        assert client.limiter.borrowed_tokens == 0
        # The single slot is free again: a second stream runs at once.
        with trio.fail_after(1):
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                await stream.__anext__()


async def test_an_exception_in_the_loop_body_closes_the_stream() -> None:
    server = Server(HAPPY)
    async with client_for(server) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    1 / 0  # noqa: B018
        assert server.bodies[0].closed and client.limiter.borrowed_tokens == 0


async def test_cancelling_a_stream_from_outside_releases_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([chunk("a"), 1000.0, DONE])
    async with client_for(server) as client:
        with trio.move_on_after(5) as scope:
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
        assert scope.cancelled_caught
        assert server.bodies[0].closed
        stats = client.statistics()
        assert client.limiter.borrowed_tokens == 0 and stats.in_flight == 0


async def test_a_stream_can_be_consumed_in_another_task() -> None:
    async with client_for(Server(HAPPY)) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        texts: list[str] = []

        async def consume() -> None:
            async with stream:
                async for piece in stream:
                    texts.append(piece.content)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
        assert "".join(texts) == "Hello, world"
        assert client.limiter.borrowed_tokens == 0


async def test_a_json_answer_to_a_stream_request_is_a_clear_error() -> None:
    server = Server(lambda: httpx.Response(200, json={"choices": []}))
    async with client_for(server) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="text/event-stream"):
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert client.limiter.borrowed_tokens == 0


async def test_a_stream_over_the_size_bound_is_refused() -> None:
    server = Server([chunk("x" * 400), chunk("y" * 400), chunk("z" * 400), DONE])
    async with client_for(server, max_response_bytes=1000) as client:
        with pytest.raises(trioclient.ResponseTooLargeError, match="1000") as caught:
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
        assert client.limiter.borrowed_tokens == 0
    assert caught.value.partial is not None
    assert caught.value.partial.content == "x" * 400


@pytest.mark.parametrize("split", [False, True])
async def test_chunks_before_a_failure_are_delivered_however_the_bytes_were_split(
    split: bool,
) -> None:
    error_event = b'data: {"error": {"message": "overloaded"}}\n\n'
    first = [chunk("Hello", role="assistant"), chunk(" there")]
    script = [*first, error_event] if split else [b"".join(first) + error_event]
    server = Server(script)
    async with client_for(server) as client:
        received = []
        with pytest.raises(trioclient.APIStreamError, match="overloaded"):
            async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    received.append(piece.content)
        assert client.limiter.borrowed_tokens == 0
    assert received == ["Hello", " there"]
    assert len(server.requests) == 1


async def test_chunks_are_built_as_they_are_asked_for_not_all_per_read() -> None:
    # The whole answer arrives in one read; each chunk is decoded only when the
    # caller asks for it, so a read of hundreds of chunks never has them all alive.
    server = Server([b"".join(HAPPY)])
    async with client_for(server) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
            seen, text = [], ""
            async for piece in stream:
                text += piece.content
                seen.append(stream.chunks_received)
                assert not stream.done
                assert stream.current_completion().content == text  # what was delivered
            assert stream.done
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_a_stream_closed_early_delivers_nothing_more() -> None:
    server = Server([b"".join(HAPPY)])
    async with client_for(server) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        first = await stream.__anext__()
        await stream.aclose()
        assert first.choices[0].delta.role == "assistant"
        assert [c async for c in stream] == []
        assert stream.chunks_received == 1 and not stream.done
        with pytest.raises(RuntimeError, match="closed before it finished"):
            await stream.get_final_completion()
        assert client.limiter.borrowed_tokens == 0


async def test_a_compressed_stream_is_decoded() -> None:
    import gzip

    def gzipped() -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
            content=gzip.compress(b"".join(HAPPY)),
        )

    async with client_for(Server(gzipped)) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
            final = await stream.get_final_completion()
    assert final.content == "Hello, world"


async def test_null_ids_in_a_chunk_read_as_missing() -> None:
    script = [
        b'data: {"id": null, "model": null, "created": null, "choices": '
        b'[{"index": 0, "delta": {"content": "ok"}}]}\n\n',
        DONE,
    ]
    async with client_for(Server(script)) as client:
        async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
            final = await stream.get_final_completion()
    assert (final.content, final.id, final.model, final.created) == ("ok", "", "", 0)


async def test_the_xai_style_response_is_one_live_view_of_the_answer_so_far() -> None:
    async with client_for(Server(HAPPY)) as client:
        chat = client.chat.create(model="grok-4")
        chat.append(trioclient.user("hi"))
        responses = []
        async with chat.stream() as pairs:
            async for response, _ in pairs:
                responses.append(response)
    assert all(r is responses[0] for r in responses)
    assert responses[0].content == "Hello, world"  # read after the loop: the whole answer
    assert responses[0].usage.total_tokens == 8
    assert responses[0] == trioclient.Response(responses[0].completion)


def test_chunks_built_by_the_fast_path_equal_those_built_by_attrs() -> None:
    import attrs

    from trioclient._models import ChoiceDelta, ChunkChoice

    raw = json.loads(chunk("Hello", role="assistant", finish="stop")[6:])
    fast = trioclient.ChatCompletionChunk.from_dict(raw)
    choice = raw["choices"][0]
    slow = trioclient.ChatCompletionChunk(
        raw["id"],
        raw["model"],
        raw["created"],
        (
            ChunkChoice(
                0,
                ChoiceDelta("assistant", "Hello", (), None, None, choice["delta"]),
                "stop",
                data=choice,
            ),
        ),
        data=raw,
    )
    assert fast == slow and repr(fast) == repr(slow)
    assert fast.to_dict() == raw
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.choices[0].delta.content = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2.5, null, true]}',
        ' {"a": 1} ',
        '{"a": 1}\n',
        '{"a": 1} {"b": 2}',
        "{bad",
        "",
        "NaN",
        '"\\ud800"',
    ],
)
def test_the_chunk_json_fast_path_agrees_with_json_loads(text: str) -> None:
    from trioclient._stream import _loads

    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as caught:
            _loads(text)
        assert str(caught.value) == str(exc)
    else:
        value = _loads(text)
        assert value == expected or (value != value and expected != expected)  # NaN
