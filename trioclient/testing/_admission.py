"""What every model endpoint does before it answers, and how it sends a JSON answer.

The chat endpoint's order, shared by `/v1/embeddings` and `/v1/responses`:
authenticate, validate, the quota and rate-limit checks, a fault (by probability,
script or the `x-trioclient-sim` header), then the answer. The rate-limit buckets and
the fault script are the chat endpoint's own, so one API key's budget covers every
endpoint and a scripted fault goes to the next model request, whichever path it names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from ._config import FaultParams, ServerConfig
from ._errors import SERVER_ERROR_MESSAGE, error_body
from ._faults import NON_STREAM_EQUIVALENT, STREAM_EQUIVALENT, InjectedCrash, trickle
from ._http import Request, Wire, send_simple
from ._render import JSON, response_headers
from ._validate import SIM_HEADER, BadRequest, Sim, authenticate, parse_sim

__all__ = ["Admitted", "admit", "parse_model_input_body", "send_json"]


class Endpoint(Protocol):
    """What admission needs of the chat endpoint (its ids, counters, buckets, dice and
    refusals), which every model endpoint shares."""

    ids: Any
    counters: Any
    limiter: Any
    faults: Any

    async def _rate_limited(self, wire: Wire, decision: Any, model: str, request_id: str) -> None: ...

    async def _early_fault(
        self,
        wire: Wire,
        config: ServerConfig,
        fault: str,
        rate_headers: tuple[tuple[bytes, bytes], ...],
        request_id: str,
    ) -> bool | None: ...


@attrs.frozen
class Admitted:
    """A request that passed every check: what the answer needs to know."""

    body: dict[str, Any]
    sim: Sim
    request_id: str
    rate_headers: tuple[tuple[bytes, bytes], ...]
    fault: str | None
    start: float


async def admit(
    chat: Endpoint,
    wire: Wire,
    request: Request,
    config: ServerConfig,
    parse: Callable[[bytes], dict[str, Any]],
    cost: Callable[[dict[str, Any], Sim], int],
    *,
    stream: Callable[[dict[str, Any]], bool] = lambda body: bool(body.get("stream")),
) -> Admitted | bool:
    """Run the checks; an :class:`Admitted` to answer, or the ``keep_open`` flag of a
    reply already sent (a 401, 400, 429 or an early fault).

    Args:
        parse: decodes and validates the body (raises `BadRequest`).
        cost: the tokens the request is charged against `tpm` (its body and its
            `x-trioclient-sim` settings).
        stream: whether the request asks for a stream (which version of a fault).
    """
    start = trio.current_time()
    request_id = chat.ids.next()
    key, problem = authenticate(request, config.api_key)
    if key is None:
        assert problem is not None
        await send_simple(wire, 401, problem, request_id)
        return True
    try:
        body = parse(request.body)
        sim = parse_sim(request.headers.get(SIM_HEADER))
    except BadRequest as bad:
        await send_simple(wire, 400, bad.body(), request_id)
        return True
    if config.insufficient_quota:
        chat.counters.rate_limited += 1
        quota = error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
            "insufficient_quota",
        )
        await send_simple(wire, 429, quota, request_id)
        return True
    decision = chat.limiter.check(key, cost(body, sim), start)
    if decision.limited is not None:
        await chat._rate_limited(wire, decision, str(body.get("model")), request_id)
        return True
    fault = sim.fault if sim.has_fault else chat.faults.pick(config.faults)
    if fault is not None:
        fault = (STREAM_EQUIVALENT if stream(body) else NON_STREAM_EQUIVALENT).get(fault, fault)
        chat.counters.faults_injected[fault] += 1
        if fault == "handler_crash":
            raise InjectedCrash("handler_crash fault injected")
        done = await chat._early_fault(wire, config, fault, decision.headers, request_id)
        if done is not None:
            return done
        if fault == "stall_before_first_byte":
            await trio.sleep(config.fault_params.stall_seconds)
            start += config.fault_params.stall_seconds
    return Admitted(body, sim, request_id, decision.headers, fault, start)


async def send_json(
    wire: Wire,
    params: FaultParams,
    payload: bytes,
    fault: str | None,
    rate_headers: tuple[tuple[bytes, bytes], ...],
    request_id: str,
) -> bool:
    """Send a JSON answer, with a body-level fault if one was picked; False means the
    connection must end."""
    if fault == "error_event":
        payload = error_body(SERVER_ERROR_MESSAGE, "server_error")  # a 200 carrying an error
    content_type = JSON
    if fault == "malformed_json":
        payload = payload[: len(payload) // 2]
    elif fault == "wrong_content_type":
        content_type = b"text/html; charset=utf-8"
    head = wire.head(200, response_headers(content_type, rate_headers, request_id, len(payload)))
    half = len(payload) // 2
    if fault in ("reset_mid_body", "reset_mid_stream", "truncated_stream"):
        await wire.send(head + wire.data(payload[:half]))
        if fault != "truncated_stream":
            wire.reset()
        return False
    if fault == "stall_between_chunks":
        await wire.send(head + wire.data(payload[:half]))
        await trio.sleep(params.stall_seconds)
        await wire.send(wire.data(payload[half:]) + wire.end())
        return True
    if fault == "slow_trickle":
        await wire.send(head)
        await trickle(wire, params, payload)
        await wire.send(wire.end())
        return True
    await wire.send(head + wire.data(payload) + wire.end())
    return True


def bad_type(name: str, expected: str, value: object) -> BadRequest:
    from ._errors import json_type_name

    return BadRequest(
        f"Invalid type for '{name}': expected {expected}, but got {json_type_name(value)} instead.",
        name,
        "invalid_type",
    )


def parse_model_input_body(raw: bytes) -> dict[str, Any]:
    """The JSON body of an embeddings or responses request, with what both require
    (an object, a string ``model``, an ``input``) checked as the API words it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise bad_type("body", "an object", body)
    model = body.get("model")
    if model is None:
        raise BadRequest("you must provide a model parameter")
    if not isinstance(model, str):
        raise bad_type("model", "a string", model)
    if "input" not in body:
        raise BadRequest(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    return body
