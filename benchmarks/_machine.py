"""What the run was measured on: printed first and stored with the results."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["describe_machine", "format_machine"]

PACKAGES = ("trio", "httpx", "h11", "openai", "aiohttp", "attrs", "trio-util", "matplotlib")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def _tool_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else None


def _trioclient_version() -> str:
    # The checkout, not whatever may be installed: read the version file itself.
    text = (REPO_ROOT / "trioclient" / "_version.py").read_text()
    match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return match.group(1) if match else "unknown"


def describe_machine() -> dict[str, Any]:
    """Cores, CPU, OS, Python and the versions of every package the run touches."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["trioclient"] = _trioclient_version()
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": versions,
        "nginx": _tool_version(["nginx", "-v"]),
        "wrk": _tool_version(["wrk", "--version"]),
    }


def format_machine(machine: dict[str, Any]) -> str:
    """One short paragraph a person reads before the numbers."""
    packages = ", ".join(
        f"{name} {version}" for name, version in machine["packages"].items() if version
    )
    tools = ", ".join(t for t in (machine.get("nginx"), machine.get("wrk")) if t)
    return (
        f"{machine['cores']} cores ({machine['cpu']}), {machine['os']}, "
        f"{machine['implementation']} {machine['python']}\n{packages}"
        + (f"\n{tools}" if tools else "")
    )
