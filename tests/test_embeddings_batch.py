"""Batches over any Batch API url: chat, embeddings and responses lines mixed in one
file (the JSONL runner) or one iterable (the batch engine), bodies sent as written,
checked per endpoint before sending, and tokens estimated per endpoint for tpm budgets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import trioclient
from trioclient._pacing import estimate_tokens
from trioclient.testing import open_server
from trioclient.testing._embeddings import embedding_vector

KEY = "sk-test-batch-endpoints-0123"


def line(custom_id: str, url: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


MIXED = [
    line(
        "chat",
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    ),
    line("emb", "/v1/embeddings", {"model": "e", "input": ["alpha", "beta"], "dimensions": 4}),
    line(
        "emb64",
        "/embeddings",
        {"model": "e", "input": "alpha", "dimensions": 4, "encoding_format": "base64"},
    ),
    line(
        "resp",
        "/v1/responses",
        {"model": "g", "input": "Tell me about rivers", "max_output_tokens": 5},
    ),
    line("bad-emb", "/v1/embeddings", {"model": "e", "input": []}),
    line("bad-resp", "/v1/responses", {"model": "g", "input": "x", "stream": True}),
]


async def test_a_mixed_file_runs_every_url_and_writes_batch_api_records(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(MIXED) + "\n")
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server() as server:
            async with trioclient.Client(api_key=KEY, base_url=server.base_url) as client:
                summary = await trioclient.run_batch_file(client, source, out)
            stats = server.statistics()
    assert (summary.total, summary.succeeded, summary.failed) == (6, 4, 2)
    records = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["chat"]["response"]["body"]["object"] == "chat.completion"
    emb = records["emb"]["response"]["body"]
    assert emb["object"] == "list"
    # Sent as written: no encoding_format was added, so the server answered floats.
    assert [item["embedding"] for item in emb["data"]] == [
        pytest.approx(embedding_vector("alpha", 4)),
        pytest.approx(embedding_vector("beta", 4)),
    ]
    assert isinstance(records["emb64"]["response"]["body"]["data"][0]["embedding"], str)
    resp = records["resp"]["response"]["body"]
    assert resp["object"] == "response" and resp["status"] == "incomplete"
    assert resp["usage"]["output_tokens"] == 5
    for bad in ("bad-emb", "bad-resp"):
        assert records[bad]["error"]["code"] == "invalid_request"
        assert records[bad]["response"] is None
    assert "empty list" in records["bad-emb"]["error"]["message"]
    assert "stream is not supported" in records["bad-resp"]["error"]["message"]
    # The bad lines were never sent.
    assert stats.requests_by_path["/v1/embeddings"] == 2
    assert stats.requests_by_path["/v1/responses"] == 1


async def test_the_engine_takes_url_triples_and_sends_bodies_as_written() -> None:
    seen: list[tuple[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                "model": "e",
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )

    transport = httpx.MockTransport(answer)
    async with trioclient.Client(
        api_key=KEY, base_url="http://127.0.0.1:9/v1", transport=transport
    ) as client:
        results = await client.run_batch([("a", {"model": "e", "input": "x"}, "/v1/embeddings")])
    assert seen == [("/v1/embeddings", {"model": "e", "input": "x"})]
    (result,) = results
    assert result.ok and result.custom_id == "a"
    assert isinstance(result.response, trioclient.CreateEmbeddingResponse)
    assert result.response.vectors == [[0.5]]
    assert result.usage is not None and result.usage.prompt_tokens == 1


async def test_an_unknown_url_is_the_item_s_error_not_the_batch_s() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(500))
    async with trioclient.Client(
        api_key=KEY, base_url="http://127.0.0.1:9/v1", transport=transport
    ) as client:
        (result,) = await client.run_batch(
            [("a", {"model": "m", "prompt": "x"}, "/v1/completions")]
        )
    assert isinstance(result.error, ValueError) and "/v1/completions" in str(result.error)
    assert result.attempts == 0


def test_token_estimates_per_endpoint() -> None:
    text = "x" * 400  # about 100 tokens at four characters a token
    assert estimate_tokens({"model": "e", "input": text}, kind="embeddings") == 100
    assert estimate_tokens({"model": "e", "input": [text, text]}, kind="embeddings") == 200
    assert estimate_tokens({"model": "e", "input": [1, 2, 3]}, kind="embeddings") == 3
    # A response: its input plus the most it may write.
    assert (
        estimate_tokens({"model": "g", "input": text, "max_output_tokens": 50}, kind="responses")
        == 150
    )
    assert (
        estimate_tokens({"model": "g", "input": text, "instructions": text}, 20, kind="responses")
        == 220
    )
    items = [{"role": "user", "content": text}]
    assert estimate_tokens({"model": "g", "input": items}, 0, kind="responses") >= 100


async def test_tpm_budget_paces_embeddings_by_their_estimate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each line costs ~100 tokens; at tpm=600 (10 a second, a burst of one second's
    # worth) ten lines take about a minute and a half of (virtual) time, not zero.
    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            200,
            json={"object": "list", "data": [{"index": 0, "embedding": [0.0]}], "model": "e"},
        )
    )
    items = [(f"i{i}", {"model": "e", "input": "x" * 400}, "/v1/embeddings") for i in range(10)]
    async with trioclient.Client(
        api_key=KEY, base_url="http://127.0.0.1:9/v1", transport=transport
    ) as client:
        start = trio.current_time()
        with trio.fail_after(600):
            results = await client.run_batch(items, tpm=600)
        elapsed = trio.current_time() - start
    assert all(r.ok for r in results)
    assert 80 <= elapsed <= 150, elapsed
