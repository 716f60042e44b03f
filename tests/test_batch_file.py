"""The JSONL runner: Batch API format in and out, bad lines, duplicates, resuming after a
torn line or a kill -9, retry_failed, streams as file objects, and a failing disk.

The server is scripted behind ``httpx.MockTransport`` (autojump clock) except for the
kill -9 test, which runs a real child process against the embedded server.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing
from _fakes import FakeAPI

import trioclient
from trioclient import RetryPolicy
from trioclient._batch_file import (
    BatchFileError,
    BatchFileRunner,
    BatchFileSummary,
    run_batch_file,
)
from trioclient.testing import open_server

URL = "http://127.0.0.1:9/v1"


def client_for(api: FakeAPI) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test",
        base_url=URL,
        transport=httpx.MockTransport(api),
        retry=RetryPolicy(max_retries=1, base_delay=0.01),
    )


def line(custom_id: str, prompt: str, **extra: Any) -> str:
    obj = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
        **extra,
    }
    return json.dumps(obj)


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    """Records by custom_id, checking that none appears twice."""
    out: dict[str, dict[str, Any]] = {}
    for record in records(path):
        custom_id = record["custom_id"]
        if custom_id is not None:
            assert custom_id not in out, f"{custom_id} written twice"
            out[custom_id] = record
    return out


async def test_jsonl_in_batch_api_results_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"question {i} sleep={5 - i}") for i in range(5)]
    )
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        summary = await run_batch_file(client, source, out)
    assert summary == BatchFileSummary(
        total=5,
        succeeded=5,
        failed=0,
        skipped_already_done=0,
        remaining=0,
        input_errors=0,
        output=str(out),
    )
    got = records(out)
    # Completion order: the last line was the fastest.
    assert [r["custom_id"] for r in got] == ["q4", "q3", "q2", "q1", "q0"]
    first = got[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["request_id"].startswith("req-")
    assert (
        first["response"]["body"]["choices"][0]["message"]["content"] == "echo question 4 sleep=1"
    )
    assert len({r["id"] for r in got}) == 5


async def test_bad_lines_are_reported_and_good_ones_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    lines = [
        line("a", "fine"),
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        line("e", "complete me", url="/v1/completions"),
        "",
        line("s", "bad status=400"),
        json.dumps({"custom_id": "nb", "url": "/chat/completions", "body": "text"}),
        line("z", "also fine", url="/chat/completions"),
    ]
    source = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        summary = await run_batch_file(client, source, out)
    assert (summary.total, summary.succeeded, summary.failed) == (7, 2, 5)
    assert summary.input_errors == 4
    assert sorted(api.prompts) == ["also fine", "bad status=400", "fine"]
    got = records(out)
    errors = {r["error"]["line"]: r for r in got if r["error"] and "line" in r["error"]}
    assert (
        errors[2]["error"]["code"] == "invalid_json" and "line 2" in errors[2]["error"]["message"]
    )
    assert errors[3]["error"]["code"] == "missing_custom_id"
    assert errors[4]["error"]["code"] == "unsupported_url" and errors[4]["custom_id"] == "e"
    assert "/v1/completions" in errors[4]["error"]["message"]
    assert errors[7]["error"]["code"] == "invalid_body"
    status = by_id(out)["s"]
    assert status["error"]["code"] == "bad_thing"
    assert status["response"]["status_code"] == 400
    assert status["response"]["body"]["error"]["message"] == "nope"


async def test_duplicate_ids_are_rejected_before_sending(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(
        tmp_path / "in.jsonl",
        [line("a", "1"), line("b", "2"), line("a", "3"), line("c", "4"), line("a", "5")],
    )
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        with pytest.raises(BatchFileError, match=r"'a' on lines 1, 3, 5.*nothing was sent"):
            await run_batch_file(client, source, out)
    assert api.prompts == []
    assert not out.exists()


async def test_resume_repairs_a_torn_line_and_skips_answered_ids(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(tmp_path / "in.jsonl", [line(f"q{i}", f"p{i}") for i in range(6)])
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        await run_batch_file(client, source, out)
        kept = out.read_text().splitlines(keepends=True)[:2]
        # A crash mid-write: two whole lines, then half of a third.
        out.write_text("".join(kept) + kept[0][: len(kept[0]) // 2])
        answered = {json.loads(x)["custom_id"] for x in kept}
        api.prompts.clear()
        summary = await run_batch_file(client, source, out)
    assert summary.skipped_already_done == 2 and summary.succeeded == 4
    assert summary.remaining == 0
    assert sorted(api.prompts) == sorted(
        f"p{i[1:]}" for i in {f"q{i}" for i in range(6)} - answered
    )
    assert sorted(by_id(out)) == [f"q{i}" for i in range(6)]  # each exactly once
    # Running again sends nothing at all.
    api.prompts.clear()
    async with client_for(api) as client:
        again = await run_batch_file(client, source, out)
    assert api.prompts == [] and again.skipped_already_done == 6


async def test_failed_ids_are_kept_unless_retry_failed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(
        tmp_path / "in.jsonl", [line("a", "ok"), line("b", "fails status=400"), line("c", "ok2")]
    )
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        first = await run_batch_file(client, source, out)
        assert (first.succeeded, first.failed) == (2, 1)
        api.prompts.clear()
        second = await run_batch_file(client, source, out)
        assert api.prompts == [] and second.skipped_already_done == 3
        api.fixed = True
        third = await run_batch_file(client, source, out, retry_failed=True)
    assert api.prompts == ["fails status=400"]
    assert (third.succeeded, third.skipped_already_done) == (1, 2)
    final = by_id(out)
    assert sorted(final) == ["a", "b", "c"]
    assert final["b"]["error"] is None


async def test_plain_text_prompts_need_a_model(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(tmp_path / "prompts.txt", ["What is 2+2?", "", "Name a colour."])
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client:
        with pytest.raises(BatchFileError, match=r"plain text.*model"):
            await run_batch_file(client, source, out)
        summary = await run_batch_file(client, source, out, model="grok-4")
    assert summary.succeeded == 2
    got = by_id(out)
    assert sorted(got) == ["line-1", "line-3"]  # ids from line numbers: stable on resume
    assert got["line-3"]["response"]["body"]["model"] == "grok-4"


async def test_file_objects_and_unseekable_input(autojump_clock: trio.testing.MockClock) -> None:
    class Pipe(io.RawIOBase):
        """A stdin-like stream: readable once, not seekable."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    data = ("\n".join(line(f"q{i}", f"p{i}") for i in range(4)) + "\n").encode()
    api = FakeAPI()
    text_out = io.StringIO()
    binary_out = io.BytesIO()
    async with client_for(api) as client:
        one = await run_batch_file(client, io.BufferedReader(Pipe(data)), text_out)
        two = await run_batch_file(client, io.BytesIO(data), binary_out)
    assert one.succeeded == two.succeeded == 4
    for text in (text_out.getvalue(), binary_out.getvalue().decode()):
        assert sorted(json.loads(x)["custom_id"] for x in text.splitlines()) == [
            "q0",
            "q1",
            "q2",
            "q3",
        ]


async def test_a_failing_disk_stops_the_run_and_keeps_what_was_written(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"p{i} sleep={i + 1}") for i in range(6)]
    )
    out = tmp_path / "out.jsonl"
    real_write = os.write
    writes = 0

    def failing_write(fd: int, data: bytes) -> int:
        nonlocal writes
        writes += 1
        if writes > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    api = FakeAPI()
    async with client_for(api) as client:
        monkeypatch.setattr(os, "write", failing_write)
        with pytest.raises(BatchFileError, match=r"out\.jsonl.*No space left") as info:
            await run_batch_file(client, source, out)
        monkeypatch.undo()
        assert isinstance(info.value.__cause__, OSError)
        assert [r["custom_id"] for r in records(out)] == ["q0", "q1"]
        # The disk is back: the same command finishes the job, each id once.
        summary = await run_batch_file(client, source, out)
    assert summary.skipped_already_done == 2 and summary.succeeded == 4
    assert sorted(by_id(out)) == [f"q{i}" for i in range(6)]


async def test_an_interrupt_leaves_finished_results_and_a_count_of_the_rest(
    tmp_path: Path, thread_safe_autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"p{i} sleep={i + 1}") for i in range(10)]
    )
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    seen: list[int] = []
    async with client_for(api) as client:
        runner = BatchFileRunner(client, source, out, on_progress=lambda p: seen.append(p.done))
        with trio.move_on_after(3.5):
            await runner.run()
        summary = runner.summary()
        assert summary.interrupted and summary.succeeded == 3 and summary.remaining == 7
        assert len(records(out)) == 3
        assert seen and max(seen) == 3
        final = await run_batch_file(client, source, out)
    assert final.skipped_already_done == 3 and final.succeeded == 7 and not final.interrupted
    assert sorted(by_id(out)) == sorted(f"q{i}" for i in range(10))


CHILD = textwrap.dedent(
    """
    import sys, trio, trioclient
    from trioclient._batch_file import run_batch_file

    async def main():
        async with trioclient.Client(api_key="sk-test", base_url=sys.argv[1]) as client:
            await run_batch_file(client, sys.argv[2], sys.argv[3], max_concurrent=4)

    trio.run(main)
    """
)


async def test_kill_9_loses_nothing_written_and_resume_completes(tmp_path: Path) -> None:
    n = 40
    source = write_input(tmp_path / "in.jsonl", [line(f"q{i}", f"question {i}") for i in range(n)])
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(trioclient.__file__).parent.parent)}
    with trio.fail_after(20):
        async with open_server(ttft="fixed:0.1") as server:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-c", CHILD, str(server.base_url), str(source), str(out)],
                env=env,
            )
            try:
                # No event to wait on across processes: watch the file.
                while not out.exists() or len(out.read_bytes().splitlines()) < 6:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                # While the child runs, this process may not run on its output.
                async with trioclient.Client(api_key="sk-test", base_url=server.base_url) as c:
                    with pytest.raises(BatchFileError, match=rf"\(pid {proc.pid}\)"):
                        await run_batch_file(c, source, out)
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.kill()
                await proc.wait()
            written = out.read_bytes()
            complete = written[: written.rfind(b"\n") + 1]
            before = [json.loads(x) for x in complete.splitlines()]
            assert 6 <= len(before) < n
            async with trioclient.Client(api_key="sk-test", base_url=server.base_url) as client:
                summary = await run_batch_file(client, source, out)
    # The kernel dropped the killed child's lock: the resume was allowed.
    assert summary.skipped_already_done == len(before)
    assert summary.succeeded == n - len(before) and summary.remaining == 0
    after = records(out)
    assert after[: len(before)] == before  # nothing written before the kill was lost
    assert sorted(r["custom_id"] for r in after) == sorted(f"q{i}" for i in range(n))


async def test_ctrl_c_comes_out_as_a_plain_keyboard_interrupt_with_a_note(
    tmp_path: Path, thread_safe_autojump_clock: trio.testing.MockClock
) -> None:
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"p{i} sleep={i + 1}") for i in range(10)]
    )
    out = tmp_path / "out.jsonl"

    def interrupt_after_two(progress: Any) -> None:
        if progress.done >= 2:
            raise KeyboardInterrupt  # stands in for Ctrl-C reaching the runner

    async with client_for(FakeAPI()) as client:
        runner = BatchFileRunner(client, source, out, on_progress=interrupt_after_two)
        with pytest.raises(KeyboardInterrupt) as caught:
            await runner.run()
    assert type(caught.value) is KeyboardInterrupt
    assert any("run the same command again to resume" in n for n in caught.value.__notes__)
    written = records(out)
    assert len(written) >= 2 and runner.summary().remaining == 10 - len(written)


# --- one run per output, and a resume that holds ids, not records -------------------------


async def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    # Real time (short sleeps): the runner hands its writes to threads, and a bound on
    # the whole test must not be leapt over by an autojump clock while they run.
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"p{i} sleep={(i + 1) / 10}") for i in range(6)]
    )
    out = tmp_path / "out.jsonl"
    api = FakeAPI()
    async with client_for(api) as client, trio.open_nursery() as nursery:
        first_done = trio.Event()

        async def first() -> None:
            await run_batch_file(client, source, out)
            first_done.set()

        nursery.start_soon(first)
        with trio.fail_after(30):
            while not api.prompts:  # noqa: ASYNC110 - the fake API has no event to wait on
                await trio.sleep(0.01)
        with pytest.raises(BatchFileError) as caught:
            await run_batch_file(client, source, out)
        message = str(caught.value)
        assert f"another run is writing to {out} (pid {os.getpid()})" in message
        assert f"{out}.lock" in message
        with trio.fail_after(30):
            await first_done.wait()
    # The refused run sent nothing: six prompts in all, the first run's. (Counted at the
    # end: the first run keeps sending while the second is refused.)
    assert len(api.prompts) == 6
    assert sorted(by_id(out)) == [f"q{i}" for i in range(6)]  # each once: no interleaving
    # The lock went with the first run: the next one is allowed, and finds it all done.
    async with client_for(api) as client:
        again = await run_batch_file(client, source, out)
    assert again.skipped_already_done == 6


def big_output(path: Path, ids: list[str], failed: set[str], body_bytes: int) -> int:
    """An earlier run's output: one large record per id; returns the file's size."""
    filler = "x" * body_bytes
    with path.open("w") as f:
        for cid in ids:
            if cid in failed:
                record: dict[str, Any] = {
                    "id": "batch_req_0",
                    "custom_id": cid,
                    "response": None,
                    "error": {"code": "timeout", "message": filler},
                }
            else:
                record = {
                    "id": "batch_req_0",
                    "custom_id": cid,
                    "response": {"status_code": 200, "request_id": "r", "body": {"x": filler}},
                    "error": None,
                }
            f.write(json.dumps(record) + "\n")
    return path.stat().st_size


@pytest.mark.parametrize("retry_failed", [False, True])
def test_the_resume_scan_streams_the_output_and_keeps_only_ids(
    tmp_path: Path, retry_failed: bool
) -> None:
    import tracemalloc

    from trioclient._batch_file import _read_existing

    out = tmp_path / "out.jsonl"
    ids = [f"q{i:05d}" for i in range(2_000)]
    failed = set(ids[::10])
    size = big_output(out, ids, failed, body_bytes=4_000)
    with out.open("a") as f:
        f.write('{"custom_id": "torn", "err')  # a kill -9 mid-write
    tracemalloc.start()
    try:
        existing = _read_existing(str(out), retry_failed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What it returns is ids, nothing else.
    assert existing.succeeded == set(ids) - failed
    assert existing.failed == (set() if retry_failed else failed)
    assert all(type(x) is str for x in existing.succeeded | existing.failed)
    # And it never held the records: an 8 MB file read in well under a tenth of that.
    assert size > 8_000_000
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte output"
    kept = records(out)  # the torn tail is gone; every line parses
    assert len(kept) == (len(ids) - len(failed) if retry_failed else len(ids))


async def test_resume_from_a_large_output_sends_only_what_is_missing(tmp_path: Path) -> None:
    # Real time: the fake API answers in 10 ms, and the scans run in worker threads.
    ids = [f"q{i:05d}" for i in range(1_500)]
    source = write_input(tmp_path / "in.jsonl", [line(cid, f"p-{cid}") for cid in ids])
    out = tmp_path / "out.jsonl"
    failed = set(ids[:1_400:100])
    big_output(out, ids[:1_400], failed, body_bytes=2_000)
    api = FakeAPI()
    async with client_for(api) as client:
        with trio.fail_after(60):
            summary = await run_batch_file(client, source, out, retry_failed=True)
    assert (summary.skipped_already_done, summary.succeeded) == (1_400 - len(failed), 100 + 14)
    assert sorted(api.prompts) == sorted(f"p-{cid}" for cid in set(ids[1_400:]) | failed)
    final = by_id(out)
    assert sorted(final) == ids and all(r["error"] is None for r in final.values())


# --- writes off the trio thread ------------------------------------------------------------


async def test_a_stalled_reader_on_an_output_pipe_does_not_fire_request_deadlines(
    tmp_path: Path,
) -> None:
    """The reader of the output pipe stops reading for three times the request deadline.

    Real time on purpose: with the writes on the trio thread, the loop itself would be
    stuck in ``os.write`` and a test clock would stand still with it, so only the real
    clock shows the deadlines firing. The margins are wide (50 ms answers against a 1 s
    deadline) so a busy machine cannot make a request late on its own.
    """
    import fcntl
    import threading
    import time

    stall = 3.0
    n = 60
    source = write_input(
        tmp_path / "in.jsonl", [line(f"q{i}", f"p{i} sleep=0.05") for i in range(n)]
    )
    read_fd, write_fd = os.pipe()
    # The smallest pipe buffer the kernel allows (one page): a few lines fill it.
    fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    received = bytearray()
    first_read_at: list[float] = []

    def stalled_reader() -> None:
        time.sleep(stall)
        first_read_at.append(time.monotonic())
        with open(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                received.extend(chunk)

    reader = threading.Thread(target=stalled_reader, daemon=True)
    reader.start()
    api = FakeAPI()
    try:
        with os.fdopen(write_fd, "wb") as output:
            async with client_for(api) as client:
                with trio.fail_after(60):
                    summary = await run_batch_file(
                        client,
                        source,
                        output,
                        max_concurrent=8,
                        timeout=1.0,
                        retry=RetryPolicy(max_retries=0),
                    )
            finished_at = time.monotonic()
    finally:
        reader.join(timeout=30)
    assert not reader.is_alive()
    got = [json.loads(x) for x in received.decode().splitlines()]
    # The stall really held the run up: the pipe filled and lines waited for the reader.
    assert len(received) > 3 * 4096 and finished_at >= first_read_at[0]
    timeouts = [r["custom_id"] for r in got if r["error"] and r["error"]["code"] == "timeout"]
    assert timeouts == []
    assert summary.succeeded == n and summary.failed == 0
    assert sorted(r["custom_id"] for r in got) == sorted(f"q{i}" for i in range(n))


async def test_a_cancelled_run_still_writes_the_results_it_had_queued() -> None:
    """Results already answered are written even when the run is cancelled while the
    writer is behind (here: its thread blocked until after the cancel)."""
    import threading

    from trioclient._batch_file import _Sink, _Writer

    gate = threading.Event()
    out = io.BytesIO()

    class BlockedSink(_Sink):
        def write_lines(self, lines: list[tuple[bytes, bool]], written: list[bool]) -> None:
            gate.wait(timeout=30)
            super().write_lines(lines, written)

    counted: list[bool] = []
    writer = _Writer(BlockedSink("memory", stream=out), counted.append)
    with trio.fail_after(30):
        with trio.move_on_after(0.2) as cancelled:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.serve)
                try:
                    for i in range(10):
                        await writer.put(f"line {i}\n".encode(), i % 2 == 0)
                    await trio.sleep_forever()  # the run goes on until it is cancelled
                finally:
                    # The disk (or the pipe's reader) catches up only after the cancel.
                    threading.Timer(0.3, gate.set).start()
                    await writer.finish(hurry=True)
    assert cancelled.cancelled_caught
    assert out.getvalue().decode().splitlines() == [f"line {i}" for i in range(10)]
    assert counted == [i % 2 == 0 for i in range(10)]


async def test_a_named_pipe_as_output_is_written_like_a_stream(tmp_path: Path) -> None:
    """``-o /dev/stdout`` or a FIFO: reading it back to resume would block forever."""
    import threading

    source = write_input(tmp_path / "in.jsonl", [line(f"q{i}", f"p{i}") for i in range(5)])
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        async with client_for(FakeAPI()) as client:
            with trio.fail_after(30):
                summary = await run_batch_file(client, source, fifo)
    finally:
        thread.join(timeout=30)
    assert summary.succeeded == 5
    got = [json.loads(x)["custom_id"] for x in received[0].splitlines()]
    assert sorted(got) == [f"q{i}" for i in range(5)]
    assert not (tmp_path / "results.fifo.lock").exists()
