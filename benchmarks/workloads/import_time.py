# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""7. Import time: ``import trioclient`` against its dependencies and ``import openai``."""

from __future__ import annotations

import attrs

from benchmarks._context import Context, Result
from benchmarks._import_time import measure_imports
from benchmarks._maths import ratio
from benchmarks._report import Check, fmt, fmt_ratio
from benchmarks.workloads._common import Workload

__all__ = ["WORKLOAD"]


@attrs.frozen(kw_only=True)
class Sizes:
    """How big the import workload is, in a full and a quick run."""

    runs: int


FULL = Sizes(runs=7)
QUICK = Sizes(runs=3)


def run(ctx: Context) -> Result:
    runs = ctx.pick(FULL, QUICK).runs
    print(f"  {'imports, ' + str(runs) + ' fresh processes each':<48}", end="", flush=True)
    raw = measure_imports(runs)
    print(" done")
    for label, res in raw.items():
        if res.get("status") != "ok":
            ctx.crashed.append(f"import/{label}: {res.get('reason')}")
    med: dict[str, float | None] = {label: res.get("median_s") for label, res in raw.items()}
    deps_label = "deps (trio, httpx, attrs, trio_util)"
    rows = [
        [
            label,
            fmt(res["median_s"] * 1e3) if res.get("status") == "ok" else "CRASHED",
            fmt(res["min_s"] * 1e3) if res.get("status") == "ok" else "–",
            fmt_ratio(ratio(med[label] or 0, med.get(deps_label) or 0)),
            fmt_ratio(ratio(med[label] or 0, med.get("openai") or 0)),
        ]
        for label, res in raw.items()
    ]
    tc = med.get("trioclient")
    checks = [
        Check(
            "import",
            "import trioclient ≤ 1.1× its dependencies",
            ratio(tc, med.get(deps_label) or 0) if tc else None,
            1.1,
            "<=",
        ),
        Check(
            "import",
            "import trioclient ≤ 0.5× import openai",
            ratio(tc, med.get("openai") or 0) if tc else None,
            0.5,
            "<=",
        ),
    ]
    return {
        "title": "7. Import time",
        "setup": f"median of {runs} fresh interpreters each, interleaved; only the import statement is timed",
        "params": {"runs": runs},
        "columns": ["import", "median ms", "min ms", "÷ deps", "÷ openai"],
        "rows": rows,
        "checks": checks,
        "raw": raw,
        "notes": [],
    }


WORKLOAD = Workload("import", run)
