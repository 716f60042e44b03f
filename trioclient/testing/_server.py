"""The embedded OpenAI-compatible server: HTTP/1.1 over trio sockets with h11.

One task per connection reads a request with h11, routes it, and writes the
response; keep-alive connections loop with `start_next_cycle`. Everything the
server pretends (latency, rate limits, faults) is decided per chat request from one
snapshot of the `ServerConfig`, so `set_config` mid-test never tears a response.

Robustness is part of the contract: a client that disconnects mid-stream is
routine (no log, no traceback), and a handler that raises takes down only its own
connection (logged once at debug level, counted in `statistics().handler_errors`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio

from . import _answers
from ._config import Distribution, ServerConfig, check_fault_name, to_distribution
from ._errors import (
    HTML_502_PAGE,
    SERVER_ERROR_MESSAGE,
    STATUS_ERRORS,
    error_body,
    json_type_name,
    redact_key,
)
from ._faults import NON_STREAM_EQUIVALENT, STREAM_EQUIVALENT, FaultPicker
from ._pacer import Pacer
from ._ratelimit import RateDecision, RateLimiter

__all__ = ["SIM_HEADER", "Server", "ServerStatistics", "open_server", "serve"]

log = logging.getLogger("trioclient.testing")

#: The per-request override header: a JSON object with any of
#: `fault` (a fault kind, or null for "no fault" without consuming the script),
#: `ttft` and `tps` (a number or a distribution string; tps null = unpaced) and
#: `answer_tokens` (a positive integer).
SIM_HEADER = b"x-trioclient-sim"

_MAX_HEAD_BYTES = 64 * 1024
_RECEIVE_SIZE = 65536
_LAG_SAMPLES = 200_000
_VALID_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_HTTP_FAULT_STATUS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
_STREAM_FAULTS_AT_STEP = frozenset(
    {"reset_mid_stream", "truncated_stream", "malformed_chunk", "error_event"}
)
_SIM_KEYS = frozenset({"fault", "ttft", "tps", "answer_tokens"})

_JSON = b"application/json"
_DONE = b"data: [DONE]\n\n"
_SSE = b"text/event-stream; charset=utf-8"
_CHAT_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_MODELS_PATHS = frozenset({b"/v1/models", b"/models"})
_HEALTH_PATHS = frozenset({b"/health", b"/v1/health"})


@attrs.frozen
class ServerStatistics:
    """A snapshot of what the server has seen and done since it started.

    Attributes:
        requests_by_path: request count per known path (unknown paths count as "other").
        requests_total: all requests, whatever their path or outcome.
        chat_requests: requests to the chat completions endpoint.
        responses_by_status: responses sent per HTTP status (resets are not responses).
        rate_limited: 429 responses sent (rate limits, quota, the `rate_limited` fault).
        faults_injected: faults applied per kind.
        connections_accepted: TCP connections accepted.
        connections_open: connections open now.
        peak_connections: most connections open at once.
        in_flight_requests: requests being handled now.
        peak_in_flight_requests: most requests handled at once: what a test checks to
            prove a client's concurrency limiter held.
        prompt_tokens: prompt tokens of the chat requests answered.
        completion_tokens: completion tokens of the answers fully sent.
        stream_lag_p50, stream_lag_p99, stream_lag_max: how late paced stream chunks
            were sent against their schedule, in seconds (0 when nothing was paced).
        paced_chunks: how many paced sends those figures cover (the last 200,000).
        handler_errors: connections that ended because the handler raised.
    """

    requests_by_path: Mapping[str, int]
    requests_total: int
    chat_requests: int
    responses_by_status: Mapping[int, int]
    rate_limited: int
    faults_injected: Mapping[str, int]
    connections_accepted: int
    connections_open: int
    peak_connections: int
    in_flight_requests: int
    peak_in_flight_requests: int
    prompt_tokens: int
    completion_tokens: int
    stream_lag_p50: float
    stream_lag_p99: float
    stream_lag_max: float
    paced_chunks: int
    handler_errors: int


@attrs.define
class _Counters:
    requests_by_path: Counter[str] = attrs.field(factory=Counter)
    requests_total: int = 0
    chat_requests: int = 0
    responses_by_status: Counter[int] = attrs.field(factory=Counter)
    rate_limited: int = 0
    faults_injected: Counter[str] = attrs.field(factory=Counter)
    connections_accepted: int = 0
    connections_open: int = 0
    peak_connections: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lags: deque[float] = attrs.field(factory=lambda: deque(maxlen=_LAG_SAMPLES))
    handler_errors: int = 0


@attrs.frozen
class _Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes


@attrs.frozen
class _Sim:
    """Per-request overrides from the `x-trioclient-sim` header."""

    has_fault: bool = False
    fault: str | None = None
    ttft: Distribution | None = None
    has_tps: bool = False
    tps: Distribution | None = None
    answer_tokens: int | None = None


class _BadRequest(Exception):
    """A request we answer with a 400; carries the OpenAI-style error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InjectedCrash(RuntimeError):
    """Raised by the `handler_crash` fault to prove one broken handler is contained."""


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[max(0, index)]


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _check_positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _BadRequest(
            f"Invalid type for '{name}': expected an integer, but got "
            f"{json_type_name(value)} instead.",
            name,
            "invalid_type",
        )
    if value < 1:
        raise _BadRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise _BadRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )


def _validate_chat(body: Any) -> None:
    """Raise `_BadRequest` naming the first thing wrong with a chat request body."""
    if not isinstance(body, dict):
        raise _BadRequest(
            f"Invalid type for body: expected an object, but got {json_type_name(body)} instead.",
            None,
            "invalid_type",
        )
    model = body.get("model")
    if model is None:
        raise _BadRequest("you must provide a model parameter", None, None)
    if not isinstance(model, str):
        raise _BadRequest(
            f"Invalid type for 'model': expected a string, but got {json_type_name(model)} "
            "instead.",
            "model",
            "invalid_type",
        )
    if "messages" not in body:
        raise _BadRequest(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _BadRequest(
            "Invalid type for 'messages': expected an array of objects, but got "
            f"{json_type_name(messages)} instead.",
            "messages",
            "invalid_type",
        )
    if not messages:
        raise _BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _BadRequest(
                f"Invalid type for '{where}': expected an object, but got "
                f"{json_type_name(message)} instead.",
                where,
                "invalid_type",
            )
        role = message.get("role")
        if role is None:
            raise _BadRequest(
                f"Missing required parameter: '{where}.role'.",
                f"{where}.role",
                "missing_required_parameter",
            )
        if role not in _VALID_ROLES:
            supported = ", ".join(f"'{r}'" for r in _VALID_ROLES[:-1])
            raise _BadRequest(
                f"Invalid value: {json.dumps(role)}. Supported values are: {supported}, "
                f"and '{_VALID_ROLES[-1]}'.",
                f"{where}.role",
                "invalid_value",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _BadRequest(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                f"objects, but got {json_type_name(content)} instead.",
                f"{where}.content",
                "invalid_type",
            )
    _check_positive_int(body, "max_tokens")
    _check_positive_int(body, "max_completion_tokens")
    _check_positive_int(body, "n", maximum=128)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _BadRequest(
            f"Invalid type for 'stream': expected a boolean, but got {json_type_name(stream)} "
            "instead.",
            "stream",
            "invalid_type",
        )
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _BadRequest(
                "Invalid type for 'stream_options': expected an object, but got "
                f"{json_type_name(options)} instead.",
                "stream_options",
                "invalid_type",
            )
        if not stream:
            raise _BadRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
                None,
            )
        include = options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise _BadRequest(
                "Invalid type for 'stream_options.include_usage': expected a boolean, but "
                f"got {json_type_name(include)} instead.",
                "stream_options.include_usage",
                "invalid_type",
            )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise _BadRequest(
            f"Invalid type for 'seed': expected an integer, but got {json_type_name(seed)} "
            "instead.",
            "seed",
            "invalid_type",
        )
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise _BadRequest(
                f"Invalid type for '{name}': expected a number, but got "
                f"{json_type_name(value)} instead.",
                name,
                "invalid_type",
            )


def _parse_sim(raw: bytes | None) -> _Sim:
    """Parse the `x-trioclient-sim` header (raises `_BadRequest` naming the problem)."""
    if raw is None:
        return _Sim()
    try:
        spec = json.loads(raw)
    except ValueError:
        raise _BadRequest("x-trioclient-sim header is not valid JSON", "x-trioclient-sim") from None
    if not isinstance(spec, dict):
        raise _BadRequest("x-trioclient-sim header must be a JSON object", "x-trioclient-sim")
    unknown = set(spec) - _SIM_KEYS
    if unknown:
        raise _BadRequest(
            f"x-trioclient-sim: unknown key(s) {sorted(unknown)}; known: {sorted(_SIM_KEYS)}",
            "x-trioclient-sim",
        )
    try:
        fault = spec.get("fault")
        if fault is not None:
            check_fault_name(fault)
        ttft = spec.get("ttft")
        tps = spec.get("tps")
        answer_tokens = spec.get("answer_tokens")
        if answer_tokens is not None and (
            not isinstance(answer_tokens, int)
            or isinstance(answer_tokens, bool)
            or answer_tokens < 1
        ):
            raise ValueError("answer_tokens must be a positive integer")
        return _Sim(
            has_fault="fault" in spec,
            fault=fault,
            ttft=None if ttft is None else to_distribution(ttft),
            has_tps="tps" in spec,
            tps=None if tps is None else to_distribution(tps),
            answer_tokens=answer_tokens,
        )
    except (TypeError, ValueError) as exc:
        raise _BadRequest(f"x-trioclient-sim: {exc}", "x-trioclient-sim") from None


@attrs.define(eq=False)
class _Wire:
    """One connection's output side: h11 framing plus the raw socket for resets."""

    stream: trio.SocketStream
    conn: h11.Connection

    async def send(self, data: bytes) -> None:
        """Write `data`, straight to the socket when its buffer has room.

        trio's `send_all` costs several microseconds of bookkeeping per call; with
        thousands of streams that is the server's budget. A plain non-blocking
        write usually takes everything, and only the rest (or all of it, when the
        buffer is full) goes through `send_all`, which waits for room. Callers
        checkpoint elsewhere (every request reads, every paced chunk waits).

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
        return self.conn.send(h11.Response(status_code=status, headers=headers))

    def data(self, payload: bytes) -> bytes:
        return self.conn.send(h11.Data(data=payload))

    def end(self) -> bytes:
        return self.conn.send(h11.EndOfMessage())

    def reset(self) -> None:
        """Abort the connection with a TCP RST: SO_LINGER 0, then close."""
        self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.stream.socket.close()


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
    _counters: _Counters = attrs.field(factory=_Counters, init=False, repr=False)
    _limiter: RateLimiter = attrs.field(init=False, repr=False)
    _faults: FaultPicker = attrs.field(init=False, repr=False)
    _rng: random.Random = attrs.field(init=False, repr=False)
    _id_prefix: str = attrs.field(init=False, repr=False)
    _next_id: int = attrs.field(default=0, init=False, repr=False)
    _pacer: Pacer = attrs.field(factory=Pacer, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)
        self._faults = FaultPicker(random.Random(self._rng.random()))
        self._limiter = RateLimiter(self.config.rpm, self.config.tpm)
        self._id_prefix = os.urandom(6).hex()

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
        if (new.rpm, new.tpm) != (self._limiter.rpm, self._limiter.tpm):
            self._limiter = RateLimiter(new.rpm, new.tpm)
        self.config = new

    def script_faults(self, faults: Iterable[str | None]) -> None:
        """Queue faults for the next chat requests, one each, in order (None = normal).

        Raises:
            ValueError: if a name is not a known fault kind.
        """
        self._faults.add_script(faults)

    def statistics(self) -> ServerStatistics:
        """A frozen snapshot of the counters (cheap enough to poll in a test loop)."""
        c = self._counters
        lags = sorted(c.lags)
        return ServerStatistics(
            requests_by_path=dict(c.requests_by_path),
            requests_total=c.requests_total,
            chat_requests=c.chat_requests,
            responses_by_status=dict(c.responses_by_status),
            rate_limited=c.rate_limited,
            faults_injected=dict(c.faults_injected),
            connections_accepted=c.connections_accepted,
            connections_open=c.connections_open,
            peak_connections=c.peak_connections,
            in_flight_requests=c.in_flight,
            peak_in_flight_requests=c.peak_in_flight,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            stream_lag_p50=_percentile(lags, 0.5),
            stream_lag_p99=_percentile(lags, 0.99),
            stream_lag_max=lags[-1] if lags else 0.0,
            paced_chunks=len(lags),
            handler_errors=c.handler_errors,
        )

    # ----------------------------------------------------------------- connections

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes (the `serve_listeners` handler)."""
        c = self._counters
        c.connections_accepted += 1
        c.connections_open += 1
        c.peak_connections = max(c.peak_connections, c.connections_open)
        wire = _Wire(stream, h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES))
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

    async def _connection_loop(self, wire: _Wire) -> None:
        conn = wire.conn
        c = self._counters
        while True:
            request = await self._receive_request(wire)
            if request is None:
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

    async def _receive_request(self, wire: _Wire) -> _Request | None:
        """Read one whole request, or return None when the connection should end."""
        conn = wire.conn
        config = self.config
        head: h11.Request | None = None
        body: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(wire, exc)
                return None
            if event is h11.NEED_DATA:
                if head is None and config.keepalive_timeout is not None:
                    with trio.move_on_after(config.keepalive_timeout):
                        data = await wire.stream.receive_some(_RECEIVE_SIZE)
                        conn.receive_data(data)
                        continue
                    return None  # idle too long: close quietly, as real servers do
                conn.receive_data(await wire.stream.receive_some(_RECEIVE_SIZE))
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > config.max_body_bytes:
                    await self._too_large(wire)
                    return None
                body.append(event.data)
            elif isinstance(event, h11.Request):
                head = event
                length = _content_length(event.headers)
                if length is not None and length > config.max_body_bytes:
                    await self._too_large(wire)
                    return None
                if conn.they_are_waiting_for_100_continue:
                    await wire.send(
                        conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                path, _, _ = head.target.partition(b"?")
                return _Request(head.method, path, dict(head.headers), b"".join(body))
            else:  # ConnectionClosed (or PAUSED, which cannot happen between requests)
                return None

    async def _protocol_error(self, wire: _Wire, exc: h11.RemoteProtocolError) -> None:
        if wire.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint
        body = error_body(f"Malformed HTTP request: {exc}", "invalid_request_error")
        await self._send_simple(wire, status, body, close=True)

    async def _too_large(self, wire: _Wire) -> None:
        limit = self.config.max_body_bytes
        body = error_body(
            f"Request body too large: the limit is {limit} bytes.",
            "invalid_request_error",
            None,
            "request_too_large",
        )
        # We stop reading the body, so the connection cannot be reused.
        await self._send_simple(wire, 413, body, close=True)

    def _new_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id:08x}"

    async def _send_simple(
        self,
        wire: _Wire,
        status: int,
        body: bytes,
        *,
        content_type: bytes = _JSON,
        extra: Iterable[tuple[bytes, bytes]] = (),
        close: bool = False,
        request_id: str | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", f"req_{request_id or self._new_id()}".encode()),
            *extra,
        ]
        if close:
            headers.append((b"connection", b"close"))
        self._counters.responses_by_status[status] += 1
        await wire.send(wire.head(status, headers) + wire.data(body) + wire.end())

    # --------------------------------------------------------------------- routing

    async def _dispatch(self, wire: _Wire, request: _Request) -> bool:
        c = self._counters
        c.requests_total += 1
        path, method = request.path, request.method
        if path in _CHAT_PATHS:
            c.requests_by_path["/v1/chat/completions"] += 1
            if method == b"POST":
                c.chat_requests += 1
                return await self._chat(wire, request)
            await self._not_allowed(wire, request, b"POST")
        elif path in _MODELS_PATHS or path.startswith((b"/v1/models/", b"/models/")):
            c.requests_by_path["/v1/models"] += 1
            if method == b"GET":
                await self._models(wire, request)
            else:
                await self._not_allowed(wire, request, b"GET")
        elif path in _HEALTH_PATHS:
            c.requests_by_path["/health"] += 1
            if method in (b"GET", b"HEAD"):
                await self._send_simple(wire, 200, b'{"status":"ok"}')
            else:
                await self._not_allowed(wire, request, b"GET")
        else:
            c.requests_by_path["other"] += 1
            message = f"Invalid URL ({method.decode('latin-1')} {path.decode('latin-1')})"
            await self._send_simple(wire, 404, error_body(message, "invalid_request_error"))
        return True

    async def _not_allowed(self, wire: _Wire, request: _Request, allow: bytes) -> None:
        message = (
            f"Method {request.method.decode('latin-1')} not allowed for "
            f"{request.path.decode('latin-1')}; use {allow.decode()}."
        )
        await self._send_simple(
            wire, 405, error_body(message, "invalid_request_error"), extra=[(b"allow", allow)]
        )

    def _authenticate(self, request: _Request) -> tuple[str | None, bytes | None]:
        """Return (key, None) if allowed, else (None, 401 error body)."""
        header = request.headers.get(b"authorization")
        scheme, _, token = (header or b"").partition(b" ")
        key = token.strip().decode("latin-1")
        if header is None or scheme.lower() != b"bearer" or not key:
            return None, error_body(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
            )
        expected = self.config.api_key
        if expected is not None and key != expected:
            return None, error_body(
                f"Incorrect API key provided: {redact_key(key)}. You can find your API key "
                "in your account settings.",
                "invalid_request_error",
                None,
                "invalid_api_key",
            )
        return key, None

    async def _models(self, wire: _Wire, request: _Request) -> None:
        _, problem = self._authenticate(request)
        if problem is not None:
            await self._send_simple(wire, 401, problem)
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
                await self._send_simple(wire, 404, body)
                return
            await self._send_simple(wire, 200, _json_dumps(_model_object(name)))
            return
        listing = {"object": "list", "data": [_model_object(m) for m in models]}
        await self._send_simple(wire, 200, _json_dumps(listing))

    # ------------------------------------------------------------------------ chat

    async def _chat(self, wire: _Wire, request: _Request) -> bool:
        """Answer one chat completion request; False means the connection must end."""
        config = self.config
        c = self._counters
        start = trio.current_time()
        request_id = self._new_id()
        key, problem = self._authenticate(request)
        if key is None:
            assert problem is not None
            await self._send_simple(wire, 401, problem, request_id=request_id)
            return True
        try:
            try:
                body = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                raise _BadRequest(
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                    "payload, but what was sent was not valid JSON.)"
                ) from None
            _validate_chat(body)
            sim = _parse_sim(request.headers.get(SIM_HEADER))
        except _BadRequest as bad:
            await self._send_simple(
                wire,
                400,
                error_body(bad.message, "invalid_request_error", bad.param, bad.code),
                request_id=request_id,
            )
            return True

        if config.insufficient_quota:
            c.rate_limited += 1
            quota = error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                None,
                "insufficient_quota",
            )
            await self._send_simple(wire, 429, quota, request_id=request_id)
            return True

        messages: list[dict[str, Any]] = body["messages"]
        model: str = body["model"]
        prompt_key = _answers.prompt_key(messages, body.get("seed"))
        length = (
            sim.answer_tokens or config.answer_tokens or _answers.default_answer_length(prompt_key)
        )
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        n: int = body.get("n") or 1
        prompt_tokens = _answers.prompt_tokens(messages)

        cost = prompt_tokens + (limit if limit is not None else length) * n
        decision = self._limiter.check(key, cost, start)
        if decision.limited is not None:
            await self._rate_limited(wire, decision, model, request_id)
            return True
        rate_headers = decision.headers

        fault = sim.fault if sim.has_fault else self._faults.pick(config.faults)
        stream = bool(body.get("stream"))
        if fault is not None:
            fault = (STREAM_EQUIVALENT if stream else NON_STREAM_EQUIVALENT).get(fault, fault)
            c.faults_injected[fault] += 1
            if fault == "handler_crash":
                raise InjectedCrash("handler_crash fault injected")
            done = await self._early_fault(wire, fault, rate_headers, request_id)
            if done is not None:
                return done

        choices: list[tuple[tuple[str, ...], str]] = []
        for index in range(n):
            full = _answers.answer_pieces(prompt_key, index, length)
            if fault == "huge_response":
                full = _huge(full, config.fault_params.huge_bytes)
            if limit is not None and limit < len(full):
                choices.append((full[:limit], "length"))
            else:
                choices.append((full, "stop"))
        completion_tokens = sum(len(pieces) for pieces, _ in choices)
        if fault == "huge_response":
            # Megabytes as one SSE event per token would be hundreds of MB on the wire;
            # a huge answer streams as ~4 KiB deltas instead.
            choices = [(_regroup(pieces, 4096), finish) for pieces, finish in choices]
        c.prompt_tokens += prompt_tokens

        ttft = (sim.ttft or config.ttft).sample(self._rng)
        tps_dist = sim.tps if sim.has_tps else config.tps
        tps = tps_dist.sample(self._rng) if tps_dist is not None else math.inf
        if not tps > 0 or fault == "huge_response":
            tps = math.inf
        response = _ChatResponse(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=model,
            fingerprint=config.system_fingerprint,
            choices=choices,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        if fault == "stall_before_first_byte":
            await trio.sleep(config.fault_params.stall_seconds)
            start += config.fault_params.stall_seconds
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            ok = await self._stream(
                wire, response, include_usage, start, ttft, tps, fault, rate_headers, request_id
            )
        else:
            longest = max(len(pieces) for pieces, _ in choices)
            done_at = start + ttft + (max(longest - 1, 0) / tps if math.isfinite(tps) else 0.0)
            await self._pacer.wait_until(done_at)
            ok = await self._complete(wire, response, fault, rate_headers, request_id)
        if ok:
            c.completion_tokens += completion_tokens
        return ok and fault not in ("reset_mid_body", "reset_mid_stream", "truncated_stream")

    async def _rate_limited(
        self, wire: _Wire, decision: RateDecision, model: str, request_id: str
    ) -> None:
        self._counters.rate_limited += 1
        kind = decision.limited
        assert kind is not None
        unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        extra = list(decision.headers)
        if math.isinf(decision.retry_after):
            message = (
                f"Request too large for {model} on {unit}: Limit {decision.limit}, "
                f"Requested {decision.requested}. The input or output tokens must be reduced "
                "in order to run successfully."
            )
        else:
            wait = decision.retry_after
            extra.append((b"retry-after", b"%d" % max(1, math.ceil(wait))))
            extra.append((b"retry-after-ms", b"%d" % max(1, math.ceil(wait * 1000))))
            message = (
                f"Rate limit reached for {kind} per min on {model} for this API key: "
                f"Limit {decision.limit}, Used {decision.used}, Requested {decision.requested}. "
                f"Please try again in {_human_wait(wait)}."
            )
        body = error_body(message, kind, None, "rate_limit_exceeded")
        await self._send_simple(wire, 429, body, extra=extra, request_id=request_id)

    async def _early_fault(
        self,
        wire: _Wire,
        fault: str,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool | None:
        """Faults that replace the response outright; None means "carry on answering"."""
        if fault == "reset_before_response":
            wire.reset()
            return False
        status = _HTTP_FAULT_STATUS.get(fault)
        if status is not None:
            message, type_ = STATUS_ERRORS[status]
            await self._send_simple(
                wire, status, error_body(message, type_), extra=rate_headers, request_id=request_id
            )
            return True
        if fault == "html_error":
            await self._send_simple(
                wire,
                502,
                HTML_502_PAGE,
                content_type=b"text/html",
                extra=rate_headers,
                request_id=request_id,
            )
            return True
        if fault == "rate_limited":
            self._counters.rate_limited += 1
            wait = self.config.fault_params.rate_limited_retry_after
            body = error_body(
                f"Rate limit reached for requests (injected fault). Please try again in "
                f"{_human_wait(wait)}.",
                "requests",
                None,
                "rate_limit_exceeded",
            )
            extra = [
                *rate_headers,
                (b"retry-after", b"%d" % max(1, math.ceil(wait))),
                (b"retry-after-ms", b"%d" % math.ceil(wait * 1000)),
            ]
            await self._send_simple(wire, 429, body, extra=extra, request_id=request_id)
            return True
        return None

    def _headers(
        self,
        content_type: bytes,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
        content_length: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type)]
        if content_length is not None:
            headers.append((b"content-length", b"%d" % content_length))
        headers.append((b"x-request-id", f"req_{request_id}".encode()))
        headers.extend(rate_headers)
        return headers

    async def _complete(
        self,
        wire: _Wire,
        response: _ChatResponse,
        fault: str | None,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool:
        """Send a non-streaming completion, applying a body-level fault if any."""
        params = self.config.fault_params
        if fault == "error_event":
            # A 200 whose body is an error object, as some gateways send.
            body = error_body(SERVER_ERROR_MESSAGE, "server_error")
        else:
            body = _json_dumps(response.completion_object())
        content_type = _JSON
        if fault == "malformed_json":
            body = body[: len(body) // 2]
        elif fault == "wrong_content_type":
            content_type = b"text/html; charset=utf-8"
        headers = self._headers(content_type, rate_headers, request_id, len(body))
        self._counters.responses_by_status[200] += 1
        head = wire.head(200, headers)
        half = len(body) // 2
        if fault in ("reset_mid_body", "truncated_stream"):
            await wire.send(head + wire.data(body[:half]))
            if fault == "reset_mid_body":
                wire.reset()
            return False
        if fault == "stall_between_chunks":
            await wire.send(head + wire.data(body[:half]))
            await trio.sleep(params.stall_seconds)
            await wire.send(wire.data(body[half:]) + wire.end())
            return True
        if fault == "slow_trickle":
            await wire.send(head)
            await self._trickle(wire, body)
            await wire.send(wire.end())
            return True
        await wire.send(head + wire.data(body) + wire.end())
        return True

    async def _trickle(self, wire: _Wire, payload: bytes) -> None:
        params = self.config.fault_params
        step = params.trickle_bytes
        for offset in range(0, len(payload), step):
            await wire.send(wire.data(payload[offset : offset + step]))
            await trio.sleep(params.trickle_interval)

    async def _stream(
        self,
        wire: _Wire,
        response: _ChatResponse,
        include_usage: bool,
        start: float,
        ttft: float,
        tps: float,
        fault: str | None,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool:
        """Send a streaming completion: SSE events paced at start + ttft + i / tps."""
        params = self.config.fault_params
        content_type = b"text/plain; charset=utf-8" if fault == "wrong_content_type" else _SSE
        headers = self._headers(content_type, rate_headers, request_id)
        self._counters.responses_by_status[200] += 1
        head = wire.head(200, headers)
        await wire.send(head)
        # h11 frames the body as chunked for HTTP/1.1 peers (close-delimited for 1.0).
        # Framing the paced chunks ourselves skips h11's per-event work on the hot
        # path; h11 still writes the final zero-length chunk via `end()`.
        chunked = b"\r\ntransfer-encoding: chunked\r\n" in head.lower()

        steps = response.stream_steps(include_usage)
        if fault == "slow_trickle":
            await self._trickle(wire, b"".join(steps) + _DONE)
            await wire.send(wire.end())
            return True
        paced = math.isfinite(tps)
        interval = 1.0 / tps if paced else 0.0
        base = start + ttft
        lags = self._counters.lags if paced else None
        schedule = [(base + i * interval, _frame(step, chunked)) for i, step in enumerate(steps)]
        fd = wire.stream.socket.fileno()

        def with_end(part: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
            # The last step also carries [DONE] and the end of the chunked body.
            part[-1] = (part[-1][0], _frame(steps[-1] + _DONE, chunked) + wire.end())
            return part

        if fault not in _STREAM_FAULTS_AT_STEP and fault != "stall_between_chunks":
            await self._pacer.send_steps(fd, with_end(schedule), wire.send, lags)
            return True
        split = min(self.config.fault_params.chunks_before_fault, len(steps) - 1)
        await self._pacer.send_steps(fd, schedule[:split], wire.send, lags)
        if fault == "stall_between_chunks":
            await trio.sleep(params.stall_seconds)
            shifted = [(when + params.stall_seconds, data) for when, data in schedule[split:]]
            await self._pacer.send_steps(fd, with_end(shifted), wire.send, lags)
            return True
        return await self._stream_fault(wire, response, fault, steps[split], steps[split + 1 :])

    async def _stream_fault(
        self,
        wire: _Wire,
        response: _ChatResponse,
        fault: str,
        step: bytes,
        rest: list[bytes],
    ) -> bool:
        if fault == "reset_mid_stream":
            wire.reset()
            return False
        if fault == "truncated_stream":
            await wire.send(wire.end())
            return False
        if fault == "error_event":
            event = b"data: " + error_body(SERVER_ERROR_MESSAGE, "server_error") + b"\n\n"
            await wire.send(wire.data(event) + wire.end())
            return False
        # malformed_chunk: this step's first event loses the second half of its JSON.
        first, _, tail = step.partition(b"\n\n")
        broken = first[: max(8, len(first) // 2)] + b"\n\n" + tail
        await wire.send(wire.data(broken + b"".join(rest) + b"data: [DONE]\n\n") + wire.end())
        return False


def _frame(payload: bytes, chunked: bool) -> bytes:
    """One chunk of a chunked body (or the bytes as they are for a close-delimited one)."""
    if not chunked:
        return payload
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has already checked it is a valid number
    return None


def _human_wait(seconds: float) -> str:
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    return f"{seconds:.3f}s"


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "trioclient"}


def _huge(pieces: tuple[str, ...], size: int) -> tuple[str, ...]:
    """Repeat an answer until its text is at least `size` bytes (token count stays exact)."""
    text_size = max(1, sum(len(p) for p in pieces) + 1)
    repeat = size // text_size + 1
    spaced = (" " + pieces[0].lstrip(), *pieces[1:]) if pieces else (" x",)
    return pieces + spaced * repeat


def _regroup(pieces: tuple[str, ...], size: int) -> tuple[str, ...]:
    groups: list[str] = []
    current: list[str] = []
    current_size = 0
    for piece in pieces:
        current.append(piece)
        current_size += len(piece)
        if current_size >= size:
            groups.append("".join(current))
            current, current_size = [], 0
    if current:
        groups.append("".join(current))
    return tuple(groups)


@attrs.define(eq=False)
class _ChatResponse:
    """One answer, rendered as a completion object or as SSE stream steps."""

    id: str
    created: int
    model: str
    fingerprint: str
    choices: list[tuple[tuple[str, ...], str]]
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def completion_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": index,
                    "message": {
                        "role": "assistant",
                        "content": "".join(pieces),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index, (pieces, finish) in enumerate(self.choices)
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def stream_steps(self, include_usage: bool) -> list[bytes]:
        """The SSE bytes due at each pacing step (step i carries every choice's token i).

        Step 0 also opens each choice with the role delta; a choice's finish chunk rides
        with its last token; the usage chunk (if asked for) rides with the last step.
        `data: [DONE]` is added by the sender, so faults can stop short of it.
        """
        head = (
            'data: {"id":"' + self.id + '","object":"chat.completion.chunk","created":'
            f"{self.created},"
            f'"model":{json.dumps(self.model)},"system_fingerprint":{json.dumps(self.fingerprint)},'
            '"choices":[{"index":'
        ).encode()
        tail = b"}]" + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        dumps = json.dumps
        longest = max(len(pieces) for pieces, _ in self.choices)
        steps: list[list[bytes]] = [[] for _ in range(max(longest, 1))]
        for index, (pieces, finish) in enumerate(self.choices):
            prefix = head + b"%d" % index
            steps[0].append(
                prefix + b',"delta":{"role":"assistant","content":"","refusal":null},'
                b'"logprobs":null,"finish_reason":null' + tail
            )
            for position, piece in enumerate(pieces):
                steps[position].append(
                    prefix
                    + b',"delta":{"content":'
                    + dumps(piece).encode()
                    + b'},"logprobs":null,"finish_reason":null'
                    + tail
                )
            steps[max(len(pieces) - 1, 0)].append(
                prefix
                + b',"delta":{},"logprobs":null,"finish_reason":"'
                + finish.encode()
                + b'"'
                + tail
            )
        if include_usage:
            usage_chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": [],
                "usage": self.usage(),
            }
            steps[-1].append(b"data: " + _json_dumps(usage_chunk) + b"\n\n")
        return [b"".join(step) for step in steps]


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
    leaving cancels every connection and closes the socket.

    >>> async with open_server(rpm=60) as server:  # doctest: +SKIP
    ...     client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url)

    Args:
        config: a `ServerConfig`; or None to build one from `**changes`.
        **changes: `ServerConfig` fields.
    """
    config = _make_config(config, changes)
    # Yielding inside a nursery is safe here: asynccontextmanager runs the body in the
    # caller's task, within the nursery's lifetime, which is the documented trio idiom.
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, config)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
