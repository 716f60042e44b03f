"""Crash and resume: ``kill -9`` at random moments, and a disk that fails.

The durable JSONL runner promises that a result, once written, is never lost, that a
re-run of the same command sends only what is missing, and that in the end every
``custom_id`` appears exactly once. These tests try hard to break that promise:

* the CLI batch runner is killed with SIGKILL at random moments, round after round,
  against an embedded server that fails on purpose (500s, resets before and during the
  response) and takes a little time per answer, so the kills land mid-run. After every
  kill the output is read and each whole line remembered; at the end, every remembered
  line must still be there, unchanged, and every id must appear exactly once;
* a write that fails with ``ENOSPC`` or ``EIO`` stops the run with one clear error, and
  every line written before it is intact (then a resume completes the file).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from _faultproxy import count_tasks, wait_until_quiet

import trioclient
import trioclient._batch_file
from trioclient import RetryPolicy
from trioclient._batch_file import BatchFileError, run_batch_file
from trioclient.testing import open_server

KEY = "sk-crash-0123456789abcdef"
MODEL = "trioclient-sim"
ROOT = Path(__file__).resolve().parent.parent
FAULTS = {"http_500": 0.05, "reset_before_response": 0.02, "reset_mid_body": 0.02}


def write_requests(path: Path, n: int) -> list[str]:
    ids = [f"req-{i:04d}" for i in range(n)]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": [{"role": "user", "content": cid}]},
                }
            )
            + "\n"
            for cid in ids
        )
    )
    return ids


def whole_lines(path: Path) -> dict[str, str]:
    """custom_id -> line, for every whole line of the output (a torn tail is left out).

    Every whole line must be a well-formed result record, and no id may repeat.
    """
    if not path.exists():
        return {}
    data = path.read_text()
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # cut by the kill mid-write: the runner repairs it on the next start
    seen: dict[str, str] = {}
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"id", "custom_id", "response", "error"}, line
        assert record["custom_id"] not in seen, f"{record['custom_id']} written twice"
        if record["error"] is None:
            assert record["response"]["status_code"] == 200
            assert record["response"]["body"]["choices"][0]["message"]["content"]
        seen[record["custom_id"]] = line
    return seen


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    env.pop("TRIOCLIENT_BASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["XAI_API_KEY"] = KEY
    return env


async def wait_for(condition: Callable[[], bool], limit: float) -> bool:
    """Whether ``condition()`` came true within ``limit`` seconds (polled: it watches
    another process and the server's counters, which have no event to wait on)."""
    with trio.move_on_after(limit):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.005)
        return True
    return False


ROUNDS = 20


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_nothing_and_ends_exactly_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(source, 300)
    remembered: dict[str, str] = {}
    kills = 0
    async with open_server(ttft="uniform:0.01,0.04", faults=FAULTS, seed=7) as server:
        args = [sys.executable, "-m", "trioclient", "batch", str(source), "-o", str(out)]
        args += ["--base-url", server.base_url, "--max-concurrent", "3"]
        # A safety net only: twenty child processes start here, and on a busy machine
        # that alone took 61 s of the 90 this once allowed.
        with trio.fail_after(600):
            for _ in range(ROUNDS):
                before = server.statistics().chat_requests
                process = await trio.lowlevel.open_process(
                    args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env()
                )
                try:
                    # Kill a random while after this round's first request: mid-run.
                    def begun(p: trio.Process = process, b: int = before) -> bool:
                        return server.statistics().chat_requests > b or p.poll() is not None

                    assert await wait_for(begun, limit=120)
                    await trio.sleep(rng.uniform(0.05, 0.4))
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                        kills += 1
                finally:
                    if process.poll() is None:
                        process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
                now = whole_lines(out)
                for cid, line in remembered.items():
                    assert now.get(cid) == line, f"{cid}: a written result was lost or changed"
                remembered.update(now)
            # The last round runs to its end, faults and all.
            result = await trio.run_process(
                args, capture_stdout=True, capture_stderr=True, check=False, env=cli_env()
            )
    assert result.returncode == 0, result.stderr.decode()
    final = whole_lines(out)
    assert out.read_text().endswith("\n")
    assert sorted(final) == ids  # every custom_id exactly once
    for cid, line in remembered.items():
        assert final[cid] == line, f"{cid}: a written result was lost or changed"
    assert kills == ROUNDS, "every round was killed while work remained"
    assert 0 < len(remembered) < len(ids)  # the killed rounds did work, and left some
    left = len(ids) - len(remembered)
    assert f"{left} succeeded, 0 failed, {len(remembered)} skipped" in result.stderr.decode()
    assert sum(server.statistics().faults_injected.values()) > 0


# --- a disk that fails -------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
async def test_a_failing_disk_stops_the_run_and_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(source, 200)
    good_lines = 25
    real_write = os.write
    records_written = 0

    def failing_write(fd: int, data: Any) -> int:
        # Only the runner's result lines fail; anything else writes as usual.
        nonlocal records_written
        if bytes(data[:16]) == b'{"id":"batch_req':
            if records_written >= good_lines:
                raise OSError(code, os.strerror(code))
            records_written += 1
        return real_write(fd, data)

    async with open_server(ttft=0.005) as server:
        tasks = count_tasks()
        async with trioclient.Client(api_key=KEY, base_url=server.base_url) as client:
            monkeypatch.setattr(trioclient._batch_file.os, "write", failing_write)
            with trio.fail_after(20), pytest.raises(BatchFileError) as caught:
                await run_batch_file(client, source, out, max_concurrent=8)
            monkeypatch.undo()
            message = str(caught.value)
            assert message.startswith(f"cannot write results to {out}: {os.strerror(code)}")
            assert "every line written before this one is intact" in message
            # It stopped: nothing near the whole file was sent.
            assert server.statistics().chat_requests < len(ids)
            assert client.limiter.borrowed_tokens == 0
            kept = whole_lines(out)
            assert out.read_text().endswith("\n")
            assert len(kept) == good_lines

            # The disk has room again: the same run resumes and completes the file.
            summary = await run_batch_file(
                client, source, out, max_concurrent=8, retry=RetryPolicy(max_retries=2)
            )
        await wait_until_quiet(server, tasks=tasks)
    assert (summary.skipped_already_done, summary.remaining) == (good_lines, 0)
    final = whole_lines(out)
    assert sorted(final) == ids
    assert all(final[cid] == line for cid, line in kept.items())
