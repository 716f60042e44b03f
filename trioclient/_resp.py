"""RESP, the Redis protocol, without I/O: commands encoded to bytes, replies parsed from bytes.

Like h11 for HTTP and our SSE decoder, the reader is a plain object you
:meth:`RespReader.feed` bytes into and pull replies out of with
:meth:`RespReader.gets`, which answers :data:`NEED_MORE` until a whole reply is in.
There is no socket here, nothing async, so its tests are plain functions and a reply
split anywhere parses the same as one read whole.

It reads RESP2 (what every Redis and Valkey speaks by default) and the RESP3 types a
server sends after ``HELLO 3``. Reply errors (``-ERR ...``) are values,
:class:`RespError`, not exceptions: the caller decides what an error reply means (a
``NOSCRIPT`` is an instruction to send the script, not a failure). A byte stream that is
not RESP raises :class:`RespProtocolError`.

Replies map to Python as: simple string -> ``str``; bulk string -> ``bytes``; integer
and big number -> ``int``; double -> ``float``; boolean -> ``bool``; null -> ``None``;
array, set and push -> ``list``; map -> ``dict``; error -> :class:`RespError`.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = [
    "NEED_MORE",
    "RespError",
    "RespProtocolError",
    "RespReader",
    "encode_command",
]


class RespProtocolError(Exception):
    """The peer sent bytes that are not RESP (or a reply larger than the reader allows)."""


@attrs.frozen
class RespError:
    """An error reply, such as ``ERR unknown command`` or ``NOSCRIPT No matching script``.

    Attributes:
        message: The whole text after the ``-``.
    """

    message: str

    @property
    def code(self) -> str:
        """The first word, by Redis convention the error's kind: ``"ERR"``, ``"NOSCRIPT"``."""
        return self.message.split(" ", 1)[0]


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


#: What :meth:`RespReader.gets` returns while no whole reply has arrived yet.
NEED_MORE: Final = _NeedMore()


def encode_command(*args: bytes | str | int | float) -> bytes:
    """A command as a RESP array of bulk strings, the form Redis reads from clients.

    >>> encode_command("GET", "key")
    b'*2\\r\\n$3\\r\\nGET\\r\\n$3\\r\\nkey\\r\\n'
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a Redis argument cannot be a bool (say 0 or 1)")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument must be bytes, str, int or float, got {arg!r}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """Internal: the buffer ends inside a reply."""


#: Largest buffered reply by default: our replies are a few dozen bytes, so anything
#: near this is a peer gone wrong, not data.
DEFAULT_MAX_BUFFER = 64 * 1024 * 1024

_AGGREGATES = {ord("*"): "array", ord("~"): "set", ord(">"): "push", ord("%"): "map"}


class RespReader:
    """Parses a stream of RESP replies fed in pieces of any size.

    ::

        reader = RespReader()
        reader.feed(b":4")
        reader.gets()        # NEED_MORE
        reader.feed(b"2\\r\\n+OK\\r\\n")
        reader.gets()        # 42
        reader.gets()        # 'OK'

    Args:
        max_buffer: Most bytes held while a reply is incomplete; more raises
            :class:`RespProtocolError` (a bounded buffer, as h11 keeps).
    """

    __slots__ = ("_buffer", "_max_buffer", "_pos")

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self._buffer = bytearray()
        self._pos = 0
        self._max_buffer = max_buffer

    @property
    def empty(self) -> bool:
        """Whether no unread bytes are buffered."""
        return self._pos >= len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add bytes received from the server."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data
        if len(self._buffer) > self._max_buffer:
            raise RespProtocolError(
                f"reply larger than the reader's limit of {self._max_buffer} bytes"
            )

    def gets(self) -> Any:
        """The next whole reply, or :data:`NEED_MORE`.

        An incomplete reply consumes nothing: it is parsed again from its start once
        more bytes arrive (our replies are small, so this costs less than keeping a
        parser's stack between feeds).
        """
        if self._pos >= len(self._buffer):
            return NEED_MORE
        try:
            value, end = self._parse(self._pos)
        except _Incomplete:
            return NEED_MORE
        self._pos = end
        return value

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            if len(self._buffer) - pos > 64 * 1024:
                raise RespProtocolError("a RESP header line longer than 64 KiB")
            raise _Incomplete
        return bytes(self._buffer[pos:end]), end + 2

    def _int(self, text: bytes, what: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise RespProtocolError(f"bad {what} in a RESP reply: {text[:40]!r}") from None

    def _blob(self, pos: int, length: int) -> tuple[bytes, int]:
        end = pos + length
        if len(self._buffer) < end + 2:
            raise _Incomplete
        if self._buffer[end : end + 2] != b"\r\n":
            raise RespProtocolError("a RESP bulk string not followed by CRLF")
        return bytes(self._buffer[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        buffer = self._buffer
        if pos >= len(buffer):
            raise _Incomplete
        kind = buffer[pos]
        line, pos = self._line(pos + 1)
        if kind == 0x2B:  # + simple string
            return line.decode("utf-8", "replace"), pos
        if kind == 0x2D:  # - error
            return RespError(line.decode("utf-8", "replace")), pos
        if kind == 0x3A or kind == 0x28:  # : integer, ( big number
            return self._int(line, "integer"), pos
        if kind == 0x24 or kind == 0x21 or kind == 0x3D:  # $ bulk, ! bulk error, = verbatim
            length = self._int(line, "length")
            if length == -1 and kind == 0x24:
                return None, pos  # RESP2 null bulk string
            if length < 0:
                raise RespProtocolError(f"negative length {length} in a RESP reply")
            if length > self._max_buffer:
                raise RespProtocolError(
                    f"a {length}-byte string exceeds the reader's limit of {self._max_buffer}"
                )
            data, pos = self._blob(pos, length)
            if kind == 0x21:
                return RespError(data.decode("utf-8", "replace")), pos
            if kind == 0x3D:
                return data[4:], pos  # "txt:" or "mkd:" before the text
            return data, pos
        if kind in _AGGREGATES:
            count = self._int(line, "length")
            if count == -1 and kind == 0x2A:
                return None, pos  # RESP2 null array
            if count < 0:
                raise RespProtocolError(f"negative length {count} in a RESP reply")
            if kind == 0x25:  # % map
                mapping: dict[Any, Any] = {}
                for _ in range(count):
                    key, pos = self._parse(pos)
                    value, pos = self._parse(pos)
                    mapping[key if _hashable(key) else repr(key)] = value
                return mapping, pos
            items: list[Any] = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        if kind == 0x5F:  # _ null
            if line:
                raise RespProtocolError(f"a RESP null with data: {line[:40]!r}")
            return None, pos
        if kind == 0x23:  # # boolean
            if line == b"t":
                return True, pos
            if line == b"f":
                return False, pos
            raise RespProtocolError(f"bad RESP boolean: {line[:40]!r}")
        if kind == 0x2C:  # , double
            try:
                return float(line), pos
            except ValueError:
                raise RespProtocolError(f"bad RESP double: {line[:40]!r}") from None
        raise RespProtocolError(f"unknown RESP type byte {bytes([kind])!r}")


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
