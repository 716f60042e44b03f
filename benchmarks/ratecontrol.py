"""Rate control beside the seeds' SDK pattern, in real time: random 429s, a true rpm
bucket, and two clients on one key.

    python -m benchmarks.ratecontrol            # every scenario, about 4 minutes
    python -m benchmarks.ratecontrol --quick    # smaller sizes, about a minute
    python -m benchmarks.ratecontrol --out DIR  # somewhere else than benchmarks/results/

Each scenario runs on a fresh embedded server (``trioclient.testing``) in its own
process, once per contender; every client runs in a process of its own too:

* **trioclient**: the batch engine (``client.batch``), ``max_concurrent`` as the
  pattern's semaphore, a ``RetryPolicy(max_retries=8)``; the server's
  ``x-ratelimit-*`` headers are followed (the default);
* **openai-sdk**: the seeds' pattern, ``AsyncOpenAI`` on asyncio with an
  ``asyncio.Semaphore`` and the seeds' ``robust_request`` loop around each call (the
  SDK's own retries off, as in the seeds' rate-limit code, so every 429 is the loop's).

Scenarios and targets (issue 15):

* ``noise``: 15 % of requests answered 429 at random (``Retry-After: 1``) and 10 %
  503, 300 requests, half of them streaming, 32 in flight: every request succeeds,
  and trioclient's makespan is at most the SDK pattern's;
* ``bucket``: a true bucket of 120 requests a minute (starting full), 160 requests at
  32 in flight: at least 0.97 of the allowed rate, fewer than 2 % of attempts 429;
* ``shared``: two client processes on one key of 120 a minute, 100 requests each at 16
  in flight: together at least 0.9 of the allowed rate, fewer than 5 % of attempts 429;
* ``bucket-plain``: the bucket again, trioclient as plain calls in a nursery rather
  than a batch, paced by the client's header budget (the same targets as ``bucket``);
* ``bucket-no-headers`` (no target): the same plain calls with
  ``follow_rate_limit_headers=False``, as against a server that sends no
  ``x-ratelimit-*`` headers: the rate controller alone paces;
* ``shared-plain``: the two clients as plain calls (the same targets as ``shared``).

The allowed rate is the bucket's: it starts full (``capacity`` requests at once), then
refills at ``rpm / 60`` a second, so ``n`` requests need at least
``(n - capacity) / rate`` seconds; the fraction reported is that floor over the
makespan. It prints a table and writes ``ratecontrol.png`` (answers over time, 429s as
ticks, the budget line, trioclient's pace) and ``ratecontrol.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._embedded import REPO_ROOT, child_env

__all__ = ["main"]

API_KEY = "sk-bench-ratecontrol"
MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "Say something short."}]
LATENCY = "uniform:0.05,0.15"  # time to first token, as the demo's server

_BUCKET = {
    "server": {"ttft": LATENCY, "tps": 400, "seed": 12, "rpm": 120},
    "requests": 160,
    "concurrency": 32,
    "clients": 1,
    "stream_share": 0.0,
}
_SHARED = {
    "server": {"ttft": LATENCY, "tps": 400, "seed": 13, "rpm": 120},
    "requests": 100,
    "concurrency": 16,
    "clients": 2,
    "stream_share": 0.0,
}
#: name -> (server config, requests per client, in flight per client, clients, streaming share)
SCENARIOS: dict[str, dict[str, Any]] = {
    "noise": {
        "server": {
            "ttft": LATENCY,
            "tps": 400,
            "seed": 11,
            "faults": {"rate_limited": 0.15, "http_503": 0.10},
            "rate_limited_retry_after": 1.0,
        },
        "requests": 300,
        "concurrency": 32,
        "clients": 1,
        "stream_share": 0.5,
    },
    "bucket": _BUCKET,
    # The same bucket, trioclient as plain calls (one task per request, the client's
    # limiter as the semaphore), paced by the client's header budget...
    "bucket-plain": {**_BUCKET, "plain": True},
    # ...and with the headers ignored: the rate controller alone.
    "bucket-no-headers": {**_BUCKET, "plain": True, "no_headers": True},
    "shared": _SHARED,
    "shared-plain": {**_SHARED, "plain": True},
}
QUICK = {
    "noise": 150,
    "bucket": 140,
    "bucket-plain": 140,
    "bucket-no-headers": 140,
    "shared": 75,
    "shared-plain": 75,
}
CONTENDERS = ("trioclient", "openai-sdk")


# -- the server, in its own process ----------------------------------------------------


async def _serve(config: dict[str, Any]) -> None:
    import attrs
    import trio

    from trioclient.testing import FaultParams, open_server

    config = dict(config)
    wait = config.pop("rate_limited_retry_after", None)
    if wait is not None:
        config["fault_params"] = FaultParams(rate_limited_retry_after=wait)
    async with open_server(**config) as server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # closed by the driver when done
        print(json.dumps(attrs.asdict(server.statistics()), default=str), flush=True)


@contextlib.contextmanager
def _server(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ratecontrol", "--serve", json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=child_env(),
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    info: dict[str, Any] = {}
    try:
        info["base_url"] = json.loads(proc.stdout.readline())["base_url"]
        yield info
    finally:
        out, _ = proc.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.strip()]
        if lines:
            with contextlib.suppress(ValueError):
                info["stats"] = json.loads(lines[-1])


# -- the contenders, each client in its own process ------------------------------------


def _bodies(count: int, stream_share: float) -> list[dict[str, Any]]:
    streaming = round(count * stream_share)
    return [
        {"model": MODEL, "messages": MESSAGES, **({"stream": True} if i < streaming else {})}
        for i in range(count)
    ]


class _Counting429:
    """Wraps trioclient's transport to note when each 429 arrives (wall clock)."""

    def __init__(self) -> None:
        from trioclient._transport import TrioTransport

        self.inner = TrioTransport()
        self.times: list[float] = []

    async def handle_async_request(self, request: Any) -> Any:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            self.times.append(time.time())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _trioclient(args: dict[str, Any]) -> dict[str, Any]:
    import httpx
    import trio

    import trioclient

    class Counting(_Counting429, httpx.AsyncBaseTransport):
        pass

    counting = Counting()

    bodies = _bodies(args["requests"], args["stream_share"])
    ok_times: list[float] = []
    pace: list[tuple[float, float | None]] = []
    failed = 0
    async with trioclient.Client(
        api_key=API_KEY,
        base_url=args["base_url"],
        max_concurrent=args["concurrency"],
        retry=trioclient.RetryPolicy(max_retries=8),
        transport=counting,
        follow_rate_limit_headers=not args.get("no_headers", False),
    ) as client:
        # Everyone starts together: the driver names the wall-clock instant.
        await trio.sleep(max(0.0, args["start_at"] - time.time()))
        t0 = time.time()

        async def sample(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            while True:
                pace.append((time.time() - t0, client.statistics().rate_limit_pace))
                await trio.sleep(0.2)

        async def one(body: dict[str, Any]) -> None:
            nonlocal failed
            try:
                if body.get("stream"):
                    stream = await client.chat.completions.create(**body)
                    async with stream:
                        async for _ in stream:
                            pass
                else:
                    await client.chat.completions.create(**body)
            except trioclient.APIError:
                failed += 1
            else:
                ok_times.append(time.time() - t0)

        async with trio.open_nursery() as nursery:
            await nursery.start(sample)
            if args.get("plain"):
                async with trio.open_nursery() as requests:
                    for body in bodies:
                        requests.start_soon(one, body)
            else:
                async with client.batch(bodies, max_concurrent=args["concurrency"]) as results:
                    async for result in results:
                        if result.ok:
                            ok_times.append(time.time() - t0)
                        else:
                            failed += 1
            nursery.cancel_scope.cancel()
        stats = client.statistics()
    return {
        "t0": t0,
        "ok_times": ok_times,
        "failed": failed,
        "attempts": stats.requests_sent,
        "rate_limited": stats.rate_limited,
        "pauses": stats.rate_limit_pauses,
        "pace": pace,
        "rate_limited_times": [t - t0 for t in counting.times],
    }


async def _openai_sdk(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.contenders._openai_common import (
        RetryCounts,
        make_client,
        one_request,
        one_stream,
        robust_request,
    )

    bodies = _bodies(args["requests"], args["stream_share"])
    await asyncio.sleep(max(0.0, args["start_at"] - time.time()))
    t0 = time.time()
    counts = RetryCounts()
    attempts = 0
    failed = 0
    semaphore = asyncio.Semaphore(args["concurrency"])
    async with make_client(args["base_url"], max_retries=0) as client:

        async def create(body: dict[str, Any]) -> int:
            nonlocal attempts
            attempts += 1
            if body.get("stream"):
                return await one_stream(client, None)
            return await one_request(client)

        async def one(body: dict[str, Any]) -> None:
            nonlocal failed
            async with semaphore:
                try:
                    await robust_request(lambda: create(body), asyncio.sleep, counts)
                except Exception:
                    failed += 1

        await asyncio.gather(*(one(body) for body in bodies))
    return {
        "t0": t0,
        "ok_times": [t for t in counts.ok_times],
        "failed": failed,
        "attempts": attempts,
        "rate_limited": counts.rate_limited,
        "rate_limited_times": counts.rate_limited_times,
        "pauses": None,
        "pace": [],
    }


def _run_client(contender: str, args: dict[str, Any]) -> dict[str, Any]:
    if contender == "trioclient":
        import trio

        return trio.run(_trioclient, args)
    return asyncio.run(_openai_sdk(args))


# -- the driver --------------------------------------------------------------------------


def _measure(name: str, scenario: dict[str, Any], contender: str, requests: int) -> dict[str, Any]:
    with _server(scenario["server"]) as server:
        start_at = time.time() + 3.0  # time for every client process to import and connect
        args = {
            "base_url": server["base_url"],
            "requests": requests,
            "concurrency": scenario["concurrency"],
            "stream_share": scenario["stream_share"],
            "start_at": start_at,
            "plain": scenario.get("plain", False),
            "no_headers": scenario.get("no_headers", False),
        }
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.ratecontrol",
                    "--client",
                    contender,
                    json.dumps(args),
                ],
                stdout=subprocess.PIPE,
                cwd=REPO_ROOT,
                env=child_env(),
                text=True,
            )
            for _ in range(scenario["clients"])
        ]
        clients = []
        for proc in procs:
            out, _ = proc.communicate(timeout=1800)
            if proc.returncode:
                raise RuntimeError(f"{contender} client for {name} exited with {proc.returncode}")
            clients.append(json.loads(out.strip().splitlines()[-1]))
    start = min(c["t0"] for c in clients)
    # Answers and 429s on one time axis (429 times of trioclient come from the server).
    for c in clients:
        shift = c["t0"] - start
        c["ok_times"] = [t + shift for t in c["ok_times"]]
        c["rate_limited_times"] = [t + shift for t in c.get("rate_limited_times", [])]
        c["pace"] = [(t + shift, p) for t, p in c["pace"]]
    total = requests * scenario["clients"]
    ok = sum(len(c["ok_times"]) for c in clients)
    makespan = max(max(c["ok_times"], default=0.0) for c in clients)
    attempts = sum(c["attempts"] for c in clients)
    limited = sum(c["rate_limited"] for c in clients)
    row: dict[str, Any] = {
        "scenario": name,
        "contender": contender,
        "requests": total,
        "succeeded": ok,
        "failed": total - ok,
        "makespan": makespan,
        "attempts": attempts,
        "rate_limited": limited,
        "share_429": limited / attempts if attempts else 0.0,
        "pauses": [c["pauses"] for c in clients],
        "clients": clients,
        "server": server.get("stats", {}),
    }
    rpm = scenario["server"].get("rpm")
    if rpm:
        # Requests lost (the SDK pattern's loop gives up) spent no time: the floor is
        # for the answers delivered.
        floor = max(0.0, (ok - rpm) / (rpm / 60.0))
        row["allowed_fraction"] = floor / makespan if makespan else 0.0
    return row


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    by = {(r["scenario"], r["contender"]): r for r in rows}
    out = []
    noise, sdk = by.get(("noise", "trioclient")), by.get(("noise", "openai-sdk"))
    if noise and sdk:
        ok = noise["failed"] == 0 and noise["makespan"] <= sdk["makespan"]
        out.append(
            f"noise: every request succeeded ({noise['succeeded']}/{noise['requests']}) and "
            f"makespan {noise['makespan']:.1f} s <= SDK pattern's {sdk['makespan']:.1f} s: "
            f"{'PASS' if ok else 'FAIL'}"
        )
    targets = (
        ("bucket", 0.97, 0.02),
        ("bucket-plain", 0.97, 0.02),
        ("shared", 0.9, 0.05),
        ("shared-plain", 0.9, 0.05),
    )
    for name, fraction, share in targets:
        row = by.get((name, "trioclient"))
        if row:
            ok = row["allowed_fraction"] >= fraction and row["share_429"] < share
            out.append(
                f"{name}: {row['allowed_fraction']:.3f} of the allowed rate (target >= "
                f"{fraction}), {row['share_429']:.1%} of attempts 429 (target < {share:.0%}): "
                f"{'PASS' if ok else 'FAIL'}"
            )
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | contender | succeeded | makespan s | attempts | 429s | 429 share "
        "| allowed rate | pauses |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        allowed = f"{r['allowed_fraction']:.3f}" if "allowed_fraction" in r else "-"
        pauses = "-" if r["pauses"][0] is None else "+".join(str(p) for p in r["pauses"])
        lines.append(
            f"| {r['scenario']} | {r['contender']} | {r['succeeded']}/{r['requests']} "
            f"| {r['makespan']:.2f} | {r['attempts']} | {r['rate_limited']} "
            f"| {r['share_429']:.1%} | {allowed} | {pauses} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    names = [n for n in SCENARIOS if any(r["scenario"] == n for r in rows)]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    colours = {"trioclient": "tab:blue", "openai-sdk": "tab:orange"}
    for ax, name in zip(axes[0], names, strict=True):
        pace_ax = None
        for r in (r for r in rows if r["scenario"] == name):
            colour = colours[r["contender"]]
            times = sorted(t for c in r["clients"] for t in c["ok_times"])
            ax.step(
                times,
                range(1, len(times) + 1),
                where="post",
                color=colour,
                label=f"{r['contender']} answers",
            )
            ticks = sorted(t for c in r["clients"] for t in c["rate_limited_times"])
            if ticks:
                ax.plot(
                    ticks,
                    [-4 if r["contender"] == "trioclient" else -9] * len(ticks),
                    "|",
                    color=colour,
                    markersize=6,
                    label=f"{r['contender']} 429s",
                )
            if r["contender"] == "trioclient":
                # The rate controller's pace, when it paces (the header budgets pace
                # the bucket scenarios before any 429, so usually it does not).
                for c in r["clients"]:
                    points = [(t, p) for t, p in c["pace"] if p is not None]
                    if points:
                        pace_ax = pace_ax or ax.twinx()
                        pace_ax.plot(
                            *zip(*points, strict=True), color="tab:green", alpha=0.6, linewidth=1
                        )
                        pace_ax.set_ylabel("trioclient pace (requests/s)", color="tab:green")
        rpm = SCENARIOS[name]["server"].get("rpm")
        if rpm:
            end = max(r["makespan"] for r in rows if r["scenario"] == name)
            ax.plot(
                [0, end],
                [rpm, rpm + rpm / 60.0 * end],
                "k--",
                linewidth=1,
                label="budget: full bucket + refill",
            )
        ax.set_title(name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("answers so far")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratecontrol")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--only", help="comma-separated scenarios: " + ",".join(SCENARIOS)
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import trio

        trio.run(_serve, json.loads(args.serve))
        return 0
    if args.client:
        contender, payload = args.client
        print(json.dumps(_run_client(contender, json.loads(payload))), flush=True)
        return 0
    names = args.only.split(",") if args.only else list(SCENARIOS)
    rows = []
    for name in names:
        scenario = SCENARIOS[name]
        requests = QUICK[name] if args.quick else scenario["requests"]
        for contender in CONTENDERS:
            row = _measure(name, scenario, contender, requests)
            rows.append(row)
            print(
                f"{name:7} {contender:11} {row['succeeded']}/{row['requests']} in "
                f"{row['makespan']:.2f} s, {row['rate_limited']} 429s of {row['attempts']} attempts",
                flush=True,
            )
    print()
    print(_table(rows))
    print()
    for line in _verdicts(rows):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ratecontrol.json").write_text(json.dumps(rows, indent=1))
    note = _plot(rows, args.out / "ratecontrol.png")
    print(note or f"wrote {args.out / 'ratecontrol.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
