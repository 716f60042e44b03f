"""wrk against the same nginx: the server's ceiling, so the table shows how close to
the wire each Python client gets."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._procs import ensure_tool

__all__ = ["parse_wrk_output", "run_wrk", "wrk_script"]


def wrk_script(body: dict[str, Any]) -> str:
    """A wrk Lua script that POSTs `body` as JSON with a bearer key."""
    payload = json.dumps(json.dumps(body))  # a Lua string literal is a JSON string here
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {payload}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-bench"\n'
    )


_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}


def parse_wrk_output(text: str) -> dict[str, Any]:
    """Requests/s, total requests and error counts from wrk's report.

    Raises:
        ValueError: if the report has no ``Requests/sec`` line.
    """
    rate = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk output: {text[-500:]!r}")
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def run_wrk(url: str, *, connections: int, seconds: int, body: dict[str, Any]) -> dict[str, Any]:
    """Run wrk (one thread: the other core is nginx's) and return its figures.

    Raises:
        RuntimeError: if wrk cannot be installed or fails.
    """
    binary = ensure_tool("wrk", "wrk")
    with tempfile.TemporaryDirectory(prefix="trioclient-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(body))
        done = subprocess.run(
            [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    return parse_wrk_output(done.stdout)
