"""The embedded server's own speed (issue 3): ``python -m benchmarks.embedded_server``.

Two figures, each with the server pinned to core 0 and its load generator to core 1
(``taskset``), so the server has one core to itself as the target says:

1. **Non-streaming throughput**: wrk POSTs chat completions for 10 s over 64 keep-alive
   connections, zero latency. Target: >= 2,000 requests/s on one core.
2. **Paced streams on schedule**: 1,000 concurrent streams (time to first token 0.5 s,
   20 tokens/s, 40 tokens) from a client in another process; the server records, for
   every chunk, how late it was sent against its schedule. Target: p99 <= 50 ms.

This is a measurement, not a test: it prints the figures and PASS/FAIL and exits 0
unless something crashed. It installs wrk with apt-get if it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._procs import ensure_tool, free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parent.parent

_SERVER = """
import json, sys, trio
from trioclient.testing import serve

async def main():
    config = json.loads(sys.argv[2])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(port=int(sys.argv[1]), task_status=task_status, **config)
        )
        print("ready", flush=True)
        await trio.sleep(float(sys.argv[3]))
        s = server.statistics()
        print(json.dumps({
            "requests": s.requests_total,
            "statuses": {str(k): v for k, v in s.responses_by_status.items()},
            "handler_errors": s.handler_errors,
            "paced_chunks": s.paced_chunks,
            "lag_p50_ms": s.stream_lag_p50 * 1000,
            "lag_p99_ms": s.stream_lag_p99 * 1000,
            "lag_max_ms": s.stream_lag_max * 1000,
        }), flush=True)
        nursery.cancel_scope.cancel()

trio.run(main)
"""

_STREAM_CLIENT = """
import json, sys, trio

PORT, N = int(sys.argv[1]), int(sys.argv[2])
BODY = json.dumps({"model": "m", "stream": True,
                   "messages": [{"role": "user", "content": "stream tokens about trio"}]}).encode()
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\\r\\nhost: bench\\r\\n"
           b"authorization: Bearer sk-bench\\r\\ncontent-type: application/json\\r\\n"
           b"connection: close\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(BODY)) + BODY
whole = 0

async def one():
    global whole
    stream = await trio.open_tcp_stream("127.0.0.1", PORT)
    async with stream:
        await stream.send_all(REQUEST)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    whole += b"data: [DONE]" in data

async def main():
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(one)
    print(json.dumps({"streams": N, "whole": whole}), flush=True)

trio.run(main)
"""

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body   = '{"model":"trioclient-sim","messages":[{"role":"user","content":"Tell me about trio"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _start_server(port: int, config: dict[str, object], seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-c",
            _SERVER,
            str(port),
            json.dumps(config),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        env=_env(),
    )


def _server_figures(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=120)
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def throughput(seconds: int = 10, connections: int = 64) -> dict[str, float]:
    wrk = ensure_tool("wrk", "wrk")
    port = free_port()
    server = _start_server(port, {}, seconds + 3)
    try:
        wait_for_port(port, None)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(_WRK_SCRIPT)
        done = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}/v1/chat/completions",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        os.unlink(script.name)
        figures = _server_figures(server)
    finally:
        if server.poll() is None:
            stop_process(server)
    requests_per_s = next(
        float(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith("Requests/sec")
    )
    return {
        "requests_per_s": requests_per_s,
        "non_200": sum(
            v
            for k, v in figures["statuses"].items()
            if k != "200"  # type: ignore[attr-defined]
        ),
    }


def paced_streams(streams: int = 1000) -> dict[str, float]:
    port = free_port()
    # 0.5 s to the first token, then 40 tokens at 20/s: about 2.5 s a stream.
    server = _start_server(port, {"ttft": 0.5, "tps": 20.0, "answer_tokens": 40}, 12)
    try:
        wait_for_port(port, None)
        client = subprocess.run(
            ["taskset", "-c", "1", sys.executable, "-c", _STREAM_CLIENT, str(port), str(streams)],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
            timeout=120,
        )
        figures = _server_figures(server)
    finally:
        if server.poll() is None:
            stop_process(server)
    return {**json.loads(client.stdout.strip().splitlines()[-1]), **figures}


def main() -> int:
    print("embedded server: non-streaming throughput (wrk, 64 connections, 10 s; one core)")
    t = throughput()
    verdict = "PASS" if t["requests_per_s"] >= 2000 and not t["non_200"] else "FAIL"
    print(
        f"  {t['requests_per_s']:,.0f} requests/s, {t['non_200']} non-200  -> target >= 2,000: {verdict}"
    )
    print("embedded server: 1,000 concurrent paced streams (ttft 0.5 s, 20 tokens/s, 40 tokens)")
    p = paced_streams()
    verdict = "PASS" if p["lag_p99_ms"] <= 50 and p["whole"] == p["streams"] else "FAIL"
    print(
        f"  {p['whole']}/{p['streams']} streams whole; {p['paced_chunks']:,.0f} chunks; lag behind "
        f"schedule p50 {p['lag_p50_ms']:.1f} ms, p99 {p['lag_p99_ms']:.1f} ms, max "
        f"{p['lag_max_ms']:.1f} ms  -> target p99 <= 50 ms: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
