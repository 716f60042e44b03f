"""Remote batches: the same JSONL file on the provider's Batch API (the embedded
server's /v1/files and /v1/batches, in OpenAI's and xAI's shapes), written in the live
runner's record format, resumable through the state file kept beside the output.

Real loopback sockets on the real clock, with sub-second batch delays and polls; every
test bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

import trioclient
from trioclient._remote_batch import RemoteBatchProgress, run_remote_batch_file
from trioclient.testing import Server, open_server

KEY = "sk-test-remote-batch-0123456789"


def write_lines(path: Path, n: int = 4) -> Path:
    lines = []
    for i in range(n):
        body = {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], "seed": i}
        lines.append(
            {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    lines.append(
        {
            "custom_id": "emb",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "e", "input": "x", "dimensions": 4},
        }
    )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["custom_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def client_for(server: Server) -> trioclient.Client:
    return trioclient.Client(api_key=KEY, base_url=server.base_url)


@pytest.mark.parametrize("provider", ["openai", "xai"])
async def test_remote_records_are_the_live_runner_s(tmp_path: Path, provider: str) -> None:
    source = write_lines(tmp_path / "in.jsonl")
    live_out, remote_out = tmp_path / "live.jsonl", tmp_path / "remote.jsonl"
    seen: list[RemoteBatchProgress] = []
    with trio.fail_after(30):
        async with open_server(batch_delay=0.2) as server, client_for(server) as client:
            live = await trioclient.run_batch_file(client, source, live_out)
            remote = await run_remote_batch_file(
                client,
                source,
                remote_out,
                provider=provider,
                poll_interval=0.05,
                on_progress=seen.append,
            )
            batches = server._batches.batches
    assert (remote.total, remote.succeeded, remote.failed, remote.remaining) == (5, 5, 0, 0)
    assert live.succeeded == 5
    # One batch per endpoint (OpenAI's batches take one each).
    assert sorted(b.endpoint for b in batches.values()) == [
        "/v1/chat/completions",
        "/v1/embeddings",
    ]
    live_records, remote_records = records(live_out), records(remote_out)
    assert live_records.keys() == remote_records.keys()
    for custom_id, record in remote_records.items():
        twin = live_records[custom_id]
        assert record.keys() == twin.keys() and record["error"] is None
        assert record["response"].keys() == twin["response"].keys()
        assert record["response"]["status_code"] == 200
        body, live_body = record["response"]["body"], twin["response"]["body"]
        if custom_id == "emb":
            assert body["data"] == live_body["data"]
        else:
            assert body["choices"][0]["message"] == live_body["choices"][0]["message"]
    assert seen[-1].done == seen[-1].total == 5
    assert not await trio.Path(str(remote_out) + ".remote.json").exists()  # done: state removed


@pytest.mark.parametrize("provider", ["openai", "xai"])
async def test_per_line_faults_become_error_records_and_retry_failed_resends_them(
    tmp_path: Path, provider: str
) -> None:
    source = write_lines(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server(batch_delay=0.1) as server, client_for(server) as client:
            server.script_faults([None, "http_500"])  # the batch's second line fails
            first = await run_remote_batch_file(
                client, source, out, provider=provider, poll_interval=0.05
            )
            failed = [r for r in records(out).values() if r["error"] is not None]
            again = await run_remote_batch_file(
                client, source, out, provider=provider, poll_interval=0.05, retry_failed=True
            )
            uploads = [f for f in server._batches.files.values() if f.purpose != "batch_output"]
    assert (first.succeeded, first.failed) == (4, 1)
    (bad,) = failed
    assert bad["error"]["message"]
    if provider == "openai":
        assert bad["response"]["status_code"] == 500 and bad["error"]["code"] == "http_500"
    assert (again.succeeded, again.failed, again.skipped_already_done) == (1, 0, 4)
    # The second run uploaded only the failed line.
    assert [f.data.count(b"\n") for f in uploads][-1] == 1
    assert all(r["error"] is None for r in records(out).values())


async def test_an_interrupted_run_resumes_the_same_batch_without_uploading_again(
    tmp_path: Path,
) -> None:
    source = write_lines(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    state = trio.Path(str(out) + ".remote.json")
    with trio.fail_after(30):
        async with open_server(batch_delay=1.0) as server, client_for(server) as client:
            with trio.move_on_after(0.3):  # a Ctrl-C while polling, as far as we are concerned
                await run_remote_batch_file(client, source, out, poll_interval=0.05)
            assert await state.exists()
            kept = json.loads(await state.read_text())
            created = dict(server._batches.batches)
            assert all(b.status == "in_progress" for b in created.values())  # not cancelled
            summary = await run_remote_batch_file(client, source, out, poll_interval=0.05)
            after = dict(server._batches.batches)
    assert summary.succeeded == 5
    assert after.keys() == created.keys()  # no new batch: the same ones were collected
    assert [b["id"] for b in kept["batches"]] == list(created)
    assert not await state.exists()


async def test_cancel_on_interrupt_cancels_the_remote_batch(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", n=2)
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server(batch_delay=5.0) as server, client_for(server) as client:
            with trio.move_on_after(0.3):
                await run_remote_batch_file(
                    client,
                    source,
                    out,
                    provider="xai",
                    poll_interval=0.05,
                    cancel_on_interrupt=True,
                )
            statuses = {b.status for b in server._batches.batches.values()}
    assert statuses == {"cancelled"}


async def test_remote_after_a_partial_live_run_sends_only_what_is_left(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(line + "\n" for line in source.read_text().splitlines()[:2]))
    with trio.fail_after(30):
        async with open_server(batch_delay=0.1) as server, client_for(server) as client:
            await trioclient.run_batch_file(client, partial, out)  # q0, q1 answered live
            summary = await run_remote_batch_file(client, source, out, poll_interval=0.05)
            uploads = [f for f in server._batches.files.values() if f.purpose != "batch_output"]
    assert (summary.skipped_already_done, summary.succeeded) == (2, 3)
    sent = [json.loads(line)["custom_id"] for f in uploads for line in f.data.splitlines()]
    assert sorted(sent) == ["emb", "q2", "q3"]
    assert sorted(records(out)) == ["emb", "q0", "q1", "q2", "q3"]


async def test_nothing_left_means_nothing_uploaded(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", n=1)
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server() as server, client_for(server) as client:
            await trioclient.run_batch_file(client, source, out)
            summary = await run_remote_batch_file(client, source, out, poll_interval=0.05)
            assert server._batches.files == {}
    assert summary.skipped_already_done == 2 and summary.succeeded == 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    from trioclient._remote_batch import RemoteBatchRunner

    client = trioclient.Client(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="output file"):
        RemoteBatchRunner(client, "in.jsonl", "-")
    with pytest.raises(ValueError, match="provider"):
        RemoteBatchRunner(client, "in.jsonl", str(tmp_path / "o"), provider="azure")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_interval"):
        RemoteBatchRunner(client, "in.jsonl", str(tmp_path / "o"), poll_interval=0)
    xai = trioclient.Client(api_key=KEY, base_url="https://api.x.ai/v1")
    assert RemoteBatchRunner(xai, "in.jsonl", str(tmp_path / "o")).provider == "xai"
    assert RemoteBatchRunner(client, "in.jsonl", str(tmp_path / "o")).provider == "openai"


async def test_a_crash_after_writing_but_before_forgetting_the_batch_writes_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trioclient._remote_batch as remote

    source = write_lines(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server(batch_delay=0.1) as server, client_for(server) as client:
            # The first run "dies" after writing every record but before removing the
            # state file: the next run finds the batch again, with nothing left to send.
            monkeypatch.setattr(remote, "_remove", lambda path: None)
            await run_remote_batch_file(client, source, out, poll_interval=0.05)
            monkeypatch.undo()
            assert await trio.Path(str(out) + ".remote.json").exists()
            again = await run_remote_batch_file(client, source, out, poll_interval=0.05)
    ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == ["emb", "q0", "q1", "q2", "q3"]
    assert (again.skipped_already_done, again.succeeded) == (5, 0)


async def test_the_cli_runs_a_file_remotely_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    from tests.test_cli import cli_env, run_cli

    source = write_lines(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    args = ("batch", str(source), "-o", str(out), "--remote", "--poll-interval", "0.05")
    with trio.fail_after(60):
        async with open_server(batch_delay=0.2) as server:
            env = cli_env(XAI_API_KEY=KEY)
            first = await run_cli(*args, "--base-url", server.base_url, env=env)
            second = await run_cli(*args, "--base-url", server.base_url, env=env)
            batches = len(server._batches.batches)
    assert first.returncode == 0, first.stderr
    assert b"5 succeeded" in first.stderr
    assert second.returncode == 0 and b"5 skipped" in second.stderr
    assert batches == 2  # one per endpoint, from the first run only
    assert sorted(records(out)) == ["emb", "q0", "q1", "q2", "q3"]


async def test_xai_results_are_read_page_by_page(tmp_path: Path) -> None:
    # The embedded server pages xAI results 100 at a time: 250 lines take three pages.
    source = tmp_path / "in.jsonl"
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "e", "input": f"t{i}", "dimensions": 2},
        }
        for i in range(250)
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    with trio.fail_after(30):
        async with open_server(batch_delay=0.1) as server, client_for(server) as client:
            summary = await run_remote_batch_file(
                client, source, out, provider="xai", poll_interval=0.05
            )
    assert summary.succeeded == 250
    assert sorted(records(out)) == sorted(f"e{i}" for i in range(250))
