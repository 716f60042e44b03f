"""Import cost, each import in a fresh interpreter, median of several runs.

The child times only the import statement (``perf_counter`` around it), so the
interpreter's own start-up is not counted for anyone. Runs are interleaved (A, B, C,
A, B, C, ...) so a slow patch of the machine hits every contender alike, and one
untimed run of each first compiles bytecode.

Every import reads its bytecode from one cache of the run's own
(``PYTHONPYCACHEPREFIX``, a temporary directory), written by that untimed run, even
where the environment says not to write bytecode (``PYTHONDONTWRITEBYTECODE``, set
on some machines): otherwise the installed dependencies load from the bytecode pip
compiled, while a source checkout of trioclient is compiled again on every run, and
the comparison measures the compiler (about 25 ms of trioclient's import here).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._embedded import REPO_ROOT, child_env

__all__ = ["IMPORTS", "import_env", "measure_imports"]

#: Label -> the import statement timed.
IMPORTS: dict[str, str] = {
    "trioclient": "import trioclient",
    "deps (trio, httpx, attrs, trio_util)": "import trio, httpx, attrs, trio_util",
    "trio": "import trio",
    "openai": "import openai",
}

_PROBE = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def import_env(pycache: Path) -> dict[str, str]:
    """The children's environment: bytecode written and read under ``pycache``."""
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _once(stmt: str, cwd: Path, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(stmt=stmt)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{stmt!r} failed: {done.stderr.strip()[-300:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure_imports(runs: int) -> dict[str, Any]:
    """Median, min and all samples (seconds) per import, `runs` fresh processes each."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="trioclient-bench-pycache-") as pycache:
        env = import_env(Path(pycache))
        for label, stmt in IMPORTS.items():
            try:
                _once(stmt, REPO_ROOT, env)  # compile bytecode, warm the page cache
            except RuntimeError as exc:
                errors[label] = str(exc)
        for _ in range(runs):
            for label, stmt in IMPORTS.items():
                if label not in errors:
                    samples[label].append(_once(stmt, REPO_ROOT, env))
    return {
        label: (
            {"status": "ok", "median_s": statistics.median(xs), "min_s": min(xs), "samples": xs}
            if label not in errors
            else {"status": "crashed", "reason": errors[label]}
        )
        for label, xs in samples.items()
    }
