"""Start trioclient's embedded server in a subprocess and collect its statistics.

The server is configured with `trioclient.testing.ServerConfig` field names (``ttft``,
``tps``, ``rpm``, ``seed``, ``answer_tokens`` ...). A fresh server per measurement
gives every contender the same conditions: a full rate-limit bucket, and with a fixed
``seed`` the same sequence of sampled latencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["EmbeddedServer", "open_embedded"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@attrs.define
class EmbeddedServer:
    """A running embedded server; `stats` fills in once it has stopped."""

    base_url: str
    config: dict[str, Any]
    stats: dict[str, Any] = attrs.field(factory=dict)


def child_env() -> dict[str, str]:
    """The environment for child processes: this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


@contextlib.contextmanager
def open_embedded(**config: Any) -> Iterator[EmbeddedServer]:
    """Run ``open_server(**config)`` in a child process for the duration of the block.

    Raises:
        RuntimeError: if the server exits or prints something unexpected at startup.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._serve", json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=child_env(),
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()
        try:
            base_url = json.loads(first)["base_url"]
        except (ValueError, KeyError, TypeError):
            proc.kill()
            raise RuntimeError(
                f"embedded server failed to start: {first!r}\n{proc.stderr.read()[-2000:]}"
            ) from None
        server = EmbeddedServer(base_url=base_url, config=config)
        yield server
    finally:
        if proc.poll() is None:
            try:  # communicate() closes stdin: the server's cue to report and exit
                out, _err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _err = proc.communicate()
            lines = [line for line in out.splitlines() if line.strip()]
            if lines:
                with contextlib.suppress(ValueError):
                    server.stats = json.loads(lines[-1])
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
