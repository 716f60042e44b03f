"""Unit tests of the benchmark harness's own logic (not timed, no thresholds).

The benchmarks are only as honest as their arithmetic, their bodies and their
server config, so those are pinned here: the ideal-makespan and allowed-budget maths,
the OpenAI shape of the static bodies, a config nginx itself accepts, the report
tables and verdicts, and the worker drivers' counting. ``python -m benchmarks
--quick`` (run separately in CI) exercises the rest end to end.
"""

# ruff: noqa: RUF001 - the report under test is typeset (times sign, en dash).
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from benchmarks._bodies import STREAM_CHUNKS, chat_completion_body, sse_stream_body
from benchmarks._maths import allowed_requests, ideal_makespan, percentile, ratio, stream_lags
from benchmarks._nginx import nginx_config, write_site
from benchmarks._report import Check, fmt, fmt_ratio, markdown_table, render_markdown
from benchmarks._wrk import parse_wrk_output, wrk_script
from benchmarks.contenders._asyncio_driver import semaphore_gather
from benchmarks.contenders._common import Tally
from benchmarks.contenders._sse_lines import DONE, parse_data_line
from benchmarks.contenders._trio_driver import run_trio_workers
from benchmarks.run_contender import main as run_contender_main

# -- maths ------------------------------------------------------------------------------


def test_ideal_makespan_is_total_over_concurrency_when_work_dominates() -> None:
    assert ideal_makespan([0.2] * 100, 10) == pytest.approx(2.0)


def test_ideal_makespan_is_the_longest_request_when_one_straggles() -> None:
    assert ideal_makespan([5.0, 0.1, 0.1, 0.1], 50) == 5.0


@pytest.mark.parametrize(("latencies", "concurrency"), [([], 4), ([1.0], 0), ([-1.0, 2.0], 2)])
def test_ideal_makespan_rejects_nonsense(latencies: list[float], concurrency: int) -> None:
    with pytest.raises(ValueError):
        ideal_makespan(latencies, concurrency)


def test_allowed_is_a_full_bucket_plus_refill_over_the_window() -> None:
    # 1,200 rpm: a bucket of 1,200 that refills 20/s; 50 s admit 2,200 in all.
    assert allowed_requests(capacity=1200, rate_per_s=20, duration=50) == 2200
    with pytest.raises(ValueError):
        allowed_requests(capacity=1, rate_per_s=-1, duration=1)


def test_percentile_interpolates_between_order_statistics() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_is_none_without_a_reference() -> None:
    assert ratio(10, 4) == 2.5
    assert ratio(10, 0) is None


def test_stream_lag_is_time_beyond_the_servers_pacing() -> None:
    # 11 tokens at 10/s: the answer is complete 1.0 s after the request at best.
    on_time = [0.0, 0.01, 1.002, 11]
    late = [5.0, 5.3, 6.5, 11]
    lags = stream_lags([on_time, late], tokens=11, tps=10)
    assert lags == pytest.approx([0.002, 0.5])


# -- static bodies and nginx ------------------------------------------------------------


def test_chat_completion_body_is_an_openai_chat_completion() -> None:
    body = json.loads(chat_completion_body())
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_sse_body_is_chunks_then_done() -> None:
    events = sse_stream_body().decode().split("\n\n")
    assert events[-1] == ""  # the body ends with a blank line
    payloads = [event.removeprefix("data: ") for event in events[:-1]]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len(chunks) == STREAM_CHUNKS
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    with pytest.raises(ValueError, match="at least 2"):
        sse_stream_body(1)


def test_nginx_config_has_the_post_trick_and_keepalive(tmp_path: Path) -> None:
    text = nginx_config(prefix=tmp_path, root=tmp_path / "www", port=8123, run_as_root=False)
    assert "listen 127.0.0.1:8123" in text
    assert "error_page 405 =200 $uri;" in text
    assert "keepalive_requests 100000;" in text
    assert "access_log off;" in text
    assert "daemon off;" in text
    assert "user " not in text
    assert text.count("{") == text.count("}")
    assert "user root;" in nginx_config(prefix=tmp_path, root=tmp_path, port=8123, run_as_root=True)
    with pytest.raises(ValueError, match="port"):
        nginx_config(prefix=tmp_path, root=tmp_path, port=0, run_as_root=False)


# CI (`.ci/run`, CI=true) installs nginx, so there a missing nginx fails instead of
# skipping quietly; elsewhere the test skips without it.
@pytest.mark.skipif(
    shutil.which("nginx") is None and os.environ.get("CI") != "true",
    reason="nginx is not installed (CI installs it)",
)
def test_nginx_accepts_the_generated_config(tmp_path: Path) -> None:
    root = tmp_path / "www"
    write_site(root)
    assert (root / "v1/chat/completions").read_bytes() == chat_completion_body()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        nginx_config(prefix=tmp_path, root=root, port=8123, run_as_root=os.geteuid() == 0)
    )
    nginx = shutil.which("nginx")
    assert nginx is not None, "CI=true but nginx is not on PATH (.ci/run installs it)"
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -- wrk --------------------------------------------------------------------------------

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.61ms    1.02ms  21.30ms   90.12%
    Req/Sec    13.93k   512.33    14.80k    71.00%
  138612 requests in 10.00s, 86.90MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  13857.91
Transfer/sec:      8.69MB
"""


def test_parse_wrk_output_reads_rate_and_errors() -> None:
    parsed = parse_wrk_output(WRK_OUTPUT)
    assert parsed["requests_per_s"] == 13857.91
    assert parsed["requests"] == 138612
    assert parsed["non_2xx"] == 3
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk_output("wrk: connection refused")


def test_wrk_script_posts_the_json_body() -> None:
    script = wrk_script({"model": "m", "messages": [{"role": "user", "content": 'say "hi"'}]})
    assert 'wrk.method = "POST"' in script
    body_line = next(line for line in script.splitlines() if line.startswith("wrk.body"))
    literal = body_line.removeprefix("wrk.body = ")
    assert json.loads(json.loads(literal))["messages"][0]["content"] == 'say "hi"'


# -- report -----------------------------------------------------------------------------


def test_fmt_keeps_three_significant_figures() -> None:
    assert fmt(1234.5678) == "1,235"
    assert fmt(12.345) == "12.3"
    assert fmt(0.012345) == "0.0123"
    assert fmt(None) == "–"
    assert fmt_ratio(2.5) == "2.50×"
    assert fmt_ratio(None) == "–"


def test_markdown_table_aligns_numbers_and_escapes_pipes() -> None:
    table = markdown_table(["name", "req/s"], [["a|b", "1,234"], ["c", "5.6×"]])
    lines = table.splitlines()
    assert lines[0] == "| name | req/s |"
    assert lines[1] == "| --- | ---: |"
    assert lines[2] == "| a\\|b | 1,234 |"
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["one"], [["a", "b"]])


@pytest.mark.parametrize(
    ("measured", "threshold", "op", "expected"),
    [
        (5.2, 5.0, ">=", True),
        (4.9, 5.0, ">=", False),
        (1.05, 1.10, "<=", True),
        (1.2, 1.10, "<=", False),
        (0.02, 0.02, "<", False),
        (None, 1.0, ">=", None),
    ],
)
def test_check_verdicts(
    measured: float | None, threshold: float, op: str, expected: bool | None
) -> None:
    check = Check("w", "target", measured, threshold, op)  # type: ignore[arg-type]
    assert check.passed is expected


def _doc(mode: str, passed_value: float) -> dict[str, object]:
    check = Check("nonstream", "trioclient ≥ 5× openai", passed_value, 5.0, ">=")
    return {
        "mode": mode,
        "command": "python -m benchmarks",
        "started": "2025-01-01 00:00 UTC",
        "duration_s": 12.0,
        "machine_text": "2 cores",
        "workloads": {
            "nonstream": {
                "title": "1. Non-streaming",
                "setup": "5,000 requests",
                "columns": ["contender", "req/s"],
                "rows": [["trioclient", "1,000"]],
                "checks": [check.to_json()],
                "notes": ["a note"],
            }
        },
    }


def test_render_markdown_gives_verdicts_only_in_full_mode() -> None:
    failing = render_markdown(_doc("full", 3.0))
    assert "**FAIL**" in failing
    assert "| trioclient | 1,000 |" in failing
    assert "- a note" in failing
    assert "PASS" in render_markdown(_doc("full", 6.0))
    quick = render_markdown(_doc("quick", 3.0))
    assert "FAIL" not in quick and "(quick: no verdict)" in quick


# -- contender plumbing -----------------------------------------------------------------


def test_parse_data_line() -> None:
    assert parse_data_line(b'data: {"a": 1}') == {"a": 1}
    assert parse_data_line("data: [DONE]") is DONE
    assert parse_data_line(b": comment") is None
    assert parse_data_line(b"") is None


async def test_trio_workers_bound_concurrency_and_count_failures() -> None:
    tally = Tally()
    in_flight = peak = calls = 0

    async def one() -> int:
        nonlocal in_flight, peak, calls
        calls += 1
        number = calls
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.lowlevel.checkpoint()
        in_flight -= 1
        if number % 5 == 0:
            raise RuntimeError("boom")
        return 3

    with trio.fail_after(5):
        await run_trio_workers(20, 4, one, tally)
    assert calls == 20
    assert peak == 4
    assert (tally.ok, tally.failures, tally.units) == (16, 4, 48)
    assert tally.first_error == "RuntimeError: boom"
    assert len(tally.latencies) == 16


def test_semaphore_gather_bounds_concurrency() -> None:
    tally = Tally()
    in_flight = peak = 0

    async def one() -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return 1

    asyncio.run(semaphore_gather(30, 7, one, tally))
    assert peak == 7
    assert tally.ok == 30


def test_run_contender_rejects_unknown_contender(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_contender_main(["nonstream", "no-such-client", "{}"]) == 2
    assert "unknown contender" in capsys.readouterr().err


async def test_h11_floor_talks_to_a_real_server() -> None:
    # The tiniest real workload: the bare h11 contender against the embedded server.
    testing = pytest.importorskip("trioclient.testing")
    from benchmarks.contenders import h11_trio

    with trio.fail_after(20):
        async with testing.open_server(answer_tokens=5) as server:
            nonstream = await h11_trio._nonstream(
                {"base_url": server.base_url, "requests": 6, "concurrency": 2}
            )
            stream = await h11_trio._stream(
                {"base_url": server.base_url, "streams": 2, "concurrency": 2}
            )
    assert (nonstream["ok"], nonstream["failures"]) == (6, 0)
    assert (stream["ok"], stream["failures"]) == (2, 0)
    assert stream["units"] >= 2 * 5  # at least one chunk per token


async def _where_time_goes(requests: int, child: Callable[[str], list[str]]) -> Any:
    """Run one ``where_time_goes`` child against the embedded server (its base URL
    given to ``child`` for the arguments); its JSON line."""
    testing = pytest.importorskip("trioclient.testing")
    from benchmarks._embedded import REPO_ROOT, child_env

    command = [sys.executable, "-m", "benchmarks.where_time_goes", "--requests", str(requests)]
    with trio.fail_after(60):
        async with testing.open_server(answer_tokens=5) as server:
            done = await trio.run_process(
                [*command, *child(server.base_url)],
                cwd=REPO_ROOT,
                env=child_env(),
                capture_stdout=True,
                capture_stderr=True,
            )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("contender", ["trioclient", "h11-trio"])
async def test_the_profile_runs_answer_every_request_and_count_samples(contender: str) -> None:
    result = await _where_time_goes(300, lambda url: ["--profile-child", contender, url])
    assert (result["ok"], result["failures"]) == (300, 0)
    assert result["samples"] > 0
    assert sum(result["shares"].values()) == pytest.approx(1.0)
    assert "h11 (HTTP/1.1 parsing and state)" in result["shares"]


def _frame_in(filename: str, function: str, inner: Any = None) -> Any:
    """A live frame of a function named ``function`` whose code says it is in
    ``filename``, calling ``inner`` (a function taking no argument) if given."""
    namespace: dict[str, Any] = {"sys": sys, "inner": inner}
    source = (
        f"def {function}():\n"
        "    return inner() if inner is not None else sys._getframe()\n"
    )
    exec(compile(source, filename, "exec"), namespace)
    return namespace[function]()



def test_a_sample_counts_for_the_innermost_part_a_rule_claims() -> None:
    from benchmarks._sampler import OTHER, part_of

    h11_frame = _frame_in("/venv/site-packages/h11/_connection.py", "next_event")
    assert part_of(h11_frame) == "h11 (HTTP/1.1 parsing and state)"
    # trioclient's transport calling h11: the sample is h11's.
    nested = _frame_in(
        "/repo/trioclient/_transport.py",
        "_read_head",
        lambda: _frame_in("/venv/h11/_readers.py", "read"),
    )
    assert part_of(nested) == "h11 (HTTP/1.1 parsing and state)"
    scope = "/venv/trio/_core/_run.py"
    assert part_of(_frame_in(scope, "__enter__")) == "trio cancel scopes (one per attempt)"
    assert part_of(_frame_in(scope, "unrolled_run")) == "trio (scheduler, I/O waits, clock)"
    generated = "<attrs generated init trio._core._run.CancelStatus>"
    assert part_of(_frame_in(generated, "__init__")) == "trio cancel scopes (one per attempt)"
    models = "<attrs generated init trioclient._models.ChatCompletion>"
    assert part_of(_frame_in(models, "__init__")) == "trioclient typed models"
    path = _frame_in("/repo/trioclient/_requester.py", "call")
    assert part_of(path) == "trioclient request path (the rest)"
    floor = _frame_in("/repo/benchmarks/contenders/h11_trio.py", "exchange")
    assert part_of(floor) == "the benchmark's own loop"  # not trio, for its name
    assert part_of(_frame_in("/usr/lib/python3/heapq.py", "heappush")) == OTHER
    assert part_of(None) == OTHER


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX only")
def test_sampling_counts_cpu_time_and_leaves_no_timer_behind() -> None:
    from benchmarks._sampler import sampling

    before = signal.getsignal(signal.SIGPROF)
    with sampling(interval=0.001) as samples:
        spin_until = time.process_time() + 0.2
        while time.process_time() < spin_until:
            pass
    assert samples.total >= 5  # 200 ms of CPU: a sample per ms, or per 10 ms kernel tick
    assert sum(samples.shares().values()) == pytest.approx(1.0)
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGPROF) == before


@pytest.mark.parametrize("parts", ["", "models,header-budget,rate-controller,liveness"])
async def test_the_time_breakdown_arms_still_answer_every_request(parts: str) -> None:
    # An arm with a part switched off measures nothing if its requests fail: each must
    # still get every answer (the models arm reads the JSON by indexing, which fails on
    # a typed completion, so it also shows the models really were switched off).
    result = await _where_time_goes(12, lambda url: ["--child", url, parts])
    assert (result["ok"], result["failures"], result["units"]) == (12, 0, 12)


def test_the_time_breakdown_refuses_an_unknown_part_or_a_missing_name() -> None:
    from benchmarks.where_time_goes import _replace, _switch_off

    with pytest.raises(ValueError, match="unknown part 'modles'"):
        _switch_off("modles")

    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="Renamed has no 'try_pass'"):
        _replace(Renamed, "try_pass", None)
    assert not hasattr(Renamed, "try_pass")


def test_quick_runs_write_beside_not_over_the_full_results() -> None:
    from benchmarks._driver import parse_args

    assert parse_args(["--quick"]).out.parts[-2:] == ("results", "quick")
    assert parse_args([]).out.parts[-1] == "results"
    assert parse_args(["--only", "stream,import"]).selected == ["stream", "import"]


def test_only_rejects_unknown_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks._driver import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--only", "nonstream,warp-speed"])
    assert "warp-speed" in capsys.readouterr().err


# -- instruction counts (callgrind) ------------------------------------------------------

CALLGRIND_STDERR = """==4242== Callgrind, a call-graph generating cache profiler
==4242== Command: python -m benchmarks.run_contender stream h11-trio {}
==4242==
==4242== Events    : Ir
==4242== Collected : 703093748
==4242==
==4242== I   refs:      703,093,748
"""


def test_parse_collected_reads_callgrinds_total() -> None:
    from benchmarks._callgrind import parse_collected

    assert parse_collected(CALLGRIND_STDERR) == 703_093_748


def test_parse_collected_refuses_no_count_or_two_processes() -> None:
    from benchmarks._callgrind import parse_collected

    with pytest.raises(ValueError, match="no 'Collected :'"):
        parse_collected("==1== Events    : Ir\n")
    second = CALLGRIND_STDERR.replace("4242", "4243")
    with pytest.raises(ValueError, match="more than one process"):
        parse_collected(CALLGRIND_STDERR + second)


def test_instructions_per_unit_cancels_what_both_runs_share() -> None:
    from benchmarks._callgrind import instructions_per_unit

    start_up, per_chunk = 650_000_000, 43_691
    small, large = start_up + 2_000 * per_chunk, start_up + 12_000 * per_chunk
    assert instructions_per_unit(
        small_instructions=small, large_instructions=large, small_units=2_000, large_units=12_000
    ) == pytest.approx(per_chunk)
    with pytest.raises(ValueError, match="more units"):
        instructions_per_unit(
            small_instructions=1, large_instructions=2, small_units=5, large_units=5
        )
    with pytest.raises(ValueError, match="fewer instructions"):
        instructions_per_unit(
            small_instructions=large, large_instructions=small, small_units=1, large_units=2
        )


def _callgrind_pair(mode: str, start_up: int, per_unit: int, units: tuple[int, int]) -> dict:
    key = "ok" if mode == "nonstream" else "units"
    return {
        which: {
            "status": "ok",
            "ok": n if mode == "nonstream" else n // 500,
            key: n,
            "failures": 0,
            "instructions": start_up + per_unit * n,
        }
        for which, n in zip(("small", "large"), units, strict=True)
    }


def test_speed_targets_hold_trioclient_to_the_share_of_the_floor_asked() -> None:
    from benchmarks.workloads._common import speed_targets

    rates: dict[str, float | None] = {"trioclient": 550.0, "openai-trio": 100.0, "h11-trio": 1000.0}
    at_half = speed_targets("nonstream", rates, "req/s", 5.0, "floor")
    at_six_tenths = speed_targets("nonstream", rates, "req/s", 5.0, "floor", of_floor=0.6)
    assert [c.passed for c in at_half] == [True, True]
    assert [c.passed for c in at_six_tenths] == [True, False]
    assert at_six_tenths[1].target == "trioclient req/s ≥ 0.6× floor"
    assert at_six_tenths[1].measured == pytest.approx(0.55)


def test_the_import_runs_write_and_read_their_own_bytecode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even where the environment says not to write bytecode, the untimed first import
    writes trioclient's (under the run's own prefix, not in the checkout), so the timed
    ones read it as the dependencies read theirs, instead of compiling it again."""
    from benchmarks._embedded import REPO_ROOT
    from benchmarks._import_time import _once, import_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = import_env(tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in env
    _once("import trioclient", REPO_ROOT, env)
    written = [p.name for p in tmp_path.rglob("*.pyc") if "trioclient" in p.parts]
    assert "__init__." + sys.implementation.cache_tag + ".pyc" in written
    assert not (REPO_ROOT / "trioclient" / "__pycache__" / written[0]).exists()


def test_summarise_instructions_gives_per_unit_costs_ratios_and_verdicts() -> None:
    from benchmarks.workloads.instructions import summarise_instructions

    costs = {"openai-trio": 800_000, "trioclient": 70_000, "h11-trio": 44_000}
    raw = {
        "stream": {
            name: _callgrind_pair("stream", 10**9 + i, cost, (2_000, 12_000))
            for i, (name, cost) in enumerate(costs.items())
        },
        "nonstream": {
            "openai-trio": _callgrind_pair("nonstream", 4 * 10**9, 7_000_000, (20, 120)),
            "trioclient": _callgrind_pair("nonstream", 8 * 10**8, 1_500_000, (40, 240)),
            "h11-trio": _callgrind_pair("nonstream", 6 * 10**8, 600_000, (40, 240)),
        },
    }
    rows, checks, per_unit = summarise_instructions(raw)
    assert per_unit["stream"] == pytest.approx(costs)
    assert per_unit["nonstream"]["trioclient"] == pytest.approx(1_500_000)
    by_target = {c.target.split(" (")[0]: c for c in checks}
    stream_openai = by_target["stream: trioclient ≥ 10× openai-trio"]
    assert stream_openai.measured == pytest.approx(800_000 / 70_000)
    assert stream_openai.passed is True
    stream_floor = by_target["stream: trioclient ≥ 0.5× bare h11"]
    assert stream_floor.measured == pytest.approx(44_000 / 70_000)
    nonstream_openai = by_target["nonstream: trioclient ≥ 5× openai-trio"]
    assert nonstream_openai.measured == pytest.approx(7_000_000 / 1_500_000)
    assert nonstream_openai.passed is False  # 4.67 times is short of 5
    assert by_target["nonstream: trioclient ≥ 0.6× bare h11"].passed is False  # 0.4 of the floor
    trioclient_stream = next(r for r in rows if r[:2] == ["stream", "trioclient"])
    assert trioclient_stream[3] == "70,000"
    assert trioclient_stream[5:] == [fmt_ratio(800_000 / 70_000), fmt_ratio(44_000 / 70_000)]


def test_summarise_instructions_leaves_out_runs_that_failed_or_crashed() -> None:
    from benchmarks.workloads.instructions import summarise_instructions

    failed = _callgrind_pair("stream", 10**9, 70_000, (2_000, 12_000))
    failed["large"]["failures"] = 1
    crashed = _callgrind_pair("stream", 10**9, 44_000, (2_000, 12_000))
    crashed["small"] = {"status": "crashed", "reason": "boom", "instructions": None}
    raw = {
        "stream": {
            "openai-trio": _callgrind_pair("stream", 10**9, 800_000, (1_000, 4_000)),
            "trioclient": failed,
            "h11-trio": crashed,
        }
    }
    rows, checks, per_unit = summarise_instructions(raw)
    assert per_unit["stream"]["trioclient"] is None
    assert per_unit["stream"]["h11-trio"] is None
    assert all(c.measured is None for c in checks)
    cells = {r[1]: r[3] for r in rows}
    assert cells == {
        "openai-trio": "800,000",
        "trioclient": "failed requests",
        "h11-trio": "CRASHED",
    }


def test_instructions_is_full_mode_only() -> None:
    from benchmarks._driver import parse_args

    assert "instructions" in parse_args([]).selected
    assert "instructions" not in parse_args(["--quick"]).selected
    assert parse_args(["--only", "instructions"]).selected == ["instructions"]
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--only", "instructions"])


def test_interleaved_rounds_alternate_contenders_and_report_each_ones_median() -> None:
    import attrs

    from benchmarks._context import FULL, Context
    from benchmarks.workloads._common import interleaved_rounds

    walls = {"a": [4.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0], "c": [1.0]}
    calls: list[str] = []

    class FakeContext(Context):
        def run(self, workload: str, contender: str, args: Any, label: str | None = None) -> Any:
            calls.append(contender)
            if contender == "c":
                return {"status": "unavailable", "reason": "not installed"}
            if contender == "b" and calls.count("b") == 2:
                return {"status": "crashed", "reason": "boom"}
            n = calls.count(contender)
            return {"status": "ok", "units": 100, "wall_s": walls[contender][n - 1], "round": n}

    ctx = FakeContext(quick=False, sizes=attrs.evolve(FULL, throughput_rounds=3))
    chosen, notes = interleaved_rounds(ctx, "stream", ["a", "b", "c"], {}, "units")

    # Round by round, and a contender that cannot run or crashed is not run again.
    assert calls == ["a", "b", "c", "a", "b", "a"]
    # a ran at 25, 100 and 50 units/s: the median is the third round.
    assert chosen["a"]["round"] == 3 and chosen["a"]["round_rates"] == [25.0, 100.0, 50.0]
    assert chosen["b"]["status"] == "crashed"
    assert chosen["c"]["status"] == "unavailable"
    assert len(notes) == 1 and "a 25.0 / 100 / 50.0" in notes[0]


def test_the_registry_names_every_workload_in_run_order() -> None:
    from benchmarks._driver import parse_args

    assert parse_args([]).selected == [
        "nonstream",
        "stream",
        "paced",
        "instructions",
        "schedule",
        "ratelimit",
        "memory",
        "scale",
        "import",
    ]
    assert "instructions" not in parse_args(["--quick"]).selected


def test_a_registry_entry_without_a_workload_is_a_clear_error() -> None:
    from benchmarks.workloads import _load

    with pytest.raises(TypeError, match=r"_common\.py must define WORKLOAD"):
        _load(("_common",))
    with pytest.raises(ValueError, match="two workloads are named 'stream'"):
        _load(("stream", "stream"))
