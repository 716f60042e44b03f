"""The contenders: one module per client library, each run in its own process.

Every contender module exposes ``WORKLOADS``, a mapping from a workload name to a
function that takes the workload's arguments (a JSON object) and returns one JSON
object of results. ``benchmarks.run_contender`` is the process entry point that calls
it; the driver never imports a contender itself, so no library's import cost, threads
or allocator state leaks into another's figures.

A contender that cannot run here (a package not installed, a trioclient feature not
written yet) raises `Unavailable`; the driver reports it as skipped, not as a crash.
"""

from __future__ import annotations

__all__ = ["CONTENDER_MODULES", "Unavailable"]

#: Contender name -> module under ``benchmarks.contenders``.
CONTENDER_MODULES: dict[str, str] = {
    "trioclient": "trioclient_contender",
    "openai-asyncio": "openai_asyncio",
    "openai-trio": "openai_trio",
    "httpx-trio": "httpx_trio",
    "aiohttp-asyncio": "aiohttp_asyncio",
    "h11-trio": "h11_trio",
}


class Unavailable(Exception):
    """This contender cannot run here; the message says why (reported as skipped)."""
