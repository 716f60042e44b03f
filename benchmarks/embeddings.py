"""Embeddings throughput: trioclient beside the openai SDK and a bare h11 floor.

``python -m benchmarks.embeddings [--requests N] [--concurrency C] [--inputs K]
[--dimensions D] [--rounds R]``

nginx (one worker, one core) serves a fixed embeddings answer, ``K`` vectors of ``D``
float32 values in base64, for ``POST /v1/embeddings``: the static-file trick of
:mod:`benchmarks._nginx` (``error_page 405 =200 $uri``), so the server costs next to
nothing and the client is what is measured. Each contender sends ``N`` requests of
``K`` short texts with ``C`` in flight and ends with every vector as Python floats:

* ``trioclient``: ``client.embeddings.create`` (asks for base64, decodes in C);
* ``openai-asyncio``: ``AsyncOpenAI().embeddings.create`` on asyncio, as its users run
  it (it asks for base64 too and decodes with numpy when installed, else ``array``);
* ``h11-floor``: bare h11 over trio sockets, one keep-alive connection per worker,
  ``json.loads`` and the same base64 + ``array('f')`` decode, nothing validated: as
  fast as Python drives HTTP/1.1, a library can only approach it.

The contenders run one after another in this process, ``R`` interleaved rounds, and
each one's median round is reported, as requests per second and as ratios: the targets
are ``trioclient >= 5x openai-asyncio`` and ``trioclient >= 0.5x h11-floor``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import binascii
import contextlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

API_KEY = "sk-bench"
MODEL = "text-embedding-3-small"


def embeddings_body(inputs: int, dimensions: int) -> bytes:
    """The fixed answer: ``inputs`` unit-ish vectors of ``dimensions`` float32, base64."""
    data = []
    for index in range(inputs):
        values = [((index * 31 + i * 17) % 1000) / 1000.0 - 0.5 for i in range(dimensions)]
        raw = struct.pack(f"<{dimensions}f", *values)
        data.append(
            {"object": "embedding", "index": index, "embedding": base64.b64encode(raw).decode()}
        )
    body = {
        "object": "list",
        "data": data,
        "model": MODEL,
        "usage": {"prompt_tokens": inputs * 4, "total_tokens": inputs * 4},
    }
    return json.dumps(body, separators=(",", ":")).encode()


@contextlib.contextmanager
def open_static_server(body: bytes) -> Iterator[str]:
    """nginx serving ``body`` for ``POST /v1/embeddings``; yields the base URL."""
    from benchmarks._nginx import nginx_config
    from benchmarks._procs import ensure_tool, free_port, stop_process, wait_for_port

    binary = ensure_tool("nginx", "nginx")
    with tempfile.TemporaryDirectory(prefix="trioclient-bench-embeddings-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)
        root = prefix / "www"
        target = root / "v1" / "embeddings"
        target.parent.mkdir(parents=True)
        target.write_bytes(body)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            nginx_config(prefix=prefix, root=root, port=port, run_as_root=os.geteuid() == 0)
        )
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            stop_process(proc)


def _texts(inputs: int) -> list[str]:
    return [f"text number {i} to embed" for i in range(inputs)]


# -- contenders: each returns the seconds it took to get every vector as floats ---------


def run_trioclient(base_url: str, requests: int, concurrency: int, inputs: int) -> float:
    import trio

    import trioclient

    texts = _texts(inputs)

    async def main() -> float:
        async with trioclient.Client(
            api_key=API_KEY, base_url=base_url, max_concurrent=concurrency
        ) as client:
            remaining = requests

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    result = await client.embeddings.create(model=MODEL, input=texts)
                    assert len(result.data) == inputs

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)
            return time.perf_counter() - start

    return trio.run(main)


def run_openai(base_url: str, requests: int, concurrency: int, inputs: int) -> float:
    import openai

    texts = _texts(inputs)

    async def main() -> float:
        client = openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url, max_retries=2)
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                result = await client.embeddings.create(model=MODEL, input=texts)
                assert len(result.data) == inputs and isinstance(result.data[0].embedding, list)

        try:
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - start
        finally:
            await client.close()

    return asyncio.run(main())


def run_h11_floor(base_url: str, requests: int, concurrency: int, inputs: int) -> float:
    from urllib.parse import urlsplit

    import h11
    import trio

    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path.rstrip("/") + "/embeddings"
    payload = json.dumps(
        {"model": MODEL, "input": _texts(inputs), "encoding_format": "base64"}
    ).encode()
    head = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", f"{host}:{port}"),
            ("Authorization", f"Bearer {API_KEY}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
        ],
    )

    async def main() -> float:
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            stream = await trio.open_tcp_stream(host, port)
            conn = h11.Connection(h11.CLIENT)
            async with stream:
                while remaining > 0:
                    remaining -= 1
                    await stream.send_all(
                        conn.send(head)
                        + conn.send(h11.Data(data=payload))
                        + conn.send(h11.EndOfMessage())
                    )
                    chunks: list[bytes] = []
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                        elif isinstance(event, h11.Data):
                            chunks.append(bytes(event.data))
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        elif isinstance(event, h11.Response) and event.status_code != 200:
                            raise RuntimeError(f"status {event.status_code}")
                    body = json.loads(b"".join(chunks))
                    for item in body["data"]:
                        values = array.array("f")
                        values.frombytes(binascii.a2b_base64(item["embedding"]))
                        item["embedding"] = values.tolist()
                    conn.start_next_cycle()

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        return time.perf_counter() - start

    return trio.run(main)


CONTENDERS: dict[str, Callable[[str, int, int, int], float]] = {
    "trioclient": run_trioclient,
    "openai-asyncio": run_openai,
    "h11-floor": run_h11_floor,
}


def measure(
    *, requests: int, concurrency: int, inputs: int, dimensions: int, rounds: int
) -> dict[str, Any]:
    """Run every contender ``rounds`` times, interleaved; their median requests/s."""
    body = embeddings_body(inputs, dimensions)
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with open_static_server(body) as base_url:
        for _ in range(rounds):
            for name, run in CONTENDERS.items():
                seconds = run(base_url, requests, concurrency, inputs)
                rates[name].append(requests / seconds)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "config": {
            "requests": requests,
            "concurrency": concurrency,
            "inputs": inputs,
            "dimensions": dimensions,
            "rounds": rounds,
            "response_bytes": len(body),
        },
        "requests_per_second": medians,
        "rounds_per_second": rates,
        "vs_openai": medians["trioclient"] / medians["openai-asyncio"],
        "vs_h11_floor": medians["trioclient"] / medians["h11-floor"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.embeddings", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=8, help="texts per request")
    parser.add_argument("--dimensions", type=int, default=256, help="floats per vector")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = measure(
        requests=args.requests,
        concurrency=args.concurrency,
        inputs=args.inputs,
        dimensions=args.dimensions,
        rounds=args.rounds,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    config = result["config"]
    print(
        f"embeddings: {config['requests']} requests x {config['inputs']} inputs x "
        f"{config['dimensions']} floats (base64, {config['response_bytes']} B answers), "
        f"{config['concurrency']} in flight, median of {config['rounds']} rounds"
    )
    for name, rate in result["requests_per_second"].items():
        print(f"  {name:15} {rate:9.0f} requests/s")
    vs_openai, vs_floor = result["vs_openai"], result["vs_h11_floor"]
    print(
        f"  trioclient / openai-asyncio = {vs_openai:.2f}x (target >= 5x)  {'PASS' if vs_openai >= 5 else 'FAIL'}"
    )
    print(
        f"  trioclient / h11-floor      = {vs_floor:.2f}x (target >= 0.5x)  {'PASS' if vs_floor >= 0.5 else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
