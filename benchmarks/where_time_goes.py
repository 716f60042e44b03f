"""Where a non-streaming request's time goes: ``python -m benchmarks.where_time_goes``.

The instruction counts (``--only instructions``) say how much CPU work a request is;
they do not say what each part of it costs in time, and time is what the req/s
tables measure: a part that allocates many small objects costs more time per
instruction than a tight loop. So this measures time directly, by subtraction: the
``nonstream`` workload (nginx's static chat completion, 64 in flight) runs with one
part of trioclient switched off at a time, and the CPU it saves per request is that
part's cost. The parts:

* ``models``: the typed, frozen models (``ChatCompletion`` and what it holds); the
  arm returns the decoded JSON instead.
* ``header-budget``: the reading of the server's ``x-ratelimit-*`` headers on every
  answer (what ``follow_rate_limit_headers=False`` turns off).
* ``rate-controller``: the 429 gate's bookkeeping on every attempt and answer.
* ``liveness``: the ``poll(2)`` that checks an idle keep-alive connection is still
  open before it is reused.

Every arm, and the bare h11 loop beside them, runs in a process of its own, in
``--rounds`` interleaved rounds; the median round is reported. The switched-off
arms are measurements only: each removes a protection or a feature, and none is a
configuration anyone should run (apart from ``follow_rate_limit_headers=False``).
About a minute.

``--profile`` answers the same question for everything else, without switching
anything off: trioclient and the bare h11 loop run the workload under a sampling
profiler (:mod:`benchmarks._sampler`: a sample per millisecond of CPU, or per tick of
the kernel's timer if that is coarser, counted for the
innermost part of the stack a rule claims: h11, json, trio's cancel scopes, its
limiter, the rest of trio, httpx's objects, trioclient's models, its transport, the
rest of its request path), and the table puts each part's CPU per request side by
side. Sampling adds no cost per call, so unlike cProfile it does not inflate code
made of many small calls; the sampled runs' own CPU per request is printed with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from benchmarks._embedded import REPO_ROOT, child_env
from benchmarks._nginx import open_nginx
from benchmarks.contenders._common import MESSAGES, MODEL

__all__ = ["main"]

PARTS = ("models", "header-budget", "rate-controller", "liveness")
REQUESTS = 10_000
CONCURRENCY = 64


def _replace(owner: Any, name: str, value: Any) -> None:
    """Set ``owner.name``, which must exist: a part renamed in trioclient must fail
    the arm, not leave it measuring nothing."""
    if not hasattr(owner, name):
        raise RuntimeError(f"{owner.__name__} has no {name!r}: update where_time_goes")
    setattr(owner, name, value)


def _switch_off(part: str) -> None:
    """Replace one part of trioclient with the least that keeps a request working."""
    if part == "models":
        import trioclient._attempt as attempt
        import trioclient._client as client

        _replace(attempt, "_completion_from_data", lambda: lambda _response, data: data)
        _replace(client, "_usage", lambda _result: None)
    elif part == "header-budget":
        from trioclient._header_budget import HeaderBudget

        _replace(HeaderBudget, "tag", lambda *_args: None)
    elif part == "rate-controller":
        from trioclient._gate import RateLimitGate

        _replace(RateLimitGate, "on_answer", lambda *_args, **_kwargs: None)
        _replace(RateLimitGate, "try_pass", lambda _self: True)
    elif part == "liveness":
        from trioclient._transport import _Connection

        def has_expired(self: _Connection, now: float, keepalive_expiry: float) -> bool:
            return now - self.idle_since > keepalive_expiry

        _replace(_Connection, "has_expired", has_expired)
    else:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")


def _child(base_url: str, parts: list[str], requests: int) -> None:
    """One arm: switch ``parts`` off, run the trioclient contender, print its JSON."""
    from benchmarks.contenders import trioclient_contender
    from benchmarks.contenders.trioclient_contender import WORKLOADS

    for part in parts:
        _switch_off(part)
    if "models" in parts:
        # The answer is the decoded JSON: read it as the h11 loop does, by indexing.
        async def one_request(client: Any) -> int:
            data = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            _ = data["choices"][0]["message"]["content"]
            return 1

        trioclient_contender._one_request = one_request
    args = {"base_url": base_url, "requests": requests, "concurrency": CONCURRENCY}
    print(json.dumps(WORKLOADS["nonstream"](args)))


PROFILED = ("trioclient", "h11-trio")


def _profile_child(contender: str, base_url: str, requests: int) -> None:
    """Run one contender's ``nonstream`` workload under the sampler; print its JSON."""
    import importlib

    from benchmarks._sampler import sampling
    from benchmarks.contenders import CONTENDER_MODULES

    module = importlib.import_module(f"benchmarks.contenders.{CONTENDER_MODULES[contender]}")
    args = {"base_url": base_url, "requests": requests, "concurrency": CONCURRENCY}
    with sampling() as samples:
        result = module.WORKLOADS["nonstream"](args)
    print(json.dumps(result | {"samples": samples.total, "shares": samples.shares()}))


def _profile(rounds: int, requests: int) -> int:
    """Where each request's CPU goes, by part, trioclient beside the bare h11 loop.

    Each contender runs ``rounds`` times under the sampler (interleaved), and the
    shares of all its rounds' samples are applied to its median CPU per request."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PROFILED}
    with open_nginx() as nginx:
        for round_number in range(rounds):
            for name in PROFILED:
                child = [
                    "-m", "benchmarks.where_time_goes", "--requests", str(requests),
                    "--profile-child", name, nginx.base_url,
                ]  # fmt: skip
                runs[name].append(_run(child))
            print(f"round {round_number + 1}/{rounds} done", flush=True)
    per_part: dict[str, dict[str, float]] = {}
    cpu: dict[str, float] = {}
    samples: dict[str, int] = {}
    for name, results in runs.items():
        cpu[name] = statistics.median(r["cpu_s"] / r["units"] * 1e6 for r in results)
        counts: dict[str, float] = {}
        for r in results:
            for part, share in r["shares"].items():
                counts[part] = counts.get(part, 0.0) + share * r["samples"]
        samples[name] = sum(r["samples"] for r in results)
        for part, count in counts.items():
            per_part.setdefault(part, {})[name] = count / samples[name] * cpu[name]
    cpu_s = sum(r["cpu_s"] for results in runs.values() for r in results)
    every = cpu_s / max(1, sum(samples.values())) * 1e3
    print(
        f"\nCPU per request by part ({samples['trioclient']:,} and {samples['h11-trio']:,} "
        f"samples, one per {every:.1f} ms of CPU), {requests:,} requests, {CONCURRENCY} in "
        f"flight, nginx static answer, {rounds} rounds each\n"
    )
    print("| part | trioclient µs | bare h11 loop µs | difference |")
    print("| --- | ---: | ---: | ---: |")
    for part, by_name in sorted(per_part.items(), key=lambda kv: -kv[1].get("trioclient", 0)):
        ours, floor = by_name.get("trioclient", 0.0), by_name.get("h11-trio", 0.0)
        print(f"| {part} | {ours:.0f} | {floor:.0f} | {ours - floor:+.0f} |")
    ours, floor = cpu["trioclient"], cpu["h11-trio"]
    print(f"| **all** (median CPU per request) | {ours:.0f} | {floor:.0f} | {ours - floor:+.0f} |")
    print(f"\nfloor ÷ trioclient by CPU (sampled runs): {floor / ours:.3f}")
    return 0


def _run(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result.get("failures"):
        raise RuntimeError(f"{argv}: {result['failures']} requests failed")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.where_time_goes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per arm")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample where the CPU goes, by part, beside the bare h11 loop",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.rounds < 1 or options.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    if options.child:
        base_url, parts = options.child
        _child(base_url, [p for p in parts.split(",") if p], options.requests)
        return 0
    if options.profile_child:
        contender, base_url = options.profile_child
        _profile_child(contender, base_url, options.requests)
        return 0
    if options.profile:
        return _profile(options.rounds, options.requests)
    requests = options.requests
    arms = ["", *PARTS, ",".join(PARTS)]
    cpu: dict[str, list[float]] = {arm: [] for arm in [*arms, "h11-trio"]}
    with open_nginx() as nginx:
        floor_args = json.dumps(
            {"base_url": nginx.base_url, "requests": requests, "concurrency": CONCURRENCY}
        )
        for round_number in range(options.rounds):
            for arm in arms:
                child = [
                    "-m", "benchmarks.where_time_goes", "--requests", str(requests),
                    "--child", nginx.base_url, arm,
                ]  # fmt: skip
                result = _run(child)
                cpu[arm].append(result["cpu_s"] / result["units"] * 1e6)
            floor = _run(["-m", "benchmarks.run_contender", "nonstream", "h11-trio", floor_args])
            cpu["h11-trio"].append(floor["cpu_s"] / floor["units"] * 1e6)
            print(f"round {round_number + 1}/{options.rounds} done", flush=True)
    median = {arm: statistics.median(values) for arm, values in cpu.items()}
    whole = median[""]
    print(
        f"\nCPU per request, {requests:,} requests, {CONCURRENCY} in flight, nginx static "
        f"answer; median of {options.rounds} interleaved rounds (every round listed)\n"
    )
    print("| trioclient with | CPU µs per request | saved | share of trioclient's | rounds |")
    print("| --- | ---: | ---: | ---: | --- |")
    for arm in arms:
        label = {"": "everything (as shipped)", ",".join(PARTS): "all four off"}.get(
            arm, f"`{arm}` off"
        )
        saved = whole - median[arm]
        rounds = " / ".join(f"{v:.0f}" for v in cpu[arm])
        print(
            f"| {label} | {median[arm]:.0f} | {saved:.0f} | {saved / whole:.1%} | {rounds} |"
        )
    floor_cpu = median["h11-trio"]
    rounds = " / ".join(f"{v:.0f}" for v in cpu["h11-trio"])
    print(f"| (the bare h11 loop) | {floor_cpu:.0f} | | | {rounds} |")
    print(
        f"\nfloor ÷ trioclient by CPU: {floor_cpu / whole:.3f} as shipped, "
        f"{floor_cpu / median[','.join(PARTS)]:.3f} with all four off"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
