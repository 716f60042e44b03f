"""The registry of workloads: which exist, in the order a full run takes them.

Each module here defines one workload: its own sizes (`FULL` and `QUICK`), a
``run(ctx) -> section`` function, and ``WORKLOAD = Workload(name, run, ...)``. To add
one, write ``benchmarks/workloads/<module>.py`` and add its module name to
`REGISTRY`; ``python -m benchmarks --only <name>`` then runs it (see
``benchmarks/README.md``).
"""

from __future__ import annotations

import importlib

from benchmarks.workloads._common import Workload

__all__ = ["REGISTRY", "WORKLOADS", "Workload"]

#: Module names under ``benchmarks/workloads/``, in run order.
REGISTRY = (
    "nonstream",
    "stream",
    "paced",
    "instructions",
    "schedule",
    "ratelimit",
    "memory",
    "scale",
    "import_time",
)


def _load(modules: tuple[str, ...]) -> dict[str, Workload]:
    workloads: dict[str, Workload] = {}
    for module_name in modules:
        module = importlib.import_module(f"{__name__}.{module_name}")
        workload = getattr(module, "WORKLOAD", None)
        if not isinstance(workload, Workload):
            raise TypeError(
                f"benchmarks/workloads/{module_name}.py must define WORKLOAD = Workload(...)"
            )
        if workload.name in workloads:
            raise ValueError(f"two workloads are named {workload.name!r}")
        workloads[workload.name] = workload
    return workloads


#: Every workload by the name ``--only`` uses, in run order.
WORKLOADS = _load(REGISTRY)
