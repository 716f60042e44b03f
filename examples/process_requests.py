"""The OpenAI SDK seed's ``process_requests(requests, max_concurrent=2)``.

The seed::

    async def send_request(sem, request):
        async with sem:
            return await client.chat.completions.create(model="grok-4", messages=[...])

    async def process_requests(requests, max_concurrent=2):
        sem = Semaphore(max_concurrent)
        tasks = [send_request(sem, request) for request in requests]
        return await asyncio.gather(*tasks)

The semaphore is a ``trio.CapacityLimiter`` here: "only 2 passes to make requests at
the same time", and a limiter knows which task holds each pass. Passed to the client
as ``limiter=``, it bounds every request the client sends (several clients may even
share one). The nursery plays ``gather``: it waits for all, and puts each response in
its place so they print in order.
"""

import trio
from _endpoint import MODEL, open_client

import trioclient

REQUESTS = [
    "Tell me a joke",
    "Write a funny haiku",
    "Generate a funny X post",
    "Say something unhinged",
]


async def send_request(client: trioclient.Client, request: str) -> trioclient.ChatCompletion:
    return await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": request}]
    )


async def process_requests(
    requests: list[str], max_concurrent: int = 2
) -> list[trioclient.ChatCompletion]:
    limiter = trio.CapacityLimiter(max_concurrent)  # only 2 "passes" at a time
    responses: list[trioclient.ChatCompletion | None] = [None] * len(requests)
    async with open_client(limiter=limiter) as client:

        async def one(i: int, request: str) -> None:
            responses[i] = await send_request(client, request)

        async with trio.open_nursery() as nursery:
            for i, request in enumerate(requests):
                nursery.start_soon(one, i, request)
    return [r for r in responses if r is not None]


async def main() -> None:
    responses = await process_requests(REQUESTS)
    for i, response in enumerate(responses):
        print(f"# Response {i}:")
        print(response.choices[0].message.content)


if __name__ == "__main__":
    trio.run(main)
