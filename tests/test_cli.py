"""The ``trioclient`` command line: help, chat, batch (with resume and Ctrl-C), demo, errors.

The commands run in subprocesses (``python -m trioclient``, with the repo root on
``PYTHONPATH`` so it works whether or not the package is installed), against an embedded
server running in the test's own trio loop on a real loopback socket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trioclient.cli import main
from trioclient.cli._errors import CommandError, describe, redact
from trioclient.cli._progress import LiveProgress, Snapshot
from trioclient.testing import open_server

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = ("XAI_API_KEY", "OPENAI_API_KEY", "TRIOCLIENT_BASE_URL")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process(
            [sys.executable, "-m", "trioclient", *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env if env is not None else cli_env(),
        )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The process failed with exactly one line on stderr, no traceback."""
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trioclient: error: "), err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_sigint() -> None:
    # A child inherits an ignored SIGINT (pytest started in the background by a
    # non-interactive shell): give it the default, or Ctrl-C would never reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.asynccontextmanager
async def spawn(args: list[str], **options: Any) -> AsyncIterator[trio.Process]:
    """A subprocess that is killed and reaped if the test leaves early; it takes Ctrl-C
    as an interactive command would, whatever the test runner ignores."""
    options.setdefault("preexec_fn", default_sigint)
    process = await trio.lowlevel.open_process(args, **options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


def write_requests(path: Path, n: int, extra_lines: tuple[str, ...] = ()) -> None:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": f"Q{i}"}]},
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")


# --- parsing, help, version (in-process: no trio.run involved) ---------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["chat"], ["batch"], ["serve"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trioclient")
    if command:
        assert f"trioclient {command[0]}" in out.splitlines()[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import trioclient

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"trioclient {trioclient.__version__}"


def test_no_command_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: trioclient" in capsys.readouterr().err


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", "in.jsonl"]) == 2  # -o is required
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "required" in err[0] and "-o" in err[0]


@pytest.mark.parametrize(
    ("shard", "says"),
    [
        ("3/2", "I must be between 1 and N (2)"),
        ("0/0", "N must be at least 1"),
        ("one/two", "expected I/N, such as 1/4"),
        ("2", "expected I/N, such as 1/4"),
    ],
)
def test_batch_bad_shard_is_a_one_line_usage_error(
    shard: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--shard", shard]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trioclient batch: error: argument --shard")
    assert says in err[0]


def test_batch_shard_and_merge_do_not_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--shard", "1/2", "--merge"]) == 2
    assert "not allowed with argument --shard" in capsys.readouterr().err


def test_serve_is_delegated_with_its_own_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "not-a-port"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trioclient serve: error:") and "port" in err[0]


def test_cli_package_does_not_load_rich() -> None:
    code = "import sys, trioclient.cli; print('rich' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- error lines -------------------------------------------------------------------


def test_describe_says_a_group_of_equal_errors_once() -> None:
    group = ExceptionGroup("x", [ValueError("bad thing"), ValueError("bad thing")])
    assert describe(group) == "bad thing"
    mixed = ExceptionGroup("x", [ValueError("one"), CommandError("two")])
    assert describe(mixed) == "one; two"


def test_redact_hides_the_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAI_API_KEY", "xai-secret-1234")
    assert redact("key xai-secret-1234 echoed") == "key [redacted] echoed"
    assert "xai-secret-1234" not in describe(ValueError("got xai-secret-1234"))


# --- progress ------------------------------------------------------------------------


def test_progress_draws_done_total_429s_and_tokens_on_a_terminal() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140)
    snap = Snapshot(done=3, total=10, failed=1, in_flight=4, rate_limited=2, tokens=1234)

    async def draw() -> None:
        progress = LiveProgress("batch", lambda: snap, console=console)
        progress.update()
        progress.stop()

    trio.run(draw)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    for expected in ("batch", "3/10", "4 in flight", "2 x 429", "1234 tokens", "1 failed"):
        assert expected in text


def test_progress_is_quiet_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()

    async def draw() -> None:
        progress = LiveProgress("batch", lambda: Snapshot(done=1, total=2), stream=stream)
        assert not progress.enabled
        with trio.move_on_after(0.05):
            await progress.run()

    trio.run(draw)
    assert stream.getvalue() == ""


# --- chat ----------------------------------------------------------------------------


async def test_chat_streams_the_answer_as_it_arrives() -> None:
    # 24 tokens at 20/s: the stream lasts over a second, so text must show up well before the end.
    async with open_server(tps=20, answer_tokens=24) as server:
        with trio.fail_after(20):
            async with spawn(
                [sys.executable, "-m", "trioclient", "chat", "hi", "--base-url", server.base_url],
                stdout=subprocess.PIPE,
                env=cli_env(),
            ) as process:
                assert process.stdout is not None
                first = await process.stdout.receive_some()
                assert first, "no output at all"
                assert process.poll() is None, "the first text arrived only at the end"
                rest = bytearray(first)
                while chunk := await process.stdout.receive_some():
                    rest += chunk
                await process.wait()
        assert process.returncode == 0
        text = rest.decode()
        assert len(text.split()) >= 12 and text.endswith("\n")
        assert server.statistics().chat_requests == 1


async def test_chat_no_stream_reads_the_prompt_from_stdin() -> None:
    async with open_server() as server:
        result = await run_cli(
            "chat",
            "-",
            "--no-stream",
            "--system",
            "Be brief",
            "--base-url",
            server.base_url,
            stdin=b"What is Rust?\n",
        )
    assert result.returncode == 0, result.stderr
    assert "Rust" in result.stdout.decode()
    assert result.stderr == b""


async def test_chat_without_a_key_for_the_real_api_is_one_line() -> None:
    result = await run_cli("chat", "hello")
    line = one_error_line(result)
    assert "XAI_API_KEY" in line


async def test_a_wrong_key_is_one_line_and_never_printed() -> None:
    secret = "sk-wrong-SECRET-0123456789"
    async with open_server(api_key="sk-right") as server:
        for args in (
            ["chat", "hi", "--base-url", server.base_url],
            ["demo", "--base-url", server.base_url],
        ):
            result = await run_cli(*args, env=cli_env(XAI_API_KEY=secret))
            line = one_error_line(result)
            assert "401" in line
            assert secret not in (result.stdout + result.stderr).decode()


# --- batch ---------------------------------------------------------------------------


async def test_batch_missing_file_is_one_line(tmp_path: Path) -> None:
    result = await run_cli("batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o"))
    assert "no such file" in one_error_line(result)
    assert result.returncode == 1


async def test_batch_unreachable_server_is_one_line_and_sends_nothing(tmp_path: Path) -> None:
    write_requests(tmp_path / "in.jsonl", 3)
    port = closed_port()
    result = await run_cli(
        "batch",
        str(tmp_path / "in.jsonl"),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
    )
    assert "cannot reach" in one_error_line(result)
    assert not (tmp_path / "out.jsonl").exists()


async def test_batch_wrong_key_stops_before_sending(tmp_path: Path) -> None:
    secret = "sk-wrong-SECRET-abcdef"
    write_requests(tmp_path / "in.jsonl", 3)
    async with open_server(api_key="sk-right") as server:
        result = await run_cli(
            "batch",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--base-url",
            server.base_url,
            env=cli_env(XAI_API_KEY=secret),
        )
        assert server.statistics().chat_requests == 0
    assert "401" in one_error_line(result)
    assert secret not in (result.stdout + result.stderr).decode()


async def test_batch_duplicate_ids_are_one_line_and_nothing_is_sent(tmp_path: Path) -> None:
    write_requests(tmp_path / "in.jsonl", 3)
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write(json.dumps({"custom_id": "req-1", "body": {"model": "m", "messages": []}}) + "\n")
    async with open_server() as server:
        result = await run_cli(
            "batch",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--base-url",
            server.base_url,
        )
        assert server.statistics().chat_requests == 0
    line = one_error_line(result)
    assert "duplicate" in line and "req-1" in line


async def test_batch_bad_lines_are_reported_and_good_lines_run(tmp_path: Path) -> None:
    write_requests(tmp_path / "in.jsonl", 4, extra_lines=("{not json",))
    async with open_server() as server:
        result = await run_cli(
            "batch",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--base-url",
            server.base_url,
        )
    err = result.stderr.decode()
    assert result.returncode == 1  # something failed: the exit code says so
    assert "4 succeeded, 1 failed" in err and "not a valid request" in err
    assert "\x1b[" not in err  # no progress display in a pipe
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    bad = [r for r in records if r["error"] is not None]
    assert len(records) == 5 and len(bad) == 1
    assert "5" in json.dumps(bad[0]["error"])  # names its line number


async def test_batch_shards_write_parts_and_merge_writes_every_id_once(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(source, 20)
    async with open_server() as server:
        early = await run_cli("batch", str(source), "-o", str(out), "--merge")
        for index in (1, 2):
            result = await run_cli(
                "batch", str(source), "-o", str(out), "--shard", f"{index}/2",
                "--base-url", server.base_url,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr.decode()
            assert f"-> {out}.part-{index}-of-2" in result.stderr.decode()
        assert server.statistics().chat_requests == 20  # each request sent by one shard
    assert "no parts of" in one_error_line(early)
    to_stdout = await run_cli("batch", str(source), "-o", "-", "--shard", "1/2")
    assert "--shard needs a file OUTPUT" in one_error_line(to_stdout)
    merged = await run_cli("batch", str(source), "-o", str(out), "--merge")
    assert merged.returncode == 0, merged.stderr.decode()
    assert "merged 2 parts: 20 succeeded, 0 failed" in merged.stderr.decode()
    ids = [json.loads(x)["custom_id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 20
    again = await run_cli("batch", str(source), "-o", str(out), "--merge")
    assert "already exists" in one_error_line(again)


async def test_batch_plain_prompts_from_stdin_to_stdout() -> None:
    async with open_server() as server:
        result = await run_cli(
            "batch",
            "-",
            "-o",
            "-",
            "--model",
            "m",
            "--base-url",
            server.base_url,
            stdin=b"What is Go?\nWhat is Rust?\n",
        )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert sorted(r["custom_id"] for r in records) == ["line-1", "line-2"]
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert "2 succeeded, 0 failed" in result.stderr.decode()


async def test_batch_ctrl_c_keeps_whole_lines_and_the_same_command_resumes(
    tmp_path: Path,
) -> None:
    n = 40
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(source, n)
    async with open_server(ttft=0.4) as server:
        args = [sys.executable, "-m", "trioclient", "batch", str(source), "-o", str(out)]
        args += ["--base-url", server.base_url, "--max-concurrent", "4"]
        stderr_path = tmp_path / "stderr.txt"
        with stderr_path.open("wb") as stderr, trio.fail_after(20):
            async with spawn(
                args, stdout=subprocess.DEVNULL, stderr=stderr, env=cli_env()
            ) as process:
                # Another process writes the file: polling is the only way to watch it.
                while not out.exists() or out.read_text().count("\n") < 4:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                # From now on every new request hangs for an hour: a child that waited
                # for its requests instead of cancelling them could not stop in time.
                server.set_config(ttft=3600.0)
                process.send_signal(signal.SIGINT)
                interrupted_at = trio.current_time()
                await process.wait()
            took = trio.current_time() - interrupted_at
        assert process.returncode == 130
        # Real time, in a child process: generous for a busy machine (1.5 s was not
        # always enough), and far below the hour the server would make it wait.
        assert took < 10, f"Ctrl-C took {took:.2f} s"
        text = out.read_text()
        assert text.endswith("\n")
        kept = [json.loads(line) for line in text.splitlines()]  # only whole lines
        assert 4 <= len(kept) < n
        err = stderr_path.read_text()
        assert "Traceback" not in err
        assert f"{len(kept)} results written to {out}" in err
        assert f"{n - len(kept)} remain: run the same command to resume" in err

        server.set_config(ttft=0.0)
        before = server.statistics().chat_requests
        result = await run_cli(*args[3:])
        sent_again = server.statistics().chat_requests - before
    assert result.returncode == 0, result.stderr
    assert f"{n - len(kept)} succeeded, 0 failed, {len(kept)} skipped" in result.stderr.decode()
    ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(n))  # each exactly once
    assert sent_again == n - len(kept)


def batch_args(source: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return ["batch", str(source), "-o", str(out), "--base-url", base_url, *extra]


def output_by_id(out: Path) -> dict[str, dict[str, Any]]:
    """Every line of the output parsed (a broken line fails here), by custom_id, each once."""
    found: dict[str, dict[str, Any]] = {}
    for text in out.read_text().splitlines():
        record = json.loads(text)
        assert record["custom_id"] not in found, f"{record['custom_id']} written twice"
        found[record["custom_id"]] = record
    return found


@pytest.mark.parametrize("cut", ["mid-line", "before-newline"])
async def test_batch_resume_repairs_a_torn_last_line(tmp_path: Path, cut: str) -> None:
    # A crash while writing the last record leaves it torn: cut in the middle, or whole
    # but for its newline. Either way the same command must cut it back to the last
    # newline and send its request again, so the file stays one record per line.
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(source, 6)
    async with open_server() as server:
        args = batch_args(source, out, server.base_url)
        first = await run_cli(*args)
        assert first.returncode == 0, first.stderr
        lines = out.read_bytes().splitlines(keepends=True)
        torn_id = json.loads(lines[-1])["custom_id"]
        tail = lines[-1][: len(lines[-1]) // 2] if cut == "mid-line" else lines[-1][:-1]
        out.write_bytes(b"".join(lines[:-1]) + tail)
        before = server.statistics().chat_requests
        second = await run_cli(*args)
        sent_again = server.statistics().chat_requests - before
    assert second.returncode == 0, second.stderr
    assert "1 succeeded, 0 failed, 5 skipped (already done)" in second.stderr.decode()
    assert sent_again == 1
    records = output_by_id(out)
    assert sorted(records) == sorted(f"req-{i}" for i in range(6))
    assert records[torn_id]["error"] is None
    assert out.read_bytes().startswith(b"".join(lines[:-1]))  # the whole lines untouched


async def test_batch_retry_failed_sends_only_the_failed_ids_again(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(source, 5)
    async with open_server() as server:
        args = batch_args(source, out, server.base_url, "--max-concurrent", "1")
        # Two answers the client cannot parse: failures that are not retried.
        server.script_faults([None, "malformed_json", None, "malformed_json", None])
        first = await run_cli(*args)
        assert first.returncode == 1, first.stderr
        assert "3 succeeded, 2 failed" in first.stderr.decode()
        records = output_by_id(out)
        failed = sorted(i for i, r in records.items() if r["error"] is not None)
        assert len(failed) == 2
        good_lines = {
            line for line in out.read_text().splitlines() if json.loads(line)["error"] is None
        }

        before = server.statistics().chat_requests
        again = await run_cli(*args)  # without the flag, a failure is an answer too
        assert server.statistics().chat_requests == before
        assert "0 succeeded, 0 failed, 5 skipped (already done)" in again.stderr.decode()

        retried = await run_cli(*args, "--retry-failed")
        sent = server.statistics().chat_requests - before
    assert retried.returncode == 0, retried.stderr
    assert "2 succeeded, 0 failed, 3 skipped (already done)" in retried.stderr.decode()
    assert sent == 2
    records = output_by_id(out)  # each id once: the failed records were replaced
    assert sorted(records) == sorted(f"req-{i}" for i in range(5))
    assert all(r["error"] is None for r in records.values())
    assert good_lines <= set(out.read_text().splitlines())  # the answers kept as they were


# --- demo ----------------------------------------------------------------------------


async def test_demo_runs_every_scenario_offline() -> None:
    result = await run_cli("demo", timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    for heading in ("1. Five questions", "2. A stream", "3. A burst", "4. Deadlines", "5. A batch"):
        assert heading in out
    assert "the server never saw more than 2 at once" in out
    burst = re.search(r"(\d+)/(\d+) succeeded in [\d.]+ s; (\d+) answers were 429", out)
    assert burst is not None, out
    assert burst.group(1) == burst.group(2) and int(burst.group(3)) > 0
    assert "pauses the whole client when a budget runs dry" in out
    assert "APITimeoutError" in out and "gave up after 0.3" in out
    assert re.search(r"200 succeeded, 0 failed", out)
    summary: dict[str, Any] = {}
    match = re.search(r"wall time: ([\d.]+) s", out)
    assert match is not None
    summary["wall"] = float(match.group(1))
    assert summary["wall"] < 30
