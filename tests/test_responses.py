"""``client.responses``: the body sent, the typed answer, and streams with the chat
stream's guarantees (a stream without its terminal event is an error, never an answer;
an ``error`` event raises; leaving early frees the limiter token and the connection).

The server side is ``httpx.MockTransport`` on trio's autojump clock; the embedded
server's ``/v1/responses`` has its own tests (test_responses_server.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

import trioclient

URL = "http://127.0.0.1:9/v1"


def response_object(
    text: str = "Hello there", status: str = "completed", rid: str = "resp_1"
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": 1700000000,
        "model": "grok-4",
        "status": status,
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
        "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10},
        "error": None,
        "incomplete_details": None,
        "previous_response_id": None,
    }


def sse(events: list[dict[str, Any]], *, named: bool = True, done: bool = False) -> bytes:
    out = []
    for i, event in enumerate(events):
        event = {**event, "sequence_number": i}
        head = f"event: {event['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def stream_events(
    text_parts: list[str], terminal: str | None = "response.completed"
) -> list[dict[str, Any]]:
    created = {**response_object(""), "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": created}]
    message = {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
    events.append({"type": "response.output_item.added", "output_index": 0, "item": message})
    for part in text_parts:
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": part,
            }
        )
    if terminal is not None:
        final = response_object("".join(text_parts))
        if terminal == "response.incomplete":
            final["status"] = "incomplete"
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        events.append({"type": terminal, "response": final})
    return events


class Recorder:
    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def streaming(payload: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=payload)


def client_for(handler: Any, **options: Any) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test", base_url=URL, transport=httpx.MockTransport(handler), **options
    )


# -- whole answers ---------------------------------------------------------------------


async def test_create_sends_the_body_and_returns_a_typed_response() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=response_object()))
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    async with client_for(recorder) as client:
        answer = await client.responses.create(
            model="grok-4",
            input="Hi",
            instructions="Be brief.",
            previous_response_id="resp_0",
            tools=tools,
            max_output_tokens=50,
            extra_body={"store": False},
        )
        stats = client.statistics()
    assert recorder.requests[0].url == URL + "/responses"
    assert recorder.body() == {
        "model": "grok-4",
        "input": "Hi",
        "instructions": "Be brief.",
        "previous_response_id": "resp_0",
        "tools": tools,
        "max_output_tokens": 50,
        "store": False,
    }
    assert isinstance(answer, trioclient.ResponseObject)
    assert answer.id == "resp_1" and answer.status == "completed"
    assert answer.output_text == "Hello there"
    assert answer.usage is not None and answer.usage.input_tokens == 7
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (7, 3, 10)


async def test_unset_options_are_not_sent() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=response_object()))
    async with client_for(recorder) as client:
        await client.responses.create(model="grok-4", input=[{"role": "user", "content": "Hi"}])
    assert recorder.body() == {"model": "grok-4", "input": [{"role": "user", "content": "Hi"}]}


def test_output_text_joins_every_message_text_part() -> None:
    obj = response_object("a")
    obj["output"].append(
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "b"},
                {"type": "refusal", "refusal": "no"},
                {"type": "output_text", "text": "c"},
            ],
        }
    )
    obj["output"].append({"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c1"})
    answer = trioclient.ResponseObject.from_dict(obj)
    assert answer.output_text == "abc"
    assert [call["name"] for call in answer.function_calls] == ["f"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": ""}, ValueError, "empty string"),
        ({"input": []}, ValueError, "empty list"),
        ({"input": ["hi"]}, TypeError, r"input\[0\] must be a dict"),
        ({"input": 3}, TypeError, "got int"),
        ({"input": "x", "model": ""}, ValueError, "model must be"),
        ({"input": "x", "previous_response_id": 12}, ValueError, "previous_response_id"),
        ({"input": "x", "stream": "yes"}, TypeError, "stream must be"),
        ({"input": "x", "extra_body": ["store"]}, TypeError, "extra_body must be a dict"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=response_object()))
    async with client_for(recorder) as client:
        with pytest.raises(error, match=match):
            await client.responses.create(**{"model": "grok-4", **kwargs})
    assert recorder.requests == []


async def test_unknown_previous_response_is_not_found_and_not_retried() -> None:
    body = {
        "error": {
            "message": "Response with id 'resp_x' not found.",
            "type": "invalid_request_error",
        }
    }
    recorder = Recorder(lambda r: httpx.Response(404, json=body))
    async with client_for(recorder) as client:
        with pytest.raises(trioclient.NotFoundError, match="resp_x"):
            await client.responses.create(model="grok-4", input="x", previous_response_id="resp_x")
    assert len(recorder.requests) == 1


async def test_a_503_is_retried_like_any_request() -> None:
    statuses = iter([503, 200])
    recorder = Recorder(
        lambda r: (
            httpx.Response(200, json=response_object())
            if next(statuses) == 200
            else httpx.Response(503, json={"error": {"message": "busy"}})
        )
    )
    async with client_for(recorder) as client:
        with trio.fail_after(60):
            answer = await client.responses.create(model="grok-4", input="x")
    assert answer.output_text == "Hello there"
    assert len(recorder.requests) == 2


async def test_a_200_carrying_an_error_is_an_error() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json={"error": {"message": "overloaded"}}))
    async with client_for(recorder) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="overloaded"):
            await client.responses.create(model="grok-4", input="x", max_retries=0)


# -- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("named", [True, False], ids=["event-lines", "data-only"])
async def test_stream_delivers_typed_events_and_the_final_response(named: bool) -> None:
    recorder = Recorder(lambda r: streaming(sse(stream_events(["Hel", "lo"]), named=named)))
    async with client_for(recorder) as client:
        async with await client.responses.create(model="grok-4", input="x", stream=True) as stream:
            events = [event async for event in stream]
            assert stream.done
        stats = client.statistics()
    assert recorder.body()["stream"] is True
    assert recorder.requests[0].headers["accept"] == "text/event-stream"
    assert [e.type for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    assert [e.delta for e in events if e.delta] == ["Hel", "lo"]
    assert events[0].response is not None and events[0].response.status == "in_progress"
    assert [e.sequence_number for e in events] == [0, 1, 2, 3, 4]
    assert stream.text == "Hello"
    assert stream.final_response().output_text == "Hello"
    assert stats.requests_succeeded == 1 and stats.total_tokens == 10


async def test_incomplete_is_a_terminal_event_and_says_so() -> None:
    payload = sse(stream_events(["a"], terminal="response.incomplete"), done=True)
    async with client_for(Recorder(lambda r: streaming(payload))) as client:
        async with client.responses.stream(model="grok-4", input="x") as stream:
            final = await stream.get_final_response()
    assert final.status == "incomplete"
    assert final.incomplete_details == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("done", "match"),
    [(False, "ended before its terminal event"), (True, r"sent \[DONE\] before its terminal")],
    ids=["eof", "done-too-early"],
)
async def test_a_stream_without_its_terminal_event_is_an_error_with_the_partial(
    done: bool, match: str
) -> None:
    payload = sse(stream_events(["Hel", "lo"], terminal=None), done=done)
    async with client_for(Recorder(lambda r: streaming(payload))) as client:
        stream = await client.responses.create(model="grok-4", input="x", stream=True)
        got: list[str] = []
        with pytest.raises(trioclient.IncompleteStreamError, match=match) as caught:
            async for event in stream:
                got.append(event.type)
        assert client.statistics().requests_failed == 1
        assert client.limiter.borrowed_tokens == 0
    assert "response.completed" not in got
    partial = caught.value.partial
    assert isinstance(partial, trioclient.ResponseObject)
    assert partial.output_text == "Hello"
    assert partial.status == "incomplete"


async def test_an_error_event_mid_stream_raises_after_the_events_before_it() -> None:
    events = stream_events(["Hel"], terminal=None)
    events.append({"type": "error", "code": "server_error", "message": "The server had an error"})
    payload = sse(events)
    async with client_for(Recorder(lambda r: streaming(payload))) as client:
        stream = await client.responses.create(model="grok-4", input="x", stream=True)
        got: list[str] = []
        with pytest.raises(trioclient.APIStreamError, match="The server had an error") as caught:
            async for event in stream:
                got.append(event.type)
    assert got[-1] == "response.output_text.delta"
    partial = caught.value.partial
    assert isinstance(partial, trioclient.ResponseObject) and partial.output_text == "Hel"


async def test_response_failed_raises_with_its_error_message() -> None:
    events = stream_events(["Hel"], terminal=None)
    failed = {
        **response_object("Hel"),
        "status": "failed",
        "error": {"code": "server_error", "message": "model crashed"},
    }
    events.append({"type": "response.failed", "response": failed})
    async with client_for(Recorder(lambda r: streaming(sse(events)))) as client:
        stream = await client.responses.create(model="grok-4", input="x", stream=True)
        with pytest.raises(trioclient.APIStreamError, match="model crashed"):
            async for _ in stream:
                pass


async def test_an_event_that_is_not_json_is_an_error_after_the_ones_before() -> None:
    payload = sse(stream_events(["Hel"], terminal=None)) + b"data: {not json\n\n"
    async with client_for(Recorder(lambda r: streaming(payload))) as client:
        stream = await client.responses.create(model="grok-4", input="x", stream=True)
        got: list[str] = []
        with pytest.raises(trioclient.APIResponseValidationError, match="not JSON"):
            async for event in stream:
                got.append(event.type)
    assert len(got) == 3


async def test_an_error_event_before_the_first_event_is_retried() -> None:
    # Nobody has seen anything yet, so an error event in place of the first event is
    # a failed attempt like a 503 (the default policy retries APIStreamError).
    error = {"type": "error", "code": "server_error", "message": "try again"}
    answers = iter([streaming(sse([error])), streaming(sse(stream_events(["ok"])))])
    recorder = Recorder(lambda r: next(answers))
    async with client_for(recorder) as client:
        with trio.fail_after(60):
            async with client.responses.stream(model="grok-4", input="x") as stream:
                final = await stream.get_final_response()
    assert final.output_text == "ok"
    assert len(recorder.requests) == 2


async def test_a_503_before_the_stream_opens_is_retried() -> None:
    answers = iter(
        [
            httpx.Response(503, json={"error": {"message": "busy"}}),
            streaming(sse(stream_events(["ok"]))),
        ]
    )
    recorder = Recorder(lambda r: next(answers))
    async with client_for(recorder) as client:
        with trio.fail_after(60):
            async with client.responses.stream(model="grok-4", input="x") as stream:
                final = await stream.get_final_response()
    assert final.output_text == "ok"
    assert len(recorder.requests) == 2


async def test_leaving_early_frees_the_limiter_token_and_the_connection() -> None:
    closed: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for event in stream_events(["a", "b", "c"]):
                yield sse([event])

        async def aclose(self) -> None:
            closed.append(True)

    recorder = Recorder(
        lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())
    )
    async with client_for(recorder, max_concurrent=1) as client:
        async with client.responses.stream(model="grok-4", input="x") as stream:
            assert client.limiter.borrowed_tokens == 1
            async for event in stream:
                if event.type == "response.output_text.delta":
                    break
        assert client.limiter.borrowed_tokens == 0
        assert closed == [True]
        assert client.statistics().in_flight == 0
        # The one token is free for the next request.
        with trio.fail_after(5):
            next_stream = await client.responses.create(model="grok-4", input="x", stream=True)
            await next_stream.aclose()


async def test_a_non_stream_answer_to_a_stream_request_is_an_error() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=response_object()))
    async with client_for(recorder) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="expected a stream"):
            await client.responses.create(model="grok-4", input="x", stream=True)


async def test_a_stream_read_to_its_end_closes_itself() -> None:
    payload = sse(stream_events(["a", "b"]))
    async with client_for(Recorder(lambda r: streaming(payload)), max_concurrent=1) as client:
        stream = await client.responses.create(model="grok-4", input="x", stream=True)
        async for _ in stream:
            pass
        # No `async with`, no aclose(): the end of the stream gave the token back.
        assert client.limiter.borrowed_tokens == 0
        assert client.statistics().requests_succeeded == 1
