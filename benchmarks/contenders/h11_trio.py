"""The pure-Python floor: bare h11 over trio sockets, no client library at all.

N workers, each owning one keep-alive connection, loop request -> read response ->
`json.loads`. Streams are split on blank lines and each ``data:`` payload decoded.
Nothing is validated beyond the status and ``[DONE]``, so this is as fast as Python
can drive HTTP/1.1 with h11: a client library cannot beat it, only approach it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import h11
import trio

from benchmarks.contenders._common import API_KEY, Meter, Result, Tally, request_body

__all__ = ["WORKLOADS"]


class _Conn:
    """One keep-alive connection and its h11 state machine."""

    def __init__(self, host: str, port: int, target: str, body: bytes) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)
        self.request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", f"{host}:{port}"),
                ("Authorization", f"Bearer {API_KEY}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ],
        )
        self.body = body

    async def _ensure_open(self) -> trio.SocketStream:
        if self.stream is None or self.conn.our_state is not h11.IDLE:
            if self.stream is not None:
                await self.stream.aclose()
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
        return self.stream

    async def exchange(self, on_data: Callable[[bytes], None]) -> None:
        """Send the request, feed each body piece to `on_data`, leave ready for reuse."""
        stream = await self._ensure_open()
        conn = self.conn
        await stream.send_all(
            conn.send(self.request)
            + conn.send(h11.Data(data=self.body))
            + conn.send(h11.EndOfMessage())
        )
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise RuntimeError(f"HTTP {event.status_code}")
            elif isinstance(event, h11.Data):
                on_data(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise RuntimeError("connection closed mid-response")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


async def _drive(
    base_url: str,
    total: int,
    concurrency: int,
    stream: bool,
    tally: Tally,
    timings: list[list[float]] | None,
) -> Result:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path.rstrip("/") + "/chat/completions"
    body = json.dumps(request_body() | ({"stream": True} if stream else {})).encode()
    conns = [_Conn(host, port, target, body) for _ in range(min(concurrency, total))]
    remaining = total
    meter = Meter()

    async def one(conn: _Conn) -> int:
        t0 = time.perf_counter()
        if not stream:
            pieces: list[bytes] = []
            await conn.exchange(pieces.append)
            _ = json.loads(b"".join(pieces))["choices"][0]["message"]["content"]
            return 1
        buffer = b""
        chunks = 0
        first = 0.0
        done = False

        def on_data(data: bytes) -> None:
            nonlocal buffer, chunks, first, done
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                    else:
                        json.loads(payload)
                        if chunks == 0:
                            first = time.perf_counter()
                        chunks += 1

        await conn.exchange(on_data)
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        if timings is not None:
            timings.append([t0, first, time.perf_counter(), chunks])
        return chunks

    async def worker(conn: _Conn) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                units = await one(conn)
            except Exception as exc:
                tally.failed(exc)
                await conn.aclose()
                conn.stream = None
                continue
            tally.latencies.append(time.perf_counter() - t0)
            tally.ok += 1
            tally.units += units

    try:
        # Warm-up: one exchange on the first connection (not counted), as every other
        # contender makes one warm-up request; the rest connect during the run.
        await one(conns[0])
        if timings is not None:
            timings.clear()
        meter.start()
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(worker, conn)
        return meter.stop()
    finally:
        with trio.CancelScope(shield=True):
            for conn in conns:
                await conn.aclose()


async def _nonstream(args: Result) -> Result:
    tally = Tally()
    out = await _drive(args["base_url"], args["requests"], args["concurrency"], False, tally, None)
    return out | tally.fields(keep_latencies=args.get("keep_latencies", False))


async def _stream(args: Result) -> Result:
    tally = Tally()
    timings: list[list[float]] | None = [] if args.get("keep_timings") else None
    out = await _drive(args["base_url"], args["streams"], args["concurrency"], True, tally, timings)
    return out | tally.fields(keep_latencies=False) | {"stream_timings": timings}


def _run(fn: Callable[[Result], object]) -> Callable[[Result], Result]:
    def runner(args: Result) -> Result:
        result: Result = trio.run(functools.partial(fn, args))  # type: ignore[arg-type]
        return result

    return runner


WORKLOADS: dict[str, Callable[[Result], Result]] = {
    "nonstream": _run(_nonstream),
    "stream": _run(_stream),
}
