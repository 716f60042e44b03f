"""Tool calls, log probabilities, refusals, reasoning, and each provider's dialect.

What the plain OpenAI answer of `_render.ChatResponse` does not cover: an answer that
calls tools (when the request gives `tools`; `tool_choice="required"` or a named
function forces a call), carries `logprobs` (when asked), refuses (the
`x-trioclient-sim` header's `refuse`), or shows its reasoning (a `reasoning_effort` in
the request, or the header's `reasoning`); and the `dialect` switch that renders all of
it the way one provider does:

* `openai`: the reference (tool-call arguments in fragments under an `index`).
* `xai`: as OpenAI, the thinking in `reasoning_content`.
* `openrouter`: thinking in `reasoning`; a `: OPENROUTER PROCESSING` comment first; the
  `error_event` fault is a chunk with `error` *and* `choices` (`finish_reason:
  "error"`) followed by `[DONE]` in a stream, and a 200 `{"error": {"code": 502...}}`
  otherwise.
* `gemini`: tool-call pieces without `index`, each call whole, with an
  `extra_content` thought signature; a streamed tool-calling answer ends with
  `finish_reason: "stop"`.
* `vllm`: `stop_reason` on the last chunk; usage on every chunk when
  `stream_options.continuous_usage_stats`; its error frame (`object: "error"`, code).
* `llamacpp`: first delta `content: null`, usage and `timings` on the last chunk
  always; the `error_event` fault as an `event: error` frame.
* `ollama`: thinking in `reasoning`; each tool call whole, with its `index`.
* `mistral`: with reasoning, `content` as a list of thinking and text parts.
* `nim`: the call's `id` and `name` repeated in every tool-call piece.

Pure values and functions: no I/O. Written from the providers' references, apart from
the client's models: the two readings must stay independent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "DIALECTS",
    "Extras",
    "check_dialect",
    "error_event_bytes",
    "error_in_200",
    "plan_tool_calls",
    "reasoning_pieces",
]

DIALECTS = (
    "openai",
    "xai",
    "openrouter",
    "gemini",
    "vllm",
    "llamacpp",
    "ollama",
    "mistral",
    "nim",
)
_REASONING_FIELD = {"openrouter": "reasoning", "ollama": "reasoning"}
_REFUSAL = "I'm sorry, but I can't help with that request."


def check_dialect(name: object) -> str:
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}")
    assert isinstance(name, str)
    return name


@attrs.frozen
class Call:
    """One tool call the answer makes."""

    id: str
    name: str
    arguments: str


@attrs.frozen
class Extras:
    """What an answer has beyond plain text, and the dialect to render it in."""

    dialect: str = "openai"
    calls: tuple[Call, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    refusal: bool = False
    reasoning: tuple[str, ...] = ()
    continuous_usage: bool = False

    @property
    def plain(self) -> bool:
        """Whether the answer is the plain OpenAI one (the fast renderer's)."""
        return (
            self.dialect in ("openai", "xai", "nim")
            and not self.calls
            and not self.logprobs
            and not self.refusal
            and not self.reasoning
        )


# --- tools ---------------------------------------------------------------------------


def _example(schema: Any) -> Any:
    """A value fitting a JSON-schema fragment (the first enum value, else by type)."""
    if not isinstance(schema, dict):
        return "example"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties")
        return {k: _example(v) for k, v in props.items()} if isinstance(props, dict) else {}
    examples: dict[Any, Any] = {"integer": 1, "number": 1.5, "boolean": True, "array": []}
    return None if kind == "null" else examples.get(kind, "example")


def _call_id(key: str, position: int, dialect: str) -> str:
    digest = hashlib.blake2b(f"{position}\x00{key}".encode(), digest_size=6).hexdigest()
    return f"function-call-{digest}" if dialect == "gemini" else f"call_{digest}"


def plan_tool_calls(body: dict[str, Any], key: str, dialect: str) -> tuple[Call, ...]:
    """The tool calls the answer makes, or none.

    With `tools` and `tool_choice` not `"none"`, the answer calls a tool unless the
    last message is a tool's result (so that a tool loop ends) and the choice is
    `"auto"`. A named `tool_choice` calls that function; otherwise the tools the last
    user message names are called (in parallel, unless `parallel_tool_calls` is
    false), or the first tool if it names none.
    """
    tools = body.get("tools")
    if not tools:
        return ()
    choice = body.get("tool_choice", "auto")
    if choice == "none":
        return ()
    messages = body["messages"]
    functions = [t["function"] for t in tools]
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        chosen = [f for f in functions if f["name"] == wanted]
    else:
        if choice == "auto" and messages and messages[-1].get("role") == "tool":
            return ()
        last_user = next(
            (m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        text = last_user if isinstance(last_user, str) else json.dumps(last_user)
        chosen = [f for f in functions if f["name"] in text] or functions[:1]
        if body.get("parallel_tool_calls") is False:
            chosen = chosen[:1]
    return tuple(
        Call(
            _call_id(key, i, dialect),
            f["name"],
            json.dumps(_example(f.get("parameters", {"type": "object"}))),
        )
        for i, f in enumerate(chosen)
    )


def reasoning_pieces(key: str) -> tuple[str, ...]:
    """The thinking an answer shows, in streamed pieces."""
    digest = hashlib.blake2b(key.encode(), digest_size=2).hexdigest()
    return ("Let me", " think", f" ({digest})", " first.")


# --- rendering -------------------------------------------------------------------------


def _logprob(token: str, position: int, top: int) -> dict[str, Any]:
    value = -round(0.05 * (1 + position % 7), 4)
    entry: dict[str, Any] = {"token": token, "logprob": value, "bytes": list(token.encode())}
    alternatives = [(token, value)] + [
        (f"{token.strip() or '_'}~{k}", round(value - 1.0 - k, 4)) for k in range(1, top)
    ]
    entry["top_logprobs"] = [
        {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives[:top]
    ]
    return entry


def _thinking(text: str) -> list[dict[str, Any]]:
    return [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]


def _split(arguments: str) -> list[str]:
    cut = max(1, len(arguments) // 2)
    return [arguments[:cut], arguments[cut:]] if len(arguments) > 1 else [arguments]


def _call_pieces(calls: Sequence[Call], dialect: str) -> list[list[dict[str, Any]]]:
    """The `tool_calls` lists of the deltas that stream `calls`, one per delta."""
    deltas: list[list[dict[str, Any]]] = []
    for k, call in enumerate(calls):
        whole = {"name": call.name, "arguments": call.arguments}
        if dialect == "gemini":
            signature = hashlib.blake2b(call.id.encode(), digest_size=6).hexdigest()
            deltas.append(
                [
                    {
                        "extra_content": {"google": {"thought_signature": signature}},
                        "function": whole,
                        "id": call.id,
                        "type": "function",
                    }
                ]
            )
        elif dialect == "ollama":
            deltas.append([{"id": call.id, "index": k, "type": "function", "function": whole}])
        else:
            first = {"name": call.name, "arguments": ""}
            deltas.append([{"index": k, "id": call.id, "type": "function", "function": first}])
            for fragment in _split(call.arguments):
                piece: dict[str, Any] = {"index": k, "function": {"arguments": fragment}}
                if dialect == "nim":
                    piece = {
                        "index": k,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": fragment},
                    }
                deltas.append([piece])
    return deltas


def message_object(
    extras: Extras, pieces: Sequence[str], finish: str
) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    """The `message`, `logprobs` and `finish_reason` of one choice of a completion."""
    dialect = extras.dialect
    text = "".join(pieces)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if dialect in ("openai", "xai", "openrouter", "nim"):
        message["refusal"] = None
    if extras.refusal:
        message["content"] = None
        message["refusal"] = _REFUSAL
    if extras.reasoning:
        thinking = "".join(extras.reasoning)
        if dialect == "mistral":
            message["content"] = [*_thinking(thinking), {"type": "text", "text": text}]
        else:
            message[_REASONING_FIELD.get(dialect, "reasoning_content")] = thinking
    if extras.calls:
        message["content"] = None
        message["tool_calls"] = [
            {
                **(
                    {"extra_content": {"google": {"thought_signature": "c2ln"}}}
                    if dialect == "gemini"
                    else {}
                ),
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in extras.calls
        ]
        finish = "tool_calls"
    logprobs = None
    if extras.logprobs and not extras.calls:
        logprobs = {
            "content": [_logprob(p, i, extras.top_logprobs) for i, p in enumerate(pieces)],
            "refusal": None,
        }
    return message, logprobs, finish


def stream_events(
    extras: Extras, pieces: Sequence[str], finish: str
) -> list[tuple[dict[str, Any], dict[str, Any] | None, str | None]]:
    """One choice's stream as `(delta, logprobs, finish_reason)` rows."""
    dialect = extras.dialect
    role: dict[str, Any] = {"role": "assistant", "content": ""}
    if dialect == "llamacpp":
        role["content"] = None
    rows: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]] = [(role, None, None)]
    for piece in extras.reasoning:
        if dialect == "mistral":
            rows.append(({"content": _thinking(piece)}, None, None))
        else:
            field = _REASONING_FIELD.get(dialect, "reasoning_content")
            delta = {field: piece}
            if field == "reasoning":
                delta["content"] = ""
            rows.append((delta, None, None))
    if extras.calls:
        for calls in _call_pieces(extras.calls, dialect):
            rows.append(({"tool_calls": calls}, None, None))
        finish = "stop" if dialect == "gemini" else "tool_calls"
    elif extras.refusal:
        for piece in (_REFUSAL[:20], _REFUSAL[20:]):
            rows.append(({"refusal": piece}, None, None))
    else:
        for i, piece in enumerate(pieces):
            content: Any = piece
            if dialect == "mistral" and extras.reasoning:
                content = [{"type": "text", "text": piece}]
            logprobs = None
            if extras.logprobs:
                logprobs = {"content": [_logprob(piece, i, extras.top_logprobs)], "refusal": None}
            rows.append(({"content": content}, logprobs, None))
    rows.append(({}, None, finish))
    return rows


def render_stream(
    extras: Extras,
    head: dict[str, Any],
    choices: Sequence[tuple[Sequence[str], str]],
    usage: dict[str, Any],
    include_usage: bool,
) -> list[bytes]:
    """The SSE bytes of each pacing step of a stream (step i: every choice's row i)."""
    dialect = extras.dialect
    per_choice = [stream_events(extras, pieces, finish) for pieces, finish in choices]
    steps: list[list[bytes]] = [[] for _ in range(max(len(rows) for rows in per_choice))]
    for index, rows in enumerate(per_choice):
        for position, (delta, logprobs, finish) in enumerate(rows):
            choice: dict[str, Any] = {"index": index, "delta": delta}
            if dialect not in ("gemini", "llamacpp", "ollama", "mistral"):
                choice["logprobs"] = logprobs
            elif logprobs is not None:
                choice["logprobs"] = logprobs
            choice["finish_reason"] = finish
            if dialect == "vllm" and finish is not None:
                choice["stop_reason"] = None
            chunk = {**head, "choices": [choice]}
            if extras.continuous_usage:
                chunk["usage"] = usage
            steps[position].append(_event(chunk))
    if include_usage or dialect == "llamacpp":
        last = {**head, "choices": [], "usage": usage}
        if dialect == "llamacpp":
            last["timings"] = {"prompt_n": usage["prompt_tokens"], "predicted_n": 1}
        steps[-1].append(_event(last))
    if dialect == "openrouter":
        steps[0].insert(0, b": OPENROUTER PROCESSING\n\n")
    return [b"".join(step) for step in steps]


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


# --- errors ---------------------------------------------------------------------------


def error_event_bytes(dialect: str, message: str, head: dict[str, Any] | None) -> bytes:
    """The `error_event` fault in a stream, as `dialect` sends it."""
    if dialect == "openrouter":
        chunk = {
            **(head or {}),
            "error": {"code": "server_error", "message": message},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
        return _event(chunk) + b"data: [DONE]\n\n"
    if dialect == "vllm":
        error = {"object": "error", "message": message, "type": "InternalServerError"}
        return _event({"error": {**error, "param": None, "code": 500}})
    if dialect == "llamacpp":
        body = {"code": 500, "message": message, "type": "server_error"}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    plain: dict[str, Any] = {"message": message, "type": "server_error"}
    return _event({"error": {**plain, "param": None, "code": None}})


def error_in_200(dialect: str, message: str) -> dict[str, Any]:
    """The `error_event` fault of a non-streamed answer: a 200 whose body is an error."""
    if dialect == "openrouter":
        metadata = {"provider_name": "trioclient-sim", "raw": message}
        return {"error": {"code": 502, "message": "Provider returned error", "metadata": metadata}}
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
