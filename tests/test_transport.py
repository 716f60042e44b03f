"""TrioTransport against real loopback servers.

Every server here is written in this file, on raw trio sockets and h11, so the
transport is checked against an independent reading of HTTP/1.1 and against
deliberately broken servers (early close, reset, oversized head, silence).
These tests use the real clock: autojump would skip time while tasks wait on real
socket I/O. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import cast

import attrs
import h11
import httpx
import pytest
import trio

from trioclient import ResponseTooLargeError, Timeout
from trioclient._attempt import read_body
from trioclient._transport import BodyStream, TrioTransport, _Connection

LIMIT = 10.0  # seconds any single test may wait on the network


@attrs.define
class Server:
    """What a test server saw: connection count, requests, and its address."""

    port: int = 0
    accepts: int = 0
    requests: list[dict[str, object]] = attrs.field(factory=list)
    # Set each time a server connection sees the client close it (EOF or reset).
    client_closed: list[int] = attrs.field(factory=list)
    closed_event: trio.Event = attrs.field(factory=trio.Event)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def note_client_closed(self, index: int) -> None:
        self.client_closed.append(index)
        self.closed_event.set()
        self.closed_event = trio.Event()


Handler = Callable[[trio.SocketStream, Server, int], Awaitable[None]]


@asynccontextmanager
async def open_server(
    handler: Handler, *, receive_buffer: int | None = None
) -> AsyncIterator[Server]:
    """Serve ``handler(stream, server, connection_index)`` on 127.0.0.1, any port;
    ``receive_buffer`` sets the accepted sockets' SO_RCVBUF (for a full pipe)."""
    server = Server()

    async def on_connection(stream: trio.SocketStream) -> None:
        index = server.accepts
        server.accepts += 1
        try:
            await handler(stream, server, index)
        except trio.BrokenResourceError:
            server.note_client_closed(index)
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        if receive_buffer is not None:  # inherited by the sockets it accepts
            listeners[0].socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        yield server
        nursery.cancel_scope.cancel()


async def read_request(
    stream: trio.abc.Stream, conn: h11.Connection
) -> tuple[h11.Request, bytes] | None:
    """Read one request with h11; ``None`` when the client closed the connection."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        else:
            raise AssertionError(f"unexpected event {event!r}")


async def wait_for_eof(stream: trio.SocketStream, server: Server, index: int) -> None:
    """Read until the client closes, then record it."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass
    server.note_client_closed(index)


async def respond_json(
    stream: trio.abc.Stream, conn: h11.Connection, payload: object, extra: list[tuple[str, str]]
) -> None:
    data = json.dumps(payload).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        ("x-test", "yes"),
        *extra,
    ]
    await stream.send_all(
        conn.send(h11.Response(status_code=200, headers=headers, reason=b"Fine"))
        + conn.send(h11.Data(data=data))
        + conn.send(h11.EndOfMessage())
    )


async def echo(
    stream: trio.abc.Stream,
    server: Server,
    index: int,
    *,
    max_requests: int | None = None,
) -> None:
    """A keep-alive server answering each request with JSON describing it."""
    conn = h11.Connection(h11.SERVER)
    served = 0
    while max_requests is None or served < max_requests:
        got = await read_request(stream, conn)
        if got is None:
            server.note_client_closed(index)
            return
        request, body = got
        seen = {
            "connection": index,
            "method": request.method.decode(),
            "target": request.target.decode(),
            "headers": {k.decode(): v.decode() for k, v in request.headers},
            "body": body.decode(),
        }
        server.requests.append(seen)
        await respond_json(stream, conn, seen, [])
        served += 1
        conn.start_next_cycle()


async def answer_chunked(stream: trio.SocketStream, first: bytes) -> h11.Connection:
    """Read one request, then send a chunked 200 head with ``first`` as its first piece
    of body (in one write); the caller goes on with the returned connection."""
    conn = h11.Connection(h11.SERVER)
    await read_request(stream, conn)
    await stream.send_all(
        conn.send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
        + conn.send(h11.Data(data=first))
    )
    return conn


async def answer_in_two_parts(
    stream: trio.SocketStream, first: bytes, go: trio.Event, second: bytes
) -> None:
    """Answer one request with a chunked body: ``first`` with the head, ``second`` and
    the end once ``go`` is set."""
    conn = await answer_chunked(stream, first)
    await go.wait()
    await stream.send_all(conn.send(h11.Data(data=second)) + conn.send(h11.EndOfMessage()))


async def send(transport: TrioTransport, method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request through the transport, body read and response closed."""
    request = httpx.Request(method, url, **kwargs)  # type: ignore[arg-type]
    response = await transport.handle_async_request(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


@pytest.fixture
async def transport() -> AsyncIterator[TrioTransport]:
    t = TrioTransport()
    try:
        yield t
    finally:
        await t.aclose()


async def test_get_and_post_round_trip(transport: TrioTransport) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            got = await send(transport, "GET", server.url("/v1/models?limit=2&x=%20y"))
            assert got.status_code == 200
            assert got.headers["x-test"] == "yes"
            assert got.headers["content-type"] == "application/json"
            assert got.extensions["reason_phrase"] == b"Fine"
            assert got.extensions["http_version"] == b"HTTP/1.1"
            seen = got.json()
            assert seen["method"] == "GET"
            assert seen["target"] == "/v1/models?limit=2&x=%20y"
            assert seen["headers"]["host"] == f"127.0.0.1:{server.port}"

            payload = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
            got = await send(
                transport,
                "POST",
                server.url("/v1/chat/completions"),
                json=payload,
                headers={"Authorization": "Bearer k"},
            )
            seen = got.json()
            assert seen["method"] == "POST"
            assert json.loads(seen["body"]) == payload
            assert seen["headers"]["authorization"] == "Bearer k"
            assert got.request.url.path == "/v1/chat/completions"


async def test_host_header_added_when_missing(transport: TrioTransport) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            request = httpx.Request("GET", server.url("/"))
            del request.headers["host"]
            response = await transport.handle_async_request(request)
            await response.aread()
            assert response.json()["headers"]["host"] == f"127.0.0.1:{server.port}"


async def test_sequential_requests_reuse_one_connection(transport: TrioTransport) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            for _ in range(3):
                await send(transport, "GET", server.url())
            assert server.accepts == 1
            assert [r["connection"] for r in server.requests] == [0, 0, 0]


async def test_response_not_read_to_end_is_not_reused(transport: TrioTransport) -> None:
    big = b"x" * 1_000_000

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        head = conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(big)))]))
        await stream.send_all(head)
        try:
            await stream.send_all(big)
        except trio.BrokenResourceError:
            pass
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            # aclosing: httpx's own iterator is an async generator that must not be
            # left for the garbage collector (httpx#3686).
            async with aclosing(cast(AsyncGenerator[bytes], response.aiter_raw())) as chunks:
                async for chunk in chunks:
                    assert chunk
                    break
            await response.aclose()
            await response.aclose()  # idempotent
            while not server.client_closed:
                await server.closed_event.wait()
            assert server.client_closed == [0]
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            await response.aclose()
            assert server.accepts == 2


async def answer_once_then_close(stream: trio.SocketStream, server: Server, index: int) -> None:
    """Answer one request with ``Connection: close``, then wait for the client's close."""
    conn = h11.Connection(h11.SERVER)
    await read_request(stream, conn)
    await respond_json(stream, conn, {"ok": True}, [("connection", "close")])
    await wait_for_eof(stream, server, index)


async def test_connection_close_response_is_not_reused(transport: TrioTransport) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_once_then_close) as server:
            await send(transport, "GET", server.url())
            await send(transport, "GET", server.url())
            assert server.accepts == 2


@pytest.mark.parametrize("answers", [1, 3])
async def test_idle_connection_closed_by_server_is_replaced(
    transport: TrioTransport, answers: int
) -> None:
    """The liveness check at reuse: a readable idle socket (here: the server's FIN)
    is closed before anything is written, and a fresh connection serves the request.
    Without the check the request would go out on the dead connection and fail. With
    3 answers first, the poll set the connection keeps for the check (made at its
    first reuse) is polled again at the later ones and still sees the close."""

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await echo(stream, server, index, max_requests=answers if index == 0 else None)
        if index == 0:
            server.note_client_closed(index)  # here: the server closes the idle connection

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            for _ in range(answers):
                got = await send(transport, "GET", server.url())
                assert got.json()["connection"] == 0
            while not server.client_closed:
                await server.closed_event.wait()
            await trio.sleep(0.05)  # let the FIN reach the client's socket
            got = await send(transport, "GET", server.url())
            assert got.json()["connection"] == 1
            assert server.accepts == 2
            assert len(server.requests) == answers + 1


def race_handler() -> Handler:
    """Connection 0 answers one request, then reads the next and hangs up silently.

    That is the keep-alive race seen from the client: its request went out on a
    connection the server was closing at the same moment.
    """

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        if index > 0:
            await echo(stream, server, index)
            return
        conn = h11.Connection(h11.SERVER)
        got = await read_request(stream, conn)
        assert got is not None
        server.requests.append({"connection": index, "body": got[1].decode()})
        await respond_json(stream, conn, {"connection": index}, [])
        conn.start_next_cycle()
        got = await read_request(stream, conn)
        assert got is not None
        server.requests.append({"connection": index, "body": got[1].decode(), "dropped": True})

    return handler


async def test_request_that_went_out_is_never_sent_again(transport: TrioTransport) -> None:
    """The keep-alive race: the transport reports it and leaves retrying to the caller.

    The server did receive the second request, so sending it again on a fresh
    connection would run (and bill) it twice, unknown to the caller's retry policy.
    """
    with trio.fail_after(LIMIT):
        async with open_server(race_handler()) as server:
            await send(transport, "POST", server.url(), content=b"first")
            request = httpx.Request("POST", server.url(), content=b"second")
            with pytest.raises(httpx.RemoteProtocolError, match="without sending") as info:
                await transport.handle_async_request(request)
            assert info.value.request is request
            assert server.accepts == 1
            assert server.requests[-1] == {"connection": 0, "body": "second", "dropped": True}
            assert len(server.requests) == 2


async def test_a_cancelled_caller_writes_nothing_on_a_reused_connection(
    transport: TrioTransport,
) -> None:
    """Reusing an idle connection takes no wait before the write, and the write on a
    plain socket has no schedule point of its own: it must still look for a pending
    cancellation first, or a request nobody waits for would reach the server."""
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            await send(transport, "POST", server.url(), content=b"first")
            with trio.CancelScope() as scope:
                scope.cancel()
                await transport.handle_async_request(
                    httpx.Request("POST", server.url(), content=b"never")
                )
            assert scope.cancelled_caught
            got = await send(transport, "POST", server.url(), content=b"third")
            assert [r["body"] for r in server.requests] == ["first", "third"]
            assert got.json()["connection"] == 1  # the cancelled one was dropped


async def test_a_write_the_kernel_takes_in_part_is_finished(transport: TrioTransport) -> None:
    """A request larger than the socket buffers on both sides, to a server not reading
    yet: the direct write takes what fits, and the rest goes on once there is room,
    so the server gets every byte once, in order."""
    may_read = trio.Event()

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        for number in range(2):
            if number == 1:
                await may_read.wait()
            got = await read_request(stream, conn)
            assert got is not None
            server.requests.append({"body": got[1]})
            await respond_json(stream, conn, {"number": number}, [])
            conn.start_next_cycle()
        await wait_for_eof(stream, server, index)

    # 60,000 bytes, each number once: sent directly (below the watched size).
    body = b"".join(b"%07d," % n for n in range(7500))
    with trio.fail_after(LIMIT):
        async with open_server(handler, receive_buffer=4096) as server:
            await send(transport, "GET", server.url())  # a connection to reuse
            [conn] = transport._idle[(b"http", b"127.0.0.1", server.port)]
            assert conn.fd >= 0  # the direct path is the one under test
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(send, transport, "POST", server.url(), content=body)
                )
                await trio.sleep(0.1)
                may_read.set()
            assert server.requests[-1]["body"] == body
            assert server.accepts == 1


async def race_a_read_with_a_close() -> object:
    """One task waits to read a connection; when its bytes come, another task, woken
    by the same poll, closes it and opens a new socket (likely on the number just
    freed) with bytes of its own waiting. What the read gave: bytes, or its error."""
    ours, server = socket.socketpair()
    go, trigger = socket.socketpair()
    sock = trio.socket.from_stdlib_socket(ours)
    conn = _Connection(
        stream=trio.SocketStream(sock),
        sock=sock,
        h11=h11.Connection(h11.CLIENT),
        origin=(b"http", b"127.0.0.1", 9),
        fd=sock.fileno(),
    )
    go_sock = trio.socket.from_stdlib_socket(go)
    outcome: list[object] = []
    others: list[socket.socket] = []

    async def reader() -> None:
        try:
            outcome.append(await conn.receive())
        except trio.ClosedResourceError as exc:
            outcome.append(exc)

    async def closer() -> None:
        await trio.lowlevel.wait_readable(go_sock)
        sock.close()
        theirs, peer = socket.socketpair()
        peer.send(b"another connection's bytes")
        others.extend((theirs, peer))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(closer)
            await trio.sleep(0.001)
            server.send(b"ours")  # both woken by the same poll
            trigger.send(b"go")
    finally:
        for each in (server, go_sock, trigger, *others):
            each.close()
    [got] = outcome
    return got


async def test_a_read_whose_connection_was_closed_after_its_wait_reads_nothing() -> None:
    """The read's wait has ended, and another task runs first and closes the connection
    (a stream closed from elsewhere): the read must fail as closed, never read from
    whatever the socket's number names now. trio runs the two woken tasks in either
    order, so this tries until the closer has run first five times."""
    closer_first = 0
    with trio.fail_after(LIMIT):
        for _ in range(200):
            got = await race_a_read_with_a_close()
            assert got == b"ours" or isinstance(got, trio.ClosedResourceError), got
            if isinstance(got, trio.ClosedResourceError):
                closer_first += 1
                if closer_first == 5:
                    break
    assert closer_first == 5


class OneShotBody(httpx.AsyncByteStream):
    """A streaming request body: it can be sent once, so it must never be replayed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> OneShotBody:
        return self

    async def __anext__(self) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)


async def test_keepalive_race_with_streaming_body_is_not_sent_again(
    transport: TrioTransport,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(race_handler()) as server:
            await send(transport, "POST", server.url(), content=b"first")
            request = httpx.Request("POST", server.url(), content=OneShotBody([b"a", b"b"]))
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as info:
                await transport.handle_async_request(request)
            assert info.value.request is request
            assert server.accepts == 1
            assert server.requests[-1] == {"connection": 0, "body": "ab", "dropped": True}


async def test_streaming_request_body_is_sent(transport: TrioTransport) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            request = httpx.Request(
                "POST", server.url(), content=OneShotBody([b"one ", b"", b"two"])
            )
            response = await transport.handle_async_request(request)
            await response.aread()
            assert response.json()["body"] == "one two"
            assert response.json()["headers"]["transfer-encoding"] == "chunked"


async def test_connection_refused_is_connect_error(transport: TrioTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/")
    with trio.fail_after(LIMIT), pytest.raises(httpx.ConnectError) as info:
        await transport.handle_async_request(request)
    assert info.value.request is request
    # The message names the address and the real reason, not just "failed".
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "refused" in str(info.value).lower()


async def test_unsupported_scheme_is_clear() -> None:
    transport = TrioTransport()
    with pytest.raises(httpx.UnsupportedProtocol, match="ftp"):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))


async def test_silent_tls_server_is_connect_timeout() -> None:
    """https to a server that never answers the TLS handshake times out and cleans up."""
    transport = TrioTransport(connect_timeout=0.3)
    with trio.fail_after(LIMIT):
        async with open_server(wait_for_eof) as server:
            request = httpx.Request("GET", f"https://127.0.0.1:{server.port}/")
            start = trio.current_time()
            with pytest.raises(httpx.ConnectTimeout) as info:
                await transport.handle_async_request(request)
            assert 0.25 < trio.current_time() - start < 3
            assert info.value.request is request
            while not server.client_closed:
                await server.closed_event.wait()
    await transport.aclose()


async def test_reset_mid_body_is_read_error(transport: TrioTransport) -> None:
    client_got_bytes = trio.Event()

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[("content-length", "1000")]))
            + b"x" * 100
        )
        await client_got_bytes.wait()
        # SO_LINGER with a zero timeout turns close() into a TCP reset.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            chunks: list[bytes] = []
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    client_got_bytes.set()
            assert b"".join(chunks) == b"x" * 100
            assert info.value.request is response.request
            await response.aclose()


async def test_close_mid_body_is_remote_protocol_error(transport: TrioTransport) -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[("content-length", "1000")]))
            + b"x" * 100
        )

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
                await response.aread()
            await response.aclose()
            assert server.accepts == 1


@pytest.mark.parametrize(
    "sent",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\n\r\nbody"],
    ids=["nothing", "half-head", "no-framing-then-close-is-ok"],
)
async def test_close_before_head_is_remote_protocol_error(
    transport: TrioTransport, sent: bytes
) -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await stream.send_all(sent)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            request = httpx.Request("GET", server.url())
            if sent.endswith(b"body"):
                # A body without framing legitimately ends at connection close.
                response = await send(transport, "GET", server.url())
                assert response.content == b"body"
                return
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await transport.handle_async_request(request)
            assert info.value.request is request


async def test_oversized_head_is_remote_protocol_error() -> None:
    transport = TrioTransport(max_response_head=1024)

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 4000 + b"\r\n")
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await transport.handle_async_request(httpx.Request("GET", server.url()))
            while not server.client_closed:
                await server.closed_event.wait()
    await transport.aclose()


async def test_informational_responses_are_skipped(transport: TrioTransport) -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await stream.send_all(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await send(transport, "POST", server.url(), content=b"x")
            assert response.status_code == 201
            assert response.content == b"ok"


async def test_body_chunks_arrive_as_sent(transport: TrioTransport) -> None:
    """The first chunk reaches the caller while the server still holds back the second
    (a transport that buffered the body would wait forever here). `take_whole` finds
    the body incomplete, and the reads start with the part it already decoded."""
    client_saw_first = trio.Event()

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await answer_in_two_parts(stream, b"data: one\n\n", client_saw_first, b"data: two\n\n")
        await echo(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            assert cast(BodyStream, response.stream).take_whole() is None
            chunks: list[bytes] = []
            async for chunk in response.aiter_raw():
                assert isinstance(chunk, bytes)
                if not chunks:
                    client_saw_first.set()
                chunks.append(chunk)
            await response.aclose()
            assert chunks == [b"data: one\n\n", b"data: two\n\n"]
            # Read to the end, so its connection serves the next request.
            await send(transport, "GET", server.url())
            assert server.accepts == 1


async def test_a_body_that_came_with_its_head_is_taken_whole(transport: TrioTransport) -> None:
    """`take_whole` hands over a body that arrived in the head's read, and hangs the
    connection back up for the next request."""
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            response = await transport.handle_async_request(
                httpx.Request("POST", server.url("/whole"), content=b"hello")
            )
            stream = cast(BodyStream, response.stream)
            whole = stream.take_whole()
            assert whole is not None
            assert json.loads(whole)["body"] == "hello"
            assert stream.at_end
            await send(transport, "GET", server.url())
            assert server.accepts == 1


async def test_a_whole_body_from_a_closing_server_closes_its_connection(
    transport: TrioTransport,
) -> None:
    """Taken whole, an answer with ``Connection: close`` still closes its socket at
    once (`take_whole` cannot await: `read_body` closes it), not when collected."""
    with trio.fail_after(LIMIT):
        async with open_server(answer_once_then_close) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            assert json.loads(await read_body(response, Timeout(), 1 << 20)) == {"ok": True}
            with trio.fail_after(2):
                while not server.client_closed:
                    await server.closed_event.wait()
            assert server.client_closed == [0]
            assert response.is_closed


async def test_a_whole_body_over_the_bound_is_refused(transport: TrioTransport) -> None:
    """A body with no Content-Length that came whole, over ``max_response_bytes``: the
    bound holds on the path that takes it at once too."""

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
            + conn.send(h11.Data(data=b"x" * 300))
            + conn.send(h11.EndOfMessage())
        )
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            with pytest.raises(ResponseTooLargeError, match=r"max_response_bytes=100$"):
                await read_body(response, Timeout(), 100)
            assert response.is_closed


async def test_many_concurrent_requests_need_no_pool_slot(transport: TrioTransport) -> None:
    """200 requests all in flight at once: the server answers none until all arrived.

    A transport with a connection cap or a pool queue deadlocks here.
    """
    n = 200
    arrived = 0
    all_arrived = trio.Event()

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        nonlocal arrived
        conn = h11.Connection(h11.SERVER)
        while True:
            got = await read_request(stream, conn)
            if got is None:
                return
            arrived += 1
            if arrived >= n:
                all_arrived.set()
            await all_arrived.wait()
            await respond_json(stream, conn, {"connection": index}, [])
            conn.start_next_cycle()

    results: list[int] = []

    async def one(server: Server) -> None:
        response = await send(transport, "GET", server.url())
        results.append(response.json()["connection"])

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one, server)
            assert len(results) == n
            assert server.accepts == n
            # The second wave finds every connection idle and opens none.
            results.clear()
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one, server)
            assert len(results) == n
            assert server.accepts == n
            assert arrived == 2 * n


async def test_cancel_while_reading_body_closes_connection(transport: TrioTransport) -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await answer_chunked(stream, b"first")
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            got = []
            with trio.move_on_after(0.2) as scope:
                async for chunk in response.aiter_raw():
                    got.append(chunk)
            assert scope.cancelled_caught
            assert got == [b"first"]
            # Closed by the cancelled read itself, before anyone called aclose().
            while not server.client_closed:
                await server.closed_event.wait()
            await response.aclose()
            assert transport._idle.get((b"http", b"127.0.0.1", server.port), []) == []


async def test_cancel_while_waiting_for_head_closes_connection(transport: TrioTransport) -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            with trio.move_on_after(0.2) as scope:
                await transport.handle_async_request(httpx.Request("GET", server.url()))
            assert scope.cancelled_caught
            while not server.client_closed:
                await server.closed_event.wait()
            assert server.client_closed == [0]


async def test_unclosed_response_releases_socket_when_collected(transport: TrioTransport) -> None:
    """A caller that forgets aclose() leaks nothing and triggers no ResourceWarning."""

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[("content-length", "10")])) + b"12345"
        )
        await wait_for_eof(stream, server, index)

    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            response = await transport.handle_async_request(httpx.Request("GET", server.url()))
            del response
            gc.collect()
            while not server.client_closed:
                await server.closed_event.wait()


def test_forgotten_transport_collected_after_run_leaks_nothing() -> None:
    """Idle connections of a transport nobody closed release their sockets on GC,
    even once the trio run is over (no ResourceWarning, which is an error here)."""

    async def use_and_forget() -> TrioTransport:
        transport = TrioTransport()
        with trio.fail_after(LIMIT):
            async with open_server(echo) as server:
                await send(transport, "GET", server.url())
                assert len(transport._idle[(b"http", b"127.0.0.1", server.port)]) == 1
        return transport

    transport = trio.run(use_and_forget)
    conn = next(iter(transport._idle.values()))[0]
    fd = conn.sock.fileno()
    assert fd != -1
    del transport, conn
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@attrs.frozen
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key, as files."""

    cert: str
    key: str


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = str(tmp / "cert.pem"), str(tmp / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert=cert, key=key)


def tls_echo(certificate: Certificate) -> Handler:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.cert, certificate.key)

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        tls = trio.SSLStream(stream, server_context, server_side=True)
        await echo(tls, server, index)

    return handler


async def test_https_round_trip_and_reuse(certificate: Certificate) -> None:
    transport = TrioTransport(ssl_context=ssl.create_default_context(cafile=certificate.cert))
    with trio.fail_after(LIMIT):
        async with open_server(tls_echo(certificate)) as server:
            url = f"https://127.0.0.1:{server.port}/secure?q=1"
            for _ in range(2):
                got = await send(transport, "POST", url, content=b"secret")
                assert got.json()["body"] == "secret"
                assert got.json()["target"] == "/secure?q=1"
            assert server.accepts == 1
            await transport.aclose()
            while not server.client_closed:
                await server.closed_event.wait()


async def test_https_untrusted_certificate_is_connect_error(certificate: Certificate) -> None:
    transport = TrioTransport()  # the default context does not trust our certificate
    with trio.fail_after(LIMIT):
        async with open_server(tls_echo(certificate)) as server:
            request = httpx.Request("GET", f"https://127.0.0.1:{server.port}/")
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await transport.handle_async_request(request)
    await transport.aclose()


async def test_transport_aclose_closes_idle_connections() -> None:
    transport = TrioTransport()
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            await send(transport, "GET", server.url())
            await send(transport, "GET", server.url())
            assert server.client_closed == []
            await transport.aclose()
            while not server.client_closed:
                await server.closed_event.wait()
            assert server.client_closed == [0]
            await transport.aclose()
            with pytest.raises(RuntimeError, match="closed"):
                await transport.handle_async_request(httpx.Request("GET", server.url()))


async def test_max_idle_per_origin_caps_kept_connections() -> None:
    transport = TrioTransport(max_idle_per_origin=1)

    async def one(server: Server) -> None:
        await send(transport, "GET", server.url())

    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(one, server)
            # The releases beyond the cap closed their connections.
            while len(server.client_closed) < server.accepts - 1:
                await server.closed_event.wait()
            before = server.accepts
            await send(transport, "GET", server.url())
            assert server.accepts == before
    await transport.aclose()


async def test_works_behind_httpx_async_client() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            async with httpx.AsyncClient(transport=TrioTransport(), timeout=5) as client:
                for i in range(3):
                    response = await client.post(server.url("/x"), json={"i": i})
                    assert response.status_code == 200
                    assert json.loads(response.json()["body"]) == {"i": i}
                async with client.stream("GET", server.url("/s")) as streamed:
                    body = b"".join([chunk async for chunk in streamed.aiter_bytes()])
                assert json.loads(body)["target"] == "/s"
            assert server.accepts == 1
            while not server.client_closed:
                await server.closed_event.wait()


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        TrioTransport(connect_timeout=0)
    with pytest.raises(ValueError, match="max_idle_per_origin"):
        TrioTransport(max_idle_per_origin=-1)
    with pytest.raises(ValueError, match="max_response_head"):
        TrioTransport(max_response_head=0)
