"""A trio-native HTTP/1.1 transport for httpx, built on h11.

httpx's default transport (httpcore) keeps a connection pool that scans every
connection on each operation and queues requests beyond ``max_connections`` until
they die of ``PoolTimeout``; with many requests in flight the scanning shows in the
client's CPU (the concurrency-scale workload in ``benchmarks/`` measures it).
trioclient bounds concurrency *before* a request reaches the transport (a
``trio.CapacityLimiter`` in the client), so the transport needs no cap and no queue:
it only has to remember which keep-alive connections are idle.

That is what :class:`TrioTransport` does. Think of it as a coat rack per origin
(scheme, host, port): a request takes the most recently hung connection (LIFO, so
the warmest sockets are reused and cold ones age out on the server side) or opens a
new one; a response read to its end hangs its connection back up. Anything else (a
response abandoned half-way, an error, a cancellation, ``Connection: close``) closes
the socket, because a connection in an unknown state must never serve another
request.

The protocol itself is h11's sans-I/O state machine; this module only moves bytes
between it and a trio stream, and turns every failure into the httpx exception the
rest of the client already knows (``httpx.ConnectError``, ``ConnectTimeout``,
``WriteError``, ``ReadError``, ``RemoteProtocolError``), each carrying its request.

Read timeouts are deliberately not handled here: the client wraps each attempt in a
trio cancel scope, which covers connect, send and the whole response at once.
``request.extensions["timeout"]`` is accepted and ignored.
"""

from __future__ import annotations

import os
import ssl
import weakref

import attrs
import h11
import httpx
import trio

__all__ = ["TrioTransport"]

# One read per wake-up; 64 KiB covers a typical completion in one syscall without
# making the buffer large enough to matter for thousands of connections.
_READ_SIZE = 65536

# How long a graceful close may take before we give up on it. Closing a plain TCP
# socket is synchronous, so this only bounds TLS close_notify on transport shutdown.
_CLOSE_TIMEOUT = 1.0

_Origin = tuple[bytes, bytes, int]

# Errors a trio stream raises when the peer or the network misbehaves. Anything
# else (including trio.Cancelled) is not ours to translate.
_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

_DEFAULT_PORTS = {b"http": 80, b"https": 443}


@attrs.define(eq=False)
class _Connection:
    """One HTTP/1.1 connection: a byte stream, its h11 state and where it goes.

    ``sock`` is the underlying trio socket (also reachable through ``stream``, but
    through an SSLStream only indirectly); see :func:`_close_when_collected`.
    """

    stream: trio.abc.Stream
    sock: trio.socket.SocketType
    h11: h11.Connection
    origin: _Origin


def _close_socket(sock: trio.socket.SocketType) -> None:
    if sock.fileno() == -1:
        return
    try:
        # Inside a trio run this also wakes anything waiting on the socket.
        sock.close()
    except RuntimeError:
        # Outside a trio run nothing can be waiting on it: release the
        # descriptor directly.
        os.close(sock.detach())


def _close_when_collected(conn: _Connection) -> None:
    """Close ``conn``'s socket if it is dropped without being closed.

    A caller that never closes a response, or never closes the transport, would
    otherwise leave the socket to Python's finalizer, which emits a
    ``ResourceWarning``. A ``__del__`` on the connection is not enough: when the
    connection dies inside a reference cycle (a finished trio run, a traceback),
    the garbage collector may finalize the socket before the connection. A
    ``weakref.finalize`` callback runs before any finalizer of the cycle, and the
    socket it holds stays alive until then. It costs one small object per
    connection, not per request.
    """
    weakref.finalize(conn, _close_socket, conn.sock)


def _describe(exc: BaseException) -> str:
    """Name what actually went wrong for an error message.

    trio reports socket and TLS failures as a bare ``BrokenResourceError`` whose
    cause is the real error (``ConnectionResetError``, ``ssl.SSLCertVerificationError``
    ...), so the cause is what the user needs to read.
    """
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc)
    # open_tcp_stream's "all attempts to connect failed" keeps the per-address
    # errors (connection refused, unreachable ...) in a group as its cause.
    if isinstance(exc.__cause__, BaseExceptionGroup):
        text += " (" + "; ".join(str(e) for e in exc.__cause__.exceptions) + ")"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _hard_close(conn: _Connection) -> None:
    """Close a connection without ceremony, even from a cancelled context.

    ``trio.aclose_forcefully`` skips the TLS close_notify exchange (which could wait
    on the peer), and the shield lets the close finish when our caller is already
    being cancelled: a half-used connection must not outlive the request.
    """
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(conn.stream)


class _StaleConnection(Exception):
    """A reused keep-alive connection died before sending a single response byte.

    That is the classic keep-alive race (the server closed an idle connection just
    as we picked it up), not a server error, so the request may be sent again on a
    fresh connection. ``error`` is the httpx exception to raise if it cannot be.
    """

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one response, read off the socket as it arrives.

    Each network read that produces body bytes becomes one chunk right away (chunks
    h11 decoded from the same read are joined), which is what lets server-sent
    events flow without buffering. It is a plain async iterator rather than an async
    generator so that abandoning it half-way leaves no generator for trio to
    finalize.

    The connection goes back to the transport's idle list the moment h11 reports the
    end of the message and both sides can keep it alive, so a fully read response
    needs nothing from ``aclose()``. Otherwise ``aclose()`` closes the socket.
    """

    def __init__(self, transport: TrioTransport, conn: _Connection, request: httpx.Request) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._request = request

    def __aiter__(self) -> _ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        h = conn.h11
        chunks: list[bytes] = []
        ok = False  # this call ends normally, with a chunk or the end
        try:
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
                kind = type(event)
                if kind is h11.Data:
                    chunks.append(event.data)  # type: ignore[union-attr]
                elif event is h11.NEED_DATA:
                    if chunks:
                        ok = True
                        break
                    try:
                        data = await conn.stream.receive_some(_READ_SIZE)
                    except _NETWORK_ERRORS as exc:
                        raise httpx.ReadError(
                            f"error reading the response body: {_describe(exc)}",
                            request=self._request,
                        ) from exc
                    # b"" (end of file) is fed to h11 too: it ends a body framed by
                    # connection close, and is a protocol error for any other framing.
                    h.receive_data(data)  # type: ignore[arg-type]  # h11 takes any bytes-like
                elif kind is h11.EndOfMessage:
                    self._conn = None
                    ok = True
                    await self._transport._release(conn)
                    break
                else:
                    raise httpx.RemoteProtocolError(
                        f"unexpected HTTP event while reading the response body: {event!r}",
                        request=self._request,
                    )
        finally:
            if not ok and self._conn is not None:
                # An error or a cancellation mid-body: the connection's state is
                # unknown, so it can never be reused.
                self._conn = None
                await _hard_close(conn)
        if not chunks:
            raise StopAsyncIteration
        return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            await _hard_close(conn)


class TrioTransport(httpx.AsyncBaseTransport):
    """An HTTP/1.1 transport for ``httpx`` on trio sockets, with no pool limits.

    Use it behind ``httpx.AsyncClient(transport=TrioTransport())``, or on a hot path
    build an ``httpx.Request`` yourself and ``await transport.handle_async_request(
    request)``: that skips ``AsyncClient.send`` (auth, redirects, cookies, hooks) and
    roughly doubles throughput.

    Concurrency is *not* limited here: every request that finds no idle connection
    opens a new one. Bound it outside (trioclient's client uses a
    ``trio.CapacityLimiter``); in exchange no request ever waits for a pool slot.

    Args:
        connect_timeout: Seconds allowed for TCP connect plus TLS handshake, or
            ``None`` for no limit. Exceeding it raises ``httpx.ConnectTimeout``.
        ssl_context: Context for https origins. By default
            ``ssl.create_default_context()``, created on first https use.
        max_idle_per_origin: How many idle keep-alive connections to keep per
            origin; connections released beyond that are closed.
        max_response_head: Largest response head (status line plus headers) in
            bytes; a bigger one raises ``httpx.RemoteProtocolError``.

    Raises:
        ValueError: If a limit is not positive.
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 1024,
        max_response_head: int = 65536,
    ) -> None:
        if connect_timeout is not None and not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 or None, got {connect_timeout!r}")
        if max_idle_per_origin < 0:
            raise ValueError(f"max_idle_per_origin must be >= 0, got {max_idle_per_origin!r}")
        if max_response_head <= 0:
            raise ValueError(f"max_response_head must be > 0, got {max_response_head!r}")
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._max_head = max_response_head
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return once the response head has arrived.

        The returned response streams its body; read it to the end (or close it) so
        the connection can be reused or released.

        Raises:
            httpx.ConnectError: The connection could not be opened.
            httpx.ConnectTimeout: Connect plus TLS handshake exceeded ``connect_timeout``.
            httpx.WriteError: Sending the request failed.
            httpx.ReadError: Reading the response failed.
            httpx.RemoteProtocolError: The server broke HTTP/1.1 or closed early.
            httpx.LocalProtocolError: The request cannot be expressed in HTTP/1.1.
            RuntimeError: The transport was closed.
        """
        if self._closed:
            raise RuntimeError("TrioTransport is closed")
        url = request.url
        scheme = url.raw_scheme
        port = url.port
        origin = (scheme, url.raw_host, port or _DEFAULT_PORTS.get(scheme, 0))
        try:
            # Bytes bodies (the only replayable kind) are read at construction.
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None

        h11_request = self._h11_request(request, url)
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            # A readable idle connection has either been closed by the server or
            # sent bytes nobody asked for; either way it is unusable. One poll(2)
            # call is far cheaper than a failed request. (Over TLS, a late session
            # ticket also reads as readable; dropping that connection is harmless.)
            if conn.sock.is_readable():
                await _hard_close(conn)
                continue
            try:
                return await self._exchange(conn, request, h11_request, body, reused=True)
            except _StaleConnection as exc:
                # A streaming body was consumed by the failed attempt: it cannot be
                # sent again, so the caller gets the error (and may retry itself).
                if body is None:
                    raise exc.error from exc.error.__cause__
            # The keep-alive race: retry once, on a fresh connection. (h11 events
            # are immutable, so the same Request event serves again.)
            break

        conn = await self._connect(origin, request)
        return await self._exchange(conn, request, h11_request, body, reused=False)

    @staticmethod
    def _h11_request(request: httpx.Request, url: httpx.URL) -> h11.Request:
        headers = request.headers.raw
        for name, _ in headers:
            if name.lower() == b"host":
                break
        else:
            # h11 refuses HTTP/1.1 requests without Host; httpx adds it unless a
            # caller removed it, so this is the rare path.
            headers.insert(0, (b"Host", url.netloc))
        try:
            return h11.Request(method=request.method, target=url.raw_path, headers=headers)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

    async def _connect(self, origin: _Origin, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        if scheme == b"https":
            context = self._ssl_context
            if context is None:
                context = self._ssl_context = ssl.create_default_context()
        elif scheme == b"http":
            context = None
        else:
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {scheme.decode('ascii', 'replace')!r}: "
                "TrioTransport speaks http and https",
                request=request,
            )
        timeout = self._connect_timeout
        tcp: trio.SocketStream | None = None
        conn: _Connection | None = None
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                tcp = await trio.open_tcp_stream(host, port)
                stream: trio.abc.Stream = tcp
                if context is not None:
                    stream = trio.SSLStream(
                        tcp,
                        context,
                        server_hostname=host.decode("ascii"),
                        https_compatible=True,
                    )
                    await stream.do_handshake()
                conn = _Connection(
                    stream=stream,
                    sock=tcp.socket,
                    h11=h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head),
                    origin=origin,
                )
                _close_when_collected(conn)
            except _NETWORK_ERRORS as exc:
                raise httpx.ConnectError(
                    f"cannot connect to {host.decode('ascii', 'replace')}:{port}: {_describe(exc)}",
                    request=request,
                ) from exc
            finally:
                if conn is None and tcp is not None:
                    # Failed or cancelled mid-handshake: do not leak the socket.
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(tcp)
        if conn is None:
            assert scope.cancelled_caught
            raise httpx.ConnectTimeout(
                f"connecting to {host.decode('ascii', 'replace')}:{port} took longer "
                f"than {timeout} s",
                request=request,
            )
        return conn

    async def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request,
        h11_request: h11.Request,
        body: bytes | None,
        *,
        reused: bool,
    ) -> httpx.Response:
        """Send the request on ``conn`` and read up to the response head.

        Closes ``conn`` on any failure or cancellation. On a reused connection that
        fails before any response byte, raises :class:`_StaleConnection`.
        """
        h = conn.h11
        stream = conn.stream
        received = False
        ok = False
        try:
            try:
                if body is not None:
                    # One buffer, one send: head, body and end of message together.
                    out = h.send(h11_request)
                    if body:
                        out += h.send(h11.Data(data=body))
                    out += h.send(h11.EndOfMessage())
                    await stream.send_all(out)
                else:
                    await self._send_streaming(conn, request, h11_request)
            except _NETWORK_ERRORS as exc:
                error: httpx.TransportError = httpx.WriteError(
                    f"error sending the request: {_describe(exc)}", request=request
                )
                error.__cause__ = exc
                if reused:
                    raise _StaleConnection(error) from exc
                raise error from exc
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc

            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    raise httpx.RemoteProtocolError(str(exc), request=request) from exc
                if event is h11.NEED_DATA:
                    try:
                        data = await stream.receive_some(_READ_SIZE)
                    except _NETWORK_ERRORS as exc:
                        error = httpx.ReadError(
                            f"error reading the response: {_describe(exc)}", request=request
                        )
                        error.__cause__ = exc
                        if reused and not received:
                            raise _StaleConnection(error) from exc
                        raise error from exc
                    if not data:
                        error = httpx.RemoteProtocolError(
                            "server closed the connection without sending a complete response head",
                            request=request,
                        )
                        if reused and not received:
                            raise _StaleConnection(error)
                        raise error
                    received = True
                    h.receive_data(data)  # type: ignore[arg-type]  # h11 takes any bytes-like
                elif type(event) is h11.Response:
                    break
                elif type(event) is not h11.InformationalResponse:
                    raise httpx.RemoteProtocolError(
                        f"unexpected HTTP event before the response head: {event!r}",
                        request=request,
                    )
            ok = True
        finally:
            if not ok:
                await _hard_close(conn)

        response = event
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            stream=_ResponseStream(self, conn, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
            request=request,
        )

    async def _send_streaming(
        self, conn: _Connection, request: httpx.Request, h11_request: h11.Request
    ) -> None:
        request_stream = request.stream
        if not isinstance(request_stream, httpx.AsyncByteStream):
            raise TypeError(
                "TrioTransport needs an async request body; got "
                f"{type(request_stream).__name__}, which is sync-only"
            )
        h = conn.h11
        stream = conn.stream
        await stream.send_all(h.send(h11_request))
        async for chunk in request_stream:
            if chunk:
                await stream.send_all(h.send(h11.Data(data=chunk)))
        await stream.send_all(h.send(h11.EndOfMessage()))

    async def _release(self, conn: _Connection) -> None:
        """Hang a connection whose response was read to the end back up, if we can."""
        h = conn.h11
        if self._closed or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            await _hard_close(conn)
            return
        h.start_next_cycle()
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = []
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            await _hard_close(conn)

    async def aclose(self) -> None:
        """Close every idle connection; responses still open close when released.

        Safe to call more than once.
        """
        self._closed = True
        idle, self._idle = self._idle, {}
        with trio.CancelScope(shield=True):
            for conns in idle.values():
                for conn in conns:
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        await conn.stream.aclose()
                    await trio.aclose_forcefully(conn.stream)
