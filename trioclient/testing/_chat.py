"""The chat-completions behaviour: what the server answers to one chat request.

In order: authenticate, validate, the quota and rate-limit checks, a fault (by
probability, script or the `x-trioclient-sim` header), then the answer, paced as
`ttft` and `tps` say and sent as JSON or as an SSE stream. Everything is decided from
one snapshot of the `ServerConfig`, so `set_config` mid-test never tears a response.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import attrs
import trio

from . import _answers, _dialects
from ._admission import Admitted, admit
from ._config import FaultParams, ServerConfig
from ._errors import HTML_502_PAGE, SERVER_ERROR_MESSAGE, STATUS_ERRORS, error_body
from ._faults import FaultPicker, InjectedCrash, trickle
from ._http import Request, RequestIds, Wire, frame, send_simple
from ._pacer import Pacer
from ._ratelimit import RateDecision, RateLimiter
from ._render import (
    DONE,
    JSON,
    SSE,
    ChatResponse,
    human_wait,
    json_dumps,
    response_headers,
)
from ._stats import Counters
from ._validate import Sim, parse_chat_body

__all__ = ["ChatEndpoint", "InjectedCrash"]

_HTTP_FAULT_STATUS = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}
_STREAM_FAULTS_AT_STEP = frozenset(
    {"reset_mid_stream", "truncated_stream", "malformed_chunk", "error_event"}
)


@attrs.define(eq=False)
class ChatEndpoint:
    """`POST /v1/chat/completions`, with the state it keeps between requests.

    Attributes:
        counters: the server's tallies.
        ids: the server's request ids.
        pacer: sends paced stream chunks (its `run` task is the server's).
        rng: latency samples.
        faults: picks a fault per request (by probability or script).
        limiter: the rpm / tpm buckets per API key.
    """

    counters: Counters
    ids: RequestIds
    pacer: Pacer
    rng: random.Random
    faults: FaultPicker
    limiter: RateLimiter

    @classmethod
    def for_config(
        cls, config: ServerConfig, counters: Counters, ids: RequestIds, pacer: Pacer
    ) -> ChatEndpoint:
        """A fresh endpoint: its randomness seeded from `config.seed`, full buckets."""
        rng = random.Random(config.seed)
        faults = FaultPicker(random.Random(rng.random()))
        return cls(counters, ids, pacer, rng, faults, RateLimiter(config.rpm, config.tpm))

    async def answer(self, wire: Wire, request: Request, config: ServerConfig) -> bool:
        """Answer one chat completion request; False means the connection must end.

        Args:
            wire: the connection to answer on.
            request: a POST to the chat completions path.
            config: the server config, read once: a `set_config` during this request
                applies to the next one.
        """
        c = self.counters
        admitted = await admit(
            self, wire, request, config, parse_chat_body, lambda body, sim: _plan(body, sim, config).cost
        )
        if not isinstance(admitted, Admitted):
            return admitted
        body, sim, request_id = admitted.body, admitted.sim, admitted.request_id
        rate_headers, fault, start = admitted.rate_headers, admitted.fault, admitted.start
        plan = _plan(body, sim, config)
        model: str = body["model"]
        prompt_key, length, limit, n = plan.prompt_key, plan.length, plan.limit, plan.n
        prompt_tokens = plan.prompt_tokens
        stream = bool(body.get("stream"))

        dialect = sim.dialect or config.dialect
        options = body.get("stream_options") or {}
        extras = _dialects.Extras(
            dialect=dialect,
            calls=_dialects.plan_tool_calls(body, prompt_key, dialect),
            logprobs=bool(body.get("logprobs")),
            top_logprobs=body.get("top_logprobs") or 0,
            refusal=sim.refuse,
            reasoning=_dialects.reasoning_pieces(prompt_key)
            if sim.reasoning or body.get("reasoning_effort") not in (None, "none")
            else (),
            continuous_usage=bool(options.get("continuous_usage_stats")) and dialect == "vllm",
        )
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

        ttft = (sim.ttft or config.ttft).sample(self.rng)
        tps_dist = sim.tps if sim.has_tps else config.tps
        tps = tps_dist.sample(self.rng) if tps_dist is not None else math.inf
        if not tps > 0 or fault == "huge_response":
            tps = math.inf
        response = ChatResponse(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=model,
            fingerprint=config.system_fingerprint,
            choices=choices,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            extras=None if extras.plain else extras,
        )
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            ok = await self._stream(
                wire,
                config.fault_params,
                response,
                include_usage,
                start,
                ttft,
                tps,
                fault,
                rate_headers,
                request_id,
            )
        else:
            longest = max(len(pieces) for pieces, _ in choices)
            done_at = start + ttft + (max(longest - 1, 0) / tps if math.isfinite(tps) else 0.0)
            await self.pacer.wait_until(done_at)
            ok = await self._complete(
                wire, config.fault_params, response, fault, rate_headers, request_id
            )
        if ok:
            c.completion_tokens += completion_tokens
        return ok and fault not in ("reset_mid_body", "reset_mid_stream", "truncated_stream")

    async def _rate_limited(
        self, wire: Wire, decision: RateDecision, model: str, request_id: str
    ) -> None:
        self.counters.rate_limited += 1
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
                f"Please try again in {human_wait(wait)}."
            )
        body = error_body(message, kind, None, "rate_limit_exceeded")
        await send_simple(wire, 429, body, request_id, extra=extra)

    async def _early_fault(
        self,
        wire: Wire,
        config: ServerConfig,
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
            await send_simple(
                wire, status, error_body(message, type_), request_id, extra=rate_headers
            )
            return True
        if fault == "html_error":
            await send_simple(
                wire, 502, HTML_502_PAGE, request_id, content_type=b"text/html", extra=rate_headers
            )
            return True
        if fault == "rate_limited":
            self.counters.rate_limited += 1
            wait = config.fault_params.rate_limited_retry_after
            body = error_body(
                f"Rate limit reached for requests (injected fault). Please try again in "
                f"{human_wait(wait)}.",
                "requests",
                None,
                "rate_limit_exceeded",
            )
            extra = [
                *rate_headers,
                (b"retry-after", b"%d" % max(1, math.ceil(wait))),
                (b"retry-after-ms", b"%d" % math.ceil(wait * 1000)),
            ]
            await send_simple(wire, 429, body, request_id, extra=extra)
            return True
        return None

    async def _complete(
        self,
        wire: Wire,
        params: FaultParams,
        response: ChatResponse,
        fault: str | None,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool:
        """Send a non-streaming completion, applying a body-level fault if any."""
        if fault == "error_event":
            # A 200 whose body is an error object, as some gateways send.
            dialect = response.extras.dialect if response.extras else "openai"
            body = json_dumps(_dialects.error_in_200(dialect, SERVER_ERROR_MESSAGE))
        else:
            body = json_dumps(response.completion_object())
        content_type = JSON
        if fault == "malformed_json":
            body = body[: len(body) // 2]
        elif fault == "wrong_content_type":
            content_type = b"text/html; charset=utf-8"
        head = wire.head(200, response_headers(content_type, rate_headers, request_id, len(body)))
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
            await trickle(wire, params, body)
            await wire.send(wire.end())
            return True
        await wire.send(head + wire.data(body) + wire.end())
        return True

    async def _stream(
        self,
        wire: Wire,
        params: FaultParams,
        response: ChatResponse,
        include_usage: bool,
        start: float,
        ttft: float,
        tps: float,
        fault: str | None,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool:
        """Send a streaming completion: SSE events paced at start + ttft + i / tps."""
        content_type = b"text/plain; charset=utf-8" if fault == "wrong_content_type" else SSE
        head, chunked = wire.stream_head(
            200, response_headers(content_type, rate_headers, request_id)
        )
        await wire.send(head)

        steps = response.stream_steps(include_usage)
        if fault == "slow_trickle":
            await trickle(wire, params, b"".join(steps) + DONE)
            await wire.send(wire.end())
            return True
        paced = math.isfinite(tps)
        interval = 1.0 / tps if paced else 0.0
        base = start + ttft
        lags = self.counters.lags if paced else None
        schedule = [(base + i * interval, frame(step, chunked)) for i, step in enumerate(steps)]
        fd = wire.stream.socket.fileno()

        def with_end(part: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
            # The last step also carries [DONE] and the end of the body.
            part[-1] = (part[-1][0], frame(steps[-1] + DONE, chunked) + wire.end())
            return part

        if fault not in _STREAM_FAULTS_AT_STEP and fault != "stall_between_chunks":
            await self.pacer.send_steps(fd, with_end(schedule), wire.send, lags)
            return True
        split = min(params.chunks_before_fault, len(steps) - 1)
        await self.pacer.send_steps(fd, schedule[:split], wire.send, lags)
        if fault == "stall_between_chunks":
            await trio.sleep(params.stall_seconds)
            shifted = [(when + params.stall_seconds, data) for when, data in schedule[split:]]
            await self.pacer.send_steps(fd, with_end(shifted), wire.send, lags)
            return True
        error = _dialects.error_event_bytes(
            response.extras.dialect if response.extras else "openai",
            SERVER_ERROR_MESSAGE,
            response.chunk_head(),
        )
        return await _stream_fault(wire, fault, steps[split], steps[split + 1 :], error)


async def _stream_fault(
    wire: Wire, fault: str, step: bytes, rest: list[bytes], error: bytes
) -> bool:
    """End a stream with a fault at `step` (whose events have not been sent); `error` is
    the `error_event` fault's bytes, in the answer's dialect."""
    if fault == "reset_mid_stream":
        wire.reset()
        return False
    if fault == "truncated_stream":
        await wire.send(wire.end())
        return False
    if fault == "error_event":
        await wire.send(wire.data(error) + wire.end())
        return False
    # malformed_chunk: this step's first event loses the second half of its JSON.
    first, _, tail = step.partition(b"\n\n")
    broken = first[: max(8, len(first) // 2)] + b"\n\n" + tail
    await wire.send(wire.data(broken + b"".join(rest) + DONE) + wire.end())
    return False


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


@attrs.frozen
class _Plan:
    """What a chat request will be answered with, as far as its cost needs to know."""

    prompt_key: str
    length: int
    limit: int | None
    n: int
    prompt_tokens: int

    @property
    def cost(self) -> int:
        """The tokens charged against `tpm`: the prompt and the most it may be answered."""
        return self.prompt_tokens + (self.limit if self.limit is not None else self.length) * self.n


def _plan(body: dict[str, Any], sim: Sim, config: ServerConfig) -> _Plan:
    messages: list[dict[str, Any]] = body["messages"]
    prompt_key = _answers.prompt_key(messages, body.get("seed"))
    length = sim.answer_tokens or config.answer_tokens or _answers.default_answer_length(prompt_key)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    n: int = body.get("n") or 1
    return _Plan(prompt_key, length, limit, n, _answers.prompt_tokens(messages))
