"""When a connection may serve another request, and what a failure leaves to the caller.

Loopback servers written with h11 on raw trio sockets (helpers from test_transport):
a server that reads a request and hangs up, one that refuses a large body before
reading it, one that sends bytes after its answer, one that goes silent as a NAT that
dropped the connection. The transport must never send a request twice on its own;
the client's retry policy decides, and counts.
"""

from __future__ import annotations

import json
import socket
import ssl

import h11
import httpx
import pytest
import trio
import trio.testing
from test_transport import (
    LIMIT,
    Certificate,
    Handler,
    OneShotBody,
    Server,
    echo,
    open_server,
    read_request,
    respond_json,
    send,
    tls_echo,
    wait_for_eof,
)
from test_transport import certificate as certificate  # the fixture

import trioclient
from trioclient._transport import TrioTransport

MESSAGES = [{"role": "user", "content": "hi"}]

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


async def answer_completions(stream: trio.SocketStream, server: Server, index: int) -> None:
    """A keep-alive chat-completion server that notes each request's connection."""
    conn = h11.Connection(h11.SERVER)
    while True:
        got = await read_request(stream, conn)
        if got is None:
            return
        server.requests.append({"connection": index, "body": got[1]})
        await respond_json(stream, conn, COMPLETION, [])
        conn.start_next_cycle()


async def answer_once_then_hang_up(stream: trio.SocketStream, server: Server, index: int) -> None:
    """Connection 0 answers its first request, reads the second, and closes unanswered.

    A load balancer dropping a long call looks exactly like this to the client."""
    if index > 0:
        await answer_completions(stream, server, index)
        return
    conn = h11.Connection(h11.SERVER)
    got = await read_request(stream, conn)
    assert got is not None
    server.requests.append({"connection": index, "body": got[1]})
    await respond_json(stream, conn, COMPLETION, [])
    conn.start_next_cycle()
    got = await read_request(stream, conn)
    assert got is not None
    server.requests.append({"connection": index, "body": got[1], "dropped": True})


def client_for(server: Server, retries: int) -> trioclient.Client:
    return trioclient.Client(
        api_key="sk-test",
        base_url=f"http://127.0.0.1:{server.port}/v1",
        retry=trioclient.RetryPolicy(max_retries=retries, base_delay=0.0),
        trust_env=False,
    )


async def test_dropped_request_with_retries_off_reaches_the_server_once() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_once_then_hang_up) as server:
            async with client_for(server, retries=0) as client:
                await client.chat.completions.create(model="m", messages=MESSAGES)
                with pytest.raises(trioclient.APIConnectionError):
                    await client.chat.completions.create(model="m", messages=MESSAGES)
                stats = client.statistics()
    assert len(server.requests) == 2  # the first request, and one copy of the second
    assert server.requests[1].get("dropped")
    assert server.accepts == 1
    assert stats.retries == 0


async def test_dropped_request_is_retried_by_the_policy_and_counted() -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_once_then_hang_up) as server:
            async with client_for(server, retries=2) as client:
                await client.chat.completions.create(model="m", messages=MESSAGES)
                answer = await client.chat.completions.create(model="m", messages=MESSAGES)
                stats = client.statistics()
    assert answer.content == "hello"
    assert [r["connection"] for r in server.requests] == [0, 0, 1]
    assert stats.retries == 1


BIG = 8 * 1024 * 1024


def refuse_early(status: int, *, close: bool, tls: ssl.SSLContext | None = None) -> Handler:
    """Answer ``status`` as soon as the request head is in, without reading the body.

    With ``close``, hang up at once (a kernel resets a connection closed with unread
    bytes); without it, keep the connection open and never read: the client's upload
    then stalls on a full send buffer unless it heard the answer.
    """

    async def handler(tcp: trio.SocketStream, server: Server, index: int) -> None:
        stream: trio.abc.Stream = tcp
        if tls is not None:
            stream = trio.SSLStream(tcp, tls, server_side=True)
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                break
        server.requests.append({"connection": index})
        body = json.dumps({"error": {"message": f"refused with {status}", "type": "x"}}).encode()
        await stream.send_all(
            conn.send(
                h11.Response(
                    status_code=status,
                    headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                        ("connection", "close"),
                    ],
                )
            )
        )
        if tls is not None:
            # The body a moment after the head, so that the client must read it from
            # the socket, not find it with the head.
            await trio.sleep(0.05)
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        if not close:
            await trio.sleep_forever()

    return handler


@pytest.mark.parametrize("close", [True, False], ids=["then-close", "then-silent"])
@pytest.mark.parametrize(
    ("status", "error"),
    [(413, trioclient.APIStatusError), (401, trioclient.AuthenticationError)],
)
async def test_early_answer_to_a_large_body_is_the_users_error(
    status: int, error: type[trioclient.APIStatusError], close: bool
) -> None:
    big_messages = [{"role": "user", "content": "x" * BIG}]
    with trio.fail_after(LIMIT):
        async with open_server(refuse_early(status, close=close)) as server:
            async with client_for(server, retries=3) as client:
                with pytest.raises(error) as info:
                    await client.chat.completions.create(model="m", messages=big_messages)
                stats = client.statistics()
    assert info.value.status_code == status
    assert f"refused with {status}" in str(info.value)
    assert stats.retries == 0
    assert server.accepts == 1


@pytest.mark.parametrize("close", [True, False], ids=["then-close", "then-silent"])
async def test_early_answer_over_tls_is_read(certificate: Certificate, close: bool) -> None:
    """Over TLS a stopped upload breaks the stream for reading too, so the early
    answer must be read while the upload still runs."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.cert, certificate.key)
    transport = TrioTransport(ssl_context=ssl.create_default_context(cafile=certificate.cert))
    with trio.fail_after(LIMIT):
        async with open_server(refuse_early(413, close=close, tls=server_context)) as server:
            request = httpx.Request("POST", f"https://127.0.0.1:{server.port}/", content=b"z" * BIG)
            response = await transport.handle_async_request(request)
            body = await response.aread()
            await transport.aclose()
    assert response.status_code == 413
    assert b"refused with 413" in body
    assert transport._idle == {}  # never reused


async def test_a_deadline_while_uploading_a_large_body_is_a_timeout() -> None:
    """A server that neither reads nor answers: the attempt's deadline ends the upload
    and the watcher together, and the caller sees one clear timeout."""

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        server.requests.append({"connection": index})
        await trio.sleep_forever()

    big_messages = [{"role": "user", "content": "x" * BIG}]
    with trio.fail_after(LIMIT * 20):
        async with open_server(handler) as server:
            async with trioclient.Client(
                api_key="sk-test",
                base_url=f"http://127.0.0.1:{server.port}/v1",
                retry=trioclient.RetryPolicy(max_retries=0),
                timeout=trioclient.Timeout(total=2.0),
                trust_env=False,
            ) as client:
                with pytest.raises(trioclient.APITimeoutError):
                    await client.chat.completions.create(model="m", messages=big_messages)
    assert server.accepts == 1


async def test_answer_after_a_write_error_is_read() -> None:
    """A streamed body (not watched while sending) meets a broken pipe; the answer
    that came first is still read, as httpcore does."""
    chunks = [b"y" * 65536] * (BIG // 65536)
    with trio.fail_after(LIMIT):
        async with open_server(refuse_early(413, close=True)) as server:
            transport = TrioTransport()
            request = httpx.Request("POST", server.url(), content=OneShotBody(chunks))
            response = await transport.handle_async_request(request)
            body = await response.aread()
            await transport.aclose()
    assert response.status_code == 413
    assert b"refused with 413" in body


async def test_bytes_after_a_response_mean_the_connection_is_not_reused() -> None:
    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        if index > 0:
            await echo(stream, server, index)
            return
        conn = h11.Connection(h11.SERVER)
        await read_request(stream, conn)
        # A response, then a second one nobody asked for, in one write: reused, the
        # connection would hand "bogus" to the next request as its answer.
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbogus"
        )
        await wait_for_eof(stream, server, index)

    transport = TrioTransport()
    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            first = await send(transport, "GET", server.url())
            assert first.content == b"ok"
            second = await send(transport, "GET", server.url())
            assert second.json()["connection"] == 1
            assert server.accepts == 2
    await transport.aclose()


@pytest.fixture
def hand_clock() -> trio.testing.MockClock:
    """Real-time flow (loopback bytes need it) plus jumps the test makes by hand."""
    return trio.testing.MockClock(rate=1.0)


async def test_expired_idle_connection_is_not_reused_into_a_silent_nat_drop(
    hand_clock: trio.testing.MockClock,
) -> None:
    """A NAT that forgot an idle connection swallows what is sent on it: no answer, no
    reset. Past keepalive_expiry the connection is closed unused, so the request goes
    out on a fresh one instead of waiting for its deadline."""

    async def handler(stream: trio.SocketStream, server: Server, index: int) -> None:
        if index > 0:
            await echo(stream, server, index)
            return
        await echo(stream, server, index, max_requests=1)
        # From here on the connection is a black hole, as behind the NAT.
        await wait_for_eof(stream, server, index)

    transport = TrioTransport(keepalive_expiry=5.0)
    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            await send(transport, "GET", server.url())
            hand_clock.jump(5.5)
            got = await send(transport, "GET", server.url())
            assert got.json()["connection"] == 1
            # The expired connection was closed, not kept.
            while not server.client_closed:
                await server.closed_event.wait()
            assert server.client_closed == [0]
    await transport.aclose()


async def test_idle_connection_within_expiry_is_reused(hand_clock: trio.testing.MockClock) -> None:
    transport = TrioTransport(keepalive_expiry=5.0)
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            await send(transport, "GET", server.url())
            hand_clock.jump(4.5)
            await send(transport, "GET", server.url())
            assert server.accepts == 1
    await transport.aclose()


async def test_expired_connections_below_the_stack_are_closed_on_release(
    hand_clock: trio.testing.MockClock,
) -> None:
    """Under steady traffic only the top of the idle stack is reused; an expired
    connection under it is closed when another is released, not kept until aclose."""
    transport = TrioTransport(keepalive_expiry=5.0)
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(send, transport, "GET", server.url())
            assert server.accepts == 2
            hand_clock.jump(3)
            top = (await send(transport, "GET", server.url())).json()["connection"]
            hand_clock.jump(3)
            # The bottom connection has now been idle 6 s, the top one 3 s.
            assert (await send(transport, "GET", server.url())).json()["connection"] == top
            while not server.client_closed:
                await server.closed_event.wait()
            assert server.client_closed == [1 - top]
            assert server.accepts == 2
    await transport.aclose()


async def test_connections_use_tcp_keepalive() -> None:
    transport = TrioTransport()
    with trio.fail_after(LIMIT):
        async with open_server(echo) as server:
            await send(transport, "GET", server.url())
            (conn,) = transport._idle[(b"http", b"127.0.0.1", server.port)]
            sock = conn.sock
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
    await transport.aclose()


def test_bad_keepalive_expiry_is_rejected() -> None:
    with pytest.raises(ValueError, match="keepalive_expiry"):
        TrioTransport(keepalive_expiry=-1)
    with pytest.raises(TypeError, match="keepalive_expiry"):
        TrioTransport(keepalive_expiry="5")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_large_bodies_answered_normally_keep_the_connection(
    certificate: Certificate, tls: bool
) -> None:
    """The watcher stops without losing a byte when the upload ends first: the answer
    is read as usual and the connection serves the next request."""
    payload = b"0123456789abcdef" * 65536  # 1 MiB
    if tls:
        handler = tls_echo(certificate)
        context = ssl.create_default_context(cafile=certificate.cert)
        transport = TrioTransport(ssl_context=context)
    else:
        handler, transport = echo, TrioTransport()
    with trio.fail_after(LIMIT):
        async with open_server(handler) as server:
            url = f"{'https' if tls else 'http'}://127.0.0.1:{server.port}/"
            for _ in range(3):
                got = await send(transport, "POST", url, content=payload)
                assert got.json()["body"] == payload.decode()
            assert server.accepts == 1
    await transport.aclose()


async def test_client_passes_keepalive_expiry_to_its_transport(
    hand_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        async with open_server(answer_completions) as server:
            for expiry, connections in [(None, 1), (2.0, 2)]:
                before = server.accepts
                async with trioclient.Client(
                    api_key="sk-test",
                    base_url=f"http://127.0.0.1:{server.port}/v1",
                    keepalive_expiry=expiry,
                    trust_env=False,
                ) as client:
                    await client.chat.completions.create(model="m", messages=MESSAGES)
                    hand_clock.jump(3)
                    await client.chat.completions.create(model="m", messages=MESSAGES)
                assert server.accepts - before == connections
