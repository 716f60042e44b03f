"""Five questions at once: the seed's ``asyncio.gather`` over ``get_completion``, in trio.

The seed::

    tasks = [get_completion(prompt) for prompt in prompts]
    results = await asyncio.gather(*tasks)

In trio, concurrent tasks live in a *nursery*: the ``async with`` block does not end
until every task in it has finished, and if one fails, the others are cancelled and
the error comes out of the block. No task can outlive its caller or be forgotten.
``gather`` returns the results in order; with a nursery each task writes its answer
into its own slot.

Run: ``python examples/concurrent_questions.py`` (offline; real API with XAI_API_KEY).
"""

import trio
from _endpoint import MODEL, open_client

import trioclient

PROMPTS = [
    "What is Python?",
    "What is JavaScript?",
    "What is Rust?",
    "What is Go?",
    "What is TypeScript?",
]


async def get_completion(client: trioclient.Client, prompt: str) -> str:
    response = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}]
    )
    return response.choices[0].message.content or ""


async def main() -> None:
    async with open_client() as client:
        results = [""] * len(PROMPTS)

        async def answer(i: int, prompt: str) -> None:
            results[i] = await get_completion(client, prompt)

        started = trio.current_time()
        async with trio.open_nursery() as nursery:  # "gather": waits for all five
            for i, prompt in enumerate(PROMPTS):
                nursery.start_soon(answer, i, prompt)
        elapsed = trio.current_time() - started

    for prompt, result in zip(PROMPTS, results, strict=True):
        print(f"Q: {prompt}")
        print(f"A: {result[:100]}...")
        print()
    # Concurrent, so the whole took about as long as the slowest answer, not the sum.
    print(f"{len(results)} answers in {elapsed:.2f} s")


if __name__ == "__main__":
    trio.run(main)
