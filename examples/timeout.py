"""A request with a timeout: ``asyncio.wait_for`` becomes a cancel scope.

The seed::

    try:
        response = await asyncio.wait_for(client.chat.completions.create(...), timeout=timeout)
        return response.choices[0].message.content
    except asyncio.TimeoutError:
        return None

In trio a deadline is a *cancel scope* around any block of code, not a wrapper around
one awaitable: ``with trio.move_on_after(timeout):`` gives up quietly (check
``scope.cancelled_caught``), ``trio.fail_after`` raises ``TooSlowError``. Everything
inside is cancelled cleanly (the connection closed, the concurrency slot freed) and the
client stays usable. trioclient also never *starts* a retry that could not finish
before your deadline.

For a per-request deadline that counts as a retryable failure, pass ``timeout=`` to
the call (or ``trioclient.Timeout(...)`` to the client): it raises
``trioclient.APITimeoutError``.

The embedded server here takes a second before each answer.
"""

import trio
from _endpoint import MODEL, REAL, open_client

import trioclient

SHORT = 0.3
LONG = 60.0 if REAL else 5.0


async def request_with_timeout(
    client: trioclient.Client, prompt: str, timeout: float
) -> str | None:
    with trio.move_on_after(timeout):
        response = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )
        return response.choices[0].message.content
    return None  # reached only when the deadline cancelled the block


async def main() -> None:
    async with open_client(server={"ttft": 1.0}) as client:
        quick = await request_with_timeout(client, "Write a long story", SHORT)
        print(f"with a {SHORT} s deadline: {quick!r}")

        patient = await request_with_timeout(client, "Write a long story", LONG)
        print(f"with a {LONG:g} s deadline: {patient[:60] if patient else patient!r}...")

        try:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Write a long story"}],
                timeout=SHORT,
                retry=trioclient.RetryPolicy(max_retries=0),
            )
        except trioclient.APITimeoutError as exc:
            print(f"with timeout={SHORT}: {type(exc).__name__}")


if __name__ == "__main__":
    trio.run(main)
