"""Every example in ``examples/`` runs (offline, no key) and shows what it claims to show.

The examples run as their readers run them, ``python examples/x.py`` in a subprocess,
all at once (they spend most of their time waiting on the embedded server's simulated
latency), and each test below checks one example's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _check_concurrent_questions(out: str) -> None:
    assert out.count("Q: What is") == 5 and out.count("A: ") == 5
    assert re.search(r"5 answers in [\d.]+ s", out)


def _check_process_batch(out: str) -> None:
    assert "processed 6/6 items" in out
    assert "FAILED" not in out


def _check_limited_100(out: str) -> None:
    failures = re.findall(r"Request (\d+) failed: (\w+)", out)
    assert failures == [("13", "BadRequestError")]
    assert "99 of 100 requests succeeded" in out


def _check_chunked(out: str) -> None:
    assert re.search(r"chunks of 10:\s+40 answers in [\d.]+ s", out)
    assert re.search(r"batch engine: 40 answers in [\d.]+ s", out)


def _check_streaming(out: str) -> None:
    match = re.search(r"\[(\d+) characters, complete\]", out)
    assert match is not None and int(match.group(1)) > 20
    # The streamed text was printed before the summary line, not only counted.
    assert len(out.split("[")[0].split()) > 5


def _check_retry_on_429(out: str) -> None:
    assert re.search(r"(\d+) of \1 requests succeeded", out)
    match = re.search(r"429 answers met: (\d+); retries made: (\d+)", out)
    assert match is not None and int(match.group(1)) > 0
    assert int(match.group(2)) >= int(match.group(1))


def _check_timeout(out: str) -> None:
    assert "with a 0.3 s deadline: None" in out
    assert re.search(r"with a 5 s deadline: '.{10,}", out)
    assert "with timeout=0.3: APITimeoutError" in out


def _check_xai_chat(out: str) -> None:
    assert out.count("Processing request: ") == 4
    tokens = re.findall(r"Total tokens used for response (\d): (\d+)", out)
    assert [i for i, _ in tokens] == ["0", "1", "2", "3"]
    assert all(int(n) > 0 for _, n in tokens)


def _check_process_requests(out: str) -> None:
    assert re.findall(r"# Response (\d):", out) == ["0", "1", "2", "3"]


def _check_embeddings_at_scale(out: str) -> None:
    assert re.search(r"2000 of 2000 texts embedded in 10 requests", out)
    assert "256 dimensions" in out
    assert "a text is its own nearest: 1.000" in out


def _check_remote_batch(out: str) -> None:
    assert "5 succeeded, 0 failed" in out
    assert "run again: 5 already done, 0 sent" in out
    assert "cities: 4 vectors" in out and out.count("fact-") == 4


CHECKS: dict[str, Callable[[str], None]] = {
    "concurrent_questions": _check_concurrent_questions,
    "process_batch": _check_process_batch,
    "limited_100": _check_limited_100,
    "chunked": _check_chunked,
    "streaming": _check_streaming,
    "retry_on_429": _check_retry_on_429,
    "timeout": _check_timeout,
    "xai_chat": _check_xai_chat,
    "process_requests": _check_process_requests,
    "embeddings_at_scale": _check_embeddings_at_scale,
    "remote_batch": _check_remote_batch,
}


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess[str]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XAI_API_KEY", "OPENAI_API_KEY", "TRIOCLIENT_BASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in CHECKS
    }
    results = {}
    for name, process in processes.items():
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += "\n(killed after 60 s)"
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def test_every_example_is_checked() -> None:
    on_disk = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert on_disk == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_offline(
    name: str, outputs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = outputs[name]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    CHECKS[name](result.stdout)
