"""The official `openai` SDK talks to the embedded server: proof it speaks the protocol.

openai's async client runs on anyio, which runs under trio, so these are ordinary
pytest-trio tests on the real clock (real loopback sockets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import openai
import pytest
import trio
import trio.testing

from trioclient.testing import Server, open_server
from trioclient.testing._answers import count_tokens

KEY = "sk-test-openai-sdk-0123456789"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Describe the Rhine river in spring"}]


@asynccontextmanager
async def sdk(
    server: Server, *, api_key: str = KEY, max_retries: int = 0
) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key=api_key, base_url=server.base_url, max_retries=max_retries)
    try:
        yield client
    finally:
        await client.close()


async def test_non_streaming_create() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server) as client:
            completion = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                seed=1,  # type: ignore[arg-type]
            )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.id.startswith("chatcmpl-")
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_tokens(choice.message.content)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


# openai's AsyncStream breaks out of its SSE-decoding async generator chain (its own,
# httpx2's and httpcore2's) at [DONE] without closing it; under trio the asyncgen
# finalizer then warns that those generators were garbage-collected unexhausted. That
# is the SDK's bookkeeping, not the server's bytes, so exactly that warning is ignored.
@pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[A-Za-z_.]+' was garbage "
    r"collected:ResourceWarning"
)
async def test_streaming_deltas_concatenate_to_the_non_streaming_answer() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server) as client:
            plain = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                seed=42,  # type: ignore[arg-type]
            )
            stream = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,  # type: ignore[arg-type]
                seed=42,
                stream=True,
                stream_options={"include_usage": True},
            )
            parts: list[str] = []
            finish = None
            usage = None
            content_chunks = 0
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                    assert chunk.choices == []
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        content_chunks += 1
                    if choice.finish_reason:
                        finish = choice.finish_reason
    assert "".join(parts) == plain.choices[0].message.content
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == content_chunks
    assert plain.usage is not None and usage.prompt_tokens == plain.usage.prompt_tokens


async def test_n_2_and_max_tokens_length() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server) as client:
            two = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                n=2,  # type: ignore[arg-type]
            )
            cut = await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                max_tokens=4,  # type: ignore[arg-type]
            )
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].message.content != two.choices[1].message.content
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 4


async def test_models_list() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY, models=("a-model", "b-model")) as server:
            async with sdk(server) as client:
                page = await client.models.list()
    assert [m.id for m in page.data] == ["a-model", "b-model"]


async def test_wrong_key_raises_authentication_error() -> None:
    with trio.fail_after(20):
        async with (
            open_server(api_key=KEY) as server,
            sdk(server, api_key="sk-wrong-key-0000000000") as client,
        ):
            with pytest.raises(openai.AuthenticationError) as info:
                await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong-key-0000000000" not in str(info.value)


async def test_rate_limit_raises_rate_limit_error_without_retries() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY, rpm=1) as server, sdk(server) as client:
            await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            with pytest.raises(openai.RateLimitError) as info:
                await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"
    assert int(info.value.response.headers["retry-after"]) == 60
    assert server.statistics().rate_limited == 1


async def test_sdk_retry_honours_retry_after_ms_then_succeeds() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server, max_retries=2) as client:
            server.script_faults(["rate_limited"])  # one 429 asking for a 200 ms wait
            start = trio.current_time()
            completion = await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            elapsed = trio.current_time() - start
    assert completion.choices[0].finish_reason == "stop"
    assert 0.19 <= elapsed < 2.0
    stats = server.statistics()
    assert stats.chat_requests == 2
    assert stats.rate_limited == 1


async def test_sdk_retry_waits_for_the_rpm_bucket_then_succeeds(
    thread_safe_autojump_clock: trio.testing.MockClock,
) -> None:
    # 120 rpm refills one request every 0.5 s, so a drained bucket asks for <= 500 ms.
    # Autojump time stands still while the CPU works: on the real clock a busy machine
    # let the bucket refill between the drainer's 429 and the client's, so the client
    # met a shorter wait than the one measured (or none).
    with trio.fail_after(20):
        async with open_server(api_key=KEY, rpm=120) as server:
            async with sdk(server, max_retries=0) as drainer:
                for _ in range(200):
                    try:
                        await drainer.chat.completions.create(
                            model="m",
                            messages=MESSAGES,  # type: ignore[arg-type]
                            max_tokens=1,
                        )
                    except openai.RateLimitError as error:
                        wait = int(error.response.headers["retry-after-ms"]) / 1000
                        break
                else:
                    pytest.fail("the bucket never ran dry")
            assert 0 < wait <= 0.5
            async with sdk(server, max_retries=2) as client:
                start = trio.current_time()
                completion = await client.chat.completions.create(
                    model="m",
                    messages=MESSAGES,  # type: ignore[arg-type]
                )
                elapsed = trio.current_time() - start
    assert completion.choices[0].finish_reason == "stop"
    # the SDK slept for the server's retry-after-ms (minus the little time that passed)
    assert wait - 0.1 <= elapsed < wait + 1.0
    assert server.statistics().rate_limited == 2


async def test_malformed_request_raises_bad_request_error() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="m",
                    messages=MESSAGES,
                    max_tokens=0,  # type: ignore[arg-type]
                )
    assert info.value.status_code == 400
    assert info.value.param == "max_tokens"


async def test_server_errors_surface_as_internal_server_error() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server, sdk(server) as client:
            server.script_faults(["http_500"])
            with pytest.raises(openai.InternalServerError) as info:
                await client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == 500
