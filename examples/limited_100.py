"""100 requests, at most 10 in flight, each failure reported on its own.

The seed::

    semaphore = asyncio.Semaphore(10)
    async def rate_limited_request(prompt):
        async with semaphore:
            ...
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if isinstance(result, Exception): print(f"Request {i} failed: {result}")

Here the limit is the client's own ``max_concurrent`` (a ``trio.CapacityLimiter``
shared by every request of the client, retries included), and the batch engine
reports each request's outcome as a result: ``result.error`` holds a typed trioclient
exception, so "return_exceptions" is the default and an exception can never be
mistaken for an answer.

Request 13 asks for ``max_tokens=0``, which any API refuses with a 400: it fails
alone (a 400 is not retried: the same request would fail again), the 99 others do not
notice.
"""

import trio
from _endpoint import MODEL, open_client


def body(i: int) -> dict[str, object]:
    request = {"model": MODEL, "messages": [{"role": "user", "content": f"Question {i}"}]}
    if i == 13:
        request["max_tokens"] = 0  # a bad request, on purpose
    return request


async def main() -> None:
    # The server answers up to 100 requests at once; the client lets only 10 through.
    async with open_client(max_concurrent=10, server={"ttft": 0.02}) as client:
        results = await client.run_batch([body(i) for i in range(100)])

    for result in results:
        if result.error is not None:
            print(f"Request {result.index} failed: {type(result.error).__name__}: {result.error}")
    succeeded = sum(result.ok for result in results)
    print(f"{succeeded} of {len(results)} requests succeeded (max_concurrent=10)")


if __name__ == "__main__":
    trio.run(main)
