"""One benchmark run's shared state, and how a contender is run in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, TypeVar

import attrs

from benchmarks._bodies import STREAM_CHUNKS
from benchmarks._embedded import REPO_ROOT, child_env
from benchmarks._nginx import Nginx
from benchmarks._report import fmt

__all__ = ["EXIT_UNAVAILABLE", "FULL", "QUICK", "Context", "Result", "RunSizes", "indent"]

Result = dict[str, Any]
#: ``run_contender``'s exit status when a contender cannot run here (not installed).
EXIT_UNAVAILABLE = 3

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class RunSizes:
    """Sizes every workload shares; each workload keeps its own in its module."""

    #: Tokens per answer when the embedded server stands in for nginx's SSE file.
    stream_tokens: int
    #: Interleaved rounds of the two throughput workloads; each contender's median
    #: round is reported (see `benchmarks.workloads._common.interleaved_rounds`).
    throughput_rounds: int
    #: How long one contender process may take.
    timeout_s: float


FULL = RunSizes(stream_tokens=STREAM_CHUNKS, throughput_rounds=3, timeout_s=600.0)
QUICK = RunSizes(stream_tokens=200, throughput_rounds=1, timeout_s=120.0)


@attrs.define
class Context:
    """One run's shared state: mode, sizes, servers, and what crashed."""

    quick: bool
    sizes: RunSizes
    nginx: Nginx | None = None
    crashed: list[str] = attrs.field(factory=list)

    def pick(self, full: T, quick: T) -> T:
        """`quick` in a quick run, else `full` (a workload's own sizes)."""
        return quick if self.quick else full

    def run(self, workload: str, contender: str, args: Result, label: str | None = None) -> Result:
        """Run one contender in its own process; never raises for the contender's sake."""
        label = label or contender
        print(f"  {label:<48}", end="", flush=True)
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.run_contender",
            workload,
            contender,
            json.dumps(args),
        ]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
                env=child_env(),
                timeout=self.sizes.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.crashed.append(f"{workload}/{label}: timed out")
            print(f" TIMED OUT after {self.sizes.timeout_s:g} s")
            return {"status": "crashed", "reason": "timed out"}
        elapsed = time.perf_counter() - t0
        lines = done.stdout.strip().splitlines()
        if done.returncode == EXIT_UNAVAILABLE and lines:
            result: Result = json.loads(lines[-1])
            print(f" skipped: {result.get('reason')}")
            return result
        if done.returncode != 0 or not lines:
            reason = done.stderr.strip()[-1500:] or f"exit code {done.returncode}"
            self.crashed.append(f"{workload}/{label}: {reason.splitlines()[-1] if reason else ''}")
            print(f" CRASHED ({elapsed:.1f} s)\n{indent(reason)}")
            return {"status": "crashed", "reason": reason}
        result = json.loads(lines[-1])
        print(f" done in {elapsed:5.1f} s{_one_liner(result)}")
        return result


def indent(text: str) -> str:
    """The last lines of a crash report, indented under the contender's line."""
    return "\n".join("      " + line for line in text.splitlines()[-12:])


def _one_liner(res: Result) -> str:
    units, wall = res.get("units") or 0, res.get("wall_s") or 0
    text = f": {fmt(units / wall if wall else None)} units/s" if units else ""
    if res.get("failures"):
        text += f", {res['failures']} failed ({res.get('first_error')})"
    return text
