"""Every provider's dialect, replayed byte for byte into the real client.

The transcripts under ``tests/transcripts/`` were written by hand from each provider's
public API reference and from public bug reports about its wire format (each names its
sources), not recorded from trioclient's embedded server: the two readings of the API
cannot share a blind spot. Each is served through respx, the body cut into small
pieces so that no event arrives whole, and read by ``chat.completions.create``
(streaming or not), by the xAI-style ``Chat``, by the batch engine and by the JSONL
runner.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import trio
import trio.testing

import trioclient
from trioclient import RetryPolicy

URL = "http://127.0.0.1:9/v1"
MESSAGES = [{"role": "user", "content": "hi"}]
TRANSCRIPTS = Path(__file__).parent / "transcripts"


class Transcript:
    """A transcript file: its header (sources, status, content type) and its body."""

    def __init__(self, name: str) -> None:
        raw = (TRANSCRIPTS / name).read_bytes()
        header, _, self.body = raw.partition(b"\n\n")
        lines = header.decode().splitlines()
        assert all(line.startswith("#") for line in lines), f"{name}: header lines start with #"
        fields = dict(
            line[1:].strip().split(": ", 1)
            for line in lines
            if line[1:].strip().split(":", 1)[0] in ("status", "content-type")
        )
        self.status = int(fields.get("status", "200"))
        self.content_type = fields["content-type"]
        self.name = name

    def response(self, piece: int = 7) -> httpx.Response:
        """The transcript as a response whose body comes ``piece`` bytes at a time."""
        body = self.body
        pieces = [body[i : i + piece] for i in range(0, len(body), piece)]
        return httpx.Response(
            self.status,
            headers={"content-type": self.content_type},
            stream=httpx.ByteStream(body) if piece <= 0 else _Pieces(pieces),
        )


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def all_transcripts() -> list[str]:
    return sorted(
        str(p.relative_to(TRANSCRIPTS))
        for p in TRANSCRIPTS.rglob("*")
        if p.suffix in (".txt", ".json")
    )


def serve(router: respx.Router, *transcripts: Transcript) -> respx.Route:
    """Answer each request with the next transcript (the last one repeats)."""
    answers = list(transcripts)

    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop(0).response() if len(answers) > 1 else answers[0].response()

    return router.post(f"{URL}/chat/completions").mock(side_effect=answer)


@contextlib.contextmanager
def mocked() -> Iterator[respx.Router]:
    yield respx.Router(assert_all_called=False)


def make_client(router: respx.Router, **kwargs: Any) -> trioclient.Client:
    kwargs.setdefault("retry", RetryPolicy(max_retries=2, base_delay=0.01))
    transport = httpx.MockTransport(router.async_handler)
    return trioclient.Client(api_key="sk-test", base_url=URL, transport=transport, **kwargs)


async def complete(name: str, **params: Any) -> trioclient.ChatCompletion:
    with mocked() as router:
        serve(router, Transcript(name))
        async with make_client(router) as client:
            completion = await client.chat.completions.create(
                model="m", messages=MESSAGES, **params
            )
    assert isinstance(completion, trioclient.ChatCompletion)
    return completion


async def stream(name: str, **params: Any) -> tuple[list[trioclient.ChatCompletionChunk], Any]:
    with mocked() as router:
        serve(router, Transcript(name))
        async with make_client(router) as client:
            async with client.chat.completions.stream(model="m", messages=MESSAGES, **params) as s:
                chunks = [c async for c in s]
                return chunks, await s.get_final_completion()


def test_every_transcript_names_its_sources_and_parses() -> None:
    names = all_transcripts()
    providers = {n.split("/")[0] for n in names}
    assert {"openai", "xai", "openrouter", "gemini", "vllm", "llamacpp", "ollama", "mistral"} <= (
        providers
    )
    for name in names:
        t = Transcript(name)
        header = (TRANSCRIPTS / name).read_text().partition("\n\n")[0]
        assert "Written from" in header or "as reported" in header or "reported" in header, name
        if name.endswith(".json"):
            json.loads(t.body)
        else:
            assert t.content_type == "text/event-stream"
            for block in t.body.decode().split("\n\n"):
                for line in block.splitlines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])


# --- non-streaming ---------------------------------------------------------------


async def test_openai_every_documented_field_is_typed() -> None:
    c = await complete("openai/completion_logprobs.json", logprobs=True, top_logprobs=2)
    choice = c.choices[0]
    assert c.content == "Hi there" and choice.message.refusal is None
    assert choice.message.annotations == ()
    assert c.service_tier == "default" and c.system_fingerprint == "fp_7e1c0d5a2b"
    assert c.usage is not None and c.usage.total_tokens == 1202
    assert c.usage.prompt_tokens_details is not None
    assert c.usage.prompt_tokens_details.cached_tokens == 1024
    assert c.usage.completion_tokens_details is not None
    assert c.usage.completion_tokens_details.reasoning_tokens == 0
    assert choice.logprobs is not None and choice.logprobs.content is not None
    first, second = choice.logprobs.content
    assert (first.token, first.logprob, first.bytes) == ("Hi", -0.0312, (72, 105))
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [("Hi", -0.0312), ("Hello", -3.52)]
    assert bytes(second.bytes or ()).decode() == " there"
    assert choice.logprobs.refusal is None


async def test_openai_refusal() -> None:
    c = await complete("openai/completion_refusal.json")
    assert c.content is None
    assert c.choices[0].message.refusal == "I'm sorry, I can't help with that request."


async def test_xai_reasoning_citations_and_usage_details() -> None:
    c = await complete("xai/completion_reasoning_citations.json")
    message = c.choices[0].message
    assert message.content == "101 * 3 = 303."
    assert message.reasoning_content == "101 times 3: 100*3 = 300, plus 3 is 303."
    assert c.citations == ("https://example.org/arith", "https://example.com/times-table")
    assert c.usage is not None and c.usage.completion_tokens_details is not None
    assert c.usage.completion_tokens_details.reasoning_tokens == 308
    assert c.usage.to_dict()["num_sources_used"] == 2  # a provider extra stays reachable


async def test_openrouter_reasoning_field_and_extras() -> None:
    c = await complete("openrouter/completion_reasoning.json")
    assert c.content == "Paris."
    assert c.choices[0].message.reasoning_content == "The capital of France is Paris."
    assert c.to_dict()["provider"] == "Example Upstream"
    assert c.usage is not None and c.usage.to_dict()["cost"] == 0.0000412


async def test_an_openrouter_200_error_body_is_a_provider_error_never_a_completion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with mocked() as router:
        route = serve(router, Transcript("openrouter/completion_error_in_200.json"))
        async with make_client(router) as client:
            with trio.fail_after(60), pytest.raises(trioclient.ProviderError) as caught:
                await client.chat.completions.create(model="m", messages=MESSAGES)
            stats = client.statistics()
    error = caught.value
    assert not isinstance(error, trioclient.APIStreamError)
    assert error.code == 502 and error.implied_status == 502
    assert error.metadata == {
        "provider_name": "Example Upstream",
        "raw": "upstream connection reset",
    }
    assert "Provider returned error" in str(error) and "502" in str(error)
    assert error.status_code == 200 and error.request is not None
    # 502 says "the model is down": retried like a 502, then given up.
    assert route.call_count == 3 and stats.requests_failed == 1


async def test_a_200_error_body_then_an_answer_succeeds_on_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with mocked() as router:
        route = serve(
            router,
            Transcript("openrouter/completion_error_in_200.json"),
            Transcript("openai/completion_refusal.json"),
        )
        async with make_client(router) as client:
            with trio.fail_after(60):
                c = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert c.choices[0].message.refusal is not None and route.call_count == 2


async def test_gemini_tool_call_keeps_its_thought_signature_for_the_next_turn() -> None:
    c = await complete("gemini/completion_tool_call.json")
    (call,) = c.choices[0].message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "function-call-201",
        "get_weather",
        {"location": "Lima"},
    )
    assert call.to_dict()["extra_content"] == {"google": {"thought_signature": "c2lnLXRocmVl"}}


async def test_vllm_reasoning_content_and_extras() -> None:
    c = await complete("vllm/completion_reasoning.json")
    message = c.choices[0].message
    assert message.content == "9.8 is greater."
    assert message.reasoning_content == "9.11 < 9.8 since 0.11 < 0.8."
    assert message.tool_calls == ()
    assert c.choices[0].to_dict()["stop_reason"] is None
    assert c.usage is not None and c.usage.prompt_tokens_details is None


async def test_mistral_content_parts_give_text_and_reasoning_and_keep_the_list() -> None:
    c = await complete("mistral/completion_thinking_parts.json")
    message = c.choices[0].message
    assert c.content == "6 \u00d7 7 = **42**."
    assert message.reasoning_content == "The user asks for 6*7. That is 42."
    assert message.content_parts is not None and len(message.content_parts) == 2
    assert message.content_parts[0]["type"] == "thinking"
    assert message.to_dict()["content"] == list(message.content_parts)


# --- streams ------------------------------------------------------------------------


async def test_openai_parallel_tool_calls_by_index_and_usage_details() -> None:
    chunks, final = await stream(
        "openai/stream_parallel_tool_calls.txt", stream_options={"include_usage": True}
    )
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_Paris01", "get_weather", {"city": "Paris"}),
        ("call_Tokyo02", "get_weather", {"city": "Tokyo"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.content is None
    assert final.service_tier == "default" and final.system_fingerprint == "fp_b3f1157249"
    assert final.usage is not None and final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 64
    assert chunks[0].to_dict()["obfuscation"] == "q8"


async def test_openai_n2_choices_stay_apart_with_their_logprobs() -> None:
    chunks, final = await stream("openai/stream_n2_logprobs.txt", n=2, logprobs=True)
    assert [(c.index, c.message.content, c.finish_reason) for c in final.choices] == [
        (0, "No.", "length"),
        (1, "Yes!", "stop"),
    ]
    zero, one = final.choices
    assert zero.logprobs is not None and one.logprobs is not None
    assert [t.token for t in zero.logprobs.content or ()] == ["No", "."]
    assert [t.token for t in one.logprobs.content or ()] == ["Yes", "!"]
    # chunk.content is choice 0's new text only: never choice 1's.
    assert "".join(c.content for c in chunks) == "No."
    assert final.content == "No."


async def test_xai_reasoning_then_content_with_citations_from_the_last_chunk() -> None:
    _, final = await stream("xai/stream_reasoning_citations.txt")
    message = final.choices[0].message
    assert (message.reasoning_content, message.content) == ("Check the sources.", "It is sunny.")
    assert final.citations == ("https://example.org/weather",)
    assert final.usage is not None and final.usage.completion_tokens_details is not None
    assert final.usage.completion_tokens_details.reasoning_tokens == 86


async def test_openrouter_reasoning_deltas_and_usage_only_last_chunk() -> None:
    _, final = await stream("openrouter/stream_reasoning_usage.txt")
    assert final.choices[0].message.reasoning_content == "Two plus two."
    assert final.content == "4"
    assert final.usage is not None and final.usage.to_dict()["cost"] == 0.000021


async def test_gemini_tool_calls_without_index_are_told_apart_by_id() -> None:
    _, final = await stream("gemini/stream_tool_calls_without_index.txt")
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("function-call-101", "get_weather", {"location": "Sydney"}),
        ("function-call-102", "get_time", {"location": "Tokyo"}),
    ]
    signatures = [c.to_dict()["extra_content"]["google"]["thought_signature"] for c in calls]
    assert signatures == ["c2lnLW9uZQ==", "c2lnLXR3bw=="]
    assert final.choices[0].finish_reason == "stop"  # as Gemini says; not rewritten


async def test_a_server_numbering_every_call_0_still_gives_two_calls() -> None:
    _, final = await stream("other/stream_every_call_index_0.txt")
    calls = final.choices[0].message.tool_calls
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_g1", {"pattern": "**/*"}),
        ("toolu_g2", {"path": "content/wiki"}),
    ]


async def test_a_repeated_id_and_name_are_not_concatenated() -> None:
    _, final = await stream("other/stream_repeated_tool_name.txt")
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name) == ("call_rf01", "read_file")
    assert json.loads(call.function.arguments) == {"path": "notes.txt"}


async def test_vllm_tool_call_and_usage_on_every_chunk() -> None:
    chunks, final = await stream(
        "vllm/stream_tool_call_continuous_usage.txt",
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name) == ("chatcmpl-tool-5e6f7a8b", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert final.usage == trioclient.Usage(210, 14, 224)  # the last one, not a sum
    assert all(c.usage is not None for c in chunks)


async def test_llamacpp_null_content_and_timings() -> None:
    chunks, final = await stream("llamacpp/stream_usage_timings.txt")
    assert final.content == "Hello world" and final.choices[0].finish_reason == "stop"
    assert final.usage == trioclient.Usage(11, 3, 14)
    assert chunks[-1].to_dict()["timings"]["predicted_n"] == 3


async def test_ollama_reasoning_field_and_whole_tool_calls() -> None:
    _, final = await stream("ollama/stream_reasoning.txt")
    assert final.choices[0].message.reasoning_content == "We need"
    assert final.content == " an answer"
    _, final = await stream("ollama/stream_whole_tool_calls.txt")
    calls = final.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Berlin", "Rome"]


async def test_mistral_list_content_deltas() -> None:
    chunks, final = await stream("mistral/stream_thinking_parts.txt")
    assert final.content == "The answer is 4."
    assert final.choices[0].message.reasoning_content == "Small sum: 2+2=4."
    assert [c.content for c in chunks if c.content] == ["The answer", " is 4."]


# --- error frames in streams ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message", "code", "partial"),
    [
        (
            "openrouter/stream_midstream_error.txt",
            "Provider disconnected unexpectedly",
            "server_error",
            "The tallest building",
        ),
        ("openai/stream_error_midway.txt", "The server had an error", None, "Angels dance"),
        ("llamacpp/stream_event_error_midway.txt", "failed to decode the batch", 500, "Once upon"),
    ],
)
async def test_a_mid_stream_error_frame_is_raised_with_what_arrived(
    name: str, message: str, code: object, partial: str
) -> None:
    received = []
    with mocked() as router:
        route = serve(router, Transcript(name))
        async with make_client(router) as client:
            with pytest.raises(trioclient.APIStreamError) as caught:
                async with client.chat.completions.stream(model="m", messages=MESSAGES) as s:
                    async for chunk in s:
                        received.append(chunk.content)
            assert client.statistics().requests_failed == 1
            assert client.limiter.borrowed_tokens == 0
    error = caught.value
    assert message in str(error) and error.code == code
    assert error.partial is not None and error.partial.content == partial
    assert "".join(received) == partial
    assert route.call_count == 1  # never silently restarted after chunks were seen


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("openai/stream_error_first_context_length.txt", 400),
        ("vllm/stream_error_first_bad_request.txt", 400),
        ("llamacpp/stream_error_first_context_size.txt", 400),
    ],
)
async def test_a_first_event_saying_the_request_is_wrong_is_not_retried(
    autojump_clock: trio.testing.MockClock, name: str, status: int
) -> None:
    with mocked() as router:
        route = serve(router, Transcript(name))
        async with make_client(router) as client:
            with trio.fail_after(60), pytest.raises(trioclient.APIStreamError) as caught:
                await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            assert client.limiter.borrowed_tokens == 0
    assert caught.value.implied_status == status
    assert "context" in str(caught.value)
    assert route.call_count == 1


async def test_a_first_event_overload_is_retried_then_the_answer_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    overloaded = Transcript("openai/stream_error_midway.txt")
    overloaded.body = overloaded.body[overloaded.body.index(b'data: {"error"') :]
    with mocked() as router:
        route = serve(router, overloaded, Transcript("llamacpp/stream_usage_timings.txt"))
        async with make_client(router) as client:
            with trio.fail_after(60):
                async with client.chat.completions.stream(model="m", messages=MESSAGES) as s:
                    final = await s.get_final_completion()
    assert final.content == "Hello world" and route.call_count == 2


# --- the xAI style, the batch engine and the JSONL runner ---------------------------


async def test_xai_style_response_follows_choice_0_only() -> None:
    with mocked() as router:
        serve(router, Transcript("openai/stream_n2_logprobs.txt"))
        async with make_client(router) as client:
            chat = client.chat.create(model="m")
            chat.append(trioclient.user("hi"))
            seen = []
            async with chat.stream(n=2) as pairs:
                async for response, chunk in pairs:
                    seen.append((response.content, chunk.content))
    assert seen[-1][0] == "No."
    assert [new for _, new in seen if new] == ["No", "."]
    assert all("Y" not in so_far and "!" not in so_far for so_far, _ in seen)


async def test_xai_style_sample_batch_gives_one_response_per_choice() -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "stop"},
            {"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"},
        ],
    }
    with mocked() as router:
        route = router.post(f"{URL}/chat/completions").respond(200, json=body)
        async with make_client(router) as client:
            chat = client.chat.create(model="m")
            chat.append(trioclient.user("hi"))
            responses = await chat.sample_batch(2)
    assert [r.content for r in responses] == ["A", "B"]
    assert json.loads(route.calls[0].request.content)["n"] == 2
    assert responses[1].to_message() == {"role": "assistant", "content": "B"}


async def test_an_error_frame_is_a_failure_in_the_batch_engine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with mocked() as router:
        serve(router, Transcript("openrouter/stream_midstream_error.txt"))
        async with make_client(router, retry=RetryPolicy(max_retries=1, base_delay=0.01)) as client:
            with trio.fail_after(60):
                results = await client.run_batch(
                    [{"model": "m", "messages": MESSAGES, "stream": True}]
                )
    (result,) = results
    assert not result.ok and isinstance(result.error, trioclient.APIStreamError)
    assert result.response is None


async def test_an_error_frame_is_a_failure_in_the_jsonl_runner() -> None:
    # Real clock: the runner reads its files in worker threads.
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": MESSAGES, "stream": True},
    }
    out = io.StringIO()
    with mocked() as router:
        serve(router, Transcript("openrouter/stream_midstream_error.txt"))
        async with make_client(router, retry=RetryPolicy(max_retries=1, base_delay=0.01)) as client:
            with trio.fail_after(30):
                summary = await trioclient.run_batch_file(
                    client, io.StringIO(json.dumps(line) + "\n"), out
                )
    record = json.loads(out.getvalue())
    assert record["error"] is not None and record["response"] is None
    assert "Provider disconnected unexpectedly" in record["error"]["message"]
    assert summary.failed == 1 and summary.succeeded == 0


def test_implied_status_reads_numbers_names_and_says_nothing_when_unsure() -> None:
    from trioclient._exceptions import implied_status

    assert implied_status({"code": 502}) == 502
    assert implied_status({"code": "429"}) == 429
    assert implied_status({"code": "context_length_exceeded"}) == 400
    assert implied_status({"code": 500, "type": "exceed_context_size_error"}) == 400
    assert implied_status({"type": "server_error"}) == 500
    assert implied_status({"status": "RESOURCE_EXHAUSTED"}) == 429
    assert implied_status({"message": "something odd"}) is None
    assert implied_status({"code": True}) is None


async def test_a_200_error_body_is_a_failure_with_the_providers_code_in_the_runner() -> None:
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": MESSAGES},
    }
    out = io.StringIO()
    with mocked() as router:
        serve(router, Transcript("openrouter/completion_error_in_200.json"))
        async with make_client(router, retry=RetryPolicy(max_retries=0)) as client:
            with trio.fail_after(30):
                summary = await trioclient.run_batch_file(
                    client, io.StringIO(json.dumps(line) + "\n"), out
                )
    record = json.loads(out.getvalue())
    assert summary.failed == 1 and record["response"] is None
    assert record["error"]["code"] == "502"  # OpenRouter's own code, not a generic one


async def test_a_stream_answered_with_a_200_error_body_is_the_providers_error() -> None:
    with mocked() as router:
        serve(router, Transcript("openrouter/completion_error_in_200.json"))
        async with make_client(router, retry=RetryPolicy(max_retries=0)) as client:
            with trio.fail_after(30), pytest.raises(trioclient.ProviderError) as caught:
                await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert caught.value.code == 502
    assert "expected a stream" not in str(caught.value)
