# ruff: noqa: RUF001, RUF002 - the report is typeset for people (times, dashes, sigma).
"""Turning measurements into what a person reads: Markdown tables and target checks.

Every workload's section is a table of its contenders (figure, CPU cost, failures,
ratio to the named reference contender of the same run); the targets from the issues
are collected in one table at the top with PASS/FAIL (full mode only: a quick run
is too small for verdicts and says so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs

__all__ = ["Check", "fmt", "fmt_ratio", "markdown_table", "render_markdown"]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table: thousands separators, `digits` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - magnitude, 0)
    return f"{value:,.{decimals}f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio as ``2.41×``; a dash when there is nothing to compare with."""
    return "–" if value is None else f"{fmt(value)}×"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; numeric-looking columns right-aligned.

    Raises:
        ValueError: if a row has a different number of cells than `columns`.
    """
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells, the table has {len(columns)} columns")

    def numeric(index: int) -> bool:
        cells = [row[index] for row in rows if row[index] not in ("", "–")]
        return bool(cells) and all(
            c.lstrip("-").replace(",", "").replace(".", "").rstrip("×%").isdigit() for c in cells
        )

    align = ["---:" if numeric(i) else "---" for i in range(len(columns))]

    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(escape(c) for c in columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@attrs.frozen
class Check:
    """One target from the issues, and whether this run met it.

    Attributes:
        workload: the workload's key.
        target: the target in words, e.g. ``trioclient req/s ≥ 5× openai-trio``.
        measured: the measured ratio (None when a contender it needs did not run).
        threshold: the bound from the issue.
        op: ``">="`` or ``"<="``.
    """

    workload: str
    target: str
    measured: float | None
    threshold: float
    op: Literal[">=", "<=", "<"]

    @property
    def passed(self) -> bool | None:
        """True/False; None when it could not be measured."""
        if self.measured is None or not math.isfinite(self.measured):
            return None
        if self.op == ">=":
            return self.measured >= self.threshold
        if self.op == "<":
            return self.measured < self.threshold
        return self.measured <= self.threshold

    def to_json(self) -> dict[str, Any]:
        """The check as stored in ``latest.json``."""
        return attrs.asdict(self) | {"passed": self.passed}


def _verdict(passed: bool | None, quick: bool) -> str:
    if quick:
        return "(quick: no verdict)"
    return {True: "PASS", False: "**FAIL**", None: "not measured"}[passed]


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole report (``latest.md``) from the results document."""
    quick = doc["mode"] == "quick"
    out = [
        f"# trioclient benchmarks: {doc['mode']} run, {doc['started']}",
        "",
        f"Command: `{doc['command']}` ({fmt(doc.get('duration_s'))} s). "
        "Every ratio compares contenders measured in this same run.",
        "",
        "Machine: " + doc["machine_text"].replace("\n", "; "),
        "",
    ]
    checks = [c for w in doc["workloads"].values() for c in w.get("checks", [])]
    if checks:
        out += ["## Targets", ""]
        rows = [
            [c["workload"], c["target"], fmt(c["measured"]), _verdict(c["passed"], quick)]
            for c in checks
        ]
        out += [markdown_table(["workload", "target", "measured", "result"], rows), ""]
    for key, w in doc["workloads"].items():
        out += [f"## {w['title']}", "", f"`--only {key}` · {w['setup']}", ""]
        if w.get("rows"):
            out += [markdown_table(w["columns"], w["rows"]), ""]
        for note in w.get("notes", []):
            out += [f"- {note}"]
        if w.get("notes"):
            out.append("")
    if doc.get("plots"):
        out += ["## Plots", ""]
        out += [f"![{name}]({name})" for name in doc["plots"]]
        out.append("")
    if doc.get("plot_note"):
        out += [doc["plot_note"], ""]
    return "\n".join(out)
