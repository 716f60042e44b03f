"""Chunked processing, and why the batch engine makes the chunk (and its sleep) unnecessary.

The seed::

    for i in range(0, len(items), chunk_size):
        chunk = items[i:i + chunk_size]
        chunk_results = await asyncio.gather(*[get_completion(item) for item in chunk])
        results.extend(chunk_results)
        await asyncio.sleep(1)  # Optional: delay between chunks to avoid rate limits

Chunks bound memory and concurrency, but each chunk waits for its *slowest* request
while the other slots sit idle, and the sleep is a guess at the rate limit: too short
and you meet 429s anyway, too long and you waste the budget.

The engine keeps ``max_concurrent`` requests in flight all the time (a new one starts
the moment any one ends), reads items lazily (memory stays bounded as with chunks),
and paces with a real budget (``rpm=``, ``tpm=``, and the server's own
``x-ratelimit-*`` headers) instead of a sleep. This example times both on the same
40 requests, with latencies that vary as real ones do (a few slow answers).
"""

import trio
from _endpoint import MODEL, open_client

import trioclient

ITEMS = [f"item {i}" for i in range(40)]
CHUNK_SIZE = 10
# Lognormal latency: most answers quick, a few slow: the shape real APIs have.
SERVER = {"ttft": "lognormal:0.1,0.8", "seed": 3}


async def get_completion(client: trioclient.Client, item: str) -> str:
    response = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Process: {item}"}]
    )
    return response.content or ""


async def process_in_chunks(client: trioclient.Client, items: list[str]) -> list[str]:
    """The seed's pattern in trio (without the sleep, to be fair to it)."""
    results: list[str] = []
    for i in range(0, len(items), CHUNK_SIZE):
        chunk = items[i : i + CHUNK_SIZE]
        chunk_results = [""] * len(chunk)

        async def fill(j: int, item: str, out: list[str] = chunk_results) -> None:
            out[j] = await get_completion(client, item)

        async with trio.open_nursery() as nursery:  # waits for the slowest of the chunk
            for j, item in enumerate(chunk):
                nursery.start_soon(fill, j, item)
        results.extend(chunk_results)
    return results


async def process_with_engine(client: trioclient.Client, items: list[str]) -> list[str]:
    bodies = [
        {"model": MODEL, "messages": [{"role": "user", "content": f"Process: {item}"}]}
        for item in items
    ]
    # Same concurrency as the chunks; add rpm=... to pace to a budget instead of sleeping.
    results = await client.run_batch(bodies, max_concurrent=CHUNK_SIZE)
    return [r.response.content or "" if r.response else "" for r in results]


async def main() -> None:
    async with open_client(server=SERVER) as client:
        started = trio.current_time()
        chunked = await process_in_chunks(client, ITEMS)
        chunked_time = trio.current_time() - started

        started = trio.current_time()
        engine = await process_with_engine(client, ITEMS)
        engine_time = trio.current_time() - started

    print(f"chunks of {CHUNK_SIZE}:  {len(chunked)} answers in {chunked_time:.2f} s")
    print(f"batch engine: {len(engine)} answers in {engine_time:.2f} s")
    print("the engine never waits for a chunk's slowest request with idle slots")


if __name__ == "__main__":
    trio.run(main)
