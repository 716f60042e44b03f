"""``trioclient demo``: the asyncio seeds' scenarios, the trio way, in about ten seconds.

Without ``XAI_API_KEY`` (and without ``--base-url``) the demo starts the embedded
server in the same nursery as the client, with some latency, a few injected 503s and,
for the burst, a requests-per-minute limit whose first answer is a 429, so every
scenario happens for real on a loopback socket and the whole thing runs offline. With a key or ``--base-url`` it runs
the same scenarios, smaller, against that endpoint.

Each scenario is a function of a few lines; read them next to ``examples/``, which
show the same ideas one at a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._endpoint import client_options, environment_key
from ._errors import EXIT_FAILED, EXIT_OK, run_command
from ._progress import LiveProgress, Snapshot

if TYPE_CHECKING:
    from trioclient import Client
    from trioclient.testing import Server

__all__ = ["run"]

QUESTIONS = (
    "What is Python?",
    "What is JavaScript?",
    "What is Rust?",
    "What is Go?",
    "What is TypeScript?",
)


@attrs.frozen
class Plan:
    """How big each scenario is: full size offline, small against a paid endpoint."""

    burst: int
    burst_rpm: int | None
    batch: int
    max_tokens: int


#: Offline: the server's bucket holds ``burst_rpm`` requests and refills burst_rpm/60
#: per second, so a burst of burst_rpm + 4 may meet a few more 429s after the first.
EMBEDDED = Plan(burst=184, burst_rpm=180, batch=200, max_tokens=40)
#: A few injected 503s offline, to show that the client retries them on its own.
FAULTS = {"http_503": 0.02}

REAL = Plan(burst=12, burst_rpm=None, batch=12, max_tokens=40)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _heading(number: int, title: str) -> None:
    _say()
    _say(f"── {number}. {title} " + "─" * max(0, 60 - len(title)))


def _sim(**overrides: Any) -> dict[str, str]:
    """Per-request behaviour for the embedded server (ignored by real endpoints)."""
    return {"x-trioclient-sim": json.dumps(overrides)}


@attrs.define
class Demo:
    client: Client
    model: str
    plan: Plan
    server: Server | None
    #: Requests that failed on purpose (the timeout scenario's), not counted against us.
    deliberate_failures: int = 0
    cut_short: int = 0

    def _headers(self, **overrides: Any) -> dict[str, str] | None:
        return _sim(**overrides) if self.server is not None else None

    async def concurrent_questions(self) -> None:
        _heading(1, "Five questions at once, at most 2 in flight")
        _say("   asyncio: gather(*tasks) + Semaphore(2)  ·  trio: a nursery + the client's limiter")
        self.client.max_concurrent = 2
        answers: dict[str, str] = {}

        async def ask(question: str) -> None:
            answer = await self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": question}],
                max_tokens=self.plan.max_tokens,
            )
            answers[question] = answer.content or ""

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for question in QUESTIONS:
                nursery.start_soon(ask, question)
        for question in QUESTIONS:
            _say(f"   Q: {question}")
            _say(f"   A: {answers[question][:90]}...")
        line = f"   {len(answers)} answers in {trio.current_time() - started:.2f} s"
        if self.server is not None:
            peak = self.server.statistics().peak_in_flight_requests
            line += f"; the server never saw more than {peak} at once"
        _say(line)

    async def stream(self) -> None:
        _heading(2, "A stream, printed as it arrives")
        started = trio.current_time()
        first: float | None = None
        chunks = 0
        print("   ", end="", flush=True)
        async with self.client.chat.completions.stream(
            model=self.model,
            messages=[{"role": "user", "content": "Explain structured concurrency"}],
            max_tokens=self.plan.max_tokens,
            extra_headers=self._headers(tps=60),
        ) as stream:
            async for chunk in stream:
                if chunk.content:
                    if first is None:
                        first = trio.current_time() - started
                    chunks += 1
                    print(chunk.content, end="", flush=True)
        _say()
        _say(
            f"   {chunks} chunks; first after {first or 0:.2f} s, "
            f"done after {trio.current_time() - started:.2f} s; ended on [DONE], "
            "so it is whole"
        )

    async def burst(self) -> None:
        _heading(3, f"A burst of {self.plan.burst} requests against the rate limit")
        if self.server is not None and self.plan.burst_rpm is not None:
            # A fresh, full bucket of burst_rpm requests: the burst overflows it by a few.
            # No injected 503s meanwhile: each would spend a request of the budget too,
            # and this scenario is about the 429s alone.
            self.server.set_config(rpm=self.plan.burst_rpm, faults={})
            # Whether the bucket runs dry is a race with its refill, which a slow machine
            # loses; so the burst's first request is answered 429 (Retry-After 0.2 s)
            # on a machine of any speed, and a 429 is always on show.
            self.server.script_faults(["rate_limited"])
            _say(
                f"   the server allows {self.plan.burst_rpm} requests per minute, "
                "and answers the first one with a 429"
            )
        self.client.max_concurrent = 64
        before = self.client.statistics()
        succeeded = 0

        # The burst's own copy of the client: the same connections, limiter and rate
        # controller, more retries (a request at the bucket's edge may be refused a few
        # times while the refill is shared out).
        patient = self.client.with_options(max_retries=8)

        async def one(i: int) -> None:
            nonlocal succeeded
            await patient.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": f"Question {i}"}],
                max_tokens=8,
            )
            succeeded += 1

        started = trio.current_time()
        progress = LiveProgress(
            "burst", lambda: _client_snapshot(self.client, before, self.plan.burst)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            async with trio.open_nursery() as requests:
                for i in range(self.plan.burst):
                    requests.start_soon(one, i)
            nursery.cancel_scope.cancel()
        after = self.client.statistics()
        if self.server is not None:
            self.server.set_config(rpm=None, faults=FAULTS)
        limited = after.rate_limited - before.rate_limited
        _say(
            f"   {succeeded}/{self.plan.burst} succeeded in "
            f"{trio.current_time() - started:.2f} s; "
            f"{limited} answers were 429, {after.retries - before.retries} retries"
        )
        if limited:
            pauses = after.rate_limit_pauses - before.rate_limit_pauses
            _say(
                "   each refused request waits the server's Retry-After; the rate "
                "controller pauses the whole client when a budget runs dry, not for a "
                f"few requests over it ({pauses} client-wide pause"
                f"{'' if pauses == 1 else 's'} here)"
            )
        else:
            _say("   no 429 this time: the burst stayed within the endpoint's limit")

    async def timeout(self) -> None:
        import trioclient

        _heading(4, "Deadlines: a slow answer, and two ways to stop waiting")
        slow = self._headers(ttft=30)
        messages = [{"role": "user", "content": "Write a very long essay on time"}]
        limit = self.plan.max_tokens
        started = trio.current_time()
        with trio.move_on_after(0.3) as scope:
            await self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=limit, extra_headers=slow
            )
        if scope.cancelled_caught:
            self.cut_short += 1
            _say(
                f"   trio.move_on_after(0.3): gave up after {trio.current_time() - started:.2f} s "
                "(asyncio.wait_for's job, as a cancel scope around any code)"
            )
        else:
            _say("   trio.move_on_after(0.3): the answer came in time after all")
        started = trio.current_time()
        try:
            await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=limit,
                extra_headers=slow,
                timeout=0.3,
                retry=trioclient.RetryPolicy(max_retries=0),
            )
            _say("   timeout=0.3: the answer came in time after all")
        except trioclient.APITimeoutError as exc:
            self.deliberate_failures += 1
            self.cut_short += 1
            _say(
                f"   timeout=0.3: {type(exc).__name__} after "
                f"{trio.current_time() - started:.2f} s: {str(exc).splitlines()[0]}"
            )
        if self.cut_short:
            _say("   the client is still usable: the requests cut short freed their slots")

    async def batch(self) -> None:
        _heading(5, f"A batch of {self.plan.batch} requests, results as they finish")
        if importlib.util.find_spec("trioclient._batch") is None:
            _say("   (skipped: this build has no batch engine)")
            return
        bodies = [
            (
                f"item-{i}",
                {
                    "model": self.model,
                    "messages": [{"role": "user", "content": f"Process: item {i}"}],
                    "max_tokens": 16,
                },
            )
            for i in range(self.plan.batch)
        ]
        ok = failed = 0
        started = trio.current_time()
        async with self.client.batch(bodies, max_concurrent=32) as results:
            progress = LiveProgress("batch", lambda: _batch_snapshot(results.snapshot()))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.run)
                async for result in results:
                    if result.ok:
                        ok += 1
                    else:
                        failed += 1
                nursery.cancel_scope.cancel()
            final = results.snapshot()
        p95 = final.latency_p95
        _say(
            f"   {ok} succeeded, {failed} failed in {trio.current_time() - started:.2f} s "
            f"({final.requests_per_second:.0f} req/s, latency p95 "
            f"{(p95 or 0) * 1000:.0f} ms, {final.retries} retries)"
        )
        _say(
            "   32 workers pull from the input lazily: memory grows with concurrency, "
            "not with the number of requests"
        )


def _client_snapshot(client: Client, before: Any, total: int) -> Snapshot:
    now = client.statistics()
    return Snapshot(
        done=(now.requests_succeeded - before.requests_succeeded)
        + (now.requests_failed - before.requests_failed),
        total=total,
        failed=now.requests_failed - before.requests_failed,
        in_flight=now.in_flight,
        rate_limited=now.rate_limited - before.rate_limited,
        tokens=now.total_tokens - before.total_tokens,
    )


def _batch_snapshot(p: Any) -> Snapshot:
    return Snapshot(
        done=p.done,
        total=p.total,
        failed=p.failed,
        in_flight=p.in_flight,
        rate_limited=p.rate_limited,
        tokens=p.prompt_tokens + p.completion_tokens,
    )


async def _scenarios(options: dict[str, Any], plan: Plan, model: str, server: Server | None) -> int:
    import trioclient

    started = trio.current_time()
    async with trioclient.Client(**options) as client:
        demo = Demo(client, model, plan, server)
        steps: list[Callable[[], Any]] = [
            demo.concurrent_questions,
            demo.stream,
            demo.burst,
            demo.timeout,
            demo.batch,
        ]
        for step in steps:
            await step()
        stats = client.statistics()
    unexpected = stats.requests_failed - demo.deliberate_failures
    _say()
    _say("── Summary " + "─" * 55)
    _say(
        f"   requests: {stats.requests_succeeded} succeeded, {stats.requests_failed} failed "
        f"({demo.deliberate_failures} of them the deliberate timeout), "
        f"{stats.requests_sent} attempts sent"
    )
    _say(
        f"   tokens: {stats.total_tokens:,} ({stats.prompt_tokens:,} prompt + "
        f"{stats.completion_tokens:,} completion)"
    )
    _say(f"   retries: {stats.retries}, of which answered 429: {stats.rate_limited}")
    if server is not None:
        faults = server.statistics().faults_injected
        injected = ", ".join(f"{n} x {kind}" for kind, n in sorted(faults.items())) or "none"
        _say(f"   faults the server injected (all retried): {injected}")
    _say(f"   wall time: {trio.current_time() - started:.2f} s")
    return EXIT_OK if unexpected == 0 else EXIT_FAILED


async def _demo(args: argparse.Namespace) -> int:
    import trioclient

    remote = args.base_url is not None or environment_key() is not None
    if remote:
        options = client_options(args.base_url, args.timeout)
        _say(f"trioclient demo against {options['base_url'] or trioclient.DEFAULT_BASE_URL}")
        return await _scenarios(options, REAL, args.model, None)

    from trioclient.testing import open_server

    async with open_server(ttft="uniform:0.05,0.15", tps=400, seed=7, faults=FAULTS) as server:
        _say(f"trioclient demo: no XAI_API_KEY, so against an embedded server at {server.base_url}")
        _say("   (latency 50-150 ms, 2% of answers a 503, a rate limit for the burst)")
        options = {"api_key": "sk-demo", "base_url": server.base_url}
        if args.timeout is not None:
            options["timeout"] = args.timeout
        return await _scenarios(options, EMBEDDED, args.model, server)


def run(args: argparse.Namespace) -> int:
    """Run ``trioclient demo`` with parsed ``args``; return the exit code."""

    async def main() -> int:
        return await _demo(args)

    return run_command(main)
