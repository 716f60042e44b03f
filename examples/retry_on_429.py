"""Retry with backoff on 429: the client already does it, better than a loop can.

The seed::

    for attempt in range(max_retries):
        try:
            response = await client.chat.completions.create(...)
        except Exception as e:
            if "429" in str(e):
                await asyncio.sleep(2 ** attempt)

That loop retries on a *string match*, ignores the server's ``Retry-After``, sleeps
the same powers of two in every task (so they all come back together and meet the
next 429 together), retries errors that can never succeed, and can sleep past any
deadline its caller had.

A trioclient ``RetryPolicy`` is a value you pass to the client (or to one call):

* it retries 429, 408, 409, 5xx, connection errors and timeouts, and nothing else
  (a 400 or a 429 ``insufficient_quota`` fails at once: waiting does not fix them);
* it waits what the server asks (``retry-after-ms``, ``Retry-After``), else a
  full-jitter exponential backoff, so tasks that failed together spread out;
* a 429 closes a gate for the whole client for the server's wait: one pause, not one
  per task;
* it never sleeps past the caller's deadline (``trio.move_on_after`` and friends).

Here the embedded server allows 60 requests per minute (a bucket of 60 that refills
at 1 per second, as real APIs work) and we send 66 at once: the last few meet 429s,
wait as told, and every one of them still succeeds. (Six over the bucket, not one or
two: a slow machine that takes seconds to send them all must still overflow it.)
"""

import trio
from _endpoint import MODEL, open_client

import trioclient

N = 66
POLICY = trioclient.RetryPolicy(max_retries=8, base_delay=0.5, max_delay=30.0)


async def main() -> None:
    async with open_client(retry=POLICY, server={"rpm": 60}) as client:
        answers: list[str] = []

        async def robust_request(prompt: str) -> None:
            response = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}]
            )
            answers.append(response.content or "")

        async with trio.open_nursery() as nursery:
            for i in range(N):
                nursery.start_soon(robust_request, f"Question {i}")
        stats = client.statistics()

    print(f"{len(answers)} of {N} requests succeeded")
    print(f"429 answers met: {stats.rate_limited}; retries made: {stats.retries}")
    print(
        f"policy: up to {POLICY.max_retries} retries, Retry-After honoured, else full-jitter backoff"
    )


if __name__ == "__main__":
    trio.run(main)
