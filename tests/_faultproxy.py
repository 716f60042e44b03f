"""A TCP fault proxy for tests, and the leak checks that go with it.

The embedded server can fail in every way an OpenAI-compatible API fails; what it cannot
do is misbehave *below* HTTP: hold a connection open and say nothing, cut a response at
an arbitrary byte, deliver it one byte per read, or answer with bytes no well-behaved
server would write. This proxy does those, on loopback only, with trio.

Each accepted connection gets a **mode**, taken from a script (``proxy.script([...])``,
one mode per new connection, in order) or else the proxy's ``default`` mode:

* :class:`Forward` relays bytes both ways to the upstream server, optionally after a
  ``latency``, in ``slice_bytes``-sized pieces, and cutting the response after
  ``close_after`` bytes (a clean FIN) or ``reset_after`` bytes (a TCP RST);
* :class:`Blackhole` accepts, reads whatever comes, and never answers: a connect that
  succeeds followed by silence;
* :class:`Respond` reads one HTTP request and answers it with raw bytes of the test's
  choosing (a 307 to another host, a captive portal's HTML page, a 429 with exactly the
  headers a test wants), then closes.

Counters (:meth:`FaultProxy.statistics`) let a test check that the connections it made
were closed again, and when each request arrived.

:func:`wait_until_quiet` and :func:`count_tasks` are the leak checks the fault tests
end with: every connection closed on the server's side, and no task left behind.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import trio
import trio.lowlevel

__all__ = [
    "Blackhole",
    "FaultProxy",
    "Forward",
    "ProxyStatistics",
    "Respond",
    "http_response",
    "count_tasks",
    "open_fault_proxy",
    "wait_until_quiet",
]


@attrs.frozen
class Forward:
    """Relay to the upstream server, perhaps slowly, in pieces, or cut short.

    Attributes:
        latency: Seconds (trio time) to wait before relaying each piece, either way.
        slice_bytes: Relay the response in pieces of at most this many bytes, with a
            checkpoint between pieces so the client sees them as separate reads.
        close_after: Close the client's connection cleanly after this many response bytes.
        reset_after: Reset the client's connection (RST) after this many response bytes.
    """

    latency: float = 0.0
    slice_bytes: int | None = None
    close_after: int | None = None
    reset_after: int | None = None


@attrs.frozen
class Blackhole:
    """Accept the connection, swallow the request, never answer."""


@attrs.frozen
class Respond:
    """Read one request, answer with ``raw`` (a whole HTTP response), then close."""

    raw: bytes


Mode = Forward | Blackhole | Respond


def http_response(
    status: int,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    reason: str = "",
) -> bytes:
    """The raw bytes of a ``Connection: close`` HTTP/1.1 response."""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@attrs.frozen
class ProxyStatistics:
    """What the proxy has seen.

    Attributes:
        connections_accepted: Client connections accepted.
        connections_open: Client connections not yet closed.
        bytes_down: Response bytes relayed to clients.
        request_times: ``trio.current_time()`` at which each :class:`Respond` or
            :class:`Blackhole` connection received its first request bytes.
    """

    connections_accepted: int
    connections_open: int
    bytes_down: int
    request_times: tuple[float, ...]


# A peer that went away, or a socket we reset on purpose: routine for a fault proxy.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _reset(stream: trio.SocketStream) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


@attrs.define(eq=False)
class FaultProxy:
    """A running proxy; get one from :func:`open_fault_proxy`."""

    upstream_port: int
    default: Mode = Forward()
    host: str = "127.0.0.1"
    port: int = 0
    _plan: deque[Mode] = attrs.field(factory=deque)
    _accepted: int = 0
    _open: int = 0
    _bytes_down: int = 0
    _request_times: list[float] = attrs.field(factory=list)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL through this proxy."""
        return f"http://{self.host}:{self.port}/v1"

    def script(self, modes: Iterable[Mode]) -> None:
        """Use these modes, in order, for the next connections (then ``default``)."""
        self._plan.extend(modes)

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(
            self._accepted, self._open, self._bytes_down, tuple(self._request_times)
        )

    async def handle(self, client: trio.SocketStream) -> None:
        """Serve one accepted client connection in the mode its turn says."""
        self._accepted += 1
        self._open += 1
        mode = self._plan.popleft() if self._plan else self.default
        try:
            if isinstance(mode, Blackhole):
                await self._blackhole(client)
            elif isinstance(mode, Respond):
                await self._respond(client, mode)
            else:
                await self._forward(client, mode)
        except _GONE:
            pass  # the client went away, or we reset it: both are the point
        finally:
            self._open -= 1
            await trio.aclose_forcefully(client)

    async def _blackhole(self, client: trio.SocketStream) -> None:
        if await client.receive_some(65536):
            self._request_times.append(trio.current_time())
            while await client.receive_some(65536):
                pass

    async def _respond(self, client: trio.SocketStream, mode: Respond) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = await client.receive_some(65536)
            if not data:
                return
            buffer += data
        self._request_times.append(trio.current_time())
        head, _, body = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            data = await client.receive_some(65536)
            if not data:
                return
            body += data
        await client.send_all(mode.raw)
        self._bytes_down += len(mode.raw)

    async def _forward(self, client: trio.SocketStream, mode: Forward) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        try:
            async with trio.open_nursery() as nursery:

                async def up() -> None:
                    with contextlib.suppress(*_GONE):
                        while data := await client.receive_some(65536):
                            if mode.latency:
                                await trio.sleep(mode.latency)
                            await upstream.send_all(data)
                    nursery.cancel_scope.cancel()

                async def down() -> None:
                    with contextlib.suppress(*_GONE):
                        await self._relay_down(upstream, client, mode)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(up)
                nursery.start_soon(down)
        finally:
            await trio.aclose_forcefully(upstream)

    async def _relay_down(
        self, upstream: trio.SocketStream, client: trio.SocketStream, mode: Forward
    ) -> None:
        sent = 0
        cut = mode.reset_after if mode.reset_after is not None else mode.close_after
        while data := await upstream.receive_some(65536):
            if cut is not None:
                data = data[: cut - sent]
            step = mode.slice_bytes or len(data)
            for offset in range(0, len(data), step):
                if mode.latency:
                    await trio.sleep(mode.latency)
                piece = data[offset : offset + step]
                await client.send_all(piece)
                sent += len(piece)
                self._bytes_down += len(piece)
                if mode.slice_bytes:
                    await trio.lowlevel.checkpoint()
            if cut is not None and sent >= cut:
                if mode.reset_after is not None:
                    _reset(client)
                return


@asynccontextmanager
async def open_fault_proxy(
    upstream_port: int, default: Mode = Forward(), host: str = "127.0.0.1"
) -> AsyncIterator[FaultProxy]:
    """Run a proxy to ``127.0.0.1:upstream_port`` for the duration of the block.

    Raises:
        ValueError: ``host`` is not a loopback address (a test must not listen outside).
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the fault proxy listens on loopback only, not {host!r}")
    proxy = FaultProxy(upstream_port, default, host)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, proxy.handle, 0, host=host)
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


def count_tasks() -> int:
    """How many trio tasks are alive now (the whole tree under the root task)."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


class _HasConnections(Protocol):
    def statistics(self) -> Any: ...


async def wait_until_quiet(
    *servers: _HasConnections, tasks: int | None = None, limit: float = 2.0
) -> None:
    """Wait until every server (or proxy) has no connection open and no request in
    flight, and, if ``tasks`` is given, until exactly that many trio tasks are alive.

    A server learns that a client closed a connection only when it next reads or writes
    on it (a stalled handler: when its stall ends), and a finished connection's task
    still takes a step or two to exit; so this polls, bounded by ``limit``: waiting for a
    condition, not sleeping in the hope that it holds. The pause between looks grows
    from 5 ms to 100 ms: quick on the real clock, and few leaps on an autojump clock
    (where each leap waits for real idleness first).

    Raises:
        AssertionError: something was still open after ``limit`` seconds, naming it.
    """
    pause = 0.005
    with trio.move_on_after(limit):
        while True:
            stats = [server.statistics() for server in servers]
            busy = [
                s
                for s in stats
                if s.connections_open != 0 or getattr(s, "in_flight_requests", 0) != 0
            ]
            alive = count_tasks()
            if not busy and (tasks is None or alive == tasks):
                return
            await trio.sleep(pause)
            pause = min(2 * pause, 0.1)
    raise AssertionError(
        f"not quiet after {limit} s: busy servers {busy}; {alive} tasks alive, expected {tasks}"
    )
