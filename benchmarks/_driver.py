"""The benchmark driver: plan the run, start servers, run the workloads, write the report.

The workloads themselves live in ``benchmarks/workloads/``, one module each, listed
by the registry there. Each takes the run's `Context`, runs its contenders (each in
its own process through ``benchmarks.run_contender``), and returns a section of the
results document: its raw results, a table, and the checks against the targets in
the issues. The driver itself never imports a client library.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import time
from pathlib import Path
from typing import Any

from benchmarks._context import FULL, QUICK, Context
from benchmarks._embedded import REPO_ROOT
from benchmarks._machine import describe_machine, format_machine
from benchmarks._nginx import open_nginx
from benchmarks._plots import make_plots
from benchmarks._report import Check, render_markdown
from benchmarks.workloads import WORKLOADS

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; ``--only`` is checked against the workload names."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="embedded server only, small sizes, no verdicts (< 1 min)",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated workloads from: {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: benchmarks/results, or benchmarks/results/quick with --quick)",
    )
    args = parser.parse_args(argv)
    selected = [w.strip() for w in args.only.split(",") if w.strip()] or [
        name for name, w in WORKLOADS.items() if not (args.quick and w.full_only)
    ]
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    full_only = [w for w in selected if args.quick and WORKLOADS[w].full_only]
    if full_only:
        parser.error(
            f"{', '.join(full_only)} runs in full mode only (nginx and valgrind), not with --quick"
        )
    args.selected = selected
    if args.out is None:
        # A quick run must never overwrite the full results the README links to.
        results = REPO_ROOT / "benchmarks" / "results"
        args.out = results / "quick" if args.quick else results
    return args


def _jsonable(value: Any) -> Any:
    if isinstance(value, Check):
        return value.to_json()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def main(argv: list[str]) -> int:
    """Run the suite; exit status 1 only if something crashed (FAILs are reported, not fatal)."""
    args = parse_args(argv)
    quick: bool = args.quick
    sizes = QUICK if quick else FULL
    started = time.perf_counter()
    machine = describe_machine()
    machine_text = format_machine(machine)
    command = (
        "python -m benchmarks"
        + (" --quick" if quick else "")
        + (f" --only {args.only}" if args.only else "")
    )
    print(
        f"trioclient benchmarks ({'quick' if quick else 'full'} mode)\n{machine_text}\n", flush=True
    )
    ctx = Context(quick=quick, sizes=sizes)
    doc: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "command": command,
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "machine_text": machine_text,
        "workloads": {},
    }
    with contextlib.ExitStack() as stack:
        if not quick and any(WORKLOADS[w].needs_nginx for w in args.selected):
            try:
                ctx.nginx = stack.enter_context(open_nginx())
                print(f"nginx listening on 127.0.0.1:{ctx.nginx.port}\n", flush=True)
            except RuntimeError as exc:
                print(
                    f"nginx unavailable, falling back to the embedded server: {exc}\n", flush=True
                )
                ctx.crashed.append(f"nginx: {exc}")
        for key in args.selected:
            print(f"[{key}]", flush=True)
            t0 = time.perf_counter()
            try:
                section = WORKLOADS[key].run(ctx)
            except Exception as exc:  # one broken workload must not lose the others
                ctx.crashed.append(f"{key}: {type(exc).__name__}: {exc}")
                print(f"  workload crashed: {type(exc).__name__}: {exc}", flush=True)
                continue
            section["checks"] = [c.to_json() for c in section["checks"]]
            section["elapsed_s"] = time.perf_counter() - t0
            print(f"  ({section['elapsed_s']:.1f} s)", flush=True)
            doc["workloads"][key] = section
    doc["duration_s"] = time.perf_counter() - started
    doc["crashed"] = ctx.crashed
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    plots, note = make_plots(doc, out)
    doc["plots"], doc["plot_note"] = plots, note
    report = render_markdown(doc)
    (out / "latest.json").write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
    (out / "latest.md").write_text(report)
    print("\n" + report)
    print(
        f"wrote {out / 'latest.json'}, {out / 'latest.md'}"
        + (f", {', '.join(plots)}" if plots else "")
    )
    if ctx.crashed:
        print("\nCRASHED:\n" + "\n".join(f"  {c}" for c in ctx.crashed))
        return 1
    return 0
