"""Async streaming: print the answer as it arrives, return the whole of it.

The seed::

    stream = await client.chat.completions.create(..., stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            print(content, end="", flush=True)

The same shape works here, with one addition: ``async with stream``. Leaving the
block (the loop finished, ``break``, an exception, a cancel) closes the connection and
frees the client's concurrency slot at once, instead of whenever the garbage
collector gets to it.

A trioclient stream ends on the server's ``data: [DONE]``; a stream cut before that
raises ``IncompleteStreamError`` (with what did arrive in ``.partial``), so a truncated
answer is never mistaken for a whole one.
"""

import trio
from _endpoint import MODEL, open_client

import trioclient


async def stream_completion(client: trioclient.Client, prompt: str) -> str:
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    full_response = ""
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                content = chunk.choices[0].delta.content
                full_response += content
                print(content, end="", flush=True)
    print()
    return full_response


async def main() -> None:
    # The embedded server sends 40 tokens per second, so you can watch them arrive.
    async with open_client(server={"tps": 40}) as client:
        answer = await stream_completion(client, "Tell me about structured concurrency")
    print(f"[{len(answer)} characters, complete]")


if __name__ == "__main__":
    trio.run(main)
