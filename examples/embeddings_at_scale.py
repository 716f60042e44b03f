"""Embed a corpus: thousands of texts, in requests of a few hundred, many in flight.

Embedding a corpus is the other half of bulk work beside chat. The texts go out in
chunks (one request embeds a list), the chunks run concurrently under the client's
limiter, each vector lands at its text's position, and a failed chunk is reported
without sinking the rest. The vectors travel as base64 (trioclient asks for it and
decodes it in C), so even 1,536 floats per text cost little to read.

Afterwards, a nearest-neighbour lookup shows the vectors are usable as they are.
"""

import math
import os

import trio
from _endpoint import open_client

import trioclient

EMBEDDING_MODEL = os.environ.get("TRIOCLIENT_EMBEDDING_MODEL", "text-embedding-3-small")
TOPICS = ["rivers and lakes", "mountain weather", "city traffic", "old maps", "bread recipes"]
TEXTS = [f"note {i} on {TOPICS[i % len(TOPICS)]}" for i in range(2000)]
CHUNK = 200
DIMENSIONS = 256  # shortened vectors (text-embedding-3 models support it)


async def embed_corpus(client: trioclient.Client, texts: list[str]) -> list[list[float] | None]:
    vectors: list[list[float] | None] = [None] * len(texts)

    async def embed_chunk(start: int) -> None:
        chunk = texts[start : start + CHUNK]
        try:
            result = await client.embeddings.create(
                model=EMBEDDING_MODEL, input=chunk, dimensions=DIMENSIONS
            )
        except trioclient.APIError as exc:
            print(f"chunk at {start} failed: {type(exc).__name__}")
            return
        # result.vectors is in input order, whatever order the server listed them in.
        vectors[start : start + len(chunk)] = result.vectors

    async with trio.open_nursery() as nursery:
        for start in range(0, len(texts), CHUNK):
            nursery.start_soon(embed_chunk, start)
    return vectors


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b)))


async def main() -> None:
    async with open_client(max_concurrent=4) as client:
        start = trio.current_time()
        vectors = await embed_corpus(client, TEXTS)
        elapsed = trio.current_time() - start
        stats = client.statistics()
    done = [v for v in vectors if v is not None]
    print(
        f"{len(done)} of {len(TEXTS)} texts embedded in {stats.requests_succeeded} requests, {elapsed:.2f} s"
    )
    print(f"{len(done[0])} dimensions, {stats.prompt_tokens} tokens")
    query = vectors[0]
    assert query is not None
    # The first 200 candidates are enough to show the idea (numpy does this at scale).
    best = max(range(1, 200), key=lambda i: cosine(query, vectors[i] or query))
    print(f"nearest to {TEXTS[0]!r}: {TEXTS[best]!r}")
    print(f"a text is its own nearest: {cosine(query, query):.3f}")


if __name__ == "__main__":
    trio.run(main)
