"""The xAI SDK seed's ``process_batch(items)``, with trioclient's batch engine.

The seed::

    async def process_batch(items):
        async def process_item(item):
            response = await client.chat.completions.create(...)
            return response.choices[0].message.content
        return await asyncio.gather(*[process_item(item) for item in items])

``gather`` creates every task up front (memory grows with the list), and one failure
raises out of ``gather`` while the other tasks keep running unobserved.

``client.run_batch`` takes the request bodies and returns one result per item, in
input order. A fixed crew of workers pulls items as slots free up, and a failed item
is a result with ``.error`` set: it never cancels the others. For long jobs, iterate
``async with client.batch(...)`` instead and handle each result as it finishes.
"""

import trio
from _endpoint import MODEL, open_client

import trioclient


async def process_batch(client: trioclient.Client, items: list[str]) -> list[str | None]:
    bodies = [
        {"model": MODEL, "messages": [{"role": "user", "content": f"Process: {item}"}]}
        for item in items
    ]
    results = await client.run_batch(bodies, max_concurrent=8)
    # A failed item keeps its place, with its error, instead of sinking the batch.
    return [r.response.content if r.ok else None for r in results]


async def main() -> None:
    items = ["apples", "bananas", "cherries", "dates", "elderberries", "figs"]
    async with open_client() as client:
        answers = await process_batch(client, items)
    for item, answer in zip(items, answers, strict=True):
        print(f"{item}: {answer[:80] if answer else 'FAILED'}")
    print(f"processed {sum(a is not None for a in answers)}/{len(items)} items")


if __name__ == "__main__":
    trio.run(main)
