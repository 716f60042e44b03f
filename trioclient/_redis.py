"""A small trio-native Redis client: what the shared budget needs and nothing more.

The protocol is :mod:`trioclient._resp` (sans-I/O); this module is the I/O around it:
trio TCP streams, ``AUTH``/``SELECT`` from the URL, one command and its reply at a
time per connection, a pool of idle connections, and every wait bounded by a cancel
scope. It is not a general Redis client: no pub/sub, no cluster redirections, no TLS.

Failures are one exception, :class:`RedisError`, whose message names the server by its
redacted URL (never the password): refused or lost connections, a reply that did not
come within ``timeout``, a peer that does not speak RESP, an error reply to ``AUTH`` or
``SELECT``. Error replies to the commands themselves are returned as
:class:`~trioclient._resp.RespError` values for the caller to judge.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from typing import Any

import attrs
import trio

from ._resp import NEED_MORE, RespError, RespProtocolError, RespReader, encode_command

__all__ = ["RedisError", "RedisPool", "RedisURL"]

DEFAULT_PORT = 6379


class RedisError(Exception):
    """Redis could not be used: unreachable, lost, too slow, or refused our login."""


@attrs.frozen(repr=False)
class RedisURL:
    """Where a Redis server is and how to log in: ``redis://[[user]:password@]host[:port][/db]``.

    The password is kept out of every repr and message: :attr:`redacted` is the form
    to show.
    """

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisURL:
        """Read a ``redis://`` URL; a bad one raises :class:`ValueError` naming what is wrong
        (with the password masked)."""
        if not isinstance(url, str):
            raise TypeError(f"the Redis URL must be a string, got {type(url).__name__}")
        parts = urllib.parse.urlsplit(url)
        shown = _redact(url)
        if parts.scheme != "redis":
            hint = " (TLS is not supported; use a local tunnel)" if parts.scheme == "rediss" else ""
            raise ValueError(f"a Redis URL must start with redis://, got {shown!r}{hint}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"bad port in the Redis URL {shown!r}") from None
        if not parts.hostname:
            raise ValueError(f"no host in the Redis URL {shown!r}")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the Redis URL's path must be a database number, got {shown!r}")
        query = urllib.parse.parse_qs(parts.query)
        db_text = path or (query.get("db") or ["0"])[0]
        if not db_text.isdigit():
            raise ValueError(f"the Redis URL's db must be a number, got {shown!r}")
        username = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname, port, int(db_text), username, password)

    @property
    def redacted(self) -> str:
        """The URL as it may be shown: ``redis://:***@host:port/db`` when it has a password."""
        login = ""
        if self.password is not None:
            login = f"{self.username or ''}:***@"
        elif self.username:
            login = f"{self.username}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{login}{host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisURL({self.redacted!r})"


def _redact(url: str) -> str:
    # For error messages about a URL we could not parse: mask anything between
    # "//" and "@", which is where a password would be.
    # "//" and the last "@", where a password would be (even one with an unescaped "/"
    # or "@" in it, which is what made the URL unreadable).
    scheme, sep, rest = url.partition("//")
    if sep and "@" in rest:
        _, _, host = rest.rpartition("@")
        return f"{scheme}//***@{host}"
    return url


class _Connection:
    """One TCP connection: a command out, its reply in, in turn.

    The exchange reads and writes the socket's file descriptor directly, waiting with
    :func:`trio.lowlevel.wait_readable`: a command is a few hundred bytes that the
    kernel takes at once, and a reply is one small read, so the stream's (and the trio
    socket's) checkpoints and retry loops around each call were most of the client's
    cost of a round trip (see ``benchmarks/shared_budget.py``). The wait for the reply
    is the call's checkpoint.
    """

    __slots__ = ("fd", "reader", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()
        self.reader = RespReader()

    async def roundtrip(self, data: bytes) -> Any:
        fd = self.fd
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        while sent < len(data):  # a full send buffer: rare for a command this small
            await trio.lowlevel.wait_writable(fd)
            try:
                sent += os.write(fd, data[sent:])
            except BlockingIOError:
                pass
        reader = self.reader
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise trio.BrokenResourceError("the server closed the connection")
            if reader.empty and chunk[:1] == b":" and chunk.find(b"\r\n") == len(chunk) - 2:
                # The usual reply, an integer arriving whole: read without the reader.
                try:
                    return int(chunk[1:-2])
                except ValueError:
                    pass  # the reader will say what is wrong with it
            reader.feed(chunk)
            reply = reader.gets()
            if reply is not NEED_MORE:
                return reply

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


@attrs.define(eq=False)
class RedisPool:
    """Connections to one Redis server, opened when needed and reused while they work.

    A command takes an idle connection or opens one, so there are as many
    connections as commands in progress at once (for a client's budget, at most its
    ``max_concurrent``).

    Args:
        url: The server.
        timeout: Seconds for a connection (with its login) to open and for each reply
            to arrive; past it the command fails with :class:`RedisError` and its
            connection is dropped.
    """

    url: RedisURL
    timeout: float = 2.0
    _idle: list[_Connection] = attrs.field(init=False, factory=list)
    #: Commands sent (each one network round trip).
    round_trips: int = attrs.field(init=False, default=0)
    #: Connections opened (the first, then one after each loss).
    connections_opened: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.timeout, int | float) and self.timeout > 0) or not math.isfinite(
            self.timeout
        ):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")

    async def execute(self, *args: bytes | str | int | float) -> Any:
        """Send one command and return its reply (an error reply as a ``RespError``).

        Raises:
            RedisError: unreachable, lost, no reply within ``timeout``, not RESP.
        """
        return await self.execute_encoded(encode_command(*args))

    async def execute_encoded(self, data: bytes) -> Any:
        """Send one command already encoded (:func:`~trioclient._resp.encode_command`).

        A connection that was idle in the pool may have died meanwhile (a restarted
        server): if it fails before any reply, the command is sent once more on a fresh
        connection. A fresh connection that fails raises.

        Raises:
            RedisError: unreachable, lost, no reply within ``timeout``, not RESP.
        """
        while True:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._open()
            self.round_trips += 1
            try:
                with trio.move_on_after(self.timeout) as scope:
                    reply = await connection.roundtrip(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                await connection.aclose()
                if reused:
                    continue
                raise RedisError(f"lost the connection to {self.url.redacted}: {exc}") from exc
            except RespProtocolError as exc:
                await connection.aclose()
                raise RedisError(f"{self.url.redacted} does not speak RESP: {exc}") from exc
            except BaseException:
                # Cancelled mid-command: the reply may still come, so the connection
                # is out of step with its replies and must not be reused.
                await connection.aclose()
                raise
            if scope.cancelled_caught:
                await connection.aclose()
                raise RedisError(f"no reply from {self.url.redacted} within {self.timeout:g} s")
            self._idle.append(connection)
            return reply

    async def _open(self) -> _Connection:
        url = self.url
        with trio.move_on_after(self.timeout) as scope:
            try:
                stream = await trio.open_tcp_stream(url.host, url.port)
            except OSError as exc:
                raise RedisError(f"cannot connect to {url.redacted}: {exc}") from exc
            connection = _Connection(stream)
            try:
                if url.password is not None:
                    login = (
                        ("AUTH", url.username, url.password)
                        if url.username
                        else ("AUTH", url.password)
                    )
                    await self._login(connection, "AUTH", encode_command(*login))
                if url.db:
                    await self._login(connection, "SELECT", encode_command("SELECT", url.db))
            except BaseException:
                await connection.aclose()
                raise
        if scope.cancelled_caught:
            raise RedisError(
                f"cannot connect to {url.redacted}: no answer within {self.timeout:g} s"
            )
        self.connections_opened += 1
        return connection

    async def _login(self, connection: _Connection, what: str, data: bytes) -> None:
        try:
            reply = await connection.roundtrip(data)
        except (OSError, trio.BrokenResourceError, RespProtocolError) as exc:
            raise RedisError(f"{what} failed on {self.url.redacted}: {exc}") from exc
        if isinstance(reply, RespError):
            # Redis's own message (WRONGPASS, NOAUTH, DB index out of range) never
            # contains the password we sent.
            raise RedisError(f"{what} refused by {self.url.redacted}: {reply.message}")

    async def aclose(self) -> None:
        """Close the idle connections (a later command opens a new one)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()
