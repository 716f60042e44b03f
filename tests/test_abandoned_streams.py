"""Streams dropped unfinished without ``async with``: the openai idiom
``stream = await create(..., stream=True)`` then ``async for chunk in stream: break``.

Such a stream gives its limiter token and its connection back when it is collected,
with a ResourceWarning, instead of holding them for good. On real loopback sockets
against the embedded server.
"""

from __future__ import annotations

import gc

import pytest
import trio
import trio.testing

import trioclient
from trioclient.testing import open_server

MESSAGES = [{"role": "user", "content": "tell me a long story"}]


async def take_one_chunk_and_drop(client: trioclient.Client) -> None:
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async for _ in stream:
        break  # no async with, no aclose: the stream is dropped when this returns


async def test_abandoned_streams_give_back_their_tokens_and_connections() -> None:
    # A slow stream (10 tokens a second, 200 tokens) is far from its end when dropped.
    async with open_server(tps=10, answer_tokens=200) as server:
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, max_concurrent=2
        ) as client:
            with trio.fail_after(30):
                with pytest.warns(ResourceWarning, match="never closed") as warned:
                    for _ in range(4):
                        await take_one_chunk_and_drop(client)
                        gc.collect()  # refcounting frees it already; a cycle would not
                        await trio.testing.wait_all_tasks_blocked()
                # A fifth request gets a token: the four dropped ones gave theirs back.
                async with client.chat.completions.stream(model="m", messages=MESSAGES) as fifth:
                    first = await fifth.__anext__()
            assert first.choices[0].delta.role == "assistant" or first.content is not None
            assert len(warned) == 4
            assert client.limiter.borrowed_tokens == 0
            assert client.statistics().in_flight == 0
            # The server saw each abandoned stream's connection close (its handler ended).
            with trio.fail_after(10):
                for _ in range(1000):  # a poll, bounded: the server has no event for this
                    stats = server.statistics()
                    if stats.in_flight_requests == 0 and stats.connections_open <= 1:
                        break
                    await trio.sleep(0.01)
            stats = server.statistics()
            assert stats.in_flight_requests == 0 and stats.connections_open <= 1


async def test_a_stream_read_to_its_end_closes_itself() -> None:
    async with open_server() as server:
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, max_concurrent=1
        ) as client:
            with trio.fail_after(30):
                for _ in range(3):
                    stream = await client.chat.completions.create(
                        model="m", messages=MESSAGES, stream=True
                    )
                    async for _chunk in stream:
                        pass
                    assert client.limiter.borrowed_tokens == 0


async def test_abandoned_response_streams_give_back_their_tokens() -> None:
    # The same for the Responses API's streams: two dropped at max_concurrent=1, then
    # a third request gets the token.
    async with open_server(tps=10, answer_tokens=200) as server:
        async with trioclient.Client(
            api_key="sk-test", base_url=server.base_url, max_concurrent=1
        ) as client:
            with trio.fail_after(30):
                with pytest.warns(ResourceWarning, match="response stream") as warned:
                    for _ in range(2):

                        async def drop() -> None:
                            stream = await client.responses.create(
                                model="m", input="a long story", stream=True
                            )
                            async for _event in stream:
                                break

                        await drop()
                        gc.collect()
                        await trio.testing.wait_all_tasks_blocked()
                async with client.chat.completions.stream(model="m", messages=MESSAGES) as third:
                    await third.__anext__()
            assert len(warned) == 2
            assert client.limiter.borrowed_tokens == 0
