"""The embedded server's ``/v1/embeddings``: deterministic vectors, float and base64,
checks, faults and rate limits; read by trioclient and by the official openai SDK.

Real loopback sockets on the real clock (the SDK runs on anyio), each test bounded.
"""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest
import trio

import trioclient
from trioclient.testing import open_server
from trioclient.testing._embeddings import DEFAULT_DIMENSIONS, embedding_vector

KEY = "sk-test-embeddings-0123456789"


def client_for(base_url: str, **options: object) -> trioclient.Client:
    return trioclient.Client(api_key=KEY, base_url=base_url, **options)  # type: ignore[arg-type]


async def test_vectors_are_deterministic_unit_length_and_distinct() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            first = await client.embeddings.create(model="emb", input=["alpha", "beta"])
            again = await client.embeddings.create(model="emb", input="alpha")
    alpha, beta = first.vectors
    assert len(alpha) == DEFAULT_DIMENSIONS
    assert again.vectors[0] == alpha
    assert alpha != beta
    assert math.isclose(math.fsum(v * v for v in alpha), 1.0, rel_tol=1e-5)
    assert alpha == embedding_vector("alpha")
    assert first.usage is not None and first.usage.prompt_tokens == 2


async def test_base64_and_float_carry_the_same_float32_values() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            as_b64 = await client.embeddings.create(model="emb", input="x", dimensions=8)
            as_float = await client.embeddings.create(
                model="emb", input="x", dimensions=8, encoding_format="float"
            )
    assert len(as_b64.vectors[0]) == 8
    # JSON floats print float32 values as float64 text: equal after rounding to float32.
    rounded = list(struct.unpack("<8f", struct.pack("<8f", *as_float.vectors[0])))
    assert as_b64.vectors[0] == rounded


async def test_token_id_inputs() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            one = await client.embeddings.create(model="emb", input=[1, 2, 3], dimensions=4)
            many = await client.embeddings.create(model="emb", input=[[1, 2, 3], [4]], dimensions=4)
    assert one.vectors[0] == many.vectors[0]
    assert len(many.data) == 2 and many.usage is not None and many.usage.prompt_tokens == 4


async def test_the_openai_sdk_reads_it_both_ways() -> None:
    with trio.fail_after(20):
        async with open_server(api_key=KEY) as server:
            sdk = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
            try:
                default = await sdk.embeddings.create(model="emb", input=["a", "b"], dimensions=16)
                raw = await sdk.embeddings.create(
                    model="emb", input="a", dimensions=16, encoding_format="base64"
                )
            finally:
                await sdk.close()
    expected = embedding_vector("a", 16)
    assert default.data[0].embedding == expected  # the SDK asked for base64 and decoded it
    decoded = struct.unpack("<16f", base64.b64decode(raw.data[0].embedding))  # type: ignore[arg-type]
    assert list(decoded) == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model": "emb", "input": []}, "empty array"),
        ({"model": "emb", "input": ["a", 3]}, r"input\[1\]"),
        ({"model": "emb", "input": "a", "encoding_format": "int8"}, "Supported values"),
        ({"model": "emb", "input": "a", "dimensions": 0}, "dimensions"),
    ],
)
async def test_bad_requests_are_400s_naming_the_problem(
    body: dict[str, object], match: str
) -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            # extra_body replaces what trioclient checks itself: this is the server's check.
            with pytest.raises(trioclient.BadRequestError, match=match):
                await client.embeddings.create(model="emb", input="ok", extra_body=body)


async def test_faults_and_retries_apply() -> None:
    with trio.fail_after(20):
        async with open_server() as server, client_for(server.base_url) as client:
            server.script_faults(["http_503", "malformed_json", None])
            with pytest.raises(trioclient.APIResponseValidationError):
                await client.embeddings.create(
                    model="emb",
                    input="a",
                    retry=trioclient.RetryPolicy(max_retries=1, base_delay=0.01),
                )
            result = await client.embeddings.create(model="emb", input="a")
            stats = server.statistics()
    assert result.vectors[0] == embedding_vector("a")
    assert stats.faults_injected == {"http_503": 1, "malformed_json": 1}
    assert stats.requests_by_path["/v1/embeddings"] == 3


async def test_rate_limited_by_tokens_per_minute() -> None:
    with trio.fail_after(20):
        async with (
            open_server(tpm=3) as server,
            # The server's refusal is under test: a client following its headers would
            # wait for the budget instead (test_header_budget).
            client_for(server.base_url, max_retries=0, follow_rate_limit_headers=False) as client,
        ):
            await client.embeddings.create(model="emb", input="one two three")
            with pytest.raises(trioclient.RateLimitError, match="tokens"):
                await client.embeddings.create(model="emb", input="four")
