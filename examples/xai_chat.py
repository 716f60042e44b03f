"""The xAI SDK's ``AsyncClient`` seed: ``chat.create``, ``append``, ``sample``, 2 at a time.

The seed::

    client = AsyncClient(api_key=..., timeout=3600)
    semaphore = asyncio.Semaphore(2)

    async def process_request(request) -> Response:
        async with semaphore:
            chat = client.chat.create(model=model, max_tokens=100)
            chat.append(user(request))
            return await chat.sample()

    responses = await asyncio.gather(*tasks)
    for i, response in enumerate(responses):
        print(f"Total tokens used for response {i}: {response.usage.total_tokens}")

trioclient speaks the same conversation style (``trioclient.user``, ``system``,
``assistant``). The semaphore becomes the client's ``max_concurrent=2``: every request
of the client shares that limit, whichever task sends it. ``timeout=3600`` is kept
(reasoning models can think for minutes), and ``sample()`` appends nothing by itself:
append the response to the chat to continue the conversation.
"""

import trio
from _endpoint import MODEL, open_client

import trioclient
from trioclient import user

REQUESTS = [
    "Tell me a joke",
    "Write a funny haiku",
    "Generate a funny X post",
    "Say something unhinged",
]


async def main() -> None:
    async with open_client(max_concurrent=2, timeout=3600) as client:
        responses: list[trioclient.Response | None] = [None] * len(REQUESTS)

        async def process_request(i: int, request: str) -> None:
            print(f"Processing request: {request}")
            chat = client.chat.create(model=MODEL, max_tokens=100)
            chat.append(user(request))
            responses[i] = await chat.sample()

        async with trio.open_nursery() as nursery:
            for i, request in enumerate(REQUESTS):
                nursery.start_soon(process_request, i, request)

    for i, response in enumerate(responses):
        assert response is not None  # the nursery waited for every task
        print(f"Total tokens used for response {i}: {response.usage.total_tokens}")


if __name__ == "__main__":
    trio.run(main)
