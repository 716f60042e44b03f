"""``client.embeddings.create``: the body sent, base64 decoding, checks before sending,
and the one request path (retries, statistics, request options) it shares with chat.

The server side is ``httpx.MockTransport`` on trio's autojump clock; the embedded
server's embeddings endpoint has its own tests (test_embeddings_server.py).
"""

from __future__ import annotations

import array
import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

import trioclient
from trioclient._embeddings import decode_base64_embedding

URL = "http://127.0.0.1:9/v1"


def b64(values: list[float]) -> str:
    """Little-endian float32, as OpenAI sends (struct with '<', independent of the
    decoder under test)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def answer(vectors: list[list[float]], *, as_base64: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": b64(v) if as_base64 else v}
            for i, v in enumerate(vectors)
        ],
        "model": "emb-1",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
        **extra,
    }


class Recorder:
    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def client_for(handler: Any, **options: Any) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test", base_url=URL, transport=httpx.MockTransport(handler), **options
    )


async def test_default_asks_for_base64_and_returns_floats() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=answer([[0.5, -1.25, 3.0]])))
    async with client_for(recorder) as client:
        result = await client.embeddings.create(model="emb-1", input="hello")
    assert recorder.requests[0].url == URL + "/embeddings"
    assert recorder.body() == {"model": "emb-1", "input": "hello", "encoding_format": "base64"}
    assert result.data[0].embedding == [0.5, -1.25, 3.0]
    assert type(result.data[0].embedding) is list
    assert result.data[0].index == 0
    assert result.model == "emb-1"
    assert result.usage is not None and result.usage.prompt_tokens == 5


async def test_explicit_float_is_sent_and_read_as_floats() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=answer([[0.1, 0.2]], as_base64=False)))
    async with client_for(recorder) as client:
        result = await client.embeddings.create(
            model="emb-1", input=["a"], encoding_format="float", dimensions=2
        )
    assert recorder.body() == {
        "model": "emb-1",
        "input": ["a"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    assert result.vectors == [[0.1, 0.2]]


async def test_a_server_that_ignores_base64_and_sends_floats_is_read_the_same() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=answer([[1.0, 2.0]], as_base64=False)))
    async with client_for(recorder) as client:
        result = await client.embeddings.create(model="emb-1", input="x")
    assert result.vectors == [[1.0, 2.0]]


async def test_vectors_are_in_input_order_whatever_the_server_order() -> None:
    body = answer([[1.0], [2.0], [3.0]])
    body["data"].reverse()
    async with client_for(Recorder(lambda r: httpx.Response(200, json=body))) as client:
        result = await client.embeddings.create(model="emb-1", input=["a", "b", "c"])
    assert [item.index for item in result.data] == [2, 1, 0]
    assert result.vectors == [[1.0], [2.0], [3.0]]


@pytest.mark.parametrize(
    ("vectors", "inputs"),
    [([[1.0]], ["a", "b"]), ([[1.0], [2.0], [3.0]], ["a", "b"])],
    ids=["one-missing", "one-extra"],
)
async def test_an_answer_that_is_not_one_vector_per_input_is_an_error(
    vectors: list[list[float]], inputs: list[str]
) -> None:
    body = answer(vectors)
    async with client_for(Recorder(lambda r: httpx.Response(200, json=body))) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="2 inputs were sent"):
            await client.embeddings.create(model="emb-1", input=inputs)


async def test_repeated_index_is_an_error() -> None:
    body = answer([[1.0], [2.0]])
    body["data"][1]["index"] = 0
    async with client_for(Recorder(lambda r: httpx.Response(200, json=body))) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match=r"indexes \[0, 0\]"):
            await client.embeddings.create(model="emb-1", input=["a", "b"])


def test_decode_matches_struct_for_awkward_values() -> None:
    values = [0.0, -0.0, 1e-38, 3.4e38, -2.5, float("inf")]
    decoded = decode_base64_embedding(b64(values))
    expected = list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))
    assert decoded == expected


def test_decode_reads_little_endian_whatever_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a big-endian host: the decoder must swap, so the value read is the
    # little-endian one. Checked by feeding bytes whose two orders differ.
    import trioclient._embeddings as module

    little = struct.pack("<f", 1.5)
    text = base64.b64encode(little).decode()
    assert decode_base64_embedding(text) == [1.5]
    monkeypatch.setattr(module, "_BIG_ENDIAN", True)
    # On this (little-endian) machine the swap now yields the big-endian reading.
    swapped = array.array("f", little)
    swapped.byteswap()
    assert decode_base64_embedding(text) == swapped.tolist()


@pytest.mark.parametrize("text", ["not base64!", "AAAA" + "A"], ids=["bad-alphabet", "bad-padding"])
def test_decode_refuses_what_is_not_base64(text: str) -> None:
    with pytest.raises(trioclient.APIResponseValidationError, match="not valid base64"):
        decode_base64_embedding(text)


def test_decode_refuses_a_partial_float() -> None:
    with pytest.raises(trioclient.APIResponseValidationError, match="6 bytes"):
        decode_base64_embedding(base64.b64encode(b"\0" * 6).decode())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": []}, ValueError, "empty list"),
        ({"input": ""}, ValueError, "empty string"),
        ({"input": ["a", ""]}, ValueError, r"input\[1\] is an empty string"),
        ({"input": ["a", 3]}, TypeError, r"input\[1\] is a int"),
        ({"input": [1, "a"]}, TypeError, r"input\[1\] is 'a'"),
        ({"input": [1, True]}, TypeError, r"input\[1\] is True"),
        ({"input": [[1, 2], []]}, ValueError, r"input\[1\] is an empty list"),
        ({"input": [[1, 2], [3, -1]]}, TypeError, r"input\[1\]\[1\] is -1"),
        ({"input": [None]}, TypeError, r"input\[0\] is a NoneType"),
        ({"input": {"a": 1}}, TypeError, "got dict"),
        ({"input": b"bytes"}, TypeError, "got bytes"),
        ({"input": "x", "dimensions": "256"}, ValueError, "dimensions must be"),
        ({"input": "x", "dimensions": 0}, ValueError, "dimensions must be"),
        ({"input": "x", "dimensions": True}, ValueError, "dimensions must be"),
        ({"input": "x", "encoding_format": "int8"}, ValueError, "encoding_format must be"),
        ({"input": "x", "model": ""}, ValueError, "model must be"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=answer([[1.0]])))
    async with client_for(recorder) as client:
        with pytest.raises(error, match=match):
            await client.embeddings.create(**{"model": "emb-1", **kwargs})
    assert recorder.requests == []


async def test_token_ids_are_one_input_and_lists_of_them_many() -> None:
    recorder = Recorder(
        lambda r: (
            httpx.Response(200, json=answer([[1.0]] * len(json.loads(r.content)["input"])))
            if isinstance(json.loads(r.content)["input"][0], list)
            else httpx.Response(200, json=answer([[1.0]]))
        )
    )
    async with client_for(recorder) as client:
        one = await client.embeddings.create(model="emb-1", input=[1, 2, 3])
        many = await client.embeddings.create(model="emb-1", input=[[1, 2], [3]])
    assert len(one.data) == 1 and len(many.data) == 2
    assert recorder.body(0)["input"] == [1, 2, 3]


async def test_retries_statistics_and_request_options_apply() -> None:
    statuses = iter([503, 200])

    def respond(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status != 200:
            return httpx.Response(status, json={"error": {"message": "busy"}})
        return httpx.Response(200, json=answer([[1.0]]))

    recorder = Recorder(respond)
    async with client_for(recorder) as client:
        with trio.fail_after(60):
            await client.embeddings.create(
                model="emb-1",
                input="x",
                extra_headers={"X-Trace": "t1"},
                extra_query={"api-version": "2"},
                extra_body={"user": "u1"},
            )
        stats = client.statistics()
    assert len(recorder.requests) == 2
    last = recorder.requests[-1]
    assert last.headers["x-trace"] == "t1"
    assert last.url.params["api-version"] == "2"
    assert recorder.body()["user"] == "u1"
    assert last.headers["authorization"] == "Bearer sk-test"
    assert (stats.requests_sent, stats.retries, stats.requests_succeeded) == (2, 1, 1)
    assert stats.prompt_tokens == 5


async def test_max_retries_zero_gives_up_at_once() -> None:
    recorder = Recorder(lambda r: httpx.Response(503, json={"error": {"message": "busy"}}))
    async with client_for(recorder) as client:
        with pytest.raises(trioclient.InternalServerError):
            await client.embeddings.create(model="emb-1", input="x", max_retries=0)
    assert len(recorder.requests) == 1


async def test_with_options_copy_has_its_own_namespace() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, json=answer([[1.0]])))
    async with client_for(recorder) as client:
        copy = client.with_options(default_headers={"X-Copy": "1"})
        await copy.embeddings.create(model="emb-1", input="x")
        await client.embeddings.create(model="emb-1", input="x")
    assert recorder.requests[0].headers.get("x-copy") == "1"
    assert "x-copy" not in recorder.requests[1].headers


async def test_a_200_carrying_an_error_is_an_error() -> None:
    body = {"error": {"message": "model overloaded"}}
    async with client_for(Recorder(lambda r: httpx.Response(200, json=body))) as client:
        with pytest.raises(trioclient.APIResponseValidationError, match="overloaded"):
            await client.embeddings.create(model="emb-1", input="x", max_retries=0)
