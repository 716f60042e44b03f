# ruff: noqa: RUF002 - docstrings are typeset for people (division sign).
"""Instructions per request and per chunk, counted by valgrind's callgrind.

Wall-clock rates on a shared VM swing by 1.5-2× between back-to-back runs of the
same contender, so a ratio of two rates measured minutes apart can move by that
much too. The number of instructions a process executes for the same work does not:
callgrind simulates the CPU and counts every instruction the client process retires
(Python, C extensions, libc, the kernel boundary excluded), and repeated runs agree
to a fraction of a percent.

A single count includes the interpreter's start-up and every import, which would
swamp the per-request cost. So each contender runs the same job at two sizes
against the same server, and the cost of one unit is the difference::

    per unit = (instructions(large) - instructions(small)) / (units(large) - units(small))

Start-up, imports, the warm-up request and opening the connections (both runs use
the same concurrency, no larger than the small job) are the same in both runs and
cancel out; what is left is the marginal cost of one more request or chunk.

What it does not measure: time spent waiting (on the server, the network, the
scheduler), the server's work, and anything a count of instructions cannot see, such
as cache misses, branch mispredictions or memory allocation that costs time but few
instructions. It is CPU work in the client process, nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from benchmarks._procs import ensure_tool

__all__ = [
    "CallgrindRun",
    "instructions_per_unit",
    "parse_collected",
    "run_under_callgrind",
]

#: valgrind prints ``==PID== Collected : 123456789`` (the total of the Ir event) on
#: stderr when the program exits.
_COLLECTED = re.compile(r"^==\d+==\s+Collected\s*:\s*(\d+)\s*$", re.MULTILINE)


def parse_collected(stderr: str) -> int:
    """The instruction count from callgrind's ``Collected :`` line in `stderr`.

    Raises:
        ValueError: if there is no such line, or more than one (two processes were
            traced, so the count would not be the contender's alone).
    """
    found = _COLLECTED.findall(stderr)
    if not found:
        raise ValueError(f"no 'Collected :' line in callgrind's output: {stderr[-500:]!r}")
    if len(found) > 1:
        raise ValueError(f"{len(found)} 'Collected :' lines: more than one process was traced")
    return int(found[0])


def instructions_per_unit(
    *, small_instructions: int, large_instructions: int, small_units: int, large_units: int
) -> float:
    """The marginal instructions per unit between a small and a large run of one job.

    Raises:
        ValueError: if the large run did not do more units than the small one, or
            took fewer instructions (a count that went backwards means the two runs
            did different work, not that extra units are free).
    """
    if large_units <= small_units:
        raise ValueError(
            f"the large run must do more units than the small one ({large_units} <= {small_units})"
        )
    if large_instructions < small_instructions:
        raise ValueError(
            f"the large run took fewer instructions ({large_instructions:,}) "
            f"than the small one ({small_instructions:,})"
        )
    return (large_instructions - small_instructions) / (large_units - small_units)


@attrs.frozen
class CallgrindRun:
    """One contender process run under callgrind.

    Attributes:
        instructions: the ``Collected`` count (None if the run crashed).
        result: the contender's JSON result line (``status`` says whether it ran).
    """

    instructions: int | None
    result: dict[str, Any]


def run_under_callgrind(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], timeout: float
) -> CallgrindRun:
    """Run `argv` (a ``run_contender`` command) under callgrind; never raises for it.

    The profile file goes to /dev/null: only the total is wanted. A crash, a timeout
    or a missing count comes back as a result with ``status`` ``crashed``.

    Raises:
        RuntimeError: if valgrind is not on PATH and cannot be installed.
    """
    valgrind = ensure_tool("valgrind", "valgrind")
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CallgrindRun(None, {"status": "crashed", "reason": f"timed out after {timeout:g} s"})
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or not result:
        tail = done.stderr.strip()[-1500:] or f"exit code {done.returncode}"
        return CallgrindRun(None, result or {"status": "crashed", "reason": tail})
    try:
        return CallgrindRun(parse_collected(done.stderr), result)
    except ValueError as exc:
        return CallgrindRun(None, {"status": "crashed", "reason": str(exc)})
