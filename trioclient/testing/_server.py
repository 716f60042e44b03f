"""The embedded OpenAI-compatible server: `Server`, `serve` and `open_server`.

One task per connection reads a request (`_http`), routes it by path, and writes the
response; keep-alive connections loop with h11's `start_next_cycle`. The chat
behaviour is `_chat`, request validation `_validate`, the bytes of bodies and SSE
events `_render`, the counters `_stats`.

Robustness is part of the contract: a client that disconnects mid-stream is
routine (no log, no traceback), and a handler that raises takes down only its own
connection (logged once at debug level, counted in `statistics().handler_errors`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio

from .._background import open_background
from ._batches import BatchService
from ._chat import ChatEndpoint
from ._config import ServerConfig
from ._embeddings import EmbeddingsEndpoint
from ._errors import error_body
from ._http import MAX_HEAD_BYTES, Refusal, Request, RequestIds, Wire, read_request, send_simple
from ._pacer import Pacer
from ._ratelimit import RateLimiter
from ._render import json_dumps, model_object
from ._responses import ResponsesEndpoint
from ._stats import Counters, ServerStatistics, snapshot
from ._validate import SIM_HEADER, authenticate

__all__ = ["SIM_HEADER", "Server", "ServerStatistics", "open_server", "serve"]

log = logging.getLogger("trioclient.testing")

_CHAT_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_MODELS_PATHS = frozenset({b"/v1/models", b"/models"})
_HEALTH_PATHS = frozenset({b"/health", b"/v1/health"})
_EMBEDDINGS_PATHS = frozenset({b"/v1/embeddings", b"/embeddings"})
_RESPONSES_PATHS = frozenset({b"/v1/responses", b"/responses"})


@attrs.define(eq=False)
class Server:
    """A running embedded server. Get one from `open_server` or `serve`.

    Attributes:
        config: the configuration in force (replace it with `set_config`).
        host: the bound address.
        port: the bound port (the real one when the config asked for 0).
    """

    config: ServerConfig
    host: str
    port: int
    _counters: Counters = attrs.field(factory=Counters, init=False, repr=False)
    _ids: RequestIds = attrs.field(factory=RequestIds, init=False, repr=False)
    _pacer: Pacer = attrs.field(factory=Pacer, init=False, repr=False)
    _chat: ChatEndpoint = attrs.field(init=False, repr=False)
    _embeddings: EmbeddingsEndpoint = attrs.field(init=False, repr=False)
    _responses: ResponsesEndpoint = attrs.field(init=False, repr=False)
    _batches: BatchService = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._chat = ChatEndpoint.for_config(self.config, self._counters, self._ids, self._pacer)
        # The other model endpoints share the chat endpoint's buckets, faults and pacer.
        self._embeddings = EmbeddingsEndpoint(self._chat)
        self._responses = ResponsesEndpoint(self._chat)
        self._batches = BatchService(self._chat, self._ids)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. `http://127.0.0.1:PORT/v1`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def set_config(self, config: ServerConfig | None = None, **changes: Any) -> None:
        """Replace the configuration for requests that arrive from now on.

        Changing `rpm` or `tpm` starts fresh (full) buckets; `host`/`port` cannot change.

        Args:
            config: a whole new config; or None to start from the current one.
            **changes: fields to change, as for `attrs.evolve`.
        """
        new = attrs.evolve(config or self.config, **changes)
        if (new.host, new.port) != (self.config.host, self.config.port) and config is None:
            raise ValueError("host and port cannot change on a running server")
        limiter = self._chat.limiter
        if (new.rpm, new.tpm) != (limiter.rpm, limiter.tpm):
            self._chat.limiter = RateLimiter(new.rpm, new.tpm)
        self.config = new

    def script_faults(self, faults: Iterable[str | None]) -> None:
        """Queue faults for the next chat requests, one each, in order (None = normal).

        Raises:
            ValueError: if a name is not a known fault kind.
        """
        self._chat.faults.add_script(faults)

    def statistics(self) -> ServerStatistics:
        """A frozen snapshot of the counters (cheap enough to poll in a test loop)."""
        return snapshot(self._counters)

    # ----------------------------------------------------------------- connections

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes (the `serve_listeners` handler)."""
        c = self._counters
        c.connections_accepted += 1
        c.connections_open += 1
        c.peak_connections = max(c.peak_connections, c.connections_open)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        wire = Wire(stream, conn, c.responses_by_status)
        try:
            await self._connection_loop(wire)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client went away (or we reset it on purpose): routine, not an error.
            pass
        except Exception:
            c.handler_errors += 1
            log.debug("embedded server: a connection handler failed", exc_info=True)
        finally:
            c.connections_open -= 1
            stream.socket.close()

    async def _connection_loop(self, wire: Wire) -> None:
        conn = wire.conn
        c = self._counters
        while True:
            config = self.config
            request = await read_request(wire, config.keepalive_timeout, config.max_body_bytes)
            if request is None:
                return
            if isinstance(request, Refusal):
                await send_simple(wire, request.status, request.body, self._ids.next(), close=True)
                return
            c.in_flight += 1
            c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
            try:
                keep_open = await self._dispatch(wire, request)
            finally:
                c.in_flight -= 1
            if not keep_open or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    # --------------------------------------------------------------------- routing

    async def _dispatch(self, wire: Wire, request: Request) -> bool:
        """Route one request by path; False means the connection must end."""
        c = self._counters
        c.requests_total += 1
        path, method = request.path, request.method
        if path in _CHAT_PATHS:
            c.requests_by_path["/v1/chat/completions"] += 1
            if method == b"POST":
                c.chat_requests += 1
                return await self._chat.answer(wire, request, self.config)
            await self._not_allowed(wire, request, b"POST")
        elif path in _EMBEDDINGS_PATHS:
            c.requests_by_path["/v1/embeddings"] += 1
            if method == b"POST":
                return await self._embeddings.answer(wire, request, self.config)
            await self._not_allowed(wire, request, b"POST")
        elif path in _RESPONSES_PATHS:
            c.requests_by_path["/v1/responses"] += 1
            if method == b"POST":
                return await self._responses.answer(wire, request, self.config)
            await self._not_allowed(wire, request, b"POST")
        elif path.startswith((b"/v1/files", b"/v1/batches", b"/files", b"/batches")):
            c.requests_by_path["/v1/batches" if b"batches" in path else "/v1/files"] += 1
            return await self._batches.answer(wire, request, self.config)
        elif path in _MODELS_PATHS or path.startswith((b"/v1/models/", b"/models/")):
            c.requests_by_path["/v1/models"] += 1
            if method == b"GET":
                await self._models(wire, request)
            else:
                await self._not_allowed(wire, request, b"GET")
        elif path in _HEALTH_PATHS:
            c.requests_by_path["/health"] += 1
            if method in (b"GET", b"HEAD"):
                await send_simple(wire, 200, b'{"status":"ok"}', self._ids.next())
            else:
                await self._not_allowed(wire, request, b"GET")
        else:
            c.requests_by_path["other"] += 1
            message = f"Invalid URL ({method.decode('latin-1')} {path.decode('latin-1')})"
            body = error_body(message, "invalid_request_error")
            await send_simple(wire, 404, body, self._ids.next())
        return True

    async def _not_allowed(self, wire: Wire, request: Request, allow: bytes) -> None:
        message = (
            f"Method {request.method.decode('latin-1')} not allowed for "
            f"{request.path.decode('latin-1')}; use {allow.decode()}."
        )
        body = error_body(message, "invalid_request_error")
        await send_simple(wire, 405, body, self._ids.next(), extra=[(b"allow", allow)])

    async def _models(self, wire: Wire, request: Request) -> None:
        request_id = self._ids.next()
        _, problem = authenticate(request, self.config.api_key)
        if problem is not None:
            await send_simple(wire, 401, problem, request_id)
            return
        models = self.config.models
        _, _, model_id = request.path.partition(b"/models/")
        if model_id:
            name = model_id.decode("utf-8", "replace")
            if name not in models:
                body = error_body(
                    f"The model '{name}' does not exist",
                    "invalid_request_error",
                    "model",
                    "model_not_found",
                )
                await send_simple(wire, 404, body, request_id)
                return
            await send_simple(wire, 200, json_dumps(model_object(name)), request_id)
            return
        listing = {"object": "list", "data": [model_object(m) for m in models]}
        await send_simple(wire, 200, json_dumps(listing), request_id)


def _make_config(config: ServerConfig | None, changes: Mapping[str, Any]) -> ServerConfig:
    if config is None:
        return ServerConfig(**changes)
    return attrs.evolve(config, **changes) if changes else config


async def serve(
    config: ServerConfig | None = None,
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **changes: Any,
) -> None:
    """Run a server until cancelled; `nursery.start(serve, ...)` returns the `Server`.

    Binds first, then reports ready, so the caller can connect as soon as `start`
    returns. With `port=0` and a host name that resolves to several addresses, only
    the first address is served (each would otherwise get a different port).

    Args:
        config: a `ServerConfig`; or None to build one from `**changes`.
        task_status: from `nursery.start`.
        **changes: `ServerConfig` fields (applied on top of `config` if both are given).
    """
    config = _make_config(config, changes)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    if config.port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    sockname = listeners[0].socket.getsockname()
    server = Server(config=config, host=sockname[0], port=sockname[1])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._pacer.run)
        await nursery.start(trio.serve_listeners, server.handle_connection, listeners)
        task_status.started(server)


@asynccontextmanager
async def open_server(config: ServerConfig | None = None, **changes: Any) -> AsyncIterator[Server]:
    """Run a server for the duration of an `async with` block.

    Entering binds and starts serving (it blocks only until the socket listens);
    leaving cancels every connection and closes the socket. An exception raised in
    the block (a failed `assert`) comes out as itself, not in an `ExceptionGroup`.

    >>> async with open_server(rpm=60) as server:  # doctest: +SKIP
    ...     client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url)

    Args:
        config: a `ServerConfig`; or None to build one from `**changes`.
        **changes: `ServerConfig` fields.
    """
    config = _make_config(config, changes)
    async with open_background() as nursery:
        yield await nursery.start(serve, config)
