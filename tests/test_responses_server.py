"""The embedded server's ``/v1/responses``: whole and streamed answers, stored
conversations through ``previous_response_id``, and the stream faults, read by
trioclient and by the official openai SDK.

Real loopback sockets on the real clock (the SDK runs on anyio), each test bounded.
"""

from __future__ import annotations

import openai
import pytest
import trio

import trioclient
from trioclient.testing import open_server

KEY = "sk-test-responses-0123456789"


def client_for(base_url: str, **options: object) -> trioclient.Client:
    return trioclient.Client(api_key=KEY, base_url=base_url, **options)  # type: ignore[arg-type]


async def test_whole_answer_and_a_continued_conversation() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            first = await client.responses.create(
                model="grok-4", input="Tell me about rivers", instructions="Be brief."
            )
            second = await client.responses.create(
                model="grok-4", input="And lakes?", previous_response_id=first.id
            )
            fresh = await client.responses.create(model="grok-4", input="And lakes?")
    assert first.status == "completed" and first.output_text
    assert first.usage is not None and first.usage.output_tokens > 0
    assert second.previous_response_id == first.id
    # The continued conversation reads more (the earlier turn) and answers differently.
    assert second.usage is not None and fresh.usage is not None
    assert second.usage.input_tokens > fresh.usage.input_tokens
    assert second.output_text != fresh.output_text


async def test_an_unknown_previous_response_is_a_404() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            with pytest.raises(trioclient.NotFoundError, match="resp_nope"):
                await client.responses.create(
                    model="grok-4", input="x", previous_response_id="resp_nope"
                )


async def test_stream_events_add_up_to_the_whole_answer() -> None:
    with trio.fail_after(20):
        async with open_server(tps=2000) as server, client_for(server.base_url) as client:
            whole = await client.responses.create(model="grok-4", input="Describe clouds", seed=3)
            async with client.responses.stream(
                model="grok-4", input="Describe clouds", seed=3
            ) as stream:
                kinds = [event.type async for event in stream]
            final = stream.final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == final.usage.output_tokens  # type: ignore[union-attr]
    assert stream.text == final.output_text == whole.output_text


async def test_max_output_tokens_ends_incomplete() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            whole = await client.responses.create(model="grok-4", input="x", max_output_tokens=3)
            async with client.responses.stream(
                model="grok-4", input="x", max_output_tokens=3
            ) as stream:
                final = await stream.get_final_response()
    assert whole.status == final.status == "incomplete"
    assert whole.incomplete_details == {"reason": "max_output_tokens"}
    assert whole.usage is not None and whole.usage.output_tokens == 3


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("truncated_stream", trioclient.IncompleteStreamError),
        ("reset_mid_stream", trioclient.IncompleteStreamError),
        ("error_event", trioclient.APIStreamError),
        ("malformed_chunk", trioclient.APIResponseValidationError),
    ],
)
async def test_stream_faults_are_errors_never_answers(fault: str, error: type[Exception]) -> None:
    with trio.fail_after(20):
        async with open_server(answer_tokens=12) as server, client_for(server.base_url) as client:
            server.script_faults([fault])
            stream = await client.responses.create(model="grok-4", input="x", stream=True)
            with pytest.raises(error) as caught:
                async for _ in stream:
                    pass
            assert not stream.done
            assert client.limiter.borrowed_tokens == 0
    partial = caught.value.partial  # type: ignore[attr-defined]
    assert isinstance(partial, trioclient.ResponseObject) and partial.status == "incomplete"


async def test_the_openai_sdk_reads_it() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server:
            sdk = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
            try:
                first = await sdk.responses.create(model="grok-4", input="Hello there")
                second = await sdk.responses.create(
                    model="grok-4", input="More", previous_response_id=first.id
                )
                text = []
                stream = await sdk.responses.create(
                    model="grok-4", input="Hello there", stream=True
                )
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        text.append(event.delta)
                    last = event
            finally:
                await sdk.close()
    assert first.output_text and second.previous_response_id == first.id
    assert last.type == "response.completed"
    assert "".join(text) == first.output_text
