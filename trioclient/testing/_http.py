"""HTTP/1.1 for one connection: reading requests and writing responses with h11.

h11 does the protocol (parsing, keep-alive state, framing headers); this module adds
the socket side: a bounded read of one whole request, and writes that skip trio's
bookkeeping when the socket buffer has room. It knows nothing of chat completions.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from collections.abc import Iterable

import attrs
import h11
import trio

from ._errors import error_body

__all__ = ["Refusal", "Request", "RequestIds", "Wire", "frame", "read_request", "send_simple"]

#: The longest request head we accept (h11 answers a longer one with a 431).
MAX_HEAD_BYTES = 64 * 1024
_RECEIVE_SIZE = 65536
_JSON = b"application/json"


@attrs.frozen
class Request:
    """One whole request: the path without its query, lower-case header names."""

    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    query: bytes = b""  # after the "?", for the few paths that read it (batch results)


@attrs.frozen
class Refusal:
    """A request refused while it was being read; the connection closes after the reply."""

    status: int
    body: bytes


@attrs.define(eq=False)
class RequestIds:
    """`x-request-id` values: a random per-server prefix and a counter."""

    prefix: str = attrs.field(factory=lambda: os.urandom(6).hex())
    count: int = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count:08x}"


@attrs.define(eq=False)
class Wire:
    """One connection's output side: h11 framing plus the raw socket for resets.

    Every response head goes through `head` or `stream_head`, which count it in
    `statuses` (so resets, which send no head, are not responses).
    """

    stream: trio.SocketStream
    conn: h11.Connection
    statuses: Counter[int]

    async def send(self, data: bytes) -> None:
        """Write `data`, straight to the socket when its buffer has room.

        trio's `send_all` does bookkeeping on every call, which adds up with thousands
        of streams. A plain non-blocking write usually takes everything, and only the
        rest (or all of it, when the buffer is full) goes through `send_all`, which
        waits for room. Callers checkpoint elsewhere (every request reads, every paced
        chunk waits).

        Raises:
            trio.BrokenResourceError: the peer is gone.
        """
        try:
            sent = os.write(self.stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"write failed: {exc}") from exc
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The bytes of a response head (framing as the headers say)."""
        self.statuses[status] += 1
        return self.conn.send(h11.Response(status_code=status, headers=headers))

    def stream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bool]:
        """The head of a body of unknown length, and whether that body is chunked.

        We decide the framing here, from the peer's HTTP version, and say it in the
        head: chunked for HTTP/1.1; close-delimited for HTTP/1.0, which has no chunked
        encoding (h11 then closes the connection after the body). The caller frames
        each piece with `frame(piece, chunked)` and ends with `end()`.
        """
        version = self.conn.their_http_version
        chunked = version is not None and version >= b"1.1"
        if chunked:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        return self.head(status, headers), chunked

    def data(self, payload: bytes) -> bytes:
        return self.conn.send(h11.Data(data=payload))

    def end(self) -> bytes:
        return self.conn.send(h11.EndOfMessage())

    def reset(self) -> None:
        """Abort the connection with a TCP RST: SO_LINGER 0, then close."""
        self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.stream.socket.close()


def frame(payload: bytes, chunked: bool) -> bytes:
    """One chunk of a chunked body (or the bytes as they are for a close-delimited one).

    Framing paced stream pieces here, rather than through h11's `Data` event, keeps
    h11's per-event work off the hot path; h11 still writes the last chunk (`end`).
    """
    if not chunked:
        return payload
    return b"%x\r\n%b\r\n" % (len(payload), payload)


async def send_simple(
    wire: Wire,
    status: int,
    body: bytes,
    request_id: str,
    *,
    content_type: bytes = _JSON,
    extra: Iterable[tuple[bytes, bytes]] = (),
    close: bool = False,
) -> None:
    """Send a whole response with a known length in one write."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", f"req_{request_id}".encode()),
        *extra,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await wire.send(wire.head(status, headers) + wire.data(body) + wire.end())


async def read_request(
    wire: Wire, keepalive_timeout: float | None, max_body_bytes: int
) -> Request | Refusal | None:
    """Read one whole request.

    Returns:
        The request; a `Refusal` to send before closing (a malformed request, a body
        over `max_body_bytes`); or None when the connection should just end (the peer
        closed it, or stayed idle longer than `keepalive_timeout` between requests).
    """
    conn = wire.conn
    head: h11.Request | None = None
    body: list[bytes] = []
    size = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return None
            return Refusal(exc.error_status_hint, _error(f"Malformed HTTP request: {exc}"))
        if event is h11.NEED_DATA:
            if head is None and keepalive_timeout is not None:
                with trio.move_on_after(keepalive_timeout):
                    conn.receive_data(await wire.stream.receive_some(_RECEIVE_SIZE))
                    continue
                return None  # idle too long: close quietly, as real servers do
            conn.receive_data(await wire.stream.receive_some(_RECEIVE_SIZE))
            continue
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body_bytes:
                return _too_large(max_body_bytes)
            body.append(event.data)
        elif isinstance(event, h11.Request):
            head = event
            length = _content_length(event.headers)
            if length is not None and length > max_body_bytes:
                return _too_large(max_body_bytes)
            if conn.they_are_waiting_for_100_continue:
                await wire.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            path, _, query = head.target.partition(b"?")
            return Request(head.method, path, dict(head.headers), b"".join(body), query)
        else:  # ConnectionClosed (or PAUSED, which cannot happen between requests)
            return None


def _too_large(limit: int) -> Refusal:
    # We stop reading the body, so the connection cannot be reused.
    message = f"Request body too large: the limit is {limit} bytes."
    return Refusal(413, _error(message, "request_too_large"))


def _error(message: str, code: str | None = None) -> bytes:
    return error_body(message, "invalid_request_error", None, code)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has already checked it is a valid number
    return None
