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
response abandoned half-way, an error, a cancellation, ``Connection: close``, bytes
after the end of the response) closes the socket, because a connection in an unknown
state must never serve another request.

Before an idle connection is reused it must pass :meth:`_Connection.has_expired`, the
same two questions httpcore asks: has it been idle longer than ``keepalive_expiry``
(a NAT or load balancer may have forgotten it without telling either side), and is the
idle socket readable (the server closed it, or sent bytes nobody asked for)? Either
way it is closed and the next one is tried, before a single byte of the request is
written.

Once any byte of a request has been written, this transport never sends it again: a
connection that fails afterwards raises an ordinary ``httpx`` error, and whether to
try again is the caller's retry policy's decision (counted, bounded, and absent when
retries are off). A server that answers before it has read the whole body (413, 401)
is heard: large bodies are sent while the response head is watched for, and after a
write error whatever response head already arrived is still read.

The protocol itself is h11's sans-I/O state machine; this module only moves bytes
between it and a trio stream (on a plain socket, its descriptor directly, waiting
through trio's I/O: see :meth:`_Connection.send`), and turns every failure into the httpx exception the
rest of the client already knows (``httpx.ConnectError``, ``ConnectTimeout``,
``ProxyError``, ``WriteError``, ``ReadError``, ``RemoteProtocolError``), each carrying
its request. Which proxy serves an origin is decided by :mod:`trioclient._proxy`.

Read timeouts are deliberately not handled here: the client wraps each attempt in a
trio cancel scope, which covers connect, send and the whole response at once.
``request.extensions["timeout"]`` is accepted and ignored.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import weakref
from collections.abc import Sequence
from typing import Any

import attrs
import h11
import h11._headers as h11_headers
import httpx
import trio

from ._config import DEFAULT_KEEPALIVE_EXPIRY, check_keepalive_expiry
from ._proxy import ProxyURL, resolve_proxy_routes

__all__ = ["BodyStream", "TrioTransport"]

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

# Bodies larger than this are sent by a task of their own while the response head is
# watched for, so that a server refusing the body early (413, 401) is heard at once
# instead of after a broken pipe or a full send buffer. Smaller bodies fit in the
# kernel's send buffer, so a single send_all cannot block on them.
_WATCH_BODY_SIZE = 65536

# The largest body of an early answer (see TrioTransport._send_watching) read into
# memory; error bodies are small.
_EARLY_ANSWER_LIMIT = 1 << 20

# TCP keepalive probes: after a minute of silence, then every 10 s, 6 unanswered probes
# declare the connection dead (about two minutes), so a peer that vanished behind a
# NAT is noticed while a response is awaited, not at the caller's deadline.
_TCP_KEEPALIVE = (
    ("TCP_KEEPIDLE", 60),
    ("TCP_KEEPALIVE", 60),  # macOS's name for TCP_KEEPIDLE
    ("TCP_KEEPINTVL", 10),
    ("TCP_KEEPCNT", 6),
)


# The request heads h11 has validated, kept per transport (see TrioTransport._h11_request);
# a few per endpoint and set of extra headers, so the bound is only a safety net.
_MAX_CACHED_HEADS = 256

# The headers that frame a request body (lower case, as h11 gives them).
_FRAMING = (b"content-length", b"transfer-encoding")

# h11 refuses a Content-Length of more digits (h11._headers.CONTENT_LENGTH_MAX_DIGITS).
_MAX_LENGTH_DIGITS = 20

# A validated request head without its Content-Length, and whether it frames its body
# on its own.
_Head = tuple[h11.Request, bool]


def _with_content_length(head: h11.Request, name: bytes, value: bytes) -> h11.Request:
    """``head`` with a Content-Length header appended, assembled without checking again.

    Everything h11.Request() would check, ``head`` passed when it was built, and the
    length is checked by the caller. This relies on h11's private representation: a
    ``Headers`` holding (raw name, lower-case name, value) triples, and the four
    fields of a frozen ``Request``. tests/test_transport_heads.py pins both (the event
    must equal, and write the same bytes as, the one h11 builds itself), so an h11
    release that changes them fails loudly there instead of sending a wrong head.
    """
    headers = h11_headers.Headers([*head.headers._full_items, (name, b"content-length", value)])
    event = object.__new__(h11.Request)
    object.__setattr__(event, "method", head.method)
    object.__setattr__(event, "target", head.target)
    object.__setattr__(event, "http_version", head.http_version)
    object.__setattr__(event, "headers", headers)
    return event


def _httpx_response(
    head: h11.Response, stream: httpx.AsyncByteStream, request: httpx.Request
) -> httpx.Response:
    """An ``httpx.Response`` for a parsed response head, its headers not normalised
    again.

    h11 and httpx keep headers alike: (raw name, lower-case name, value) triples of
    bytes, which h11 built while parsing. httpx.Headers(list) would lower-case and
    type-check every one again, about half the cost of building the response, and
    Response() copies any Headers it is given: the response is built without headers
    and its own empty list replaced by a copy of h11's. Both sides are private here;
    tests/test_transport_heads.py pins them (the result must equal what httpx builds
    itself), so a release that changes either fails there.
    """
    response = httpx.Response(
        head.status_code,
        stream=stream,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        request=request,
    )
    response.headers._list = list(head.headers._full_items)
    return response


def _enable_tcp_keepalive(sock: trio.socket.SocketType) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:
        return
    for name, value in _TCP_KEEPALIVE:
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                # A platform refusing one setting keeps its default for it.
                pass


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
    # trio.current_time() when it was last hung back up as idle.
    idle_since: float = 0.0
    # The poll(2) set watching `sock` for `has_expired`, made on first use and kept
    # (trio's `is_readable` builds and fills a new one on every call).
    _poller: Any = attrs.field(default=None, init=False, repr=False)
    # The socket's descriptor, for `send` and `receive` to use directly (plain TCP on
    # a POSIX system), or -1: every read and write goes through `stream` (TLS, or
    # Windows, whose sockets are not file descriptors).
    fd: int = -1

    async def send(self, data: bytes) -> None:
        """Write ``data`` whole.

        On a plain socket this is one write(2), with no schedule point of its own.
        trio's ``SocketStream.send_all`` ends every successful write with one (a trip
        through the scheduler), and wraps it in two context managers; the receive that
        always follows a request is the schedule point instead. Cancellation is still
        honoured first: nothing is written for a cancelled caller. What the kernel does
        not take at once goes through ``stream``, which waits for room.

        Raises:
            OSError, trio.BrokenResourceError, trio.ClosedResourceError: As the stream.
        """
        fd = self.fd
        if fd < 0:
            await self.stream.send_all(data)
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])

    async def receive(self) -> bytes | bytearray:
        """The next bytes from the server, at most ``_READ_SIZE``; ``b""`` at its end.

        On a plain socket it waits for the socket to be readable (a schedule point and
        a cancel point, as always), then reads. trio's ``receive_some`` tries a read
        first, and before an answer that has not come yet that read fails, with an
        exception raised and caught, before the same wait.

        Raises:
            OSError, trio.BrokenResourceError, trio.ClosedResourceError: As the stream
                (``ClosedResourceError`` if another task closes the connection while
                this one waits, or after its wait ended and before it read).
        """
        fd = self.fd
        if fd < 0:
            return await self.stream.receive_some(_READ_SIZE)
        while True:
            await trio.lowlevel.wait_readable(fd)
            if self.sock.fileno() != fd:
                # Another task closed the connection after the wait ended and before
                # this task ran again: the number may already name another socket.
                raise trio.ClosedResourceError("the connection was closed while reading")
            try:
                return os.read(fd, _READ_SIZE)
            except BlockingIOError:
                pass  # woken, and another look found nothing after all

    def has_expired(self, now: float, keepalive_expiry: float) -> bool:
        """Whether this idle connection must not be reused (see the module docstring).

        A readable idle socket means the server closed it or sent bytes nobody asked
        for; either way it is unusable. One poll(2) call is far cheaper than a failed
        request. (Over TLS, a late session ticket also reads as readable; dropping that
        connection is harmless.)
        """
        if now - self.idle_since > keepalive_expiry:
            return True
        poller = self._poller
        if poller is None:
            if not hasattr(select, "poll"):  # Windows
                return self.sock.is_readable()
            poller = self._poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
        # Any event counts: readable, or hung up. (A connection in the idle stack is
        # never closed by anyone else, so its number is still its own.)
        return bool(poller.poll(0))


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


class BodyStream(httpx.AsyncByteStream):
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
        # Body bytes `take_whole` decoded but could not complete: the next chunk's start.
        self._held: list[bytes] = []
        # Connections `take_whole` released for closing (it cannot await): `aclose()`.
        self._to_close: Sequence[_Connection] = ()

    def __aiter__(self) -> BodyStream:
        return self

    @property
    def at_end(self) -> bool:
        """Whether nothing is left to read or to close: the body was read to its end
        (its connection already released), or the stream was closed."""
        return self._conn is None and not self._to_close

    def take_whole(self) -> bytes | None:
        """The whole body, if h11 holds all of it already; ``None`` otherwise.

        A small answer usually arrives in the same read as its head. Then nothing is
        left to wait for, and a caller that takes the body here needs no deadline for
        reading it. This never waits and never reads the socket: what it decodes of a
        body that is not all there yet is kept, and iteration starts with it.
        Afterwards, if :attr:`at_end` is false, ``aclose()`` closes what the release
        of the connection left to close. The body taken is the caller's alone: the
        response's ``content`` is not set, and reading the response afterwards gives
        nothing more (trioclient's ``read_body`` is the one caller).

        Raises:
            httpx.RemoteProtocolError: The body breaks HTTP/1.1 (the stream is left
                for ``aclose()``, which drops the connection).
        """
        conn = self._conn
        if conn is None:
            return None
        held = self._held
        if not self._decode_into(conn.h11, held):
            return None
        self._conn = None
        self._held = []
        self._to_close = self._transport._release(conn)
        return bytes(held[0]) if len(held) == 1 else b"".join(held)

    def _decode_into(self, h: h11.Connection, chunks: list[bytes]) -> bool:
        """Decode the body h11 holds into ``chunks``, never reading the socket: ``True``
        at the end of the message, ``False`` once h11 needs more bytes."""
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
            kind = type(event)
            if kind is h11.Data:
                chunks.append(event.data)  # type: ignore[union-attr]
            elif kind is h11.EndOfMessage:
                return True
            elif event is h11.NEED_DATA:
                return False
            else:
                raise httpx.RemoteProtocolError(
                    f"unexpected HTTP event while reading the response body: {event!r}",
                    request=self._request,
                )

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        h = conn.h11
        chunks: list[bytes] = self._held
        self._held = []
        ok = False  # this call ends normally, with a chunk or the end
        try:
            while not self._decode_into(h, chunks):
                if chunks:
                    break
                try:
                    data = await conn.receive()
                except _NETWORK_ERRORS as exc:
                    raise httpx.ReadError(
                        f"error reading the response body: {_describe(exc)}",
                        request=self._request,
                    ) from exc
                # b"" (end of file) is fed to h11 too: it ends a body framed by
                # connection close, and is a protocol error for any other framing.
                h.receive_data(data)  # type: ignore[arg-type]  # h11 takes any bytes-like
            else:  # the end of the message: the connection goes back (or is closed)
                self._conn = None
                for unusable in self._transport._release(conn):
                    await _hard_close(unusable)
            ok = True
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
        to_close = self._to_close
        self._to_close = ()
        for unusable in to_close:
            await _hard_close(unusable)
        if conn is not None:
            self._conn = None
            self._held = []
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

    A request is never sent twice by the transport. An idle connection is reused only
    if it has been idle at most ``keepalive_expiry`` and its socket is not readable
    (checked before anything is written); once a byte of a request is out, a failure
    is raised for the caller's retry policy to judge. A large request is sent while
    the answer is watched for, so a server refusing it early (413, 401) is heard.

    Args:
        connect_timeout: Seconds allowed for TCP connect plus TLS handshake (and a
            proxy's ``CONNECT``), or ``None`` for no limit. Exceeding it raises
            ``httpx.ConnectTimeout``.
        ssl_context: Context for https origins. By default
            ``ssl.create_default_context()``, created on first https use.
        max_idle_per_origin: How many idle keep-alive connections to keep per
            origin; connections released beyond that are closed.
        max_response_head: Largest response head (status line plus headers) in
            bytes; a bigger one raises ``httpx.RemoteProtocolError``.
        keepalive_expiry: Seconds an idle connection may wait to be reused; an older
            one is closed instead (``None``: no limit). As httpcore's default, 5 s:
            shorter than the idle timeouts of common servers and load balancers.
        proxy: A proxy URL (``http://[user:password@]host:port``) for every request,
            plain http forwarded through it, https tunnelled with ``CONNECT``.
            Replaces the environment's proxies.
        trust_env: Without ``proxy``, use ``HTTP_PROXY``, ``HTTPS_PROXY``,
            ``ALL_PROXY`` and ``NO_PROXY`` as httpx does. ``False`` ignores them.

    Raises:
        ValueError: If a limit is not positive, or a proxy URL is not usable.
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 1024,
        max_response_head: int = 65536,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
        proxy: str | httpx.URL | None = None,
        trust_env: bool = True,
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
        self._keepalive_expiry = check_keepalive_expiry(keepalive_expiry)
        self._proxy_routes = resolve_proxy_routes(proxy, trust_env=trust_env)
        self._proxy_for: dict[_Origin, ProxyURL | None] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._heads: dict[object, _Head] = {}
        self._origins: dict[object, _Origin] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return once the response head has arrived.

        The returned response streams its body; read it to the end (or close it) so
        the connection can be reused or released.

        Raises:
            httpx.ConnectError: The connection could not be opened.
            httpx.ConnectTimeout: Connect plus TLS handshake exceeded ``connect_timeout``.
            httpx.ProxyError: The proxy refused to open a tunnel.
            httpx.WriteError: Sending the request failed, and no response came.
            httpx.ReadError: Reading the response failed.
            httpx.RemoteProtocolError: The server broke HTTP/1.1 or closed early.
            httpx.LocalProtocolError: The request cannot be expressed in HTTP/1.1.
            RuntimeError: The transport was closed.
        """
        if self._closed:
            raise RuntimeError("TrioTransport is closed")
        url = request.url
        origin = self._origins.get(url._uri_reference)
        if origin is None:
            origin = self._origin_of(url)
        scheme = origin[0]
        try:
            # Bytes bodies (all of trioclient's) are read at construction.
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None
        proxy = None
        if self._proxy_routes is not None:
            proxy = self._route(origin)

        h11_request = self._h11_request(request, url, proxy if scheme == b"http" else None)
        conn: _Connection | None = None
        idle = self._idle.get(origin)
        if idle:
            # The warmest idle connection that passes has_expired. Nothing has been
            # written to one that fails it, so trying the next is not a re-send.
            now = trio.current_time()
            while idle:
                candidate = idle.pop()
                if not candidate.has_expired(now, self._keepalive_expiry):
                    conn = candidate
                    break
                await _hard_close(candidate)
        if conn is None:
            conn = await self._connect(origin, request, proxy)
        return await self._exchange(conn, request, h11_request, body)

    def _origin_of(self, url: httpx.URL) -> _Origin:
        """``url``'s (scheme, host, port), kept for the next request to the same URL.

        httpx works each of them out anew from the parsed URL on every access; the key
        is that parsed form, ``URL._uri_reference`` (private: a named tuple compared
        by value, shared by copies of the URL; pinned by tests/test_transport_heads.py).
        """
        scheme = url.raw_scheme
        origin = (scheme, url.raw_host, url.port or _DEFAULT_PORTS.get(scheme, 0))
        if len(self._origins) >= _MAX_CACHED_HEADS:
            self._origins.clear()
        self._origins[url._uri_reference] = origin
        return origin

    def _route(self, origin: _Origin) -> ProxyURL | None:
        try:
            return self._proxy_for[origin]
        except KeyError:
            assert self._proxy_routes is not None
            scheme, host, port = origin
            proxy = self._proxy_routes.proxy_for(scheme.decode("ascii"), host.decode("ascii"), port)
            self._proxy_for[origin] = proxy
            return proxy

    def _h11_request(
        self, request: httpx.Request, url: httpx.URL, forward_proxy: ProxyURL | None
    ) -> h11.Request:
        # Why a cache: h11 checks every header of every Request it is given (two
        # regular expressions per header, then the Host count, the method and the
        # target), the largest single cost of a small request. A client sends the
        # same head again and again, apart from its Content-Length (last, where
        # trioclient and httpx put it), so the head without it is checked once by h11
        # itself and kept; per request only the length is checked (digits, as h11
        # checks it) and added to the checked head.
        # httpx keeps (raw name, lower-case name, value) triples (private, pinned by
        # tests/test_transport_heads.py): read them as they are, no list copied per
        # request.
        items = request.headers._list
        length: tuple[bytes, bytes] | None = None
        count = len(items)
        if count and items[-1][1] == b"content-length":
            count -= 1
            length = (items[count][0], items[count][2])
        # The parsed URL stands for the Host and the target taken from it (see
        # `_origin_of`); it also holds parts the head does not show (a fragment),
        # which at worst keeps one more head.
        key = (request.method, url._uri_reference, forward_proxy, tuple(items[:count]))
        cached = self._heads.get(key)
        if cached is None:
            headers = [(name, value) for name, _, value in items[:count]]
            cached = self._check_head(request, url, forward_proxy, headers)
            if len(self._heads) >= _MAX_CACHED_HEADS:
                self._heads.clear()
            self._heads[key] = cached
        head, frames = cached
        if length is None:
            return head  # h11 events are immutable: one serves every request
        name, value = length
        if frames or not (value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS):
            # A head that frames its body itself takes h11's whole check every time
            # (conflicting lengths, a length beside Transfer-Encoding), as does an
            # odd length.
            try:
                return h11.Request(
                    method=head.method,
                    target=head.target,
                    headers=[*head.headers.raw_items(), length],
                )
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc
        return _with_content_length(head, name, value)

    @staticmethod
    def _check_head(
        request: httpx.Request,
        url: httpx.URL,
        forward_proxy: ProxyURL | None,
        headers: list[tuple[bytes, bytes]],
    ) -> _Head:
        """The request head (without Content-Length) as h11 checked it, and whether it
        frames its body on its own."""
        for name, _ in headers:
            if name.lower() == b"host":
                break
        else:
            # h11 refuses HTTP/1.1 requests without Host; httpx adds it unless a
            # caller removed it, so this is the rare path.
            headers.insert(0, (b"Host", url.netloc))
        target = url.raw_path
        if forward_proxy is not None:
            # A forwarding proxy is asked for the absolute URL (RFC 9112, 3.2.2).
            target = url.raw_scheme + b"://" + url.netloc + target
            if forward_proxy.authorization is not None:
                headers.append((b"Proxy-Authorization", forward_proxy.authorization))
        try:
            head = h11.Request(method=request.method, target=target, headers=headers)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        return head, any(name in _FRAMING for name, _ in head.headers)

    async def _connect(
        self, origin: _Origin, request: httpx.Request, proxy: ProxyURL | None
    ) -> _Connection:
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
        where = f"{host.decode('ascii', 'replace')}:{port}"
        if proxy is not None:
            where = f"proxy {proxy.host}:{proxy.port} (for {where})"
        timeout = self._connect_timeout
        tcp: trio.SocketStream | None = None
        conn: _Connection | None = None
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                if proxy is None:
                    tcp = await trio.open_tcp_stream(host, port)
                else:
                    tcp = await trio.open_tcp_stream(proxy.host, proxy.port)
                _enable_tcp_keepalive(tcp.socket)
                stream: trio.abc.Stream = tcp
                if context is not None:
                    if proxy is not None:
                        await _open_tunnel(tcp, proxy, origin, request, self._max_head)
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
                    fd=tcp.socket.fileno() if context is None and os.name == "posix" else -1,
                )
                _close_when_collected(conn)
            except _NETWORK_ERRORS as exc:
                raise httpx.ConnectError(
                    f"cannot connect to {where}: {_describe(exc)}", request=request
                ) from exc
            finally:
                if conn is None and tcp is not None:
                    # Failed or cancelled mid-handshake: do not leak the socket.
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(tcp)
        if conn is None:
            assert scope.cancelled_caught
            raise httpx.ConnectTimeout(
                f"connecting to {where} took longer than {timeout} s", request=request
            )
        return conn

    async def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request,
        h11_request: h11.Request,
        body: bytes | None,
    ) -> httpx.Response:
        """Send the request on ``conn`` and read up to the response head.

        Closes ``conn`` on any failure or cancellation. Never sends anything twice.
        """
        h = conn.h11
        ok = False
        try:
            write_error: BaseException | None = None
            head: h11.Response | None = None
            try:
                if body is None:
                    await self._send_streaming(conn, request, h11_request)
                else:
                    # One buffer, one send: head, body and end of message together.
                    out = h.send(h11_request)
                    if body:
                        out += h.send(h11.Data(data=body))
                    out += h.send(h11.EndOfMessage())
                    if len(out) > _WATCH_BODY_SIZE:
                        watched = await self._send_watching(conn, request, out)
                        if isinstance(watched, httpx.Response):
                            return watched  # an early answer; the connection is closed
                        head = watched
                    else:
                        await conn.send(out)
            except _NETWORK_ERRORS as exc:
                write_error = exc
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc
            if write_error is not None:
                # h11 believes the rest was sent: tell it otherwise, so the connection
                # is never reused, and still read what the server may have said.
                h.send_failed()
            if head is None:
                head = await self._read_head(conn, request, write_error)
            response = head
            ok = True
        finally:
            if not ok:
                await _hard_close(conn)

        return _httpx_response(response, BodyStream(self, conn, request), request)

    async def _read_head(
        self, conn: _Connection, request: httpx.Request, write_error: BaseException | None
    ) -> h11.Response:
        """Read up to the final response head.

        After a write error the server may still have answered (a 413 before reading
        the body), so the head is read all the same; if none came, the write error is
        the one raised.
        """
        h = conn.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if event is h11.NEED_DATA:
                try:
                    data = await conn.receive()
                except _NETWORK_ERRORS as exc:
                    if write_error is not None:
                        raise _write_error(write_error, request) from write_error
                    raise httpx.ReadError(
                        f"error reading the response: {_describe(exc)}", request=request
                    ) from exc
                if not data:
                    if write_error is not None:
                        raise _write_error(write_error, request) from write_error
                    raise httpx.RemoteProtocolError(
                        "server closed the connection without sending a complete response head",
                        request=request,
                    )
                h.receive_data(data)  # type: ignore[arg-type]  # h11 takes any bytes-like
            elif type(event) is h11.Response:
                return event
            elif type(event) is not h11.InformationalResponse:
                raise httpx.RemoteProtocolError(
                    f"unexpected HTTP event before the response head: {event!r}",
                    request=request,
                )

    async def _send_watching(
        self, conn: _Connection, request: httpx.Request, out: bytes
    ) -> httpx.Response | h11.Response | None:
        """Send a large request while watching for an early answer.

        Returns ``None`` once everything was sent with no response head yet (the
        caller reads it as usual), or the head if it came just as the upload ended.
        If the server answers before the upload ended (a 413 or 401 before it read the
        body), or the upload failed and an answer came all the same, that answer is
        returned as a complete response, its body read while the upload was still
        running: a stopped upload breaks a TLS stream, so nothing could be read after
        it. The caller then closes the connection.

        Raises:
            httpx.WriteError: The upload failed and no answer came.
        """
        sent = False
        head_arrived = False
        write_error: BaseException | None = None
        read_error: Exception | None = None
        head: h11.Response | None = None
        answer: httpx.Response | None = None

        async with trio.open_nursery() as nursery:

            async def upload() -> None:
                nonlocal sent, write_error
                try:
                    await conn.stream.send_all(out)
                except _NETWORK_ERRORS as exc:
                    # The watcher goes on: a dead connection ends its read soon.
                    write_error = exc
                    return
                sent = True
                if not head_arrived:
                    # The normal case: stop watching, the caller reads the head.
                    nursery.cancel_scope.cancel()

            nursery.start_soon(upload)
            try:
                head = await self._read_head(conn, request, None)
                head_arrived = True
                if not sent:
                    answer = await _read_early_answer(conn, request, head)
            except Exception as exc:
                read_error = exc
            # Whatever the upload still had to send, the server does not want.
            nursery.cancel_scope.cancel()

        if answer is not None:
            return answer
        if write_error is not None:
            raise _write_error(write_error, request) from write_error
        if read_error is not None:
            raise read_error
        return head

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
        chunks = request_stream.__aiter__()
        try:
            async for chunk in chunks:
                if chunk:
                    await stream.send_all(h.send(h11.Data(data=chunk)))
        finally:
            # httpx's own body iterators are async generators: one abandoned by a
            # failed send must be closed here, not left to the garbage collector.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await stream.send_all(h.send(h11.EndOfMessage()))

    def _release(self, conn: _Connection) -> Sequence[_Connection]:
        """Hang a connection whose response was read to the end back up, if we can.

        Not if either side wants it closed, nor if bytes came after the end of the
        response: they answer no request of ours, and the next request would read
        them as its own answer.

        Returns the connections to close now (this one, or idle ones that expired),
        for the caller to close with :func:`_hard_close`: usually none, and then the
        release costs no await.
        """
        h = conn.h11
        if (
            self._closed
            or h.our_state is not h11.DONE
            or h.their_state is not h11.DONE
            or h.trailing_data[0]
        ):
            return (conn,)
        h.start_next_cycle()
        now = conn.idle_since = trio.current_time()
        idle = self._idle.get(conn.origin)
        stale: Sequence[_Connection] = ()
        if idle is None:
            idle = self._idle[conn.origin] = []
        elif idle and now - idle[0].idle_since > self._keepalive_expiry:
            # The oldest connections sit at the bottom of the stack, where reuse never
            # reaches them while traffic flows: close the expired ones now.
            expired = 0
            while expired < len(idle) and now - idle[expired].idle_since > self._keepalive_expiry:
                expired += 1
            stale, idle[:expired] = idle[:expired], []
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            stale = (*stale, conn)
        return stale

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


def _write_error(exc: BaseException, request: httpx.Request) -> httpx.WriteError:
    return httpx.WriteError(f"error sending the request: {_describe(exc)}", request=request)


async def _read_early_answer(
    conn: _Connection, request: httpx.Request, head: h11.Response
) -> httpx.Response:
    """The whole of a response that came before the request was fully sent."""
    h = conn.h11
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if event is h11.NEED_DATA:
            try:
                data = await conn.stream.receive_some(_READ_SIZE)
            except _NETWORK_ERRORS as exc:
                raise httpx.ReadError(
                    f"error reading the response: {_describe(exc)}", request=request
                ) from exc
            h.receive_data(data)  # type: ignore[arg-type]  # h11 takes any bytes-like
        elif type(event) is h11.Data:
            size += len(event.data)
            if size > _EARLY_ANSWER_LIMIT:
                raise httpx.RemoteProtocolError(
                    f"the server answered {head.status_code} before reading the request "
                    f"body, with a body over {_EARLY_ANSWER_LIMIT} bytes",
                    request=request,
                )
            chunks.append(bytes(event.data))
        elif type(event) is h11.EndOfMessage:
            break
        else:
            raise httpx.RemoteProtocolError(
                f"unexpected HTTP event while reading the response body: {event!r}",
                request=request,
            )
    return httpx.Response(
        head.status_code,
        headers=head.headers.raw_items(),
        stream=httpx.ByteStream(b"".join(chunks)),
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        request=request,
    )


async def _open_tunnel(
    tcp: trio.SocketStream,
    proxy: ProxyURL,
    origin: _Origin,
    request: httpx.Request,
    max_head: int,
) -> None:
    """Ask an HTTP proxy for a tunnel to ``origin`` (``CONNECT``, RFC 9110 9.3.6)."""
    _, host, port = origin
    target = (b"[" + host + b"]" if b":" in host else host) + b":%d" % port
    headers = [(b"Host", target)]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", proxy.authorization))
    h = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
    await tcp.send_all(
        h.send(h11.Request(method=b"CONNECT", target=target, headers=headers))
        + h.send(h11.EndOfMessage())
    )
    where = f"proxy {proxy.host}:{proxy.port}"
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.ProxyError(
                f"{where} sent a bad CONNECT answer: {exc}", request=request
            ) from exc
        if event is h11.NEED_DATA:
            data = await tcp.receive_some(_READ_SIZE)
            if not data:
                raise httpx.ProxyError(
                    f"{where} closed the connection before answering CONNECT", request=request
                )
            h.receive_data(data)
        elif type(event) is h11.Response:
            break
        elif type(event) is not h11.InformationalResponse:
            raise httpx.ProxyError(f"{where} sent {event!r} in answer to CONNECT", request=request)
    if not 200 <= event.status_code < 300:
        hint = " (check the user and password in the proxy URL)" if event.status_code == 407 else ""
        raise httpx.ProxyError(
            f"{where} refused a tunnel to {target.decode('ascii', 'replace')}: "
            f"{event.status_code} {event.reason.decode('ascii', 'replace')}{hint}",
            request=request,
        )
    if h.trailing_data[0]:
        raise httpx.ProxyError(f"{where} sent bytes after its CONNECT answer", request=request)
