"""Many processes, one key (issue 17): ``python -m benchmarks.shared_budget``.

Four worker processes drive one embedded server that allows 1,200 requests a minute
per key (``trioclient serve --rpm 1200``), in three arms of ``--seconds`` each:

1. **shared**: every worker's client has ``budget=RedisBudget(..., rpm=1200)`` on one
   Redis key. Target: together >= 0.95 of the allowed rate, < 2 % of attempts
   answered 429.
2. **split**: each worker paces alone at a quarter (``rpm=300``, the batch engine's
   local budget): the same total, known in advance.
3. **alone**: each worker paces alone at the key's whole budget (``rpm=1200``), as
   workers do that do not know about each other: the overshoot and the 429 storms.

Before each arm the server's bucket (full at start, as real ones are) is drained, and
refills for one second: the 20 requests every arm's budgets let go at once. The
allowed number of requests in an arm is then ``20 + 20 * seconds``.

Then the cost of Redis, in one process against a server without limits: client CPU
per request without a budget, and per budget cycle (a reservation, the answer's
headers read, then the usage correction the next reservation carries) with round
trips per cycle. Target: under
10 % of trioclient's own CPU per request.

This is a measurement, not a test: it prints the figures and PASS/FAIL and exits 0
unless something crashed. It needs redis-server (Debian: apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._procs import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parent.parent
WORKERS = 4
RPM = 1200
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}

# -- the workers (run in their own processes) ----------------------------------------


async def _paced_worker(config: dict[str, Any]) -> dict[str, Any]:
    import trio

    import trioclient

    budget = None
    if config["redis"]:
        budget = trioclient.RedisBudget(config["redis"], key=config["key"], rpm=RPM)
    results = {"ok": 0, "failed": 0}

    def bodies() -> Any:
        while True:
            yield BODY

    async with trioclient.Client(
        api_key="sk-bench", base_url=config["base_url"], budget=budget, max_concurrent=16
    ) as client:
        if budget is not None:
            await budget.ping()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await trio.to_thread.run_sync(sys.stdin.readline)
        cpu = time.process_time()
        with trio.move_on_after(config["seconds"]):
            async with client.batch(bodies(), rpm=config["rpm"]) as stream:
                async for result in stream:
                    results["ok" if result.ok else "failed"] += 1
        cpu = time.process_time() - cpu
        stats = client.statistics()
    out = {
        **results,
        "attempts": stats.requests_sent,
        "rate_limited": stats.rate_limited,
        "cpu": cpu,
    }
    if budget is not None:
        out["round_trips"] = budget.statistics().round_trips
        out["reservations"] = budget.statistics().reservations
    return out


async def _cost_worker(config: dict[str, Any]) -> dict[str, Any]:
    """CPU per request without a budget, and per budget cycle, interleaved rounds."""
    import httpx
    import trio

    import trioclient
    from trioclient._models import Usage

    n = config["requests"]
    usage = Usage(prompt_tokens=5, completion_tokens=16, total_tokens=21)
    # What every answer brings the pacer: the headers of a rate-limited API's answer,
    # all of them read. They say more is left than the (huge) budget's burst, so there
    # is nothing to pull down, the usual case; a pull-down rides on the next call.
    request = httpx.Request("POST", config["base_url"] + "/chat/completions")
    response = httpx.Response(
        200,
        request=request,
        headers={
            "content-type": "application/json",
            "content-length": "300",
            "x-request-id": "req-1",
            "x-ratelimit-limit-requests": "1000000000",
            "x-ratelimit-remaining-requests": "900000000",
            "x-ratelimit-reset-requests": "5s",
            "x-ratelimit-limit-tokens": "1000000000000",
            "x-ratelimit-remaining-tokens": "900000000000",
            "x-ratelimit-reset-tokens": "300ms",
        },
    )
    plain: list[float] = []
    cycles: list[float] = []
    trips: list[float] = []
    for round_ in range(config["rounds"]):
        async with trioclient.Client(
            api_key="sk-bench", base_url=config["base_url"], max_concurrent=16
        ) as client:
            await client.run_batch([BODY] * 50)  # warm: connections open
            cpu = time.process_time()
            await client.run_batch([BODY] * n)
            plain.append((time.process_time() - cpu) / n * 1e6)
        # Generous budgets: nobody waits, so this is the cost of asking.
        budget = trioclient.RedisBudget(config["redis"], key=f"cost-{round_}", rpm=1e9, tpm=1e12)
        for _ in range(50):
            await budget.acquire(21)
        before = budget.statistics().round_trips

        async def cycles_task(count: int, budget: trioclient.RedisBudget = budget) -> None:
            for _ in range(count):
                pacer = budget.pacer(BODY)
                await pacer.before_attempt(request)
                pacer.after_response(response)
                pacer.after_usage(usage)  # type: ignore[attr-defined]

        cpu = time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(cycles_task, n // 16)
        done = 16 * (n // 16)
        cycles.append((time.process_time() - cpu) / done * 1e6)
        trips.append((budget.statistics().round_trips - before) / done)
        await budget.aclose()
    return {"plain_us": plain, "budget_us": cycles, "round_trips": trips}


def _worker_main(mode: str, config_text: str) -> None:
    import trio

    config = json.loads(config_text)
    fn = _paced_worker if mode == "paced" else _cost_worker
    print(json.dumps(trio.run(fn, config)), flush=True)


# -- the driver ------------------------------------------------------------------------


def _start_server(rpm: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "trioclient", "serve", "--port", str(port), "--latency", "0.05"]
    if rpm is not None:
        args += ["--rpm", str(rpm)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, timeout=30)
    return proc, f"http://127.0.0.1:{port}/v1"


def _start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port, proc, timeout=30)
    return proc, f"redis://127.0.0.1:{port}/0", directory


def _drain(base_url: str) -> None:
    """Empty the server's bucket: send until 429s come back steadily."""
    code = f"""
import trio, trioclient
async def main():
    async with trioclient.Client(api_key="sk-bench", base_url={base_url!r},
                                 retry=trioclient.RetryPolicy(max_retries=0),
                                 max_concurrent=32) as client:
        refused = 0
        async def one():
            nonlocal refused
            while refused < 40:
                try:
                    await client.chat.completions.create(**{BODY!r})
                except trioclient.RateLimitError:
                    refused += 1
        async with trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(one)
trio.run(main)
"""
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def _spawn(mode: str, config: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.shared_budget", "--worker", mode, json.dumps(config)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _run_arm(name: str, redis: str | None, rpm: int | None, seconds: float) -> dict[str, Any]:
    server, base_url = _start_server(RPM)
    try:
        config = {"base_url": base_url, "redis": redis, "key": f"arm-{name}", "rpm": rpm,
                  "seconds": seconds}  # fmt: skip
        workers = [_spawn("paced", config) for _ in range(WORKERS)]
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {name} worker did not start")
        _drain(base_url)
        time.sleep(1.0)  # the bucket refills by 20: every arm's opening burst
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outs = []
        for worker in workers:
            out, _ = worker.communicate(timeout=seconds + 60)
            if worker.returncode != 0:
                raise RuntimeError(f"a {name} worker failed")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop_process(server)
    ok = sum(o["ok"] for o in outs)
    attempts = sum(o["attempts"] for o in outs)
    limited = sum(o["rate_limited"] for o in outs)
    allowed = RPM / 60 * (1 + seconds)
    arm = {
        "arm": name,
        "succeeded": ok,
        "allowed": allowed,
        "of_allowed": ok / allowed,
        "attempts": attempts,
        "rate_limited": limited,
        "rate_limited_share": limited / attempts if attempts else 0.0,
        "cpu_per_request_us": sum(o["cpu"] for o in outs) / max(1, attempts) * 1e6,
    }
    if redis:
        trips = sum(o["round_trips"] for o in outs)
        arm["round_trips_per_attempt"] = trips / max(1, attempts)
        arm["round_trips_per_reservation"] = trips / max(1, sum(o["reservations"] for o in outs))
    return arm


def _cost(redis: str, requests: int, rounds: int) -> dict[str, Any]:
    server, base_url = _start_server(None)
    try:
        worker = _spawn("cost", {"base_url": base_url, "redis": redis, "requests": requests,
                                 "rounds": rounds})  # fmt: skip
        out, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            raise RuntimeError("the cost worker failed")
    finally:
        stop_process(server)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_budget")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each arm")
    parser.add_argument("--cost-requests", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main(*args.worker)
        return 0
    redis_proc, redis_url, directory = _start_redis()
    started = time.monotonic()
    try:
        arms = [
            _run_arm("shared", redis_url, None, args.seconds),
            _run_arm("split", None, RPM // WORKERS, args.seconds),
            _run_arm("alone", None, RPM, args.seconds),
        ]
        cost = _cost(redis_url, args.cost_requests, args.rounds)
    finally:
        stop_process(redis_proc)
        shutil.rmtree(directory, ignore_errors=True)
    plain = statistics.median(cost["plain_us"])
    budget = statistics.median(cost["budget_us"])
    trips = statistics.median(cost["round_trips"])
    print(f"{WORKERS} processes, one key of {RPM} requests/minute, {args.seconds:g} s per arm")
    print(f"{'arm':8} {'ok':>6} {'of allowed':>11} {'attempts':>9} {'429s':>6} {'429 share':>10}")
    for arm in arms:
        print(
            f"{arm['arm']:8} {arm['succeeded']:6d} {arm['of_allowed']:11.3f} "
            f"{arm['attempts']:9d} {arm['rate_limited']:6d} {arm['rate_limited_share']:10.2%}"
        )
    shared = arms[0]
    print(
        f"shared: {shared['round_trips_per_reservation']:.2f} Redis round trips per "
        f"reservation ({shared['round_trips_per_attempt']:.2f} per attempt sent: the "
        "reservations still queued when an arm ends are given back, not sent)"
    )
    for arm in arms:
        print(f"{arm['arm']}: {arm['cpu_per_request_us']:.0f} us client CPU per attempt")
    print(
        f"cost: trioclient {plain:.0f} us CPU per request; a budget cycle {budget:.1f} us "
        f"({budget / plain:.1%}), {trips:.2f} round trips (medians of {args.rounds} rounds: "
        f"{', '.join(f'{v:.0f}' for v in cost['plain_us'])} / "
        f"{', '.join(f'{v:.1f}' for v in cost['budget_us'])})"
    )
    targets = [
        ("shared >= 0.95 of the allowed rate", shared["of_allowed"] >= 0.95),
        ("shared < 2 % of attempts answered 429", shared["rate_limited_share"] < 0.02),
        ("Redis CPU per request < 10 % of trioclient's", budget < 0.10 * plain),
    ]
    for label, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"arms": arms, "cost": cost, "seconds": args.seconds}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
