# ruff: noqa: RUF001 - the report is typeset for people (times, dashes, sigma).
"""What workloads share: the `Workload` value, result helpers, rounds and targets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import attrs

from benchmarks._context import Context, Result
from benchmarks._embedded import open_embedded
from benchmarks._maths import ratio
from benchmarks._report import Check, fmt, fmt_ratio

__all__ = [
    "NONSTREAM_CONTENDERS",
    "QUICK_CONTENDERS",
    "Workload",
    "cpu_per",
    "interleaved_rounds",
    "ok",
    "per_s",
    "server_name",
    "speed_targets",
    "static_target",
    "status_text",
    "vs_references",
]


@attrs.frozen
class Workload:
    """One workload of the suite, as the registry (`benchmarks.workloads`) lists it.

    Attributes:
        name: what ``--only`` calls it.
        run: runs its contenders and returns its section of the results document:
            ``title``, ``setup``, ``params``, ``columns``, ``rows``, ``checks`` (a list
            of `Check`), ``raw`` and ``notes``.
        needs_nginx: in a full run it wants nginx's static endpoints (a quick run
            uses the embedded server instead).
        full_only: left out of quick runs (needs tools a quick run does not install,
            or takes minutes).
    """

    name: str
    run: Callable[[Context], Result]
    needs_nginx: bool = False
    full_only: bool = False


#: The contenders of the throughput workloads.
NONSTREAM_CONTENDERS = (
    "trioclient",
    "openai-trio",
    "openai-asyncio",
    "httpx-trio",
    "aiohttp-asyncio",
    "h11-trio",
)
#: The quick run keeps the contenders the targets name, and the floor.
QUICK_CONTENDERS = ("trioclient", "openai-trio", "httpx-trio", "h11-trio")


def ok(res: Result) -> bool:
    return res.get("status") == "ok"


def per_s(res: Result, key: str = "units") -> float | None:
    if not ok(res) or not res.get("wall_s"):
        return None
    return float(res[key]) / float(res["wall_s"])


def cpu_per(res: Result, scale: float, key: str = "units") -> float | None:
    if not ok(res) or not res.get(key):
        return None
    return float(res["cpu_s"]) / float(res[key]) * scale


def status_text(res: Result) -> str:
    return {"unavailable": "skipped", "crashed": "CRASHED"}.get(res.get("status", ""), "")


def interleaved_rounds(
    ctx: Context, workload: str, names: Sequence[str], args: Result, unit: str
) -> tuple[dict[str, Result], list[str]]:
    """Run every contender ``ctx.sizes.throughput_rounds`` times, interleaved; keep the median.

    This VM's speed drifts by up to half again within a minute, so one run per contender
    can catch one in a fast spell and the next in a slow one, and the ratio between
    them carries that drift. Rounds of A, B, C, A, B, C... spread every contender
    over the same spells, and the median run (by rate) of each is the one
    reported, its CPU and latencies included. A contender that crashes in any round
    is reported as crashed; one that is unavailable is not run again.

    Returns:
        The chosen run per contender, and one note listing every round's rate.
    """
    rounds = ctx.sizes.throughput_rounds
    runs: dict[str, list[Result]] = {name: [] for name in names}
    for round_no in range(1, rounds + 1):
        for name in names:
            earlier = runs[name]
            if earlier and not ok(earlier[-1]):
                continue
            label = name if rounds == 1 else f"{name} (round {round_no}/{rounds})"
            earlier.append(ctx.run(workload, name, args, label=label))
    chosen: dict[str, Result] = {}
    listed = []
    for name, results in runs.items():
        if not all(ok(r) for r in results):
            chosen[name] = next(r for r in results if not ok(r))
            continue
        ranked = sorted(results, key=lambda r: per_s(r, unit) or 0.0)
        chosen[name] = ranked[(len(ranked) - 1) // 2] | {
            "round_rates": [per_s(r, unit) for r in results]
        }
        listed.append(f"{name} " + " / ".join(fmt(per_s(r, unit)) for r in results))
    note = []
    if rounds > 1:
        note = [
            f"{rounds} interleaved rounds per contender, the median round reported "
            f"(rates per round: {'; '.join(listed)})."
        ]
    return chosen, note


def vs_references(rates: dict[str, float | None], name: str) -> list[str]:
    """The ``÷ openai-trio`` and ``÷ h11-trio`` cells of `name`'s row."""
    return [
        fmt_ratio(ratio(rates.get(name) or 0, rates.get(reference) or 0))
        for reference in ("openai-trio", "h11-trio")
    ]


def speed_targets(
    workload: str,
    rates: dict[str, float | None],
    unit: str,
    times_openai: float,
    floor: str,
    of_floor: float = 0.5,
) -> list[Check]:
    """The issues' two speed targets: trioclient at least ``times_openai`` times
    openai-trio, and at least ``of_floor`` of the floor."""
    tc = rates.get("trioclient")

    def against(reference: str) -> float | None:
        return ratio(tc or 0, rates.get(reference) or 0) if tc else None

    return [
        Check(
            workload,
            f"trioclient {unit} ≥ {times_openai:g}× openai-trio",
            against("openai-trio"),
            times_openai,
            ">=",
        ),
        Check(
            workload,
            f"trioclient {unit} ≥ {of_floor:g}× {floor}",
            against("h11-trio"),
            of_floor,
            ">=",
        ),
    ]


@contextlib.contextmanager
def static_target(ctx: Context, *, stream: bool) -> Iterator[str]:
    """nginx in full mode; in quick mode an unpaced, zero-latency embedded server."""
    if ctx.nginx is not None:
        yield ctx.nginx.stream_base_url if stream else ctx.nginx.base_url
        return
    config = {"answer_tokens": ctx.sizes.stream_tokens} if stream else {}
    with open_embedded(**config) as server:
        yield server.base_url


def server_name(ctx: Context) -> str:
    return "nginx static body" if ctx.nginx is not None else "embedded server, zero latency"
