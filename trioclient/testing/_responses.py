"""`POST /v1/responses`: the Responses API, whole or streamed, with stored conversations.

The request's `input` (a string, or a list of items with a `role` and a `content`
that is a string or a list of `input_text` parts; `function_call_output` items count
as tool messages) and its `instructions` become the messages the chat endpoint's
answer generator reads, so the text is the same deterministic prose. Every answer is
stored (a bounded, oldest-first store), so `previous_response_id` continues it: the
earlier conversation and its answer come before the new input. An id this server did
not give is a 404, as with the real API.

Streams send named SSE events, each with a `sequence_number`: `response.created`,
`response.in_progress`, `response.output_item.added`, `response.content_part.added`,
one `response.output_text.delta` per token (paced by `ttft` and `tps`),
`response.output_text.done`, `response.content_part.done`, `response.output_item.done`
and the terminal `response.completed` (or `response.incomplete` when
`max_output_tokens` cut the answer). The stream faults end it short of the terminal
event: `truncated_stream` (a clean end), `reset_mid_stream`, `error_event` (an
`error` event), `malformed_chunk` (an event cut in half).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from typing import Any

import attrs
import trio

from . import _answers
from ._admission import Admitted, admit, bad_type, parse_model_input_body, send_json
from ._chat import ChatEndpoint
from ._config import ServerConfig
from ._errors import SERVER_ERROR_MESSAGE, error_body
from ._faults import trickle
from ._http import Request, Wire, frame, send_simple
from ._render import SSE, json_dumps, response_headers
from ._validate import BadRequest

__all__ = ["ResponsesEndpoint"]

#: How many answers are kept for `previous_response_id` (the oldest go first).
STORE_LIMIT = 10_000


def _messages_from_input(value: object) -> list[dict[str, Any]]:
    if isinstance(value, str):
        if not value:
            raise BadRequest("Invalid 'input': empty string.", "input", "empty_string")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise bad_type("input", "a string or an array of input items", value)
    if not value:
        raise BadRequest("Invalid 'input': empty array.", "input", "empty_array")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise bad_type(f"input[{i}]", "an object", item)
        kind = item.get("type", "message")
        if kind == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
            continue
        if kind == "function_call":
            messages.append({"role": "assistant", "content": str(item.get("arguments", ""))})
            continue
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(
                f"Invalid value for 'input[{i}].role': expected one of 'user', 'assistant', "
                f"'system' or 'developer', got {json.dumps(role)}.",
                f"input[{i}].role",
                "invalid_value",
            )
        content = item.get("content")
        if isinstance(content, list):
            text = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        elif isinstance(content, str):
            text = content
        else:
            raise bad_type(f"input[{i}].content", "a string or an array of parts", content)
        messages.append({"role": "system" if role == "developer" else role, "content": text})
    return messages


def parse_responses_body(raw: bytes) -> dict[str, Any]:
    body = parse_model_input_body(raw)
    body["_messages"] = _messages_from_input(body["input"])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_type("instructions", "a string", instructions)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise bad_type("previous_response_id", "a string", previous)
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise BadRequest(
            "Invalid 'max_output_tokens': expected an integer >= 1.",
            "max_output_tokens",
            "invalid_value",
        )
    return body


def _cost(body: dict[str, Any]) -> int:
    limit = body.get("max_output_tokens")
    return _answers.prompt_tokens(body["_messages"]) + (limit if limit is not None else 40)


@attrs.define(eq=False)
class ResponsesEndpoint:
    """`POST /v1/responses` and the answers it keeps for `previous_response_id`."""

    chat: ChatEndpoint
    store: OrderedDict[str, list[dict[str, Any]]] = attrs.field(factory=OrderedDict)

    async def answer(self, wire: Wire, request: Request, config: ServerConfig) -> bool:
        """Answer one request; False means the connection must end."""
        admitted = await admit(self.chat, wire, request, config, parse_responses_body, lambda body, sim: _cost(body))
        if not isinstance(admitted, Admitted):
            return admitted
        body, sim = admitted.body, admitted.sim
        # The conversation carries over; instructions do not (as with the real API).
        conversation: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            earlier = self.store.get(previous)
            if earlier is None:
                message = f"Response with id '{previous}' not found."
                problem = error_body(
                    message, "invalid_request_error", "previous_response_id", "not_found"
                )
                await send_simple(wire, 404, problem, admitted.request_id)
                return True
            conversation.extend(earlier)
        conversation.extend(body["_messages"])
        instructions = body.get("instructions")
        messages = conversation
        if instructions:
            messages = [{"role": "system", "content": instructions}, *conversation]

        key = _answers.prompt_key(messages, body.get("seed"))
        length = sim.answer_tokens or config.answer_tokens or _answers.default_answer_length(key)
        pieces = _answers.answer_pieces(key, 0, length)
        limit = body.get("max_output_tokens")
        cut = limit is not None and limit < len(pieces)
        if cut:
            pieces = pieces[:limit]
        text = "".join(pieces)
        input_tokens = _answers.prompt_tokens(messages)
        counters = self.chat.counters
        counters.prompt_tokens += input_tokens

        rid = f"resp_{admitted.request_id}"
        if body.get("store", True) is not False:
            # The stored conversation: what was read, then what was answered.
            self.store[rid] = [*conversation, {"role": "assistant", "content": text}]
            while len(self.store) > STORE_LIMIT:
                self.store.popitem(last=False)
        response = _Rendered(
            id=rid,
            model=body["model"],
            created_at=int(time.time()),
            previous=previous,
            instructions=instructions,
            pieces=pieces,
            cut=cut,
            input_tokens=input_tokens,
        )
        ttft = (sim.ttft or config.ttft).sample(self.chat.rng)
        tps_dist = sim.tps if sim.has_tps else config.tps
        tps = tps_dist.sample(self.chat.rng) if tps_dist is not None else math.inf
        if not tps > 0:
            tps = math.inf
        fault = admitted.fault
        if body.get("stream"):
            ok = await self._stream(wire, config, admitted, response, ttft, tps)
        else:
            done_at = (
                admitted.start
                + ttft
                + (max(len(pieces) - 1, 0) / tps if math.isfinite(tps) else 0.0)
            )
            await self.chat.pacer.wait_until(done_at)
            payload = json_dumps(response.object("incomplete" if cut else "completed"))
            ok = await send_json(
                wire,
                config.fault_params,
                payload,
                fault,
                admitted.rate_headers,
                admitted.request_id,
            )
        if ok:
            counters.completion_tokens += len(pieces)
        return ok

    async def _stream(
        self,
        wire: Wire,
        config: ServerConfig,
        admitted: Admitted,
        response: _Rendered,
        ttft: float,
        tps: float,
    ) -> bool:
        fault = admitted.fault
        content_type = b"text/plain; charset=utf-8" if fault == "wrong_content_type" else SSE
        head, chunked = wire.stream_head(
            200, response_headers(content_type, admitted.rate_headers, admitted.request_id)
        )
        await wire.send(head)
        steps = response.stream_steps()
        if fault == "slow_trickle":
            await trickle(wire, config.fault_params, b"".join(steps))
            await wire.send(wire.end())
            return True
        paced = math.isfinite(tps)
        interval = 1.0 / tps if paced else 0.0
        base = admitted.start + ttft
        lags = self.chat.counters.lags if paced else None
        schedule = [(base + i * interval, frame(step, chunked)) for i, step in enumerate(steps)]
        fd = wire.stream.socket.fileno()
        send = self.chat.pacer.send_steps
        if fault not in (
            "reset_mid_stream",
            "truncated_stream",
            "malformed_chunk",
            "error_event",
            "stall_between_chunks",
        ):
            schedule[-1] = (schedule[-1][0], frame(steps[-1], chunked) + wire.end())
            await send(fd, schedule, wire.send, lags)
            return True
        split = min(config.fault_params.chunks_before_fault, len(steps) - 1)
        await send(fd, schedule[:split], wire.send, lags)
        if fault == "stall_between_chunks":
            stall = config.fault_params.stall_seconds
            await trio.sleep(stall)
            rest = [(when + stall, data) for when, data in schedule[split:]]
            rest[-1] = (rest[-1][0], frame(steps[-1], chunked) + wire.end())
            await send(fd, rest, wire.send, lags)
            return True
        if fault == "reset_mid_stream":
            wire.reset()
            return False
        if fault == "truncated_stream":
            await wire.send(wire.end())
            return False
        if fault == "error_event":
            event = {
                "type": "error",
                "code": "server_error",
                "message": SERVER_ERROR_MESSAGE,
                "param": None,
            }
            await wire.send(
                wire.data(b"event: error\ndata: " + json_dumps(event) + b"\n\n") + wire.end()
            )
            return False
        # malformed_chunk: this step's first event loses the second half of its JSON.
        first, _, tail = steps[split].partition(b"\n\n")
        broken = first[: max(8, len(first) // 2)] + b"\n\n" + tail
        await wire.send(wire.data(broken + b"".join(steps[split + 1 :])) + wire.end())
        return False


@attrs.define
class _Rendered:
    """One answer, as a response object and as the events of its stream."""

    id: str
    model: str
    created_at: int
    previous: str | None
    instructions: str | None
    pieces: tuple[str, ...]
    cut: bool
    input_tokens: int

    @property
    def message_id(self) -> str:
        return "msg_" + self.id[5:]

    def message(self, text: str, status: str) -> dict[str, Any]:
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def object(self, status: str) -> dict[str, Any]:
        done = status in ("completed", "incomplete")
        output_tokens = len(self.pieces)
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": self.instructions,
            "model": self.model,
            "output": [self.message("".join(self.pieces), status)] if done else [],
            "previous_response_id": self.previous,
            "store": True,
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + output_tokens,
            }
            if done
            else None,
        }

    def stream_steps(self) -> list[bytes]:
        """The stream's bytes in paced steps: the opening events with the first delta,
        one delta per step, the closing events with the last."""
        number = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal number
            data = {"type": kind, "sequence_number": number, **fields}
            number += 1
            return b"event: " + kind.encode() + b"\ndata: " + json_dumps(data) + b"\n\n"

        mid = self.message_id
        where = {"item_id": mid, "output_index": 0, "content_index": 0}
        opening = (
            event("response.created", response=self.object("in_progress"))
            + event("response.in_progress", response=self.object("in_progress"))
            + event(
                "response.output_item.added",
                output_index=0,
                item={**self.message("", "in_progress"), "content": []},
            )
            + event(
                "response.content_part.added",
                **where,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        )
        deltas = [
            event("response.output_text.delta", **where, delta=piece) for piece in self.pieces
        ]
        text = "".join(self.pieces)
        final = "incomplete" if self.cut else "completed"
        closing = (
            event("response.output_text.done", **where, text=text)
            + event(
                "response.content_part.done",
                **where,
                part={"type": "output_text", "text": text, "annotations": []},
            )
            + event(
                "response.output_item.done", output_index=0, item=self.message(text, "completed")
            )
            + event(f"response.{final}", response=self.object(final))
        )
        if not deltas:
            return [opening, closing]
        steps = [opening + deltas[0], *deltas[1:]]
        steps[-1] += closing
        return steps
